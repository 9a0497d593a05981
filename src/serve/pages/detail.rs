//! One change's page: its approvals (each signature's verdict, what changed since each),
//! its fields, its history, and the decision form where the person may decide.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chg::model::{ChangeRequest, format_timestamp};
use chg::store::Store;
use maud::{Markup, html};
use serde::Deserialize;

use super::{error_page, page, status_pill};
use crate::serve::api::{self, ApiError, Params};
use crate::serve::auth::{PagePerson, Person, now};
use crate::serve::{AppState, Shared, blocking};

/// What one page of a change shows.
struct ChangeView {
    change: ChangeRequest,
    file: String,
    required: Vec<String>,
    missing: Vec<String>,
    /// Per approval index: the signature's mark and whether it verifies.
    verdicts: Vec<(usize, String, bool)>,
    history: api::History,
    /// Per approval index: the material fields changed since it was given.
    changed_since: Vec<(usize, Vec<String>)>,
    /// The roles the person may decide for now.
    my_roles: Vec<String>,
    signed: bool,
    /// The roles of the person's for which the server attests a decision made without a
    /// signature of theirs (it holds a key and the policy allows it).
    attested: Vec<String>,
    /// The relying party id, when the person has a passkey listed for it (then the
    /// decision form offers "Approve with passkey").
    rp_id: Option<String>,
}

fn view(shared: &Shared, store: &Store, person: &Person, id: &str) -> Result<ChangeView, ApiError> {
    let policy = store.policy()?;
    let id = api::parse_id(id, &policy)?;
    let loaded = store.load(&id)?;
    let c = loaded.change().clone();
    let verdicts = chg::rules::signature_verdicts(&c, &policy)
        .into_iter()
        .filter_map(|(r, v)| r.approval.map(|i| (i, v.mark(), v.is_valid())))
        .collect();
    let now = now();
    let provenance = chg::standing::of(store, &id, now)
        .map(|s| s.provenance(&id.to_string()))
        .unwrap_or_default();
    let my_roles = chg::workflow::approvable_roles(&c, &policy, &person.email, &provenance);
    let history = api::history_of(store, &id)?;
    // What changed since each decision: the material fields whose value differs from the
    // content the decision was made on (its digest names it; the file at the decision's
    // commit holds it).
    let mut changed_since = Vec::new();
    let current = c.material_digest();
    for (i, a) in c.approvals.iter().enumerate() {
        if a.digest.as_deref().is_none_or(|d| d == current) {
            changed_since.push((i, Vec::new()));
            continue;
        }
        let at = format_timestamp(a.at);
        let commit = history.history.iter().find(|h| {
            h.timestamp == at && h.user.eq_ignore_ascii_case(&a.by) && h.details.contains(&a.role)
        });
        let fields = commit
            .and_then(|h| old_version(store, &h.commit, &loaded.rel))
            .map(|old| {
                chg::model::MATERIAL_FIELDS
                    .iter()
                    .filter(|f| old.field_text(f) != c.field_text(f))
                    .map(|f| (*f).to_owned())
                    .collect()
            })
            .unwrap_or_else(|| vec!["(content changed)".to_owned()]);
        changed_since.push((i, fields));
    }
    Ok(ChangeView {
        file: store.repo_path(&loaded.rel),
        required: policy.required_roles(&c),
        missing: chg::rules::missing_roles(&c, &policy),
        signed: policy.requires_signature("approve"),
        attested: my_roles
            .iter()
            .filter(|r| shared.attester.is_some() && policy.server_may_attest(r, &c).is_ok())
            .cloned()
            .collect(),
        rp_id: crate::serve::passkey::relying_party(shared)
            .ok()
            .map(|(_, rp)| rp)
            .filter(|rp| {
                policy
                    .signers()
                    .is_some_and(|s| !s.passkeys_for(&person.email, now, rp).is_empty())
            }),
        change: c,
        verdicts,
        history,
        changed_since,
        my_roles,
    })
}

/// The change file as it was at `commit`.
fn old_version(store: &Store, commit: &str, rel: &std::path::Path) -> Option<ChangeRequest> {
    let repo = store.repo();
    let commit = repo.find_commit(git2::Oid::from_str(commit).ok()?).ok()?;
    let path = store.repo_path(rel);
    let entry = commit
        .tree()
        .ok()?
        .get_path(std::path::Path::new(&path))
        .ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    let d = chg::decode::decode_bytes(&path, blob.content());
    d.parsed.then_some(d.change)
}

#[derive(Deserialize, Default)]
pub(super) struct Decided {
    decided: Option<String>,
}

pub(super) async fn change(
    State(state): State<AppState>,
    who: PagePerson,
    Path(id): Path<String>,
    decided: Result<Params<Decided>, ApiError>,
) -> Response {
    let person = who.person.clone();
    // After a decision (post, redirect, get): which commit recorded it, said on the page.
    let notice = decided
        .ok()
        .and_then(|q| q.0.decided)
        .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|c| format!("Your decision is recorded (commit {c})."));
    match blocking(&state, move |shared, store| {
        view(shared, store, &person, &id)
    })
    .await
    {
        Ok(v) => change_page(&who, &v, notice.as_deref()).into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}

