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

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use git2::{Commit, Oid, Repository, Signature, Sort, Tree};
use serde::Serialize;

use crate::context::{Context, Identity};
use crate::decode;
use crate::edit;
use crate::error::Refusal;
use crate::error::{Error, Result};
use crate::layout::{self, find_change, highest};
use crate::model::{ChangeId, ChangeRequest};
use crate::policy::{POLICY_PATH, Policy};
use crate::store::{Store, commit};
use crate::trailers::{Action, Trailers, has_trailers, key};
use crate::workflow::{self, Step, Transition};

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

/// The trailer each replayed commit carries with the id of the local commit it came from:
/// a sync killed after its push is finished by the next one without doubling a step, and an
/// auditor can follow a step back to the clone it was made in.
const SYNCED_FROM: &str = key::SYNCED_FROM;

/// `message` with the [`SYNCED_FROM`] trailer naming `local`.
fn with_synced_from(message: &str, local: Oid) -> String {
    let kept: Vec<&str> = message
        .trim_end()
        .lines()
        .filter(|l| !l.starts_with(&format!("{SYNCED_FROM}:")))
        .collect();
    let body = kept.join("\n");
    let sep = if !has_trailers(&body) { "\n\n" } else { "\n" };
    format!("{}{sep}{SYNCED_FROM}: {local}\n", body.trim_end())
}

/// The replay of local commits onto the remote's tip, one at a time.
struct Replay<'s> {
    store: &'s Store,
    ctx: &'s Context,
    tip: Oid,
    /// Local commits already on the remote (by their id), with the change id they got there.
    upstream: HashMap<String, Option<String>>,
    /// Ids renumbered upstream by `chg renumber` (old -> new), for changes not filed locally.
    upstream_renumbers: HashMap<String, String>,
    /// Local new changes: the id they were filed as -> their id on the remote.
    local_ids: HashMap<String, String>,
    renumbered: Vec<(String, String)>,
    /// The remote's policies, each assembled once.
    policies: crate::policy_source::Cache<'s>,
}

