//! The one place that reads who acts, when, and how long to wait: git config and the
//! environment, as git resolves them, turned into the library's [`Context`].

use std::time::Duration;

use chg::context::whole_seconds;
use chg::store::Store;

use super::ui::Ui;
use chg::{Context, Error, Identity};
use git2::Repository;
use jiff::Timestamp;

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// The time of the action: `CHG_NOW` (for tests and replays), else `GIT_AUTHOR_DATE` (so
/// the record and the commit agree), else the clock. Read once per run, by [`Ui::now`].
pub fn now() -> Result<Timestamp, Error> {
    if let Some(v) = env_nonempty("CHG_NOW") {
        return git_date(&v).map(whole_seconds).ok_or_else(|| {
            Error::Usage(format!(
                "CHG_NOW=`{v}` is not a timestamp (like 2025-01-27T10:30:00Z)"
            ))
        });
    }
    if let Some(t) = env_date("GIT_AUTHOR_DATE")? {
        return Ok(whole_seconds(t));
    }
    Ok(whole_seconds(Timestamp::now()))
}

/// A date as git reads `GIT_AUTHOR_DATE`: with a zone, or civil time in the user's zone.
fn git_date(v: &str) -> Option<Timestamp> {
    chg::context::parse_git_date_in(v, &jiff::tz::TimeZone::system())
}

/// `GIT_AUTHOR_DATE` or `GIT_COMMITTER_DATE` where set; one git would refuse is refused
/// (exit 2), as git refuses it, rather than silently replaced by the clock.
fn env_date(key: &str) -> Result<Option<Timestamp>, Error> {
    match env_nonempty(key) {
        None => Ok(None),
        Some(v) => git_date(&v).map(Some).ok_or_else(|| {
            Error::Usage(format!(
                "{key}=`{}` is not a date git accepts (like 2025-01-27T10:30:00Z or \"2025-01-27 10:30\")",
                v.escape_debug()
            ))
        }),
    }
}

/// How long to wait for another chg process: `CHG_LOCK_TIMEOUT` seconds, default 30.
pub fn lock_timeout() -> Duration {
    env_nonempty("CHG_LOCK_TIMEOUT")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(chg::context::DEFAULT_LOCK_TIMEOUT, Duration::from_secs)
}

/// An identity as git resolves it for `role` (`AUTHOR` or `COMMITTER`):
/// `GIT_<role>_NAME`/`_EMAIL`, else `user.name`/`user.email`, else `EMAIL` for the email,
/// unless `user.useConfigOnly` forbids guessing (then git refuses, and so does chg).
fn git_ident(repo: Option<&Repository>, role: &str) -> Result<Identity, Error> {
    // Names and emails only: the signing key given for this run plays no part.
    let config = super::gitconfig::GitConfig::of(repo, None);
    let get = |key: &str| config.string(key).filter(|v| !v.trim().is_empty());
    let config_only = config.bool("user.useConfigOnly").unwrap_or(false);
    let name = env_nonempty(&format!("GIT_{role}_NAME")).or_else(|| get("user.name"));
    let email = env_nonempty(&format!("GIT_{role}_EMAIL"))
        .or_else(|| get("user.email"))
        .or_else(|| (!config_only).then(|| env_nonempty("EMAIL")).flatten());
    match (name, email) {
        (Some(name), Some(email)) => Identity::new(name, email),
        _ => Err(Error::NoIdentity),
    }
}

/// The acting identity (the commit author) as git resolves it.
pub fn identity(repo: Option<&Repository>) -> Result<Identity, Error> {
    git_ident(repo, "AUTHOR")
}

/// Who acts in `repo`, at the run's instant: the author and the committer resolved as git
/// resolves them (`GIT_AUTHOR_EMAIL=… chg approve` is committed by the configured user, as
/// with git), the committer's time from `GIT_COMMITTER_DATE` where set, the lock timeout.
pub fn for_repo(ui: &Ui, repo: Option<&Repository>) -> Result<Context, Error> {
    let actor = identity(repo)?;
    let now = ui.now()?;
    let committer = match git_ident(repo, "COMMITTER") {
        Ok(c) => c,
        Err(Error::NoIdentity) => actor.clone(),
        Err(e) => return Err(e),
    };
    let committed_at = env_date("GIT_COMMITTER_DATE")?.map_or(now, whole_seconds);
    let ctx = Context::new(actor, now)
        .committed_by(committer, committed_at)
        .waiting(lock_timeout());
    let ctx = match repo
        .map(|r| super::sign::commit_signer(ui, r))
        .transpose()?
        .flatten()
    {
        Some(signer) => ctx.signing_commits(signer),
        None => ctx,
    };
    Ok(
        match repo
            .map(|r| super::sign::record_signer(ui, r))
            .transpose()?
            .flatten()
        {
            Some(signer) => ctx.signing_records(signer),
            None => ctx,
        },
    )
}

/// [`for_repo`] for a store.
pub fn for_store(ui: &Ui, store: &Store) -> Result<Context, Error> {
    for_repo(ui, Some(store.repo()))
}

/// [`for_repo`] for the repository that holds `path`, or the user's git config where there
/// is none yet (`chg init` resolves who acts before it creates anything).
pub fn for_path(ui: &Ui, path: &std::path::Path) -> Result<Context, Error> {
    for_repo(ui, Repository::discover(path).ok().as_ref())
}

/// The repository `GIT_DIR` names, with its work tree as git takes it (`GIT_WORK_TREE`,
/// else `core.worktree`, else the current folder); `None` when `GIT_DIR` is not set.
pub fn git_dir_repository(cwd: &std::path::Path) -> Result<Option<Repository>, Error> {
    let Some(dir) = env_nonempty("GIT_DIR") else {
        return Ok(None);
    };
    let repo = Repository::open(&dir).map_err(|e| {
        Error::Usage(format!(
            "GIT_DIR={dir} is not a git repository: {}",
            e.message()
        ))
    })?;
    let work_tree = match env_nonempty("GIT_WORK_TREE") {
        Some(w) => cwd.join(w),
        None => match repo.config()?.get_path("core.worktree") {
            Ok(w) => repo.path().join(w),
            Err(_) => cwd.to_path_buf(),
        },
    };
    repo.set_workdir(&work_tree, false)?;
    Ok(Some(repo))
}
