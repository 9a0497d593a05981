//! `chg serve` (SPEC section 12): the JSON API and the web pages, another front end of the
//! library beside the CLI.
//!
//! axum on tokio. Every request that reads or changes the store runs in a blocking task
//! ([`blocking`]) that opens the store afresh and calls the same library functions the CLI
//! calls: every rule, refusal, signature check and the one-commit guarantee (under the
//! store lock) are the library's. The server adds only who acts (a token or a session,
//! [`auth`]), the time (its clock), and how the request came in (a `Chg-Via` trailer).
//!
//! - [`auth`]: tokens, sessions, CSRF, the failure rate limit.
//! - [`api`]: the JSON API under `/api/v1/` and its OpenAPI document.
//! - [`pages`]: the server-rendered pages at `/`.
//! - `passkey` (the passkey engineer's): `/passkeys` and passkey approvals (SPEC 12.1).
//!
//! TLS is the reverse proxy's (see `examples/deploy/`).

pub mod api;
pub mod auth;
pub mod pages;
pub mod passkey;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request, StatusCode, header};
use chg::Error;
use chg::store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// How `chg serve` was asked to run.
#[derive(Clone)]
pub struct Options {
    /// Where to listen (`127.0.0.1:8080`; port 0 picks a free one, said on stderr).
    pub listen: SocketAddr,
    /// The origin people reach (`https://chg.example.com`); default `http://localhost:PORT`.
    pub public_url: Option<String>,
    /// Sync every state change to this remote before answering.
    pub remote: Option<String>,
    /// The folder the store is found from.
    pub cwd: PathBuf,
    /// The store named with `--repo`/`CHG_REPO`.
    pub repo: Option<PathBuf>,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// How long to wait for the store lock.
    pub lock_timeout: Duration,
    /// The server's own key, attesting decisions where the policy allows it.
    pub attester: Option<Arc<dyn chg::signing::RecordSigner>>,
}

/// The summaries `rows` of commit `old` brought to commit `new`: the change files the two
/// commits' trees differ in are read again (whole), removed ones dropped. `None` when that
/// is not the cheaper way (many files changed) or anything could not be read.
fn moved_on(
    store: &Store,
    old: git2::Oid,
    new: git2::Oid,
    rows: &[Arc<chg::store::Loaded>],
) -> Option<Vec<Arc<chg::store::Loaded>>> {
    let repo = store.repo();
    // The two commits' `changes/` trees, diffed directly: equal month folders are skipped
    // by id (a pathspec over the whole tree matched every path, 15% of a query in perf).
    let changes = format!("{}changes", store.prefix());
    let tree = |c: git2::Oid| -> Option<Option<git2::Tree<'_>>> {
        let root = repo.find_commit(c).ok()?.tree().ok()?;
        Some(match root.get_path(std::path::Path::new(&changes)) {
            Ok(e) => Some(repo.find_tree(e.id()).ok()?),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(_) => return None,
        })
    };
    let (a, b) = (tree(old)?, tree(new)?);
    let diff = repo.diff_tree_to_tree(a.as_ref(), b.as_ref(), None).ok()?;
    if diff.deltas().len() > 2000 {
        return None;
    }
    let mut paths = std::collections::BTreeSet::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            if let Some(p) = f.path().and_then(|p| p.to_str())
                && p.ends_with(".yaml")
            {
                paths.insert(std::path::PathBuf::from(format!("changes/{p}")));
            }
        }
    }
    // Shared, not copied: a step changes a file or two of 100,000.
    let mut out: Vec<Arc<chg::store::Loaded>> = rows
        .iter()
        .filter(|l| !paths.contains(&l.rel))
        .cloned()
        .collect();
    for rel in &paths {
        if store.root().join(rel).exists() {
            out.push(Arc::new(store.load_file(rel).ok()?));
        }
    }
    out.sort_by(|x, y| x.rel.cmp(&y.rel));
    Some(out)
}

/// `rows` with the changes that may be in approval read whole (a summary has not every
/// field): the awaiting and overdue queries judge those by any field, and would otherwise
/// read each file on every query. [`moved_on`] reads the files a commit changed whole.
fn whole_in_approval(
    store: &Store,
    mut rows: Vec<chg::store::Loaded>,
) -> Vec<Arc<chg::store::Loaded>> {
    for l in rows.iter_mut() {
        if l.decoded.parsed
            && l.text.is_empty()
            && chg::query::may_be_in_approval(l.change())
            && let Ok(whole) = store.load_file(&l.rel)
        {
            *l = whole;
        }
    }
    rows.into_iter().map(Arc::new).collect()
}

