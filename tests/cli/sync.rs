//! Many clones, one truth: `chg renumber` for ids claimed twice, `chg sync` between clones
//! of one bare remote (replayed transitions, renumbered ids, stale steps kept on a named
//! ref), and processes killed in the middle of transitions and syncs.

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

/// A bare remote and clones of it, each acting as one person, on the real clock.
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

    /// `git log` of the remote's main.
    fn remote_log(&self, format: &str) -> String {
        let o = Command::new("git")
            .arg("--git-dir")
            .arg(self.remote())
            .args(["log", &format!("--format={format}"), "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Clone {
    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        base_env(&mut cmd, &self.home);
        let name = self.who.split('@').next().unwrap();
        cmd.current_dir(&self.root)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", &self.who)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", &self.who);
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