impl<'s> Replay<'s> {
    fn new(
        store: &'s Store,
        ctx: &'s Context,
        upstream: Oid,
        pulled: &[Oid],
    ) -> Result<Replay<'s>> {
        let repo = store.repo();
        let mut up: HashMap<String, Option<String>> = HashMap::new();
        let mut upstream_renumbers = HashMap::new();
        for &id in pulled {
            let c = repo.find_commit(id)?;
            let t = Trailers::parse(c.message().unwrap_or(""));
            if t.action() == Some(Action::Renumber)
                && let (Some(old), Some(new)) = (t.renumbered_from.clone(), t.id.clone())
            {
                upstream_renumbers.insert(old, new);
            }
            if let Some(local) = t.synced_from {
                up.insert(local, t.id);
            }
        }
        Ok(Replay {
            store,
            ctx,
            tip: upstream,
            upstream: up,
            upstream_renumbers,
            local_ids: HashMap::new(),
            renumbered: Vec::new(),
            policies: crate::policy_source::Cache::new(repo, store.prefix(), None),
        })
    }

    fn repo(&self) -> &'s Repository {
        self.store.repo()
    }

    /// The id a local step's change has on the remote.
    fn map_id(&self, id: &str) -> String {
        if let Some(new) = self.local_ids.get(id) {
            return new.clone();
        }
        let mut id = id.to_owned();
        let mut hops = 0;
        while let Some(next) = self.upstream_renumbers.get(&id) {
            id = next.clone();
            hops += 1;
            if hops > 16 {
                break;
            }
        }
        id
    }

    fn one(&mut self, oid: Oid) -> Result<Outcome> {
        let repo = self.repo();
        let c = repo.find_commit(oid)?;
        let trailers = Trailers::parse(c.message().unwrap_or(""));
        let action = trailers.action();
        let chg_id = trailers.id.clone();
        // Already on the remote (a sync that pushed and was killed before moving the branch).
        if let Some(remote_id) = self.upstream.remove(&oid.to_string()) {
            if action == Some(Action::New)
                && let (Some(local), Some(remote)) = (chg_id, remote_id)
                && local != remote
            {
                self.local_ids.insert(local, remote);
            }
            return Ok(Outcome::Already);
        }
        let parent = c.parent(0)?;
        let changed = changed_change_files(repo, &parent.tree()?, &c.tree()?, self.store.prefix())?;
        let step = match (action, chg_id) {
            (Some(a), Some(id)) if a.is_change_action() => {
                let renumber = a == Action::Renumber;
                let expect = if renumber { 2 } else { 1 };
                (changed.len() == expect
                    && (renumber || layout::id_of_path(&changed[0]) == id.as_str()))
                .then_some((a, id))
            }
            _ => None,
        };
        let Some((action, id)) = step else {
            return self.cherry_pick(&c);
        };
        let stale = |reason: String| {
            Ok(Outcome::Stale(Stale {
                id: id.clone(),
                action: action.to_string(),
                commit: oid.to_string(),
                reason,
            }))
        };
        match action {
            Action::New => self.replay_new(&c, &changed[0], &id),
            Action::Renumber => {
                let old = trailers.renumbered_from.clone().unwrap_or_default();
                self.replay_renumber(&c, &old, &id, stale)
            }
            _ => self.replay_step(&c, &changed[0], action, &id, trailers.role.clone(), stale),
        }
    }

    /// The person running the sync, now: the committer of every replayed commit (the
    /// author stays who acted, when they acted).
    fn committer(&self) -> Result<Signature<'static>> {
        crate::store::signature(&self.ctx.committer, self.ctx.committed_at)
    }

    fn tip_tree(&self) -> Result<Tree<'s>> {
        Ok(self.repo().find_commit(self.tip)?.tree()?)
    }

    /// The remote's policy in `tree`, with its signers and catalogue: a tree without a
    /// usable policy stops the sync.
    fn policy(&mut self, tree: &Tree<'_>) -> Result<std::sync::Arc<Policy>> {
        let found = self.policies.in_tree(tree)?;
        let Some(blob) = found.blob else {
            return Err(Error::refused(
                "sync-no-policy",
                format!(
                    "sync stopped: the remote branch has no {POLICY_PATH}; nothing was pushed or changed"
                ),
            ));
        };
        if !found.parsed {
            let bytes = self.repo().find_blob(blob)?;
            let findings = crate::policy_source::parse(bytes.content())
                .err()
                .unwrap_or_default();
            return Err(Error::Invalid {
                summary: format!(
                    "sync stopped: the remote's {POLICY_PATH} is not a usable policy; nothing was pushed or changed"
                ),
                findings,
            });
        }
        Ok(found.policy)
    }

    /// Commits `files` on the tip with the local commit's author and `message`.
    fn commit_on_tip(
        &mut self,
        local: &Commit<'_>,
        files: &[(String, Option<Oid>)],
        message: &str,
    ) -> Result<Oid> {
        let repo = self.repo();
        let tip = repo.find_commit(self.tip)?;
        let mut tree = tip.tree()?;
        for (path, blob) in files {
            let comps: Vec<&str> = path.split('/').collect();
            let id = commit::replace_path(repo, Some(&tree), &comps, *blob)?;
            tree = repo.find_tree(id)?;
        }
        let committer = self.committer()?;
        let message = with_synced_from(message, local.id());
        let id = commit::write_commit(
            repo,
            &local.author(),
            &committer,
            &message,
            &tree,
            &[&tip],
            self.ctx.commit_signer.as_deref(),
        )?;
        self.tip = id;
        Ok(id)
    }

    fn done(&self, local: &Commit<'_>, id: &str, action: &str) -> Outcome {
        Outcome::Done(Replayed {
            id: id.to_owned(),
            action: action.to_owned(),
            from: local.id().to_string(),
            to: self.tip.to_string(),
        })
    }

    /// A commit that is not a chg transition, applied as `git cherry-pick` would.
    fn cherry_pick(&mut self, c: &Commit<'_>) -> Result<Outcome> {
        let repo = self.repo();
        let tip = repo.find_commit(self.tip)?;
        let mut index = repo.cherrypick_commit(c, &tip, 0, None)?;
        if index.has_conflicts() {
            let files: Vec<String> = index
                .conflicts()?
                .filter_map(|x| x.ok())
                .filter_map(|x| x.our.or(x.their).or(x.ancestor))
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .collect();
            return Err(Refusal::new(
                "sync-conflict",
                format!(
                    "sync stopped: commit {} (\"{}\") is not a chg transition and conflicts with the remote in {}. Nothing was pushed or changed",
                    short(c.id()),
                    c.message().unwrap_or("").lines().next().unwrap_or(""),
                    files.join(", "),
                ),
            )
            .hint(format!(
                "resolve it as in any rebase: git rebase {} (fix, git add, git rebase --continue), then sync again",
                short(self.tip)
            ))
            .into());
        }
        let tree = index.write_tree_to(repo)?;
        if tree == tip.tree_id() {
            return Ok(Outcome::Empty);
        }
        let tree = repo.find_tree(tree)?;
        let committer = self.committer()?;
        let msg = with_synced_from(&String::from_utf8_lossy(c.message_bytes()), c.id());
        self.tip = commit::write_commit(
            repo,
            &c.author(),
            &committer,
            &msg,
            &tree,
            &[&tip],
            self.ctx.commit_signer.as_deref(),
        )?;
        Ok(self.done(c, "", "commit"))
    }

    /// A local `new`: kept as it is unless its id was taken upstream, then moved to the
    /// next free id of its year on the remote.
    fn replay_new(&mut self, c: &Commit<'_>, path: &str, id: &str) -> Result<Outcome> {
        let repo = self.repo();
        let tree = self.tip_tree()?;
        let Some(blob) = commit::blob_at(&c.tree()?, path)? else {
            return Err(Error::refused(
                "sync-not-a-file",
                format!(
                    "commit {} adds {path}, which is not a file; chg sync cannot replay it",
                    c.id()
                ),
            ));
        };
        let parsed: ChangeId = id
            .parse()
            .map_err(|e: String| Error::Internal(format!("{id}: {e}")))?;
        let new_id = free_id(repo, &tree, self.store.prefix(), parsed.clone())?;
        if new_id == parsed {
            let msg = String::from_utf8_lossy(c.message_bytes()).into_owned();
            self.commit_on_tip(c, &[(path.to_owned(), Some(blob))], &msg)?;
            return Ok(self.done(c, id, "new"));
        }
        let (change, text) = decode_blob(repo, blob, path)?;
        let mut next = change.clone();
        next.id = Some(new_id.clone());
        let text = edit::apply(&text, &change, &next)?;
        let new_path = match next.request_date {
            Some(d) => format!(
                "{}{}",
                self.store.prefix(),
                layout::change_path(&new_id, d).display()
            ),
            None => path.replace(id, &new_id.to_string()),
        };
        let mut transition = Transition::new(Action::New, next.status(), next.status());
        transition.notes.push(format!(
            "Filed as {id} in another clone; {id} was taken on the remote by the time it was synced."
        ));
        transition.extra.renumbered_from = Some(id.to_owned());
        let message =
            crate::store::commit_message(&new_id, &next, &transition, &author_identity(c), true);
        let new_blob = repo.blob(text.as_bytes())?;
        self.commit_on_tip(c, &[(new_path, Some(new_blob))], &message)?;
        self.local_ids.insert(id.to_owned(), new_id.to_string());
        self.renumbered.push((id.to_owned(), new_id.to_string()));
        Ok(self.done(c, &new_id.to_string(), "new"))
    }

    /// A local `chg renumber`: applied to the remote's file of the old id, to an id free there.
    fn replay_renumber(
        &mut self,
        c: &Commit<'_>,
        old: &str,
        new: &str,
        stale: impl Fn(String) -> Result<Outcome>,
    ) -> Result<Outcome> {
        let repo = self.repo();
        let tree = self.tip_tree()?;
        let old_id = self.map_id(old);
        let Some((path, Some(blob))) = find_change(repo, &tree, self.store.prefix(), &old_id)?
        else {
            return stale(format!("{old_id} is not on the remote any more"));
        };
        let parsed: ChangeId = new
            .parse()
            .map_err(|e: String| Error::Internal(format!("{new}: {e}")))?;
        let new_id = free_id(repo, &tree, self.store.prefix(), parsed)?;
        let (change, text) = decode_blob(repo, blob, &path)?;
        let (next, transition) = workflow::renumber(&change, new_id.clone());
        let text = edit::apply(&text, &change, &next)?;
        let new_path = path.replace(&old_id, &new_id.to_string());
        let message =
            crate::store::commit_message(&new_id, &next, &transition, &author_identity(c), false);
        let new_blob = repo.blob(text.as_bytes())?;
        self.commit_on_tip(c, &[(path, None), (new_path, Some(new_blob))], &message)?;
        self.local_ids.insert(new.to_owned(), new_id.to_string());
        Ok(self.done(c, &new_id.to_string(), "renumber"))
    }

    /// Any other step: rebuilt from the local commit and applied to the remote's version.
    fn replay_step(
        &mut self,
        c: &Commit<'_>,
        path: &str,
        action: Action,
        id: &str,
        role: Option<String>,
        stale: impl Fn(String) -> Result<Outcome>,
    ) -> Result<Outcome> {
        let repo = self.repo();
        let tree = self.tip_tree()?;
        let parent_tree = c.parent(0)?.tree()?;
        // `chg policy apply` wrote policy/ too: replaying only the change file would leave
        // a proposal implemented and its policy not applied.
        let prefix = self.store.prefix();
        if crate::governance::policy_tree(&parent_tree, prefix)?
            != crate::governance::policy_tree(&c.tree()?, prefix)?
        {
            return stale(format!(
                "it applied a policy proposal; run `chg policy apply {id}` again on the synced branch"
            ));
        }
        let remote_id = self.map_id(id);
        let Some((remote_path, Some(remote_blob))) =
            find_change(repo, &tree, self.store.prefix(), &remote_id)?
        else {
            return stale(format!("{remote_id} is not on the remote any more"));
        };
        let (Some(before_blob), Some(after_blob)) = (
            commit::blob_at(&parent_tree, path)?,
            commit::blob_at(&c.tree()?, path)?,
        ) else {
            return stale("the local commit does not hold the change before and after".into());
        };
        let policy_path = format!("{}{POLICY_PATH}", self.store.prefix());
        let same_policy =
            commit::blob_at(&parent_tree, &policy_path)? == commit::blob_at(&tree, &policy_path)?;
        // Nobody touched this change or the policy upstream: the step applies as it is. Not
        // a schedule: others may have scheduled over it meanwhile (checked below).
        if remote_blob == before_blob
            && same_policy
            && remote_id == id
            && action != Action::Schedule
        {
            let msg = String::from_utf8_lossy(c.message_bytes()).into_owned();
            self.commit_on_tip(c, &[(remote_path, Some(after_blob))], &msg)?;
            return Ok(self.done(c, id, action.as_str()));
        }
        let policy = self.policy(&tree)?;
        let (before, _) = decode_blob(repo, before_blob, path)?;
        let (after, _) = decode_blob(repo, after_blob, path)?;
        let (current, current_text) = decode_blob(repo, remote_blob, &remote_path)?;
        let step = match workflow::step_between(action, role, &before, &after) {
            Ok(s) => s,
            Err(why) => return stale(why),
        };
        let step = match rebased(step, &before, &after, &current) {
            Ok(Some(step)) => step,
            Ok(None) => return Ok(Outcome::Empty),
            Err(why) => return stale(why),
        };
        let actor = c.author().email().unwrap_or("").to_owned();
        let when = jiff::Timestamp::from_second(c.author().when().seconds())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let (mut next, transition) = match workflow::apply(&current, &policy, &actor, when, step) {
            Ok(x) => x,
            Err(e @ (Error::Refused(_) | Error::Usage(_))) => return stale(e.to_string()),
            Err(e) => return Err(e),
        };
        crate::signing::carry_signature(&after, &mut next, action.as_str());
        if let Some(why) = replay_problem(
            repo,
            &tree,
            self.store.prefix(),
            &policy,
            action,
            &current,
            &next,
        )? {
            return stale(why);
        }
        let text = edit::apply(&current_text, &current, &next)?;
        let parsed: ChangeId = remote_id
            .parse()
            .map_err(|e: String| Error::Internal(format!("{remote_id}: {e}")))?;
        let message =
            crate::store::commit_message(&parsed, &next, &transition, &author_identity(c), false);
        let blob = repo.blob(text.as_bytes())?;
        self.commit_on_tip(c, &[(remote_path, Some(blob))], &message)?;
        Ok(self.done(c, &remote_id, action.as_str()))
    }
}