/// What every handler shares.
pub struct Shared {
    /// The folder the store is found from.
    pub cwd: PathBuf,
    /// `--repo`.
    pub repo: Option<PathBuf>,
    /// The kept tokens.
    pub tokens: chg::tokens::Tokens,
    /// The public origin (`http://localhost:8080`), without a trailing slash.
    pub public_url: String,
    /// `--remote`.
    pub remote: Option<String>,
    /// Signed-in sessions.
    pub sessions: auth::Sessions,
    /// Failed authentications, by client address.
    pub limiter: auth::Limiter,
    /// How long to wait for the store lock.
    pub lock_timeout: Duration,
    /// The read summaries of every change file, as of a HEAD.
    pub warm: std::sync::Mutex<Option<Warm>>,
    /// Query results (lists, "waiting for me") as of a HEAD, for a few seconds.
    pub memo: std::sync::Mutex<std::collections::HashMap<String, Memo>>,
    /// The queries judged by history asked lately, by key, with when they were last asked
    /// ([`renew_asked`]).
    pub asked: std::sync::Mutex<std::collections::HashMap<String, Asked>>,
    /// The server's own key, attesting decisions where the policy allows it (SPEC 12.1).
    pub attester: Option<Arc<dyn chg::signing::RecordSigner>>,
    /// What verified history says of the changes in approval (who may approve them), each
    /// kept with the audit index files it was read from.
    pub kept: std::sync::Mutex<chg::standing::KeptProvenances>,
    /// The queue of requests that commit ([`blocking_write`]).
    pub writes: tokio::sync::Mutex<()>,
}

/// One query's result, as of `head`, computed at `at`.
pub struct Memo {
    /// HEAD when it was computed.
    pub head: git2::Oid,
    /// When.
    pub at: std::time::Instant,
    /// The result.
    pub page: chg::query::Page<chg::store::Loaded>,
}

/// A query and when it was last asked.
pub type Asked = (chg::query::Query, std::time::Instant);

/// How long a query judged by history is computed again in the background after it was
/// last asked.
pub const ASKED_FOR: Duration = Duration::from_secs(15 * 60);

/// At most this many such queries are kept (people, filters).
pub const MAX_ASKED: usize = 64;

/// How long a query's result is reused while HEAD stays (what depends on the clock alone,
/// such as an approval becoming overdue, is at most this late).
pub const MEMO_FOR: Duration = Duration::from_secs(10);

/// The store's read summaries (the query layer's index) kept in memory, as of `head`.
pub struct Warm {
    /// HEAD when they were read.
    pub head: git2::Oid,
    /// Every change file's summary (undecodable files too), each shared with the
    /// summaries of the next HEAD when its file did not change.
    pub all: Summaries,
    /// Which of them can conflict with a schedule (what the gate compares a change with).
    pub conflicting: Arc<Vec<usize>>,
    /// The positions of the readable changes by request time: where the gate looks for a
    /// copy of a change's signed request.
    pub by_request_time: Arc<RequestTimes>,
}

/// Positions of summaries by request time.
pub type RequestTimes = std::collections::HashMap<Option<jiff::Timestamp>, Vec<usize>>;

/// Every change file's summary, as of a HEAD.
pub type Summaries = Arc<Vec<Arc<chg::store::Loaded>>>;

/// Every summary, the positions of those that can conflict with a schedule, and the
/// positions by request time.
pub type Candidates = (Summaries, Arc<Vec<usize>>, Arc<RequestTimes>);

/// [`Warm::by_request_time`] of `all`.
fn by_request_time(all: &[Arc<chg::store::Loaded>]) -> RequestTimes {
    let mut out = RequestTimes::new();
    for (i, l) in all.iter().enumerate() {
        if l.decoded.parsed {
            out.entry(l.change().request_date).or_default().push(i);
        }
    }
    out
}

/// The positions in `all` of the readable changes that can conflict with a schedule.
fn conflicting_of(all: &[Arc<chg::store::Loaded>]) -> Vec<usize> {
    (0..all.len())
        .filter(|i| all[*i].decoded.parsed && chg::conflicts::can_conflict(all[*i].change()))
        .collect()
}

/// The state handlers take.
pub type AppState = Arc<Shared>;

