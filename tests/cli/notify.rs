//! `chg notify` (SPEC section 13): events from the history and the clock, delivered once to
//! a local SMTP sink and a local HTTP receiver that the tests start on free ports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Run, Store, run_output};

/// What the HTTP receiver answers.
const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A local HTTP receiver: records every request, answers 200, 500 or nothing.
struct Http {
    port: u16,
    got: Arc<Mutex<Vec<Req>>>,
    mode: Arc<AtomicU8>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Http {
    fn start() -> Http {
        Http::start_on(0)
    }

    fn start_on(port: u16) -> Http {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(OK));
        let (g, m) = (got.clone(), mode.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, m) = (g.clone(), m.clone());
                std::thread::spawn(move || serve_http(conn, &g, &m));
            }
        });
        Http { port, got, mode }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Req> {
        self.got.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Req> {
        self.got().into_iter().filter(|r| r.path == path).collect()
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

fn serve_http(conn: TcpStream, got: &Mutex<Vec<Req>>, mode: &AtomicU8) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
    let mut w = conn;
    match mode.load(Ordering::SeqCst) {
        HANG => {
            std::thread::sleep(Duration::from_secs(8));
        }
        FAIL => {
            let _ = w.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops");
        }
        _ => {
            got.lock().unwrap().push(Req {
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    }
}

/// One mail the sink accepted.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    data: String,
}

/// A local SMTP sink (plain, on 127.0.0.1); with `drop_mid` it drops the connection in the
/// middle of the message.
struct Smtp {
    port: u16,
    got: Arc<Mutex<Vec<Mail>>>,
    drop_mid: Arc<AtomicU8>,
}

impl Smtp {
    fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let drop_mid = Arc::new(AtomicU8::new(0));
        let (g, d) = (got.clone(), drop_mid.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, d) = (g.clone(), d.clone());
                std::thread::spawn(move || serve_smtp(conn, &g, &d));
            }
        });
        Smtp {
            port,
            got,
            drop_mid,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn got(&self) -> Vec<Mail> {
        self.got.lock().unwrap().clone()
    }

    fn to(&self, who: &str) -> Vec<Mail> {
        self.got()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == who))
            .collect()
    }
}

fn serve_smtp(conn: TcpStream, got: &Mutex<Vec<Mail>>, drop_mid: &AtomicU8) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let _ = w.write_all(b"220 sink ESMTP\r\n");
    let mut to = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let _ = w.write_all(b"250-sink\r\n250 8BITMIME\r\n");
        } else if upper.starts_with("MAIL FROM") {
            to.clear();
            let _ = w.write_all(b"250 ok\r\n");
        } else if upper.starts_with("RCPT TO") {
            let addr = line.split(['<', '>']).nth(1).unwrap_or("").to_owned();
            to.push(addr);
            let _ = w.write_all(b"250 ok\r\n");
        } else if upper.starts_with("DATA") {
            let _ = w.write_all(b"354 go ahead\r\n");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if drop_mid.load(Ordering::SeqCst) == 1 {
                    // Gone in the middle of the message: no answer, connection closed.
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            got.lock().unwrap().push(Mail {
                to: to.clone(),
                data,
            });
            let _ = w.write_all(b"250 queued\r\n");
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            let _ = w.write_all(b"250 ok\r\n");
        }
    }
}

/// The policy's notifications section used here: every kind of channel, reminders, escalation.
const NOTIFY_POLICY: &str = r#"
notifications:
  channels:
    - {name: chat, kind: slack, url_env: CHG_SLACK_WEBHOOK, timeout: 2s}
    - {name: teams, kind: teams, url_env: CHG_TEAMS_WEBHOOK, timeout: 2s}
    - {name: events, kind: webhook, url_env: CHG_EVENTS_URL, secret_env: CHG_EVENTS_SECRET, timeout: 2s}
    - {name: mail, kind: email, url_env: CHG_SMTP_URL, from: chg@example.com, timeout: 2s}
  route:
    awaiting_approval: [mail, chat]
    decided: [chat, mail]
    implemented: [chat, events, teams]
    closed: [events]
    overdue: [mail, chat]
  escalate_to: [change-manager]
  reminders: {every: 24h, at_most: 2}
  base_url: https://chg.example.com
