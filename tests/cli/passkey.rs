//! Passkey approvals (SPEC 12.1) without a browser: assertions made with a P-256 key as an
//! authenticator would make them, assembled into SSHSIGs by the library, and checked by
//! plain `ssh-keygen -Y verify` and by chg (validate, show, audit, the library's signing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chg::webauthn::{Assertion, PasskeySignature};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};
use ssh_key::PublicKey;

use super::Store;

pub(super) const ORIGIN: &str = "https://chg.example.com";
pub(super) const RP: &str = "chg.example.com";

/// A virtual authenticator's credential: the P-256 key it holds, for one relying party.
pub(super) struct Passkey {
    key: SigningKey,
    rp_id: String,
}

/// How the authenticator and browser answer (the defaults: a browser's answer at ORIGIN
/// with the user verified).
#[derive(Clone)]
pub(super) struct Answer {
    pub origin: String,
    pub flags: u8,
    pub cross_origin: bool,
    pub high_s: bool,
    pub counter: u32,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            origin: ORIGIN.into(),
            flags: 0x01 | 0x04,
            cross_origin: false,
            high_s: false,
            counter: 42,
        }
    }
}

impl Passkey {
    pub(super) fn new(seed: u8, rp_id: &str) -> Passkey {
        Passkey {
            key: SigningKey::from_slice(&[seed; 32]).unwrap(),
            rp_id: rp_id.into(),
        }
    }

    /// `response.getPublicKey()` at enrolment.
    pub(super) fn spki(&self) -> Vec<u8> {
        p256::PublicKey::from(self.key.verifying_key())
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    pub(super) fn public(&self) -> PublicKey {
        chg::webauthn::public_key_from_spki(&self.spki(), &self.rp_id).unwrap()
    }

    /// `navigator.credentials.get()` with the statement's signed-data blob as challenge.
    pub(super) fn assert(&self, statement: &[u8], a: &Answer) -> Assertion {
        let client_data = format!(
            "{{\"type\":\"webauthn.get\",\"challenge\":\"{}\",\"origin\":\"{}\",\"crossOrigin\":{}}}",
            chg::webauthn::challenge(statement),
            a.origin,
            a.cross_origin
        );
        let mut auth = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth.push(a.flags);
        auth.extend_from_slice(&a.counter.to_be_bytes());
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
        let sig: p256::ecdsa::Signature = self.key.sign(&signed);
        let low = sig.normalize_s().unwrap_or(sig);
        let sig = if a.high_s {
            let (r, s) = low.split_scalars();
            p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap()
        } else {
            low
        };
        Assertion {
            client_data_json: client_data.into_bytes(),
            authenticator_data: auth,
            signature: sig.to_der().as_bytes().to_vec(),
        }
    }

    /// The armored SSHSIG of an answer over `statement`, claimed for `key`.
    pub(super) fn sshsig(&self, key: &PublicKey, statement: &[u8], a: &Answer) -> String {
        PasskeySignature::assemble(key, &self.assert(statement, a))
            .unwrap()
            .to_pem()
            .unwrap()
    }
}

/// `ssh-keygen -Y verify -f allowed -I who -n chg -s sig < statement`: whether OpenSSH
/// accepts it, and what it said.
pub(super) fn ssh_keygen_verifies(
    dir: &Path,
    allowed: &str,
    who: &str,
    signature: &str,
    statement: &[u8],
) -> (bool, String) {
    use std::io::Write;
    let (a, s) = (dir.join("allowed"), dir.join("sig"));
    std::fs::write(&a, allowed).unwrap();
    std::fs::write(&s, signature).unwrap();
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "chg", "-I", who, "-f"])
        .arg(&a)
        .arg("-s")
        .arg(&s)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh-keygen (OpenSSH 8.4 or newer) must be installed for this test");
    child.stdin.take().unwrap().write_all(statement).unwrap();
    let o = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), said)
}

const STATEMENT: &[u8] = b"chg signed record v1\nchange-requested-by: alice@example.com\nchange-requested-at: 2025-03-10T10:00:00Z\naction: approve\nrole: change-manager\ndecision: approved\nactor: cm@example.com\nat: 2025-03-10T11:00:00Z\ndigest: sha256:00\n";

