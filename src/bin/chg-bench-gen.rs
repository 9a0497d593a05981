//! Generates a realistic, valid chg store for benchmarks, deterministically from a seed.
//!
//! `cargo run --release --features bench-tools --bin chg-bench-gen -- --changes 10000 --out DIR [--history]`
//!
//! With `--history`, the store is built by `git fast-import` as the history chg would have
//! made: one commit per transition (new, schedule, approve, reject, implement, close,
//! cancel), authored by whoever acted, at the time they acted, with the SPEC's trailers.
//! Without it, only the final files are written (into a fresh repository, uncommitted).
//!
//! Changes are spread over five years in their month folders, with a realistic mix of
//! models, priorities and statuses, approvals by the default policy's roles, schedules,
//! implementations, reviews and cancellations, all consistent with the default policy so
//! that `chg validate` finds nothing.

use std::path::PathBuf;

use chg::model::{
    Approval, Cancellation, ChangeId, ChangeModel, ChangeRequest, Decision, Implementation,
    Outcome, Priority, Review, RiskLevel, Schedule, Status, Urgency,
};
use chg::policy::{DEFAULT_POLICY, Policy};
use jiff::{SignedDuration, Timestamp};

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn percent(&mut self) -> u64 {
        self.below(100)
    }
}

const VERBS: &[&str] = &[
    "Upgrade", "Rotate", "Migrate", "Patch", "Enable", "Disable", "Resize", "Harden", "Replace",
    "Deploy",
];
const THINGS: &[&str] = &[
    "TLS certificates",
    "the Postgres cluster",
    "Kubernetes nodes",
    "the WAF ruleset",
    "SSO for the admin UI",
    "log retention",
    "the payment gateway client",
    "DNS records",
    "the CI runners",
    "backup encryption",
];
const SYSTEMS: &[&str] = &[
    "api-gateway",
    "auth-service",
    "admin-ui",
    "billing",
    "postgres-primary",
    "postgres-replica",
    "k8s-prod",
    "edge-proxy",
    "ci",
    "dns",
    "waf",
    "object-storage",
];

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn approvals_for(
    change: &ChangeRequest,
    policy: &Policy,
    start: Timestamp,
    rng: &mut Rng,
) -> Vec<Approval> {
    policy
        .required_roles(change)
        .iter()
        .enumerate()
        .map(|(i, role)| {
            let members = &policy.roles[role];
            Approval {
                by: rng.pick(members).clone(),
                role: role.clone(),
                decision: Decision::Approved,
                at: start + hours(1 + i as i64),
                comments: (rng.percent() < 40).then(|| "Reviewed the plan and rollback".to_owned()),
                conditions: Vec::new(),
                digest: Some(change.material_digest()),
            }
        })
        .collect()
}

