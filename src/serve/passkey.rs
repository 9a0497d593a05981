//! Passkey approvals (SPEC 12.1): the `/passkeys` enrolment page, the passkey field of a
//! decision (`POST …/{id}/approve` `passkey: {client_data_json, authenticator_data,
//! signature, credential_id?}`, and the change page's "Approve with passkey" button).
//!
//! Everything that decides is the library's ([`chg::webauthn`]): the SPKI becomes an
//! `sk-ecdsa-sha2-nistp256@openssh.com` key proposed through governance like any key
//! ([`chg::passkeys::enrol`]); an answer signs the record through
//! [`chg::passkeys::PasskeySigner`], which checks the origin (this server's public URL),
//! user presence and verification, the flags and `crossOrigin` before the library's own
//! verification, so any failed check is a 403 (rule `signature`) and nothing is committed.
//! The only JavaScript of the pages is here: two small inline scripts for the ceremony.

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chg::webauthn;
use jiff::Timestamp;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::api::{self, ApiError, Params, StatementAnswer};
use super::auth::{PagePerson, Person, check_csrf, now};
use super::pages::{error_page, page};
use super::{AppState, Shared, blocking, blocking_write};

/// The passkey routes: the enrolment page and the statement a passkey signs.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/passkeys", get(passkeys).post(enrol))
        .route("/changes/{id}/statement", get(statement))
}

/// The public origin and relying party id (the host of `--public-url`).
pub fn relying_party(shared: &Shared) -> Result<(String, String), ApiError> {
    webauthn::origin_and_rp_id(&shared.public_url).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            chg::signing::SIGNATURE,
            format!("passkeys need a usable --public-url: {e}"),
        )
    })
}

/// The context of a decision signed with the passkey answer `value` (the `passkey` field):
/// 400 when it is not the answer's shape or its fields are not base64url; otherwise the
/// person's listed passkeys for this relying party sign the record through the library,
/// which refuses (403, `signature`) whatever does not pass, before anything is written.
pub fn signing_context(
    shared: &Shared,
    store: &chg::store::Store,
    person: &Person,
    at: Timestamp,
    value: &serde_json::Value,
) -> Result<(chg::Context, Option<(String, u32)>), ApiError> {
    let answer: webauthn::PasskeyAnswer =
        serde_json::from_value(value.clone()).map_err(|e| {
            ApiError::bad(
                "passkey",
                format!(
                    "passkey: {e} (send {{client_data_json, authenticator_data, signature}}, base64url, as navigator.credentials.get() returns them)"
                ),
            )
        })?;
    let assertion = answer
        .assertion()
        .map_err(|e| ApiError::bad("passkey", format!("passkey: {e}")))?;
    let (origin, rp_id) = relying_party(shared)?;
    let policy = store.policy()?;
    let Some(signers) = policy.signers() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            chg::signing::SIGNATURE,
            "the policy has no `signing` section, so it lists no passkey: a passkey signs once the policy names allowed signers and the passkey is enrolled (Passkeys page)",
        ));
    };
    let candidates = signers.passkeys_for(&person.email, at, &rp_id);
    let counter = assertion
        .authenticator_data
        .get(33..37)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let signer = chg::passkeys::PasskeySigner::new(&candidates, assertion, &origin);
    // An authenticator that counts its signatures must count up: a counter at or below
    // the last one this store saw from the key is a cloned authenticator or a replayed
    // answer (WebAuthn 6.1.1). Synced passkeys report 0 and are not judged this way.
    let seen = match (chg::signing::RecordSigner::public_key(&signer), counter) {
        (Ok(key), Some(counter)) => {
            let fingerprint = ssh_key::PublicKey::from_openssh(&key)
                .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
                .map_err(|e| ApiError::bad("passkey", format!("passkey: {e}")))?;
            let last = Counters::of(store).last(&fingerprint);
            if (counter != 0 || last != 0) && counter <= last {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    chg::signing::SIGNATURE,
                    format!(
                        "the passkey's signature counter is {counter}, not above {last}, the last this store saw from it: a cloned authenticator or a replayed answer; nothing is written"
                    ),
                ));
            }
            Some((fingerprint, counter))
        }
        // The signer's own refusal says why when the transition asks it to sign.
        _ => None,
    };
    let ctx = api::context_at(shared, person, at)?.signing_records_always(Arc::new(signer));
    Ok((ctx, seen))
}