/// A local step as it applies on the remote's version `current` of the change: an
/// approval or rejection only to the content the approver saw; an edit changes the fields
/// it changed unless the remote changed them too. `Err`: why it no longer applies;
/// `Ok(None)`: the remote already has the edit.
fn rebased(
    step: Step,
    before: &ChangeRequest,
    after: &ChangeRequest,
    current: &ChangeRequest,
) -> std::result::Result<Option<Step>, String> {
    Ok(Some(match step {
        Step::Approve { .. } | Step::Reject { .. }
            if before.material_digest() != current.material_digest() =>
        {
            return Err(format!(
                "its content changed on the remote since ({}); it needs a fresh look",
                before.material_differences(current).join(", ")
            ));
        }
        Step::Edit { .. } => {
            let mut new = current.clone();
            for f in before.content_differences(after) {
                if current.field_text(f) != before.field_text(f)
                    && current.field_text(f) != after.field_text(f)
                    || (f == "affected_systems"
                        && current.affected_systems != before.affected_systems
                        && current.affected_systems != after.affected_systems)
                {
                    return Err(format!("{f} was also changed on the remote"));
                }
                new.copy_field(after, f);
            }
            if new.content_differences(current).is_empty() {
                return Ok(None);
            }
            Step::Edit { new: Box::new(new) }
        }
        s => s,
    }))
}

