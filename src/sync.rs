//! `chg sync`: bring this clone's chg transitions onto the remote's latest state and push.
//!
//! Transitions are replayed, not merged as text: each local chg commit is turned back into
//! the step it was (`workflow::step_between`) and applied to the remote's current version
//! of the change, under the remote's policy, as its author at its original time. So two
//! approvals of one change from two clones both survive, a `new` whose id was taken
//! upstream moves to the next free id, and a step that can no longer apply (the change was
//! cancelled, or its content changed after an approval) stops the sync without changing
//! anything. Commits that are not chg transitions are cherry-picked as a rebase would.
//!
//! Nothing local moves until the push succeeded: the replayed commits are built in the
//! object database, pushed with the user's own `git` (credential helpers, SSH agents and
//! proxies work), and only then does the branch advance (`commit::advance`, crash-safe).
//! A push rejected because someone pushed first is retried from a fresh fetch, with
//! backoff. A sync killed after its push is finished by the next one: each replayed commit
//! names the local commit it came from (`Chg-Synced-From`), so steps already upstream are
//! recognised exactly and not replayed twice.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use git2::{Oid, Repository, Sort};
use serde::Serialize;

use crate::context::Context;
use crate::error::Refusal;
use crate::error::{Error, Result};
use crate::store::{Store, commit};

mod replay;

use replay::Replay;

/// How to sync.
#[derive(Debug, Clone)]
pub struct Options {
    /// The remote; default: the branch's configured remote, else `origin`.
    pub remote: Option<String>,
    /// Drop local steps that can no longer apply (kept on a named ref) instead of stopping.
    pub drop_stale: bool,
    /// Push attempts before giving up when others keep pushing first.
    pub attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            remote: None,
            drop_stale: false,
            attempts: 10,
        }
    }
}

/// One local step brought onto the remote.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The change (its id after any renumbering).
    pub id: String,
    /// `approve`, `new`, …; `commit` for a commit that is not a chg transition.
    pub action: String,
    /// The local commit.
    pub from: String,
    /// The commit on the remote.
    pub to: String,
}

/// A local step that could not be replayed.
#[derive(Debug, Clone, Serialize)]
pub struct Stale {
    /// The change.
    pub id: String,
    /// The step.
    pub action: String,
    /// The local commit.
    pub commit: String,
    /// Why it no longer applies.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// `origin`.
    pub remote: String,
    /// The remote branch.
    pub branch: String,
    /// Commits that came from the remote.
    pub pulled: usize,
    /// Local steps replayed onto the remote's state.
    pub replayed: Vec<Replayed>,
    /// Local steps that were on the remote already (an earlier sync pushed them).
    pub already_upstream: usize,
    /// New changes moved to another id because theirs was taken upstream: (old, new).
    pub renumbered: Vec<(String, String)>,
    /// Steps dropped with `drop_stale`.
    pub dropped: Vec<Stale>,
    /// Where the local work was kept when steps were dropped.
    pub saved_ref: Option<String>,
    /// Commits pushed.
    pub pushed: usize,
    /// Push attempts made.
    pub attempts: u32,
    /// The branch's new tip.
    pub head: String,
}

/// Runs `git` (the user's own) on the store's repository: named explicitly, so that a
/// `GIT_DIR` or `GIT_WORK_TREE` the process inherited cannot point it elsewhere.
fn git(repo: &Repository, workdir: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .args(args)
        .current_dir(workdir)
        .env("GIT_DIR", repo.path())
        .env("GIT_WORK_TREE", workdir)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io("cannot run git (chg sync uses it for the network)", e))
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// A short commit id.
fn short(id: Oid) -> String {
    id.to_string()[..8].to_owned()
}

/// `chg sync`: fetch, replay local steps onto the remote branch, push, retry on races. The
/// person running it (`ctx.committer`) commits every replayed step; each step keeps its
/// author and time.
pub fn sync(store: &Store, ctx: &Context, opts: &Options) -> Result<Report> {
    Syncing { store, ctx }.run(opts)
}

struct Syncing<'s> {
    store: &'s Store,
    ctx: &'s Context,
}