/// The last signature counter seen from each passkey (by key fingerprint), kept under
/// `.git/chg/passkey-counters.json`: not evidence (records carry their counters), only
/// this store's memory for refusing an answer whose counter did not increase.
pub struct Counters(std::path::PathBuf);

impl Counters {
    /// The counters of `store`.
    pub fn of(store: &chg::store::Store) -> Counters {
        Counters(store.repo().path().join("chg/passkey-counters.json"))
    }

    fn read(&self) -> std::collections::BTreeMap<String, u32> {
        std::fs::read(&self.0)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The last counter seen from `fingerprint` (0 when none).
    pub fn last(&self, fingerprint: &str) -> u32 {
        self.read().get(fingerprint).copied().unwrap_or(0)
    }

    /// Records `counter` for `fingerprint` after a signature was committed (the larger
    /// value wins; one writer at a time in this server).
    pub fn saw(&self, fingerprint: &str, counter: u32) -> Result<(), chg::Error> {
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.read();
        let e = all.entry(fingerprint.to_owned()).or_insert(0);
        *e = (*e).max(counter);
        let json = serde_json::to_vec_pretty(&all)
            .map_err(|e| chg::Error::Internal(format!("cannot write the passkey counters: {e}")))?;
        chg::git::atomic_write(&self.0, &json)
    }
}

// ---------------------------------------------------------------------------------------
// The statement a page signs

/// The statements this server handed out in the last ten minutes, by their challenge
/// (`signed_data`): a passkey's answer names its challenge, so a client that sends the
/// answer without the statement's `at` is understood. Memory only; another server of the
/// same repository does not know them (the client then sends `at`).
static ISSUED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
> = std::sync::LazyLock::new(Default::default);

/// How long a handed-out statement is remembered (the window `at` must lie in).
const ISSUED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Remembers a statement handed out (the API's and the pages').
pub fn remember(answer: &StatementAnswer) {
    let mut map = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, (_, when)| when.elapsed() < ISSUED_FOR);
    map.insert(
        answer.signed_data.clone(),
        (answer.at.clone(), std::time::Instant::now()),
    );
}

/// The `at` of the statement whose challenge the passkey answer `value` signed, when this
/// server handed it out recently.
pub fn issued_at(value: &serde_json::Value) -> Option<String> {
    #[derive(Deserialize)]
    struct Challenge {
        challenge: String,
    }
    let answer: webauthn::PasskeyAnswer = serde_json::from_value(value.clone()).ok()?;
    let json = webauthn::base64url_decode("client_data_json", &answer.client_data_json).ok()?;
    let c: Challenge = serde_json::from_slice(&json).ok()?;
    let map = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&c.challenge)
        .filter(|(_, when)| when.elapsed() < ISSUED_FOR)
        .map(|(at, _)| at.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    role: Option<String>,
}

/// `GET /changes/{id}/statement?role=R` (signed in): the approval's statement and its
/// signed-data blob, the passkey's challenge (the pages' twin of the API's statement).
async fn statement(
    State(state): State<AppState>,
    who: PagePerson,
    Path(id): Path<String>,
    Params(q): Params<StatementQuery>,
) -> Result<Json<StatementAnswer>, ApiError> {
    let person = who.person;
    let out = blocking(&state, move |_, store| {
        let policy = store.policy()?;
        let id = api::parse_id(&id, &policy)?;
        let role = q.role.filter(|r| !r.is_empty());
        api::statement_for(store, &person, &id, "approve", role, now())
    })
    .await?;
    remember(&out);
    Ok(Json(out))
}

// ---------------------------------------------------------------------------------------
// Enrolment

