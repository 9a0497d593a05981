//! Signatures (SPEC section 9): which records the policy's signing concerns, the verdict on
//! each, and the problems and refusals they make.

use jiff::Timestamp;

use crate::model::ChangeRequest;
use crate::policy::Policy;

use super::{Problem, problem};

/// Rule id: one signed request in two change files.
pub const DUPLICATE_REQUEST: &str = "duplicate-request";

/// Whether `a` and `b` name the same request: the same requester and request time, what a
/// signature names a change by (so that renumbering keeps it). Where a copy of a change's
/// signed request would be found ([`repeats_request`]).
pub fn same_request(a: &ChangeRequest, b: &ChangeRequest) -> bool {
    a.request_date == b.request_date && a.requester == b.requester
}

/// Whether change files `a` and `b` hold one signed request: the same requester and
/// request time (what a signature names a change by, so that renumbering keeps it), both
/// signed, and a signature in common or the same material content. The second file would
/// carry decisions it was never given, under a new id; a signature cannot be in two files
/// unless one was copied from the other.
pub fn repeats_request(a: &ChangeRequest, b: &ChangeRequest) -> bool {
    if !same_request(a, b) {
        return false;
    }
    let signatures = |c: &ChangeRequest| -> Vec<String> {
        crate::signing::records(c)
            .into_iter()
            .filter_map(|r| r.signature.map(str::to_owned))
            .collect()
    };
    let (sa, sb) = (signatures(a), signatures(b));
    !sa.is_empty()
        && !sb.is_empty()
        && (sa.iter().any(|s| sb.contains(s)) || a.material_digest() == b.material_digest())
}

/// The verdict on each signable record of `change` that the policy's signing concerns: the
/// records of actions it requires signed, and any record that carries a signature (a
/// signature that is there must be right). `None` verdicts are not judged: no signing
/// policy, or the allowed signers not read.
pub fn signature_verdicts<'c>(
    change: &'c ChangeRequest,
    policy: &Policy,
) -> Vec<(crate::signing::Record<'c>, crate::signing::Verdict)> {
    signature_verdicts_since(change, policy, None)
}

/// [`signature_verdicts`], a key's time limits judged no earlier than `floor`: the time
/// history proves the record was written after (its commit's place in history), so that
/// a record backdated to before its key was retired does not revive the key.
pub fn signature_verdicts_since<'c>(
    change: &'c ChangeRequest,
    policy: &Policy,
    floor: Option<Timestamp>,
) -> Vec<(crate::signing::Record<'c>, crate::signing::Verdict)> {
    let Some(signers) = policy.signers() else {
        return Vec::new();
    };
    crate::signing::records(change)
        .into_iter()
        .filter(|r| r.signature.is_some() || policy.requires_signature(r.action))
        .map(|r| {
            let at = floor.map_or(r.statement.at, |f| f.max(r.statement.at));
            let v = record_verdict(change, &r, policy, signers, at);
            (r, v)
        })
        .collect()
}

/// The verdict on one record of `change` under `policy`, a key's time limits judged at
/// `at`: its signature against the keys listed for its signer and, for a decision the
/// server attested, whether that policy lets the server attest it (SPEC 12.1,
/// `signing.server_attests`: the role, the change's risk level, the server's principal).
/// The one judgement validate, gate, audit, sync and the server all make.
pub fn record_verdict(
    change: &ChangeRequest,
    r: &crate::signing::Record<'_>,
    policy: &Policy,
    signers: &crate::signing::AllowedSigners,
    at: Timestamp,
) -> crate::signing::Verdict {
    use crate::signing::Verdict;
    let v = signers.verify(r.signer(), at, &r.statement.text(), r.signature);
    let Some(by) = r.attested_by else {
        return v;
    };
    let Verdict::Valid {
        fingerprint,
        passkey,
        ..
    } = v
    else {
        return v;
    };
    let role = r.statement.role.as_deref().unwrap_or("");
    let why = match policy.server_may_attest(role, change) {
        Err(why) => why,
        Ok(a) if a.signer != by => {
            format!("signing.server_attests.signer is {}, not {by}", a.signer)
        }
        Ok(_) if passkey || !matches!(r.action, "approve" | "reject") => {
            "only the server's own key attests, and only approvals and rejections".into()
        }
        Ok(_)
            if let Some(other) = signers
                .principals()
                .find(|(p, f)| *f == fingerprint && *p != by)
                .map(|(p, _)| p) =>
        {
            format!(
                "that key is also listed for {}: a person's key, not the server's own",
                crate::text::ascii_escaped(other)
            )
        }
        Ok(_) => {
            return Verdict::Valid {
                fingerprint,
                passkey,
                attested: Some(by.to_owned()),
            };
        }
    };
    Verdict::NotAttestable { fingerprint, why }
}

