//! Passkey approvals in the library (SPEC 12.1): a passkey answer signing a record through
//! the library's signing step ([`PasskeySigner`]), and enrolment of a passkey as a policy
//! proposal ([`enrol`]). The encodings and checks are [`crate::webauthn`]'s.

use ssh_key::{HashAlg, PublicKey};

use crate::webauthn::{Assertion, KEY_TYPE, PasskeySignature, rp_id};

/// Signs a record with a passkey answer, for the library's signing step
/// ([`crate::signing::RecordSigner`]): the key is the one of `candidates` (the person's
/// passkeys in the allowed signers) whose signature the answer carries; the signature is the
/// assembled SSHSIG, given only when every check passes for the statement the step writes,
/// with the origin `origin`. Any failure is a refusal by rule `signature`: nothing is
/// written.
#[derive(Debug)]
pub struct PasskeySigner {
    /// The listed key that made the answer, or why none did.
    key: Result<PublicKey, String>,
    assertion: Assertion,
    origin: String,
}

impl PasskeySigner {
    /// The signer of `assertion`, made by one of `candidates`, at `origin`.
    pub fn new(candidates: &[PublicKey], assertion: Assertion, origin: &str) -> PasskeySigner {
        let mut why = if candidates.is_empty() {
            "the allowed signers list no passkey of yours for this server (enrol one on the Passkeys page; it signs once the proposal is applied)".to_owned()
        } else {
            "it was not made by a passkey the allowed signers list for you".to_owned()
        };
        let mut key = None;
        for k in candidates {
            match PasskeySignature::assemble(k, &assertion) {
                Ok(s) if s.verify_ecdsa().is_ok() => {
                    key = Some(k.clone());
                    break;
                }
                Ok(_) => {}
                // The answer itself is unreadable: that is the reason, whatever the key.
                Err(e) => why = e.to_string(),
            }
        }
        PasskeySigner {
            key: key.ok_or(why),
            assertion,
            origin: origin.to_owned(),
        }
    }

    fn refused(why: impl std::fmt::Display) -> crate::error::Error {
        crate::error::Error::refused(
            crate::signing::SIGNATURE,
            format!("the passkey signature is not taken: {why}"),
        )
    }
}

impl crate::signing::RecordSigner for PasskeySigner {
    fn public_key(&self) -> crate::error::Result<String> {
        let key = self.key.as_ref().map_err(Self::refused)?;
        key.to_openssh().map_err(Self::refused)
    }

    fn sign(&self, statement: &[u8]) -> crate::error::Result<String> {
        let key = self.key.as_ref().map_err(Self::refused)?;
        let sig = PasskeySignature::assemble(key, &self.assertion).map_err(Self::refused)?;
        sig.check(statement, Some(&self.origin))
            .map_err(Self::refused)?;
        sig.to_pem().map_err(Self::refused)
    }
}

/// What enrolling `key` for the acting person proposes: the committed policy files with
/// the person's allowed-signers line added, checked as `chg policy propose` checks a
/// proposal. Refused (rule `signature`): a policy without `signing`, a key already listed
/// for the person, a proposal that would not be a usable policy.
pub fn proposal_with_passkey(
    store: &crate::store::Store,
    email: &str,
    key: &PublicKey,
) -> crate::error::Result<std::collections::BTreeMap<String, String>> {
    use crate::error::Error;
    use crate::policy::{POLICY_PATH, Policy};
    let policy = store.policy()?;
    let signing = policy.signing.as_ref().ok_or_else(|| {
        Error::refused(
            crate::signing::SIGNATURE,
            "the policy has no `signing` section, so no key signs anything yet: the policy owners add one (signing: {allowed_signers: policy/allowed_signers}) first",
        )
    })?;
    let rel = signing.allowed_signers.clone();
    let mut files = store.committed_policy_files()?;
    let text = files.get(&rel).cloned().unwrap_or_default();
    let line = key
        .to_openssh()
        .map_err(|e| Error::Internal(format!("cannot write the key: {e}")))?;
    let (next, _) = crate::signing::with_signer(&text, email, &line)
        .map_err(|why| Error::refused(crate::signing::SIGNATURE, why))?;
    files.insert(rel, next);
    let bad = |summary: String, findings| Error::Invalid { summary, findings };
    let text = files
        .get(POLICY_PATH)
        .ok_or_else(|| Error::Internal(format!("the committed policy has no {POLICY_PATH}")))?;
    let (mut proposed, _) = Policy::parse(POLICY_PATH, text).map_err(|f| {
        bad(
            format!("the proposed {POLICY_PATH} is not a usable policy"),
            f,
        )
    })?;
    let problems: Vec<_> = proposed
        .attach_signers(|p| {
            files
                .get(p)
                .map(|t| t.clone().into_bytes())
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        })
        .into_iter()
        .filter(crate::finding::Finding::is_error)
        .collect();
    if !problems.is_empty() {
        return Err(bad(
            "the proposed allowed signers are not usable".into(),
            problems,
        ));
    }
    Ok(files)
}

/// Enrols `key` as the acting person's passkey: files the policy proposal
/// ([`proposal_with_passkey`]) as a normal change, one commit, as `chg policy signers add`
/// and `chg policy propose` would; it counts once approved and applied (`chg policy apply`),
/// like any key. The change's fields say what it is; a policy whose required content the
/// defaults do not satisfy (a risk questionnaire, say) refuses it with what is missing,
/// and the person proposes the line with the CLI instead.
pub fn enrol(
    store: &crate::store::Store,
    ctx: &crate::context::Context,
    key: &PublicKey,
    origin: &str,
) -> crate::error::Result<crate::store::Outcome> {
    use crate::model::{ChangeModel, ChangeRequest, Priority, RiskLevel};
    let email = &ctx.actor.email;
    let files = proposal_with_passkey(store, email, key)?;
    let policy = store.policy()?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let change_type = ["configuration", "security"]
        .iter()
        .find(|t| policy.change_types.iter().any(|c| c == *t))
        .map(|t| (*t).to_owned())
        .or_else(|| policy.change_types.first().cloned());
    let change = ChangeRequest {
        title: Some(format!("Passkey for {email}")),
        description: Some(format!(
            "Adds {email}'s passkey ({KEY_TYPE} {fingerprint}, relying party {}) to the allowed signers; enrolled on {origin}/passkeys.",
            rp_id(key).unwrap_or_default()
        )),
        business_justification: Some(format!(
            "{email} approves in the browser with this passkey: each approval is their own signature, which ssh-keygen -Y verify checks against the allowed signers."
        )),
        change_type,
        change_model: Some(ChangeModel::Normal),
        priority: Some(Priority::Low),
        risk_level: Some(RiskLevel::Low),
        affected_systems: vec!["chg-policy".into()],
        implementation_plan: Some("chg policy apply ID once approved".into()),
        rollback_plan: Some(format!(
            "chg policy signers remove {email} --fingerprint {fingerprint}, proposed the same way"
        )),
        proposed_policy: Some(files),
        policy_base: store.committed_policy_tree()?,
        ..ChangeRequest::default()
    };
    store.create(ctx, change, false)
}