/// The WebAuthn challenge of enrolment for a session: bound to its CSRF token, so an
/// enrolment made for another session (or replayed) is refused without state kept.
fn enrol_challenge(csrf: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"chg passkey enrolment v1\0");
    h.update(csrf.as_bytes());
    h.finalize().to_vec()
}

/// The WebAuthn user handle of a person (no personal data in it).
fn user_handle(email: &str) -> Vec<u8> {
    Sha256::digest(format!("chg user\0{email}").as_bytes()).to_vec()
}

/// What the page lists: the person's passkeys the allowed signers hold for this server.
fn listed(store: &chg::store::Store, email: &str, rp_id: &str) -> Result<Vec<String>, ApiError> {
    let policy = store.policy()?;
    Ok(policy
        .signers()
        .map(|s| s.passkeys_for(email, now(), rp_id))
        .unwrap_or_default()
        .iter()
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .collect())
}

async fn passkeys(State(state): State<AppState>, who: PagePerson) -> Response {
    let (_, rp_id) = match relying_party(&state) {
        Ok(r) => r,
        Err(e) => return error_page(Some(&who), e),
    };
    let email = who.person.email.clone();
    let rp = rp_id.clone();
    match blocking(&state, move |_, store| listed(store, &email, &rp)).await {
        Ok(keys) => passkeys_page(&who, &rp_id, &keys, None).into_response(),
        Err(e) => error_page(Some(&who), e),
    }
}

fn passkeys_page(who: &PagePerson, rp_id: &str, keys: &[String], done: Option<Markup>) -> Markup {
    let email = &who.person.email;
    page(
        "Passkeys",
        Some(who),
        html! {
            h1 { "Passkeys" }
            @if let Some(d) = done { (d) }
            p {
                "A passkey (Touch ID, Windows Hello, your phone, a security key) signs your approvals in the browser. "
                "Each approval is then your own signature, which anyone can check with "
                code { "ssh-keygen -Y verify" } " against the allowed signers of the policy."
            }
            h2 { "Your passkeys for " (rp_id) }
            @if keys.is_empty() {
                p class="muted" { "None listed in the allowed signers yet." }
            } @else {
                ul { @for k in keys { li { code { (k) } } } }
            }
            div class="card" {
                h2 { "Add a passkey" }
                p class="muted" {
                    "The new key is proposed as a change to the policy's allowed signers; it signs once that change is approved and applied, like any key."
                }
                form id="enrol-form" method="post" action="/passkeys"
                    data-rp=(rp_id) data-email=(email)
                    data-user=(webauthn::base64url(&user_handle(email)))
                    data-challenge=(webauthn::base64url(&enrol_challenge(&who.csrf))) {
                    input type="hidden" name="csrf" value=(who.csrf);
                    input type="hidden" name="spki" value="";
                    input type="hidden" name="client_data_json" value="";
                    input type="hidden" name="credential_id" value="";
                    button type="button" id="enrol" { "Add a passkey" }
                    noscript { p class="bad" { "Making a passkey needs JavaScript (the browser's passkey ceremony)." } }
                    p id="passkey-status" class="bad" role="status" {}
                }
            }
            script { (PreEscaped(ENROL_SCRIPT)) }
        },
    )
}

const ENROL_SCRIPT: &str = concat!(
    "(()=>{",
    "const b64u=b=>btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'');",
    "const unb64u=s=>Uint8Array.from(atob(s.replace(/-/g,'+').replace(/_/g,'/')),c=>c.charCodeAt(0));",
    "const f=document.getElementById('enrol-form'),st=document.getElementById('passkey-status');",
    "document.getElementById('enrol').addEventListener('click',async()=>{",
    "st.textContent='';",
    "try{",
    "const c=await navigator.credentials.create({publicKey:{",
    "rp:{id:f.dataset.rp,name:'chg'},",
    "user:{id:unb64u(f.dataset.user),name:f.dataset.email,displayName:f.dataset.email},",
    "challenge:unb64u(f.dataset.challenge),",
    "pubKeyCredParams:[{type:'public-key',alg:-7}],",
    "authenticatorSelection:{residentKey:'preferred',userVerification:'required'},",
    "attestation:'none'}});",
    "if(c.response.getPublicKeyAlgorithm()!==-7)throw new Error('the passkey is not ES256');",
    "f.spki.value=b64u(c.response.getPublicKey());",
    "f.client_data_json.value=b64u(c.response.clientDataJSON);",
    "f.credential_id.value=b64u(c.rawId);",
    "f.submit();",
    "}catch(e){st.textContent='No passkey was made: '+e.message;}",
    "});})();"
);

