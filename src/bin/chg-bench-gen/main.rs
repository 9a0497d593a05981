//! Generates a realistic, valid chg store for benchmarks, deterministically from a seed.
//!
//! `cargo run --release --features bench-tools --bin chg-bench-gen -- --changes 10000 --out DIR [--seed S] [--history] [--style hand]`
//!
//! With `--history`, the store is built as the history chg would have made (written straight
//! into one git pack, see `pack`): one commit per transition (new, schedule, approve, reject, implement, close,
//! cancel), authored by whoever acted, at the time they acted, with the SPEC's trailers.
//! Without it, only the final files are written (into a fresh repository, uncommitted).
//!
//! Changes are spread over five years in their month folders, with a realistic mix of
//! models, priorities and statuses, approvals by the default policy's roles, schedules,
//! implementations, reviews and cancellations, all consistent with the default policy so
//! that `chg validate` finds nothing.

mod pack;

// The same allocator as chg itself: rendering YAML allocates a lot.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
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
                signature: None,
                attested_by: None,
                attested_via: None,
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
    let (mut c, request) = requested(i, n, counters, policy, rng);
    let model = c.model();
    let testing = c.testing_required == Some(true);
    let status = draw_status(&c, model, policy, rng);
    c.status = Some(status);
    let start = request + hours(48);
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
                signature: None,
                attested_by: None,
                attested_via: None,
            }];
        }
        Status::Cancelled => {
            c.cancellation = Some(Cancellation {
                by: c.requester.clone().unwrap(),
                at: request + hours(5),
                reason: "Superseded by a later change".into(),
                signature: None,
            });
        }
        Status::Approved | Status::Implementing | Status::Closed => {
            let approve_from = if model == ChangeModel::Emergency {
                start
            } else {
                request
            };
            c.approvals = approvals_for(&c, policy, approve_from, rng);
            if model != ChangeModel::Emergency {
                c.schedule = Some(Schedule {
                    start: start - hours(1),
                    end: start + hours(4),
                    maintenance_window: false,
                });
            }
            if status != Status::Approved {
                let imp = carried_out(&mut c, status, start, testing, policy, rng);
                c.implementation = Some(imp);
            }
        }
    }
    c
}

/// Change `i` of `n` as requested (its content, no status yet) and its request time:
/// spread over 2021..=2025 in order, so ids and dates rise together (`counters` numbers
/// each year's changes).
fn requested(
    i: u64,
    n: u64,
    counters: &mut [u32; 5],
    policy: &Policy,
    rng: &mut Rng,
) -> (ChangeRequest, Timestamp) {
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
    if model == ChangeModel::Standard {
        c.template = Some(TEMPLATE_NAME.into());
        c.template_digest = Some(chg::templates::digest(TEMPLATE.as_bytes()));
    }
    (c, request)
}

/// The status the change has reached: mostly closed, some at each other step, as a
/// store in use has them, and only ones chg could have produced.
fn draw_status(c: &ChangeRequest, model: ChangeModel, policy: &Policy, rng: &mut Rng) -> Status {
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
    let status = if status == Status::Approved && policy.is_preapproved(c) {
        Status::PendingApproval
    } else {
        status
    };
    // An emergency change left implementing would owe its review by now: close it instead.
    if status == Status::Implementing && model == ChangeModel::Emergency {
        Status::Closed
    } else {
        status
    }
}

/// The implementation of a change implementing or closed (started at `start`): for a
/// closed one its outcome and test results, and the review chg writes at close, by
/// whoever closes (set on `c`).
fn carried_out(
    c: &mut ChangeRequest,
    status: Status,
    start: Timestamp,
    testing: bool,
    policy: &Policy,
    rng: &mut Rng,
) -> Implementation {
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
        if policy.review_required(c, outcome) || rng.percent() < 20 {
            c.review = Some(Review {
                by: imp.implementer.clone().unwrap(),
                at: start + hours(2),
                summary: "Went as planned; monitoring stayed green".into(),
            });
        }
    }
    imp
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
    } else if chg::rules::missing_roles(&s, policy).is_empty() && !policy.is_preapproved(&s) {
        Status::Approved
    } else {
        Status::PendingApproval
    };
    s.status = Some(status);
    (s, status)
}

/// What one commit needs that takes time to make: rendered in parallel, written in order.
struct Rendered {
    file: Vec<u8>,
    /// `changes/YYYY/MM/ID.yaml`, split.
    year: String,
    month: String,
    name: String,
    /// The commit object's text after its `parent` line.
    signature_and_message: String,
}