"#;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_c2VjcmV0LWtleS1vbGQtcm90YXRlZC1vdXQ=";

/// A store with the notifications section, and the sinks it sends to.
struct World {
    s: Store,
    http: Http,
    smtp: Smtp,
}

impl World {
    fn new() -> World {
        World::with_http(Http::start())
    }

    fn with_http(http: Http) -> World {
        let s = Store::new();
        s.edit_policy("notifications", |p| format!("{p}{NOTIFY_POLICY}"));
        World {
            s,
            http,
            smtp: Smtp::start(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CHG_SLACK_WEBHOOK".into(), self.http.url("/slack")),
            ("CHG_TEAMS_WEBHOOK".into(), self.http.url("/teams")),
            ("CHG_EVENTS_URL".into(), self.http.url("/events")),
            ("CHG_EVENTS_SECRET".into(), format!("{SECRET} {OLD_SECRET}")),
            ("CHG_SMTP_URL".into(), self.smtp.url()),
        ]
    }

    fn notify_with(&self, args: &[&str], env: &[(String, String)], failpoint: Option<&str>) -> Run {
        let mut cmd = self
            .s
            .cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "ops@example.com");
        cmd.arg("notify").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(p) = failpoint {
            cmd.env("CHG_TEST_FAILPOINT", p);
        }
        run_output(cmd.output().unwrap())
    }

    fn notify(&self, args: &[&str]) -> Run {
        self.notify_with(args, &self.env(), None)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.http.at("/events").iter().map(Req::json).collect()
    }
}

/// Files a high-priority change as alice (approvers: security-team, engineering-manager,
/// change-manager; 24h timeout).
fn file_high(s: &Store) -> String {
    let args = [
        super::COMPLETE,
        &[
            "--priority",
            "high",
            "--title",
            "Rotate <!channel> certificates",
        ],
    ]
    .concat();
    s.chg("alice@example.com", &args).ok_line()
}

fn approve_all(s: &Store, id: &str) {
    for (who, role) in [
        ("sec1@example.com", "security-team"),
        ("em@example.com", "engineering-manager"),
        ("cm@example.com", "change-manager"),
    ] {
        s.chg(who, &["approve", id, "--role", role]).ok();
    }
}

#[test]
fn every_event_kind_reaches_its_recipients_once_across_runs() {
    let w = World::new();
    let id = file_high(&w.s);
    let out = w.notify(&[]).ok();
    assert!(
        out.stderr.contains("message(s) sent, 0 failed"),
        "{}",
        out.stderr
    );
    // Awaiting approval: a mail to each member of the roles still needed (one digest each),
    // a chat message with a link to the change's page; the requester gets no mail.
    for who in [
        "sec1@example.com",
        "sec2@example.com",
        "em@example.com",
        "cm@example.com",
    ] {
        let mails = w.smtp.to(who);
        assert_eq!(mails.len(), 1, "{who}: {mails:?}");
        assert!(mails[0].data.contains(&id), "{}", mails[0].data);
        assert!(
            mails[0]
                .data
                .contains(&format!("https://chg.example.com/changes/{id}"))
        );
    }
    assert!(w.smtp.to("alice@example.com").is_empty());
    let chat = w.http.at("/slack");
    assert_eq!(chat.len(), 1);
    let msg = chat[0].json();
    assert_eq!(
        msg["blocks"][2]["elements"][0]["url"],
        format!("https://chg.example.com/changes/{id}")
    );
    // A title cannot ping the channel: Slack's control characters are escaped.
    assert!(!chat[0].body.contains("<!channel>"), "{}", chat[0].body);
    assert!(chat[0].body.contains("&lt;!channel&gt;"));

    // Nothing new: nothing sent.
    let again = w.notify(&[]).ok();
    assert!(again.stdout.is_empty(), "{}", again.stdout);
    assert_eq!(w.smtp.got().len(), 4);

    approve_all(&w.s, &id);
    w.s.schedule(&id, "2025-03-10T09:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    w.s.chg("bob@example.com", &["implement", &id]).ok();
    w.notify(&[]).ok();
    // Decided: the requester hears of it; implemented: chat, Teams and a signed event.
    let alice = w.smtp.to("alice@example.com");
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert!(alice[0].data.contains("approved"), "{}", alice[0].data);
    let teams = w.http.at("/teams");
    assert_eq!(teams.len(), 1);
    let card = teams[0].json();
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    let events = w.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "chg.implemented");
    assert_eq!(events[0]["schema"], "chg.event/1");
    assert_eq!(events[0]["data"]["change"], id.as_str());
    assert_eq!(events[0]["commit"], w.s.git(&["rev-parse", "HEAD"]).trim());
    // seq: chg transitions of changes up to it (new, three approvals, schedule, implement).
    assert_eq!(events[0]["seq"], 6);

    w.s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    w.notify(&[]).ok();
    let events = w.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["type"], "chg.closed");
    // Every id once, across all runs.
    let mut ids: Vec<String> = w
        .http
        .got()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    w.notify(&[]).ok();
    assert_eq!(w.events().len(), 2);
}

