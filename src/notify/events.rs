//! Events: what the verified history since the last run and the clock call for.
//!
//! Transitions come from the audit index ([`crate::audit::feed`]): every commit that changed
//! a change's status, whoever made it and wherever (chg in any clone, `chg sync`, the API,
//! a hand edit). A transition is an event only if the policy of its commit configured
//! notifications: adopting notifications does not replay the store's past. Clock events
//! come from [`crate::query`]: approvals past their timeout, with the approvers awaited as
//! [`crate::workflow::approvable_roles`] says.

use std::collections::{HashMap, HashSet};

use git2::{Oid, Repository};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::EventKind;
use crate::audit::Entry;
use crate::error::Result;
use crate::model::{ChangeRequest, Status};
use crate::policy::Policy;
use crate::rules::Provenance;
use crate::store::Store;

/// The version of the event schema (README, "Notifications").
pub const SCHEMA: &str = "chg.event/1";

/// One event, as every channel reports it and webhooks send it (`data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable: the same event always has the same id, in every clone and run (receivers
    /// de-duplicate on it; it is the webhook's `webhook-id`).
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The change id.
    pub change: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// Its priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Who filed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The status the transition led to (the status now, for clock events).
    pub status: String,
    /// The status before the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Who made the transition (the commit's author); empty for clock events.
    #[serde(default)]
    pub actor: String,
    /// When it happened (the commit's time; the deadline or reminder time for clock events).
    pub at: Timestamp,
    /// The commit it reports (HEAD when the clock event was found).
    pub commit: String,
    /// The number of chg transitions in the history up to and including it.
    pub seq: u64,
    /// The roles whose approval is still needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<String>,
    /// Overdue: when the approval fell due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    /// Overdue: which notice to the approvers this is (1 = the first), of `notices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<u32>,
    /// Overdue: how many notices the approvers get before escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notices: Option<u32>,
    /// Overdue: sent to the `escalate_to` roles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
    /// The audit's exceptions on the commit (a transition that does not verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    /// The change's page (`base_url/changes/ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Event {
    /// One line for people: `CHG-2025-001 awaits approval by change-manager: Title`.
    pub fn headline(&self) -> String {
        let t = crate::text::one_line(&self.title);
        match self.kind {
            EventKind::AwaitingApproval => format!(
                "{} awaits approval by {}: {t}",
                self.change,
                if self.awaiting.is_empty() {
                    "nobody now".to_owned()
                } else {
                    self.awaiting.join(", ")
                }
            ),
            EventKind::Decided => {
                format!("{} was {} by {}: {t}", self.change, self.status, self.actor)
            }
            EventKind::Implemented => format!(
                "{} is being implemented by {}: {t}",
                self.change, self.actor
            ),
            EventKind::Closed => format!("{} was closed by {}: {t}", self.change, self.actor),
            EventKind::Cancelled => format!("{} was cancelled by {}: {t}", self.change, self.actor),
            EventKind::Overdue if self.escalated => format!(
                "ESCALATED: approval of {} is overdue since {} (waiting for {}): {t}",
                self.change,
                self.due
                    .map(crate::model::format_timestamp)
                    .unwrap_or_default(),
                self.awaiting.join(", ")
            ),
            EventKind::Overdue => format!(
                "Approval of {} is overdue since {} (reminder {} of {}; waiting for {}): {t}",
                self.change,
                self.due
                    .map(crate::model::format_timestamp)
                    .unwrap_or_default(),
                self.notice.unwrap_or(1),
                self.notices.unwrap_or(1),
                self.awaiting.join(", ")
            ),
        }
    }
}

/// The events a run found, each with its people (email recipients), and the commit read.
#[derive(Debug, Default)]
pub struct Derived {
    /// HEAD, when the history has a commit.
    pub head: Option<String>,
    /// Events, oldest first, with the people they concern.
    pub events: Vec<(Event, Vec<String>)>,
}

fn kind_of(status: Status) -> Option<EventKind> {
    Some(match status {
        Status::PendingApproval => EventKind::AwaitingApproval,
        Status::Approved | Status::Rejected => EventKind::Decided,
        Status::Implementing => EventKind::Implemented,
        Status::Closed => EventKind::Closed,
        Status::Cancelled => EventKind::Cancelled,
        _ => return None,
    })
}