fn render(
    changes: &[ChangeRequest],
    e: &Event,
    policy: &Policy,
    style: Style,
) -> anyhow::Result<Rendered> {
    use std::fmt::Write;
    let c = &changes[e.change];
    let all = steps(c);
    let (when, action, actor, role) = &all[e.step];
    let (state, to) = state_after(c, e.step, policy);
    let from = if e.step == 0 {
        to
    } else {
        state_after(c, e.step - 1, policy).1
    };
    let mut transition =
        chg::workflow::Transition::new(action.parse().map_err(anyhow::Error::msg)?, from, to);
    transition.role = role.clone();
    let name = actor.split('@').next().unwrap_or("someone");
    let identity = chg::Identity {
        name: name.to_owned(),
        email: actor.clone(),
    };
    let id = c.id.as_ref().unwrap();
    let message = chg::store::commit_message(id, &state, &transition, &identity, e.step == 0);
    let path = chg::layout::change_path(id, c.request_date.unwrap());
    let parts: Vec<String> = path
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let [_, year, month, file_name] = &parts[..] else {
        anyhow::bail!("unexpected path {}", path.display());
    };
    let mut signature_and_message = String::with_capacity(message.len() + 160);
    let secs = when.as_second();
    write!(
        signature_and_message,
        "author {name} <{actor}> {secs} +0000\ncommitter {name} <{actor}> {secs} +0000\n\n{message}"
    )?;
    Ok(Rendered {
        file: render_file(&state, style)?.into_bytes(),
        year: year.clone(),
        month: month.clone(),
        name: file_name.clone(),
        signature_and_message,
    })
}

/// Writes the history as one pack (see `pack`): an init commit with the policy, then one
/// commit per transition in time order; points `main` at the last one and checks it out.
fn write_history(
    out: &std::path::Path,
    changes: &[ChangeRequest],
    policy: &Policy,
    policy_text: &str,
    signers: Option<&str>,
    style: Style,
) -> anyhow::Result<()> {
    use pack::{Kind, PackWriter, Written, object_id};

    let (events, last_step) = timeline(changes);
    let mut pack = PackWriter::create(&out.join(".git/objects/pack"))?;
    let mut trees = StoreTrees::create(&mut pack, policy_text, signers)?;
    let start =
        events.first().map_or(Timestamp::UNIX_EPOCH, |e| e.at) - SignedDuration::from_hours(24);
    let mut head = commit_object(
        &mut pack,
        &trees.root,
        None,
        &format!(
            "author Change Manager <cm@example.com> {0} +0000\ncommitter Change Manager <cm@example.com> {0} +0000\n\nchg: init store\n\nChg-Action: init\nChg-Actor: cm@example.com\n",
            start.as_second()
        ),
    )?;

    // The previous version of each change file still to change again, as a delta base.
    let mut previous: HashMap<usize, (Vec<u8>, Written)> = HashMap::new();
    // Rendering (YAML, messages) is most of the work and independent per commit: chunks are
    // rendered in parallel on one thread while this one writes the pack in order.
    const CHUNK: usize = 4096;
    let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Vec<Rendered>>>(2);
    let events_ref = &events;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            use rayon::prelude::*;
            for chunk in events_ref.chunks(CHUNK) {
                let part = chunk
                    .par_iter()
                    .map(|e| render(changes, e, policy, style))
                    .collect();
                if tx.send(part).is_err() {
                    return;
                }
            }
        });
        let mut todo = events.iter();
        for part in rx {
            for (r, e) in part?.into_iter().zip(todo.by_ref()) {
                let base = previous.remove(&e.change);
                let written = pack.blob(&r.file, base.as_ref().map(|(t, w)| (&t[..], *w)))?;
                let blob = object_id(Kind::Blob, &r.file);
                if e.step != last_step[e.change] {
                    previous.insert(e.change, (r.file, written));
                }
                trees.put(&mut pack, &r.year, &r.month, &r.name, blob)?;
                head = commit_object(&mut pack, &trees.root, Some(head), &r.signature_and_message)?;
            }
        }
        Ok(())
    })?;
    pack.finish()?;
    check_out(out, &head)?;
    eprintln!("wrote {} commits", events.len() + 1);
    Ok(())
}