impl Syncing<'_> {
    fn repo(&self) -> &Repository {
        self.store.repo()
    }

    fn run(&self, opts: &Options) -> Result<Report> {
        let _lock = self.store.lock(self.ctx.lock_timeout)?;
        let repo = self.repo();
        let workdir = repo
            .workdir()
            .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?
            .to_path_buf();
        let (ref_name, head) = commit::head_state(repo)?;
        let (Some(ref_name), Some(head)) = (ref_name, head) else {
            return Err(Error::Usage(
                "chg sync needs a branch with at least one commit (HEAD is detached or unborn)"
                    .into(),
            ));
        };
        let branch = ref_name
            .strip_prefix("refs/heads/")
            .unwrap_or(&ref_name)
            .to_owned();
        let config = repo.config()?;
        let configured = config.get_string(&format!("branch.{branch}.remote")).ok();
        let remote = opts
            .remote
            .clone()
            .or_else(|| configured.clone())
            .unwrap_or_else(|| "origin".to_owned());
        if repo.find_remote(&remote).is_err() {
            return Err(Error::Usage(format!(
                "no remote `{remote}` in this repository (git remote add {remote} URL), or name another one"
            )));
        }
        let remote_branch = match (configured.as_deref() == Some(remote.as_str()))
            .then(|| config.get_string(&format!("branch.{branch}.merge")).ok())
            .flatten()
        {
            Some(m) => m.strip_prefix("refs/heads/").unwrap_or(&m).to_owned(),
            None => branch.clone(),
        };
        let tracking = format!("refs/remotes/{remote}/{remote_branch}");
        let mut report = Report {
            remote: remote.clone(),
            branch: remote_branch.clone(),
            ..Report::default()
        };
        let attempts = opts.attempts.max(1);
        for attempt in 1..=attempts {
            report.attempts = attempt;
            let upstream = self.fetch(&workdir, &remote, &remote_branch, &tracking)?;
            let plan = self.plan(head, upstream, opts, &branch)?;
            report.pulled = plan.pulled;
            report.replayed = plan.replayed;
            report.already_upstream = plan.already;
            report.renumbered = plan.renumbered;
            report.dropped = plan.dropped;
            report.saved_ref = plan.saved_ref;
            let tip = plan.tip;
            commit::check_clean(repo, head, tip)?;
            if Some(tip) != upstream {
                let refspec = format!("{tip}:refs/heads/{remote_branch}");
                commit::failpoint("sync-before-push");
                let o = git(repo, &workdir, &["push", "--quiet", &remote, &refspec])?;
                if !o.status.success() {
                    let why = stderr_of(&o);
                    let raced = ["rejected", "fetch first", "non-fast-forward", "lock"]
                        .iter()
                        .any(|w| why.contains(w));
                    if raced && attempt < attempts {
                        backoff(attempt);
                        continue;
                    }
                    return Err(Error::Internal(format!(
                        "git push {remote} failed{}: {why}",
                        if raced {
                            format!(" {attempts} times (others keep pushing first)")
                        } else {
                            String::new()
                        }
                    )));
                }
                commit::failpoint("sync-after-push");
                // git push moved the tracking ref itself.
                report.pushed = count_between(repo, tip, upstream)?;
            }
            if tip != head {
                if !repo.graph_descendant_of(tip, head)? {
                    crate::audit::index::Index::forget_replaced(repo, self.store.prefix(), head)?;
                }
                commit::advance(
                    repo,
                    head,
                    tip,
                    &format!("chg sync: {remote}/{remote_branch}"),
                )?;
            }
            report.head = tip.to_string();
            return Ok(report);
        }
        unreachable!("the last attempt returns")
    }

    /// Fetches the remote branch into its tracking ref; `None` when the remote does not
    /// have the branch yet.
    fn fetch(
        &self,
        workdir: &Path,
        remote: &str,
        branch: &str,
        tracking: &str,
    ) -> Result<Option<Oid>> {
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        let mut tries = 1;
        loop {
            let o = git(
                self.repo(),
                workdir,
                &["fetch", "--quiet", "--no-tags", remote, &refspec],
            )?;
            if o.status.success() {
                return Ok(Some(self.repo().refname_to_id(tracking)?));
            }
            let why = stderr_of(&o);
            if why.contains("couldn't find remote ref") {
                return Ok(None);
            }
            // Another git moved the tracking ref while this fetch ran (a push of an earlier,
            // interrupted sync still finishing, or a fetch in another terminal): fetch again.
            if why.contains("cannot lock ref") && tries < 5 {
                backoff(tries);
                tries += 1;
                continue;
            }
            return Err(Error::Internal(format!("git fetch {remote} failed: {why}")));
        }
    }

    /// The commits to push: the local ones replayed onto `upstream`.
    fn plan(&self, head: Oid, upstream: Option<Oid>, opts: &Options, branch: &str) -> Result<Plan> {
        let repo = self.repo();
        let Some(upstream) = upstream else {
            return Ok(Plan::unchanged(head));
        };
        if upstream == head || repo.graph_descendant_of(head, upstream)? {
            return Ok(Plan::unchanged(head));
        }
        let local = range(repo, head, upstream)?;
        let pulled = range(repo, upstream, head)?;
        if local.is_empty() {
            return Ok(Plan {
                pulled: pulled.len(),
                ..Plan::unchanged(upstream)
            });
        }
        if let Some(m) = local
            .iter()
            .find(|c| repo.find_commit(**c).is_ok_and(|c| c.parent_count() > 1))
        {
            return Err(Refusal::new(
                "sync-merge",
                format!(
                    "sync stopped: your branch has a merge commit ({}) that is not on the remote; chg sync replays a straight line of commits. Nothing was pushed or changed",
                    short(*m)
                ),
            )
            .hint(format!("rebase it first (git rebase {}), then sync again", short(upstream)))
            .into());
        }
        let mut replay = Replay::new(self.store, self.ctx, upstream, &pulled)?;
        let mut plan = Plan {
            pulled: pulled.len(),
            ..Plan::unchanged(upstream)
        };
        let mut stale = Vec::new();
        for &c in &local {
            match replay.one(c)? {
                Outcome::Done(r) => plan.replayed.push(r),
                Outcome::Already => plan.already += 1,
                Outcome::Empty => {}
                Outcome::Stale(s) => stale.push(s),
            }
        }
        plan.tip = replay.tip;
        plan.renumbered = replay.renumbered;
        if !stale.is_empty() {
            let saved = save_local_work(repo, head, branch, self.ctx.now)?;
            if !opts.drop_stale {
                let first = &stale[0];
                return Err(Refusal::new("sync-stale", format!(
                    "sync stopped: {} `{}` (commit {}) can no longer apply: {}{}. Nothing was pushed or changed; your local work is also kept at {saved}",
                    first.id,
                    first.action,
                    &first.commit[..8],
                    first.reason,
                    if stale.len() > 1 {
                        format!(" (and {} more step(s) like it)", stale.len() - 1)
                    } else {
                        String::new()
                    }
                )).hint("sync again dropping the steps that no longer apply").remedy(crate::error::Remedy::DropStale).into());
            }
            plan.dropped = stale;
            plan.saved_ref = Some(saved);
        }
        Ok(plan)
    }
}