fn decode_at(repo: &Repository, commit: Oid, path: &str) -> Option<ChangeRequest> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let blob = crate::git::blob_at(&tree, path).ok()??;
    let bytes = repo.find_blob(blob).ok()?;
    let d = crate::decode::decode_bytes(path, bytes.content());
    d.parsed.then_some(d.change)
}

/// The change's status before and after `e`'s commit: from the trailers for chg's steps,
/// from the files for any other commit.
fn statuses(
    repo: &Repository,
    e: &Entry,
    before: Option<&Entry>,
) -> Option<(Option<Status>, Status)> {
    if e.by_chg {
        let to = e.to.as_deref()?.parse::<Status>().ok()?;
        let from = e.from.as_deref().and_then(|f| f.parse::<Status>().ok());
        return Some((from, to));
    }
    let oid = Oid::from_str(&e.commit).ok()?;
    let after = decode_at(repo, oid, &e.path)?.status();
    let parent = repo.find_commit(oid).ok()?.parent_id(0).ok();
    let from = match (parent, before) {
        (Some(p), Some(b)) => decode_at(repo, p, &b.path).map(|c| c.status()),
        (Some(p), None) => decode_at(repo, p, &e.path).map(|c| c.status()),
        _ => None,
    };
    Some((from, after))
}

/// Whether the policy in the tree of `commit` configures notifications, memoised by the
/// policy file's blob.
struct PolicyMemo<'r> {
    repo: &'r Repository,
    path: String,
    seen: HashMap<Option<Oid>, bool>,
}

impl PolicyMemo<'_> {
    fn notifies(&mut self, commit: &str) -> bool {
        let Some(tree) = Oid::from_str(commit)
            .ok()
            .and_then(|o| self.repo.find_commit(o).ok())
            .and_then(|c| c.tree().ok())
        else {
            return false;
        };
        let blob = crate::git::blob_at(&tree, &self.path).ok().flatten();
        if let Some(v) = self.seen.get(&blob) {
            return *v;
        }
        let v = blob
            .and_then(|b| self.repo.find_blob(b).ok())
            .and_then(|b| String::from_utf8(b.content().to_vec()).ok())
            .and_then(|text| Policy::parse(&self.path, &text).ok())
            .is_some_and(|(p, _)| p.notifications.is_some());
        self.seen.insert(blob, v);
        v
    }
}

/// The people who may approve `change` now for a role it still needs.
fn awaited(change: &ChangeRequest, policy: &Policy, prov: &Provenance) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for role in crate::rules::missing_roles(change, policy) {
        for person in policy.roles.get(&role).into_iter().flatten() {
            if !out.contains(person)
                && !crate::workflow::approvable_roles(change, policy, person, prov).is_empty()
            {
                out.push(person.clone());
            }
        }
    }
    out
}

