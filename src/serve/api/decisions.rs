//! `POST …/approve` and `GET …/statement`: a decision (signed with the person's key or a
//! passkey, attested by the server, or unsigned, as the policy allows) and the statement
//! a signature covers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chg::model::{ChangeId, Status, format_timestamp};
use chg::store::Store;
use chg::workflow::Step;
use jiff::Timestamp;

use super::{
    ApiError, ApproveRequest, Body, Decided, ErrorBody, Params, StatementAnswer, StatementParams,
    context, context_at, parse_id, synced,
};
use crate::serve::auth::{ApiPerson, Person, now};
use crate::serve::{AppState, Shared, blocking, blocking_write};

/// The role `req` decides for, or the library's own inference (exactly one held role).
fn decision_step(req: &ApproveRequest) -> Result<Step, ApiError> {
    let role = req.role.clone().filter(|r| !r.trim().is_empty());
    if req.approved {
        Ok(Step::Approve {
            role,
            comment: req.comments.clone().filter(|c| !c.trim().is_empty()),
            conditions: req
                .conditions
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect(),
        })
    } else {
        let comment = req
            .comments
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ApiError::bad(
                    "comments",
                    "comments: a rejection needs comments saying why",
                )
            })?;
        Ok(Step::Reject { role, comment })
    }
}

/// A signature an API client made with its own key, given to the library as the record
/// signer: the library checks that the allowed signers list its key for the person and
/// that it verifies over the statement, or writes nothing.
pub struct GivenSignature {
    key: String,
    armored: String,
}

impl GivenSignature {
    /// The signature as sent (armored SSHSIG); 400 when it is not one.
    pub fn parse(armored: &str) -> Result<GivenSignature, ApiError> {
        let sig = ssh_key::SshSig::from_pem(armored.trim()).map_err(|e| {
            ApiError::bad(
                "signature",
                format!("signature: not an armored SSH signature ({e})"),
            )
        })?;
        let key = ssh_key::PublicKey::from(sig.public_key().clone())
            .to_openssh()
            .map_err(|e| ApiError::bad("signature", format!("signature: {e}")))?;
        Ok(GivenSignature {
            key,
            armored: armored.trim().to_owned() + "\n",
        })
    }
}

impl chg::signing::RecordSigner for GivenSignature {
    fn public_key(&self) -> chg::Result<String> {
        Ok(self.key.clone())
    }
    fn sign(&self, _statement: &[u8]) -> chg::Result<String> {
        Ok(self.armored.clone())
    }
}

/// The time a signed decision records: the `at` its statement said, within the last ten
/// minutes (a statement is handed out to be signed at once).
fn signed_at(at: Option<&str>) -> Result<Timestamp, ApiError> {
    let Some(at) = at else {
        return Err(ApiError::bad(
            "at",
            "at: a signed decision sends the `at` of its statement",
        ));
    };
    let t: Timestamp = at
        .parse()
        .map_err(|e| ApiError::bad("at", format!("at: `{at}` is not an RFC 3339 time: {e}")))?;
    let now = now();
    if t > now || now.duration_since(t).as_secs() > 600 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "statement-expired",
            "the statement's time is not within the last ten minutes; fetch the statement again and sign it",
        ));
    }
    Ok(t)
}