#[test]
fn a_passkey_signature_is_one_plain_ssh_keygen_accepts_and_chg_is_stricter() {
    let dir = tempfile::tempdir().unwrap();
    let cm = Passkey::new(1, RP);
    let em = Passkey::new(2, RP);
    let key = cm.public();
    let line = chg::webauthn::allowed_signers_line("cm@example.com", &key);
    assert!(
        line.starts_with("cm@example.com sk-ecdsa-sha2-nistp256@openssh.com AAAA"),
        "{line}"
    );
    let allowed = format!("{line}\n");
    let ssh = |sig: &str, statement: &[u8]| {
        ssh_keygen_verifies(dir.path(), &allowed, "cm@example.com", sig, statement)
    };
    let chg_check = |sig: &str, statement: &[u8]| {
        PasskeySignature::from_pem(sig)
            .unwrap()
            .unwrap()
            .check(statement, Some(ORIGIN))
    };
    // The proof: both high-S and low-S signatures are good OpenSSH signatures, and chg's.
    for high_s in [false, true] {
        let a = Answer {
            high_s,
            ..Answer::default()
        };
        let sig = cm.sshsig(&key, STATEMENT, &a);
        let (ok, said) = ssh(&sig, STATEMENT);
        assert!(ok, "ssh-keygen refused (high_s {high_s}): {said}\n{sig}");
        assert!(
            said.contains("Good \"chg\" signature for cm@example.com"),
            "{said}"
        );
        chg_check(&sig, STATEMENT).unwrap();
    }
    // What OpenSSH accepts and chg must refuse itself: another origin, no user
    // verification, a cross-origin frame.
    for (what, a) in [
        (
            "another origin",
            Answer {
                origin: "https://evil.example.net".into(),
                ..Answer::default()
            },
        ),
        (
            "no UV",
            Answer {
                flags: 0x01,
                ..Answer::default()
            },
        ),
        (
            "crossOrigin",
            Answer {
                cross_origin: true,
                ..Answer::default()
            },
        ),
    ] {
        let sig = cm.sshsig(&key, STATEMENT, &a);
        let (ok, said) = ssh(&sig, STATEMENT);
        assert!(ok, "{what}: OpenSSH is expected to accept this: {said}");
        let e = chg_check(&sig, STATEMENT).unwrap_err();
        assert!(
            matches!(e, chg::webauthn::PasskeyError::Refused(_)),
            "{what}: {e}"
        );
    }
    // What both refuse: over another statement, the AT flag set.
    let sig = cm.sshsig(&key, STATEMENT, &Answer::default());
    let other = String::from_utf8_lossy(STATEMENT).replace("approve", "reject");
    assert!(!ssh(&sig, other.as_bytes()).0);
    assert!(chg_check(&sig, other.as_bytes()).is_err());
    let at = cm.sshsig(
        &key,
        STATEMENT,
        &Answer {
            flags: 0x01 | 0x04 | 0x40,
            ..Answer::default()
        },
    );
    assert!(!ssh(&at, STATEMENT).0);
    assert!(chg_check(&at, STATEMENT).is_err());
    // Another person's credential: em's passkey signed, claimed as em's key (not listed
    // for cm) or as cm's key (does not verify).
    let theirs = em.sshsig(&em.public(), STATEMENT, &Answer::default());
    assert!(!ssh(&theirs, STATEMENT).0);
    let claimed = em.sshsig(&key, STATEMENT, &Answer::default());
    assert!(!ssh(&claimed, STATEMENT).0);
    assert!(chg_check(&claimed, STATEMENT).is_err());
    // The library's verifier: a record by cm, judged offline.
    let (signers, findings) = chg::signing::AllowedSigners::parse("allowed", &allowed);
    assert!(findings.is_empty(), "{findings:?}");
    let when = "2025-03-10T11:00:00Z".parse().unwrap();
    let st = std::str::from_utf8(STATEMENT).unwrap();
    assert!(
        signers
            .verify("cm@example.com", when, st, Some(&sig))
            .is_valid()
    );
    assert!(matches!(
        signers.verify("cm@example.com", when, st, Some(&theirs)),
        chg::signing::Verdict::Foreign { .. }
    ));
    assert!(matches!(
        signers.verify("cm@example.com", when, &other, Some(&sig)),
        chg::signing::Verdict::Transplanted { .. }
    ));
    assert!(matches!(
        signers.verify("em@example.com", when, st, Some(&sig)),
        chg::signing::Verdict::Foreign { .. }
    ));
}

