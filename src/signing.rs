//! Signed records (SPEC section 9): the statement a record's signature covers, the allowed
//! signers file that says whose key may sign for whom, and the verdict on a signature.
//!
//! Signing is OpenSSH's (`ssh-keygen -Y sign`, run by the caller through
//! [`RecordSigner`]); verifying is the RustCrypto `ssh-key` crate's SSHSIG implementation,
//! so an auditor can check any record with plain `ssh-keygen -Y verify` and get the same
//! answer. No cryptography is written here.

use std::sync::Arc;

use ssh_key::{HashAlg, PublicKey};

use crate::error::{Error, Result};

mod allowed_signers;
mod record;

pub use allowed_signers::{
    AllowedSigners, ProvenSignatures, covers, is_pattern, with_signer, without_signer,
};
pub use record::{Record, Statement, carry_signature, new_record, records, set_signature};

/// The SSHSIG namespace of chg's records (`ssh-keygen -Y sign -n chg`): a signature made for
/// git commits or files can never pass for an approval, nor the other way round.
pub const NAMESPACE: &str = "chg";

/// Rule id of every signature finding and refusal.
pub const SIGNATURE: &str = "signature";

/// The actions a policy may require signatures for.
pub const SIGNABLE: &[&str] = &[
    "new",
    "edit",
    "approve",
    "reject",
    "withdraw",
    "implement",
    "close",
    "cancel",
    "deploy",
];

/// The principal of `chg serve`'s attesting key when `signing.server_attests` names none.
pub const DEFAULT_ATTESTING_SIGNER: &str = "chg-server";

/// Signs records for the acting person (the CLI: `ssh-keygen -Y sign` with the key git
/// would use). The library runs no program and holds no key.
pub trait RecordSigner: Send + Sync {
    /// The public key that signs, in OpenSSH form (`ssh-ed25519 AAAA… comment`).
    fn public_key(&self) -> Result<String>;
    /// The armored SSHSIG signature of `statement` in namespace [`NAMESPACE`].
    fn sign(&self, statement: &[u8]) -> Result<String>;
}

/// What one signature says about a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a key the allowed signers list for the actor, over this very record.
    Valid {
        /// `SHA256:…` of the key.
        fingerprint: String,
        /// Made with a passkey in a browser (SPEC 12.1), not with an SSH key.
        passkey: bool,
        /// Made by `chg serve`'s key in the actor's stead (the principal it is listed
        /// under), where the policy lets the server attest the decision: never the
        /// person's own signature.
        attested: Option<String>,
    },
    /// The server's valid signature on a decision the policy in force does not let the
    /// server attest (role, risk level, or signer not in `signing.server_attests`).
    NotAttestable {
        /// `SHA256:…` of the server's key.
        fingerprint: String,
        /// Why not, in a sentence.
        why: String,
    },
    /// The record carries no signature.
    Missing,
    /// Not an SSH signature, or not one for chg records.
    Corrupt(String),
    /// Signed by a key the allowed signers do not list for the actor (at the record's time).
    Foreign {
        /// `SHA256:…` of the key that signed.
        fingerprint: String,
    },
    /// A listed key's signature, but over another statement: copied from another record, or
    /// the record was changed after it was signed.
    Transplanted {
        /// `SHA256:…` of the key that signed.
        fingerprint: String,
    },
}

impl Verdict {
    /// Whether the record counts as signed.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid { .. })
    }

    /// Why the record does not count, in one sentence; `None` when valid.
    pub fn problem(&self, actor: &str) -> Option<String> {
        Some(match self {
            Verdict::Valid { .. } => return None,
            Verdict::Missing => "it carries no signature, and the policy requires one".into(),
            Verdict::Corrupt(why) => format!("its signature is not a valid SSH signature ({why})"),
            Verdict::Foreign { fingerprint } => format!(
                "it is signed by {fingerprint}, a key the allowed signers do not list for {actor}"
            ),
            Verdict::Transplanted { fingerprint } => format!(
                "its signature (by {fingerprint}) is over another record: copied from elsewhere, or the record changed after it was signed"
            ),
            Verdict::NotAttestable { fingerprint, why } => format!(
                "it claims the server attested it (key {fingerprint}) in the person's stead, and {why}"
            ),
        })
    }

    /// A short mark for listings: `signed SHA256:…`, `unsigned`, `INVALID`.
    pub fn mark(&self) -> String {
        match self {
            Verdict::Valid {
                fingerprint,
                attested: Some(by),
                ..
            } => format!("attested by {by} {fingerprint} (not the person's signature)"),
            Verdict::Valid {
                fingerprint,
                passkey: false,
                ..
            } => format!("signed {fingerprint}"),
            Verdict::Valid {
                fingerprint,
                passkey: true,
                ..
            } => format!("signed {fingerprint} (passkey)"),
            Verdict::Missing => "unsigned".into(),
            _ => "INVALID signature".into(),
        }
    }
}