impl Shared {
    /// Opens the store (each blocking task opens its own: a git repository is not shared
    /// between threads).
    pub fn open(&self) -> Result<Store, Error> {
        Store::discover(&self.cwd, self.repo.as_deref(), self.lock_timeout)
    }

    /// Every change file's read summary, from memory while HEAD has not moved since they
    /// were read (every step through chg moves HEAD), else read afresh and kept.
    pub fn summaries(&self, store: &Store) -> Result<Summaries, Error> {
        let head = store.repo().head().ok().and_then(|h| h.target());
        if let Some(head) = head {
            let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = warm.as_ref().filter(|w| w.head == head) {
                return Ok(w.all.clone());
            }
        }
        // From the summaries of an earlier HEAD, only the change files that differ between
        // the two commits are read again; else (none kept, too many changed) all of them.
        let kept = self
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|w| (w.head, w.all.clone()));
        let moved = match (kept, head) {
            (Some((old, rows)), Some(new)) => moved_on(store, old, new, &rows),
            _ => None,
        };
        let all = match moved {
            Some(rows) => Arc::new(rows),
            None => Arc::new(whole_in_approval(
                store,
                store.load_summaries_where(|_| true)?,
            )),
        };
        if let Some(head) = head {
            let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            *warm = Some(Warm {
                head,
                all: all.clone(),
                conflicting: Arc::new(conflicting_of(&all)),
                by_request_time: Arc::new(by_request_time(&all)),
            });
        }
        Ok(all)
    }

    /// [`Shared::summaries`], and which of them can conflict with a schedule (found once
    /// per HEAD, not on every gate: a pass over 100,000 summaries).
    pub fn conflict_candidates(&self, store: &Store) -> Result<Candidates, Error> {
        let all = self.summaries(store)?;
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let kept = warm
            .as_ref()
            .filter(|w| Arc::ptr_eq(&w.all, &all))
            .map(|w| (w.conflicting.clone(), w.by_request_time.clone()));
        drop(warm);
        let (conflicting, times) = kept.unwrap_or_else(|| {
            (
                Arc::new(conflicting_of(&all)),
                Arc::new(by_request_time(&all)),
            )
        });
        Ok((all, conflicting, times))
    }

    /// The summaries `keep` accepts, and the undecodable ones ([`Store::load_summaries_where`]
    /// from memory).
    pub fn summaries_where(
        &self,
        store: &Store,
        keep: impl Fn(&chg::model::ChangeRequest) -> bool,
    ) -> Result<Vec<chg::store::Loaded>, Error> {
        Ok(self
            .summaries(store)?
            .iter()
            .filter(|l| !l.decoded.parsed || keep(l.change()))
            .map(|l| (**l).clone())
            .collect())
    }
}

/// [`blocking`] for a request that commits, in the order such requests came. The store
/// lock is a file lock taken by polling with a growing pause, so a waiter can lose it to
/// later requests again and again: four concurrent approvals of 0.15 s each left some
/// waiting 4.5 s. Queued here first (tokio's mutex is first come, first served), each
/// waits for those before it only; CLI users and other servers still meet at the lock.
pub async fn blocking_write<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Shared, &Store) -> Result<T, api::ApiError> + Send + 'static,
) -> Result<T, api::ApiError> {
    let _turn = state.writes.lock().await;
    blocking(state, f).await
}

/// Runs `f` with the store in a blocking task (git and the file system block).
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Shared, &Store) -> Result<T, api::ApiError> + Send + 'static,
) -> Result<T, api::ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let store = state.open().map_err(api::ApiError::from)?;
        let out = f(&state, &store);
        // A cache: failing to keep it costs the next request time, nothing else.
        let _ = store.keep_proven_signatures();
        out
    })
    .await
    .map_err(|e| api::ApiError::internal(format!("a worker failed: {e}")))?
}

/// The whole application: API, pages, and the layers every request passes.
pub fn router(state: AppState, max_body: usize, timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .merge(passkey::routes())
        .fallback(api::not_found)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(
                    tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                        header::AUTHORIZATION,
                        header::COOKIE,
                    ]),
                )
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    tower_http::trace::TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                id = %id,
                                method = %req.method(),
                                path = %req.uri().path(),
                            )
                        })
                        .on_request(())
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                        ),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(max_body)),
        )
}

