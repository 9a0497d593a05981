//! Generates a realistic, valid chg store for benchmarks, deterministically from a seed.
//!
//! `cargo run --release --features bench-tools --bin chg-bench-gen -- --changes 10000 --out DIR`
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
                    if policy.review_required(&c, outcome) || rng.percent() < 20 {
                        c.review = Some(Review {
                            by: imp.implementer.clone().unwrap(),
                            at: start + hours(20),
                            summary: "Went as planned; monitoring stayed green".into(),
                        });
                    }
                } else if model == ChangeModel::Emergency {
                    // Still implementing: keep it inside its deadlines from any `now`.
                    c.review = Some(Review {
                        by: "ops0@example.com".into(),
                        at: start + hours(20),
                        summary: "Post-mortem held".into(),
                    });
                }
                c.implementation = Some(imp);
            }
        }
    }
    c
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut out, mut seed) = (1000u64, None::<PathBuf>, 1u64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--changes" => n = args.next().unwrap_or_default().parse()?,
            "--out" => out = args.next().map(PathBuf::from),
            "--seed" => seed = args.next().unwrap_or_default().parse()?,
            _ => anyhow::bail!("usage: chg-bench-gen --changes N --out DIR [--seed S]"),
        }
    }
    let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required"))?;
    if out.join("policy/policy.yaml").exists() {
        anyhow::bail!("{} already holds a store", out.display());
    }
    std::fs::create_dir_all(out.join("policy"))?;
    std::fs::write(out.join("policy/policy.yaml"), DEFAULT_POLICY)?;
    let policy = Policy::default_policy();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut counters = [0u32; 5];
    for i in 0..n {
        let c = generate(i, n, &mut counters, &policy, &mut rng);
        let rel = chg::validate::expected_path(c.id.as_ref().unwrap(), c.request_date.unwrap());
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, chg::edit::render_new(&c)?)?;
    }
    let status = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&out)
        .status()?;
    anyhow::ensure!(status.success(), "git init failed");
    eprintln!("wrote {n} changes to {}", out.display());
    Ok(())
}