#[utoipa::path(post, path = "/api/v1/change-management/change-requests/{id}/approve", request_body = ApproveRequest,
    params(("id" = String, Path, description = "CHG-2025-001")),
    responses((status = 200, body = Decided), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn approve(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Body(req): Body<ApproveRequest>,
) -> Result<Json<Decided>, ApiError> {
    let out = blocking_write(&state, move |shared, store| {
        decide(shared, store, &person, &id, req)
    })
    .await?;
    Ok(Json(out))
}

/// Takes a decision for `person` on change `id` (the API and the pages share it).
pub fn decide(
    shared: &Shared,
    store: &Store,
    person: &Person,
    id: &str,
    req: ApproveRequest,
) -> Result<Decided, ApiError> {
    synced(shared, store, &context(shared, person)?)?;
    let policy = store.policy()?;
    let id = parse_id(id, &policy)?;
    let step = decision_step(&req)?;
    let mut counter = None;
    // A passkey's counter is checked before its step and recorded after it: one passkey
    // step at a time in this server, so two answers with one counter cannot both pass.
    static PASSKEY_STEPS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = req
        .passkey
        .is_some()
        .then(|| PASSKEY_STEPS.lock().unwrap_or_else(|e| e.into_inner()));
    let ctx = match (&req.passkey, &req.signature) {
        // A passkey's answer (SPEC 12.1): signed through the library, checked there.
        (Some(passkey), _) => {
            // A client that does not send `at` back is understood from its challenge.
            let at = req
                .at
                .clone()
                .or_else(|| crate::serve::passkey::issued_at(passkey));
            let at = signed_at(at.as_deref())?;
            let (ctx, seen) =
                crate::serve::passkey::signing_context(shared, store, person, at, passkey)?;
            counter = seen;
            ctx
        }
        (None, Some(sig)) => {
            let at = signed_at(req.at.as_deref())?;
            context_at(shared, person, at)?.signing_records(Arc::new(GivenSignature::parse(sig)?))
        }
        // No signature of the person's: the server attests it where it holds a key and
        // the policy allows it for this role and risk (the library decides, and refuses
        // where the policy requires a signature it may not attest).
        (None, None) => {
            let ctx = context(shared, person)?;
            match &shared.attester {
                Some(signer) => ctx.attested_by(chg::context::Attester {
                    signer: signer.clone(),
                    via: person.via(),
                }),
                None => ctx,
            }
        }
    };
    let o = store.transition(&ctx, &id, step)?;
    if let Some((fingerprint, n)) = counter {
        // Committed: from now on this key must count above n.
        crate::serve::passkey::Counters::of(store).saw(&fingerprint, n)?;
    }
    synced(shared, store, &ctx)?;
    let status = o.change.status();
    let next_step = match status {
        Status::PendingApproval => "approval",
        Status::Approved => "implementation",
        Status::Rejected => "closed",
        _ => "none",
    };
    Ok(Decided {
        change_request_id: o.change.id_text(),
        status: status.to_string(),
        approved_by: o.transition.role.clone().unwrap_or_default(),
        approver: person.email.clone(),
        decision: if req.approved { "approved" } else { "rejected" }.into(),
        approved_at: format_timestamp(ctx.now),
        next_step: next_step.into(),
        proof: match o.change.approvals.last() {
            Some(a) if a.attested_by.is_some() => "attested",
            Some(a) if a.signature.is_some() => "signature",
            _ => "none",
        }
        .into(),
        waiting_for: o.waiting_for,
        commit: o.commit.to_string(),
    })
}

/// The SSHSIG signed-data blob of `statement` (PROTOCOL.sshsig: `SSHSIG`, the namespace,
/// an empty reserved string, the hash algorithm, the SHA-512 of the message), base64url.
pub fn signed_data(statement: &str) -> String {
    chg::webauthn::challenge(statement.as_bytes())
}

/// The statement `person` signs to take `action` (approve, reject) for `role` on the change
/// as it is now: the library's own statement of the record the step would write.
pub fn statement_for(
    store: &Store,
    person: &Person,
    id: &ChangeId,
    action: &str,
    role: Option<String>,
    at: Timestamp,
) -> Result<StatementAnswer, ApiError> {
    let policy = store.policy()?;
    let loaded = store.load(id)?;
    let step = match action {
        "approve" => Step::Approve {
            role,
            comment: None,
            conditions: Vec::new(),
        },
        "reject" => Step::Reject {
            role,
            comment: "(statement)".into(),
        },
        other => {
            return Err(ApiError::bad(
                "action",
                format!("action: `{other}` is not approve or reject"),
            ));
        }
    };
    // The step as the library would take it (refusing as it would), without committing:
    // its record's statement is what the signature must cover.
    let provenance = chg::standing::of(store, id, at)?.provenance(&id.to_string());
    let (next, transition) = chg::workflow::apply_with(
        loaded.change(),
        policy.for_intake(true),
        &person.email,
        at,
        step,
        &provenance,
    )?;
    let record = chg::signing::new_record(&next, transition.action.as_str())
        .ok_or_else(|| ApiError::internal("the step wrote no record"))?;
    let text = record.statement.text();
    Ok(StatementAnswer {
        signed_data: signed_data(&text),
        statement: text,
        at: format_timestamp(at),
        role: transition.role.unwrap_or_default(),
    })
}

#[utoipa::path(get, path = "/api/v1/change-management/change-requests/{id}/statement",
    params(("id" = String, Path, description = "CHG-2025-001"), StatementParams),
    responses((status = 200, body = StatementAnswer), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn statement(
    State(state): State<AppState>,
    ApiPerson(person): ApiPerson,
    Path(id): Path<String>,
    Params(p): Params<StatementParams>,
) -> Result<Json<StatementAnswer>, ApiError> {
    let out = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let id = parse_id(&id, &policy)?;
        statement_for(store, &person, &id, &p.action, p.role, now())
    })
    .await?;
    crate::serve::passkey::remember(&out);
    Ok(Json(out))
}