fn members(policy: &Policy, roles: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        for m in policy.roles.get(r).into_iter().flatten() {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    out
}

/// The change's page under `base`.
pub fn link(base: Option<&str>, id: &str) -> Option<String> {
    base.map(|b| format!("{}/changes/{id}", b.trim_end_matches('/')))
}

/// Derives the events since `cursor` (every transition, on a first run) and the clock's;
/// transitions dated before `oldest` are left out (a lost outbox never floods anyone).
pub fn derive(
    store: &Store,
    policy: &Policy,
    now: Timestamp,
    cursor: Option<&str>,
    base: Option<&str>,
    oldest: Option<Timestamp>,
) -> Result<Derived> {
    let (tip, logs) = crate::audit::feed::all_histories(store, now)?;
    let Some(tip) = tip else {
        return Ok(Derived::default());
    };
    let repo = store.repo();
    let head = Oid::from_str(&tip)?;
    let fresh = commits_since(repo, head, cursor)?;
    let mut all: Vec<&Entry> = logs.values().flatten().collect();
    all.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
    let (transitions, seq_of) = transition_numbers(&all);
    let mut memo = PolicyMemo {
        repo,
        path: format!("{}{}", store.prefix(), crate::policy::POLICY_PATH),
        seen: HashMap::new(),
    };
    let sources = Sources {
        repo,
        head,
        policy,
        logs: &logs,
        base,
    };
    let mut out = Derived {
        head: Some(tip.clone()),
        events: Vec::new(),
    };
    for e in &all {
        if fresh.as_ref().is_some_and(|f| !f.contains(&e.commit))
            || oldest.is_some_and(|o| e.when < o)
        {
            continue;
        }
        let seq = seq_of
            .get(&(e.commit.as_str(), e.id.as_str()))
            .copied()
            .unwrap_or(transitions);
        if let Some(event) = sources.transition(&mut memo, e, seq) {
            out.events.push(event);
        }
    }
    // The clock: approvals past their timeout, as `chg list --overdue` finds them.
    if let Some(n) = &policy.notifications {
        let q = crate::query::Query {
            overdue: true,
            ..Default::default()
        };
        let page = q.run(store, policy, now)?;
        for row in page.rows {
            let Some(due) = row.overdue_since else {
                continue;
            };
            let clock = Clock {
                now,
                tip: &tip,
                seq: transitions,
            };
            sources.overdue(n, &clock, row.item.change(), due, &mut out.events);
        }
    }
    Ok(out)
}

/// The commits since the last run: those HEAD reaches and the cursor does not. A cursor
/// gone from the repository (a rewrite, then gc) means every commit (`None`); what was
/// delivered before is known by its event ids.
fn commits_since(
    repo: &Repository,
    head: Oid,
    cursor: Option<&str>,
) -> Result<Option<HashSet<String>>> {
    Ok(
        match cursor
            .and_then(|c| Oid::from_str(c).ok())
            .filter(|c| repo.find_commit(*c).is_ok())
        {
            Some(c) => Some(
                crate::audit::walk(repo, head, Some(c))?
                    .into_iter()
                    .map(|o| o.to_string())
                    .collect(),
            ),
            None => None,
        },
    )
}

/// Numbers the entries (in history order) by how many chg transitions came up to each:
/// an event's `seq`. Returns the total too, the `seq` of clock events.
fn transition_numbers<'e>(all: &[&'e Entry]) -> (u64, HashMap<(&'e str, &'e str), u64>) {
    let mut transitions = 0u64;
    let mut seq_of: HashMap<(&str, &str), u64> = HashMap::new();
    for e in all {
        if e.by_chg {
            transitions += 1;
        }
        seq_of.insert((e.commit.as_str(), e.id.as_str()), transitions);
    }
    (transitions, seq_of)
}

/// What an event is derived from: the repository at HEAD, the policy in force and every
/// change's history (so a change's own steps are read, not a scan of everything).
struct Sources<'a> {
    repo: &'a Repository,
    head: Oid,
    policy: &'a Policy,
    logs: &'a crate::audit::feed::Histories,
    base: Option<&'a str>,
}

/// The clock's side of an overdue event: the time now, the tip it is dated at and the
/// `seq` it carries (every transition so far).
struct Clock<'a> {
    now: Timestamp,
    tip: &'a str,
    seq: u64,
}