/// Why the content record a commit by `actor` left on `after` does not vouch for it (SPEC
/// section 9, `new` and `edit` in `signing.required_for`): a record the commit wrote must be
/// `actor`'s, for this action and this content; content filed or materially edited where
/// the policy requires it signed must come with such a record. Its signature is judged with
/// the other records. `before` is `None` for a change the commit created.
pub fn content_record_problem(
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
    actor: &str,
    policy: &Policy,
) -> Option<String> {
    let action = if before.is_none() { "new" } else { "edit" };
    let digest = after.material_digest();
    let changed = before.is_none_or(|b| b.material_digest() != digest);
    let written = match before {
        None => after.content_signature.is_some(),
        Some(b) => b.content_signature != after.content_signature,
    };
    match (&after.content_signature, written) {
        (Some(r), true) => {
            let requester = after.requester.as_deref().unwrap_or("");
            if !r.by.eq_ignore_ascii_case(actor)
                || r.action != action
                || r.digest != digest
                || action == "new" && !requester.eq_ignore_ascii_case(&r.by)
            {
                return Some(format!(
                    "the content record says {} by {} for {}, but this commit is {action} by {actor} of {}",
                    r.action, r.by, r.digest, digest
                ));
            }
            None
        }
        (None, true) => Some("the content record was removed".into()),
        _ if changed && policy.requires_signature(action) => Some(format!(
            "the content was {} without {actor}'s signed record (signing.required_for has {action})",
            if action == "new" { "filed" } else { "edited" }
        )),
        _ => None,
    }
}

/// The approvals (by index) that do not count because the policy requires approvals to be
/// signed and theirs is missing or does not verify.
/// Withdrawals are judged as approvals are: a withdrawal that is required signed and is not
/// is in the list, so gate and implement name it.
pub fn unsigned_approvals(change: &ChangeRequest, policy: &Policy) -> Vec<usize> {
    if !policy.requires_signature("approve") && !policy.requires_signature("withdraw") {
        return Vec::new();
    }
    signature_verdicts(change, policy)
        .into_iter()
        .filter(|(r, v)| {
            matches!(r.action, "approve" | "withdraw")
                && policy.requires_signature(r.action)
                && !v.is_valid()
        })
        .filter_map(|(r, _)| r.approval)
        .collect()
}

/// Signature problems of the file as it is (rule `signature`, at the record's place): an
/// invalid, foreign or transplanted signature always; a missing one where the policy
/// requires it, on a change that is not yet history (rejected, closed or cancelled changes
/// keep the records of the policy of their day).
pub fn signature_problems(change: &ChangeRequest, policy: &Policy) -> Vec<Problem> {
    let history = change.status().is_terminal();
    signature_verdicts(change, policy)
        .into_iter()
        .filter(|(_, v)| !(v.is_valid() || history && *v == crate::signing::Verdict::Missing))
        .map(|(r, v)| {
            let path = if v == crate::signing::Verdict::Missing {
                r.path
                    .rsplit_once('.')
                    .map_or(r.path.clone(), |(p, _)| p.to_owned())
            } else {
                r.path.clone()
            };
            problem(
                path,
                crate::signing::SIGNATURE,
                format!(
                    "the {} record by {}: {}",
                    r.action,
                    r.actor,
                    v.problem(r.signer()).unwrap_or_default()
                ),
            )
        })
        .collect()
}
