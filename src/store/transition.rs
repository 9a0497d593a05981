//! Every state change: filing, editing, renumbering and the transitions of the life
//! cycle, each one commit under the store lock with its checks made inside the lock.

use super::*;

impl Store {
    /// Refuses when the loaded file differs between HEAD, the index and the work tree (its
    /// work-tree bytes are the ones `load` read; they are not read again).
    pub(super) fn ensure_clean(&self, loaded: &Loaded, head: Option<Oid>) -> Result<()> {
        let path = self.repo_path(&loaded.rel);
        let dirty = || Error::Dirty(path.clone());
        let head_blob = match head {
            Some(h) => commit::blob_at(&self.repo.find_commit(h)?.tree()?, &path)?,
            None => None,
        };
        let head_blob = head_blob.ok_or_else(dirty)?;
        if !commit::same_content(&self.repo, &path, loaded.text.as_bytes(), head_blob)? {
            return Err(dirty());
        }
        // One path's entry, not the whole index (100,000 entries at scale).
        match super::staged::staged_blob(&self.repo, &path)? {
            Some(staged) if staged == head_blob => Ok(()),
            _ => Err(dirty()),
        }
    }

    pub(super) fn commit(
        &self,
        ctx: &Context,
        files: &[FileWrite],
        message: &str,
        head: Option<Oid>,
    ) -> Result<Oid> {
        // chg reads no file past its limit, so it must write none: such a change could
        // never be read, edited or closed again.
        for f in files {
            if let Some(c) = &f.content
                && c.len() as u64 > decode::MAX_FILE_BYTES
            {
                return Err(Error::Usage(format!(
                    "{} would be {} bytes, over chg's limit of {} bytes for a change file; nothing was changed (keep long texts such as logs elsewhere and link to them)",
                    f.path,
                    c.len(),
                    decode::MAX_FILE_BYTES
                )));
            }
        }
        let author = signature(&ctx.actor, ctx.now)?;
        let committer = signature(&ctx.committer, ctx.committed_at)?;
        commit::commit_files(
            &self.repo,
            files,
            message,
            &author,
            &committer,
            head,
            ctx.commit_signer.as_deref(),
        )
    }

    /// The next free id for `year`: one more than the highest number filed that year, in
    /// the work tree or in HEAD (a sparse checkout leaves committed changes out of the work
    /// tree; their ids are still taken).
    pub fn next_id(&self, prefix: &str, year: i16) -> Result<ChangeId> {
        let probe = ChangeId::new(prefix, year, 1).map_err(Error::Internal)?;
        let mut max = layout::highest_in_dir(&self.root, &probe);
        if let Some(head) = commit::head_state(&self.repo)?.1 {
            let tree = self.repo.find_commit(head)?.tree()?;
            max = max.max(layout::highest(&self.repo, &tree, &self.prefix, &probe)?);
        }
        ChangeId::new(prefix, year, max + 1).map_err(Error::Internal)
    }

