//! Who a request acts for: a bearer token (the API) or a session cookie made by signing in
//! with a token (the pages); CSRF protection of every form; the failure rate limit.
//!
//! A session remembers the token it was made from and checks it on every request, so a
//! revoked or expired token ends its sessions at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::api::ApiError;

/// The person a request acts for.
#[derive(Debug, Clone)]
pub struct Person {
    /// Their email: the commit's author and the name the policy's roles use.
    pub email: String,
    /// Their name, as commits record it.
    pub name: String,
    /// The token that authenticated them (directly, or through the session made from it).
    pub token_id: String,
    /// The session, for a page request.
    pub session: Option<String>,
}

impl Person {
    /// How the request came in, for the commit's `Chg-Via` trailer.
    pub fn via(&self) -> String {
        match &self.session {
            Some(_) => format!("web token={}", self.token_id),
            None => format!("api token={}", self.token_id),
        }
    }
}

/// The server's clock.
pub fn now() -> jiff::Timestamp {
    chg::context::whole_seconds(jiff::Timestamp::now())
}

/// 32 random bytes from the operating system.
pub fn random32() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(b)
}

fn random_text() -> Result<String, ApiError> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random32()?))
}

/// The client's address, when the server knows it. Behind a reverse proxy on the same
/// machine (the peer is a loopback address), the address the proxy appended last to
/// `X-Forwarded-For`: otherwise every client would share the proxy's address, and one
/// guesser could lock everyone out.
fn client(parts: &Parts) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if peer.is_loopback()
        && let Some(forwarded) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(forwarded);
    }
    Some(peer)
}

/// The client's address as an extractor (never fails).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client(parts)))
    }
}

// ---------------------------------------------------------------------------------------
// Failure rate limit

/// Failed authentications per client address: past [`Limiter::MAX`] within
/// [`Limiter::WINDOW`], every request from it is answered 429 until the window ends.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl Limiter {
    /// Failures allowed per window.
    pub const MAX: u32 = 10;
    /// The window.
    pub const WINDOW: Duration = Duration::from_secs(300);

    /// 429 while `ip` is over the limit.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, since)) = map.get(&ip).copied() {
            if since.elapsed() > Self::WINDOW {
                map.remove(&ip);
            } else if n >= Self::MAX {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limit",
                    format!(
                        "too many failed authentications from this address; try again in {} seconds",
                        Self::WINDOW
                            .saturating_sub(since.elapsed())
                            .as_secs()
                            .max(1)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Counts a failure of `ip`.
    pub fn fail(&self, ip: Option<IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() > Self::WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Bearer tokens (the API)

/// The person of an API request, from `Authorization: Bearer TOKEN`: 401 without one, or
/// with an unknown, revoked or expired one; 429 after too many failures.
pub struct ApiPerson(pub Person);

impl FromRequestParts<AppState> for ApiPerson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client(parts);
        state.limiter.check(ip)?;
        let unauthorized = |message: &str| {
            state.limiter.fail(ip);
            ApiError::new(StatusCode::UNAUTHORIZED, "authentication", message)
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "this request needs `Authorization: Bearer TOKEN` (chg token create EMAIL makes one)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "the Authorization header must be `Bearer TOKEN`",
            ));
        };
        match state.tokens.authenticate(token, now()) {
            Ok(Some(r)) => Ok(ApiPerson(Person {
                email: r.email,
                name: r.name,
                token_id: r.id,
                session: None,
            })),
            Ok(None) => Err(unauthorized("unknown, revoked or expired token")),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sessions (the pages)

/// The session cookie's name.
pub const COOKIE: &str = "chg_session";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token it was made from.
    pub token_id: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// When it was made.
    pub created: Instant,
}

/// The signed-in sessions, by their secret id (in memory: a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// How long a session lasts.
    pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

    /// A new session for token `token_id`: its id (the cookie's value).
    pub fn create(&self, token_id: &str) -> Result<String, ApiError> {
        let id = random_text()?;
        let session = Session {
            token_id: token_id.to_owned(),
            csrf: random_text()?,
            created: Instant::now(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.created.elapsed() < Self::LIFETIME);
        map.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|s| s.created.elapsed() < Self::LIFETIME)
            .cloned()
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

/// The session cookie's value in `headers`.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that signs in with session `id` (`Secure` behind HTTPS).
pub fn set_cookie(state: &AppState, id: &str) -> String {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        Sessions::LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that signs out.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The person of a page request, from the session cookie; without a live session (none,
/// expired, or its token revoked or expired) the browser is sent to sign in.
pub struct PagePerson {
    /// Who.
    pub person: Person,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
}

/// Where a page request without a session goes.
pub struct SignIn(String);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let mut r = Redirect::to(&format!("/signin?next={}", self.0)).into_response();
        if let Ok(v) = clear_cookie().parse() {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

impl FromRequestParts<AppState> for PagePerson {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let next = encode_next(parts.uri.path());
        let Some(id) = session_cookie(&parts.headers) else {
            return Err(SignIn(next).into_response());
        };
        let Some(session) = state.sessions.get(&id) else {
            return Err(SignIn(next).into_response());
        };
        match state.tokens.live_by_id(&session.token_id, now()) {
            Ok(Some(r)) => Ok(PagePerson {
                person: Person {
                    email: r.email,
                    name: r.name,
                    token_id: r.id,
                    session: Some(id),
                },
                csrf: session.csrf,
            }),
            Ok(None) => {
                // The token was revoked or expired: so is every session made from it.
                state.sessions.remove(&id);
                Err(SignIn(next).into_response())
            }
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

/// A path kept for after sign-in: only a local path (never another site).
pub fn encode_next(path: &str) -> String {
    path.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/-_.".contains(*c))
        .collect()
}

/// The local path `next` names, or `/`.
pub fn safe_next(next: Option<&str>) -> String {
    // Judged after the characters are stripped: `/\/evil` stripped is `//evil`, a link to
    // another site (found by an attacker session).
    match next.map(encode_next) {
        Some(n) if n.starts_with('/') && !n.starts_with("//") => n,
        _ => "/".into(),
    }
}

// ---------------------------------------------------------------------------------------
// CSRF

/// Refuses (403, rule `csrf`) a form post that did not come from this server's own pages:
/// a browser's `Sec-Fetch-Site` other than `same-origin`/`none`, an `Origin` other than the
/// public URL, or a CSRF token other than the session's.
pub fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Option<&str>,
    expected: Option<&str>,
) -> Result<(), ApiError> {
    let refuse = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "csrf", m);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refuse(
            "a form may only be sent from this server's own pages",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if origin != state.public_url {
            return Err(refuse(&format!(
                "the request's origin {origin:?} is not this server's ({})",
                state.public_url
            )));
        }
    }
    match (csrf, expected) {
        (Some(given), Some(want)) if bool::from(given.as_bytes().ct_eq(want.as_bytes())) => Ok(()),
        (_, None) => Ok(()),
        _ => Err(refuse(
            "the form's CSRF token is missing or wrong; reload the page",
        )),
    }
}