/// Signs `statement` for `ctx`'s actor with `signer`, after checking that the allowed
/// signers list its key for the actor at the record's time: nothing is signed (or written)
/// for a key that would not verify.
pub fn sign_record(
    signers: &AllowedSigners,
    signer: &dyn RecordSigner,
    actor: &str,
    statement: &Statement,
) -> Result<String> {
    let key = signer.public_key()?;
    if !signers.lists(actor, statement.at, &key) {
        let fingerprint = PublicKey::from_openssh(key.trim())
            .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
            .unwrap_or_else(|_| "your key".into());
        return Err(Error::Refused(crate::error::Refusal::new(
            SIGNATURE,
            format!(
                "the allowed signers do not list {fingerprint} for {actor}; add the key through a policy change, or sign with the key listed for you (--signing-key, CHG_SIGNING_KEY or git config user.signingkey)"
            ),
        )));
    }
    let text = statement.text();
    let signature = signer.sign(text.as_bytes())?;
    // What was made must verify, or nothing is written.
    let v = signers.verify(actor, statement.at, &text, Some(&signature));
    if !v.is_valid() {
        return Err(Error::Refused(crate::error::Refusal::new(
            SIGNATURE,
            format!(
                "the signature just made does not verify: {}",
                v.problem(actor).unwrap_or_default()
            ),
        )));
    }
    Ok(signature)
}

/// Shared, for the policy to hold.
pub type Signers = Arc<AllowedSigners>;

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn proofs_kept_between_runs_spare_the_verification_but_never_the_judgement() {
        let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]));
        let public = key.public_key().to_openssh().unwrap();
        let at: Timestamp = "2025-03-10T11:00:00Z".parse().unwrap();
        let statement = "chg signed record v1\nactor: cm@x\n";
        let sig = key
            .sign(NAMESPACE, HashAlg::Sha512, statement.as_bytes())
            .unwrap()
            .to_pem(ssh_key::LineEnding::LF)
            .unwrap();
        let signers = |text: &str, kept: &[u8]| {
            let (s, f) = AllowedSigners::parse("policy/allowed_signers", text);
            assert!(f.is_empty(), "{f:?}");
            let proven = Arc::new(ProvenSignatures::from_bytes(kept).unwrap());
            s.remember_in(proven.clone());
            (s, proven)
        };
        let listed = format!("cm@x {public}\n");
        // First run: verified, and the proof is added.
        let (s, proven) = signers(&listed, ProvenSignatures::HEADER);
        assert!(s.verify("cm@x", at, statement, Some(&sig)).is_valid());
        let kept = [ProvenSignatures::HEADER, &proven.added_bytes()].concat();
        assert_eq!(kept.len(), ProvenSignatures::HEADER.len() + 32);
        // Next run: the proof is used, nothing new to keep.
        let (s, proven) = signers(&listed, &kept);
        assert!(s.verify("cm@x", at, statement, Some(&sig)).is_valid());
        assert!(proven.added_bytes().is_empty());
        // A proof never lets another statement or another person through, and a key no
        // longer listed is foreign whatever was proven before.
        assert!(matches!(
            s.verify(
                "cm@x",
                at,
                "chg signed record v1\nactor: em@x\n",
                Some(&sig)
            ),
            Verdict::Transplanted { .. }
        ));
        assert!(matches!(
            s.verify("em@x", at, statement, Some(&sig)),
            Verdict::Foreign { .. }
        ));
        let (s, _) = signers("# nobody\n", &kept);
        assert!(matches!(
            s.verify("cm@x", at, statement, Some(&sig)),
            Verdict::Foreign { .. }
        ));
        // A damaged copy is not read (the caller starts again from nothing).
        assert!(ProvenSignatures::from_bytes(&kept[..kept.len() - 1]).is_none());
        assert!(ProvenSignatures::from_bytes(b"something else").is_none());
    }

    #[test]
    fn statements_name_everything_but_the_commit_and_id() {
        let st = Statement {
            requested_by: "alice@example.com".into(),
            requested_at: Some("2025-03-10T10:00:00Z".parse().unwrap()),
            action: "approve".into(),
            role: Some("change-manager".into()),
            decision: Some("approved".into()),
            actor: "cm@example.com".into(),
            at: "2025-03-10T11:00:00Z".parse().unwrap(),
            digest: "sha256:00".into(),
            extra: Vec::new(),
        };
        let approval = "chg signed record v1\nchange-requested-by: alice@example.com\nchange-requested-at: 2025-03-10T10:00:00Z\naction: approve\nrole: change-manager\ndecision: approved\nactor: cm@example.com\nat: 2025-03-10T11:00:00Z\ndigest: sha256:00\n";
        assert_eq!(st.text(), approval);
        // A deployment's lines come after every line the other actions sign, which stay.
        let deploy = Statement {
            action: "deploy".into(),
            role: None,
            decision: None,
            extra: vec![
                ("deployed-commit", "a".repeat(40)),
                ("environment", "production".into()),
                ("run", String::new()),
            ],
            ..st
        };
        assert!(
            deploy.text().ends_with(&format!(
                "digest: sha256:00\ndeployed-commit: {}\nenvironment: production\nrun: \n",
                "a".repeat(40)
            )),
            "{}",
            deploy.text()
        );
    }
}
