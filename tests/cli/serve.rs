//! `chg serve` (SPEC section 12): a real server process on a free local port, driven over
//! HTTP as clients and attackers would; every answer checked against the store's commits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Store;

pub(crate) const BASE: &str = "/api/v1/change-management/change-requests";

/// A running `chg serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, as the server's clock has it (whole seconds): CLI steps in these tests act at the
/// same time as the server's, never before.
fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap()
        .to_string()
}

/// A store whose CLI clock is the real one (the server's): a CLI step beside the server
/// is never dated before one the server made a moment earlier.
fn store() -> Store {
    let mut s = Store::new();
    s.at("");
    s
}

impl Store {
    /// `chg serve --listen 127.0.0.1:0` with `extra` flags; waits for the bound address.
    pub(crate) fn serve(&self, extra: &[&str]) -> Server {
        let mut cmd = self.cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "alice@example.com",
        );
        cmd.env_remove("CHG_NOW")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.strip_prefix("chg: listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap().to_owned();
                    let _ = tx.send(Ok(addr));
                    sent = true;
                } else if !sent && line.starts_with("chg: error") {
                    let _ = tx.send(Err(line.clone()));
                    sent = true;
                }
                // The request logs must never hold a token or a cookie.
                assert!(!line.contains("chg_"), "a secret in the logs: {line}");
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server said where it listens")
            .expect("the server started");
        Server { child, addr }
    }

    /// A token for `email`, made with `chg token create`.
    pub(crate) fn token(&self, email: &str) -> String {
        let out = self
            .chg("alice@example.com", &["token", "create", email])
            .ok();
        let token = out.stdout.trim().to_owned();
        assert!(
            token.starts_with("chg_") && !token.contains('\n'),
            "{out:?}",
            out = out.stdout
        );
        token
    }

    fn token_id(&self, email: &str) -> String {
        let list = self
            .chg("alice@example.com", &["token", "list", "--json"])
            .ok();
        let v: Value = serde_json::from_str(&list.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .rfind(|t| t["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `git log` of the store: (author email, subject, Chg-Via) per commit, newest first.
    fn commits(&self) -> Vec<(String, String, String)> {
        self.git(&[
            "log",
            "--format=%ae%x1f%s%x1f%(trailers:key=Chg-Via,valueonly,separator=)%x1e",
        ])
        .split('\u{1e}')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut p = l.split('\u{1f}');
            (
                p.next().unwrap().to_owned(),
                p.next().unwrap().to_owned(),
                p.next().unwrap_or("").trim().to_owned(),
            )
        })
        .collect()
    }
}

pub(crate) struct Answer {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The error's rule, checking the error shape.
    fn rule(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{}", self.body);
        v["error"]["rule"].as_str().unwrap().to_owned()
    }
}

impl Server {
    /// One request: `token` as a bearer, `body` as JSON.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut headers = vec![];
        if let Some(t) = token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_owned()));
        }
        self.raw(
            method,
            path,
            &headers,
            body.as_deref().unwrap_or("").as_bytes(),
        )
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, Some(token), Some(body))
    }

    /// `POST …/{id}/approve` with `body`.
    fn approve(&self, id: &str, token: &str, body: Value) -> Answer {
        self.post(&format!("{BASE}/{id}/approve"), token, body)
    }

    /// A request written by hand on a fresh connection (HTTP/1.1, closed after).
    fn raw(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Answer {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        // A server may answer (413) before reading all of a huge body, and close.
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        parse_answer(&out)
    }
}