/// Every transition of every change in time order (ties by change, then step), and each
/// change's last step (whose file needs keeping as no delta base).
fn timeline(changes: &[ChangeRequest]) -> (Vec<Event>, Vec<usize>) {
    let mut events = Vec::new();
    let mut last_step = vec![0; changes.len()];
    for (i, c) in changes.iter().enumerate() {
        for (k, s) in steps(c).iter().enumerate() {
            events.push(Event {
                at: s.0,
                change: i,
                step: k,
            });
            last_step[i] = k;
        }
    }
    events.sort_by_key(|e| (e.at, e.change, e.step));
    (events, last_step)
}

/// Writes a commit of `root` on `parent` (`rest` is its text after the `parent` line).
fn commit_object(
    pack: &mut pack::PackWriter,
    root: &pack::Tree,
    parent: Option<pack::Oid>,
    rest: &str,
) -> std::io::Result<pack::Oid> {
    use pack::{Kind, object_id};
    let mut text = format!("tree {}\n", pack::hex(&root.oid));
    if let Some(p) = parent {
        text.push_str(&format!("parent {}\n", pack::hex(&p)));
    }
    text.push_str(rest);
    let oid = object_id(Kind::Commit, text.as_bytes());
    pack.whole(Kind::Commit, oid, text.as_bytes()).map(|_| oid)
}

/// The store's trees as the history grows: the root, `changes/` and its year and month
/// folders (each rewritten as a file in it changes).
struct StoreTrees {
    root: pack::Tree,
    changes_dir: pack::Tree,
    years: HashMap<String, pack::Tree>,
    months: HashMap<(String, String), pack::Tree>,
}

impl StoreTrees {
    /// The trees of the init commit: the policy (with its signers, if any, and the
    /// template catalogue) and an empty `changes/` (a `.gitkeep`).
    fn create(
        pack: &mut pack::PackWriter,
        policy_text: &str,
        signers: Option<&str>,
    ) -> anyhow::Result<StoreTrees> {
        use pack::{Kind, Tree, object_id};
        let policy_blob = object_id(Kind::Blob, policy_text.as_bytes());
        pack.whole(Kind::Blob, policy_blob, policy_text.as_bytes())?;
        let empty = object_id(Kind::Blob, b"");
        pack.whole(Kind::Blob, empty, b"")?;
        let template_blob = object_id(Kind::Blob, TEMPLATE.as_bytes());
        pack.whole(Kind::Blob, template_blob, TEMPLATE.as_bytes())?;
        let templates_dir = Tree::create(
            pack,
            &[(&format!("{TEMPLATE_NAME}.yaml"), false, template_blob)],
        )?;
        let policy_dir = match signers {
            Some(text) => {
                let blob = object_id(Kind::Blob, text.as_bytes());
                pack.whole(Kind::Blob, blob, text.as_bytes())?;
                Tree::create(
                    pack,
                    &[
                        ("allowed_signers", false, blob),
                        ("policy.yaml", false, policy_blob),
                        ("templates", true, templates_dir.oid),
                    ],
                )?
            }
            None => Tree::create(
                pack,
                &[
                    ("policy.yaml", false, policy_blob),
                    ("templates", true, templates_dir.oid),
                ],
            )?,
        };
        let changes_dir = Tree::create(pack, &[(".gitkeep", false, empty)])?;
        let root = Tree::create(
            pack,
            &[
                ("changes", true, changes_dir.oid),
                ("policy", true, policy_dir.oid),
            ],
        )?;
        Ok(StoreTrees {
            root,
            changes_dir,
            years: HashMap::new(),
            months: HashMap::new(),
        })
    }

    /// Puts `blob` at `changes/<year>/<month>/<name>`, rewriting the trees above it.
    fn put(
        &mut self,
        pack: &mut pack::PackWriter,
        year: &str,
        month: &str,
        name: &str,
        blob: pack::Oid,
    ) -> std::io::Result<()> {
        let key = (year.to_owned(), month.to_owned());
        let month_oid = match self.months.get_mut(&key) {
            Some(t) => t.set(pack, name, false, blob)?,
            None => {
                let t = pack::Tree::create(pack, &[(name, false, blob)])?;
                self.months.entry(key).or_insert(t).oid
            }
        };
        let year_oid = match self.years.get_mut(year) {
            Some(t) => t.set(pack, month, true, month_oid)?,
            None => {
                let t = pack::Tree::create(pack, &[(month, true, month_oid)])?;
                self.years.entry(year.to_owned()).or_insert(t).oid
            }
        };
        let changes_oid = self.changes_dir.set(pack, year, true, year_oid)?;
        self.root.set(pack, "changes", true, changes_oid)?;
        Ok(())
    }
}

