//! The commands' main outputs, pinned: each snapshot holds the command, its exit code, its
//! stdout and its stderr together, so a change to any of them shows up in review. Identity
//! and time are pinned (see `Store::cmd`), which also pins the commit ids.

use super::*;

/// Runs each command as `who` and records it in one transcript.
struct Transcript<'s> {
    store: &'s Store,
    text: String,
}

impl<'s> Transcript<'s> {
    fn new(store: &'s Store) -> Self {
        Transcript {
            store,
            text: String::new(),
        }
    }

    fn run(&mut self, who: &str, args: &[&str]) -> Run {
        let r = self.store.chg(who, args);
        self.record(&format!("chg {}   # as {who}", args.join(" ")), &r);
        r
    }

    /// Adds a run to the transcript, with the temporary folder's path replaced.
    fn record(&mut self, what: &str, r: &Run) {
        let tmp = self.store.dir.path().display().to_string();
        self.text.push_str(
            &format!(
                "$ {what}\nexit: {}\n--- stdout\n{}--- stderr\n{}\n",
                r.code, r.stdout, r.stderr
            )
            .replace(&tmp, "[TMP]"),
        );
    }
}

#[test]
fn a_life_cycle_and_its_refusals() {
    let mut s = Store::new();
    s.at("2025-03-10T10:00:00Z");
    let mut t = Transcript::new(&s);
    t.run("alice@example.com", &["new", "--title", "Half a change"]);
    let id = t
        .run("alice@example.com", COMPLETE)
        .stdout
        .trim()
        .to_owned();
    t.run("alice@example.com", &["approve", &id]);
    t.run("mallory@example.com", &["approve", &id]);
    t.run("em@example.com", &["approve", &id, "-m", "Looks fine"]);
    t.run("em@example.com", &["approve", &id]);
    t.run("bob@example.com", &["implement", &id]);
    t.run("cm@example.com", &["approve", &id]);
    t.run("bob@example.com", &["implement", &id]);
    t.run("bob@example.com", &["gate", &id]);
    t.run(
        "bob@example.com",
        &[
            "schedule",
            &id,
            "--start",
            "2025-03-10T09:00:00Z",
            "--end",
            "2025-03-10T11:00:00Z",
        ],
    );
    t.run("bob@example.com", &["gate", &id]);
    t.run("bob@example.com", &["implement", &id]);
    t.run("bob@example.com", &["close", &id, "--outcome", "failed"]);
    t.run(
        "bob@example.com",
        &[
            "close",
            &id,
            "--outcome",
            "failed",
            "--review",
            "Reload failed; rolled forward",
        ],
    );
    t.run("bob@example.com", &["show", &id]);
    t.run("bob@example.com", &["log", &id]);
    t.run("bob@example.com", &["list"]);
    t.run("bob@example.com", &["validate"]);
    t.run("bob@example.com", &["audit"]);
    t.run("bob@example.com", &["show", "CHG-2025-999"]);
    t.run("bob@example.com", &["show", "../etc/passwd"]);
    insta::assert_snapshot!(t.text);
}

#[test]
fn outside_a_store_and_without_an_identity() {
    let s = Store::bare();
    let mut t = Transcript::new(&s);
    t.run("alice@example.com", &["list"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chg"));
    base_env(&mut cmd, &s.dir.path().join("home"));
    let r = run_output(cmd.current_dir(s.root()).arg("init").output().unwrap());
    t.record("chg init   # with no identity", &r);
    t.text.push_str(&format!(
        ".git created: {}\n",
        s.root().join(".git").exists()
    ));
    insta::assert_snapshot!(t.text);
}