    /// Files a new change: allocates the id, writes the file canonically, commits.
    pub fn create(&self, ctx: &Context, mut change: ChangeRequest, draft: bool) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        self.ensure_authorized_policy_for(&change)?;
        let (policy, when) = (&session.policy, ctx.now);
        let year = when.to_zoned(jiff::tz::TimeZone::UTC).year();
        let id = self.next_id(&policy.id_prefix, year)?;
        change.id = Some(id.clone());
        change.requester = Some(ctx.actor.email.clone());
        change.request_date = Some(when);
        let status = if draft {
            Status::Draft
        } else {
            Status::PendingApproval
        };
        change.status = Some(status);
        change.approvals.clear();
        // The same rules validate applies: a draft may be incomplete, anything else must
        // have every required field and pass the content rules.
        let problems: Vec<_> = validate::change_problems(&change, policy, None)
            .into_iter()
            .filter(|p| p.severity == crate::finding::Severity::Error)
            .collect();
        if !problems.is_empty() {
            let fields: Vec<String> = problems
                .iter()
                .filter(|p| p.rule == "required")
                .map(|p| p.path.clone())
                .collect();
            // One sentence says what is wrong; several problems are listed below it, each
            // once.
            let (summary, listed) = if fields.len() == problems.len() {
                (
                    format!("missing required field(s): {}", fields.join(", ")),
                    Vec::new(),
                )
            } else if problems.len() == 1 {
                (
                    format!("the change is not valid: {}", problems[0].message),
                    Vec::new(),
                )
            } else {
                (
                    format!("the change is not valid ({} problems):", problems.len()),
                    problems,
                )
            };
            let findings = listed
                .into_iter()
                .map(|p| Finding::error("(new change)", None, p.rule, p.message))
                .collect();
            return Err(Error::Invalid { summary, findings });
        }
        let rel = layout::change_path(&id, when);
        if self.root.join(&rel).exists() {
            return Err(Error::Internal(format!(
                "{} exists already although {id} looked free",
                rel.display()
            )));
        }
        if let Some(r) =
            crate::rules::emergency_declaration_refusal(None, &change, &ctx.actor.email, policy)
        {
            return Err(r.into());
        }
        let change = vouch(ctx, policy, None, change)?;
        let text = edit::render_new(&change)?;
        let transition = Transition::new(Action::New, status, status);
        self.finish(ctx, &session, rel, text, change, transition, true)
    }

    /// Commits a person's edit of a change file (from `chg edit`). `base` is the text the
    /// edit started from: if the file moved on meanwhile, nothing is written. The person's
    /// text is committed as written, unless the edit voids approvals, in which case only the
    /// status and approvals are changed in it.
    pub fn edit_text(
        &self,
        ctx: &Context,
        id: &ChangeId,
        base: &str,
        new_text: &str,
    ) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        let loaded = self.load(id)?;
        self.ensure_authorized_policy_for(loaded.change())?;
        if loaded.text != base {
            return Err(Error::Conflict(format!(
                "{id} changed while you were editing it; nothing was written"
            )));
        }
        self.ensure_clean(&loaded, session.head)?;
        let file = loaded.rel.display().to_string();
        let decoded = decode::decode_str(&file, new_text);
        let mut findings: Vec<Finding> = decoded
            .findings
            .iter()
            .filter(|f| f.is_error())
            .cloned()
            .collect();
        if findings.is_empty() {
            findings = validate::check_file(&loaded.rel, &decoded, &session.policy, None)
                .into_iter()
                .filter(|f| {
                    f.is_error()
                        && matches!(
                            f.rule,
                            "unknown-key" | "type" | "enum" | "timestamp" | "required"
                        )
                })
                .collect();
        }
        if !findings.is_empty() {
            return Err(Error::Invalid {
                summary: format!(
                    "the edited {id} is not valid ({} problem(s))",
                    findings.len()
                ),
                findings,
            });
        }
        let wanted = decoded.change;
        let (next, transition) = workflow::apply(
            loaded.change(),
            &session.policy,
            &ctx.actor.email,
            ctx.now,
            Step::Edit {
                new: Box::new(wanted.clone()),
            },
        )?;
        let next = edited(ctx, &session.policy, loaded.change(), next)?;
        let text = if next == wanted {
            new_text.to_owned()
        } else {
            edit::apply(new_text, &wanted, &next)?
        };
        self.finish(ctx, &session, loaded.rel, text, next, transition, false)
    }

    /// Every file named after `id` (a duplicate id filed in two months has two).
    pub fn files_of(&self, id: &ChangeId) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = layout::candidate_paths(id)
            .filter(|rel| self.root.join(rel).is_file())
            .collect();
        if out.is_empty() {
            out.push(self.find(id)?);
        }
        Ok(out)
    }

    /// The highest number of `id`'s prefix and year in the trees of the remote-tracking
    /// branches (`refs/remotes/`): ids others have already published, even when not merged.
    pub(super) fn highest_published(&self, id: &ChangeId) -> Result<u32> {
        let mut seen = std::collections::HashSet::new();
        let mut max = 0;
        for r in self.repo.references_glob("refs/remotes/*")? {
            let Ok(tree) = r.and_then(|r| r.peel_to_tree()) else {
                continue;
            };
            if seen.insert(tree.id()) {
                max = max.max(layout::highest(&self.repo, &tree, &self.prefix, id)?);
            }
        }
        Ok(max)
    }

    /// Moves a change to the next free id of its year (free here and on every fetched
    /// remote branch), with a trailer that records the old id. `file` picks one of two files
    /// claiming the same id; it is needed only when the id is claimed twice.
    pub fn renumber(&self, ctx: &Context, id: &ChangeId, file: Option<&Path>) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        self.ensure_authorized_policy()?;
        let rel = match file {
            Some(f) => {
                let abs = f
                    .canonicalize()
                    .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
                abs.strip_prefix(&self.root)
                    .map(Path::to_path_buf)
                    .map_err(|_| Error::Usage(format!("{} is not in the store", f.display())))?
            }
            None => match <[PathBuf; 1]>::try_from(self.files_of(id)?) {
                Ok([one]) => one,
                Err(files) => {
                    let choices: Vec<String> =
                        files.iter().map(|p| p.display().to_string()).collect();
                    return Err(Error::Ambiguous {
                        message: format!(
                            "{id} is claimed by {} files ({})",
                            files.len(),
                            choices.join(", ")
                        ),
                        what: "file",
                        choices,
                    });
                }
            },
        };
        let bytes = self.read_change(&rel)?;
        let decoded = decode::decode_bytes(&rel.display().to_string(), &bytes);
        if let Some(f) = decoded.findings.iter().find(|f| f.is_error()) {
            return Err(Error::Malformed(f.clone()));
        }
        let loaded = Loaded {
            rel,
            text: String::from_utf8(bytes).unwrap_or_default(),
            decoded,
        };
        if loaded.change().id.as_ref() != Some(id) {
            return Err(Error::Usage(format!(
                "{} holds {}, not {id}",
                loaded.rel.display(),
                loaded.change().id_text()
            )));
        }
        self.ensure_clean(&loaded, session.head)?;
        let local = self.next_id(id.prefix(), id.year())?;
        let number = local.number().max(self.highest_published(id)? + 1);
        let new_id = ChangeId::new(id.prefix(), id.year(), number).map_err(Error::Internal)?;
        let (next, transition) = workflow::renumber(loaded.change(), new_id.clone());
        let text = edit::apply(&loaded.text, loaded.change(), &next)?;
        let rel = match next.request_date {
            Some(d) => layout::change_path(&new_id, d),
            None => loaded.rel.with_file_name(format!("{new_id}.yaml")),
        };
        self.finish_moving(
            ctx,
            &session,
            Some(&loaded.rel),
            rel,
            text,
            next,
            transition,
            false,
        )
    }

    /// Takes the lock, then reads the policy and HEAD under it.
    pub(super) fn begin(&self, ctx: &Context) -> Result<Session> {
        for t in [ctx.now, ctx.committed_at] {
            crate::context::check_time(t).map_err(Error::Usage)?;
        }
        let lock = self.lock(ctx.lock_timeout)?;
        if self.policy_has_uncommitted_edits()? {
            self.notices.borrow_mut().push(format!(
                "chg: note: {POLICY_PATH} has uncommitted edits; this step was judged by the policy committed at HEAD"
            ));
        }
        Ok(Session {
            _lock: lock,
            policy: self.policy()?,
            head: commit::head_state(&self.repo)?.1,
        })
    }

    /// Commits `text` as the file of `next` and reports the step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &self,
        ctx: &Context,
        session: &Session,
        rel: PathBuf,
        text: String,
        next: ChangeRequest,
        transition: Transition,
        created: bool,
    ) -> Result<Outcome> {
        self.finish_moving(ctx, session, None, rel, text, next, transition, created)
    }

    /// [`Store::finish`], removing `moved_from` in the same commit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_moving(
        &self,
        ctx: &Context,
        session: &Session,
        moved_from: Option<&Path>,
        rel: PathBuf,
        text: String,
        next: ChangeRequest,
        transition: Transition,
        created: bool,
    ) -> Result<Outcome> {
        let id = next
            .id
            .clone()
            .ok_or_else(|| Error::Internal("a change without an id".into()))?;
        let mut transition = transition;
        transition.extra.via.clone_from(&ctx.via);
        let message = commit_message(&id, &next, &transition, &ctx.actor, created);
        let mut files = vec![FileWrite::write(self.repo_path(&rel), text.into_bytes())];
        if let Some(old) = moved_from.filter(|old| *old != rel) {
            files.insert(0, FileWrite::remove(self.repo_path(old)));
        }
        let commit = self.commit(ctx, &files, &message, session.head)?;
        Ok(Outcome {
            warnings: Vec::new(),
            waiting_for: crate::rules::missing_roles(&next, &session.policy),
            change: next,
            transition,
            commit,
            rel,
        })
    }

    /// Applies one step to a change and commits it; refuses without changing anything.
    pub fn transition(&self, ctx: &Context, id: &ChangeId, step: Step) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        let loaded = self.load(id)?;
        self.ensure_authorized_policy_for(loaded.change())?;
        self.ensure_clean(&loaded, session.head)?;
        let implement = matches!(step, Step::Implement);
        // A deployment is recorded only where `chg gate` would have let it through, judged
        // now, under the lock: the gate's own verdict, every reason said.
        if matches!(step, Step::Deploy { .. }) {
            let reasons = self.gate(id, &session.policy, ctx.now, ctx.now)?;
            if !reasons.is_empty() {
                return Err(
                    crate::rules::deploy_refusal(&id.to_string(), ctx.now, &reasons).into(),
                );
            }
        }
        let approve = matches!(step, Step::Approve { .. });
        // The questionnaire is due from a change unless history shows it submitted before
        // the policy asked it; a submission is judged by today's policy.
        let unanswered = session.policy.risk.is_some()
            && loaded.change().risk_assessment.is_none()
            && !matches!(step, Step::Submit);
        let standing = if approve || unanswered || implement {
            Some(crate::standing::of(self, id, ctx.now)?)
        } else {
            None
        };
        if implement && let Some(r) = standing.as_ref().and_then(|st| st.refusal(&id.to_string())) {
            return Err(r.into());
        }
        if implement {
            // A copy of a signed request carries decisions it was never given: as the gate.
            let candidates = self.request_month_files(&loaded)?;
            let candidates: Vec<&Loaded> = candidates.iter().collect();
            if let Some(r) = self.copied_request(&loaded, &candidates)? {
                return Err(r.into());
            }
        }
        let policy = session.policy.for_intake(
            standing
                .as_ref()
                .is_none_or(crate::standing::Standing::questionnaire_due),
        );
        // An approval is judged with what history says about who made the change, by the
        // same rule that says whom a change awaits ([`workflow::approvable_roles`]).
        let provenance = standing
            .as_ref()
            .filter(|_| approve)
            .map(|st| st.provenance(&id.to_string()))
            .unwrap_or_default();
        let (next, transition) = workflow::apply_with(
            loaded.change(),
            policy,
            &ctx.actor.email,
            ctx.now,
            step,
            &provenance,
        )?;
        // Whoever history shows filed the change is its requester too, whatever the file says.
        if let Some(standing) = standing.as_ref().filter(|_| implement)
            && let Some(r) = crate::rules::implementer_refusals(
                loaded.change(),
                policy,
                &ctx.actor.email,
                standing.creator(),
            )
            .into_iter()
            .next()
        {
            return Err(r.into());
        }
        // Overlaps with other changes are judged here, under the lock, so two schedules
        // racing for one system cannot both pass a check that blocks.
        let warnings = match &next.schedule {
            Some(s) if transition.action == Action::Schedule => {
                let all = self.load_where(crate::conflicts::can_conflict)?;
                let others: Vec<&ChangeRequest> = all
                    .iter()
                    .filter(|l| l.decoded.parsed)
                    .map(Loaded::change)
                    .collect();
                crate::conflicts::screen(loaded.change(), s, &others, &session.policy)?
            }
            _ => Vec::new(),
        };
        let next = sign_record(ctx, &session.policy, next, &transition)?;
        let next = if transition.action == Action::Edit {
            edited(ctx, &session.policy, loaded.change(), next)?
        } else {
            next
        };
        let text = edit::apply(&loaded.text, loaded.change(), &next)?;
        let mut outcome = self.finish(ctx, &session, loaded.rel, text, next, transition, false)?;
        outcome.warnings = warnings;
        Ok(outcome)
    }
}