/// Signs records as a browser with a passkey would: the library's `RecordSigner`.
struct Browser {
    passkey: Passkey,
    answer: Answer,
}

impl chg::signing::RecordSigner for Browser {
    fn public_key(&self) -> chg::error::Result<String> {
        Ok(self.passkey.public().to_openssh().unwrap())
    }
    fn sign(&self, statement: &[u8]) -> chg::error::Result<String> {
        Ok(self
            .passkey
            .sshsig(&self.passkey.public(), statement, &self.answer))
    }
}

#[test]
fn a_passkey_signed_approval_is_a_signed_record_for_validate_show_audit_and_openssh() {
    let s = Store::new();
    let em = s.keygen("em");
    let cm = Passkey::new(1, RP);
    // cm's allowed-signers key is the passkey's, as enrolment proposes it.
    std::fs::write(
        s.dir.path().join("key-cm.pub"),
        cm.public().to_openssh().unwrap(),
    )
    .unwrap();
    s.enable_signing(
        &[
            ("em@example.com", &em),
            ("cm@example.com", &s.dir.path().join("key-cm")),
        ],
        &[],
    );
    let id = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    let store =
        chg::store::Store::discover(&s.root(), None, std::time::Duration::from_secs(20)).unwrap();
    let change_id: chg::model::ChangeId = id.parse().unwrap();
    let cm_at = |t: &str, answer: Answer| {
        chg::Context::new(
            chg::Identity::new("cm", "cm@example.com").unwrap(),
            t.parse().unwrap(),
        )
        .signing_records(Arc::new(Browser {
            passkey: Passkey::new(1, RP),
            answer,
        }))
    };
    let approve = || chg::workflow::Step::Approve {
        role: None,
        comment: None,
        conditions: vec![],
    };
    // Without user verification the library refuses it before anything is written.
    let head = s.git(&["rev-parse", "HEAD"]);
    let e = store
        .transition(
            &cm_at(
                "2025-03-10T11:00:00Z",
                Answer {
                    flags: 0x01,
                    ..Answer::default()
                },
            ),
            &change_id,
            approve(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("UV"), "{e}");
    assert_eq!(s.git(&["rev-parse", "HEAD"]), head);
    store
        .transition(
            &cm_at("2025-03-10T11:00:00Z", Answer::default()),
            &change_id,
            approve(),
        )
        .unwrap();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 2, "{text}");
    s.chg("alice@example.com", &["validate"]).ok();
    let audit = s.chg("alice@example.com", &["audit"]).ok().stdout;
    assert!(!audit.contains(": signature: "), "{audit}");
    let fingerprint = cm
        .public()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains(&format!("signed {fingerprint} (passkey)")),
        "{show}"
    );
    // em's SSH signature is not marked as a passkey's.
    assert_eq!(show.matches("(passkey)").count(), 1, "{show}");
    // The gate's only reason is the missing schedule, not the signature.
    let gate = s.chg("alice@example.com", &["gate", &id]).code(1).stdout;
    assert!(
        gate.contains("unscheduled") && !gate.contains("signature"),
        "{gate}"
    );
    // The auditor's check without chg: the statement from the file, OpenSSH, the
    // allowed signers committed in the policy.
    let change = chg::decode::decode_str("c.yaml", &text).change;
    let record = chg::signing::records(&change)
        .into_iter()
        .find(|r| r.actor == "cm@example.com")
        .unwrap();
    let allowed = std::fs::read_to_string(s.root().join("policy/allowed_signers")).unwrap();
    let (ok, said) = ssh_keygen_verifies(
        s.dir.path(),
        &allowed,
        "cm@example.com",
        record.signature.unwrap(),
        record.statement.text().as_bytes(),
    );
    assert!(ok, "{said}");
    // A forged record: the same approval re-signed without user verification, committed
    // by hand: validate and the gate find it.
    let forged = cm.sshsig(
        &cm.public(),
        record.statement.text().as_bytes(),
        &Answer {
            flags: 0x01,
            ..Answer::default()
        },
    );
    // cm's is the second signature block of the file.
    let begin = text.match_indices("signature: |").nth(1).unwrap().0;
    let stop = text[begin..].find("-----END SSH SIGNATURE-----").unwrap() + begin + 27;
    let block = &text[begin..stop];
    let indent = block.lines().nth(1).unwrap();
    let indent = &indent[..indent.len() - indent.trim_start().len()];
    let replacement = format!(
        "signature: |\n{}",
        forged
            .trim()
            .lines()
            .map(|l| format!("{indent}{l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let tampered = text.replace(block, &replacement);
    assert_ne!(tampered, text, "the signature was not found in the file");
    std::fs::write(s.file(&id), tampered).unwrap();
    s.git(&["commit", "-qam", "re-signed by hand"]);
    let r = s.chg("alice@example.com", &["validate"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("UV"), "{}{}", r.stdout, r.stderr);
}

// ---------------------------------------------------------------------------------------
// Through `chg serve`

/// A `chg serve` process on a free port of this machine, stopped when dropped.
pub(super) struct Server {
    child: std::process::Child,
    pub port: u16,
}

impl Server {
    /// `chg serve --listen 127.0.0.1:0` in `s` (public URL http://localhost:PORT).
    pub(super) fn start(s: &Store) -> Server {
        use std::io::BufRead;
        let mut child = s
            .cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("chg serve stopped before listening");
            }
            if let Some(rest) = line.strip_prefix("chg: listening on http://127.0.0.1:") {
                break rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        };
        // Keep reading the request log, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while err.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Server { child, port }
    }

    pub(super) fn origin(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// A request as `token` (HTTP/1.1, one connection each): the status and the JSON
    /// body (a string when it is not JSON).
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, text) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "a chunked answer: {head}"
        );
        (
            status,
            serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base64url fields of an answer, as `navigator.credentials.get()` returns them.
pub(super) fn answer_json(a: &Assertion) -> serde_json::Value {
    use chg::webauthn::base64url;
    serde_json::json!({
        "client_data_json": base64url(&a.client_data_json),
        "authenticator_data": base64url(&a.authenticator_data),
        "signature": base64url(&a.signature),
    })
}

#[test]
fn the_api_takes_a_passkey_approval_and_refuses_every_forgery_with_nothing_committed() {
    let mut s = Store::new();
    let em = s.keygen("em");
    let cm = Passkey::new(1, "localhost");
    std::fs::write(
        s.dir.path().join("key-cm.pub"),
        cm.public().to_openssh().unwrap(),
    )
    .unwrap();
    s.enable_signing(
        &[
            ("em@example.com", &em),
            ("cm@example.com", &s.dir.path().join("key-cm")),
        ],
        &[],
    );
    let id = s.new_change(&[]);
    let token = s
        .chg("alice@example.com", &["token", "create", "cm@example.com"])
        .ok_line();
    let server = Server::start(&s);
    let base = format!("/api/v1/change-management/change-requests/{id}");
    let (code, st) = server.call(
        "GET",
        &format!("{base}/statement?action=approve&role=change-manager"),
        &token,
        None,
    );
    assert_eq!(code, 200, "{st}");
    let statement = st["statement"].as_str().unwrap().to_owned();
    let at = st["at"].as_str().unwrap().to_owned();
    assert_eq!(
        st["signed_data"].as_str().unwrap(),
        chg::webauthn::challenge(statement.as_bytes())
    );
    let good = Answer {
        origin: server.origin(),
        ..Answer::default()
    };
    let post = |passkey: serde_json::Value| {
        server.call(
            "POST",
            &format!("{base}/approve"),
            &token,
            Some(serde_json::json!({"approved": true, "role": "change-manager", "at": at, "passkey": passkey})),
        )
    };
    let head = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let other_statement = statement.replace("approve", "reject");
    let refusals: Vec<(&str, serde_json::Value)> = vec![
        (
            "another origin",
            answer_json(&cm.assert(
                statement.as_bytes(),
                &Answer {
                    origin: "http://localhost:1".into(),
                    ..good.clone()
                },
            )),
        ),
        (
            "no user verification",
            answer_json(&cm.assert(
                statement.as_bytes(),
                &Answer {
                    flags: 0x01,
                    ..good.clone()
                },
            )),
        ),
        (
            "over another statement",
            answer_json(&cm.assert(other_statement.as_bytes(), &good)),
        ),
        (
            "another person's credential",
            answer_json(&Passkey::new(2, "localhost").assert(statement.as_bytes(), &good)),
        ),
        (
            "crossOrigin",
            answer_json(&cm.assert(
                statement.as_bytes(),
                &Answer {
                    cross_origin: true,
                    ..good.clone()
                },
            )),
        ),
        (
            "AT set",
            answer_json(&cm.assert(
                statement.as_bytes(),
                &Answer {
                    flags: 0x01 | 0x04 | 0x40,
                    ..good.clone()
                },
            )),
        ),
        (
            "another relying party",
            answer_json(&Passkey::new(1, "evil.example").assert(statement.as_bytes(), &good)),
        ),
        ("a signature that is not DER", {
            let mut a = answer_json(&cm.assert(statement.as_bytes(), &good));
            a["signature"] = "AAAA".into();
            a
        }),
    ];
    let said = [
        ("another origin", "origin"),
        ("no user verification", "UV"),
        ("over another statement", "another statement"),
        ("another person's credential", "not made by a passkey"),
        ("crossOrigin", "crossOrigin"),
        ("AT set", "AT flag"),
        ("another relying party", "not made by a passkey"),
        ("a signature that is not DER", "DER"),
    ];
    for (what, passkey) in refusals {
        let (code, body) = post(passkey);
        assert_eq!(code, 403, "{what}: {body}");
        let reason = said.iter().find(|(w, _)| *w == what).unwrap().1;
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{what}: {body}"
        );
        assert_eq!(body["error"]["rule"], "signature", "{what}: {body}");
        assert_eq!(s.git(&["rev-parse", "HEAD"]).trim(), head, "{what}");
    }
    // Not the answer's shape, or not base64url: 400 naming the field.
    for bad in [
        serde_json::json!("text"),
        serde_json::json!({"client_data_json": "%%", "authenticator_data": "", "signature": ""}),
        serde_json::json!({"client_data_json": "", "authenticator_data": "", "signature": "", "extra": 1}),
    ] {
        let (code, body) = post(bad.clone());
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(body["error"]["rule"], "passkey", "{bad}: {body}");
    }
    assert_eq!(s.git(&["rev-parse", "HEAD"]).trim(), head);
    // The good one: one commit by cm, the record verifies with plain ssh-keygen.
    let (code, body) = post(answer_json(&cm.assert(statement.as_bytes(), &good)));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        s.git(&["log", "-1", "--format=%ae"]).trim(),
        "cm@example.com"
    );
    assert_eq!(
        s.git(&["rev-list", "--count", &format!("{head}..HEAD")])
            .trim(),
        "1"
    );
    let text = s.read(&id);
    let change = chg::decode::decode_str("c.yaml", &text).change;
    let record = chg::signing::records(&change)
        .into_iter()
        .find(|r| r.actor == "cm@example.com")
        .unwrap();
    assert_eq!(record.statement.text(), statement);
    let allowed = std::fs::read_to_string(s.root().join("policy/allowed_signers")).unwrap();
    let (ok, said) = ssh_keygen_verifies(
        s.dir.path(),
        &allowed,
        "cm@example.com",
        record.signature.unwrap(),
        statement.as_bytes(),
    );
    assert!(ok, "{said}");
    s.chg("alice@example.com", &["validate"]).ok();
    // Replayed: the same answer again is refused by its counter, before the life cycle
    // (cm has decided) is even asked.
    let (code, body) = post(answer_json(&cm.assert(statement.as_bytes(), &good)));
    assert_eq!(
        (code, body["error"]["rule"].as_str()),
        (403, Some("signature")),
        "{body}"
    );
    assert_eq!(
        s.git(&["rev-list", "--count", &format!("{head}..HEAD")])
            .trim(),
        "1"
    );

    // The authenticator counted 42: on another change, an answer counting 42 again (a
    // cloned authenticator) is refused, 43 is taken. From here the CLI reads the real clock
    // as the server does: a change filed at this test's fixed time would be dated before
    // the server's commits, a history that does not verify, and not approvable.
    s.at("");
    let id2 = s.new_change(&[]);
    let base2 = format!("/api/v1/change-management/change-requests/{id2}");
    let (_, st) = server.call(
        "GET",
        &format!("{base2}/statement?action=approve&role=change-manager"),
        &token,
        None,
    );
    let statement2 = st["statement"].as_str().unwrap().to_owned();
    let post2 = |counter: u32| {
        let answer = Answer {
            counter,
            ..good.clone()
        };
        server.call(
            "POST",
            &format!("{base2}/approve"),
            &token,
            Some(serde_json::json!({"approved": true, "role": "change-manager", "at": st["at"], "passkey": answer_json(&cm.assert(statement2.as_bytes(), &answer))})),
        )
    };
    let head = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let (code, body) = post2(42);
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("counter is 42, not above 42"),
        "{body}"
    );
    assert_eq!(s.git(&["rev-parse", "HEAD"]).trim(), head);
    let (code, body) = post2(43);
    assert_eq!(code, 200, "{body}");

    // Answers that all count 50, sent at once for four changes: one is taken.
    let answers: Vec<(String, serde_json::Value)> = (0..4)
        .map(|_| {
            let id = s.new_change(&[]);
            let base = format!("/api/v1/change-management/change-requests/{id}");
            let (_, st) = server.call(
                "GET",
                &format!("{base}/statement?action=approve&role=change-manager"),
                &token,
                None,
            );
            let answer = Answer {
                counter: 50,
                ..good.clone()
            };
            let passkey =
                answer_json(&cm.assert(st["statement"].as_str().unwrap().as_bytes(), &answer));
            (
                format!("{base}/approve"),
                serde_json::json!({"approved": true, "role": "change-manager", "at": st["at"], "passkey": passkey}),
            )
        })
        .collect();
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = answers
            .iter()
            .map(|(path, body)| {
                let (server, token) = (&server, &token);
                scope.spawn(move || server.call("POST", path, token, Some(body.clone())).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 403), "{codes:?}");
}

#[test]
fn a_passkey_approval_is_signed_where_the_policy_does_not_require_it_and_refused_without_signers() {
    let s = Store::new();
    let cm = Passkey::new(1, "localhost");
    let id = s.new_change(&["--priority", "low"]);
    let token = s
        .chg("alice@example.com", &["token", "create", "cm@example.com"])
        .ok_line();
    let server = Server::start(&s);
    let base = format!("/api/v1/change-management/change-requests/{id}");
    let approve = |server: &Server| {
        let (code, st) = server.call(
            "GET",
            &format!("{base}/statement?action=approve"),
            &token,
            None,
        );
        assert_eq!(code, 200, "{st}");
        let statement = st["statement"].as_str().unwrap();
        let a = cm.assert(
            statement.as_bytes(),
            &Answer {
                origin: server.origin(),
                ..Answer::default()
            },
        );
        server.call(
            "POST",
            &format!("{base}/approve"),
            &token,
            // No `at`: the server knows it from the challenge it handed out.
            Some(serde_json::json!({"approved": true, "passkey": answer_json(&a)})),
        )
    };
    // No `signing` in the policy: no passkey is listed anywhere.
    let head = s.git(&["rev-parse", "HEAD"]);
    let (code, body) = approve(&server);
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["rule"], "signature", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no `signing`"),
        "{body}"
    );
    assert_eq!(s.git(&["rev-parse", "HEAD"]), head);
    drop(server);
    // Signers listed, approvals not required to be signed: the passkey approval is signed.
    std::fs::write(
        s.root().join("policy/allowed_signers"),
        chg::webauthn::allowed_signers_line("cm@example.com", &cm.public()) + "\n",
    )
    .unwrap();
    s.edit_policy("signers, implement signed", |t| {
        format!(
            "{t}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [implement]\n"
        )
    });
    s.git(&["add", "policy/allowed_signers"]);
    s.git(&["commit", "-qm", "allowed signers"]);
    let server = Server::start(&s);
    let (code, body) = approve(&server);
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.read(&id).matches("BEGIN SSH SIGNATURE").count(), 1);
    s.chg("alice@example.com", &["validate"]).ok();
}
