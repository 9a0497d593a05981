//! The statement: what a record's signature covers, every signable record of a change, and
//! how a step's signature is put on its record or carried to the same record elsewhere.

use jiff::Timestamp;

use crate::model::{ChangeRequest, format_timestamp};

/// What a signature covers: the change (by what renumbering keeps: who requested it and
/// when), the action, the role and decision where there is one, the actor, the time and
/// the material digest. No commit and no id: a `chg sync` replay or a `chg renumber` keeps
/// the signature valid, while another change, content, action or person does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The change's requester.
    pub requested_by: String,
    /// The change's request time.
    pub requested_at: Option<Timestamp>,
    /// `approve`, `reject`, `withdraw`, `implement`, `close`, `cancel`.
    pub action: String,
    /// The role decided for (approve, reject, withdraw).
    pub role: Option<String>,
    /// `approved`/`rejected`/`withdrawn`, or the outcome of a close.
    pub decision: Option<String>,
    /// Who acted.
    pub actor: String,
    /// When.
    pub at: Timestamp,
    /// The material digest of the content acted on.
    pub digest: String,
    /// Lines only some actions have, after all the others (a deployment's commit,
    /// environment and run): empty for every other action, whose statements therefore stay
    /// byte for byte what they were before deployments existed.
    pub extra: Vec<(&'static str, String)>,
}

impl Statement {
    /// The signed bytes: one `key: value` per line, in this order, after a version line.
    /// Values are written as they are (newlines cannot occur: identities refuse them).
    pub fn text(&self) -> String {
        let mut s = String::from("chg signed record v1\n");
        let mut line = |k: &str, v: &str| {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(&v.replace(['\n', '\r'], " "));
            s.push('\n');
        };
        line("change-requested-by", &self.requested_by);
        line(
            "change-requested-at",
            &self.requested_at.map(format_timestamp).unwrap_or_default(),
        );
        line("action", &self.action);
        line("role", self.role.as_deref().unwrap_or(""));
        line("decision", self.decision.as_deref().unwrap_or(""));
        line("actor", &self.actor);
        line("at", &format_timestamp(self.at));
        line("digest", &self.digest);
        for (k, v) in &self.extra {
            line(k, v);
        }
        s
    }

    fn base(
        change: &ChangeRequest,
        action: &str,
        actor: &str,
        at: Timestamp,
        digest: String,
    ) -> Statement {
        Statement {
            requested_by: change.requester.clone().unwrap_or_default(),
            requested_at: change.request_date,
            action: action.to_owned(),
            role: None,
            decision: None,
            actor: actor.to_owned(),
            at,
            digest,
            extra: Vec::new(),
        }
    }
}

/// One signable record of a change: where it is, who made it, its statement and signature.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The field path of the signature (`approvals[0].signature`).
    pub path: String,
    /// The action.
    pub action: &'static str,
    /// Who acted.
    pub actor: String,
    /// What was signed.
    pub statement: Statement,
    /// The armored signature, if any.
    pub signature: Option<&'a str>,
    /// For approvals: the index.
    pub approval: Option<usize>,
    /// For a decision the server attested: the principal of the server's key (the
    /// signature is judged against that principal's keys, never the actor's).
    pub attested_by: Option<&'a str>,
}

impl Record<'_> {
    /// The principal whose keys must have made the signature: the actor's, or for an
    /// attested decision the server's.
    pub fn signer(&self) -> &str {
        self.attested_by.unwrap_or(&self.actor)
    }
}