fn generate(
    i: u64,
    n: u64,
    counters: &mut [u32; 5],
    policy: &Policy,
    rng: &mut Rng,
) -> ChangeRequest {
    // Spread over 2021..=2025 in order, so ids and dates rise together.
    let year_index = (i * 5 / n.max(1)) as usize;
    let year = 2021 + year_index as i16;
    counters[year_index] += 1;
    // Requests from 10 January to 10 December keep schedules clear of year-end freezes.
    let day = 9 + rng.below(334) as i64;
    let request: Timestamp = format!("{year}-01-01T00:00:00Z")
        .parse::<Timestamp>()
        .unwrap()
        + SignedDuration::from_hours(day * 24 + rng.below(10) as i64 + 7);
    let model = match rng.percent() {
        0..=4 => ChangeModel::Emergency,
        5..=14 => ChangeModel::Standard,
        _ => ChangeModel::Normal,
    };
    let change_type = rng.pick(&policy.change_types).clone();
    let testing = policy.testing_required_for(&change_type) || rng.percent() < 50;
    let mut c = ChangeRequest {
        id: Some(ChangeId::new(&policy.id_prefix, year, counters[year_index]).unwrap()),
        title: Some(format!("{} {}", rng.pick(VERBS), rng.pick(THINGS))),
        description: Some(format!(
            "Change {i}: apply the new configuration across the fleet in two waves,\nwatching error rates between waves."
        )),
        business_justification: Some(
            "Keeps the service within its security and availability objectives".into(),
        ),
        requester: Some(format!("dev{}@example.com", rng.below(40))),
        request_date: Some(request),
        change_type: Some(change_type),
        change_model: Some(model),
        priority: Some(*rng.pick(Priority::ALL)),
        urgency: Some(if model == ChangeModel::Emergency {
            Urgency::Emergency
        } else {
            *rng.pick(&Urgency::ALL[1..])
        }),
        risk_level: Some(*rng.pick(RiskLevel::ALL)),
        affected_systems: (0..1 + rng.below(3))
            .map(|_| rng.pick(SYSTEMS).to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        impact_scope: Some("customers of the affected systems".into()),
        implementation_plan: Some("Deploy to staging, verify, then production in two waves".into()),
        rollback_plan: Some(
            "Redeploy the previous release; restore the configuration snapshot".into(),
        ),
        testing_required: Some(testing),
        test_plan: testing
            .then(|| "Run the integration suite in staging and a smoke test in production".into()),
        test_environment: testing.then(|| "staging".into()),
        ..Default::default()
    };
    let status = match rng.percent() {
        0..=69 => Status::Closed,
        70..=79 => Status::PendingApproval,
        80..=84 => Status::Approved,
        85..=87 => Status::Implementing,
        88..=92 => Status::Cancelled,
        93..=95 if model != ChangeModel::Standard => Status::Rejected,
        _ => Status::Draft,
    };
    // Pre-approved standard changes go from pending_approval straight to implementing.
    let status = if status == Status::Approved && policy.is_preapproved(&c) {
        Status::PendingApproval
    } else {
        status
    };
    // An emergency change left implementing would owe its review by now: close it instead.
    let status = if status == Status::Implementing && model == ChangeModel::Emergency {
        Status::Closed
    } else {
        status
    };
    c.status = Some(status);
    let start = request + hours(48);
    let needs_schedule = model != ChangeModel::Emergency;
    match status {
        Status::Draft => {}
        Status::PendingApproval => {
            let mut a = approvals_for(&c, policy, request, rng);
            a.truncate(a.len().saturating_sub(1));
            c.approvals = a;
        }
        Status::Rejected => {
            let role = policy.required_roles(&c)[0].clone();
            c.approvals = vec![Approval {
                by: policy.roles[&role][0].clone(),
                role,
                decision: Decision::Rejected,
                at: request + hours(3),
                comments: Some("Rollback plan is not tested".into()),
                conditions: Vec::new(),
                digest: Some(c.material_digest()),
            }];
        }
        Status::Cancelled => {
            c.cancellation = Some(Cancellation {
                by: c.requester.clone().unwrap(),
                at: request + hours(5),
                reason: "Superseded by a later change".into(),
            });
        }
        Status::Approved | Status::Implementing | Status::Closed => {
            let approve_from = if model == ChangeModel::Emergency {
                start
            } else {
                request
            };
            c.approvals = approvals_for(&c, policy, approve_from, rng);
            if needs_schedule {
                c.schedule = Some(Schedule {
                    start: start - hours(1),
                    end: start + hours(4),
                    maintenance_window: false,
                });
            }
            if status != Status::Approved {
                let mut imp = Implementation {
                    implementer: Some(format!("ops{}@example.com", rng.below(10))),
                    started_at: Some(start),
                    ..Default::default()
                };
                if status == Status::Closed {
                    let outcome = match rng.percent() {
                        0..=3 => Outcome::Failed,
                        4..=6 => Outcome::RolledBack,
                        _ => Outcome::Successful,
                    };
                    imp.completed_at = Some(start + hours(2));
                    imp.outcome = Some(outcome);
                    imp.test_results = testing.then(|| "All checks passed".into());
                    // chg writes the review at close, by whoever closes.
                    if policy.review_required(&c, outcome) || rng.percent() < 20 {
                        c.review = Some(Review {
                            by: imp.implementer.clone().unwrap(),
                            at: start + hours(2),
                            summary: "Went as planned; monitoring stayed green".into(),
                        });
                    }
                }
                c.implementation = Some(imp);
            }
        }
    }
    c
}

/// One transition of one change, for the history.
struct Event {
    at: Timestamp,
    change: usize,
    step: usize,
}

/// The transitions that led to `c`, as (time, action, actor, role).
fn steps(c: &ChangeRequest) -> Vec<(Timestamp, &'static str, String, Option<String>)> {
    let requester = c.requester.clone().unwrap();
    let request = c.request_date.unwrap();
    let mut out = vec![(request, "new", requester.clone(), None)];
    if c.schedule.is_some() {
        out.push((
            request + SignedDuration::from_mins(30),
            "schedule",
            requester.clone(),
            None,
        ));
    }
    for a in &c.approvals {
        let action = if a.decision == Decision::Approved {
            "approve"
        } else {
            "reject"
        };
        out.push((a.at, action, a.by.clone(), Some(a.role.clone())));
    }
    if let Some(imp) = &c.implementation {
        let who = imp.implementer.clone().unwrap();
        out.push((imp.started_at.unwrap(), "implement", who.clone(), None));
        if let Some(done) = imp.completed_at {
            out.push((done, "close", who, None));
        }
    }
    if let Some(x) = &c.cancellation {
        out.push((x.at, "cancel", x.by.clone(), None));
    }
    out.sort_by_key(|s| s.0);
    out
}

/// The change as it was right after its first `upto` + 1 transitions.
fn state_after(c: &ChangeRequest, upto: usize, policy: &Policy) -> (ChangeRequest, Status) {
    let all = steps(c);
    let done = &all[..=upto];
    let mut s = c.clone();
    let has = |action: &str| done.iter().any(|d| d.1 == action);
    let cutoff = done.last().unwrap().0;
    s.approvals.retain(|a| a.at <= cutoff);
    if !has("schedule") {
        s.schedule = None;
    }
    if !has("implement") {
        s.implementation = None;
    } else if !has("close") {
        let imp = s.implementation.as_mut().unwrap();
        imp.completed_at = None;
        imp.outcome = None;
        imp.test_results = None;
    }
    if !has("close") {
        s.review = None;
    }
    if !has("cancel") {
        s.cancellation = None;
    }
    let status = if c.status == Some(Status::Draft) {
        Status::Draft
    } else if has("cancel") {
        Status::Cancelled
    } else if has("reject") {
        Status::Rejected
    } else if has("close") {
        Status::Closed
    } else if has("implement") {
        Status::Implementing
    } else if chg::workflow::missing_roles(&s, policy).is_empty() && !policy.is_preapproved(&s) {
        Status::Approved
    } else {
        Status::PendingApproval
    };
    s.status = Some(status);
    (s, status)
}

fn write_history(
    out: &std::path::Path,
    changes: &[ChangeRequest],
    policy: &Policy,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut events = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        for (k, s) in steps(c).iter().enumerate() {
            events.push(Event {
                at: s.0,
                change: i,
                step: k,
            });
        }
    }
    events.sort_by_key(|e| (e.at, e.change, e.step));
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(out)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
    let data = |w: &mut std::io::BufWriter<std::process::ChildStdin>,
                bytes: &[u8]|
     -> std::io::Result<()> {
        writeln!(w, "data {}", bytes.len())?;
        w.write_all(bytes)?;
        writeln!(w)
    };
    let start =
        events.first().map_or(Timestamp::UNIX_EPOCH, |e| e.at) - SignedDuration::from_hours(24);
    writeln!(w, "commit refs/heads/main\nmark :1")?;
    writeln!(
        w,
        "author Change Manager <cm@example.com> {} +0000",
        start.as_second()
    )?;
    writeln!(
        w,
        "committer Change Manager <cm@example.com> {} +0000",
        start.as_second()
    )?;
    data(
        &mut w,
        b"chg: init store\n\nChg-Action: init\nChg-Actor: cm@example.com\n",
    )?;
    writeln!(w, "M 100644 inline policy/policy.yaml")?;
    data(&mut w, DEFAULT_POLICY.as_bytes())?;
    writeln!(w, "M 100644 inline changes/.gitkeep")?;
    data(&mut w, b"")?;
    // Each commit's record depends only on its change and step, so records are rendered in
    // parallel, chunk by chunk, on one thread while this one feeds git fast-import: the
    // import (single-threaded) never waits for YAML to be written.
    let record = |n: usize, e: &Event| -> anyhow::Result<Vec<u8>> {
        let c = &changes[e.change];
        let all = steps(c);
        let (when, action, actor, role) = &all[e.step];
        let (state, to) = state_after(c, e.step, policy);
        let from = if e.step == 0 {
            to
        } else {
            state_after(c, e.step - 1, policy).1
        };
        let transition = chg::workflow::Transition {
            action,
            from,
            to,
            role: role.clone(),
            notes: Vec::new(),
            trailers: Vec::new(),
        };
        let name = actor.split('@').next().unwrap_or("someone");
        let identity = chg::store::Identity {
            name: name.to_owned(),
            email: actor.clone(),
        };
        let id = c.id.as_ref().unwrap();
        let message = chg::store::commit_message(id, &state, &transition, &identity, e.step == 0);
        let path = chg::validate::expected_path(id, c.request_date.unwrap());
        let file = chg::edit::render_new(&state)?;
        let mut w = Vec::with_capacity(message.len() + file.len() + 256);
        writeln!(w, "commit refs/heads/main\nmark :{}", n + 2)?;
        writeln!(w, "author {name} <{actor}> {} +0000", when.as_second())?;
        writeln!(w, "committer {name} <{actor}> {} +0000", when.as_second())?;
        writeln!(w, "data {}\n{message}", message.len())?;
        writeln!(w, "from :{}", n + 1)?;
        writeln!(w, "M 100644 inline {}", path.display())?;
        writeln!(w, "data {}\n{file}", file.len())?;
        Ok(w)
    };
    const CHUNK: usize = 4096;
    let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Vec<u8>>>(4);
    let (events_ref, record) = (&events, &record);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            use rayon::prelude::*;
            for (ci, chunk) in events_ref.chunks(CHUNK).enumerate() {
                let parts: anyhow::Result<Vec<Vec<u8>>> = chunk
                    .par_iter()
                    .enumerate()
                    .map(|(j, e)| record(ci * CHUNK + j, e))
                    .collect();
                if tx.send(parts.map(|p| p.concat())).is_err() {
                    return;
                }
            }
            drop(tx);
        });
        for part in rx {
            w.write_all(&part?)?;
        }
        Ok(())
    })?;
    writeln!(w, "done")?;
    w.flush()?;
    drop(w);
    anyhow::ensure!(child.wait()?.success(), "git fast-import failed");
    let status = std::process::Command::new("git")
        .args(["reset", "--hard", "-q"])
        .current_dir(out)
        .status()?;
    anyhow::ensure!(status.success(), "git reset failed");
    eprintln!("wrote {} commits", events.len() + 1);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut out, mut seed, mut history) = (1000u64, None::<PathBuf>, 1u64, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--changes" => n = args.next().unwrap_or_default().parse()?,
            "--out" => out = args.next().map(PathBuf::from),
            "--seed" => seed = args.next().unwrap_or_default().parse()?,
            "--history" => history = true,
            _ => anyhow::bail!("usage: chg-bench-gen --changes N --out DIR [--seed S] [--history]"),
        }
    }
    let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required"))?;
    if out.join("policy/policy.yaml").exists() {
        anyhow::bail!("{} already holds a store", out.display());
    }
    std::fs::create_dir_all(&out)?;
    let status = std::process::Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(&out)
        .status()?;
    anyhow::ensure!(status.success(), "git init failed");
    let policy = Policy::default_policy();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut counters = [0u32; 5];
    let changes: Vec<ChangeRequest> = (0..n)
        .map(|i| generate(i, n, &mut counters, &policy, &mut rng))
        .collect();
    if history {
        write_history(&out, &changes, &policy)?;
    } else {
        std::fs::create_dir_all(out.join("policy"))?;
        std::fs::write(out.join("policy/policy.yaml"), DEFAULT_POLICY)?;
        for c in &changes {
            let rel = chg::validate::expected_path(c.id.as_ref().unwrap(), c.request_date.unwrap());
            let path = out.join(rel);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, chg::edit::render_new(c)?)?;
        }
    }
    eprintln!("wrote {n} changes to {}", out.display());
    Ok(())
}