/// Why the replayed record `next` cannot be committed on the remote's tip: its carried
/// signature does not verify where the policy requires one (the replay cannot sign for the
/// person who acted), or its schedule overlaps what others scheduled meanwhile where the
/// policy blocks overlaps (the check a local `chg schedule` makes).
fn replay_problem(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    policy: &Policy,
    action: Action,
    current: &ChangeRequest,
    next: &ChangeRequest,
) -> Result<Option<String>> {
    if policy.requires_signature(action.as_str())
        && let Some(signers) = policy.signers()
        && let Some(r) = crate::signing::new_record(next, action.as_str())
    {
        let v = crate::rules::record_verdict(next, &r, policy, signers, r.statement.at);
        if let Some(why) = v.problem(r.signer()) {
            return Ok(Some(format!("the replayed {} record: {why}", r.action)));
        }
    }
    if action == Action::Schedule
        && let Some(s) = &next.schedule
    {
        let others = scheduled_changes(repo, tree, prefix)?;
        let others: Vec<&ChangeRequest> = others.iter().collect();
        if let Err(e) = crate::conflicts::screen(current, s, &others, policy) {
            return Ok(Some(e.to_string()));
        }
    }
    Ok(None)
}

/// The changes in `tree` that can conflict with a schedule (active and scheduled).
fn scheduled_changes(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
) -> Result<Vec<ChangeRequest>> {
    let mut out = Vec::new();
    let Ok(entry) = tree.get_path(Path::new(&format!("{prefix}changes"))) else {
        return Ok(out);
    };
    let mut stack = vec![repo.find_tree(entry.id())?];
    while let Some(t) = stack.pop() {
        for e in t.iter() {
            match e.kind() {
                Some(git2::ObjectType::Tree) => stack.push(repo.find_tree(e.id())?),
                Some(git2::ObjectType::Blob) if e.name_bytes().ends_with(b".yaml") => {
                    let blob = repo.find_blob(e.id())?;
                    let d = decode::decode_bytes_with("", blob.content(), false);
                    if d.parsed && crate::conflicts::can_conflict(&d.change) {
                        out.push(d.change);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

fn author_identity(c: &Commit<'_>) -> Identity {
    let a = c.author();
    Identity {
        name: a.name().unwrap_or("").to_owned(),
        email: a.email().unwrap_or("").to_owned(),
    }
}

fn decode_blob(repo: &Repository, blob: Oid, path: &str) -> Result<(ChangeRequest, String)> {
    let bytes = repo.find_blob(blob)?.content().to_vec();
    let decoded = decode::decode_bytes(path, &bytes);
    if let Some(f) = decoded.findings.iter().find(|f| f.is_error()) {
        return Err(Error::Malformed(f.clone()));
    }
    Ok((decoded.change, String::from_utf8(bytes).unwrap_or_default()))
}

/// The change files (`<prefix>changes/…/*.yaml`) that differ between two trees.
fn changed_change_files(
    repo: &Repository,
    a: &Tree<'_>,
    b: &Tree<'_>,
    prefix: &str,
) -> Result<Vec<String>> {
    let mut opts = git2::DiffOptions::new();
    opts.pathspec(format!("{prefix}changes"));
    let diff = repo.diff_tree_to_tree(Some(a), Some(b), Some(&mut opts))?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        let path = d
            .new_file()
            .path()
            .or_else(|| d.old_file().path())
            .and_then(Path::to_str)
            .unwrap_or("")
            .to_owned();
        if !path.ends_with(".yaml") {
            continue;
        }
        out.push(path);
    }
    Ok(out)
}

/// `wanted` when `tree` does not have it yet, else the next free number of its year there.
fn free_id(repo: &Repository, tree: &Tree<'_>, prefix: &str, wanted: ChangeId) -> Result<ChangeId> {
    if find_change(repo, tree, prefix, &wanted.to_string())?.is_none() {
        return Ok(wanted);
    }
    let n = highest(repo, tree, prefix, &wanted)? + 1;
    ChangeId::new(wanted.prefix(), wanted.year(), n).map_err(Error::Internal)
}