/// Points `main` at `head` and checks it out, in the store's own repository whatever
/// GIT_DIR the caller had.
fn check_out(out: &std::path::Path, head: &pack::Oid) -> anyhow::Result<()> {
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(out)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .status()?;
        anyhow::ensure!(status.success(), "git {} failed", args.join(" "));
        Ok(())
    };
    git(&["update-ref", "refs/heads/main", &pack::hex(head)])?;
    // Parallel checkout: writing 100,000 files one by one takes longer than the pack.
    git(&["-c", "checkout.workers=0", "reset", "--hard", "-q"])?;
    Ok(())
}

/// Generates a realistic, valid chg store for benchmarks, deterministically from a seed.
#[derive(clap::Parser)]
#[command(name = "chg-bench-gen")]
struct Args {
    /// How many change requests.
    #[arg(long, default_value_t = 1000)]
    changes: u64,
    /// A new (or empty) directory for the store.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The same seed makes the same store, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Commit the whole history (one commit per transition), not just the final files.
    #[arg(long)]
    history: bool,
    /// How the files are written: `chg` (as chg writes them) or `hand` (as people write
    /// YAML by hand: a comment, flow lists `[a, b]`, `|-` blocks, quoted titles), which
    /// chg's fast reader does not take.
    #[arg(long, value_enum, default_value_t = Style::Chg)]
    style: Style,
    /// Turn signed approvals on (SPEC section 9) and sign every approval and rejection
    /// with a generated ed25519 key per person (keys derived from the seed; the allowed
    /// signers go in policy/allowed_signers).
    #[arg(long)]
    sign: bool,
}

/// How change files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Style {
    /// As chg writes them.
    Chg,
    /// As people write YAML by hand.
    Hand,
}

/// A change file as chg renders it, rewritten the way people write YAML by hand, with the
/// same values: a comment on top, lists of plain values in flow style, one-line texts of
/// the plans as `|-` blocks (which keep no final newline, so digests are unchanged) and
/// double-quoted titles.
fn hand_style(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str("# Filed by hand; chg keeps this layout.\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        // `key:` followed by `- plain` items one level deeper: a flow list.
        if let Some(key) = line.trim_end().strip_suffix(':')
            && !key.trim_start().starts_with('-')
        {
            let item_indent = indent + 2;
            let mut items = Vec::new();
            let mut j = i + 1;
            while let Some(next) = lines.get(j) {
                let prefix = " ".repeat(item_indent) + "- ";
                match next.strip_prefix(&prefix) {
                    Some(v)
                        if !v.contains(": ") && !v.contains(['[', ']', ',', '#', '\'', '"']) =>
                    {
                        items.push(v)
                    }
                    _ => break,
                }
                j += 1;
            }
            if !items.is_empty()
                && lines
                    .get(j)
                    .is_none_or(|n| !n.starts_with(&(" ".repeat(item_indent) + "  ")))
            {
                out.push_str(&format!("{key}: [{}]\n", items.join(", ")));
                i = j;
                continue;
            }
        }
        let block = ["implementation_plan: ", "rollback_plan: ", "test_plan: "]
            .iter()
            .find_map(|k| line.strip_prefix(k).map(|v| (k, v)));
        match block {
            Some((k, v)) if !v.starts_with(['|', '>', '"', '\'']) => {
                out.push_str(&format!("{}|-\n  {v}\n", k));
            }
            _ => match line.strip_prefix("title: ") {
                Some(v) if !v.contains(['"', '\\']) && !v.starts_with(['|', '>', '\'']) => {
                    out.push_str(&format!("title: \"{v}\"\n"));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            },
        }
        i += 1;
    }
    out
}

/// Renders a change file in `style`.
fn render_file(c: &ChangeRequest, style: Style) -> anyhow::Result<String> {
    let text = chg::edit::render_new(c)?;
    Ok(match style {
        Style::Chg => text,
        Style::Hand => hand_style(&text),
    })
}

/// One ed25519 key per role member, derived from the seed.
fn member_keys(policy: &Policy, seed: u64) -> HashMap<String, ssh_key::PrivateKey> {
    use sha2::Digest;
    let mut out = HashMap::new();
    for m in policy.roles.values().flatten() {
        let mut h = sha2::Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(m.as_bytes());
        let bytes: [u8; 32] = h.finalize().into();
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&bytes);
        let mut key = ssh_key::PrivateKey::from(pair);
        key.set_comment(m.as_str());
        out.insert(m.clone(), key);
    }
    out
}

