//! The policy's `signing` section (SPEC section 9): the actions whose records must be
//! signed, the allowed signers file read and attached to it, and the decisions the server
//! may attest (SPEC 12.1).

use crate::finding::Finding;
use crate::model::{ChangeRequest, RiskLevel};
use crate::signing::AllowedSigners;
use crate::yaml::Pos;

use super::{POLICY_PATH, Policy};

/// The policy's `signing` section, with the allowed signers file once it is read.
#[derive(Debug, Clone)]
pub struct SigningPolicy {
    /// The allowed signers file, relative to the store (`policy/allowed_signers`).
    pub allowed_signers: String,
    /// Actions whose records must be signed.
    pub required_for: Vec<String>,
    /// The file's keys, attached by whoever read the policy ([`Policy::attach_signers`]);
    /// `None` until then, and then nothing verifies.
    pub signers: Option<crate::signing::Signers>,
    /// Where `chg serve` may sign a decision with its own key instead of the person's
    /// (SPEC 12.1, last point); `None`: never.
    pub server_attests: Option<ServerAttests>,
}

/// `signing.server_attests`: the decisions the server may attest for people who
/// authenticated to it, by role and risk level, and the principal its key is listed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAttests {
    /// The roles whose decisions it may attest.
    pub roles: Vec<String>,
    /// The highest risk level of a change it may attest a decision on.
    pub max_risk: RiskLevel,
    /// The allowed signers principal the server's key is listed under.
    pub signer: String,
}

impl Policy {
    /// Reads the allowed signers file the `signing` section names (`read` gives a file's
    /// bytes by store path: from the work tree, or from the tree of a commit) and attaches
    /// it. Its problems come back as findings with places: a missing file, a line that is
    /// not a key, an email that is in no role.
    pub fn attach_signers(
        &mut self,
        read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Vec<Finding> {
        let Some(signing) = &mut self.signing else {
            return Vec::new();
        };
        let file = signing.allowed_signers.clone();
        let text = match signers_text(&file, read) {
            Ok(text) => text,
            // A file that cannot be used attaches an empty list: then nothing verifies.
            Err(finding) => {
                signing.signers = Some(Default::default());
                return vec![finding];
            }
        };
        let (signers, mut findings) = AllowedSigners::parse(&file, &text);
        // The server's attesting key must be its own: a key also listed for a person would
        // let that person attest decisions in anyone's name.
        if let Some(a) = &signing.server_attests {
            findings.extend(shared_attesting_keys(&file, &signers, a));
        }
        let members: Vec<&str> = self.roles.values().flatten().map(String::as_str).collect();
        findings.extend(principal_warnings(&file, &text, &signers, &members));
        signing.signers = Some(std::sync::Arc::new(signers));
        findings
    }

    /// Whether records of `action` must be signed.
    pub fn requires_signature(&self, action: &str) -> bool {
        // Withdrawing an approval undoes a signed decision: it is proven as the decision
        // was, whether or not the policy names it.
        let also = (action == "withdraw").then_some("approve");
        self.signing.as_ref().is_some_and(|s| {
            s.required_for
                .iter()
                .any(|a| a == action || Some(a.as_str()) == also)
        })
    }

    /// Whether the server may attest a decision for `role` on `change` (SPEC 12.1):
    /// `signing.server_attests` names the role, the change's risk is known and not above
    /// its `max_risk`, and it proposes no policy. `Err` says why not, in a sentence.
    pub fn server_may_attest(
        &self,
        role: &str,
        change: &ChangeRequest,
    ) -> std::result::Result<&ServerAttests, String> {
        let Some(a) = self
            .signing
            .as_ref()
            .and_then(|s| s.server_attests.as_ref())
        else {
            return Err(
                "the policy does not let the server attest decisions (signing.server_attests)"
                    .into(),
            );
        };
        // Who decides the policy decides every approval: those decisions are signed by the
        // approvers themselves, never vouched for by a token.
        if change.proposed_policy.is_some() {
            return Err("decisions on a policy proposal are never attested".into());
        }
        let risk = change.risk_level;
        if !a.roles.iter().any(|r| r == role) {
            return Err(format!(
                "signing.server_attests does not name the role {role}"
            ));
        }
        match risk {
            Some(r) if r <= a.max_risk => Ok(a),
            Some(r) => Err(format!(
                "the change's risk level is {r}, above signing.server_attests.max_risk {}",
                a.max_risk
            )),
            None => Err("the change has no risk level, so the server may not attest for it".into()),
        }
    }

    /// The allowed signers, once attached.
    pub fn signers(&self) -> Option<&crate::signing::AllowedSigners> {
        self.signing.as_ref().and_then(|s| s.signers.as_deref())
    }
}

/// The allowed signers file's text, or the one finding that says why it cannot be used:
/// larger than chg reads, missing, unreadable, or not UTF-8.
fn signers_text(
    file: &str,
    read: impl Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<String, Finding> {
    let refuse = |at: &str, message: String| Finding::error(at, None, "signature", message);
    let bytes = match read(file) {
        Ok(b) if b.len() as u64 > crate::decode::MAX_FILE_BYTES => {
            return Err(refuse(
                file,
                format!(
                    "the allowed signers file is larger than chg's limit of {} bytes",
                    crate::decode::MAX_FILE_BYTES
                ),
            ));
        }
        Ok(b) => b,
        // Reported at the policy, whose `signing.allowed_signers` names the missing file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(
                POLICY_PATH,
                format!(
                    "signing.allowed_signers names {file}, which does not exist; create it (one line per key: email, then the public key)"
                ),
            ));
        }
        Err(e) => {
            return Err(refuse(
                file,
                format!("the allowed signers file cannot be read: {e}"),
            ));
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        refuse(
            file,
            "the allowed signers file is not UTF-8 text".to_owned(),
        )
    })
}

