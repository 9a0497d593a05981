//! The policy at HEAD (assembled by [`crate::policy_source`]), its files, whether it is
//! authorized, and `chg policy apply`.

use super::*;

/// The change files requested when a change was (at least: all of them by its requester
/// then), for [`Store::gate_among`].
pub type RequestedWith<'f, 'a> = &'f dyn Fn(&ChangeRequest) -> Vec<&'a Loaded>;

impl Store {
    /// The policy in force: the one committed at HEAD (SPEC section 5: uncommitted edits
    /// under `policy/` are never applied), or the work tree's while nothing is committed,
    /// with its signers and catalogue from the same place (see [`crate::policy_source`]).
    /// A broken policy stops every command. Assembled once per HEAD policy: a command that
    /// asks again (the step inside the lock after the CLI's look) gets the same value
    /// unless HEAD's policy changed in between.
    pub fn policy(&self) -> Result<Arc<Policy>> {
        let head = commit::head_state(&self.repo)?.1;
        let tree = match head {
            Some(h) => Some(self.repo.find_commit(h)?.tree()?),
            None => None,
        };
        let blob = match &tree {
            Some(t) => crate::git::blob_at(t, &format!("{}{POLICY_PATH}", self.prefix))?,
            None => None,
        };
        // What the assembled policy was read from: the `policy/` folder and the allowed
        // signers the policy names (which may live outside it).
        let key = |t: &git2::Tree<'_>, p: &Policy| -> Result<PolicyKey> {
            let signers = match &p.signing {
                Some(s) => {
                    crate::git::blob_at(t, &format!("{}{}", self.prefix, s.allowed_signers))?
                }
                None => None,
            };
            Ok((crate::governance::policy_tree(t, &self.prefix)?, signers))
        };
        if let (Some(t), Some(_), Some((cached, p))) = (&tree, blob, &*self.policy_cache.borrow())
            && key(t, p)? == *cached
        {
            return Ok(p.clone());
        }
        // Nothing at HEAD: the work tree's, until the first commit.
        let (bytes, files) = match (&tree, blob) {
            (Some(tree), Some(blob)) => (
                self.repo.find_blob(blob)?.content().to_vec(),
                crate::policy_source::Files::Tree {
                    repo: &self.repo,
                    tree,
                    prefix: &self.prefix,
                },
            ),
            _ => (
                decode::read_bounded(&self.root.join(POLICY_PATH))
                    .map_err(|e| Error::io(format!("cannot read {POLICY_PATH}"), e))?,
                crate::policy_source::Files::WorkTree(&self.root),
            ),
        };
        let mut policy = match crate::policy_source::parse(&bytes) {
            Ok((p, _warnings)) => p,
            Err(findings) => {
                return Err(Error::Invalid {
                    summary: format!(
                        "{POLICY_PATH} is not a usable policy ({} problem(s)); no command acts on it until it is fixed",
                        findings.len()
                    ),
                    findings,
                });
            }
        };
        // A template with problems is left out of the catalogue (validate reports it).
        let attached = crate::policy_source::attach(&mut policy, &files, self.template_history()?)?;
        let findings: Vec<Finding> = attached
            .signers
            .into_iter()
            .filter(Finding::is_error)
            .collect();
        if !findings.is_empty() {
            return Err(Error::Invalid {
                summary: format!(
                    "the policy's allowed signers are not usable ({} problem(s)); no command acts on the policy until they are fixed",
                    findings.len()
                ),
                findings,
            });
        }
        if let Some(signers) = policy.signers() {
            signers.remember_in(self.proven_signatures());
        }
        let policy = Arc::new(policy);
        if let (Some(t), Some(_)) = (&tree, blob) {
            *self.policy_cache.borrow_mut() = Some((key(t, &policy)?, policy.clone()));
        }
        Ok(policy)
    }

    /// A store file's blob at HEAD (`rel` relative to the store), if HEAD has it.
    pub(super) fn head_blob(&self, rel: &str) -> Result<Option<git2::Blob<'_>>> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(None);
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        match commit::blob_at(&tree, &format!("{}{rel}", self.prefix))? {
            Some(b) => Ok(Some(self.repo.find_blob(b)?)),
            None => Ok(None),
        }
    }

    /// A store file's bytes at HEAD, whatever their size: `NotFound` when HEAD lacks it, so
    /// that a reader can tell a missing file from one past the limit.
    pub fn committed_bytes(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        match self.head_blob(rel) {
            Ok(Some(b)) => Ok(b.content().to_vec()),
            Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// A store file's bytes at HEAD (`rel` relative to the store), if HEAD has it; past the
    /// size limit it counts as absent.
    pub fn committed_file(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .head_blob(rel)?
            .filter(|b| b.size() as u64 <= decode::MAX_FILE_BYTES)
            .map(|b| b.content().to_vec()))
    }

    /// Whether the work tree's policy differs from the committed one.
    pub fn policy_has_uncommitted_edits(&self) -> Result<bool> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(false);
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        if commit::blob_at(&tree, &format!("{}{POLICY_PATH}", self.prefix))?.is_none() {
            return Ok(false);
        }
        // Every file under policy/ (the policy, its allowed signers, what comes next), in
        // the work tree and at HEAD.
        let mut paths: Vec<String> = self
            .worktree_policy_paths()
            .iter()
            .filter_map(|p| p.strip_prefix(&self.root).ok())
            .map(|rel| self.repo_path(rel))
            .collect();
        if let Ok(entry) = tree.get_path(Path::new(&format!("{}policy", self.prefix))) {
            let sub = self.repo.find_tree(entry.id())?;
            sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
                if e.kind() == Some(ObjectType::Blob) {
                    let p = format!("{}policy/{root}{}", self.prefix, e.name().unwrap_or(""));
                    if !paths.contains(&p) {
                        paths.push(p);
                    }
                }
                git2::TreeWalkResult::Ok
            })?;
        }
        for path in paths {
            let rel = &path[self.prefix.len()..];
            let work = decode::read_bounded(&self.root.join(rel)).ok();
            match (commit::blob_at(&tree, &path)?, work) {
                (None, None) => {}
                (Some(blob), Some(bytes))
                    if commit::same_content(&self.repo, &path, &bytes, blob)? => {}
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Whether the policy at HEAD was slipped in (SPEC section 10): the commit that did it
    /// and why, or `None` when it stands. The last answer is kept in `.git/chg/` with the
    /// HEAD it was for, so a command walks only the commits made since.
    pub fn unauthorized_policy(&self) -> Result<Option<(Oid, String)>> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(None);
        };
        // One answer per store: two stores in one repository have two policies.
        let name = if self.prefix.is_empty() {
            "policy-standing".to_owned()
        } else {
            format!(
                "policy-standing~{}",
                &crate::text::sha256_hex(self.prefix.as_bytes())[..16]
            )
        };
        let path = self.repo.commondir().join("chg").join(&name);
        // `HEAD LAST-CHANGE-or-none ok|unauthorized WHY`
        let kept = std::fs::read_to_string(&path).ok().and_then(|t| {
            let mut f = t.trim_end().splitn(4, ' ');
            let (h, last, ok) = (f.next()?, f.next()?, f.next()?);
            let why = f.next().unwrap_or("").to_owned();
            Some((
                Oid::from_str(h).ok()?,
                Oid::from_str(last).ok(),
                ok == "ok",
                why,
            ))
        });
        let answer =
            |last: Option<Oid>, ok: bool, why: String| (!ok).then(|| (last.unwrap_or(head), why));
        if let Some((h, last, ok, why)) = &kept
            && *h == head
        {
            return Ok(answer(*last, *ok, why.clone()));
        }
        let mut g = crate::audit::governance::Governance::new(&self.repo, &self.prefix);
        // Checkpoints of earlier walks (`COMMIT LAST-CHANGE-or-none` lines): a HEAD that is
        // no descendant of the kept one (a reset, a checkout) is walked only to the nearest.
        let checkpoints = path.with_file_name(format!("{name}-checkpoints"));
        let known: Vec<(Oid, Option<Oid>)> = std::fs::read_to_string(&checkpoints)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (c, last) = l.split_once(' ')?;
                Some((Oid::from_str(c).ok()?, Oid::from_str(last).ok()))
            })
            .collect();
        g.learn_last(known.iter().copied());
        let since = kept.as_ref().map(|k| k.0);
        let (last, standing) = match g.last_change(head, since)? {
            Some(at) if Some(at) == since && !g.changes_policy(at)? => {
                let (_, last, ok, why) = kept.clone().expect("since is kept");
                (last, if ok { None } else { Some(why) })
            }
            Some(at) => match g.standing_of(at)? {
                crate::governance::Standing::Unauthorized(why) => (Some(at), Some(why)),
                _ => (Some(at), None),
            },
            None => (None, None),
        };
        let line = format!(
            "{head} {} {} {}\n",
            last.map_or("none".to_owned(), |o| o.to_string()),
            if standing.is_some() {
                "unauthorized"
            } else {
                "ok"
            },
            standing.clone().unwrap_or_default()
        );
        let _ = commit::atomic_write(&path, line.as_bytes());
        let learnt = g.checkpoints();
        if learnt.len() > known.len() {
            // A cache, like the line above: losing it costs the next walk time, no more.
            let text: String = learnt
                .iter()
                .map(|(c, l)| format!("{c} {}\n", l.map_or("none".to_owned(), |o| o.to_string())))
                .collect();
            let _ = commit::atomic_write(&checkpoints, text.as_bytes());
        }
        Ok(answer(
            last,
            standing.is_none(),
            standing.unwrap_or_default(),
        ))
    }

    /// [`Store::ensure_authorized_policy`], except for a policy proposal: proposing,
    /// approving and applying one is a way out (its governance approvals are then judged
    /// by the last policy that counted).
    pub(super) fn ensure_authorized_policy_for(&self, change: &ChangeRequest) -> Result<()> {
        if change.proposed_policy.is_some() {
            return Ok(());
        }
        self.ensure_authorized_policy()
    }

    /// Refuses unless the change's committed history verifies (see [`crate::standing`]):
    /// a status, approval or record that chg's verified steps did not produce is not
    /// believed.
    pub fn ensure_verified(&self, id: &ChangeId, now: jiff::Timestamp) -> Result<()> {
        match crate::standing::of(self, id, now)?.refusal(&id.to_string()) {
            Some(r) => Err(r.into()),
            None => Ok(()),
        }
    }

    /// Every reason change `id` may not be deployed at `at` (empty: the gate is open), as
    /// `chg gate` and the server answer it: the policy at HEAD slipped in, the file differs
    /// from the committed one, its committed history does not verify, a step dated in the
    /// future, then the implement rules and blocking overlaps ([`crate::rules::gate`]),
    /// judged by `policy` as it applies to the change ([`Policy::for_intake`]).
    pub fn gate(
        &self,
        id: &ChangeId,
        policy: &Policy,
        at: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::error::Refusal>> {
        // From the read summary, as the server does: the changes that can conflict with a
        // schedule, and those requested at this one's time (where a copy of its signed
        // request would be). Reading every file took 0.75 s at 100,000 changes.
        let me = self.load(id)?;
        let all = self.load_summaries_where(|c| {
            crate::conflicts::can_conflict(c) || crate::rules::same_request(me.change(), c)
        })?;
        let others: Vec<&ChangeRequest> = all
            .iter()
            .filter(|l| l.decoded.parsed && crate::conflicts::can_conflict(l.change()))
            .map(Loaded::change)
            .collect();
        let requested_with = |c: &ChangeRequest| -> Vec<&Loaded> {
            all.iter()
                .filter(|l| l.decoded.parsed && crate::rules::same_request(c, l.change()))
                .collect()
        };
        self.gate_among(id, policy, at, now, (&requested_with, &others))
    }

    /// [`Store::gate`], judging against `among` (a server keeps the read summaries in
    /// memory between requests): the summaries of
    /// the changes requested at a change's request time (at least: those by its requester
    /// then), and those that [`crate::conflicts::can_conflict`]. Overlaps are judged on the
    /// summaries; a copy of the change's signed request on the files they point to.
    pub fn gate_among<'a>(
        &self,
        id: &ChangeId,
        policy: &Policy,
        at: jiff::Timestamp,
        now: jiff::Timestamp,
        among: (RequestedWith<'_, 'a>, &[&ChangeRequest]),
    ) -> Result<Vec<crate::error::Refusal>> {
        use crate::error::Refusal;
        let loaded = self.load(id)?;
        let mut out: Vec<Refusal> = Vec::new();
        if let Some((commit, why)) = self.unauthorized_policy()? {
            out.push(Refusal::new(
                crate::governance::UNAUTHORIZED,
                format!(
                    "{why}; nothing is deployed under it until it is reverted (`git revert {}`) or proposed and applied",
                    &commit.to_string()[..8]
                ),
            ));
        }
        let head = commit::head_state(&self.repo)?.1;
        if let Err(Error::Dirty(path)) = self.ensure_clean(&loaded, head) {
            out.push(Refusal::new(
                crate::standing::UNVERIFIED,
                format!("{path} has uncommitted edits; the gate judges only what is committed"),
            ));
            return Ok(out);
        }
        out.extend(
            crate::rules::future_problems(loaded.change(), now)
                .into_iter()
                .filter(|p| p.severity == crate::finding::Severity::Error)
                .take(1)
                .map(|p| Refusal::new(crate::rules::TIME_ORDER, p.message)),
        );
        let standing = crate::standing::of(self, id, now)?;
        out.extend(standing.refusal(&id.to_string()));
        let (requested_with, others) = among;
        let candidates = requested_with(loaded.change());
        out.extend(self.copied_request(&loaded, &candidates)?);
        out.extend(crate::rules::gate(
            loaded.change(),
            policy.for_intake(standing.questionnaire_due()),
            at,
            others,
        ));
        Ok(out)
    }

    /// The refusal of a change file that repeats the signed request of another of `all`
    /// ([`crate::rules::repeats_request`]): gate and implement believe neither copy's
    /// decisions until the copy is removed.
    pub(crate) fn copied_request(
        &self,
        loaded: &Loaded,
        all: &[&Loaded],
    ) -> Result<Option<crate::error::Refusal>> {
        let me = loaded.change();
        // Candidates by requester and request time (a summary holds those), each then read
        // whole: signatures are in the files only.
        let mut other = None;
        for o in all
            .iter()
            // The request's fields first: comparing 100,000 paths component by component
            // was most of a gate in the server.
            .filter(|o| {
                o.decoded.parsed
                    && crate::rules::same_request(me, o.change())
                    && o.rel != loaded.rel
            })
        {
            let o = self.load_file(&o.rel)?;
            if o.decoded.parsed && crate::rules::repeats_request(me, o.change()) {
                other = Some(o);
                break;
            }
        }
        let Some(other) = other else {
            return Ok(None);
        };
        Ok(Some(crate::error::Refusal::new(
            crate::rules::DUPLICATE_REQUEST,
            format!(
                "{} repeats the signed request of {} (same requester and request time, and its content or a signature): a copy carries decisions it was never given, so neither is believed until the copy is removed",
                self.repo_path(&loaded.rel),
                self.repo_path(&other.rel)
            ),
        )))
    }

    /// The change files of the folder of `loaded`'s request month (where chg files every
    /// change of that request time) and of its own folder: where a change repeating its
    /// request is, unless moved by hand, which validate reports. Read whole.
    pub(crate) fn request_month_files(&self, loaded: &Loaded) -> Result<Vec<Loaded>> {
        let me = loaded.change();
        let mut folders: Vec<std::path::PathBuf> =
            loaded.rel.parent().into_iter().map(Into::into).collect();
        if let (Some(id), Some(at)) = (&me.id, me.request_date)
            && let Some(f) = crate::layout::change_path(id, at).parent()
            && !folders.iter().any(|x| x == f)
        {
            folders.push(f.to_path_buf());
        }
        let mut out = Vec::new();
        for folder in folders {
            let Ok(entries) = std::fs::read_dir(self.root.join(&folder)) else {
                continue;
            };
            for e in entries.flatten() {
                let rel = folder.join(e.file_name());
                if rel != loaded.rel
                    && rel.extension().is_some_and(|x| x == "yaml")
                    && e.file_type().is_ok_and(|t| t.is_file())
                    && let Ok(l) = self.load_file(&rel)
                {
                    out.push(l);
                }
            }
        }
        Ok(out)
    }

    /// Refuses while the policy at HEAD was slipped in: no step may be judged by it.
    pub fn ensure_authorized_policy(&self) -> Result<()> {
        if let Some((commit, why)) = self.unauthorized_policy()? {
            return Err(Error::refused(
                crate::governance::UNAUTHORIZED,
                format!(
                    "{why}, so no step is judged by it; revert it (`git revert {}`) or propose it with `chg policy propose` and apply it once approved",
                    &commit.to_string()[..8]
                ),
            ));
        }
        Ok(())
    }

    /// Earlier versions of the catalogue, read from HEAD's history when first needed.
    pub fn template_history(&self) -> Result<Option<Arc<crate::templates::TemplateHistory>>> {
        Ok(commit::head_state(&self.repo)?.1.map(|head| {
            Arc::new(crate::templates::history_from(
                self.repo.path().to_path_buf(),
                self.prefix.clone(),
                head,
            ))
        }))
    }

    /// The files under `policy/` in the work tree, by path relative to the store.
    pub fn worktree_policy_files(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        for p in self.worktree_policy_paths() {
            let Ok(rel) = p.strip_prefix(&self.root) else {
                continue;
            };
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if p.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(Error::Usage(format!(
                    "{rel} is a link; the policy holds files only (a link could bring content from outside policy/)"
                )));
            }
            if let Some(why) = crate::governance::path_problem(&rel) {
                return Err(Error::Usage(why));
            }
            let bytes = decode::read_bounded(&p)
                .map_err(|err| Error::io(format!("cannot read {rel}"), err))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::Usage(format!("{rel} is not UTF-8 text; a policy file must be"))
            })?;
            out.insert(rel, text);
        }
        Ok(out)
    }

    /// Every file under the work tree's `policy/` (folders walked, links not followed).
    pub(super) fn worktree_policy_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(crate::governance::POLICY_DIR)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => out.push(e.path()),
                    Err(_) => {}
                }
            }
        }
        out
    }

    /// The git tree id of `policy/` at HEAD, as text (what a proposal is based on).
    pub fn committed_policy_tree(&self) -> Result<Option<String>> {
        Ok(match commit::head_state(&self.repo)?.1 {
            Some(h) => {
                crate::governance::policy_tree(&self.repo.find_commit(h)?.tree()?, &self.prefix)?
                    .map(|t| t.to_string())
            }
            None => None,
        })
    }

    /// The files under `policy/` at HEAD.
    pub fn committed_policy_files(&self) -> Result<std::collections::BTreeMap<String, String>> {
        match commit::head_state(&self.repo)?.1 {
            Some(h) => crate::governance::policy_files(
                &self.repo,
                &self.repo.find_commit(h)?.tree()?,
                &self.prefix,
            ),
            None => Ok(Default::default()),
        }
    }

    /// `chg policy apply` (SPEC section 10): the implement step of an approved policy
    /// proposal, committing its content under `policy/` in the same commit. Allowed while
    /// the policy at HEAD was slipped in (applying is one way out); the governance roles
    /// are then those of the last policy that counted.
    pub fn apply_policy(&self, ctx: &Context, id: &ChangeId) -> Result<Outcome> {
        for t in [ctx.now, ctx.committed_at] {
            crate::context::check_time(t).map_err(Error::Usage)?;
        }
        let lock = self.lock(ctx.lock_timeout)?;
        let head = commit::head_state(&self.repo)?.1;
        let session = Session {
            _lock: lock,
            policy: self.policy()?,
            head,
        };
        let loaded = self.load(id)?;
        self.ensure_clean(&loaded, session.head)?;
        let change = loaded.change();
        let Some(proposal) = change.proposed_policy.clone() else {
            return Err(Error::Usage(format!(
                "{id} is not a policy proposal (file one with `chg policy propose`)"
            )));
        };
        let committed = self.committed_policy_files()?;
        if proposal == committed {
            return Err(Error::Usage(format!(
                "the policy at HEAD is already what {id} proposes; nothing to apply"
            )));
        }
        let worktree = self.worktree_policy_files()?;
        if worktree != committed && worktree != proposal {
            let differs: Vec<&String> = worktree
                .keys()
                .chain(committed.keys())
                .filter(|p| worktree.get(*p) != committed.get(*p))
                .collect();
            return Err(Error::Dirty(format!(
                "{} (uncommitted edits under policy/ that are not what {id} proposes; commit them through a proposal, or set them aside with `git stash`)",
                differs
                    .first()
                    .map_or("policy/".to_owned(), |p| format!("{}{p}", self.prefix))
            )));
        }
        let authority = match head {
            Some(h) => {
                let mut g = crate::audit::governance::Governance::new(&self.repo, &self.prefix);
                g.governing_policy(h)?
            }
            None => session.policy.clone(),
        };
        let missing = crate::governance::missing_governance(change, &authority);
        if !missing.is_empty() {
            return Err(Error::refused(
                crate::governance::GOVERNANCE,
                format!(
                    "{id} is not approved by every governance role yet (waiting for: {})",
                    missing.join(", ")
                ),
            ));
        }
        // After the governance check: its refusal is the more precise one.
        self.ensure_verified(id, ctx.now)?;
        if let Some(why) = crate::governance::proposal_problem(change) {
            return Err(Error::refused(crate::governance::GOVERNANCE, why));
        }
        let base = self.committed_policy_tree()?;
        if change.policy_base != base {
            return Err(Error::refused(
                crate::governance::STALE,
                match &change.policy_base {
                    Some(_) => format!(
                        "policy/ changed since {id} was proposed, so applying it would undo what changed since; propose it again on the current policy (`chg policy propose`) and cancel {id}"
                    ),
                    None => format!(
                        "{id} does not record the policy it was proposed against (it was filed by an older chg), so applying it could undo a later change; propose it again on the current policy (`chg policy propose`) and cancel {id}"
                    ),
                },
            ));
        }
        // Judged by the policy that governs, as the governance check will judge the commit.
        let (next, mut transition) = workflow::apply(
            change,
            &authority,
            &ctx.actor.email,
            ctx.now,
            Step::Implement,
        )?;
        transition.notes.push(format!(
            "Applies the approved policy proposal: {}.",
            proposal.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        let next = sign_record(ctx, &session.policy, next, &transition)?;
        let text = edit::apply(&loaded.text, change, &next)?;
        let cid = next
            .id
            .clone()
            .ok_or_else(|| Error::Internal("a change without an id".into()))?;
        let message = commit_message(&cid, &next, &transition, &ctx.actor, false);
        let mut files = vec![FileWrite::write(
            self.repo_path(&loaded.rel),
            text.into_bytes(),
        )];
        for (path, content) in &proposal {
            if committed.get(path) != Some(content) {
                files.push(FileWrite::write(
                    format!("{}{path}", self.prefix),
                    content.clone().into_bytes(),
                ));
            }
        }
        for path in committed.keys().filter(|p| !proposal.contains_key(*p)) {
            files.push(FileWrite::remove(format!("{}{path}", self.prefix)));
        }
        let commit = self.commit(ctx, &files, &message, session.head)?;
        Ok(Outcome {
            warnings: Vec::new(),
            waiting_for: Vec::new(),
            change: next,
            transition,
            commit,
            rel: loaded.rel,
        })
    }
}
