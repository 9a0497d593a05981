//! End-to-end tests: the real `chg` binary on temporary git repositories, with the identity
//! and the clock pinned so that outputs are repeatable.

mod architecture;
mod attacks;
mod audit;
mod browser;
mod deploy;
mod evidence;
mod feel;
mod governance;
mod hostile;
mod library;
mod notify;
mod outputs;
mod passkey;
mod plan;
mod query;
mod risk;
mod serve;
mod signing;
mod small;
mod sod;
mod summary;
mod sync;
mod templates;
mod validate;
mod withdraw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2025-03-10T10:00:00Z";

/// A temporary store and the people who act in it.
struct Store {
    dir: tempfile::TempDir,
    now: String,
}

/// HEAD, the index (`git ls-files -s`), `git status`, and every work-tree file.
type Snapshot = (String, String, String, Vec<(PathBuf, Vec<u8>)>);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// Succeeded; its output's one line (an id, a path), trimmed.
    fn ok_line(self) -> String {
        self.ok().stdout.trim().to_owned()
    }
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run_output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn base_env(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // Outputs for people use the local zone: the same on every machine here.
        .env("TZ", "UTC")
        .env("CHG_LOCK_TIMEOUT", "20");
}

impl Store {
    fn new() -> Store {
        let s = Store::bare();
        s.git(&["init", "-q", "-b", "main"]);
        s.chg("alice@example.com", &["init"]).ok();
        s
    }