fn change_page(who: &PagePerson, v: &ChangeView, notice: Option<&str>) -> Markup {
    let c = &v.change;
    let id = c.id_text();
    page(
        &id,
        Some(who),
        html! {
            h1 { (id) " " (c.title.as_deref().unwrap_or("(no title)")) }
            @if let Some(n) = notice { p class="card ok" { (n) } }
            p { (status_pill(c)) " " span class="muted" { (v.file) } }
            @if !v.my_roles.is_empty() {
                div class="card" {
                    h2 { "Your decision" }
                    @if !v.attested.is_empty() {
                        p class="muted" { "Approve or Reject as " (v.attested.join(", ")) " is recorded as attested by this server, not signed by you; approve with a passkey to sign it yourself." }
                    } @else if v.signed {
                        p class="muted" { "The policy requires approvals signed: approve with a passkey (Passkeys page) or with the CLI and your SSH key." }
                    }
                    form method="post" action={ "/changes/" (id) "/decide" } {
                        input type="hidden" name="csrf" value=(who.csrf);
                        p { label { "Role " select name="role" {
                            @for r in &v.my_roles { option value=(r) { (r) } }
                        } } }
                        p { label { "Comments" br; textarea name="comments" rows="2" {} } }
                        p { label { "Conditions (one a line)" br; textarea name="conditions" rows="2" {} } }
                        button type="submit" name="decision" value="approve" { "Approve" } " "
                        button type="submit" name="decision" value="reject" class="reject" { "Reject" } " "
                        @if let Some(rp) = &v.rp_id { (crate::serve::passkey::approve_controls(&id, rp)) }
                    }
                }
            }
            h2 { "Approvals" }
            @if v.required.is_empty() { p class="muted" { "No approval required." } }
            ul {
                @for r in &v.required {
                    li { (r) ": " @if v.missing.contains(r) { span class="bad" { "waiting" } } @else { span class="ok" { "approved" } } }
                }
            }
            @if !c.approvals.is_empty() {
                div class="scroll" { table {
                    thead { tr { th { "Role" } th { "Who" } th { "Decision" } th { "When" } th { "Signature" } th { "Changed since" } } }
                    tbody {
                        @for (i, a) in c.approvals.iter().enumerate() {
                            @let verdict = v.verdicts.iter().find(|(j, _, _)| *j == i);
                            @let since = v.changed_since.iter().find(|(j, _)| *j == i).map(|(_, f)| f.clone()).unwrap_or_default();
                            tr {
                                td { (a.role) }
                                td { (a.by) }
                                td { (a.decision.as_str())
                                    @if let Some(cm) = &a.comments { br; span class="muted" { (cm) } }
                                    @for cond in &a.conditions { br; span class="muted" { "condition: " (cond) } }
                                }
                                td { (format_timestamp(a.at)) }
                                td { @match verdict {
                                    Some((_, mark, true)) => span class="ok" { (mark) },
                                    Some((_, mark, false)) => span class="bad" { (mark) },
                                    None => span class="muted" { "not signed" },
                                } }
                                td { @if since.is_empty() { span class="ok" { "nothing" } } @else { span class="bad" { (since.join(", ")) } } }
                            }
                        }
                    }
                } }
            }
            h2 { "Change" }
            div class="card" { dl {
                @for f in ["change_type", "change_model", "priority", "urgency", "risk_level", "requester", "request_date", "affected_systems", "impact_scope", "testing_required", "test_environment", "description", "business_justification", "implementation_plan", "rollback_plan", "test_plan"] {
                    @if let Some(val) = c.field_text(f) { dt { (f.replace('_', " ")) } dd { (val) } }
                }
                @if let Some(s) = &c.schedule {
                    dt { "schedule" } dd { (format_timestamp(s.start)) " to " (format_timestamp(s.end)) @if s.maintenance_window { " (maintenance window)" } }
                }
                @if let Some(imp) = &c.implementation {
                    @if let Some(by) = &imp.implementer { dt { "implementer" } dd { (by) } }
                    @if let Some(t) = imp.started_at { dt { "started" } dd { (format_timestamp(t)) } }
                    @if let Some(t) = imp.completed_at { dt { "completed" } dd { (format_timestamp(t)) } }
                    @if let Some(o) = imp.outcome { dt { "outcome" } dd { (o.as_str()) } }
                }
            } }
            h2 { "History" }
            div class="scroll" { table {
                thead { tr { th { "When" } th { "Who" } th { "What" } th class="wide" { "Commit" } th { "Audit" } } }
                tbody {
                    @for h in &v.history.history {
                        tr {
                            td { (h.timestamp) }
                            td { (h.user) }
                            td { (h.action) br; span class="muted" { (h.details) } }
                            td class="wide" { code { (h.commit.get(..8).unwrap_or(&h.commit)) } }
                            td { @if h.audit == "ok" { span class="ok" { "ok" } } @else { span class="bad" { (h.audit) } } }
                        }
                    }
                }
            } }
        },
    )
}
