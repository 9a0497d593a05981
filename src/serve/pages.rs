//! The web pages for approvers (SPEC section 12): server-rendered (maud, checked at compile
//! time), no JavaScript, readable at phone width. Every page has a stable link
//! (`/changes/CHG-2026-014`), so a notification can point straight at the decision.
//!
//! Signing in takes a token (`chg token create`) and makes a session cookie (HttpOnly,
//! SameSite=Strict); every form carries the session's CSRF token, and form posts are
//! checked for `Sec-Fetch-Site` and `Origin` ([`super::auth::check_csrf`]).

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chg::model::{ChangeRequest, format_timestamp};
use chg::store::Store;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::api::{self, ApiError, ApproveRequest, ListParams, Params};
use super::auth::{self, PagePerson, Person, check_csrf, now};
use super::{AppState, Shared, blocking, blocking_write};

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/changes", get(changes))
        .route("/changes/{id}", get(change))
        .route("/changes/{id}/decide", post(decide))
        .route("/cab", get(cab))
        .route("/calendar", get(calendar))
        .route("/report", get(report))
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1d2126;background:#f7f7f8;line-height:1.45}
header{background:#1d2b3a;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:.9rem;opacity:.85}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.3rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff}td,th{padding:.4rem .5rem;border-bottom:1px solid #e3e3e6;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}.muted{color:#667}.ok{color:#137333}.bad{color:#b3261e}
.pill{display:inline-block;padding:0 .45rem;border-radius:.6rem;background:#e8eaed;font-size:.85rem}
form.inline{display:inline}input,select,textarea,button{font:inherit;padding:.35rem;max-width:100%;box-sizing:border-box}
textarea{width:100%}button{background:#1d5fbf;color:#fff;border:0;border-radius:.3rem;padding:.45rem .9rem;cursor:pointer}
button.reject{background:#b3261e}.card{background:#fff;border:1px solid #e3e3e6;border-radius:.4rem;padding:.8rem;margin:.6rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{color:#667}dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.error{background:#fde8e7;border:1px solid #f3b8b4;padding:.6rem;border-radius:.4rem}
.filters{display:flex;flex-wrap:wrap;gap:.4rem;align-items:end;margin-bottom:.8rem}
@media (max-width:40rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}td,th{padding:.35rem .3rem}.wide{display:none}}
";

/// A whole page.
pub(super) fn page(title: &str, who: Option<&PagePerson>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · chg" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { strong { "chg" } }
                    @if let Some(p) = who {
                        a href="/" { "Waiting for me" }
                        a href="/changes" { "Changes" }
                        a href="/cab" { "CAB" }
                        a href="/calendar" { "Calendar" }
                        a href="/report" { "Report" }
                        a href="/passkeys" { "Passkeys" }
                        span class="who" {
                            (p.person.email) " "
                            form class="inline" method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(p.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error shown as a page.
pub(super) fn error_page(who: Option<&PagePerson>, e: ApiError) -> Response {
    let status = e.status;
    let body = page(
        "Error",
        who,
        html! {
            h1 { "Not done" }
            p class="error" { (e.message) " " span class="muted" { "(" (e.rule) ")" } }
            p { a href="/" { "Back" } }
        },
    );
    (status, body).into_response()
}

fn status_pill(c: &ChangeRequest) -> Markup {
    html! { span class="pill" { (c.status().as_str()) } }
}

fn change_rows(items: &[(ChangeRequest, Vec<String>)]) -> Markup {
    html! {
        div class="scroll" {
            table {
                thead { tr { th { "Change" } th { "Title" } th { "Status" } th class="wide" { "Priority" } th { "Waiting for" } } }
                tbody {
                    @for (c, waiting) in items {
                        tr {
                            td { a href={ "/changes/" (c.id_text()) } { (c.id_text()) } }
                            td { (c.title.as_deref().unwrap_or("(no title)")) }
                            td { (status_pill(c)) }
                            td class="wide" { (c.priority.map(|p| p.as_str()).unwrap_or("")) }
                            td { (waiting.join(", ")) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sign in and out

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

async fn signin_page(Params(p): Params<NextParam>) -> Markup {
    signin_form(p.next.as_deref(), None)
}

fn signin_form(next: Option<&str>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p class="error" { (e) } }
            form method="post" action="/signin" class="card" {
                p { label for="token" { "Your token (from " code { "chg token create" } ")" } }
                p { input id="token" type="password" name="token" autocomplete="off" required style="width:100%"; }
                input type="hidden" name="next" value=(auth::safe_next(next));
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

async fn signin(
    State(state): State<AppState>,
    auth::ClientIp(ip): auth::ClientIp,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(e) = state.limiter.check(ip) {
        return error_page(None, e);
    }
    if let Err(e) = check_csrf(&state, &headers, None, None) {
        return error_page(None, e);
    }
    let Ok(Form(form)) = form else {
        return error_page(None, ApiError::bad("body", "the form is malformed"));
    };
    let record = match state.tokens.authenticate(&form.token, now()) {
        Ok(Some(r)) => r,
        Ok(None) => {
            state.limiter.fail(ip);
            return (
                StatusCode::UNAUTHORIZED,
                signin_form(
                    form.next.as_deref(),
                    Some("Unknown, revoked or expired token."),
                ),
            )
                .into_response();
        }
        Err(e) => return error_page(None, e.into()),
    };
    let id = match state.sessions.create(&record.id) {
        Ok(id) => id,
        Err(e) => return error_page(None, e),
    };
    let mut r = Redirect::to(&auth::safe_next(form.next.as_deref())).into_response();
    if let Ok(v) = auth::set_cookie(&state, &id).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn signout(
    State(state): State<AppState>,
    who: PagePerson,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&state, &headers, form.csrf.as_deref(), Some(&who.csrf)) {
        return error_page(Some(&who), e);
    }
    if let Some(s) = &who.person.session {
        state.sessions.remove(s);
    }
    let mut r = Redirect::to("/signin").into_response();
    if let Ok(v) = auth::clear_cookie().parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------------------------------
// Lists

/// Changes with the roles each awaits.
type Rows = Vec<(ChangeRequest, Vec<String>)>;

/// The changes a query selects, with the roles each awaits (the library's query).
fn select(
    shared: &Shared,
    store: &Store,
    query: &chg::query::Query,
) -> Result<(Rows, usize), ApiError> {
    let policy = store.policy()?;
    let page = api::run(shared, store, &policy, query)?;
    let rows = page
        .rows
        .into_iter()
        .map(|r| {
            let c = r.item.change().clone();
            let waiting = if r.awaiting.is_empty() {
                chg::rules::missing_roles(&c, &policy)
            } else {
                r.awaiting
            };
            (c, waiting)
        })
        .collect();
    Ok((rows, page.total))
}

async fn home(State(state): State<AppState>, who: PagePerson) -> Response {
    let email = who.person.email.clone();
    let r = blocking(&state, move |shared, store| {
        let q = chg::query::Query {
            awaiting: Some(email.clone()),
            limit: Some(200),
            ..Default::default()
        };
        let waiting = select(shared, store, &q)?;
        let mine = chg::query::Query {
            requester: Some(email),
            open_only: true,
            limit: Some(50),
            ..Default::default()
        };
        Ok((waiting, select(shared, store, &mine)?))
    })
    .await;
    match r {
        Ok(((waiting, n), (mine, _))) => page(
            "Waiting for me",
            Some(&who),
            html! {
                h1 { "Waiting for me" }
                @if waiting.is_empty() {
                    p class="muted" { "Nothing waits for your approval." }
                } @else {
                    p { (n) " change(s) wait for your decision." }
                    (change_rows(&waiting))
                }
                h2 { "My open changes" }
                @if mine.is_empty() { p class="muted" { "None." } } @else { (change_rows(&mine)) }
            },
        )
        .into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}

async fn changes(
    State(state): State<AppState>,
    who: PagePerson,
    params: Result<Params<ListParams>, ApiError>,
) -> Response {
    let p = match params {
        Ok(Params(p)) => p,
        Err(e) => return error_page(Some(&who), e),
    };
    let person = who.person.clone();
    let shown = (
        p.status.clone().unwrap_or_default(),
        p.change_type.clone().unwrap_or_default(),
        p.priority.clone().unwrap_or_default(),
        p.system.clone().unwrap_or_default(),
    );
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let q = api::list_query(&p, &policy, &person)?;
        Ok((select(shared, store, &q)?, policy.change_types.clone()))
    })
    .await;
    let ((rows, total), types) = match r {
        Ok(x) => x,
        Err(e) => return error_page(Some(&who), e),
    };
    let opt = |v: &str, current: &str| {
        html! { option value=(v) selected[v == current] { (if v.is_empty() { "any" } else { v }) } }
    };
    page(
        "Changes",
        Some(&who),
        html! {
            h1 { "Changes" }
            form method="get" action="/changes" class="filters" {
                label { "Status " select name="status" {
                    @for s in ["", "draft", "pending_approval", "approved", "rejected", "implementing", "closed", "cancelled"] { (opt(s, &shown.0)) }
                } }
                label { "Type " select name="type" {
                    (opt("", &shown.1))
                    @for t in &types { (opt(t, &shown.1)) }
                } }
                label { "Priority " select name="priority" {
                    @for s in ["", "critical", "high", "medium", "low"] { (opt(s, &shown.2)) }
                } }
                label { "System " input type="text" name="system" value=(shown.3) size="12"; }
                button type="submit" { "Filter" }
            }
            p class="muted" { (total) " change(s)" @if total > rows.len() { ", first " (rows.len()) " shown" } }
            (change_rows(&rows))
        },
    )
    .into_response()
}

// ---------------------------------------------------------------------------------------
// One change

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

fn view(
    shared: &super::Shared,
    store: &Store,
    person: &Person,
    id: &str,
) -> Result<ChangeView, ApiError> {
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
        .map(|s| s.provenance())
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
        rp_id: super::passkey::relying_party(shared)
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
struct Decided {
    decided: Option<String>,
}

async fn change(
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
                        @if let Some(rp) = &v.rp_id { (super::passkey::approve_controls(&id, rp)) }
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

#[derive(Deserialize)]
struct DecideForm {
    csrf: Option<String>,
    decision: String,
    role: Option<String>,
    comments: Option<String>,
    conditions: Option<String>,
    // A passkey approval (filled by the passkey button's script; empty otherwise).
    at: Option<String>,
    client_data_json: Option<String>,
    authenticator_data: Option<String>,
    signature: Option<String>,
    credential_id: Option<String>,
}

async fn decide(
    State(state): State<AppState>,
    who: PagePerson,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(Some(&who), ApiError::bad("body", "the form is malformed"));
    };
    if let Err(e) = check_csrf(&state, &headers, form.csrf.as_deref(), Some(&who.csrf)) {
        return error_page(Some(&who), e);
    }
    // As the API's bodies: a NUL cannot be kept in a change file or a commit.
    if [&form.comments, &form.conditions]
        .into_iter()
        .flatten()
        .any(|t| t.contains('\0'))
    {
        return error_page(
            Some(&who),
            ApiError::bad("body", "a text may not contain a NUL character"),
        );
    }
    let approved = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return error_page(
                Some(&who),
                ApiError::bad("decision", "decision: approve or reject"),
            );
        }
    };
    let req = ApproveRequest {
        approved,
        comments: form.comments,
        conditions: form
            .conditions
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        role: form.role,
        passkey: super::passkey::from_form(
            form.client_data_json.as_deref(),
            form.authenticator_data.as_deref(),
            form.signature.as_deref(),
            form.credential_id.as_deref(),
        ),
        at: form.at.filter(|a| !a.is_empty()),
        ..Default::default()
    };
    let person = who.person.clone();
    let r = blocking_write(&state, move |shared, store| {
        api::decide(shared, store, &person, &id, req)
    })
    .await;
    match r {
        // Post, redirect, get: reloading the page does not send the decision again.
        Ok(d) => Redirect::to(&format!(
            "/changes/{}?decided={}",
            d.change_request_id,
            d.commit.get(..8).unwrap_or(&d.commit)
        ))
        .into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}

// ---------------------------------------------------------------------------------------
// CAB, calendar, report

async fn cab(State(state): State<AppState>, who: PagePerson) -> Response {
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let until = now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 7))
            .unwrap_or(now());
        let all = shared.summaries_where(store, chg::query::agenda_reads)?;
        Ok(chg::query::agenda_over(store, &policy, until, all)?)
    })
    .await;
    let agenda = match r {
        Ok(a) => a,
        Err(e) => return error_page(Some(&who), e),
    };
    page(
        "CAB agenda",
        Some(&who),
        html! {
            h1 { "Change advisory board agenda" }
            @if agenda.groups.is_empty() { p class="muted" { "Nothing awaits approval." } }
            @for (priority, items) in &agenda.groups {
                h2 { (priority.as_str()) " (" (items.len()) ")" }
                @let rows: Vec<(ChangeRequest, Vec<String>)> = items.iter().map(|i| (i.change.clone(), i.awaiting.clone())).collect();
                (change_rows(&rows))
                @for i in items {
                    @for c in &i.conflicts {
                        p class="bad" { (i.change.id_text()) ": " (c.kind) ": " (c.message) }
                    }
                }
            }
            @if agenda.preapproved > 0 { p class="muted" { (agenda.preapproved) " pre-approved standard change(s) pending." } }
        },
    )
    .into_response()
}

async fn calendar(State(state): State<AppState>, who: PagePerson) -> Response {
    let r = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let from = now();
        let to = chg::calendar::default_range(from).1;
        let all = store.load_where(|c| c.schedule.is_some())?;
        let changes: Vec<&ChangeRequest> = all
            .iter()
            .filter(|l| l.decoded.parsed)
            .map(|l| l.change())
            .collect();
        Ok(chg::calendar::events(&changes, &policy, from, to)
            .into_iter()
            .map(|e| (e.kind, e.uid, e.start, e.end, e.summary))
            .collect::<Vec<_>>())
    })
    .await;
    let events = match r {
        Ok(e) => e,
        Err(e) => return error_page(Some(&who), e),
    };
    page(
        "Calendar",
        Some(&who),
        html! {
            h1 { "Calendar" }
            @if events.is_empty() { p class="muted" { "Nothing scheduled." } }
            div class="scroll" { table {
                thead { tr { th { "When" } th { "What" } } }
                tbody {
                    @for (kind, uid, start, end, summary) in &events {
                        tr {
                            td { (format_timestamp(*start)) br; span class="muted" { "to " (format_timestamp(*end)) } }
                            td {
                                @if *kind == "change" { a href={ "/changes/" (uid) } { (summary) } }
                                @else { span class="muted" { (kind) ": " } (summary) }
                            }
                        }
                    }
                }
            } }
        },
    )
    .into_response()
}

#[derive(Deserialize, Default)]
struct ReportParam {
    period: Option<String>,
}

async fn report(
    State(state): State<AppState>,
    who: PagePerson,
    params: Result<Params<ReportParam>, ApiError>,
) -> Response {
    let period = match params {
        Ok(Params(p)) => p.period.filter(|p| !p.trim().is_empty()),
        Err(e) => return error_page(Some(&who), e),
    };
    let bounds = match period.as_deref().map(chg::report::parse_period).transpose() {
        Ok(b) => b,
        Err(e) => return error_page(Some(&who), ApiError::bad("period", format!("period: {e}"))),
    };
    let r = blocking(&state, move |shared, store| {
        let policy = store.policy()?;
        let (r, _) = chg::query::report_over(
            &policy,
            bounds.map(|b| b.0),
            bounds.map(|b| b.1),
            &shared.summaries(store)?,
        );
        Ok(r)
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => return error_page(Some(&who), e),
    };
    let seed = api::report_json(&r, period.as_deref());
    let bars = |title: &str, m: &std::collections::BTreeMap<String, usize>| {
        let labels: Vec<String> = m.keys().cloned().collect();
        let values: Vec<usize> = m.values().copied().collect();
        chg::report::svg_bars(title, &labels, &[("changes", "#1d5fbf", values)])
    };
    let weeks: Vec<String> = r.weekly.iter().map(|w| w.week.clone()).collect();
    let outcomes = chg::report::svg_bars(
        "Outcomes by week",
        &weeks,
        &[
            (
                "successful",
                "#137333",
                r.weekly.iter().map(|w| w.successful).collect(),
            ),
            (
                "failed",
                "#b3261e",
                r.weekly.iter().map(|w| w.failed).collect(),
            ),
            (
                "rolled back",
                "#e37400",
                r.weekly.iter().map(|w| w.rolled_back).collect(),
            ),
        ],
    );
    page(
        "Report",
        Some(&who),
        html! {
            h1 { "Report" @if let Some(p) = &period { " " (p) } }
            form method="get" action="/report" class="filters" {
                label { "Period " input type="text" name="period" value=(period.clone().unwrap_or_default()) placeholder="2025-01, 2025-Q1, 2025" size="12"; }
                button type="submit" { "Show" }
            }
            div class="card" { dl {
                dt { "total changes" } dd { (r.total) }
                dt { "average approval time" } dd { (seed["average_approval_time"].as_str().unwrap_or("–")) }
                dt { "average implementation time" } dd { (seed["average_implementation_time"].as_str().unwrap_or("–")) }
                @for m in &r.rates {
                    dt { (m.name.replace('_', " ")) }
                    dd { (m.value.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "–".into()))
                        @if let Some(t) = m.target { span class="muted" { " (target " (m.bound) " " (format!("{:.0}%", t * 100.0)) ")" } }
                        @match m.met { Some(true) => span class="ok" { " met" }, Some(false) => span class="bad" { " missed" }, None => {} }
                    }
                }
            } }
            div class="card scroll" { (PreEscaped(bars("By status", &r.by_status))) }
            div class="card scroll" { (PreEscaped(bars("By priority", &r.by_priority))) }
            div class="card scroll" { (PreEscaped(bars("By type", &r.by_type))) }
            div class="card scroll" { (PreEscaped(outcomes)) }
        },
    )
    .into_response()
}