    /// An empty folder, not yet a repository.
    fn bare() -> Store {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        Store {
            dir,
            now: NOW.into(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn cmd(&self, program: &Path, who: &str) -> Command {
        let mut cmd = Command::new(program);
        base_env(&mut cmd, &self.dir.path().join("home"));
        let name = who.split('@').next().unwrap();
        cmd.current_dir(self.root())
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", who)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", who);
        // No time given: the real clock, as a server beside the CLI reads it.
        if !self.now.is_empty() {
            cmd.env("CHG_NOW", &self.now)
                // Plain git commits made by the tests are dated like chg's steps.
                .env("GIT_AUTHOR_DATE", &self.now)
                .env("GIT_COMMITTER_DATE", &self.now);
        }
        cmd
    }

    fn chg(&self, who: &str, args: &[&str]) -> Run {
        let o = self
            .cmd(Path::new(env!("CARGO_BIN_EXE_chg")), who)
            .args(args)
            .output()
            .unwrap();
        run_output(o)
    }

    fn git(&self, args: &[&str]) -> String {
        let o = self
            .cmd(Path::new("git"), "alice@example.com")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `chg schedule ID --start START --end END` as alice.
    fn schedule(&self, id: &str, start: &str, end: &str) -> Run {
        self.chg(
            "alice@example.com",
            &["schedule", id, "--start", start, "--end", end],
        )
    }

    fn at(&mut self, now: &str) -> &mut Self {
        self.now = now.into();
        self
    }

    /// HEAD, the index and the work tree, for "nothing changed" checks.
    fn snapshot(&self) -> Snapshot {
        let mut files = Vec::new();
        let mut stack = vec![self.root()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap() == ".git" {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        (
            self.git(&["rev-parse", "HEAD"]),
            self.git(&["ls-files", "-s"]),
            self.git(&["status", "--porcelain"]),
            files,
        )
    }

    fn file(&self, id: &str) -> PathBuf {
        let year = &id[4..8];
        for m in 1..=12 {
            let p = self.root().join(format!("changes/{year}/{m:02}/{id}.yaml"));
            if p.exists() {
                return p;
            }
        }
        panic!("no file for {id}");
    }

    /// Rewrites the change file of `id` with `f` (by hand, uncommitted).
    fn rewrite(&self, id: &str, f: impl FnOnce(String) -> String) {
        let p = self.file(id);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(text)).unwrap();
    }

    /// Rewrites policy/policy.yaml with `f` and commits it with plain git.
    fn edit_policy(&self, message: &str, f: impl FnOnce(String) -> String) {
        let p = self.root().join("policy/policy.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(text)).unwrap();
        self.git(&["commit", "-qam", message]);
    }

    /// `chg audit export` of 2025 into a new folder; returns the folder.
    fn export_2025(&self) -> PathBuf {
        let out = self.dir.path().join("pack");
        self.chg(
            "alice@example.com",
            &[
                "audit",
                "export",
                "--since",
                "2025-01-01",
                "--until",
                "2026-01-01",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .ok();
        out
    }

    fn read(&self, id: &str) -> String {
        std::fs::read_to_string(self.file(id)).unwrap()
    }

    /// Files a complete change as alice with these extra flags; returns the id.
    fn new_change(&self, extra: &[&str]) -> String {
        let args = [COMPLETE, extra].concat();
        self.chg("alice@example.com", &args).ok_line()
    }
}

/// `chg new` with every required field: a medium-priority certificate rotation.
const COMPLETE: &[&str] = &[
    "new",
    "--title",
    "Rotate TLS certificates",
    "--description",
    "Replace the expiring wildcard certificate",
    "--justification",
    "The certificate expires in 10 days",
    "--type",
    "configuration",
    "--priority",
    "medium",
    "--risk",
    "low",
    "--system",
    "edge-proxy",
    "--plan",
    "Upload the new certificate and reload",
    "--rollback",
    "Reload the previous certificate",
];

/// `chg new` with every required field, low priority, titled `title`.
fn new_args(title: &str) -> Vec<&str> {
    vec![
        "new",
        "--title",
        title,
        "--description",
        "d",
        "--justification",
        "j",
        "--type",
        "feature",
        "--priority",
        "low",
        "--risk",
        "low",
        "--system",
        "api",
        "--plan",
        "p",
        "--rollback",
        "r",
    ]
}

/// The commands a `--help` text lists under "Commands:" (without `help`).
fn listed_commands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| rest.split("Options:").next().unwrap_or(""))
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn assert_unchanged(s: &Store, before: &Snapshot) {
    let after = s.snapshot();
    assert_eq!(before.0, after.0, "HEAD moved");
    assert_eq!(before.1, after.1, "the index changed");
    assert_eq!(before.2, after.2, "git status changed");
    assert!(before.3 == after.3, "the work tree changed");
}

fn trailer_lines(s: &Store) -> Vec<String> {
    s.git(&[
        "log",
        "--reverse",
        "--format=%an|%ae|%(trailers:key=Chg-Action,valueonly,separator=)|%(trailers:key=Chg-Role,valueonly,separator=)|%(trailers:key=Chg-From,valueonly,separator=)|%(trailers:key=Chg-To,valueonly,separator=)",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_normal_change_goes_from_proposal_to_closure_one_commit_per_step() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    assert_eq!(id, "CHG-2025-001");
    assert!(s.file(&id).ends_with("changes/2025/03/CHG-2025-001.yaml"));
    let r = s
        .chg("em@example.com", &["approve", &id, "--comment", "fine"])
        .ok();
    assert!(
        r.stdout
            .contains("waiting for approval by: change-manager\n"),
        "{}",
        r.stdout
    );
    let r = s.chg("cm@example.com", &["approve", &id]).ok();
    assert!(
        r.stdout.contains("pending_approval -> approved"),
        "{}",
        r.stdout
    );
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.at("2025-03-11T10:15:00Z");
    s.chg(
        "bob@example.com",
        &[
            "close",
            &id,
            "--outcome",
            "successful",
            "--test-results",
            "smoke tests green",
        ],
    )
    .ok();

    let lines = trailer_lines(&s);
    assert_eq!(
        lines,
        [
            "alice|alice@example.com|init|||",
            "alice|alice@example.com|new|||pending_approval",
            "em|em@example.com|approve|engineering-manager|pending_approval|pending_approval",
            "cm|cm@example.com|approve|change-manager|pending_approval|approved",
            "alice|alice@example.com|schedule||approved|approved",
            "bob|bob@example.com|implement||approved|implementing",
            "bob|bob@example.com|close||implementing|closed",
        ]
    );
    // Each transition touches exactly its change file.
    let files = s.git(&["log", "--format=", "--name-only", "-6"]);
    assert!(
        files
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l == "changes/2025/03/CHG-2025-001.yaml"),
        "{files}"
    );
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    let text = s.read(&id);
    assert!(text.contains("status: closed"));
    assert!(text.contains("outcome: successful"));
    assert!(text.contains("completed_at: 2025-03-11T10:15:00Z"));
    let msg = s.git(&["log", "-1", "--format=%B", "HEAD~4"]);
    assert!(
        msg.starts_with("CHG-2025-001: approve (engineering-manager)\n"),
        "{msg}"
    );
    assert!(msg.contains("Chg-Id: CHG-2025-001\n"));
    assert!(msg.contains("Chg-Actor: em@example.com\n"));
    s.chg("alice@example.com", &["validate"]).ok();

    let log = s.chg("alice@example.com", &["log", &id, "--json"]).ok();
    let entries: serde_json::Value = serde_json::from_str(&log.stdout).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "new",
            "approve",
            "approve",
            "schedule",
            "implement",
            "close"
        ]
    );
    let table = s.chg("alice@example.com", &["log", &id]).ok();
    assert!(
        table.stdout.contains("pending_approval -> approved"),
        "{}",
        table.stdout
    );
}

#[test]
fn an_emergency_change_is_implemented_first_and_approved_after() {
    let mut s = Store::new();
    let id = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.at("2025-03-10T10:05:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg("sec-lead@example.com", &["approve", &id]).ok();
    s.chg("em@example.com", &["approve", &id]).ok();
    // The policy requires a review for emergency changes.
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .code(1);
    s.chg(
        "bob@example.com",
        &[
            "close",
            &id,
            "--outcome",
            "successful",
            "--review",
            "Post-mortem held; no follow-ups",
        ],
    )
    .ok();
    let text = s.read(&id);
    assert!(text.contains("change_model: emergency"));
    assert!(text.contains("summary: Post-mortem held; no follow-ups"));
    let lines = trailer_lines(&s);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(
        lines[3].contains("approve|security-team-lead|implementing|implementing"),
        "{lines:?}"
    );
    s.chg("alice@example.com", &["validate"]).ok();
}

#[test]
fn refusals_change_nothing() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "alice@example.com",
            vec!["approve", &id],
            "segregation of duties",
        ),
        (
            "mallory@example.com",
            vec!["approve", &id],
            "holds none of the roles",
        ),
        (
            "sec1@example.com",
            vec!["approve", &id, "--role", "change-manager"],
            "not a member",
        ),
        (
            "bob@example.com",
            vec!["implement", &id],
            "not approved yet",
        ),
        (
            "bob@example.com",
            vec!["close", &id, "--outcome", "successful"],
            "only a change being implemented",
        ),
        ("bob@example.com", vec!["submit", &id], "only a draft"),
    ];
    for (who, args, says) in cases {
        let before = s.snapshot();
        let r = s.chg(who, &args).code(1);
        assert!(r.stderr.starts_with("chg: error: "), "{}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert_unchanged(&s, &before);
    }
    // The same role twice, and one person in two roles.
    s.chg("em@example.com", &["approve", &id]).ok();
    let before = s.snapshot();
    let r = s
        .chg(
            "em@example.com",
            &["approve", &id, "--role", "engineering-manager"],
        )
        .code(1);
    assert!(r.stderr.contains("already approved"), "{}", r.stderr);
    assert_unchanged(&s, &before);

    // A person who holds two roles may fill only one of them on one change.
    s.edit_policy("em may also act as change manager", |t| {
        t.replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, em@example.com]",
        )
    });
    let before = s.snapshot();
    let r = s
        .chg(
            "em@example.com",
            &["approve", &id, "--role", "change-manager"],
        )
        .code(1);
    assert!(
        r.stderr.contains("one person fills one role"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);

    // Implementation in a freeze.
    let id2 = s.new_change(&[]);
    s.chg(
        "em@example.com",
        &["approve", &id2, "--role", "engineering-manager"],
    )
    .ok();
    s.chg(
        "cm@example.com",
        &["approve", &id2, "--role", "change-manager"],
    )
    .ok();
    let before = s.snapshot();
    let r = s
        .schedule(&id2, "2025-12-24T10:00:00Z", "2025-12-24T12:00:00Z")
        .code(1);
    assert!(r.stderr.contains("freeze"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    s.schedule(&id2, "2025-12-19T10:00:00Z", "2025-12-22T10:00:00Z")
        .code(1);
    // A schedule made before the freeze was added to the policy is still refused at implement time.
    s.schedule(&id2, "2025-12-18T10:00:00Z", "2025-12-19T10:00:00Z")
        .ok();
    s.at("2025-12-18T11:00:00Z");
    s.edit_policy("earlier freeze", |t| {
        t.replace("start: 2025-12-20T00:00:00Z", "start: 2025-12-18T00:00:00Z")
    });
    let before = s.snapshot();
    let r = s.chg("bob@example.com", &["implement", &id2]).code(1);
    assert!(r.stderr.contains("inside the freeze"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn implement_respects_the_schedule_and_testing() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    let r = s.chg("bob@example.com", &["implement", &id]).code(1);
    assert!(r.stderr.contains("no schedule"), "{}", r.stderr);
    s.schedule(&id, "2025-03-12T09:00:00Z", "2025-03-12T10:00:00Z")
        .ok();
    let r = s.chg("bob@example.com", &["implement", &id]).code(1);
    assert!(r.stderr.contains("outside the schedule"), "{}", r.stderr);
    s.at("2025-03-12T09:10:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
}

#[test]
fn schedule_takes_now_and_relative_times() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.schedule(&id, "now", "+2h").ok();
    let text = s.read(&id);
    assert!(text.contains("start: 2025-03-10T10:00:00Z"), "{text}");
    assert!(text.contains("end: 2025-03-10T12:00:00Z"), "{text}");
    s.schedule(&id, "+1d", "+90m").ok();
    assert!(s.read(&id).contains("end: 2025-03-11T11:30:00Z"));
    s.schedule(&id, "soon", "+1h").code(2);
    // -2h is two hours before now, as every time flag takes it: before the start.
    let r = s.schedule(&id, "now", "-2h").code(2);
    assert!(
        r.stderr
            .starts_with("chg: error: the schedule must end after it starts"),
        "{}",
        r.stderr
    );
    s.schedule(&id, "now", "+1x").code(2);
}

#[test]
fn a_material_edit_after_approval_voids_the_approvals_but_scheduling_does_not() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-12T09:00:00Z", "2025-03-12T10:00:00Z")
        .ok();
    assert!(s.read(&id).contains("status: approved"));
    // Urgency and test environment are not material.
    s.chg("alice@example.com", &["set", &id, "urgency=high"])
        .ok();
    assert!(s.read(&id).contains("status: approved"));
    let r = s
        .chg(
            "alice@example.com",
            &["set", &id, "rollback_plan=Restore from backup"],
        )
        .ok();
    assert!(
        r.stdout.contains("approved -> pending_approval"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("note: Material content changed after approval (rollback_plan)"),
        "{}",
        r.stdout
    );
    let text = s.read(&id);
    assert!(text.contains("status: pending_approval"));
    assert!(!text.contains("approvals:"), "{text}");
    let msg = s.git(&["log", "-1", "--format=%B"]);
    assert!(msg.contains("Chg-Action: edit\n"), "{msg}");
    assert!(msg.contains("approvals voided"), "{msg}");
    assert!(
        msg.contains(
            "Chg-Voided: engineering-manager (em@example.com), change-manager (cm@example.com)"
        ),
        "{msg}"
    );
    // Bad input for set.
    s.chg("alice@example.com", &["set", &id, "status=closed"])
        .code(2);
    s.chg("alice@example.com", &["set", &id, "rollback_paln=x"])
        .code(2);
    s.chg("alice@example.com", &["set", &id, "priority=urgent"])
        .code(2);
}

#[test]
fn hand_written_files_keep_their_comments_and_layout() {
    let s = Store::new();
    let dir = s.root().join("changes/2025/03");
    std::fs::create_dir_all(&dir).unwrap();
    let text = "# Written by hand in an editor.\r\nid: CHG-2025-007\r\ntitle: 'Upgrade Postgres'   # minor version only\r\ndescription: |\r\n  15.4 to 15.6\r\nbusiness_justification: CVE fixes\r\nrequester: alice@example.com\r\nrequest_date: 2025-03-09T08:00:00Z\r\nchange_type: infrastructure\r\nchange_model: normal\r\npriority: low\r\nrisk_level: low\r\naffected_systems: [db-primary, db-replica]\r\nimplementation_plan: pg_upgrade\r\nrollback_plan: restore snapshot\r\ntesting_required: true\r\ntest_plan: upgrade staging first\r\nstatus: pending_approval  # waiting for CAB\r\n";
    std::fs::write(dir.join("CHG-2025-007.yaml"), text).unwrap();
    s.git(&["add", "."]);
    s.git(&["commit", "-qm", "CHG-2025-007 by hand"]);
    s.chg("cm@example.com", &["approve", "CHG-2025-007", "-m", "ok"])
        .ok();
    let after = s.read("CHG-2025-007");
    for kept in [
        "# Written by hand in an editor.\r\n",
        "title: 'Upgrade Postgres'   # minor version only\r\n",
        "affected_systems: [db-primary, db-replica]\r\n",
        "status: approved  # waiting for CAB\r\n",
    ] {
        assert!(after.contains(kept), "lost {kept:?}:\n{after}");
    }
    s.chg("alice@example.com", &["validate"]).ok();
}

#[test]
fn uncommitted_hand_edits_are_never_overwritten() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let path = s.file(&id);
    let edited = s.read(&id).replace("Rotate TLS", "Rotate all TLS");
    std::fs::write(&path, &edited).unwrap();
    let before = s.snapshot();
    let r = s.chg("em@example.com", &["approve", &id]).code(2);
    assert!(r.stderr.contains("uncommitted changes"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    // Staged but not committed counts too.
    s.git(&["add", "."]);
    s.chg("em@example.com", &["approve", &id]).code(2);
}

#[test]
fn other_staged_work_stays_staged_and_out_of_the_commit() {
    let s = Store::new();
    std::fs::write(s.root().join("notes.txt"), "draft notes\n").unwrap();
    s.git(&["add", "notes.txt"]);
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    assert_eq!(s.git(&["status", "--porcelain"]), "A  notes.txt\n");
    let files = s.git(&["show", "--format=", "--name-only", "HEAD"]);
    assert_eq!(files.trim(), "changes/2025/03/CHG-2025-001.yaml");
}

#[test]
fn four_parallel_news_get_four_ids_and_four_commits() {
    let s = Store::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let title = format!("Parallel change {i}");
            let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
            cmd.args(new_args(&title))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|c| run_output(c.wait_with_output().unwrap()).ok_line())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "CHG-2025-001",
            "CHG-2025-002",
            "CHG-2025-003",
            "CHG-2025-004"
        ]
    );
    let news = s.git(&[
        "log",
        "--format=%(trailers:key=Chg-Action,valueonly,separator=)",
    ]);
    assert_eq!(news.lines().filter(|l| *l == "new").count(), 4);
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    s.git(&["fsck", "--no-progress"]);
}

#[test]
fn new_without_a_terminal_lists_every_missing_field() {
    let s = Store::new();
    let r = s
        .chg("alice@example.com", &["new", "--title", "Only a title"])
        .code(2);
    let first = r.stderr.lines().next().unwrap();
    assert!(first.starts_with("chg: error: missing required field(s): description, business_justification, change_type"), "{first}");
    // A draft may be incomplete and submitted later.
    let id = s
        .chg(
            "alice@example.com",
            &["new", "--title", "Only a title", "--draft"],
        )
        .ok_line();
    assert!(s.read(&id).contains("status: draft"));
    let r = s.chg("alice@example.com", &["submit", &id]).code(1);
    assert!(r.stderr.contains("rollback_plan"), "{}", r.stderr);
    for (field, value) in [
        ("description", "d"),
        ("business_justification", "j"),
        ("change_type", "feature"),
        ("priority", "low"),
        ("risk_level", "low"),
        ("affected_systems", "api, web"),
        ("implementation_plan", "p"),
        ("rollback_plan", "r"),
    ] {
        s.chg(
            "alice@example.com",
            &["set", &id, &format!("{field}={value}")],
        )
        .ok();
    }
    s.chg("alice@example.com", &["submit", &id]).ok();
    assert!(s.read(&id).contains("status: pending_approval"));
}

#[test]
fn new_says_first_what_is_wrong() {
    let s = Store::new();
    let r = s
        .chg(
            "alice@example.com",
            &[
                "new",
                "--title",
                "t",
                "--description",
                "d",
                "--justification",
                "j",
                "--type",
                "feture",
                "--priority",
                "low",
                "--risk",
                "low",
                "--system",
                "api",
                "--plan",
                "p",
                "--rollback",
                "r",
            ],
        )
        .code(2);
    let first = r.stderr.lines().next().unwrap();
    assert!(
        first.starts_with("chg: error: the change is not valid: change_type `feture`")
            && first.contains("did you mean `feature`?"),
        "{first}"
    );
    // Said once: a single problem is the error's sentence, not also a finding under it.
    assert_eq!(r.stderr.matches("feture").count(), 1, "{}", r.stderr);
}

#[test]
fn a_change_type_is_taken_by_its_unique_beginning_as_the_prompt_takes_it() {
    let s = Store::new();
    let mut args = vec![
        "new",
        "--title",
        "t",
        "--description",
        "d",
        "--justification",
        "j",
        "--priority",
        "low",
        "--risk",
        "low",
        "--system",
        "api",
        "--plan",
        "p",
        "--rollback",
        "r",
        "--type",
    ];
    args.push("config");
    let id = s.chg("alice@example.com", &args).ok_line();
    assert!(
        s.read(&id).contains("change_type: configuration"),
        "{}",
        s.read(&id)
    );
    // Unknown: refused with the policy's types, nothing filed.
    *args.last_mut().unwrap() = "cfg";
    let r = s.chg("alice@example.com", &args).code(2);
    assert!(
        r.stderr.contains("is not one of the policy's change types"),
        "{}",
        r.stderr
    );
}

#[test]
fn new_accepts_the_spec_field_names_as_flags() {
    let s = Store::new();
    let r = s.chg(
        "alice@example.com",
        &[
            "new",
            "--title",
            "t",
            "--description",
            "d",
            "--business-justification",
            "j",
            "--change-type",
            "security",
            "--change-model",
            "normal",
            "--priority",
            "low",
            "--risk-level",
            "low",
            "--affected-systems",
            "api,web",
            "--implementation-plan",
            "p",
            "--rollback-plan",
            "r",
            "--testing-required",
            "--test-plan",
            "tp",
            "--test-environment",
            "staging",
            "--urgency",
            "low",
            "--impact-scope",
            "all",
        ],
    );
    let id = r.ok().stdout.trim().to_owned();
    let text = s.read(&id);
    assert!(
        text.contains("testing_required: true") && text.contains("- web"),
        "{text}"
    );
}

#[test]
fn new_from_a_file_with_flags_winning() {
    let s = Store::new();
    let from = s.dir.path().join("req.yaml");
    std::fs::write(&from, "title: From file\ndescription: d\nbusiness_justification: j\nchange_type: feature\npriority: low\nrisk_level: low\naffected_systems: [api]\nimplementation_plan: p\nrollback_plan: r\n").unwrap();
    let id = s
        .chg(
            "alice@example.com",
            &[
                "new",
                "--from",
                from.to_str().unwrap(),
                "--priority",
                "medium",
            ],
        )
        .ok_line();
    let text = s.read(&id);
    assert!(
        text.contains("title: From file") && text.contains("priority: medium"),
        "{text}"
    );
    std::fs::write(&from, "title: x\nrollback_paln: r\n").unwrap();
    let r = s
        .chg(
            "alice@example.com",
            &["new", "--from", from.to_str().unwrap()],
        )
        .code(2);
    assert!(
        r.stderr.contains("req.yaml:2:1: unknown-key"),
        "{}",
        r.stderr
    );
}

#[test]
fn cancel_and_reject() {
    let s = Store::new();
    let a = s.new_change(&[]);
    s.chg(
        "cm@example.com",
        &["reject", &a, "--comment", "Not this quarter"],
    )
    .ok();
    assert!(s.read(&a).contains("status: rejected"));
    s.chg("alice@example.com", &["cancel", &a, "--reason", "x"])
        .code(1);
    let b = s.new_change(&[]);
    s.chg(
        "alice@example.com",
        &["cancel", &b, "--reason", "Superseded by CHG-2025-003"],
    )
    .ok();
    let text = s.read(&b);
    assert!(
        text.contains("status: cancelled") && text.contains("reason: Superseded by CHG-2025-003"),
        "{text}"
    );
    s.chg("alice@example.com", &["validate"]).ok();
}

#[test]
fn bad_input_exits_2_with_one_clear_sentence() {
    let s = Store::new();
    let r = s
        .chg("alice@example.com", &["show", "../../etc/passwd"])
        .code(2);
    assert!(
        r.stderr
            .starts_with("chg: error: `../../etc/passwd` is not a change id"),
        "{}",
        r.stderr
    );
    let r = s
        .chg("alice@example.com", &["show", "CHG-2025-999"])
        .code(2);
    assert!(r.stderr.contains("no change CHG-2025-999"), "{}", r.stderr);
    s.chg("alice@example.com", &["approve"]).code(2);
    s.chg("alice@example.com", &["frobnicate"]).code(2);

    let outside = Store::bare();
    outside.git(&["init", "-q"]);
    let r = outside.chg("alice@example.com", &["list"]).code(2);
    assert!(r.stderr.contains("chg init"), "{}", r.stderr);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chg"));
    base_env(&mut cmd, &s.dir.path().join("home"));
    let r = run_output(
        cmd.current_dir(s.root())
            .args(["approve", "CHG-2025-001"])
            .output()
            .unwrap(),
    )
    .code(2);
    assert!(r.stderr.contains("no git identity"), "{}", r.stderr);
}

#[test]
fn a_broken_policy_stops_every_command_with_its_place() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let policy = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            "low:       {roles: [change-manager]",
            "low:       {roles: [change-manger]",
        ),
    )
    .unwrap();
    // Uncommitted, the broken policy is validate's business only (SPEC section 5).
    let r = s.chg("cm@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("policy/policy.yaml:20:"), "{}", r.stdout);
    assert!(r.stdout.contains("policy-uncommitted"), "{}", r.stdout);
    s.git(&["commit", "-qam", "break the policy"]);
    let r = s.chg("cm@example.com", &["approve", &id]).code(2);
    assert!(r.stderr.contains("policy/policy.yaml:20:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("did you mean `change-manager`"),
        "{}",
        r.stderr
    );
    let r = s.chg("cm@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("policy/policy.yaml:20:"), "{}", r.stdout);
}

#[test]
fn validate_reports_every_problem_with_places_in_three_formats() {
    let s = Store::new();
    s.new_change(&[]);
    let dir = s.root().join("changes/2025/02");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("CHG-2025-002.yaml"),
        "id: CHG-2025-002\ntitle: Bad\nrollback_paln: x\npriority: urgent\nrequest_date: 2025-03-01T00:00:00Z\nstatus: pending_approval\n",
    )
    .unwrap();
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("changes/2025/02/CHG-2025-002.yaml:3:1: unknown-key: unknown key `rollback_paln`; did you mean `rollback_plan`?"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("changes/2025/02/CHG-2025-002.yaml:4:11: enum: "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("location: the file belongs in the folder of its request month: move it to changes/2025/03/CHG-2025-002.yaml"), "{}", r.stdout);
    let j = s
        .chg("alice@example.com", &["validate", "--format", "json"])
        .code(1);
    let findings: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let first = &findings[0];
    for key in [
        "file", "line", "column", "id", "rule", "severity", "message",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    let g = s
        .chg("alice@example.com", &["validate", "--format", "github"])
        .code(1);
    assert!(
        g.stdout
            .contains("::error file=changes/2025/02/CHG-2025-002.yaml,line=3,col=1::unknown-key: "),
        "{}",
        g.stdout
    );
    // Naming only the good file passes.
    s.chg("alice@example.com", &["validate", "CHG-2025-001"])
        .ok();
}

#[test]
fn show_list_and_their_formats() {
    let s = Store::new();
    let a = s.new_change(&[]);
    s.new_change(&[
        "--priority",
        "high",
        "--type",
        "feature",
        "--system",
        "billing",
    ]);
    let show = s.chg("alice@example.com", &["show", &a]).ok();
    assert!(
        show.stdout
            .starts_with("CHG-2025-001  Rotate TLS certificates\n"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("[ ] engineering-manager: waiting"));
    let j = s.chg("alice@example.com", &["show", &a, "--json"]).ok();
    let f = s
        .chg("alice@example.com", &["show", &a, "--format", "json"])
        .ok();
    assert_eq!(j.stdout, f.stdout);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["status"], "pending_approval");
    assert_eq!(
        v["missing_roles"],
        serde_json::json!(["engineering-manager", "change-manager"])
    );

    let t = s
        .chg("alice@example.com", &["list", "--priority", "high"])
        .ok();
    assert!(
        t.stdout.contains("CHG-2025-002") && !t.stdout.contains("CHG-2025-001"),
        "{}",
        t.stdout
    );
    let csv = s
        .chg(
            "alice@example.com",
            &["list", "--format", "csv", "--system", "billing"],
        )
        .ok();
    assert_eq!(csv.stdout.lines().count(), 2, "{}", csv.stdout);
    assert!(csv.stdout.starts_with("id,title,status,"));
    let json = s
        .chg(
            "alice@example.com",
            &[
                "list",
                "--json",
                "--status",
                "pending_approval",
                "--since",
                "2025-03-01",
                "--until",
                "2025-04-01",
            ],
        )
        .ok();
    let items: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);
    let none = s
        .chg("alice@example.com", &["list", "--until", "2025-01-01"])
        .ok();
    assert!(none.stderr.contains("No changes match") && none.stdout.is_empty());
    // Piped: a header and tab-separated rows, nothing else; the count on stderr.
    let t = s.chg("alice@example.com", &["list"]).ok();
    let lines: Vec<&str> = t.stdout.lines().collect();
    assert!(lines[0].starts_with("ID\tSTATUS\t"), "{}", t.stdout);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("CHG-") && l.split('\t').count() == 8),
        "{}",
        t.stdout
    );
    assert!(t.stderr.contains("change(s)"), "{}", t.stderr);
    // A broken file is not listed, whatever the filter, and is reported on stderr.
    std::fs::write(
        s.root().join("changes/2025/03/CHG-2025-009.yaml"),
        "id: [unclosed\n",
    )
    .unwrap();
    let t = s
        .chg("alice@example.com", &["list", "--priority", "high"])
        .ok();
    assert!(t.stdout.contains("CHG-2025-002") && !t.stdout.contains("CHG-2025-009"));
    assert!(
        t.stderr
            .contains("1 change file(s) could not be read and are not listed"),
        "{}{}",
        t.stdout,
        t.stderr
    );
    s.chg("alice@example.com", &["list", "--status", "bogus"])
        .code(2);
}

#[test]
fn edit_in_an_editor_commits_valid_results_and_aborts_on_no_change() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let script = s.dir.path().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i 's/Rotate TLS certificates/Rotate TLS certs (edited)/' \"$1\"\n",
    )
    .unwrap();
    let head = s.git(&["rev-parse", "HEAD"]);
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    let r = run_output(
        cmd.env("EDITOR", format!("sh {}", script.display()))
            .args(["edit", &id])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(r.stdout.contains("edit"), "{}", r.stdout);
    assert!(s.read(&id).contains("title: Rotate TLS certs (edited)"));
    assert_ne!(s.git(&["rev-parse", "HEAD"]), head);
    // Unchanged: no commit.
    let head = s.git(&["rev-parse", "HEAD"]);
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    run_output(
        cmd.env("EDITOR", "true")
            .args(["edit", &id])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(s.git(&["rev-parse", "HEAD"]), head);
    // Invalid without a terminal: refused, nothing changed.
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i 's/^priority: medium/priority: urgent/' \"$1\"\n",
    )
    .unwrap();
    let before = s.snapshot();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    let r = run_output(
        cmd.env("EDITOR", format!("sh {}", script.display()))
            .args(["edit", &id])
            .output()
            .unwrap(),
    )
    .code(2);
    assert!(r.stderr.contains("enum"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn init_makes_a_repository_when_needed_and_refuses_twice() {
    let s = Store::bare();
    s.chg("alice@example.com", &["init"]).ok();
    assert!(s.root().join("policy/policy.yaml").is_file());
    assert_eq!(s.git(&["log", "--format=%s"]).trim(), "chg: init store");
    s.chg("alice@example.com", &["init"]).code(2);
}

#[test]
fn completions_and_man_page() {
    let s = Store::bare();
    // Every command of the help, in every shell's script and in the man page.
    let top = s.chg("alice@example.com", &["--help"]).ok().stdout;
    let commands = listed_commands(&top);
    assert!(commands.len() > 20, "{top}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = s.chg("alice@example.com", &["completions", shell]).ok();
        for c in &commands {
            assert!(
                r.stdout.contains(c.as_str()),
                "{shell} completion lacks {c}"
            );
        }
    }
    let bash = s
        .chg("alice@example.com", &["completions", "bash"])
        .ok()
        .stdout;
    assert!(
        bash.contains("_chg()") && bash.contains("complete -F _chg"),
        "{bash}"
    );
    let script = s.dir.path().join("chg.bash");
    std::fs::write(&script, &bash).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let man = s.chg("alice@example.com", &["man"]).ok().stdout;
    assert!(
        man.starts_with(".ie") || man.contains(".TH chg"),
        "{}",
        &man[..200]
    );
    for c in &commands {
        assert!(
            man.contains(c.as_str()),
            "the man page does not mention {c}"
        );
    }
}

#[test]
fn interactive_new_prompts_for_missing_fields_in_a_terminal() {
    let s = Store::new();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    cmd.env("TERM", "dumb").args([
        "new",
        "--title",
        "Prompted",
        "--description",
        "d",
        "--justification",
        "j",
        "--type",
        "feature",
        "--risk",
        "low",
        "--system",
        "api",
        "--plan",
        "p",
    ]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    p.exp_string("low").unwrap();
    // No default: Enter does not choose the most severe priority for anyone.
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("choose one").unwrap();
    p.send_line("hi").unwrap(); // a unique beginning
    p.exp_string("rollback plan").unwrap();
    p.send_line("Revert the deploy").unwrap();
    p.exp_string("CHG-2025-001").unwrap();
    p.exp_eof().unwrap();
    let text = s.read("CHG-2025-001");
    assert!(text.contains("priority: high"), "{text}");
    assert!(text.contains("rollback_plan: Revert the deploy"), "{text}");
}

#[test]
#[cfg(feature = "failpoints")]
fn a_transition_killed_at_any_step_is_finished_or_undone_by_the_next_chg() {
    for (point, committed) in [
        ("after-journal", false),
        ("after-files", false),
        ("after-ref", true),
    ] {
        let s = Store::new();
        let id = s.new_change(&[]);
        let before = s.git(&["rev-parse", "HEAD"]);
        let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
        let r = run_output(
            cmd.env("CHG_TEST_FAILPOINT", point)
                .args(["approve", &id])
                .output()
                .unwrap(),
        );
        assert_ne!(r.code, 0, "{point}: the process should have died");
        let moved = s.git(&["rev-parse", "HEAD"]) != before;
        assert_eq!(moved, committed, "{point}");
        // The next chg process repairs the store before it acts, and says so when the
        // files had been touched.
        let r = s.chg("cm@example.com", &["approve", &id]).ok();
        let repaired = r.stderr.contains("chg: repaired an interrupted transition");
        assert_eq!(repaired, point != "after-journal", "{point}: {}", r.stderr);
        if !committed {
            // The interrupted approval never happened; em can approve again.
            s.chg("em@example.com", &["approve", &id]).ok();
        }
        let text = s.read(&id);
        assert!(text.contains("status: approved"), "{point}: {text}");
        assert_eq!(
            text.matches("role: engineering-manager").count(),
            1,
            "{point}: {text}"
        );
        assert_eq!(s.git(&["status", "--porcelain"]), "", "{point}");
        s.git(&["fsck", "--no-progress"]);
        let approvals = s.git(&[
            "log",
            "--format=%(trailers:key=Chg-Action,valueonly,separator=)",
        ]);
        assert_eq!(
            approvals.lines().filter(|l| *l == "approve").count(),
            2,
            "{point}"
        );
        s.chg("alice@example.com", &["validate"]).ok();
    }
}

#[test]
fn the_help_reference_is_stable() {
    let s = Store::bare();
    // Every command and subcommand, as the help lists them: a new one cannot be left out.
    let mut commands = vec![String::new()];
    let mut i = 0;
    while i < commands.len() {
        let mut args: Vec<&str> = commands[i].split_whitespace().collect();
        args.push("--help");
        let help = s.chg("alice@example.com", &args).ok().stdout;
        let parent = commands[i].clone();
        for sub in listed_commands(&help) {
            commands.push(format!("{parent} {sub}").trim().to_owned());
        }
        i += 1;
    }
    assert!(commands.len() > 25, "{commands:?}");
    let mut reference = String::new();
    for c in &commands {
        let mut args: Vec<&str> = c.split_whitespace().collect();
        args.push("--help");
        let r = s.chg("alice@example.com", &args).ok();
        reference.push_str(&format!("===== chg {c} --help\n{}\n", r.stdout));
    }
    insta::assert_snapshot!(reference);
}

#[test]
fn edit_at_a_terminal_reopens_the_editor_with_the_problems_on_top() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // First save: an invalid priority. Second save: the editor sees the problems on top
    // (recorded for the assertion) and fixes the value.
    let script = s.dir.path().join("editor.sh");
    let seen = s.dir.path().join("seen.txt");
    let count = s.dir.path().join("count");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -f {count} ]; then\n  cp \"$1\" {seen}\n  sed -i 's/^priority: urgent/priority: high/' \"$1\"\nelse\n  touch {count}\n  sed -i 's/^priority: medium/priority: urgent/' \"$1\"\nfi\n",
            count = count.display(),
            seen = seen.display()
        ),
    )
    .unwrap();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    cmd.env("TERM", "dumb")
        .env("EDITOR", format!("sh {}", script.display()))
        .args(["edit", &id]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    p.exp_string("edit, pending_approval -> pending_approval")
        .unwrap();
    p.exp_eof().unwrap();
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(shown.starts_with("# chg: "), "{shown}");
    assert!(shown.contains("enum"), "{shown}");
    let text = s.read(&id);
    assert!(text.contains("priority: high"), "{text}");
    assert!(
        !text.contains("# chg:"),
        "the problem header was committed:\n{text}"
    );
}

#[test]
fn the_store_is_found_from_subfolders_or_named_with_repo_or_chg_repo() {
    let s = Store::bare();
    s.git(&["init", "-q", "-b", "main"]);
    std::fs::write(s.root().join("README"), "app\n").unwrap();
    s.git(&["add", "README"]);
    s.git(&["commit", "-qm", "app"]);
    // A store in a folder of a larger repository: commits carry the folder in their paths.
    s.chg("alice@example.com", &["init", "ops/cm"]).ok();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    cmd.current_dir(s.root().join("ops/cm/changes"));
    let r = run_output(
        cmd.args(["new", "--draft", "--title", "t"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(r.stdout.trim(), "CHG-2025-001");
    let files = s.git(&["show", "--format=", "--name-only", "HEAD"]);
    assert_eq!(files.trim(), "ops/cm/changes/2025/03/CHG-2025-001.yaml");
    // From the repository root, discovery does not look down; --repo and CHG_REPO name it.
    s.chg("alice@example.com", &["show", "CHG-2025-001"])
        .code(2);
    s.chg(
        "alice@example.com",
        &["--repo", "ops/cm", "show", "CHG-2025-001"],
    )
    .ok();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
    cmd.env("CHG_REPO", s.root().join("ops/cm"));
    run_output(cmd.args(["list"]).output().unwrap()).ok();
    s.chg("alice@example.com", &["--repo", "nowhere", "list"])
        .code(2);
}

#[test]
fn a_held_store_lock_makes_chg_wait_then_exit_3() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(s.root().join(".git/chg/lock"))
        .unwrap();
    lock.lock().unwrap();
    let before = s.snapshot();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    cmd.env("CHG_LOCK_TIMEOUT", "1");
    let started = std::time::Instant::now();
    let r = run_output(cmd.args(["approve", &id]).output().unwrap()).code(3);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "it did not wait"
    );
    assert!(r.stderr.contains("another chg process"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    drop(lock);
    s.chg("em@example.com", &["approve", &id]).ok();
}

#[test]
fn without_git_on_path_the_index_is_still_updated() {
    let s = Store::new();
    let o = s
        .cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com")
        .env("PATH", "/nonexistent")
        .args(new_args("t"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    assert!(s.git(&["ls-files"]).contains("CHG-2025-001.yaml"));
}

/// git does not wait for index.lock; an editor refreshing `git status`, or a killed chg's
/// `git update-index` still finishing, holds it for a moment. A transition waits that out;
/// a lock held for good fails it with git's reason, and nothing changes.
#[test]
fn a_transition_waits_for_an_index_lock_held_for_a_moment() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let lock = s.root().join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let release = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::remove_file(lock).unwrap();
        })
    };
    s.chg("em@example.com", &["approve", &id]).ok();
    release.join().unwrap();
    assert_eq!(s.git(&["status", "--porcelain"]), "");

    let before = s.snapshot();
    std::fs::write(&lock, "").unwrap();
    let r = s.chg("cm@example.com", &["approve", &id]);
    std::fs::remove_file(&lock).unwrap();
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("index.lock"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

/// The SHA-256 of `bytes` in lower-case hex, as the evidence pack's manifest writes it.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