#[derive(Debug, Deserialize)]
struct EnrolForm {
    csrf: Option<String>,
    spki: String,
    client_data_json: String,
    // The form also sends `credential_id` (the passkey's `rawId`), which nothing needs: the
    // key is found by its signature.
}

/// The checks of the creation ceremony's clientDataJSON: made by a browser on this server's
/// origin for this session's challenge.
fn check_creation(client_data: &[u8], origin: &str, csrf: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
        origin: String,
        #[serde(rename = "crossOrigin", default)]
        cross_origin: Option<bool>,
    }
    let refuse = |m: String| ApiError::new(StatusCode::FORBIDDEN, chg::signing::SIGNATURE, m);
    let c: Created = serde_json::from_slice(client_data).map_err(|e| {
        ApiError::bad(
            "client_data_json",
            format!("client_data_json: not the browser's JSON ({e})"),
        )
    })?;
    if c.kind != "webauthn.create" {
        return Err(refuse(format!(
            "the passkey was not made by navigator.credentials.create (type {})",
            c.kind
        )));
    }
    if c.origin != origin || c.cross_origin == Some(true) {
        return Err(refuse(format!(
            "the passkey was made for {}, not for this server ({origin})",
            c.origin
        )));
    }
    if c.challenge != webauthn::base64url(&enrol_challenge(csrf)) {
        return Err(refuse(
            "the passkey was made for another session's enrolment; reload the Passkeys page and try again".into(),
        ));
    }
    Ok(())
}