fn parse_answer(out: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        body,
        headers,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The seed's change request, with the fields the default policy also requires.
fn seed_change() -> Value {
    json!({
        "title": "Implement MFA for Admin Access",
        "description": "Add multi-factor authentication requirement",
        "change_type": "security",
        "priority": "medium",
        "affected_systems": ["authentication-service", "admin-ui"],
        "testing_required": true,
        "test_plan": "Test MFA enrollment and login flow",
        "business_justification": "Compliance requires MFA for administrators",
        "risk_level": "medium",
        "implementation_plan": "Deploy to staging, test, then production",
        "rollback_plan": "Disable the MFA requirement flag"
    })
}

#[test]
fn the_seeds_flow_through_the_api_one_commit_per_step_by_the_right_person() {
    let s = store();
    let alice = s.token("alice@example.com");
    let em = s.token("em@example.com");
    let cm = s.token("cm@example.com");
    let srv = s.serve(&[]);

    let a = srv.post(BASE, &alice, seed_change());
    assert_eq!(a.status, 201, "{}", a.body);
    let v = a.json();
    let id = v["change_request_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("CHG-"), "{v}");
    assert_eq!(v["status"], "pending_approval");
    assert_eq!(
        v["approvers"],
        json!(["engineering-manager", "change-manager"])
    );
    assert_eq!(v["estimated_approval_time"], "72h");

    // Lists and the change itself, as `chg show --json`.
    let list = srv.get(
        &format!("{BASE}?status=pending_approval&type=security&priority=medium&system=admin-ui"),
        &em,
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    assert_eq!(list.json()[0]["id"], id);
    let none = srv.get(&format!("{BASE}?priority=low"), &em).json();
    assert_eq!(none, json!([]));
    let waiting = srv.get(&format!("{BASE}?awaiting=me"), &em).json();
    assert_eq!(waiting[0]["id"], id, "the change awaits em");
    let shown = srv.get(&format!("{BASE}/{id}"), &em);
    assert_eq!(shown.status, 200);
    let cli: Value = serde_json::from_str(
        &s.chg("alice@example.com", &["show", &id, "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(shown.json(), cli, "the API's change is `chg show --json`");

    let d = srv.approve(&id, &em,
        json!({"approved": true, "comments": "Approved - aligns with compliance", "conditions": ["MFA must be tested in staging before production"]}),
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let d = d.json();
    assert_eq!(d["change_request_id"], id);
    assert_eq!(d["status"], "pending_approval");
    assert_eq!(d["approved_by"], "engineering-manager");
    assert!(d["approved_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(d["next_step"], "approval");
    let d = srv.approve(&id, &cm, json!({"approved": true}));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["status"], "approved");
    assert_eq!(d.json()["next_step"], "implementation");

    let gate = srv.get(&format!("{BASE}/{id}/gate"), &alice).json();
    assert_eq!(gate["open"], false, "not scheduled: {gate}");
    assert_eq!(gate["reasons"][0]["rule"], "unscheduled");

    // A window already over is refused as a whole: no schedule commit is left behind.
    let before = s.commits().len();
    let past = srv.post(
        &format!("{BASE}/{id}/implement"),
        &alice,
        json!({"scheduled_time": "1969-01-01T00:00:00Z"}),
    );
    assert_eq!(past.status, 409, "{}", past.body);
    assert_eq!(s.commits().len(), before, "nothing committed");

    let i = srv.post(
        &format!("{BASE}/{id}/implement"),
        &alice,
        json!({"implementation_plan": "Deploy to staging, test, then production", "scheduled_time": now(), "maintenance_window": false}),
    );
    assert_eq!(i.status, 200, "{}", i.body);
    let i = i.json();
    assert_eq!(i["status"], "implementing");
    assert!(i["implementation_started"].is_string() && i["estimated_completion"].is_string());
    let gate = srv.get(&format!("{BASE}/{id}/gate"), &alice).json();
    assert_eq!(gate, json!({"open": true, "reasons": []}));

    let c = srv.post(
        &format!("{BASE}/{id}/complete"),
        &alice,
        json!({"status": "completed", "test_results": "All tests passed", "post_implementation_review": "No issues detected"}),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let c = c.json();
    assert_eq!(c["status"], "completed");
    assert!(
        c["completed_at"].is_string() && c["next_review"].is_string(),
        "{c}"
    );

    let h = srv.get(&format!("{BASE}/{id}/history"), &alice).json();
    assert_eq!(h["change_id"], id);
    let actions: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "created",
            "approved",
            "approved",
            "scheduled",
            "implemented",
            "completed"
        ]
    );
    for e in h["history"].as_array().unwrap() {
        assert!(e["timestamp"].is_string() && e["user"].is_string() && e["details"].is_string());
    }

    let period = &now()[..7];
    let r = srv.get(
        &format!("/api/v1/change-management/reports?period={period}"),
        &alice,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = r.json();
    assert_eq!(r["total_changes"], 1);
    for f in [
        "by_status",
        "by_priority",
        "by_type",
        "average_approval_time",
        "average_implementation_time",
    ] {
        assert!(r.get(f).is_some(), "{f} in {r}");
    }
    assert_eq!(r["by_type"]["security"], 1);

    let doc = srv.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "",
        "/{id}",
        "/{id}/approve",
        "/{id}/implement",
        "/{id}/complete",
        "/{id}/history",
        "/{id}/gate",
        "/{id}/statement",
    ] {
        assert!(
            doc["paths"].get(format!("{BASE}{p}")).is_some(),
            "{p} documented"
        );
    }
    assert!(
        doc["paths"]
            .get("/api/v1/change-management/reports")
            .is_some()
    );

    // One commit per step, each by the person the token names, each saying it came
    // through the API with which token.
    let commits = s.commits();
    let want = [
        ("alice@example.com", "close", "alice"),
        ("alice@example.com", "implement", "alice"),
        ("alice@example.com", "schedule", "alice"),
        ("cm@example.com", "approve (change-manager)", "cm"),
        ("em@example.com", "approve (engineering-manager)", "em"),
        ("alice@example.com", "new: Implement MFA", "alice"),
    ];
    for ((email, subject, who), got) in want.iter().zip(&commits) {
        assert_eq!(&got.0, email, "{got:?}");
        assert!(got.1.starts_with(&format!("{id}: {subject}")), "{got:?}");
        let tid = s.token_id(&format!("{who}@example.com"));
        assert_eq!(got.2, format!("api token={tid}"), "{got:?}");
    }
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn refusals_answer_with_the_specs_status_codes_and_never_500() {
    let s = store();
    let alice = s.token("alice@example.com");
    let em = s.token("em@example.com");
    let bob = s.token("bob@example.com");
    let srv = s.serve(&[]);
    let id = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = s.commits().len();

    // 400, not 500: a NUL in any text (it cannot be kept in a file or a commit).
    let mut nul = seed_change();
    nul["title"] = serde_json::json!("a\u{0}b");
    let a = srv.post(BASE, &alice, nul);
    assert_eq!((a.status, a.rule().as_str()), (400, "title"), "{}", a.body);
    let a = srv.approve(
        &id,
        &em,
        serde_json::json!({"approved": true, "conditions": ["x\u{0}"]}),
    );
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "conditions"),
        "{}",
        a.body
    );
    assert_eq!(s.commits().len(), before);

    // 401: no token, a wrong one, a malformed header.
    let a = srv.call("GET", BASE, None, None);
    assert_eq!((a.status, a.rule().as_str()), (401, "authentication"));
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    assert_eq!(srv.get(BASE, "chg_not-a-token").status, 401);
    let a = srv.raw(
        "GET",
        BASE,
        &[("Authorization", "Basic Zm9vOmJhcg==".into())],
        b"",
    );
    assert_eq!(a.status, 401);

    // 403: the requester approving their own change; someone without the role.
    let a = srv.approve(&id, &alice, json!({"approved": true}));
    assert_eq!(a.status, 403, "{}", a.body);
    let a = srv.approve(&id, &bob, json!({"approved": true}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "approval-role"),
        "{}",
        a.body
    );
    // 409: the life cycle refuses.
    let a = srv.post(
        &format!("{BASE}/{id}/complete"),
        &alice,
        json!({"status": "completed"}),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    let a = srv.post(&format!("{BASE}/{id}/implement"), &alice, json!({}));
    assert_eq!(a.status, 409, "{}", a.body);
    // 404: no such change; 400: not an id at all (a path, a traversal).
    let a = srv.get(&format!("{BASE}/CHG-2020-999"), &em);
    assert_eq!((a.status, a.rule().as_str()), (404, "not-found"));
    for bad in [
        "..%2F..%2Fpolicy%2Fpolicy.yaml",
        "CHG-2025-001.yaml",
        "%2e%2e",
        "CHG-2025-1",
    ] {
        let a = srv.get(&format!("{BASE}/{bad}"), &em);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert_eq!(a.rule(), "id");
    }
    let a = srv.get(&format!("{BASE}/../../etc/passwd"), &em);
    // Not an id route at all: no such endpoint.
    assert_eq!(
        (a.status, a.rule().as_str()),
        (404, "not-found"),
        "{}",
        a.body
    );
    // 400: malformed JSON, a field of the wrong type (named), an unknown field, a bad value.
    let a = srv.raw(
        "POST",
        &format!("{BASE}/{id}/approve"),
        &[
            ("Authorization", format!("Bearer {em}")),
            ("Content-Type", "application/json".into()),
        ],
        b"{\"approved\": tru",
    );
    assert_eq!((a.status, a.rule().as_str()), (400, "body"), "{}", a.body);
    let a = srv.approve(&id, &em, json!({"approved": "yes"}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "approved"),
        "{}",
        a.body
    );
    let a = srv.post(BASE, &alice, json!({"title": "x", "colour": "red"}));
    assert_eq!(a.status, 400);
    assert!(a.body.contains("colour"), "{}", a.body);
    let mut bad = seed_change();
    bad["priority"] = json!("urgent");
    let a = srv.post(BASE, &alice, bad);
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "priority"),
        "{}",
        a.body
    );
    let a = srv.post(BASE, &alice, json!({"title": "Only a title"}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "required"),
        "{}",
        a.body
    );
    assert!(a.body.contains("rollback_plan"), "{}", a.body);
    let a = srv.approve(&id, &em, json!({"approved": false}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "comments"),
        "a rejection says why"
    );
    let a = srv.get(&format!("{BASE}?status=nonsense"), &em);
    assert_eq!((a.status, a.rule().as_str()), (400, "status"));
    let a = srv.get(&format!("{BASE}?limit=-1"), &em);
    assert_eq!(a.status, 400);
    let a = srv.get("/api/v1/change-management/reports?period=2025-13", &em);
    assert_eq!((a.status, a.rule().as_str()), (400, "period"));
    // 415: not JSON.
    let a = srv.raw(
        "POST",
        &format!("{BASE}/{id}/approve"),
        &[
            ("Authorization", format!("Bearer {em}")),
            ("Content-Type", "text/plain".into()),
        ],
        b"{\"approved\": true}",
    );
    assert_eq!(
        (a.status, a.rule().as_str()),
        (415, "content-type"),
        "{}",
        a.body
    );
    // 413: a body over 1 MB, declared or not.
    let huge = format!(
        "{{\"approved\": true, \"comments\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let a = srv.raw(
        "POST",
        &format!("{BASE}/{id}/approve"),
        &[
            ("Authorization", format!("Bearer {em}")),
            ("Content-Type", "application/json".into()),
        ],
        huge.as_bytes(),
    );
    assert_eq!(a.status, 413, "{}", a.body);
    // 404 for what the server does not have.
    assert_eq!(srv.get("/api/v1/nothing", &em).status, 404);
    // Nothing above changed the store.
    assert_eq!(s.commits().len(), before);
    // A good request still works.
    assert_eq!(srv.approve(&id, &em, json!({"approved": true})).status, 200);
}

#[test]
fn a_revoked_or_expired_token_is_refused_at_once_and_failures_are_rate_limited() {
    let mut s = store();
    let em = s.token("em@example.com");
    let out = s
        .chg(
            "alice@example.com",
            &["token", "create", "cm@example.com", "--expires", "1s"],
        )
        .ok();
    let short = out.stdout.trim().to_owned();
    let srv = s.serve(&[]);
    assert_eq!(srv.get(BASE, &em).status, 200);
    s.chg(
        "alice@example.com",
        &["token", "revoke", &s.token_id("em@example.com")],
    )
    .ok();
    let a = srv.get(BASE, &em);
    assert_eq!((a.status, a.rule().as_str()), (401, "authentication"));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(srv.get(BASE, &short).status, 401, "expired");
    s.at(&now());
    let list = s.chg("alice@example.com", &["token", "list"]).ok().stdout;
    assert!(
        list.contains("revoked") && list.contains("expired"),
        "{list}"
    );
    assert!(!list.contains(&em), "the token itself is never shown again");
    // Only hashes are kept.
    let kept = std::fs::read_to_string(s.root().join(".git/chg/tokens.json")).unwrap();
    assert!(!kept.contains(&em) && !kept.contains(&short));
    // Repeated failures: 429 from then on, even with a good token.
    let good = s.token("sec1@example.com");
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(srv.get(BASE, "chg_guess").status);
    }
    assert!(codes.contains(&429), "{codes:?}");
    let a = srv.get(BASE, &good);
    assert_eq!((a.status, a.rule().as_str()), (429, "rate-limit"));
}

#[test]
fn fifty_parallel_writes_lose_nothing_and_each_commit_is_its_persons() {
    let s = store();
    let people = ["alice", "em", "cm", "sec1", "sec2"];
    let tokens: Vec<(String, String)> = people
        .iter()
        .map(|p| {
            (
                format!("{p}@example.com"),
                s.token(&format!("{p}@example.com")),
            )
        })
        .collect();
    let srv = s.serve(&[]);
    let before = s.commits().len();
    let answers: Vec<(String, Answer)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (email, token) = tokens[i % tokens.len()].clone();
                let srv = &srv;
                scope.spawn(move || {
                    let mut c = seed_change();
                    c["title"] = json!(format!("Parallel change {i}"));
                    (email, srv.post(BASE, &token, c))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = std::collections::BTreeSet::new();
    for (_, a) in &answers {
        assert_eq!(a.status, 201, "{}", a.body);
        ids.insert(a.json()["change_request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 50, "fifty distinct ids");
    let commits = s.commits();
    assert_eq!(commits.len(), before + 50, "one commit each");
    for (email, a) in &answers {
        let id = a.json()["change_request_id"].as_str().unwrap().to_owned();
        let c = commits
            .iter()
            .find(|c| c.1.starts_with(&format!("{id}: new")))
            .unwrap();
        assert_eq!(&c.0, email, "{id} authored by whoever filed it");
    }
    let list = srv.get(&format!("{BASE}?limit=1000"), &tokens[0].1);
    assert_eq!(list.header("x-total-count"), Some("50"));
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn killed_during_a_burst_the_store_stays_consistent_and_serves_again() {
    let s = store();
    let alice = s.token("alice@example.com");
    let mut srv = s.serve(&[]);
    let answered: Vec<Option<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let (srv, alice) = (&srv, &alice);
                scope.spawn(move || {
                    let mut c = seed_change();
                    c["title"] = json!(format!("Burst {i}"));
                    let body = c.to_string();
                    let Ok(mut st) = TcpStream::connect(&srv.addr) else {
                        return None;
                    };
                    let req = format!(
                        "POST {BASE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    st.write_all(req.as_bytes()).ok()?;
                    let mut out = Vec::new();
                    st.read_to_end(&mut out).ok()?;
                    let text = String::from_utf8_lossy(&out).into_owned();
                    (text.starts_with("HTTP/1.1 201")).then(|| parse_answer(&out).json()["change_request_id"].as_str().unwrap().to_owned())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        // kill -9, mid-burst.
        let killed = Command::new("kill")
            .args(["-9", &srv.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let _ = srv.child.wait();
    // Every id the server answered 201 for is committed; the store checks clean.
    let listed = s.chg("alice@example.com", &["list", "--json"]).ok().stdout;
    for id in answered.iter().flatten() {
        assert!(
            listed.contains(id.as_str()),
            "{id} was answered, so it is there"
        );
    }
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    let srv = s.serve(&[]);
    let a = srv.post(BASE, &alice, seed_change());
    assert_eq!(a.status, 201, "{}", a.body);
    s.chg("alice@example.com", &["audit"]).ok();
}

/// Signs in through the form: the session cookie.
fn sign_in(srv: &Server, token: &str) -> String {
    let a = srv.raw(
        "POST",
        "/signin",
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        format!("token={token}&next=/").as_bytes(),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let cookie = a.header("set-cookie").unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[test]
fn the_pages_sign_in_show_what_waits_and_decide_only_with_the_sessions_csrf_token() {
    let s = store();
    let alice = s.token("alice@example.com");
    let em = s.token("em@example.com");
    let srv = s.serve(&[]);
    let id = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without a session: to the sign-in page, keeping the deep link.
    let a = srv.raw("GET", &format!("/changes/{id}"), &[], b"");
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        Some(format!("/signin?next=/changes/{id}").as_str())
    );
    assert_eq!(srv.raw("GET", "/signin", &[], b"").status, 200);
    let a = srv.raw(
        "POST",
        "/signin",
        &[("Content-Type", "application/x-www-form-urlencoded".into())],
        b"token=chg_wrong",
    );
    assert_eq!(a.status, 401);
    // A sign-in posted from another site is refused.
    let a = srv.raw(
        "POST",
        "/signin",
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("Sec-Fetch-Site", "cross-site".into()),
        ],
        format!("token={em}").as_bytes(),
    );
    assert_eq!(a.status, 403);

    let cookie = sign_in(&srv, &em);
    let with = |extra: &[(&'static str, String)]| {
        let mut h = vec![("Cookie", cookie.clone())];
        h.extend(extra.iter().cloned());
        h
    };
    let home = srv.raw("GET", "/", &with(&[]), b"");
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("Waiting for me") && home.body.contains(&id),
        "{}",
        home.body
    );
    for page in [
        "/changes",
        "/changes?status=pending_approval&priority=medium",
        "/cab",
        "/calendar",
        "/report",
        &format!("/report?period={}", &now()[..7]),
    ] {
        let a = srv.raw("GET", page, &with(&[]), b"");
        assert_eq!(a.status, 200, "{page}: {}", a.body);
        assert!(a.body.contains("width=device-width"), "readable on a phone");
    }
    assert!(
        srv.raw("GET", "/report", &with(&[]), b"")
            .body
            .contains("<svg")
    );
    let a = srv.raw("GET", "/changes?status=bogus", &with(&[]), b"");
    assert_eq!(a.status, 400);
    let page = srv.raw("GET", &format!("/changes/{id}"), &with(&[]), b"");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("engineering-manager") && page.body.contains("Approve"));
    let csrf = csrf_of(&page.body);
    let form = |csrf: &str| {
        format!("csrf={csrf}&decision=approve&role=engineering-manager&comments=fine&conditions=")
    };
    let post = |headers: &[(&'static str, String)], body: String| {
        let mut h = with(headers);
        h.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        srv.raw(
            "POST",
            &format!("/changes/{id}/decide"),
            &h,
            body.as_bytes(),
        )
    };
    let before = s.commits().len();
    // Missing and forged CSRF tokens, another site, another origin: refused, nothing written.
    assert_eq!(
        post(&[], "decision=approve&role=engineering-manager".into()).status,
        403
    );
    assert_eq!(post(&[], form("forged")).status, 403);
    assert_eq!(
        post(&[("Sec-Fetch-Site", "cross-site".into())], form(&csrf)).status,
        403
    );
    assert_eq!(
        post(&[("Origin", "https://evil.example".into())], form(&csrf)).status,
        403
    );
    assert_eq!(s.commits().len(), before);
    // The session's own token, from its own pages: one commit by em, through the web.
    let origin = format!("http://localhost:{}", srv.addr.rsplit(':').next().unwrap());
    let a = post(
        &[("Sec-Fetch-Site", "same-origin".into()), ("Origin", origin)],
        form(&csrf),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let back = a.header("location").unwrap().to_owned();
    assert!(
        back.starts_with(&format!("/changes/{id}?decided=")),
        "{back}"
    );
    let a = srv.raw("GET", &back, &with(&[]), b"");
    assert!(a.body.contains("Your decision is recorded"), "{}", a.body);
    let commits = s.commits();
    assert_eq!(commits.len(), before + 1);
    assert_eq!(commits[0].0, "em@example.com");
    assert!(commits[0].1.contains("approve (engineering-manager)"));
    assert_eq!(
        commits[0].2,
        format!("web token={}", s.token_id("em@example.com"))
    );

    // The token revoked: the session replayed is signed out at once, nothing written.
    s.chg(
        "alice@example.com",
        &["token", "revoke", &s.token_id("em@example.com")],
    )
    .ok();
    let a = srv.raw("GET", "/", &with(&[]), b"");
    assert_eq!(a.status, 303, "{}", a.body);
    let a = post(&[], form(&csrf));
    assert_eq!(a.status, 303);
    assert_eq!(s.commits().len(), before + 1);
}

#[test]
fn a_slow_client_neither_blocks_others_nor_holds_a_request_past_the_timeout() {
    let s = store();
    let em = s.token("em@example.com");
    let srv = s.serve(&["--timeout", "2"]);
    // Headers sent a byte at a time, a body announced and never sent.
    let mut slow = TcpStream::connect(&srv.addr).unwrap();
    slow.write_all(b"GET / HT").unwrap();
    let mut stalled = TcpStream::connect(&srv.addr).unwrap();
    stalled
        .write_all(
            format!(
                "POST {BASE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {em}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .unwrap();
    let t = Instant::now();
    assert_eq!(srv.get(BASE, &em).status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "others are answered meanwhile"
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let _ = stalled.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // Headers never finished: the connection is closed (after 10 s), not held forever.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    let closed = slow.read_to_end(&mut out).is_ok();
    assert!(
        closed && t.elapsed() < Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn two_servers_on_one_remote_sync_every_step_before_answering() {
    let s1 = store();
    let remote = s1.dir.path().join("remote.git");
    let git = |dir: &std::path::Path, args: &[&str]| {
        let o = Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(
        s1.dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    s1.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    s1.git(&["push", "-q", "-u", "origin", "main"]);
    let s2 = store();
    std::fs::remove_dir_all(s2.root()).unwrap();
    git(
        s2.dir.path(),
        &["clone", "-q", remote.to_str().unwrap(), "repo"],
    );
    let alice = s1.token("alice@example.com");
    let cm = s1.token("cm@example.com");
    let em = s2.token("em@example.com");
    let a = s1.serve(&["--remote", "origin"]);
    let b = s2.serve(&["--remote", "origin"]);
    let id = a.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Server B has never seen the change: it syncs before judging the step.
    let d = b.approve(&id, &em, json!({"approved": true}));
    assert_eq!(d.status, 200, "{}", d.body);
    let d = a.approve(&id, &cm, json!({"approved": true}));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["status"], "approved", "A saw B's approval first");
    // The remote has every step, each by its person.
    let log = Command::new("git")
        .current_dir(&remote)
        .args(["log", "--format=%ae %s", "main"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    let lines: Vec<&str> = log.lines().take(3).collect();
    assert!(
        lines[0].starts_with(&format!("cm@example.com {id}: approve")),
        "{log}"
    );
    assert!(
        lines[1].starts_with(&format!("em@example.com {id}: approve")),
        "{log}"
    );
    assert!(
        lines[2].starts_with(&format!("alice@example.com {id}: new")),
        "{log}"
    );
    s2.chg("alice@example.com", &["sync"]).ok();
    s2.chg("alice@example.com", &["audit"]).ok();
}

/// `ssh-keygen -Y sign -n chg` of `text` with `key`: the armored signature.
fn ssh_sign(s: &Store, key: &std::path::Path, text: &str) -> String {
    let file = s.dir.path().join("statement.txt");
    std::fs::write(&file, text).unwrap();
    let _ = std::fs::remove_file(file.with_extension("txt.sig"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "chg", "-f"])
        .arg(key)
        .arg(&file)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read_to_string(file.with_extension("txt.sig")).unwrap()
}

#[test]
fn an_api_client_signs_the_statement_it_is_handed_with_its_own_key() {
    let s = store();
    let (em_key, cm_key, bob_key) = (s.keygen("em"), s.keygen("cm"), s.keygen("bob"));
    s.enable_signing(
        &[("em@example.com", &em_key), ("cm@example.com", &cm_key)],
        &[],
    );
    let alice = s.token("alice@example.com");
    let em = s.token("em@example.com");
    let cm = s.token("cm@example.com");
    let srv = s.serve(&[]);
    let id = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = s.commits().len();
    let approve = format!("{BASE}/{id}/approve");
    // Unsigned where the policy requires signatures: 403, nothing written.
    let a = srv.post(&approve, &em, json!({"approved": true}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "signature"),
        "{}",
        a.body
    );

    let st = srv.get(
        &format!("{BASE}/{id}/statement?action=approve&role=engineering-manager"),
        &em,
    );
    assert_eq!(st.status, 200, "{}", st.body);
    let st = st.json();
    let text = st["statement"].as_str().unwrap().to_owned();
    assert!(text.starts_with("chg signed record v1\n") && text.contains("actor: em@example.com"));
    use base64::Engine;
    let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(st["signed_data"].as_str().unwrap())
        .unwrap();
    assert!(
        blob.starts_with(b"SSHSIG\0\0\0\x03chg"),
        "the SSHSIG signed-data blob"
    );
    let at = st["at"].as_str().unwrap().to_owned();

    // Another person's key, another statement, garbage: refused, nothing written.
    let a = srv.post(
        &approve,
        &em,
        json!({"approved": true, "signature": ssh_sign(&s, &bob_key, &text), "at": at}),
    );
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "signature"),
        "{}",
        a.body
    );
    let a = srv.post(&approve, &em, json!({"approved": true, "signature": ssh_sign(&s, &em_key, &text.replace("approve", "reject")), "at": at}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "signature"),
        "{}",
        a.body
    );
    let a = srv.post(&approve, &em, json!({"approved": true, "signature": "-----BEGIN SSH SIGNATURE-----\nnope\n-----END SSH SIGNATURE-----", "at": at}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (400, "signature"),
        "{}",
        a.body
    );
    let a = srv.post(
        &approve,
        &em,
        json!({"approved": true, "signature": ssh_sign(&s, &em_key, &text)}),
    );
    assert_eq!((a.status, a.rule().as_str()), (400, "at"), "{}", a.body);
    assert_eq!(s.commits().len(), before);

    // em's own signature over the statement handed out: recorded, and it verifies.
    let a = srv.post(
        &approve,
        &em,
        json!({"approved": true, "signature": ssh_sign(&s, &em_key, &text), "at": at}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["approved_at"], at);
    // cm cannot use em's statement, even signed with cm's own key.
    let a = srv.post(
        &approve,
        &cm,
        json!({"approved": true, "signature": ssh_sign(&s, &cm_key, &text), "at": at}),
    );
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "signature"),
        "{}",
        a.body
    );
    let st = srv
        .get(&format!("{BASE}/{id}/statement?action=approve"), &cm)
        .json();
    let sig = ssh_sign(&s, &cm_key, st["statement"].as_str().unwrap());
    let a = srv.post(
        &approve,
        &cm,
        json!({"approved": true, "signature": sig, "at": st["at"]}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "approved");
    assert_eq!(s.commits().len(), before + 2);
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    let shown = srv.get(&format!("{BASE}/{id}"), &em).json();
    assert!(
        shown["approvals"][0]["signature"]
            .as_str()
            .unwrap()
            .contains("BEGIN SSH SIGNATURE")
    );
    // The statement of a step the life cycle no longer allows is refused as the step would be.
    let a = srv.get(&format!("{BASE}/{id}/statement?action=approve"), &alice);
    assert_eq!(
        (a.status, a.rule().as_str()),
        (409, "lifecycle"),
        "{}",
        a.body
    );
    let a = srv.get(&format!("{BASE}/{id}/statement?action=deploy"), &em);
    assert_eq!(a.status, 400);
}

#[test]
fn sigterm_finishes_the_requests_in_flight_then_stops() {
    let s = store();
    let alice = s.token("alice@example.com");
    let mut srv = s.serve(&[]);
    let before = s.commits().len();
    let answers: Vec<Option<u16>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (srv, alice) = (&srv, &alice);
                scope.spawn(move || {
                    let mut c = seed_change();
                    c["title"] = json!(format!("Term {i}"));
                    let body = c.to_string();
                    let mut st = TcpStream::connect(&srv.addr).ok()?;
                    let req = format!(
                        "POST {BASE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    st.write_all(req.as_bytes()).ok()?;
                    let mut out = Vec::new();
                    st.read_to_end(&mut out).ok()?;
                    (!out.is_empty()).then(|| parse_answer(&out).status)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let sent = Command::new("kill")
            .args(["-TERM", &srv.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "a clean exit: {status:?}");
    // Every request the server took was answered, and each 201 is exactly one commit.
    let created = answers.iter().filter(|a| **a == Some(201)).count();
    assert!(answers.iter().flatten().all(|a| *a == 201), "{answers:?}");
    assert_eq!(s.commits().len(), before + created, "{answers:?}");
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn a_step_taken_with_the_cli_is_seen_by_the_next_read() {
    let s = store();
    let alice = s.token("alice@example.com");
    let srv = s.serve(&[]);
    let id = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = srv
        .get(&format!("{BASE}?status=pending_approval"), &alice)
        .json();
    assert_eq!(pending[0]["id"], id);
    // Steps and a new change made beside the server, by the CLI: HEAD moves under it.
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    let other = s.new_change(&[]);
    let approved = srv.get(&format!("{BASE}?status=approved"), &alice).json();
    assert_eq!(approved[0]["id"], id, "{approved}");
    assert_eq!(approved[0]["approvals"].as_array().unwrap().len(), 2);
    let pending = srv
        .get(&format!("{BASE}?status=pending_approval"), &alice)
        .json();
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["id"], other);
    let r = srv.get("/api/v1/change-management/reports", &alice).json();
    assert_eq!(r["total_changes"], 2);
}

/// Signing in goes back only to a page of this server: a `next` that becomes another
/// site's address once its odd characters are stripped (`/\/evil.example/`) goes to `/`.
#[test]
fn signing_in_never_redirects_to_another_site() {
    let s = store();
    let em = s.token("em@example.com");
    let srv = s.serve(&[]);
    for next in [
        "/%5C/evil.example/",
        "//evil.example/",
        "/%09/evil.example/",
        "https://evil.example/",
    ] {
        let a = srv.raw(
            "POST",
            "/signin",
            &[("Content-Type", "application/x-www-form-urlencoded".into())],
            format!("token={em}&next={next}").as_bytes(),
        );
        assert_eq!(a.status, 303, "{}", a.body);
        assert_eq!(a.header("location"), Some("/"), "{next}");
        let page = srv.raw("GET", &format!("/signin?next={next}"), &[], b"");
        assert!(!page.body.contains("value=\"//"), "{next}: {}", page.body);
    }
}

#[test]
fn the_server_attests_a_decision_only_where_the_policy_lets_it_and_says_so_everywhere() {
    let s = store();
    let (em_key, cm_key, srv_key) = (s.keygen("em"), s.keygen("cm"), s.keygen("server"));
    s.enable_signing(
        &[
            ("em@example.com", &em_key),
            ("cm@example.com", &cm_key),
            ("chg-server@example.com", &srv_key),
        ],
        &[],
    );
    s.edit_policy("let the server attest engineering managers' decisions", |t| {
        format!("{t}  server_attests: {{roles: [engineering-manager], max_risk: medium, signer: chg-server@example.com}}\n")
    });
    let alice = s.token("alice@example.com");
    let em = s.token("em@example.com");
    let cm = s.token("cm@example.com");
    let srv = s.serve(&["--attest-key", srv_key.to_str().unwrap()]);
    let id = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = format!("{BASE}/{id}/approve");
    let before = s.commits().len();

    // The change page tells em that a plain Approve is attested by the server.
    let cookie = sign_in(&srv, &em);
    let page = srv.raw("GET", &format!("/changes/{id}"), &[("Cookie", cookie)], b"");
    assert!(
        page.body
            .contains("recorded as attested by this server, not signed by you"),
        "{}",
        page.body
    );

    // cm's role is not one the server may attest: 403, nothing written.
    let a = srv.post(&approve, &cm, json!({"approved": true}));
    assert_eq!(
        (a.status, a.rule().as_str()),
        (403, "signature"),
        "{}",
        a.body
    );
    assert!(a.body.contains("server_attests"), "{}", a.body);
    assert_eq!(s.commits().len(), before);

    // em's is, on a medium-risk change: attested by the server's key, marked as such.
    let a = srv.post(&approve, &em, json!({"approved": true}));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["proof"], "attested");
    let text = s.read(&id);
    assert!(
        text.contains("attested_by: chg-server@example.com"),
        "{text}"
    );
    let em_id = s.token_id("em@example.com");
    assert!(
        text.contains(&format!("attested_via: api token={em_id}")),
        "{text}"
    );
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    let shown = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        shown.contains("attested by chg-server@example.com")
            && shown.contains("not the person's signature"),
        "{shown}"
    );

    let v: Value = serde_json::from_str(
        &s.chg("alice@example.com", &["show", &id, "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["approvals"][0]["attested_by"], "chg-server@example.com");
    assert_eq!(v["signatures"][0]["valid"], true, "{v}");
    assert!(
        v["signatures"][0]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("attested by chg-server@example.com"),
        "{v}"
    );
    // Plain ssh-keygen verifies it as the server's signature of the attested statement.
    let change = chg::decode::decode_str("c.yaml", &text).change;
    let record = chg::signing::records(&change).into_iter().next().unwrap();
    assert!(record.statement.text().contains("attested-via: api token="));
    let allowed = std::fs::read_to_string(s.root().join("policy/allowed_signers")).unwrap();
    let (ok, said) = super::passkey::ssh_keygen_verifies(
        s.dir.path(),
        &allowed,
        "chg-server@example.com",
        record.signature.unwrap(),
        record.statement.text().as_bytes(),
    );
    assert!(ok, "{said}");

    // The evidence pack says where the server could sign in a person's stead.
    let pack = s.dir.path().join("pack");
    s.chg(
        "alice@example.com",
        &[
            "audit",
            "export",
            "--since",
            "2020-01-01",
            "--until",
            "2040-01-01",
            "--out",
            pack.to_str().unwrap(),
        ],
    )
    .ok();
    let controls = std::fs::read_to_string(pack.join("controls.md")).unwrap();
    assert!(
        controls.contains(
            "chg serve could sign decisions of engineering-manager on changes of risk up to medium"
        ),
        "{controls}"
    );

    let audit = s.chg("alice@example.com", &["audit"]).ok().stdout;
    assert!(
        audit.contains(
            "chg serve may sign decisions of engineering-manager on changes of risk up to medium"
        ),
        "{audit}"
    );

    // A plain-git edit of how the person was authenticated breaks the server's signature.
    s.rewrite(&id, |t| {
        t.replace(&format!("api token={em_id}"), "api token=tok_forged")
    });
    s.git(&["commit", "-qam", "reword the attestation"]);
    let r = s.chg("alice@example.com", &["validate", &id]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("signature"), "{}", r.stdout);
    s.git(&["reset", "-q", "--hard", "HEAD~1"]);

    // A policy without server_attests for the role: the same record no longer counts.
    s.edit_policy("the server attests nothing", |t| {
        t.replace(
            "roles: [engineering-manager], max_risk: medium",
            "roles: [change-manager], max_risk: medium",
        )
    });
    let r = s.chg("alice@example.com", &["validate", &id]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("does not name the role engineering-manager"),
        "{}",
        r.stdout
    );
}

/// Helper-18's F2: a person's key listed as the server's attesting key lets that person
/// write attested decisions in anyone's name. The policy check refuses such a list, and
/// every reader refuses a record attested with a key that is also a person's.
#[test]
fn a_persons_key_is_never_the_servers_attesting_key() {
    let s = store();
    let (em_key, cm_key, alice_key) = (s.keygen("em"), s.keygen("cm"), s.keygen("alice"));
    s.enable_signing(
        &[
            ("em@example.com", &em_key),
            ("cm@example.com", &cm_key),
            ("alice@example.com", &alice_key),
            ("chg-server@example.com", &alice_key),
        ],
        &[],
    );
    s.edit_policy("let the server attest", |t| {
        format!("{t}  server_attests: {{roles: [engineering-manager], max_risk: medium, signer: chg-server@example.com}}\n")
    });
    // No command acts on a policy whose attesting key is a person's.
    let r = s.chg("alice@example.com", &["validate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("must be the server's own"),
        "{}",
        r.stdout
    );
    let r = s.chg("alice@example.com", &["list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("must be the server's own"),
        "{}",
        r.stderr
    );
}

/// What the server keeps of verified history between reads (who filed each change in
/// approval and who made its content, by the audit index's files) follows every step taken
/// beside it: the next "waiting for me" and gate answer as the CLI does, and a damaged
/// audit index changes no answer.
#[test]
fn what_the_server_keeps_of_history_follows_steps_taken_beside_it() {
    let s = store();
    let alice = s.token("alice@example.com");
    let cm = s.token("cm@example.com");
    let srv = s.serve(&[]);
    let ids = |a: Answer| -> Vec<String> {
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let cli_waiting = |who: &str| -> Vec<String> {
        let out = s
            .chg(who, &["list", "--awaiting-me", "--format", "csv"])
            .ok()
            .stdout;
        out.lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect()
    };
    let gates_agree = |id: &str| {
        let cli: Value =
            serde_json::from_str(&s.chg("alice@example.com", &["gate", id, "--json"]).stdout)
                .unwrap();
        let api = srv.get(&format!("{BASE}/{id}/gate"), &alice).json();
        assert_eq!(api["open"], cli["open"], "{api} {cli}");
        assert_eq!(api["reasons"], cli["reasons"], "{api} {cli}");
    };
    let a = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = ids(srv.get(&format!("{BASE}?awaiting=me"), &cm));
    assert_eq!(waiting, [a.clone(), b.clone()]);
    gates_agree(&a);

    // cm makes a's content with the CLI: segregation of duties takes a from cm's list.
    s.chg(
        "cm@example.com",
        &["set", &a, "rollback_plan=Restore the backup"],
    )
    .ok();
    let waiting = ids(srv.get(&format!("{BASE}?awaiting=me"), &cm));
    assert_eq!(waiting, [b.as_str()]);
    assert_eq!(waiting, cli_waiting("cm@example.com"));
    let home = srv.raw("GET", "/", &[("Cookie", sign_in(&srv, &cm))], b"");
    assert!(
        home.body.contains(&b) && !home.body.contains(&a),
        "{}",
        home.body
    );

    // Approvals beside the server: the gate sees them at once.
    s.chg("em@example.com", &["approve", &b]).ok();
    s.chg("cm@example.com", &["approve", &b]).ok();
    gates_agree(&b);
    assert!(ids(srv.get(&format!("{BASE}?awaiting=me"), &cm)).is_empty());

    // Asked lately, cm's "waiting for me" is computed again in the background once HEAD
    // settles: what cm then gets is the new HEAD's, after a step through the server and
    // after steps beside it.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(2500));
    let d = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    settle();
    assert_eq!(
        ids(srv.get(&format!("{BASE}?awaiting=me"), &cm)),
        [d.as_str()]
    );
    s.chg("em@example.com", &["approve", &d]).ok();
    s.chg("cm@example.com", &["approve", &d]).ok();
    settle();
    assert!(ids(srv.get(&format!("{BASE}?awaiting=me"), &cm)).is_empty());

    // A damaged audit index: the answers stay the CLI's (which rebuilds it).
    let audit = s.root().join(".git/chg/audit");
    for branch in std::fs::read_dir(&audit).unwrap().flatten() {
        for f in std::fs::read_dir(branch.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            std::fs::write(f.path(), b"garbled\n").unwrap();
        }
    }
    let c = srv.post(BASE, &alice, seed_change()).json()["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = ids(srv.get(&format!("{BASE}?awaiting=me"), &cm));
    assert_eq!(waiting, [c.as_str()]);
    assert_eq!(waiting, cli_waiting("cm@example.com"));
    gates_agree(&a);
    gates_agree(&c);
}