/// An error for each other principal listed with a key of the server's signer
/// (`signing.server_attests.signer`).
fn shared_attesting_keys(file: &str, signers: &AllowedSigners, a: &ServerAttests) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (principal, fingerprint) in signers.principals().filter(|(p, _)| *p == a.signer) {
        for (other, _) in signers
            .principals()
            .filter(|(p, f)| *f == fingerprint && *p != principal)
        {
            findings.push(Finding::error(
                file,
                None,
                "signature",
                format!(
                    "key {fingerprint} is listed for the server's signer {} and for {}: the key that attests decisions (signing.server_attests) must be the server's own",
                    crate::text::ascii_escaped(principal),
                    crate::text::ascii_escaped(other)
                ),
            ));
        }
    }
    findings
}

/// Warnings on the file's principals against the roles' `members`, in the file's order: a
/// pattern that lets one key sign for members, an email in no role but close to a member's.
fn principal_warnings(
    file: &str,
    text: &str,
    signers: &AllowedSigners,
    members: &[&str],
) -> Vec<Finding> {
    signers
        .principals()
        .filter_map(|(principal, fingerprint)| {
            if crate::signing::is_pattern(principal) {
                pattern_warning(file, principal, fingerprint, members)
            } else {
                typo_warning(file, text, principal, fingerprint, members)
            }
        })
        .collect()
}

/// The warning for a pattern `principal` that covers role members, if it covers any.
fn pattern_warning(
    file: &str,
    principal: &str,
    fingerprint: &str,
    members: &[&str],
) -> Option<Finding> {
    // One key for every matching email: role members' approvals included.
    let covered: Vec<&str> = members
        .iter()
        .copied()
        .filter(|m| crate::signing::covers(principal, m))
        .collect();
    if covered.is_empty() {
        return None;
    }
    Some(Finding::warning(
        file,
        None,
        "signature",
        format!(
            "the pattern {} lets key {fingerprint} sign for {}: anyone holding it approves as them",
            crate::text::ascii_escaped(principal),
            covered.join(", ")
        ),
    ))
}

/// The warning for an email `principal` in no role that is close to a member's, at its line
/// of `text` where it can be found.
fn typo_warning(
    file: &str,
    text: &str,
    principal: &str,
    fingerprint: &str,
    members: &[&str],
) -> Option<Finding> {
    // Exactly, as OpenSSH matches principals: `CM@example.com` signs for nobody
    // named cm@example.com.
    if members.contains(&principal) {
        return None;
    }
    // Anyone may sign (requesters and implementers hold no role); an email close
    // to a member's is worth a look (a typo would leave that member unable to sign).
    // Close means a typo or a look-alike (two characters at most), not a colleague
    // at the same domain (`alice@` is not `sec1@`).
    let close = members
        .iter()
        .copied()
        .map(|m| {
            let d = strsim::damerau_levenshtein(&m.to_lowercase(), &principal.to_lowercase());
            (d, m)
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, m)| m)?;
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with(principal) || l.contains(&format!(",{principal}")))
        .map(|n| Pos {
            line: u32::try_from(n + 1).unwrap_or(u32::MAX),
            column: 1,
        });
    Some(Finding::warning(
        file,
        line,
        "signature",
        format!(
            "{} (key {fingerprint}) is in no role of the policy, and close to the member {}: is it a typo?",
            crate::text::ascii_escaped(principal),
            crate::text::ascii_escaped(close)
        ),
    ))
}