/// `chg serve`: binds, says where on stderr, answers until SIGTERM or Ctrl-C, then finishes
/// the requests in flight (a commit under way completes) and returns.
pub fn serve(options: Options) -> Result<(), Error> {
    keep_freed_memory();
    // Structured request logs on stderr (no header values: Authorization and Cookie are
    // marked sensitive and never logged).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .try_init();
    // The store must be there before anything is promised.
    let store = Store::discover(&options.cwd, options.repo.as_deref(), options.lock_timeout)?;
    store.policy()?;
    let tokens = chg::tokens::Tokens::in_git_dir(store.repo().path());
    drop(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the server's runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {}", options.listen), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the bound address", e))?;
        let public_url = options
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{}", bound.port()))
            .trim_end_matches('/')
            .to_owned();
        let state = Arc::new(Shared {
            cwd: options.cwd.clone(),
            repo: options.repo.clone(),
            tokens,
            public_url: public_url.clone(),
            remote: options.remote.clone(),
            sessions: auth::Sessions::default(),
            limiter: auth::Limiter::default(),
            lock_timeout: options.lock_timeout,
            warm: std::sync::Mutex::new(None),
            memo: std::sync::Mutex::new(Default::default()),
            asked: std::sync::Mutex::new(Default::default()),
            attester: options.attester.clone(),
            kept: std::sync::Mutex::new(Default::default()),
            writes: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(keep_warm(state.clone()));
        tokio::spawn(notify_loop(state.clone()));
        let app = router(state, options.max_body, options.timeout);
        eprintln!("chg: listening on http://{bound} (public URL {public_url})");
        accept(listener, app).await;
        eprintln!("chg: stopped");
        Ok(())
    })
}

/// Tells the allocator (mimalloc, the binary's global allocator) to keep the memory freed
/// between requests instead of returning it to the system a second later: a query at
/// 100,000 changes frees and allocates tens of MB, and `perf` showed 40% of a "waiting
/// for me" in the page unmapping and faulting of that return and re-use. A server's memory
/// stays at its high-water mark instead, which its queries reach anyway.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h (the same in mimalloc 2 and 3): a delay in
    // milliseconds, -1 for never.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: mimalloc is linked in (the global allocator), and setting an option is a
    // plain store that mimalloc documents as allowed at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Keeps the read summaries (the query layer's index, under `.git/chg/`) warm in memory:
/// once HEAD has moved (a step through this server, another server, a CLI user, a sync) and
/// then stayed for a second, they are read again in the background, so the next list or
/// page does not pay for it. During a burst of steps nothing is re-read until it calms.
async fn keep_warm(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<git2::Oid> = None;
    loop {
        tick.tick().await;
        let s = state.clone();
        let seen = last;
        last = tokio::task::spawn_blocking(move || refresh(&s, seen))
            .await
            .ok()
            .flatten();
    }
}

/// How often the server sends what the clock calls for (approvals past their timeout,
/// reminders, retries) when nothing moves HEAD (SPEC section 13: "periodically").
pub const NOTIFY_EVERY: Duration = Duration::from_secs(60);

/// Runs `chg notify` for the store: within a second of every state change (through this
/// server, another server, a CLI user or a sync: whatever moved HEAD) and every minute. The
/// outbox's lock keeps it from sending what a concurrent `chg notify` sends; a delivery
/// that fails is retried by a later run, as the CLI's are.
async fn notify_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<(Option<git2::Oid>, std::time::Instant)> = None;
    loop {
        tick.tick().await;
        let s = state.clone();
        let due = last;
        let ran = tokio::task::spawn_blocking(move || notify_if_due(&s, due)).await;
        if let Ok(Some(done)) = ran {
            last = Some(done);
        }
    }
}