/// What every edit (`chg edit`, `chg set`) of `before` into `next` must pass beside the
/// life cycle: who may declare an emergency, and the signed record of who wrote the content.
pub(super) fn edited(
    ctx: &Context,
    policy: &Policy,
    before: &ChangeRequest,
    next: ChangeRequest,
) -> Result<ChangeRequest> {
    if let Some(r) =
        crate::rules::emergency_declaration_refusal(Some(before), &next, &ctx.actor.email, policy)
    {
        return Err(r.into());
    }
    vouch(ctx, policy, Some(before), next)
}

/// Where the policy requires `new` or `edit` signed (SPEC section 9): records, and signs,
/// that the actor wrote the content of `next` (filed it when `before` is `None`, edited it
/// otherwise). Only content that changed gets a new record; refused, before anything is
/// written, without a usable key.
pub(super) fn vouch(
    ctx: &Context,
    policy: &Policy,
    before: Option<&ChangeRequest>,
    mut next: ChangeRequest,
) -> Result<ChangeRequest> {
    let action = if before.is_none() { "new" } else { "edit" };
    let digest = next.material_digest();
    if !policy.requires_signature(action) || before.is_some_and(|b| b.material_digest() == digest) {
        return Ok(next);
    }
    next.content_signature = Some(crate::model::ContentRecord {
        action: action.to_owned(),
        by: ctx.actor.email.clone(),
        at: ctx.now,
        digest,
        signature: None,
    });
    sign(ctx, policy, next, action)
}