/// Signs each approval and rejection of `c` with its approver's key.
fn sign_approvals(
    c: &mut ChangeRequest,
    keys: &HashMap<String, ssh_key::PrivateKey>,
) -> anyhow::Result<()> {
    let statements: Vec<(usize, String)> = chg::signing::records(c)
        .into_iter()
        .filter_map(|r| r.approval.map(|i| (i, r.statement.text())))
        .collect();
    for (i, text) in statements {
        let key = &keys[&c.approvals[i].by];
        let sig = key.sign(
            chg::signing::NAMESPACE,
            ssh_key::HashAlg::Sha512,
            text.as_bytes(),
        )?;
        c.approvals[i].signature = Some(sig.to_pem(ssh_key::LineEnding::LF)?);
    }
    Ok(())
}

/// The catalogue's one template, which every standard change is filed from.
const TEMPLATE_NAME: &str = "routine-deploy";
const TEMPLATE: &str =
    "# Routine deploys: the plan and the rollback are fixed; the rest is the requester's.
implementation_plan: Deploy to staging, verify, then production in two waves
rollback_plan: Redeploy the previous release; restore the configuration snapshot
variable: [title, description, business_justification, change_type, priority, urgency,
           risk_level, affected_systems, impact_scope, testing_required, test_plan,
           test_environment]
";

/// The policy text and, with `--sign`, the allowed signers file.
fn policy_files(
    keys: &HashMap<String, ssh_key::PrivateKey>,
) -> anyhow::Result<(String, Option<String>)> {
    if keys.is_empty() {
        return Ok((DEFAULT_POLICY.to_owned(), None));
    }
    let mut lines: Vec<String> = Vec::new();
    for (who, key) in keys {
        lines.push(format!("{who} {}", key.public_key().to_openssh()?));
    }
    lines.sort();
    Ok((
        format!(
            "{DEFAULT_POLICY}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [approve, reject]\n"
        ),
        Some(lines.join("\n") + "\n"),
    ))
}

fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chg-bench-gen: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let (n, out) = (args.changes, &args.out);
    // The history replaces `main` and checks it out: never do that to someone's files.
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!("{} is not empty; give a new directory", out.display());
    }
    std::fs::create_dir_all(out)?;
    let status = std::process::Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(out)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .status()?;
    anyhow::ensure!(status.success(), "git init failed");
    let mut policy = Policy::default_policy();
    let template_path = format!("{}/{TEMPLATE_NAME}.yaml", chg::templates::TEMPLATES_DIR);
    let problems =
        policy.attach_templates(vec![(template_path.clone(), TEMPLATE.as_bytes().to_vec())]);
    anyhow::ensure!(
        problems.is_empty(),
        "the generator's template: {problems:?}"
    );
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut counters = [0u32; 5];
    let mut changes: Vec<ChangeRequest> = (0..n)
        .map(|i| generate(i, n, &mut counters, &policy, &mut rng))
        .collect();
    let keys = if args.sign {
        member_keys(&policy, args.seed)
    } else {
        HashMap::new()
    };
    if args.sign {
        for c in &mut changes {
            sign_approvals(c, &keys)?;
        }
    }
    let (policy_text, signers) = policy_files(&keys)?;
    if args.history {
        write_history(
            out,
            &changes,
            &policy,
            &policy_text,
            signers.as_deref(),
            args.style,
        )?;
    } else {
        std::fs::create_dir_all(out.join(chg::templates::TEMPLATES_DIR))?;
        std::fs::write(out.join("policy/policy.yaml"), &policy_text)?;
        std::fs::write(out.join(&template_path), TEMPLATE)?;
        if let Some(s) = &signers {
            std::fs::write(out.join("policy/allowed_signers"), s)?;
        }
        for c in &changes {
            let rel = chg::layout::change_path(c.id.as_ref().unwrap(), c.request_date.unwrap());
            let path = out.join(rel);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, render_file(c, args.style)?)?;
        }
    }
    eprintln!("wrote {n} changes to {}", out.display());
    Ok(())
}
