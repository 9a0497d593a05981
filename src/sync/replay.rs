//! The replay of local commits onto the remote's tip: each chg transition turned back into
//! its step and applied to the remote's version of its change, under the remote's policy;
//! other commits cherry-picked.

use std::collections::HashMap;
use std::path::Path;

use git2::{Commit, Oid, Repository, Signature, Tree};

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

use super::{Outcome, Replayed, Stale, short};

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
pub(super) struct Replay<'s> {
    store: &'s Store,
    ctx: &'s Context,
    pub(super) tip: Oid,
    /// Local commits already on the remote (by their id), with the change id they got there.
    upstream: HashMap<String, Option<String>>,
    /// Ids renumbered upstream by `chg renumber` (old -> new), for changes not filed locally.
    upstream_renumbers: HashMap<String, String>,
    /// Local new changes: the id they were filed as -> their id on the remote.
    local_ids: HashMap<String, String>,
    pub(super) renumbered: Vec<(String, String)>,
    /// The remote's policies, each assembled once.
    policies: crate::policy_source::Cache<'s>,
}

impl<'s> Replay<'s> {
    pub(super) fn new(
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

    pub(super) fn one(&mut self, oid: Oid) -> Result<Outcome> {
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