async fn enrol(
    State(state): State<AppState>,
    who: PagePerson,
    headers: HeaderMap,
    form: Result<Form<EnrolForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(Some(&who), ApiError::bad("body", "the form is malformed"));
    };
    if let Err(e) = check_csrf(&state, &headers, form.csrf.as_deref(), Some(&who.csrf)) {
        return error_page(Some(&who), e);
    }
    let (origin, rp_id) = match relying_party(&state) {
        Ok(r) => r,
        Err(e) => return error_page(Some(&who), e),
    };
    let key = (|| {
        let client_data = webauthn::base64url_decode("client_data_json", &form.client_data_json)
            .map_err(|e| ApiError::bad("client_data_json", e.to_string()))?;
        check_creation(&client_data, &origin, &who.csrf)?;
        let spki = webauthn::base64url_decode("spki", &form.spki)
            .map_err(|e| ApiError::bad("spki", e.to_string()))?;
        webauthn::public_key_from_spki(&spki, &rp_id)
            .map_err(|e| ApiError::bad("spki", e.to_string()))
    })();
    let key = match key {
        Ok(k) => k,
        Err(e) => return error_page(Some(&who), e),
    };
    let person = who.person.clone();
    let line = webauthn::allowed_signers_line(&person.email, &key);
    let (o, rp) = (origin.clone(), rp_id.clone());
    let r = blocking_write(&state, move |shared, store| {
        let ctx = api::context(shared, &person)?;
        let out = chg::passkeys::enrol(store, &ctx, &key, &o)?;
        api::synced(shared, store, &ctx)?;
        let keys = listed(store, &person.email, &rp)?;
        Ok((out.change.id_text(), out.commit.to_string(), keys))
    })
    .await;
    match r {
        Ok((id, commit, keys)) => {
            let done = html! {
                div class="card ok" {
                    p { "Your passkey is proposed for the allowed signers as "
                        a href={ "/changes/" (id) } { (id) }
                        " (commit " code { (commit.get(..8).unwrap_or(&commit)) } "). "
                        "It signs your approvals once that change is approved and applied (" code { "chg policy apply " (id) } ")." }
                    p class="muted" { "The allowed-signers line:" }
                    pre style="white-space:pre-wrap;overflow-wrap:anywhere" { (line) }
                }
            };
            passkeys_page(&who, &rp_id, &keys, Some(done)).into_response()
        }
        Err(e) => {
            let status = e.status;
            let body = page(
                "Passkeys",
                Some(&who),
                html! {
                    h1 { "Passkey not proposed" }
                    p class="error" { (e.message) " " span class="muted" { "(" (e.rule) ")" } }
                    p { "You can propose it with the CLI: save the line below to a file and run "
                        code { "chg policy signers add " (who.person.email) " FILE" } ", then "
                        code { "chg policy propose" } "." }
                    pre style="white-space:pre-wrap;overflow-wrap:anywhere" { (line.split_once(' ').map_or(line.as_str(), |x| x.1)) }
                    p { a href="/passkeys" { "Back" } }
                },
            );
            (status, body).into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The change page's passkey button

/// The fields and button a change page's decision form carries for a passkey approval, and
/// the script that runs the ceremony: it fetches the statement for the role chosen, asks the
/// browser to sign its signed-data blob, and submits the form with the answer (the form's
/// handler passes it on as the `passkey` of the decision).
pub fn approve_controls(id: &str, rp_id: &str) -> Markup {
    html! {
        input type="hidden" name="at" value="";
        input type="hidden" name="client_data_json" value="";
        input type="hidden" name="authenticator_data" value="";
        input type="hidden" name="signature" value="";
        input type="hidden" name="credential_id" value="";
        button type="button" id="passkey-approve" data-id=(id) data-rp=(rp_id) { "Approve with passkey" }
        " "
        span id="passkey-status" class="bad" role="status" {}
        script { (PreEscaped(APPROVE_SCRIPT)) }
    }
}

const APPROVE_SCRIPT: &str = concat!(
    "(()=>{",
    "const b64u=b=>btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'');",
    "const unb64u=s=>Uint8Array.from(atob(s.replace(/-/g,'+').replace(/_/g,'/')),c=>c.charCodeAt(0));",
    "const b=document.getElementById('passkey-approve'),f=b.form,st=document.getElementById('passkey-status');",
    "b.addEventListener('click',async()=>{",
    "st.textContent='';",
    "try{",
    "const role=f.role?f.role.value:'';",
    "const r=await fetch('/changes/'+encodeURIComponent(b.dataset.id)+'/statement?role='+encodeURIComponent(role),{credentials:'same-origin'});",
    "const s=await r.json();",
    "if(!r.ok)throw new Error(s.error?s.error.message:r.statusText);",
    "const c=await navigator.credentials.get({publicKey:{challenge:unb64u(s.signed_data),rpId:b.dataset.rp,userVerification:'required'}});",
    "f.at.value=s.at;",
    "if(f.role)f.role.value=s.role;",
    "f.client_data_json.value=b64u(c.response.clientDataJSON);",
    "f.authenticator_data.value=b64u(c.response.authenticatorData);",
    "f.signature.value=b64u(c.response.signature);",
    "f.credential_id.value=b64u(c.rawId);",
    "f.requestSubmit(f.querySelector('button[name=decision][value=approve]'));",
    "}catch(e){st.textContent='Not signed: '+e.message;}",
    "});})();"
);

/// The `passkey` value of a decision form's fields, when the passkey button filled them.
pub fn from_form(
    client_data_json: Option<&str>,
    authenticator_data: Option<&str>,
    signature: Option<&str>,
    credential_id: Option<&str>,
) -> Option<serde_json::Value> {
    let given = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (c, a, s) = (
        given(client_data_json),
        given(authenticator_data),
        given(signature),
    );
    if c.is_none() && a.is_none() && s.is_none() {
        return None;
    }
    Some(serde_json::json!({
        "client_data_json": c.unwrap_or_default(),
        "authenticator_data": a.unwrap_or_default(),
        "signature": s.unwrap_or_default(),
        "credential_id": given(credential_id),
    }))
}
