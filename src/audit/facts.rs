//! What the audit knows of one commit: its trees, author, time, trailers and findings.

use super::*;

/// What one commit says about itself: who, when, its trailers, its trees.
pub(super) struct Facts<'r> {
    pub(super) oid: Oid,
    pub(super) tree: Tree<'r>,
    /// The parents' trees, first parent first.
    pub(super) parents: Vec<Tree<'r>>,
    pub(super) email: String,
    pub(super) author: String,
    pub(super) when: Timestamp,
    pub(super) subject: String,
    pub(super) trailers: Trailers,
    pub(super) merge: bool,
    /// A chg commit (chg trailers, one parent).
    pub(super) by_chg: bool,
    /// The first parent and its commit time: where this commit entered its line.
    pub(super) parent: Option<(Oid, Timestamp)>,
}

impl<'r> Facts<'r> {
    pub(super) fn read(commit: &Commit<'r>) -> Result<Facts<'r>> {
        let sig = commit.author();
        let message = String::from_utf8_lossy(commit.message_raw_bytes()).into_owned();
        let trailers = Trailers::parse(&message);
        let parents = commit
            .parents()
            .map(|p| p.tree())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let merge = parents.len() > 1;
        let parent = commit.parents().next().map(|p| {
            (
                p.id(),
                Timestamp::from_second(p.committer().when().seconds()).unwrap_or_default(),
            )
        });
        Ok(Facts {
            parent,
            oid: commit.id(),
            tree: commit.tree()?,
            email: sig.email().unwrap_or("").to_owned(),
            author: sig.name().unwrap_or("").to_owned(),
            when: Timestamp::from_second(sig.when().seconds()).unwrap_or_default(),
            subject: message.lines().next().unwrap_or("").to_owned(),
            by_chg: trailers.action.is_some() && !merge,
            trailers,
            merge,
            parents,
        })
    }

    /// Whether a parent other than the first already had `blob` at `path`: a merge brought it.
    pub(super) fn brought(&self, path: &str, blob: Option<Oid>) -> Result<bool> {
        for t in self.parents.iter().skip(1) {
            if crate::git::blob_at(t, path)? == blob {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A log entry for a change this commit concerns without a chg step of its own (a
    /// merge bringing it, a policy commit naming it).
    pub(super) fn plain_entry(
        &self,
        seq: u64,
        id: String,
        path: String,
        action: &str,
        problems: Vec<Problem>,
    ) -> Entry {
        Entry {
            seq,
            commit: self.oid.to_string(),
            when: self.when,
            author: self.author.clone(),
            email: self.email.clone(),
            id,
            path,
            action: action.into(),
            role: None,
            from: None,
            to: None,
            subject: self.subject.clone(),
            by_chg: false,
            problems,
            renumbered_from: None,
            material: false,
            sod: Vec::new(),
            implementer: None,
            submitted: None,
        }
    }

    pub(super) fn finding(
        &self,
        level: Level,
        rule: &str,
        change: Option<String>,
        path: Option<String>,
        message: String,
    ) -> AuditFinding {
        AuditFinding {
            level,
            rule: rule.to_owned(),
            change,
            path,
            commit: self.oid.to_string(),
            author: self.email.clone(),
            when: self.when,
            message,
        }
    }

    /// A note for a change of the policy, and an exception when the new one is not usable.
    pub(super) fn policy_findings(
        &self,
        policy_path: &str,
        files: &[String],
        valid: bool,
        signing: Option<&crate::policy::SigningPolicy>,
    ) -> Vec<AuditFinding> {
        // Which records carry proof of who made them from here on: an auditor reads the
        // periods signing was in force from these notes.
        let mut signed = match signing.map(|s| s.required_for.as_slice()) {
            Some(actions) if !actions.is_empty() => {
                format!("; signatures required for {}", actions.join(", "))
            }
            _ => "; it requires no signatures, so records from here on name people without proving who made them".to_owned(),
        };
        if let Some(a) = signing.and_then(|s| s.server_attests.as_ref()) {
            signed.push_str(&format!(
                "; chg serve may sign decisions of {} on changes of risk up to {} in the person's stead (attested by {})",
                a.roles.join(", "),
                a.max_risk,
                a.signer
            ));
        }
        let how = match (&self.trailers.action, self.by_chg) {
            (Some(a), true) => format!("by chg {a}"),
            _ => "by a commit without chg trailers".to_owned(),
        };
        let what = match files {
            [one] if one == policy_path => String::new(),
            [] => String::new(),
            many => format!(" ({})", many.join(", ")),
        };
        let mut out = vec![self.finding(
            Level::Note,
            "policy-change",
            None,
            Some(match files {
                [one] => one.clone(),
                _ => policy_path.to_owned(),
            }),
            format!("the policy was changed {how}{what}; later commits are judged by it{signed}"),
        )];
        if !valid {
            out.push(self.finding(
                Level::Exception,
                "policy-invalid",
                None,
                Some(policy_path.to_owned()),
                "the policy this commit wrote does not pass chg's checks; later commits are judged by the default policy".into(),
            ));
        }
        out
    }

    /// A chg commit changes exactly the one change file its trailers name (`init` and
    /// policy commits excepted).
    pub(super) fn trailer_findings(&self, items: &[Item], same_policy: bool) -> Vec<AuditFinding> {
        let mut out = Vec::new();
        if !self.by_chg {
            return out;
        }
        let id = self.trailers.id.clone().unwrap_or_default();
        let a = self.trailers.action.clone().unwrap_or_default();
        if items.len() > 1 {
            out.push(self.finding(
                Level::Exception,
                "multiple-files",
                Some(id.clone()),
                None,
                format!(
                    "the commit says it is chg `{a}` of {id} but changes {} change files; a chg transition changes exactly one",
                    items.len()
                ),
            ));
        }
        let touches_its_file = items.iter().any(|i| id_of_path(&i.path) == id);
        if !touches_its_file && a != "init" && same_policy {
            out.push(self.finding(
                Level::Exception,
                "trailer-mismatch",
                (!id.is_empty()).then_some(id.clone()),
                None,
                format!(
                    "the commit says it is chg `{a}` of {id} but does not change that change's file"
                ),
            ));
        }
        out
    }
}