/// One run of the notifications if HEAD moved since `last` or a minute passed; returns
/// the HEAD and time of the run, or `None` when none was due.
fn notify_if_due(
    state: &Shared,
    last: Option<(Option<git2::Oid>, std::time::Instant)>,
) -> Option<(Option<git2::Oid>, std::time::Instant)> {
    let store = state.open().ok()?;
    let head = store.repo().head().ok().and_then(|h| h.target());
    if let Some((h, at)) = last
        && h == head
        && at.elapsed() < NOTIFY_EVERY
    {
        return None;
    }
    let ran = (head, std::time::Instant::now());
    let Ok(policy) = store.policy() else {
        return Some(ran);
    };
    let Some(n) = &policy.notifications else {
        return Some(ran);
    };
    // The server is the binary's edge: the channels' URLs and secrets come from its
    // environment, as `chg notify`'s do.
    let endpoints = match chg::notify::Endpoints::from_vars(n, |k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(target: "notify", error = %e, "notifications not sent");
            return Some(ran);
        }
    };
    let opts = chg::notify::Options {
        dry_run: false,
        // The policy's public URL (where people reach the server, behind its proxy) wins;
        // without one, the server's own.
        base_url: n.base_url.is_none().then(|| state.public_url.clone()),
        retry_now: false,
        lock_wait: Duration::from_secs(1),
        max_age: Some(jiff::SignedDuration::from_hours(7 * 24)),
    };
    match chg::notify::run(&store, &policy, auth::now(), &endpoints, &opts) {
        Ok(r) if r.failed.is_empty() => {
            if !r.sent.is_empty() {
                tracing::info!(target: "notify", sent = r.sent.len(), "notifications sent");
            }
        }
        Ok(r) => {
            for f in &r.failed {
                tracing::warn!(target: "notify", failure = ?f, "a notification was not delivered; it is retried later");
            }
        }
        Err(e) => tracing::warn!(target: "notify", error = %e, "notifications not sent"),
    }
    Some(ran)
}

/// Reads the summaries again if HEAD is `seen` (it stayed since the last look) and they are
/// of another HEAD; returns HEAD.
pub fn refresh(state: &Shared, seen: Option<git2::Oid>) -> Option<git2::Oid> {
    let store = state.open().ok()?;
    let head = store.repo().head().ok().and_then(|h| h.target())?;
    let stale = {
        let warm = state.warm.lock().unwrap_or_else(|e| e.into_inner());
        warm.as_ref().is_none_or(|w| w.head != head)
    };
    if stale && seen == Some(head) {
        let _ = state
            .summaries(&store)
            .map(|all| warm_provenances(state, &store, &all));
    }
    if seen == Some(head) {
        renew_asked(state, &store, head);
    }
    Some(head)
}

/// Computes again, in the background, each query judged by history asked in the last
/// [`ASKED_FOR`] whose remembered answer is of another HEAD or will expire within a few
/// seconds: "waiting for me" judges thousands of changes at 100,000 (about 50 ms), and its
/// asker then finds the answer ready. Nothing is computed while HEAD keeps moving.
fn renew_asked(state: &Shared, store: &Store, head: git2::Oid) {
    const AHEAD: Duration = Duration::from_secs(3);
    let asked: Vec<(String, chg::query::Query)> = {
        let mut asked = state.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.retain(|_, (_, at)| at.elapsed() < ASKED_FOR);
        asked
            .iter()
            .map(|(k, (q, _))| (k.clone(), q.clone()))
            .collect()
    };
    if asked.is_empty() {
        return;
    }
    let Ok(policy) = store.policy() else {
        return;
    };
    for (key, query) in asked {
        {
            let mut memo = state.memo.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = memo
                .get(&key)
                .is_some_and(|m| m.head == head && m.at.elapsed() + AHEAD < MEMO_FOR);
            if fresh {
                continue;
            }
            memo.remove(&key);
        }
        // A cache: what fails here fails again, with its error, for the asker.
        let _ = api::run_now(state, store, &policy, &query);
    }
}

/// Brings the kept provenances of every change that may be in approval up to date, so
/// that the first "waiting for me" after HEAD moved reads only the histories that grew.
fn warm_provenances(state: &Shared, store: &Store, all: &[Arc<chg::store::Loaded>]) {
    let ids: Vec<String> = all
        .iter()
        .filter(|l| l.decoded.parsed && chg::query::may_be_in_approval(l.change()))
        .map(|l| l.change().id_text())
        .collect();
    let mut kept = state.kept.lock().unwrap_or_else(|e| e.into_inner());
    // A cache: what cannot be read now is read by the next query.
    let _ = chg::standing::provenances_kept(store, &ids, auth::now(), &mut kept);
}

/// How long a client may take to send a request's headers: a slow client (one byte at a
/// time, or nothing) is disconnected rather than holding a connection open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers connections until SIGTERM or Ctrl-C, then waits for those in flight to finish.
async fn accept(listener: tokio::net::TcpListener, app: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let service = hyper_util::service::TowerToHyperService::new(
                    app.clone()
                        .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
                );
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("chg: stopping: finishing the requests in flight");
}