/// Signs the record `transition` wrote into `next`, where the policy requires it (SPEC
/// section 9): refused, before anything is written, without a key or with a key the
/// allowed signers do not list for the actor.
pub(super) fn sign_record(
    ctx: &Context,
    policy: &Policy,
    next: ChangeRequest,
    transition: &Transition,
) -> Result<ChangeRequest> {
    let action = transition.action.as_str();
    // Content records are written and signed by `vouch`, only when content changed.
    let wanted = policy.requires_signature(action) || ctx.sign_unrequired;
    if matches!(action, "new" | "edit") {
        return Ok(next);
    }
    if let Some(attester) = &ctx.attester
        && ctx.record_signer.is_none()
        && matches!(action, "approve" | "reject")
        && let Some(a) = next.approvals.last()
    {
        match policy.server_may_attest(&a.role, &next) {
            Ok(_) => return attest(ctx, attester, policy, next, action),
            Err(why) if wanted => {
                return Err(Error::Refused(crate::error::Refusal::new(
                    crate::signing::SIGNATURE,
                    format!(
                        "the policy requires {action} to be signed and the server may not attest it ({why}): sign it yourself, with a passkey or your SSH key"
                    ),
                )));
            }
            // Not required, not attestable: recorded as any unsigned decision is.
            Err(_) => {}
        }
    }
    if !wanted {
        return Ok(next);
    }
    sign(ctx, policy, next, action)
}