/// Every signable record the change holds, with the statement each must be signed over.
pub fn records(change: &ChangeRequest) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    // The content's digest, computed once and only if a record needs it.
    let now = std::cell::OnceCell::new();
    let digest = || now.get_or_init(|| change.material_digest()).clone();
    for (i, a) in change.approvals.iter().enumerate() {
        let action = match a.decision {
            crate::model::Decision::Approved => "approve",
            crate::model::Decision::Rejected => "reject",
            crate::model::Decision::Withdrawn => "withdraw",
        };
        // A decision is signed over the content it was made on, which its digest names.
        let d = a.digest.clone().unwrap_or_else(digest);
        let mut st = Statement::base(change, action, &a.by, a.at, d);
        st.role = Some(a.role.clone());
        st.decision = Some(a.decision.as_str().to_owned());
        // The server signs what it vouches for: that it authenticated the actor, and how.
        // Only a record marked attested carries these lines, so every other statement is
        // byte for byte what it was.
        if a.attested_by.is_some() || a.attested_via.is_some() {
            st.extra = vec![
                ("attested-by", a.attested_by.clone().unwrap_or_default()),
                ("attested-via", a.attested_via.clone().unwrap_or_default()),
            ];
        }
        out.push(Record {
            path: format!("approvals[{i}].signature"),
            action,
            actor: a.by.clone(),
            statement: st,
            signature: a.signature.as_deref(),
            approval: Some(i),
            attested_by: a.attested_by.as_deref(),
        });
    }
    if let Some(c) = &change.content_signature {
        let action = if c.action == "new" { "new" } else { "edit" };
        out.push(Record {
            path: "content_signature.signature".into(),
            action,
            actor: c.by.clone(),
            statement: Statement::base(change, action, &c.by, c.at, c.digest.clone()),
            signature: c.signature.as_deref(),
            approval: None,
            attested_by: None,
        });
    }
    if let Some(imp) = &change.implementation {
        if let (Some(by), Some(at)) = (&imp.implementer, imp.started_at) {
            out.push(Record {
                path: "implementation.signature".into(),
                action: "implement",
                actor: by.clone(),
                statement: Statement::base(change, "implement", by, at, digest()),
                signature: imp.signature.as_deref(),
                approval: None,
                attested_by: None,
            });
        }
        if let (Some(by), Some(at)) = (&imp.closed_by, imp.completed_at) {
            let mut st = Statement::base(change, "close", by, at, digest());
            st.decision = imp.outcome.map(|o| o.as_str().to_owned());
            out.push(Record {
                path: "implementation.close_signature".into(),
                action: "close",
                actor: by.clone(),
                statement: st,
                signature: imp.close_signature.as_deref(),
                approval: None,
                attested_by: None,
            });
        }
    }
    if let Some(c) = &change.cancellation {
        out.push(Record {
            path: "cancellation.signature".into(),
            action: "cancel",
            actor: c.by.clone(),
            statement: Statement::base(change, "cancel", &c.by, c.at, digest()),
            signature: c.signature.as_deref(),
            approval: None,
            attested_by: None,
        });
    }
    for (i, d) in change.deployments.iter().enumerate() {
        let mut st = Statement::base(change, "deploy", &d.by, d.at, digest());
        // What was deployed where: a signature cannot be moved to another commit, another
        // environment or another run's evidence.
        st.extra = vec![
            ("deployed-commit", d.commit.clone()),
            ("environment", d.environment.clone()),
            ("run", d.run.clone().unwrap_or_default()),
        ];
        out.push(Record {
            path: format!("deployments[{i}].signature"),
            action: "deploy",
            actor: d.by.clone(),
            statement: st,
            signature: d.signature.as_deref(),
            approval: None,
            attested_by: None,
        });
    }
    out
}

/// The record `action` wrote last into `change` (the one a step just added).
pub fn new_record<'c>(change: &'c ChangeRequest, action: &str) -> Option<Record<'c>> {
    records(change).into_iter().rfind(|r| r.action == action)
}

/// Puts `signature` on the record `action` wrote last into `change`.
pub fn set_signature(change: &mut ChangeRequest, action: &str, signature: String) {
    match action {
        "approve" | "reject" | "withdraw" => {
            if let Some(a) = change.approvals.last_mut() {
                a.signature = Some(signature);
            }
        }
        "implement" => {
            if let Some(imp) = &mut change.implementation {
                imp.signature = Some(signature);
            }
        }
        "close" => {
            if let Some(imp) = &mut change.implementation {
                imp.close_signature = Some(signature);
            }
        }
        "cancel" => {
            if let Some(c) = &mut change.cancellation {
                c.signature = Some(signature);
            }
        }
        "new" | "edit" => {
            if let Some(c) = &mut change.content_signature {
                c.signature = Some(signature);
            }
        }
        "deploy" => {
            if let Some(d) = change.deployments.last_mut() {
                d.signature = Some(signature);
            }
        }
        _ => {}
    }
}

/// Carries the signature of the record that `action` added in `from` (a local step) to
/// the same record in `to` (that step replayed onto another version by `chg sync`). The
/// statement names no commit and no other record, so the signature stays valid wherever the
/// record's own content is the same; where it is not, it does not verify and is reported.
pub fn carry_signature(from: &ChangeRequest, to: &mut ChangeRequest, action: &str) {
    match action {
        "approve" | "reject" | "withdraw" => {
            if let (Some(f), Some(t)) = (from.approvals.last(), to.approvals.last_mut())
                && f.by == t.by
                && f.role == t.role
                && f.at == t.at
            {
                t.signature.clone_from(&f.signature);
                // Who attested it is part of what was signed: carried with the signature
                // and judged with it.
                t.attested_by.clone_from(&f.attested_by);
                t.attested_via.clone_from(&f.attested_via);
            }
        }
        "implement" | "close" => {
            if let (Some(f), Some(t)) = (&from.implementation, &mut to.implementation) {
                if action == "implement" {
                    t.signature.clone_from(&f.signature);
                } else if f.close_signature.is_some() {
                    t.closed_by.clone_from(&f.closed_by);
                    t.close_signature.clone_from(&f.close_signature);
                }
            }
        }
        "cancel" => {
            if let (Some(f), Some(t)) = (&from.cancellation, &mut to.cancellation) {
                t.signature.clone_from(&f.signature);
            }
        }
        // The content record is written beside the step (where the policy requires it),
        // not by the step itself: it is carried whole and judged on its own.
        "new" | "edit" => to.content_signature.clone_from(&from.content_signature),
        "deploy" => {
            if let (Some(f), Some(t)) = (from.deployments.last(), to.deployments.last_mut())
                && f.commit == t.commit
                && f.environment == t.environment
                && f.at == t.at
            {
                t.signature.clone_from(&f.signature);
            }
        }
        _ => {}
    }
}