/// Waits before the next push attempt: exponential, with jitter so racing clones spread out.
fn backoff(attempt: u32) {
    let base = 50u64 << attempt.min(6);
    // A fresh random seed per call (std's hasher keys), not the clock: the library reads none.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % base.max(1);
    std::thread::sleep(Duration::from_millis((base / 2 + jitter).min(2000)));
}

/// Commits reachable from `tip` and not from `hide`, oldest first.
fn range(repo: &Repository, tip: Oid, hide: Oid) -> Result<Vec<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(tip)?;
    walk.hide(hide)?;
    Ok(walk.collect::<std::result::Result<_, _>>()?)
}

fn count_between(repo: &Repository, tip: Oid, base: Option<Oid>) -> Result<usize> {
    Ok(match base {
        Some(b) => range(repo, tip, b)?.len(),
        None => {
            let mut walk = repo.revwalk()?;
            walk.push(tip)?;
            walk.count()
        }
    })
}

/// Keeps `head` at `refs/chg/sync/<branch>-<time>` so dropped or stopped steps are never lost.
fn save_local_work(
    repo: &Repository,
    head: Oid,
    branch: &str,
    now: jiff::Timestamp,
) -> Result<String> {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    // A valid, short ref name whatever the branch is called (`.`, `..` and `.lock` are not
    // allowed in a ref component; a file name has 255 bytes).
    let safe: String = branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    let mut name = format!("refs/chg/sync/{safe}-{stamp}");
    let mut n = 1;
    while repo
        .find_reference(&name)
        .is_ok_and(|r| r.target() != Some(head))
    {
        n += 1;
        name = format!("refs/chg/sync/{safe}-{stamp}-{n}");
    }
    repo.reference(&name, head, true, "chg sync: local work kept")?;
    Ok(name)
}

struct Plan {
    tip: Oid,
    pulled: usize,
    replayed: Vec<Replayed>,
    already: usize,
    renumbered: Vec<(String, String)>,
    dropped: Vec<Stale>,
    saved_ref: Option<String>,
}

impl Plan {
    fn unchanged(tip: Oid) -> Plan {
        Plan {
            tip,
            pulled: 0,
            replayed: Vec::new(),
            already: 0,
            renumbered: Vec::new(),
            dropped: Vec::new(),
            saved_ref: None,
        }
    }
}

enum Outcome {
    Done(Replayed),
    Already,
    Empty,
    Stale(Stale),
}
