//! Many clones, one truth: `chg renumber` for ids claimed twice, `chg sync` between clones
//! of one bare remote (replayed transitions, renumbered ids, stale steps kept on a named
//! ref), and processes killed in the middle of transitions and syncs.

use std::collections::HashMap;

use super::*;

/// Findings of one rule from `chg validate --format json`.
fn rule_findings(s: &Store, rule: &str) -> Vec<serde_json::Value> {
    let r = s.chg("alice@example.com", &["validate", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .cloned()
        .collect()
}

#[test]
fn two_pull_requests_with_one_id_are_reported_and_renumbered() {
    let mut s = Store::new();
    s.new_change(&[]);
    // Two branches each file the next id: one in March, one in April.
    s.git(&["checkout", "-q", "-b", "april"]);
    s.at("2025-04-01T10:00:00Z");
    assert_eq!(s.new_change(&[]), "CHG-2025-002");
    s.chg("em@example.com", &["approve", "CHG-2025-002"]).ok();
    s.git(&["checkout", "-q", "main"]);
    s.at(NOW);
    assert_eq!(s.new_change(&[]), "CHG-2025-002");
    // The code host merges both without chg.
    s.git(&["merge", "-q", "--no-edit", "april"]);
    let dup = rule_findings(&s, "duplicate-id");
    assert_eq!(dup.len(), 2, "{dup:#?}");
    let april = "changes/2025/04/CHG-2025-002.yaml";
    assert!(
        dup.iter().any(|f| f["file"] == april
            && f["message"]
                .as_str()
                .unwrap()
                .contains(&format!("chg renumber CHG-2025-002 --file {april}"))),
        "{dup:#?}"
    );
    // Which one moves must be said.
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["renumber", "CHG-2025-002"])
        .code(2);
    assert!(r.stderr.contains("--file"), "{}", r.stderr);
    assert_unchanged(&s, &before);

    let r = s
        .chg(
            "alice@example.com",
            &["renumber", "CHG-2025-002", "--file", april],
        )
        .ok();
    assert!(
        r.stdout.starts_with("CHG-2025-003: renumber"),
        "{}",
        r.stdout
    );
    // One commit: the old file removed, the new one added, the old id in a trailer.
    let show = s.git(&[
        "show",
        "--no-renames",
        "--name-status",
        "--format=%s%n%b",
        "HEAD",
    ]);
    assert!(
        show.starts_with("CHG-2025-003: renumber (was CHG-2025-002)"),
        "{show}"
    );
    assert!(show.contains("Chg-Renumbered-From: CHG-2025-002"), "{show}");
    assert!(show.contains(&format!("D\t{april}")), "{show}");
    assert!(
        show.contains("A\tchanges/2025/04/CHG-2025-003.yaml"),
        "{show}"
    );
    let text = s.read("CHG-2025-003");
    assert!(text.starts_with("id: CHG-2025-003\n"), "{text}");
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    // The approval stays valid (the id is not material), everything validates and audits.
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    // The history of the new id starts under the old one.
    let log = s
        .chg("alice@example.com", &["log", "CHG-2025-003", "--json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&log.stdout).unwrap();
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["new", "approve", "renumber"], "{}", log.stdout);
}

#[test]
fn renumber_skips_ids_already_published_on_a_remote_branch() {
    let s = Store::new();
    s.new_change(&[]);
    s.git(&["checkout", "-q", "-b", "mine"]);
    s.new_change(&[]);
    // Someone else's CHG-2025-002 is on the fetched remote branch, not merged here.
    s.git(&["checkout", "-q", "main"]);
    s.new_change(&[]);
    s.new_change(&[]);
    let theirs = s.git(&["rev-parse", "HEAD"]);
    s.git(&["update-ref", "refs/remotes/origin/main", theirs.trim()]);
    s.git(&["checkout", "-q", "mine"]);
    let r = s
        .chg("alice@example.com", &["renumber", "CHG-2025-002"])
        .ok();
    assert!(
        r.stdout.starts_with("CHG-2025-004: renumber"),
        "{}",
        r.stdout
    );
    s.chg("alice@example.com", &["audit"]).ok();
    // A hand-made "renumber" that also changes the plan is caught by audit.
    let (from, to) = (
        "changes/2025/03/CHG-2025-004.yaml",
        "changes/2025/03/CHG-2025-005.yaml",
    );
    s.git(&["mv", from, to]);
    s.rewrite("CHG-2025-005", |t| {
        t.replace("id: CHG-2025-004", "id: CHG-2025-005")
            .replace("Reload the previous certificate", "Hope")
    });
    s.git(&[
        "commit",
        "-qam",
        "CHG-2025-005: renumber (was CHG-2025-004)\n\nChg-Id: CHG-2025-005\nChg-Action: renumber\nChg-Actor: alice@example.com\nChg-From: pending_approval\nChg-To: pending_approval\nChg-Renumbered-From: CHG-2025-004",
    ]);
    let r = s
        .chg("alice@example.com", &["audit", "--exceptions-only"])
        .code(1);
    assert!(
        r.stdout.contains("trailer-mismatch")
            && r.stdout
                .contains("changes only the id, but this commit also changed rollback_plan"),
        "{}",
        r.stdout
    );
}

/// The team's clock: every command any clone runs is a minute after the one before, from a
/// fixed start outside every freeze of the default policy, so that the tests do not depend
/// on the day they run (and steps made in parallel clones still move forward in time).
static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_741_600_800);

fn tick() -> String {
    let t = CLOCK.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    jiff::Timestamp::from_second(t).unwrap().to_string()
}

/// A bare remote and clones of it, each acting as one person, on the team's clock.
struct Team {
    dir: tempfile::TempDir,
}

/// One person's clone.
struct Clone {
    root: PathBuf,
    home: PathBuf,
    who: String,
}

impl Team {
    /// A remote with a fresh store (pushed by alice) and one clone per person.
    fn new(people: &[&str]) -> (Team, Vec<Clone>) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let remote = dir.path().join("remote.git");
        let t = Team { dir };
        let mut first = Command::new("git");
        base_env(&mut first, &home);
        let o = first
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&remote)
            .output()
            .unwrap();
        assert!(o.status.success());
        let clones: Vec<Clone> = people.iter().map(|p| t.clone_for(p)).collect();
        clones[0].chg(&["init"]).ok();
        clones[0].git(&["push", "-q", "origin", "main"]);
        for c in &clones[1..] {
            c.git(&["pull", "-q", "origin", "main"]);
        }
        (t, clones)
    }

    fn remote(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    fn clone_for(&self, who: &str) -> Clone {
        let name = who.split('@').next().unwrap();
        let root = self.dir.path().join(name);
        let home = self.dir.path().join("home");
        let mut cmd = Command::new("git");
        base_env(&mut cmd, &home);
        let o = cmd
            .args(["clone", "-q"])
            .arg(self.remote())
            .arg(&root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Clone {
            root,
            home,
            who: who.to_owned(),
        }
    }

    fn remote_git(&self, args: &[&str]) -> std::process::Output {
        Command::new("git")
            .arg("--git-dir")
            .arg(self.remote())
            .args(args)
            .output()
            .unwrap()
    }

    /// `git log` of the remote's main.
    fn remote_log(&self, format: &str) -> String {
        let o = self.remote_git(&["log", &format!("--format={format}"), "main"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `git fsck` of the remote passes.
    fn assert_remote_sound(&self) {
        let o = self.remote_git(&["fsck", "--no-progress"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Clone {
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        base_env(&mut cmd, &self.home);
        let name = self.who.split('@').next().unwrap();
        let now = tick();
        cmd.current_dir(&self.root)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", &self.who)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", &self.who)
            .env("CHG_NOW", &now)
            .env("GIT_AUTHOR_DATE", &now)
            .env("GIT_COMMITTER_DATE", &now);
        cmd
    }

    fn chg(&self, args: &[&str]) -> Run {
        run_output(
            self.cmd(env!("CARGO_BIN_EXE_chg"))
                .args(args)
                .output()
                .unwrap(),
        )
    }

    fn git(&self, args: &[&str]) -> String {
        let o = self.cmd("git").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Files a complete medium change (engineering and change manager approve); its id.
    fn new_change(&self, title: &str) -> String {
        let mut args = new_args(title);
        let at = args.iter().position(|a| *a == "low").unwrap();
        args[at] = "medium";
        self.chg(&args).ok().stdout.trim().to_owned()
    }

    fn read(&self, id: &str) -> String {
        let year = &id[4..8];
        for m in 1..=12 {
            let p = self.root.join(format!("changes/{year}/{m:02}/{id}.yaml"));
            if let Ok(t) = std::fs::read_to_string(p) {
                return t;
            }
        }
        panic!("no file for {id} in {}", self.root.display());
    }
}

#[test]
fn approvals_from_two_clones_both_survive_and_a_taken_id_is_renumbered() {
    let (t, c) = Team::new(&[
        "alice@example.com",
        "em@example.com",
        "cm@example.com",
        "bob@example.com",
    ]);
    let (alice, em, cm, bob) = (&c[0], &c[1], &c[2], &c[3]);
    let id = alice.new_change("Rotate certificates");
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    cm.chg(&["sync"]).ok();
    // Both approve on the same version, neither has seen the other's approval.
    em.chg(&["approve", &id, "--comment", "fine by engineering"])
        .ok();
    cm.chg(&["approve", &id]).ok();
    em.chg(&["sync"]).ok();
    let r = cm.chg(&["sync"]).ok();
    assert!(
        r.stdout.contains("replayed 1 local step(s)"),
        "{}",
        r.stdout
    );
    let text = cm.read(&id);
    assert!(text.contains("status: approved"), "{text}");
    assert!(text.contains("fine by engineering"), "{text}");
    // The replayed approval says what it did now: pending_approval -> approved.
    let last = t.remote_log(
        "%(trailers:key=Chg-From,valueonly,separator=)>%(trailers:key=Chg-To,valueonly,separator=)",
    );
    assert_eq!(
        last.lines().next(),
        Some("pending_approval>approved"),
        "{last}"
    );

    // Two new changes filed offline get the same next id; the later sync renumbers.
    let a = alice.new_change("From alice");
    bob.chg(&["sync"]).ok();
    let b = bob.new_change("From bob");
    assert_eq!(a, b);
    bob.chg(&["submit", &b]).code(1); // already pending: a refused step changes nothing
    alice.chg(&["sync"]).ok();
    let r = bob.chg(&["sync", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let renumbered = &v["renumbered"][0];
    assert_eq!(renumbered[0], b.as_str(), "{v:#}");
    let new_id = renumbered[1].as_str().unwrap().to_owned();
    assert_ne!(new_id, b);
    assert!(bob.read(&new_id).contains("title: From bob"));
    assert!(bob.read(&b).contains("title: From alice"));
    let subject = t.remote_log("%s");
    assert!(
        subject
            .lines()
            .next()
            .unwrap()
            .starts_with(&format!("{new_id}: new (was {b}): From bob")),
        "{subject}"
    );
    // Everyone converges; the store validates and audits clean.
    for p in &c {
        p.chg(&["sync"]).ok();
        assert_eq!(p.head(), bob.head());
    }
    bob.chg(&["validate"]).ok();
    bob.chg(&["audit"]).ok();
    assert_eq!(bob.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_step_that_no_longer_applies_stops_the_sync_and_loses_nothing() {
    let (t, c) = Team::new(&["alice@example.com", "em@example.com"]);
    let (alice, em) = (&c[0], &c[1]);
    let cancelled = alice.new_change("Will be cancelled");
    let edited = alice.new_change("Will be edited");
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    em.chg(&["approve", &cancelled]).ok();
    em.chg(&["approve", &edited]).ok();
    alice
        .chg(&["cancel", &cancelled, "--reason", "not needed"])
        .ok();
    alice
        .chg(&[
            "set",
            &edited,
            "implementation_plan=Something else entirely",
        ])
        .ok();
    alice.chg(&["sync"]).ok();

    let remote_before = t.remote_log("%H");
    let head = em.head();
    let r = em.chg(&["sync"]).code(1);
    assert!(
        r.stderr.contains(&format!("{cancelled} `approve`"))
            && r.stderr.contains("can no longer apply")
            && r.stderr.contains("is cancelled")
            && r.stderr.contains("Nothing was pushed or changed")
            && r.stderr.contains("chg sync --drop-stale"),
        "{}",
        r.stderr
    );
    assert_eq!(em.head(), head, "the branch did not move");
    assert_eq!(t.remote_log("%H"), remote_before, "nothing was pushed");
    let saved = em.git(&["for-each-ref", "--format=%(objectname)", "refs/chg/sync/"]);
    assert_eq!(saved.trim(), head, "the local work is on a named ref");

    let r = em.chg(&["sync", "--drop-stale", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let dropped: Vec<(&str, &str)> = v["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(dropped.len(), 2, "{v:#}");
    assert!(dropped[0].1.contains("is cancelled"), "{dropped:?}");
    // The approval was given to the plan before alice's edit: it does not carry over.
    assert!(
        dropped[1].0 == edited && dropped[1].1.contains("implementation_plan"),
        "{dropped:?}"
    );
    assert_eq!(em.head(), alice.git(&["ls-remote", "origin", "main"])[..40]);
    assert!(!em.read(&edited).contains("em@example.com"));
    em.chg(&["validate"]).ok();
    em.chg(&["audit"]).ok();
}

#[test]
fn plain_commits_are_rebased_and_a_conflict_is_left_to_the_user() {
    let (_t, c) = Team::new(&["alice@example.com", "bob@example.com"]);
    let (alice, bob) = (&c[0], &c[1]);
    std::fs::write(alice.root.join("README.md"), "one\n").unwrap();
    alice.git(&["add", "README.md"]);
    alice.git(&["commit", "-qm", "readme"]);
    alice.chg(&["sync"]).ok();
    bob.chg(&["sync"]).ok();
    // Non-conflicting plain commits on both sides: rebased like git would.
    std::fs::write(alice.root.join("NOTES.md"), "alice\n").unwrap();
    alice.git(&["add", "NOTES.md"]);
    alice.git(&["commit", "-qm", "notes"]);
    alice.chg(&["sync"]).ok();
    std::fs::write(bob.root.join("OTHER.md"), "bob\n").unwrap();
    bob.git(&["add", "OTHER.md"]);
    bob.git(&["commit", "-qm", "other"]);
    let id = bob.new_change("After a plain commit");
    bob.chg(&["sync"]).ok();
    assert!(bob.root.join("NOTES.md").exists() && bob.root.join("OTHER.md").exists());
    assert_eq!(
        bob.git(&["log", "-1", "--format=%s"]).trim(),
        format!("{id}: new: After a plain commit")
    );
    // An uncommitted edit elsewhere is left alone.
    std::fs::write(bob.root.join("scratch.txt"), "mine\n").unwrap();
    // The same line changed on both sides: stop, change nothing, say how to go on.
    std::fs::write(alice.root.join("README.md"), "alice\n").unwrap();
    alice.git(&["commit", "-qam", "readme: alice"]);
    alice.chg(&["sync"]).ok();
    std::fs::write(bob.root.join("README.md"), "bob\n").unwrap();
    bob.git(&["commit", "-qam", "readme: bob"]);
    let head = bob.head();
    let r = bob.chg(&["sync"]).code(1);
    assert!(
        r.stderr
            .contains("is not a chg transition and conflicts with the remote in README.md")
            && r.stderr.contains("git rebase"),
        "{}",
        r.stderr
    );
    assert_eq!(bob.head(), head);
    assert_eq!(bob.git(&["status", "--porcelain"]), "?? scratch.txt\n");
}

/// A size for the concurrency tests: the default keeps them to seconds in CI;
/// `benches/sync-soak.sh` raises it.
fn soak(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic random source (no dependency needed for a test's choices).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The changes of one status, from `chg list --json`, with their requester, their
/// approvers' roles and whether they have a schedule.
fn listed(c: &Clone, status: &str) -> Vec<(String, String, Vec<String>, bool)> {
    let r = c.chg(&["list", "--status", status, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let approvers = x["approvals"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|a| a["role"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (
                x["id"].as_str().unwrap().to_owned(),
                x["requester"].as_str().unwrap_or("").to_owned(),
                approvers,
                !x["schedule"].is_null(),
            )
        })
        .collect()
}

/// One person's 25 random valid steps with syncs in between; returns (action, count) of the
/// steps that were made locally and not dropped by a sync.
fn act(c: &Clone, seed: u64, roles: &[&str]) -> HashMap<String, i64> {
    // A step refused (exit 1: another clone's step got there first) is part of the game;
    // any other failure is a bug, and fails the test at once.
    let ok = |args: &[&str]| -> bool {
        let r = c.chg(args);
        assert!(
            r.code == 0 || r.code == 1,
            "{} {args:?} failed unexpectedly (exit {}): {}",
            c.who,
            r.code,
            r.stderr
        );
        r.code == 0
    };
    let mut rng = Lcg(seed);
    let mut made: HashMap<String, i64> = HashMap::new();
    let sync = |made: &mut HashMap<String, i64>| {
        let r = c.chg(&["sync", "--drop-stale", "--attempts", "40", "--json"]);
        assert_eq!(r.code, 0, "{} sync: {}", c.who, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        for d in v["dropped"].as_array().unwrap() {
            *made
                .entry(d["action"].as_str().unwrap().to_owned())
                .or_default() -= 1;
        }
    };
    let mut steps = 0;
    let mut tries = 0;
    let goal = soak("CHG_SOAK_STEPS", 25);
    while steps < goal && tries < goal * 8 {
        tries += 1;
        let done = if roles.is_empty() {
            // A requester: files, schedules, edits, implements and closes their own changes.
            let mine = |s: &str| -> Vec<(String, bool)> {
                listed(c, s)
                    .into_iter()
                    .filter(|x| x.1 == c.who)
                    .map(|x| (x.0, x.3))
                    .collect()
            };
            let me = |s: &str| -> Vec<String> { mine(s).into_iter().map(|x| x.0).collect() };
            // Only a change with a schedule can be implemented: one approved without one
            // was picked again and again, and some runs made no implement at all.
            let scheduled = |s: &str| -> Vec<String> {
                mine(s).into_iter().filter(|x| x.1).map(|x| x.0).collect()
            };
            let unscheduled_first = |s: &str| -> Vec<String> {
                let mut all = mine(s);
                all.sort_by_key(|x| x.1);
                all.into_iter().map(|x| x.0).collect()
            };
            // Changes that made it through approval are carried on first, half the time, so
            // implement and close happen on every run.
            let pick = match rng.next(2) {
                0 if !scheduled("approved").is_empty() => 3,
                0 if !me("implementing").is_empty() => 4,
                _ => rng.next(6),
            };
            match pick {
                5 => match me("pending_approval").last() {
                    Some(id) => {
                        ok(&["cancel", id, "--reason", "no longer needed"]) && {
                            *made.entry("cancel".into()).or_default() += 1;
                            true
                        }
                    }
                    None => false,
                },
                0 => {
                    let mut args = new_args("step");
                    let at = args.iter().position(|a| *a == "low").unwrap();
                    args[at] = if rng.next(2) == 0 { "medium" } else { "high" };
                    let title = format!("{} {steps}", c.who);
                    args[2] = &title;
                    ok(&args) && {
                        *made.entry("new".into()).or_default() += 1;
                        true
                    }
                }
                1 => match unscheduled_first("pending_approval").first() {
                    Some(id) => {
                        ok(&["schedule", id, "--start", "now", "--end", "+2d"]) && {
                            *made.entry("schedule".into()).or_default() += 1;
                            true
                        }
                    }
                    None => false,
                },
                2 => match me("pending_approval").last() {
                    Some(id) => {
                        let text = format!("description=edited by {} at {steps}", c.who);
                        ok(&["set", id, &text]) && {
                            *made.entry("edit".into()).or_default() += 1;
                            true
                        }
                    }
                    None => false,
                },
                3 => match scheduled("approved").first() {
                    Some(id) => {
                        ok(&["implement", id]) && {
                            *made.entry("implement".into()).or_default() += 1;
                            true
                        }
                    }
                    None => false,
                },
                _ => match me("implementing").first() {
                    Some(id) => {
                        ok(&["close", id, "--outcome", "successful", "--review", "fine"]) && {
                            *made.entry("close".into()).or_default() += 1;
                            true
                        }
                    }
                    None => false,
                },
            }
        } else {
            // An approver: approves a pending change that still needs one of their roles.
            let open: Vec<String> = listed(c, "pending_approval")
                .into_iter()
                .filter(|x| x.1 != c.who && !x.2.iter().any(|r| roles.contains(&r.as_str())))
                .map(|x| x.0)
                .collect();
            match open.get(rng.next(open.len().max(1))) {
                // Now and then a rejection instead.
                Some(id) if rng.next(8) == 0 => {
                    ok(&["reject", id, "--comment", "not like this"]) && {
                        *made.entry("reject".into()).or_default() += 1;
                        true
                    }
                }
                Some(id) => {
                    ok(&["approve", id]) && {
                        *made.entry("approve".into()).or_default() += 1;
                        true
                    }
                }
                None => false,
            }
        };
        if done {
            steps += 1;
        }
        if rng.next(3) == 0 {
            sync(&mut made);
        }
    }
    sync(&mut made);
    made
}

#[test]
fn eight_people_in_parallel_converge_with_every_step_once() {
    let people = [
        ("alice@example.com", &[][..]),
        ("bob@example.com", &[][..]),
        ("carol@example.com", &[][..]),
        ("dave@example.com", &[][..]),
        ("em@example.com", &["engineering-manager"][..]),
        ("cm@example.com", &["change-manager"][..]),
        // Two members of one role: their approvals of one change race, one is dropped.
        ("sec1@example.com", &["security-team"][..]),
        ("sec2@example.com", &["security-team"][..]),
    ];
    let who: Vec<&str> = people.iter().map(|p| p.0).collect();
    let (t, clones) = Team::new(&who);
    let made: Vec<HashMap<String, i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = clones
            .iter()
            .zip(people.iter())
            .enumerate()
            .map(|(i, (c, p))| scope.spawn(move || act(c, 7 + i as u64, p.1)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A final sync everywhere (twice: the first round brings the last pushes to everyone).
    for _ in 0..2 {
        for c in &clones {
            let r = c.chg(&["sync", "--attempts", "40"]);
            assert_eq!(r.code, 0, "{}: {}", c.who, r.stderr);
        }
    }
    let head = clones[0].head();
    for c in &clones {
        assert_eq!(c.head(), head, "{} disagrees", c.who);
        assert_eq!(c.git(&["status", "--porcelain"]), "", "{}", c.who);
    }
    // Every step made and not dropped is on the remote exactly once, by its author.
    let log = t.remote_log("%ae %(trailers:key=Chg-Action,valueonly,separator=)");
    let mut on_remote: HashMap<(String, String), i64> = HashMap::new();
    for line in log.lines() {
        let (email, action) = line.split_once(' ').unwrap();
        if !action.is_empty() && action != "init" {
            *on_remote
                .entry((email.to_owned(), action.to_owned()))
                .or_default() += 1;
        }
    }
    let mut expected: HashMap<(String, String), i64> = HashMap::new();
    for (p, m) in people.iter().zip(&made) {
        for (action, n) in m {
            if *n != 0 {
                expected.insert((p.0.to_owned(), action.clone()), *n);
            }
        }
    }
    if on_remote != expected {
        eprintln!("kept: {}", t.dir.path().display());
        std::mem::forget(t);
        panic!("{on_remote:?}\n!=\n{expected:?}");
    }
    let total: i64 = expected.values().sum();
    assert!(
        total >= soak("CHG_SOAK_STEPS", 25) as i64 * 4,
        "only {total} steps were made: {expected:?}"
    );
    assert!(
        expected.contains_key(&("em@example.com".into(), "approve".into()))
            && expected.contains_key(&("cm@example.com".into(), "approve".into())),
        "{expected:?}"
    );
    // Every kind of step happened, so a step that always fails cannot hide in the total
    // (rejections and cancellations race and may all be dropped: they are made below).
    for action in ["new", "schedule", "edit", "approve", "implement", "close"] {
        assert!(
            expected.iter().any(|((_, a), n)| a == action && *n > 0),
            "no {action} was made: {expected:?}"
        );
    }
    // A rejection and a cancellation, made and synced where nothing races them.
    let alice = &clones[0];
    let em = clones.iter().find(|c| c.who == "em@example.com").unwrap();
    let rejected = alice.new_change("to reject");
    let cancelled = alice.new_change("to cancel");
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    em.chg(&["reject", &rejected, "--comment", "no"]).ok();
    em.chg(&["sync"]).ok();
    alice.chg(&["sync"]).ok();
    alice.chg(&["cancel", &cancelled, "--reason", "later"]).ok();
    alice.chg(&["sync"]).ok();
    let log = t.remote_log("%(trailers:key=Chg-Action,valueonly,separator=)");
    assert!(
        log.lines().any(|l| l == "reject") && log.lines().any(|l| l == "cancel"),
        "{log}"
    );
    // Two people file a change each before syncing: the same id; the second sync moves its
    // change to the next free one.
    let bob = clones.iter().find(|c| c.who == "bob@example.com").unwrap();
    bob.chg(&["sync"]).ok();
    let mine = alice.new_change("same id, alice");
    let theirs = bob.new_change("same id, bob");
    assert_eq!(mine, theirs);
    alice.chg(&["sync"]).ok();
    let r = bob.chg(&["sync", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["renumbered"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.stdout
    );
    // Ids are unique (validate reports duplicates), and the history audits clean.
    clones[0].chg(&["validate"]).ok();
    clones[0].chg(&["audit"]).ok();
    t.assert_remote_sound();
}

/// Starts `chg args` in `c`, kills it (SIGKILL) after `ms` milliseconds, and waits for it.
fn kill_after(c: &Clone, args: &[&str], ms: u64) {
    let mut child = c
        .cmd(env!("CARGO_BIN_EXE_chg"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// After a kill: the store validates, git fsck passes and nothing is left uncommitted.
fn assert_sound(c: &Clone, run: usize) {
    let r = c.chg(&["validate"]);
    assert_eq!(r.code, 0, "run {run}: {}{}", r.stdout, r.stderr);
    c.git(&["fsck", "--no-progress"]);
    assert_eq!(c.git(&["status", "--porcelain"]), "", "run {run}");
}

#[test]
fn a_hundred_kills_during_transitions_and_syncs_lose_and_double_nothing() {
    let (t, c) = Team::new(&["alice@example.com", "em@example.com"]);
    let (alice, em) = (&c[0], &c[1]);
    let pending: Vec<String> = (0..soak("CHG_SOAK_KILLS", 100) / 3 + 1)
        .map(|i| alice.new_change(&format!("p{i}")))
        .collect();
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    let mut rng = Lcg(42);
    let count = |text: &str, needle: &str| text.matches(needle).count();
    for run in 0..soak("CHG_SOAK_KILLS", 100) {
        let ms = rng.next(40) as u64;
        match run % 3 {
            // A new change, killed; rerun unless it was filed.
            0 => {
                let title = format!("k{run}");
                let mut args = new_args(&title);
                kill_after(alice, &args, ms);
                assert_sound(alice, run);
                let filed = |c: &Clone| {
                    count(
                        &c.chg(&["list", "--json"]).ok().stdout,
                        &format!("\"title\": \"{title}\""),
                    )
                };
                if filed(alice) == 0 {
                    args[0] = "new";
                    alice.chg(&args).ok();
                }
                assert_eq!(filed(alice), 1, "run {run}");
            }
            // An approval, killed; rerunning it either completes it or is refused.
            1 => {
                let id = &pending[run / 3];
                kill_after(em, &["approve", id], ms);
                assert_sound(em, run);
                let again = em.chg(&["approve", id]);
                assert!(
                    again.code == 0 || again.code == 1,
                    "run {run}: {}",
                    again.stderr
                );
                let text = em.read(id);
                assert_eq!(
                    count(&text, "role: engineering-manager"),
                    1,
                    "run {run}: {text}"
                );
                let log = em.git(&[
                    "log",
                    "--format=%s",
                    "--",
                    &format!("changes/*/*/{id}.yaml"),
                ]);
                assert_eq!(count(&log, ": approve"), 1, "run {run}: {log}");
            }
            // A sync with a local step, killed; a rerun pushes it exactly once.
            _ => {
                let title = format!("s{run}");
                alice.chg(&new_args(&title)).ok();
                kill_after(alice, &["sync"], ms);
                assert_sound(alice, run);
                alice.chg(&["sync"]).ok();
                let subjects = t.remote_log("%s");
                assert_eq!(count(&subjects, &format!(": {title}\n")), 1, "run {run}");
                assert_eq!(
                    alice.head(),
                    alice.git(&["ls-remote", "origin", "main"])[..40]
                );
            }
        }
    }
    for p in [alice, em] {
        p.chg(&["sync"]).ok();
    }
    alice.chg(&["sync"]).ok();
    assert_eq!(alice.head(), em.head());
    alice.chg(&["validate"]).ok();
    alice.chg(&["audit"]).ok();
    t.assert_remote_sound();
}

#[test]
fn one_person_filing_the_same_change_from_two_clones_in_one_second_keeps_both() {
    let (t, c) = Team::new(&["alice@example.com", "bob@example.com"]);
    // Both clones act as alice, at the same instant, with the same content.
    let as_alice = |clone: &Clone, args: &[&str]| {
        run_output(
            clone
                .cmd(env!("CARGO_BIN_EXE_chg"))
                .env("GIT_AUTHOR_NAME", "alice")
                .env("GIT_AUTHOR_EMAIL", "alice@example.com")
                .env("CHG_NOW", "2026-11-22T10:00:00Z")
                .args(args)
                .output()
                .unwrap(),
        )
        .ok()
    };
    let a = as_alice(&c[0], &new_args("Same")).stdout;
    let b = as_alice(&c[1], &new_args("Same")).stdout;
    assert_eq!(a, b);
    c[0].chg(&["sync"]).ok();
    let r = c[1].chg(&["sync"]).ok();
    assert!(r.stdout.contains("renumbered:"), "{}", r.stdout);
    let news = t.remote_log("%(trailers:key=Chg-Action,valueonly,separator=)");
    assert_eq!(news.lines().filter(|l| *l == "new").count(), 2, "{news}");
    // The replayed commit names the commit it came from.
    let synced = t.remote_log("%(trailers:key=Chg-Synced-From,valueonly,separator=)");
    assert_eq!(synced.lines().next().map(str::len), Some(40), "{synced}");
    c[1].chg(&["audit"]).ok();
}

/// An interrupted sync can leave its `git push` running, which then moves the tracking ref
/// under the next sync's fetch; the fetch is tried again instead of failing the sync.
#[test]
fn a_tracking_ref_held_by_another_git_for_a_moment_does_not_fail_the_sync() {
    let (t, c) = Team::new(&["alice@example.com", "em@example.com"]);
    let (alice, em) = (&c[0], &c[1]);
    em.new_change("upstream");
    em.chg(&["sync"]).ok();
    let lock = alice.root.join(".git/refs/remotes/origin/main.lock");
    std::fs::write(&lock, "").unwrap();
    let release = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::remove_file(lock).unwrap();
        })
    };
    alice.chg(&["sync"]).ok();
    release.join().unwrap();
    assert_eq!(alice.head(), t.remote_log("%H").lines().next().unwrap());
    // Held for good, the sync gives up with git's reason, and nothing moved.
    em.new_change("again");
    em.chg(&["sync"]).ok();
    let before = alice.head();
    std::fs::write(&lock, "").unwrap();
    let r = alice.chg(&["sync"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot lock ref"), "{}", r.stderr);
    assert_eq!(alice.head(), before);
    std::fs::remove_file(&lock).unwrap();
}

#[test]
fn a_replayed_schedule_that_overlaps_one_made_upstream_stops_the_sync() {
    let (t, c) = Team::new(&["alice@example.com", "em@example.com"]);
    let (alice, em) = (&c[0], &c[1]);
    let policy = alice.root.join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("overlap: warn", "overlap: block")).unwrap();
    alice.git(&["commit", "-qam", "block overlaps"]);
    let a = alice.new_change("First on the system");
    let b = alice.new_change("Second on the system");
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    let window = [
        "--start",
        "2030-05-01T10:00:00Z",
        "--end",
        "2030-05-01T12:00:00Z",
    ];
    alice
        .chg(&[&["schedule", a.as_str()][..], &window].concat())
        .ok();
    em.chg(&[&["schedule", b.as_str()][..], &window].concat())
        .ok();
    alice.chg(&["sync"]).ok();
    let remote_before = t.remote_log("%H");
    let r = em.chg(&["sync"]).code(1);
    assert!(
        r.stderr.contains(&format!("{b} `schedule`")) && r.stderr.contains(&a),
        "{}",
        r.stderr
    );
    assert_eq!(t.remote_log("%H"), remote_before, "nothing was pushed");
    em.chg(&["sync", "--drop-stale"]).ok();
    em.chg(&["validate"]).ok();
}

#[test]
fn a_signed_approval_replayed_by_sync_still_verifies() {
    let (t, c) = Team::new(&["alice@example.com", "em@example.com", "cm@example.com"]);
    let (alice, em, cm) = (&c[0], &c[1], &c[2]);
    // Each approver has a key; alice turns signing on by a policy commit.
    let mut lines = String::new();
    for who in [em, cm] {
        let name = who.who.split('@').next().unwrap();
        let key = t.dir.path().join(format!("key-{name}"));
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success());
        who.git(&["config", "user.signingkey", key.to_str().unwrap()]);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        lines.push_str(&format!("{} {}", who.who, public));
    }
    std::fs::write(alice.root.join("policy/allowed_signers"), lines).unwrap();
    let policy = alice.root.join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        format!("{text}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [approve, reject]\n"),
    )
    .unwrap();
    alice.git(&["add", "policy"]);
    alice.git(&["commit", "-qm", "sign approvals"]);
    let id = alice.new_change("Rotate certificates");
    alice.chg(&["sync"]).ok();
    em.chg(&["sync"]).ok();
    cm.chg(&["sync"]).ok();
    // Both sign on the same version; cm's approval is replayed onto em's.
    em.chg(&["approve", &id]).ok();
    cm.chg(&["approve", &id]).ok();
    em.chg(&["sync"]).ok();
    let r = cm.chg(&["sync"]).ok();
    assert!(
        r.stdout.contains("replayed 1 local step(s)"),
        "{}",
        r.stdout
    );
    let text = cm.read(&id);
    assert!(text.contains("status: approved"), "{text}");
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 2, "{text}");
    alice.chg(&["sync"]).ok();
    for who in [alice, em, cm] {
        who.chg(&["sync"]).ok();
        who.chg(&["validate"]).ok();
        let r = who.chg(&["audit"]).ok();
        assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);
        let show = who.chg(&["show", &id]).ok().stdout;
        assert_eq!(show.matches("signed SHA256:").count(), 2, "{show}");
    }
    t.assert_remote_sound();
}

#[test]
fn a_policy_apply_made_offline_is_not_replayed_without_its_policy() {
    let (t, c) = Team::new(&[
        "alice@example.com",
        "cm@example.com",
        "sec-lead@example.com",
    ]);
    let (alice, cm, lead) = (&c[0], &c[1], &c[2]);
    let policy = alice.root.join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        format!("{text}governance:\n  roles: [security-team-lead]\n"),
    )
    .unwrap();
    alice.git(&["commit", "-qam", "adopt governance"]);
    std::fs::write(
        &policy,
        format!("{text}governance:\n  roles: [security-team-lead]\n").replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, carol@example.com]",
        ),
    )
    .unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend(new_args("Add carol")[1..].iter().copied());
    let id = alice.chg(&args).ok().stdout.trim().to_owned();
    alice.git(&["checkout", "-q", "--", "policy"]);
    alice.chg(&["sync"]).ok();
    for who in [cm, lead] {
        who.chg(&["sync"]).ok();
        who.chg(&["approve", &id]).ok();
        who.chg(&["sync"]).ok();
    }
    alice.chg(&["sync"]).ok();
    alice
        .chg(&["schedule", &id, "--start", "now", "--end", "+2h"])
        .ok();
    alice.chg(&["policy", "apply", &id]).ok();
    // Meanwhile the remote moves on.
    cm.chg(&["sync"]).ok();
    cm.new_change("Something else");
    cm.chg(&["sync"]).ok();
    let before = alice.head();
    let r = alice.chg(&["sync"]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("chg policy apply {id}")),
        "{}",
        r.stderr
    );
    assert_eq!(alice.head(), before, "nothing changed");
    // Doing it again on the synced branch works and lands.
    alice.chg(&["sync", "--drop-stale"]).ok();
    alice.chg(&["policy", "apply", &id]).ok();
    alice.chg(&["sync"]).ok();
    let remote_policy = t.remote_git(&["show", "main:policy/policy.yaml"]);
    assert!(String::from_utf8_lossy(&remote_policy.stdout).contains("carol@example.com"));
    alice.chg(&["validate"]).ok();
    t.assert_remote_sound();
}