#[test]
fn the_webhook_signature_verifies_with_an_independent_implementation() {
    let w = World::new();
    let id = file_high(&w.s);
    approve_all(&w.s, &id);
    w.s.schedule(&id, "2025-03-10T09:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    w.s.chg("bob@example.com", &["implement", &id]).ok();
    w.notify(&[]).ok();
    let req = w.http.at("/events").pop().expect("an event");
    let sig = req.header("webhook-signature").unwrap().to_owned();
    // Two signatures during the rotation, one per secret.
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    let script = r#"
import base64, hmac, hashlib, sys
secret, msg_id, ts, sigs, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.stdin.buffer.read()
key = base64.b64decode(secret[len("whsec_"):])
expected = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(s.split(",", 1)[1] == expected for s in sigs.split(" ") if s.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    let check = |secret: &str, body: &str| {
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                script,
                secret,
                req.header("webhook-id").unwrap(),
                req.header("webhook-timestamp").unwrap(),
                &sig,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    };
    assert!(check(SECRET, &req.body));
    assert!(check(OLD_SECRET, &req.body));
    // The check can fail: another secret, or a body changed by one byte.
    assert!(!check("whsec_b3RoZXItc2VjcmV0LW5vdC1vdXJzISE=", &req.body));
    assert!(!check(
        SECRET,
        &req.body.replacen("implemented", "implementes", 1)
    ));
}

#[test]
fn a_receiver_down_then_back_gets_the_event_exactly_once() {
    let port = free_port();
    // Nothing listens on the port yet.
    let w = World::with_http(Http::start());
    let mut env = w.env();
    for (k, v) in env.iter_mut() {
        if k == "CHG_EVENTS_URL" {
            *v = format!("http://127.0.0.1:{port}/events");
        }
    }
    let id = file_high(&w.s);
    approve_all(&w.s, &id);
    w.s.schedule(&id, "2025-03-10T09:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    w.s.chg("bob@example.com", &["implement", &id]).ok();
    let down = w.notify_with(&[], &env, None).code(1);
    assert!(
        down.stderr.contains("channel events failed"),
        "{}",
        down.stderr
    );
    assert!(down.stderr.contains("connection failed"), "{}", down.stderr);
    // The URL is never printed (webhook URLs carry tokens).
    assert!(!down.stderr.contains(&port.to_string()), "{}", down.stderr);
    let back = Http::start_on(port);
    w.notify_with(&[], &env, None).ok();
    w.notify_with(&[], &env, None).ok();
    let got = back.at("/events");
    assert_eq!(got.len(), 1, "{got:?}");
    // Chat (awaiting, decided, implemented) was delivered in the first run, and not again.
    assert_eq!(w.http.at("/slack").len(), 3);
}

#[test]
fn a_receiver_answering_500_or_hanging_fails_the_run_and_is_retried_with_backoff() {
    let mut w = World::new();
    file_high(&w.s);
    w.http.set(FAIL);
    let out = w.notify(&[]).code(1);
    assert!(out.stderr.contains("channel chat failed"), "{}", out.stderr);
    assert!(out.stderr.contains("HTTP 500"), "{}", out.stderr);
    // Mail went through.
    assert_eq!(w.smtp.got().len(), 4);
    w.http.set(HANG);
    let started = std::time::Instant::now();
    let out = w.notify(&[]).code(1);
    assert!(out.stderr.contains("timeout"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    // Third failure: a pause before the next attempt; the run still exits 1 and says so.
    w.http.set(OK);
    let out = w.notify(&[]).code(1);
    assert!(out.stderr.contains("waits for its retry"), "{}", out.stderr);
    assert!(w.http.at("/slack").is_empty());
    w.s.at("2025-03-10T10:05:00Z");
    w.notify(&[]).ok();
    assert_eq!(w.http.at("/slack").len(), 1);
    assert_eq!(w.smtp.got().len(), 4);
}

#[test]
fn overdue_approvals_get_bounded_reminders_then_escalation() {
    let mut w = World::new();
    let id = file_high(&w.s);
    w.notify(&[]).ok();
    let before = w.smtp.got().len();
    // One approval of three: security-team and engineering-manager... still awaited.
    w.s.chg(
        "sec1@example.com",
        &["approve", &id, "--role", "security-team"],
    )
    .ok();
    w.notify(&[]).ok();
    // Due after 24h: not yet.
    w.s.at("2025-03-11T09:00:00Z");
    w.notify(&[]).ok();
    assert_eq!(w.smtp.got().len(), before);
    // 25h: the first overdue notice to the approvers still awaited, not to sec1.
    w.s.at("2025-03-11T11:00:00Z");
    w.notify(&[]).ok();
    assert_eq!(w.smtp.to("em@example.com").len(), 2);
    assert_eq!(w.smtp.to("cm@example.com").len(), 2);
    assert_eq!(w.smtp.to("sec1@example.com").len(), 1);
    let last = w.smtp.to("em@example.com").pop().unwrap();
    assert!(last.data.contains("overdue"), "{}", last.data);
    // Same hour again: nothing.
    w.notify(&[]).ok();
    assert_eq!(w.smtp.to("em@example.com").len(), 2);
    // Four days after filing: the last reminder (2 of 2) and the escalation to the
    // change managers, each once.
    w.s.at("2025-03-14T10:00:00Z");
    let out = w.notify(&["--json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let kinds: Vec<String> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["notice"], e["escalated"]))
        .collect();
    assert_eq!(kinds, ["2:null", "null:true"], "{report}");
    assert_eq!(w.smtp.to("em@example.com").len(), 3);
    // cm gets the reminder and the escalation in one digest.
    let cm = w.smtp.to("cm@example.com");
    assert_eq!(cm.len(), 3);
    assert!(cm[2].data.contains("ESCALATED"), "{}", cm[2].data);
    // Later runs: no more reminders, no second escalation.
    w.s.at("2025-03-20T10:00:00Z");
    w.notify(&[]).ok();
    assert_eq!(w.smtp.to("em@example.com").len(), 3);
    assert_eq!(w.smtp.to("cm@example.com").len(), 3);
    // chg list --overdue agrees.
    let listed = w.s.chg("alice@example.com", &["list", "--overdue"]).ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
}

#[test]
fn a_dry_run_says_what_would_be_sent_and_sends_and_records_nothing() {
    let w = World::new();
    let id = file_high(&w.s);
    let out = w.notify(&["--dry-run"]).ok();
    assert!(
        out.stdout
            .contains("would send mail (email) to em@example.com"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&id));
    assert!(w.smtp.got().is_empty() && w.http.got().is_empty());
    w.notify(&[]).ok();
    assert_eq!(w.smtp.got().len(), 4);
}

#[test]
fn hostile_inputs_are_refused_or_reported_without_leaking_secrets() {
    let w = World::new();
    file_high(&w.s);
    // A URL variable that is not a URL: wrong input, nothing sent.
    let mut env = w.env();
    env.retain(|(k, _)| k != "CHG_SLACK_WEBHOOK");
    env.push(("CHG_SLACK_WEBHOOK".into(), "not a url; rm -rf /".into()));
    let out = w.notify_with(&[], &env, None).code(2);
    assert!(
        out.stderr.contains("CHG_SLACK_WEBHOOK (channel `chat`)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("rm -rf"), "{}", out.stderr);
    assert!(w.smtp.got().is_empty());
    // Plain http to another host: refused (a webhook URL travels in clear otherwise).
    env.retain(|(k, _)| k != "CHG_SLACK_WEBHOOK");
    env.push((
        "CHG_SLACK_WEBHOOK".into(),
        "http://hooks.example.com/T0/B0/secret".into(),
    ));
    let out = w.notify_with(&[], &env, None).code(2);
    assert!(out.stderr.contains("https://"), "{}", out.stderr);
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);
    // A secret that is not a whsec_ secret.
    let mut env = w.env();
    env.retain(|(k, _)| k != "CHG_EVENTS_SECRET");
    env.push(("CHG_EVENTS_SECRET".into(), "hunter2".into()));
    let out = w.notify_with(&[], &env, None).code(2);
    assert!(out.stderr.contains("whsec_"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    // An SMTP server that drops the connection in the middle of the message: the run
    // fails (exit 1), names the channel, and the next run delivers.
    w.smtp.drop_mid.store(1, Ordering::SeqCst);
    let out = w.notify(&[]).code(1);
    assert!(out.stderr.contains("channel mail to"), "{}", out.stderr);
    assert!(w.smtp.got().is_empty());
    w.smtp.drop_mid.store(0, Ordering::SeqCst);
    w.notify(&[]).ok();
    assert_eq!(w.smtp.got().len(), 4);
    // A bad --base-url.
    w.notify(&["--base-url", "javascript:alert(1)"]).code(2);
}

#[test]
fn a_policy_that_writes_a_secret_or_names_an_unknown_channel_is_refused() {
    let s = Store::new();
    s.edit_policy("bad notifications", |p| {
        format!(
            "{p}notifications:\n  channels:\n    - {{name: chat, kind: slack, url: https://hooks.slack.com/services/T/B/X}}\n"
        )
    });
    let out = s.chg("alice@example.com", &["list"]).code(2);
    assert!(out.stderr.contains("url"), "{}", out.stderr);
    s.git(&["revert", "--no-edit", "HEAD"]);
    s.edit_policy("bad route", |p| {
        format!(
            "{p}notifications:\n  channels:\n    - {{name: chat, kind: slack, url_env: X}}\n  route:\n    decided: [mail]\n    shipped: [chat]\n  escalate_to: [nobody]\n"
        )
    });
    let out = s.chg("alice@example.com", &["validate"]).code(1);
    for needle in [
        "channel `mail`",
        "`shipped` is not an event",
        "role `nobody`",
    ] {
        assert!(
            out.stdout.contains(needle) || out.stderr.contains(needle),
            "{needle}: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn a_run_killed_midway_neither_loses_nor_doubles_a_delivery() {
    let w = World::new();
    let id = file_high(&w.s);
    // Killed once the outbox is written, before anything is sent.
    let out = w.notify_with(&[], &w.env(), Some("notify-after-outbox"));
    assert_ne!(out.code, 0);
    assert!(w.smtp.got().is_empty() && w.http.got().is_empty());
    w.notify(&[]).ok();
    assert_eq!(w.smtp.got().len(), 4);
    assert_eq!(w.http.at("/slack").len(), 1);
    // Killed right after the first delivery was recorded: the rest go out next run, the
    // first not again.
    approve_all(&w.s, &id);
    w.s.schedule(&id, "2025-03-10T09:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    w.s.chg("bob@example.com", &["implement", &id]).ok();
    let out = w.notify_with(&[], &w.env(), Some("notify-after-record"));
    assert_ne!(out.code, 0);
    let first = w.http.got().len() + w.smtp.got().len();
    w.notify(&[]).ok();
    w.notify(&[]).ok();
    let ids: Vec<String> = w
        .http
        .got()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    assert!(w.http.got().len() + w.smtp.got().len() > first);
    assert_eq!(w.http.at("/slack").len(), 3);
    assert_eq!(w.http.at("/events").len(), 1);
    assert_eq!(w.smtp.to("alice@example.com").len(), 1);
}

#[test]
fn two_runs_at_once_do_not_both_send() {
    let w = World::new();
    file_high(&w.s);
    let env = w.env();
    std::thread::scope(|sc| {
        let a = sc.spawn(|| w.notify_with(&[], &env, None));
        let b = sc.spawn(|| w.notify_with(&[], &env, None));
        a.join().unwrap().ok();
        b.join().unwrap().ok();
    });
    assert_eq!(w.smtp.got().len(), 4);
    assert_eq!(w.http.at("/slack").len(), 1);
}

#[test]
fn audit_witness_names_the_commits_a_force_push_dropped() {
    let w = World::new();
    let id = file_high(&w.s);
    w.s.chg(
        "sec1@example.com",
        &["approve", &id, "--role", "security-team"],
    )
    .ok();
    w.s.chg(
        "em@example.com",
        &["approve", &id, "--role", "engineering-manager"],
    )
    .ok();
    let dropped: Vec<String> =
        w.s.git(&["rev-parse", "HEAD", "HEAD~1"])
            .lines()
            .map(str::to_owned)
            .collect();
    let kept = w.s.git(&["rev-parse", "HEAD~2"]).trim().to_owned();
    let file = w.s.dir.path().join("witness.txt");
    std::fs::write(
        &file,
        format!(
            "# receiver log\n{}\n{}\n{kept}\n",
            dropped[0],
            &dropped[1][..12]
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // Nothing dropped yet: no exception of that rule.
    let out = w.s.chg("alice@example.com", &["audit", "--witness", f]);
    assert!(!out.stdout.contains("history-truncated"), "{}", out.stdout);
    w.s.git(&["reset", "-q", "--hard", "HEAD~2"]);
    let out =
        w.s.chg(
            "alice@example.com",
            &["audit", "--witness", f, "--format", "json"],
        )
        .code(1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let named: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "history-truncated")
        .map(|f| f["commit"].as_str().unwrap())
        .collect();
    assert_eq!(
        named,
        [dropped[0].as_str(), dropped[1].as_str()],
        "{}",
        out.stdout
    );
    // A line that is not a commit id is wrong input, named by its line.
    std::fs::write(&file, "abc\n").unwrap();
    let out =
        w.s.chg("alice@example.com", &["audit", "--witness", f])
            .code(2);
    assert!(out.stderr.contains("witness.txt:1"), "{}", out.stderr);
}

#[test]
fn show_cab_and_report_mark_approvals_against_their_timeout() {
    let mut s = Store::new();
    let late = file_high(&s);
    let fast = file_high(&s);
    approve_all(&s, &fast);
    // 25 hours later: the high-priority approval (24h) of `late` is overdue.
    s.at("2025-03-11T11:00:00Z");
    let show = s.chg("alice@example.com", &["show", &late, "--utc"]).ok();
    assert!(
        show.stdout
            .contains("OVERDUE: approval was due at 2025-03-11T10:00:00Z"),
        "{}",
        show.stdout
    );
    let show = s.chg("alice@example.com", &["show", &fast]).ok();
    assert!(!show.stdout.contains("OVERDUE"), "{}", show.stdout);
    let json = s.chg("alice@example.com", &["show", &late, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["overdue_since"], "2025-03-11T10:00:00Z");
    let json = s.chg("alice@example.com", &["show", &fast, "--json"]).ok();
    assert!(!json.stdout.contains("overdue_since"), "{}", json.stdout);
    let cab = s.chg("alice@example.com", &["cab", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&cab.stdout).unwrap();
    let item = &v["agenda"][0]["changes"][0];
    assert_eq!(item["id"], late.as_str());
    assert_eq!(item["overdue_since"], "2025-03-11T10:00:00Z");
    let cab = s.chg("alice@example.com", &["cab"]).ok();
    assert!(cab.stdout.contains("OVERDUE since"), "{}", cab.stdout);
    // The approved one took no time: 1 of 1 within the 24h timeout.
    let report = s
        .chg("alice@example.com", &["report", "--format", "json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let high = v["approval_time"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["group"] == "high")
        .unwrap();
    assert_eq!(high["timeout_hours"], 24.0);
    assert_eq!(high["within_timeout"], 1.0);
    let text = s.chg("alice@example.com", &["report"]).ok();
    assert!(text.stdout.contains("100% of 24h"), "{}", text.stdout);
}

#[test]
fn a_transition_made_by_hand_is_notified_with_the_audit_exception() {
    let w = World::new();
    let id = file_high(&w.s);
    w.notify(&[]).ok();
    // Someone with push access approves by editing the file and committing with plain git.
    w.s.rewrite(&id, |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    w.s.git(&["commit", "-qam", "approve by hand"]);
    w.notify(&[]).ok();
    let chat = w.http.at("/slack");
    assert_eq!(chat.len(), 2, "{chat:?}");
    let last = &chat[1].body;
    assert!(last.contains("was approved by alice@example.com"), "{last}");
    assert!(last.contains("audit exceptions"), "{last}");
    // The requester is told too (decided), once.
    assert_eq!(w.smtp.to("alice@example.com").len(), 1);
}

#[test]
fn a_first_run_does_not_replay_old_transitions() {
    let mut w = World::new();
    let id = file_high(&w.s);
    // First run eight days later: the filing is older than --max-age (7d); the overdue
    // approval is the clock's, and is sent.
    w.s.at("2025-03-18T10:00:00Z");
    let out = w.notify(&["--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["overdue", "overdue"], "{v}");
    assert!(
        w.http
            .at("/slack")
            .iter()
            .all(|r| !r.body.contains("awaits approval"))
    );
    // With no limit, the filing is sent too.
    let w2 = World::new();
    file_high(&w2.s);
    let mut s2 = w2;
    s2.s.at("2025-03-18T10:00:00Z");
    let out = s2.notify(&["--max-age", "0", "--dry-run"]).ok();
    assert!(
        out.stdout.contains(&format!("{id}.awaiting_approval")),
        "{}",
        out.stdout
    );
    s2.notify(&["--max-age", "soon"]).code(2);
}

#[test]
fn a_delivery_whose_channel_left_the_policy_is_given_up_loudly_not_retried_forever() {
    let w = World::new();
    file_high(&w.s);
    w.http.set(FAIL);
    w.notify(&[]).code(1);
    // The policy drops the chat channel (and its routes): the queued chat message is given
    // up with a warning, once; the run succeeds.
    w.s.edit_policy("no chat", |p| {
        p.replace(
            "    - {name: chat, kind: slack, url_env: CHG_SLACK_WEBHOOK, timeout: 2s}\n",
            "",
        )
        .replace("[mail, chat]", "[mail]")
        .replace("[chat, mail]", "[mail]")
        .replace("[chat, events, teams]", "[events, teams]")
    });
    w.http.set(OK);
    let out = w.notify(&["--retry-now"]).ok();
    assert!(
        out.stderr
            .contains("given up: the policy at HEAD no longer defines channel `chat`"),
        "{}",
        out.stderr
    );
    let out = w.notify(&["--retry-now"]).ok();
    assert!(!out.stderr.contains("given up"), "{}", out.stderr);
    assert!(w.http.at("/slack").is_empty());
}

#[test]
fn a_run_killed_by_sigkill_while_a_receiver_hangs_delivers_once_on_the_next_run() {
    let w = World::new();
    file_high(&w.s);
    w.http.set(HANG);
    let mut cmd =
        w.s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "ops@example.com");
    cmd.arg("notify");
    for (k, v) in w.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    w.http.set(OK);
    w.notify(&[]).ok();
    w.notify(&[]).ok();
    assert_eq!(w.http.at("/slack").len(), 1);
    for who in [
        "sec1@example.com",
        "sec2@example.com",
        "em@example.com",
        "cm@example.com",
    ] {
        assert_eq!(w.smtp.to(who).len(), 1, "{who}");
    }
}

#[test]
fn many_events_in_one_run_reach_chat_as_digests_not_a_flood() {
    let w = World::new();
    let ids: Vec<String> = (0..7).map(|_| file_high(&w.s)).collect();
    w.notify(&[]).ok();
    let chat = w.http.at("/slack");
    assert_eq!(chat.len(), 1, "{chat:?}");
    let msg = chat[0].json();
    assert_eq!(msg["text"], "7 updates on changes");
    for id in &ids {
        assert!(
            chat[0]
                .body
                .contains(&format!("https://chg.example.com/changes/{id}|{id}")),
            "{}",
            chat[0].body
        );
    }
    // Mail: still one digest per person.
    assert_eq!(w.smtp.to("em@example.com").len(), 1);
    // A few events: one message each.
    file_high(&w.s);
    w.notify(&[]).ok();
    assert_eq!(w.http.at("/slack").len(), 2);
}

#[test]
fn routes_slipped_into_a_governed_policy_are_refused_not_followed() {
    let w = World::new();
    // Governance adopted (allowed while the policy has none), then a plain commit that
    // stops the approvers' mail.
    w.s.edit_policy("govern", |p| {
        format!("{p}governance:\n  roles: [security-team-lead]\n")
    });
    w.notify(&[]).ok();
    w.s.edit_policy("quietly drop the approvers' mail", |p| {
        p.replace("awaiting_approval: [mail, chat]", "awaiting_approval: []")
    });
    let out = w.notify(&[]).code(1);
    assert!(
        out.stderr
            .contains("changed the policy without `chg policy apply`"),
        "{}",
        out.stderr
    );
    assert!(w.smtp.got().is_empty() && w.http.got().is_empty());
}

/// `chg serve` sends what the history calls for within seconds of a state change made
/// anywhere (here a CLI user's), each event once, with the links the policy gives.
#[test]
fn chg_serve_sends_the_notifications_of_every_state_change_once() {
    let mut w = World::new();
    // The server reads the real clock: the CLI's steps are made at the same time.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    w.s.at(&now.to_string());
    let mut cmd =
        w.s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "ops@example.com");
    cmd.env_remove("CHG_NOW")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in w.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("chg: listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the server started");
    // A state change made beside the server, with the CLI.
    let id = file_high(&w.s);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (w.http.at("/slack").is_empty() || w.smtp.to("em@example.com").is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // The rest of the run's messages (the other approvers') delivered before the server
    // stops: a delivery cut off by the kill waits for its retry, as it should.
    let delivered = || w.smtp.got().len() + w.http.got().len();
    let mut last = delivered();
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        if delivered() == last {
            break;
        }
        last = delivered();
    }
    let _ = child.kill();
    let _ = child.wait();
    let chat = w.http.at("/slack");
    assert_eq!(chat.len(), 1, "{chat:?}");
    assert!(chat[0].body.contains(&id), "{}", chat[0].body);
    assert!(chat[0].body.contains("https://chg.example.com/changes/"));
    assert_eq!(w.smtp.to("em@example.com").len(), 1);
    // What the server delivered is not delivered again by the CLI.
    let out = w.notify(&[]).ok();
    assert_eq!(w.http.at("/slack").len(), 1, "{}", out.stderr);
    assert_eq!(w.smtp.to("em@example.com").len(), 1);
}

/// A decision is mailed to the requester as verified history knows them (who filed the
/// change), not to an address a plain-git edit wrote into `requester:`.
#[test]
fn a_decision_goes_to_the_verified_requester_not_a_hand_written_one() {
    let w = World::new();
    let id = file_high(&w.s);
    w.s.rewrite(&id, |t| {
        t.replace(
            "requester: alice@example.com",
            "requester: attacker@evil.example",
        )
    });
    w.s.git(&["commit", "-qam", "requester"]);
    approve_all(&w.s, &id);
    w.notify(&[]).ok();
    assert!(w.smtp.to("attacker@evil.example").is_empty());
    let mails = w.smtp.to("alice@example.com");
    assert!(mails.iter().any(|m| m.data.contains(&id)), "{mails:?}");
}
