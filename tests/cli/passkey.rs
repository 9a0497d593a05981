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
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            origin: ORIGIN.into(),
            flags: 0x01 | 0x04,
            cross_origin: false,
            high_s: false,
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
        auth.extend_from_slice(&42u32.to_be_bytes());
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
    assert!(show.contains(&format!("signed {fingerprint}")), "{show}");
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