/// Signs the decision `action` last wrote into `next` with the server's key in the
/// actor's stead, marked as attested and naming how the actor was authenticated (SPEC
/// 12.1): refused unless the policy lets the server attest this role at this risk level,
/// and the allowed signers list the server's key under its principal. Judged afterwards
/// by [`crate::rules::record_verdict`], as every reader judges it.
fn attest(
    ctx: &Context,
    attester: &crate::context::Attester,
    policy: &Policy,
    mut next: ChangeRequest,
    action: &str,
) -> Result<ChangeRequest> {
    let refuse =
        |why: String| Error::Refused(crate::error::Refusal::new(crate::signing::SIGNATURE, why));
    let signers = policy.signers().ok_or_else(|| {
        refuse("the policy has no signing section, so the server cannot attest decisions".into())
    })?;
    let role = next
        .approvals
        .last()
        .map(|a| a.role.clone())
        .ok_or_else(|| Error::Internal(format!("no {action} record to attest")))?;
    let principal = policy
        .server_may_attest(&role, &next)
        .map_err(|why| {
            refuse(format!(
                "{why}; sign the decision yourself (a passkey or your SSH key)"
            ))
        })?
        .signer
        .clone();
    if let Some(a) = next.approvals.last_mut() {
        a.attested_by = Some(principal.clone());
        a.attested_via = Some(attester.via.clone());
    }
    let record = crate::signing::new_record(&next, action)
        .ok_or_else(|| Error::Internal(format!("no {action} record to attest")))?;
    let signature = crate::signing::sign_record(
        signers,
        attester.signer.as_ref(),
        &principal,
        &record.statement,
    )?;
    crate::signing::set_signature(&mut next, action, signature);
    let record = crate::signing::new_record(&next, action)
        .ok_or_else(|| Error::Internal(format!("no {action} record to attest")))?;
    let v = crate::rules::record_verdict(&next, &record, policy, signers, record.statement.at);
    if let Some(why) = v.problem(&ctx.actor.email) {
        return Err(refuse(format!(
            "the attestation just made does not count: {why}"
        )));
    }
    Ok(next)
}