impl Sources<'_> {
    /// The change as it stands at HEAD (the awaited approvers are those of now).
    fn head_change(&self, id: &str) -> Option<ChangeRequest> {
        let last = self.logs.get(id)?.last()?;
        decode_at(self.repo, self.head, &last.path)
    }

    /// How the change's approvals were recorded, from its own history.
    fn provenance(&self, id: &str) -> Provenance {
        crate::standing::Standing {
            entries: self.logs.get(id).cloned().unwrap_or_default(),
            ..Default::default()
        }
        .provenance(id)
    }

    /// The event (and its recipients) of one history entry, if it is a transition that
    /// notifies under its commit's policy.
    fn transition(
        &self,
        memo: &mut PolicyMemo<'_>,
        e: &Entry,
        seq: u64,
    ) -> Option<(Event, Vec<String>)> {
        let repo = self.repo;
        // The change's step before this one (for a hand-made commit, whose status before
        // is read from the file): from its own history, not a scan of everything.
        let before = if e.by_chg {
            None
        } else {
            self.logs
                .get(&e.id)
                .and_then(|list| list.iter().rev().find(|b| b.seq < e.seq))
        };
        let (from, to) = statuses(repo, e, before)?;
        if from == Some(to) {
            return None;
        }
        let kind = kind_of(to)?;
        if !memo.notifies(&e.commit) {
            return None;
        }
        let at_commit = Oid::from_str(&e.commit)
            .ok()
            .and_then(|o| decode_at(repo, o, &e.path))?;
        let now_change = self.head_change(&e.id);
        let recipients = match kind {
            EventKind::AwaitingApproval => now_change
                .as_ref()
                .filter(|c| c.status() == Status::PendingApproval)
                .map(|c| awaited(c, self.policy, &self.provenance(&e.id)))
                .unwrap_or_default(),
            // The requester as verified history knows them (the author of the change's
            // first version), not a `requester:` a hand edit may have rewritten to any
            // address (found by an attacker session).
            _ => self
                .provenance(&e.id)
                .creator
                .or_else(|| at_commit.requester.clone())
                .into_iter()
                .collect(),
        };
        let awaiting = if kind == EventKind::AwaitingApproval {
            crate::rules::missing_roles(&at_commit, self.policy)
        } else {
            Vec::new()
        };
        let exceptions: Vec<String> = e
            .problems
            .iter()
            .filter(|p| p.level == crate::audit::Level::Exception)
            .map(|p| p.rule.clone())
            .collect();
        Some((
            Event {
                id: format!(
                    "{}.{}.{}",
                    e.id,
                    kind.as_str(),
                    &e.commit[..e.commit.len().min(12)]
                ),
                kind,
                change: e.id.clone(),
                title: at_commit.title.clone().unwrap_or_default(),
                priority: at_commit.priority.map(|p| p.as_str().to_owned()),
                requester: at_commit.requester.clone(),
                status: to.as_str().to_owned(),
                from: from.map(|f| f.as_str().to_owned()),
                actor: e.email.clone(),
                at: e.when,
                commit: e.commit.clone(),
                seq,
                awaiting,
                due: None,
                notice: None,
                notices: None,
                escalated: false,
                exceptions,
                url: link(self.base, &e.id),
            },
            recipients,
        ))
    }

    /// The clock's events for one approval past its timeout (`due`): the notice the
    /// reminders schedule has reached, and the escalation once they are spent.
    fn overdue(
        &self,
        n: &crate::policy::notifications::Notifications,
        clock: &Clock<'_>,
        c: &ChangeRequest,
        due: Timestamp,
        events: &mut Vec<(Event, Vec<String>)>,
    ) {
        let policy = self.policy;
        let id = c.id_text();
        let prov = self.provenance(&id);
        let (every, at_most) = match n.reminders {
            Some(r) => (Some(r.every.to_signed()), r.at_most),
            None => (None, 1),
        };
        let late = clock.now.duration_since(due);
        let steps = match every {
            Some(e) if e > SignedDuration::ZERO => (late.as_secs() / e.as_secs().max(1)) as u32,
            _ => 0,
        };
        let notice = steps.min(at_most - 1);
        let at_of = |k: u32| {
            every
                .and_then(|e| {
                    due.checked_add(e * i32::try_from(k).unwrap_or(i32::MAX))
                        .ok()
                })
                .unwrap_or(due)
        };
        let base_event = Event {
            id: String::new(),
            kind: EventKind::Overdue,
            change: id.clone(),
            title: c.title.clone().unwrap_or_default(),
            priority: c.priority.map(|p| p.as_str().to_owned()),
            requester: c.requester.clone(),
            status: c.status().as_str().to_owned(),
            from: None,
            actor: String::new(),
            at: due,
            commit: clock.tip.to_owned(),
            seq: clock.seq,
            awaiting: crate::rules::missing_roles(c, policy),
            due: Some(due),
            notice: None,
            notices: Some(at_most),
            escalated: false,
            exceptions: Vec::new(),
            url: link(self.base, &id),
        };
        let key = due.as_second();
        events.push((
            Event {
                id: format!("{id}.overdue.{key}.{}", notice + 1),
                at: at_of(notice),
                notice: Some(notice + 1),
                ..base_event.clone()
            },
            awaited(c, policy, &prov),
        ));
        let escalate = match every {
            Some(_) => steps >= at_most,
            None => true,
        };
        if escalate && !n.escalate_to.is_empty() {
            events.push((
                Event {
                    id: format!("{id}.escalated.{key}"),
                    at: at_of(at_most),
                    escalated: true,
                    ..base_event
                },
                members(policy, &n.escalate_to),
            ));
        }
    }
}
