//! The pages in a real browser (issue 27): Debian's headless Chromium driven over the
//! DevTools protocol with a virtual authenticator (ctap2, internal, resident keys, user
//! verification): sign in, enrol a passkey, approve a change with it, check the commit,
//! verify the record with plain `ssh-keygen -Y verify`, and screenshots of the main pages
//! at laptop (1280) and phone (390) widths under `target/screenshots/` for review.
//!
//! Chromium is required (`.ci/run` installs it): without it this test fails saying so.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::Store;
use super::passkey::{Server, ssh_keygen_verifies};

/// The browser's program: `CHG_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHG_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the browser test needs Chromium: install Debian's package (apt-get install -y chromium; .ci/run does) or name the program in CHG_CHROMIUM"
    );
}

/// A headless Chromium and one page of it, driven over the DevTools protocol.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let program = chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let active = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&active)
                && let Some((port, path)) = text.split_once('\n')
                && !path.trim().is_empty()
            {
                break (port.trim().to_owned(), path.trim().to_owned());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited at start ({status})", program.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} did not open its DevTools port within 20 s",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}")).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            session: String::new(),
            next: 1,
        };
        let target = b.call_on(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call_on(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.call("WebAuthn.enable", json!({}));
        b.call(
            "WebAuthn.addVirtualAuthenticator",
            json!({"options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        );
        b
    }

    /// A command; its result, or the protocol's error.
    fn try_call_on(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"].as_u64() == Some(id) {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    fn call_on(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call_on(session, method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_on(Some(&s), method, params)
    }

    /// Evaluates `js` in the page; its value, or `None` when it threw or the page was
    /// between documents.
    fn eval(&mut self, js: &str) -> Option<Value> {
        let s = self.session.clone();
        let r = self
            .try_call_on(
                Some(&s),
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .ok()?;
        if r.get("exceptionDetails").is_some() {
            return None;
        }
        Some(r["result"]["value"].clone())
    }

    /// Does `act` (script) and waits for the next document to be loaded.
    fn and_wait(&mut self, act: impl FnOnce(&mut Browser)) {
        assert!(self.eval("window.__chg_old = true").is_some());
        act(self);
        let started = Instant::now();
        loop {
            if self.eval("window.__chg_old === undefined && document.readyState === 'complete'")
                == Some(Value::Bool(true))
            {
                return;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let status = self.eval(
                    "(document.getElementById('passkey-status')||{}).textContent || document.body.innerText.slice(0, 500)",
                );
                panic!("no new page within 15 s; the page says: {status:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn go(&mut self, url: &str) {
        let url = url.to_owned();
        self.and_wait(|b| {
            b.call("Page.navigate", json!({"url": url}));
        });
    }

    fn click(&mut self, selector: &str) {
        let js = format!("document.querySelector({selector:?}).click()");
        self.and_wait(|b| {
            assert!(b.eval(&js).is_some(), "cannot click {selector}");
        });
    }

    fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn path(&mut self) -> String {
        self.eval("location.pathname")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Screenshots of the page at laptop and phone widths: `target/screenshots/NAME-W.png`.
    fn screenshots(&mut self, name: &str) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (width, height, mobile) in [(1280, 800, false), (390, 844, true)] {
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            );
            let shot = self.call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": false}),
            );
            use base64ct::Encoding as _;
            let png = base64ct::Base64::decode_vec(shot["data"].as_str().unwrap()).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
            // Nothing may be wider than the phone's screen (a table scrolls in its box).
            if mobile {
                let wide = self.eval("document.documentElement.scrollWidth").unwrap();
                assert!(
                    wide.as_u64().unwrap() <= width,
                    "{name} is {wide} px wide at a {width} px screen"
                );
            }
        }
        self.call("Emulation.clearDeviceMetricsOverride", json!({}));
    }
}

fn now_text() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap()
        .to_string()
}

#[test]
fn in_a_browser_sign_in_enrol_a_passkey_and_approve_with_it_verifiable_with_ssh_keygen() {
    let started = Instant::now();
    let mut s = Store::new();
    // The store works at the real time: the server's clock stamps what it commits.
    s.at(&now_text());
    let cm2 = s.keygen("cm2");
    s.edit_policy("a second change manager", |t| {
        t.replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, cm2@example.com]",
        )
    });
    s.enable_signing(&[("cm2@example.com", &cm2)], &[]);
    let id = s.new_change(&["--priority", "low"]);
    let token = s
        .chg("alice@example.com", &["token", "create", "cm@example.com"])
        .ok_line();
    let server = Server::start(&s);
    let origin = server.origin();
    let mut b = Browser::start();

    // Sign in: every page sends a browser without a session to the sign-in page.
    b.go(&format!("{origin}/changes/{id}"));
    assert_eq!(b.path(), "/signin");
    b.screenshots("signin");
    let fill = format!(
        "document.getElementById('token').value = {token:?}; document.querySelector('form[action=\"/signin\"] button').click()"
    );
    b.and_wait(|b| {
        assert!(b.eval(&fill).is_some());
    });
    assert_eq!(b.path(), format!("/changes/{id}"), "{}", b.text());
    assert!(b.text().contains("cm@example.com"));
    // No passkey listed yet: no passkey button.
    assert_eq!(
        b.eval("document.getElementById('passkey-approve') === null"),
        Some(Value::Bool(true))
    );

    // Enrol: the key becomes a policy proposal.
    b.go(&format!("{origin}/passkeys"));
    b.screenshots("passkeys");
    b.click("#enrol");
    let page = b.text();
    assert!(page.contains("proposed for the allowed signers"), "{page}");
    assert!(
        page.contains("cm@example.com sk-ecdsa-sha2-nistp256@openssh.com AAAA"),
        "{page}"
    );
    b.screenshots("passkey-proposed");
    let proposal = b
        .eval("document.querySelector('.card.ok a').textContent")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap();
    assert_eq!(
        s.git(&["log", "-1", "--format=%ae"]).trim(),
        "cm@example.com"
    );
    // Approved by the other change manager (signed with their SSH key) and applied.
    s.at(&now_text());
    s.schedule(&proposal, "now", "+1h").ok();
    s.signed("cm2@example.com", &cm2, &["approve", &proposal])
        .ok();
    s.chg("alice@example.com", &["policy", "apply", &proposal])
        .ok();
    let allowed = std::fs::read_to_string(s.root().join("policy/allowed_signers")).unwrap();
    assert!(
        allowed.contains("cm@example.com sk-ecdsa-sha2-nistp256@openssh.com "),
        "{allowed}"
    );

    // Approve the change with the passkey.
    b.go(&format!("{origin}/changes/{id}"));
    b.screenshots("change");
    let head = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    b.click("#passkey-approve");
    let page = b.text();
    // Post, redirect, get: the page names the commit that recorded the decision.
    assert!(
        page.contains("Your decision is recorded (commit "),
        "{page}"
    );
    b.screenshots("change-approved");
    assert_eq!(
        s.git(&["rev-list", "--count", &format!("{head}..HEAD")])
            .trim(),
        "1"
    );
    assert_eq!(
        s.git(&["log", "-1", "--format=%ae"]).trim(),
        "cm@example.com"
    );
    let text = s.read(&id);
    assert!(text.contains("status: approved"), "{text}");
    let change = chg::decode::decode_str("c.yaml", &text).change;
    let record = chg::signing::records(&change)
        .into_iter()
        .find(|r| r.actor == "cm@example.com")
        .unwrap();
    let sig = record.signature.expect("the passkey approval is signed");
    assert!(sig.contains("BEGIN SSH SIGNATURE"));
    let (ok, said) = ssh_keygen_verifies(
        s.dir.path(),
        &allowed,
        "cm@example.com",
        sig,
        record.statement.text().as_bytes(),
    );
    assert!(ok, "ssh-keygen: {said}");
    s.chg("alice@example.com", &["validate"]).ok();
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(show.contains("signed SHA256:"), "{show}");

    // The other main pages, for review.
    for (name, path) in [
        ("waiting", "/"),
        ("changes", "/changes"),
        ("cab", "/cab"),
        ("calendar", "/calendar"),
        ("report", "/report"),
    ] {
        b.go(&format!("{origin}{path}"));
        b.screenshots(name);
    }
    drop(b);
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the browser test took {:?}",
        started.elapsed()
    );
}