/// Signs the record of `action` last written into `next`.
pub(super) fn sign(
    ctx: &Context,
    policy: &Policy,
    mut next: ChangeRequest,
    action: &str,
) -> Result<ChangeRequest> {
    let signer = ctx
        .record_signer
        .as_deref()
        .ok_or_else(|| Error::NoSigningKey(action.to_owned()))?;
    let signers = policy
        .signers()
        .ok_or_else(|| Error::Internal("the allowed signers were not read".into()))?;
    if action == "close"
        && let Some(imp) = &mut next.implementation
    {
        imp.closed_by = Some(ctx.actor.email.clone());
    }
    let record = crate::signing::new_record(&next, action)
        .ok_or_else(|| Error::Internal(format!("no {action} record to sign")))?;
    let signature =
        crate::signing::sign_record(signers, signer, &ctx.actor.email, &record.statement)?;
    crate::signing::set_signature(&mut next, action, signature);
    Ok(next)
}

/// What every state-changing command holds while it works: the lock, and what it read
/// under the lock.
pub(super) struct Session {
    pub(super) _lock: lock::StoreLock,
    pub(super) policy: Arc<Policy>,
    pub(super) head: Option<Oid>,
}

/// The commit message of a transition (SPEC section 6).
pub fn commit_message(
    id: &ChangeId,
    change: &ChangeRequest,
    t: &Transition,
    identity: &Identity,
    created: bool,
) -> String {
    let mut subject = format!("{id}: {}", t.action);
    if let Some(role) = &t.role {
        subject.push_str(&format!(" ({role})"));
    }
    if let Some(old) = &t.extra.renumbered_from {
        subject.push_str(&format!(" (was {old})"));
    }
    if created && let Some(title) = &change.title {
        let title: String = title
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        subject.push_str(&format!(": {title}"));
    }
    let mut msg = subject;
    msg.push_str("\n\n");
    if !t.notes.is_empty() {
        msg.push_str(&t.notes.join("\n"));
        msg.push_str("\n\n");
    }
    let trailers = Trailers {
        id: Some(id.to_string()),
        action: Some(t.action.to_string()),
        actor: Some(identity.email.clone()),
        role: t.role.clone(),
        from: (!created).then(|| t.from.to_string()),
        to: Some(t.to.to_string()),
        ..t.extra.clone()
    };
    msg.push_str(&trailers.render());
    msg
}
