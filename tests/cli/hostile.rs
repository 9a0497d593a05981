//! Hostile states and inputs: odd repository layouts, crafted files, corrupted caches. Each
//! test builds the state with real git, runs the real binary, and ends with `git fsck` clean
//! and nothing a user committed overwritten.

use std::path::Path;

use super::{Store, run_output};

impl Store {
    /// `git fsck` finds nothing wrong.
    fn fsck(&self) {
        self.git(&["fsck", "--no-progress", "--strict"]);
    }

    /// `chg ARGS` as `who`, from `dir` instead of the store's root.
    fn chg_in(&self, dir: &Path, who: &str, args: &[&str]) -> super::Run {
        let mut cmd = self.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), who);
        run_output(cmd.current_dir(dir).args(args).output().unwrap())
    }
}

#[test]
fn a_gitlink_dot_git_file_commits_paths_of_the_real_work_tree() {
    let s = Store::bare();
    let gd = s.dir.path().join("elsewhere.git");
    s.git(&[
        "init",
        "-q",
        "-b",
        "main",
        "--separate-git-dir",
        gd.to_str().unwrap(),
    ]);
    s.chg("alice@example.com", &["init"]).ok();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    let files = s.git(&["ls-files"]);
    assert!(files.lines().any(|l| l == "policy/policy.yaml"), "{files}");
    assert!(
        files.lines().all(|l| !l.starts_with("repo/")),
        "paths outside the work tree: {files}"
    );
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    s.chg("alice@example.com", &["validate"]).ok();
    s.fsck();
}

#[test]
fn git_dir_and_git_work_tree_are_honoured_as_git_does() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // Run from an unrelated folder, naming the repository as git users do.
    let away = s.dir.path().join("away");
    std::fs::create_dir(&away).unwrap();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    let r = run_output(
        cmd.current_dir(&away)
            .env("GIT_DIR", s.root().join(".git"))
            .env("GIT_WORK_TREE", s.root())
            .args(["approve", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // em's approval is in the file (a medium change still waits for change-manager).
    let text = s.read(&id);
    assert!(
        text.contains("- by: em@example.com\n  role: engineering-manager")
            && text.contains("status: pending_approval"),
        "{text}"
    );
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    s.fsck();
}

#[test]
fn an_identity_with_a_newline_is_refused_and_never_written() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let before = s.snapshot();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    let r = run_output(
        cmd.env("GIT_AUTHOR_NAME", "Eve\nChg-Action: approve")
            .args(["approve", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    super::assert_unchanged(&s, &before);
    s.fsck();
}

#[test]
fn a_sparse_checkout_never_reuses_a_committed_id() {
    let s = Store::new();
    let first = s.new_change(&[]);
    let committed = s.git(&["show", &format!("HEAD:{}", rel(&s, &first))]);
    s.git(&["sparse-checkout", "set", "--no-cone", "/policy/"]);
    assert!(
        !s.file_exists(&first),
        "sparse checkout should hide the change"
    );
    let second = s.new_change(&[]);
    assert_ne!(first, second);
    assert_eq!(
        s.git(&["show", &format!("HEAD:{}", rel(&s, &first))]),
        committed,
        "the committed change was overwritten"
    );
    s.fsck();
}

#[test]
fn a_misplaced_change_file_keeps_its_id() {
    let s = Store::new();
    let misc = s.root().join("changes/misc");
    std::fs::create_dir_all(&misc).unwrap();
    let id = s.new_change(&[]);
    let from = s.file(&id);
    let year = &id[4..8];
    let taken = format!("CHG-{year}-007");
    std::fs::write(
        misc.join(format!("{taken}.yaml")),
        std::fs::read_to_string(&from).unwrap().replace(&id, &taken),
    )
    .unwrap();
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "file one by hand in the wrong place"]);
    let next = s.new_change(&[]);
    assert_eq!(next, format!("CHG-{year}-008"));
    s.fsck();
}

#[test]
fn transitions_are_judged_by_the_committed_policy() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // An uncommitted edit that puts mallory in every approving role.
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("em@example.com", "em@example.com, mallory@example.com"),
    )
    .unwrap();
    assert!(text.contains("em@example.com"), "{text}");
    let before = s.snapshot();
    let r = s.chg("mallory@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("uncommitted edits"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    let r = s.chg("alice@example.com", &["validate"]).ok();
    assert!(r.stdout.contains("policy-uncommitted"), "{}", r.stdout);
    s.fsck();
}

#[test]
fn a_linked_worktree_has_its_own_crash_journal() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let wt = s.dir.path().join("wt");
    s.git(&["worktree", "add", "-q", "-b", "other", wt.to_str().unwrap()]);
    // A journal left by a transition killed in the main work tree …
    let journal = s.root().join(".git/chg/txn.json");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, "{\"half\": \"written\"}").unwrap();
    // … is not the linked worktree's to repair.
    let r = s.chg_in(&wt, "em@example.com", &["approve", &id]).ok();
    assert!(!r.stderr.contains("repaired"), "{}", r.stderr);
    assert!(
        journal.exists(),
        "the main work tree's journal was consumed"
    );
    std::fs::remove_file(&journal).unwrap();
    s.fsck();
}

impl Store {
    fn file_exists(&self, id: &str) -> bool {
        let year = &id[4..8];
        (1..=12).any(|m| {
            self.root()
                .join(format!("changes/{year}/{m:02}/{id}.yaml"))
                .exists()
        })
    }
}

/// The path of `id`'s file in HEAD.
fn rel(s: &Store, id: &str) -> String {
    s.git(&["ls-tree", "-r", "--name-only", "HEAD", "changes"])
        .lines()
        .find(|l| l.ends_with(&format!("{id}.yaml")))
        .unwrap()
        .to_owned()
}

#[test]
fn approvals_whose_digest_was_deleted_do_not_count() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    // A plan nobody approved, with the digests that would betray it deleted.
    s.rewrite(&id, |t| {
        t.replace(
            "Upload the new certificate and reload",
            "Open SSH to the world",
        )
        .lines()
        .filter(|l| !l.trim_start().starts_with("digest:"))
        .map(|l| format!("{l}\n"))
        .collect()
    });
    s.git(&["commit", "-qam", "tidy"]);
    s.at("2025-03-11T09:30:00Z");
    let before = s.snapshot();
    let r = s.chg("bob@example.com", &["implement", &id]).code(1);
    assert!(
        r.stderr.contains("history does not verify") && r.stderr.contains("(manual-approval)"),
        "{}",
        r.stderr
    );
    super::assert_unchanged(&s, &before);
    let r = s
        .chg(
            "bob@example.com",
            &["gate", &id, "--at", "2025-03-11T09:30:00Z"],
        )
        .code(1);
    assert!(r.stdout.contains("digest"), "{}{}", r.stdout, r.stderr);
    let r = s.chg("bob@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("approval-digest"), "{}", r.stdout);
    // Audit reports the hand edit that dropped them, once.
    let r = s.chg("bob@example.com", &["audit"]).code(1);
    assert_eq!(
        r.stdout.matches("manual-approval").count(),
        1,
        "{}",
        r.stdout
    );
    s.fsck();
}

#[test]
#[cfg(feature = "failpoints")]
fn an_index_lock_left_by_a_killed_process_group_is_cleared_by_the_repair() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    let r = run_output(
        cmd.env("CHG_TEST_FAILPOINT", "after-ref")
            .args(["approve", &id])
            .output()
            .unwrap(),
    );
    assert_ne!(r.code, 0);
    // The dead process's `git update-index` held the index lock when the group was killed.
    std::fs::write(s.root().join(".git/index.lock"), b"").unwrap();
    let r = s.chg("cm@example.com", &["approve", &id]).ok();
    assert!(r.stderr.contains("repaired"), "{}", r.stderr);
    assert!(!s.root().join(".git/index.lock").exists());
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    s.fsck();
}

/// The files of the audit index of branch main.
fn audit_cache(s: &Store) -> std::path::PathBuf {
    s.root().join(".git/chg/audit/refs%2Fheads%2Fmain")
}

/// (exit code, exception count) of `chg audit`.
fn audit_exceptions(s: &Store) -> (i32, u64, String) {
    let r = s.chg("alice@example.com", &["audit", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    (r.code, v["exceptions"].as_u64().unwrap(), r.stderr)
}

#[test]
fn a_corrupted_audit_cache_is_rebuilt_never_trusted() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // An exception: the status moved by hand.
    s.rewrite(&id, |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    s.git(&["commit", "-qam", "approve it myself"]);
    let (code, want, _) = audit_exceptions(&s);
    assert_eq!(code, 1);
    assert!(want > 0);
    let findings = audit_cache(&s).join("findings.jsonl");
    let garbage: [&[u8]; 3] = [b"", b"{\"level\":\"note\"}\n", b"\xff\xfe\x00garbage\n"];
    for bytes in garbage {
        std::fs::write(&findings, bytes).unwrap();
        let (code, got, stderr) = audit_exceptions(&s);
        assert_eq!((code, got), (1, want), "{bytes:?}: {stderr}");
        assert!(stderr.contains("did not verify"), "{stderr}");
    }
    // A garbled meta that still parses is not trusted either.
    let meta = audit_cache(&s).join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replace("\"commits\":", "\"commits\": ")).unwrap();
    let (code, got, stderr) = audit_exceptions(&s);
    assert_eq!((code, got), (1, want), "{stderr}");
    // The history `chg log` prints survives a garbled log file.
    let before = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert!(before.contains("new"), "{before}");
    for f in std::fs::read_dir(audit_cache(&s).join("log")).unwrap() {
        std::fs::write(f.unwrap().path(), b"\x00\x01 not json\n").unwrap();
    }
    let after = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert_eq!(before, after);
    s.fsck();
}

#[test]
fn chg_log_does_not_consume_the_history_rewritten_exception() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    s.git(&["reset", "-q", "--hard", "HEAD~1"]);
    s.chg("alice@example.com", &["log", &id]).ok();
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(r.stdout.contains("history-rewritten"), "{}", r.stdout);
    // Reported once; a note after.
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(r.stdout.contains("note: history-rewritten"), "{}", r.stdout);
    s.fsck();
}

#[test]
fn a_crlf_checkout_is_clean_as_git_sees_it() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.git(&["config", "core.autocrlf", "true"]);
    std::fs::remove_dir_all(s.root().join("changes")).unwrap();
    std::fs::remove_dir_all(s.root().join("policy")).unwrap();
    s.git(&["checkout", "--", "."]);
    assert!(
        std::fs::read_to_string(s.file(&id))
            .unwrap()
            .contains("\r\n")
    );
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    let r = s.chg("em@example.com", &["approve", &id]).ok();
    assert!(!r.stderr.contains("uncommitted"), "{}", r.stderr);
    s.chg("cm@example.com", &["approve", &id]).ok();
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    // The repository holds LF, as git add would have stored it.
    let blob = s.git(&["show", &format!("HEAD:{}", rel(&s, &id))]);
    assert!(!blob.contains('\r'), "{blob:?}");
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    s.fsck();
}

#[test]
fn a_shallow_clone_is_audited_from_where_its_history_begins() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.new_change(&[]);
    let clone = s.dir.path().join("shallow");
    let url = format!("file://{}", s.root().display());
    s.git(&["clone", "-q", "--depth", "2", &url, clone.to_str().unwrap()]);
    let r = s.chg_in(&clone, "alice@example.com", &["audit"]).ok();
    assert!(r.stdout.contains("note: shallow-boundary"), "{}", r.stdout);
    assert!(!r.stdout.contains("multiple-files"), "{}", r.stdout);
    let r = s.chg_in(&clone, "alice@example.com", &["log", &id]).ok();
    assert!(r.stderr.contains("shallow clone"), "{}", r.stderr);
    assert!(!r.stdout.contains("manual"), "{}", r.stdout);
    // Deepened, the whole history is audited.
    let mut git = s.cmd(Path::new("git"), "alice@example.com");
    let o = git
        .current_dir(&clone)
        .args(["fetch", "-q", "--unshallow"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let r = s.chg_in(&clone, "alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains("shallow-boundary"), "{}", r.stdout);
    assert!(r.stderr.contains("index rebuilt"), "{}", r.stderr);
}

/// No raw escape sequence, carriage return or bidi override, and no line a CI runner would
/// read as a workflow command.
fn assert_harmless(what: &str, text: &str) {
    for bad in ['\x1b', '\r', '\u{202e}', '\u{9b}'] {
        assert!(!text.contains(bad), "{what}: raw {bad:?} in {text:?}");
    }
    for line in text.lines() {
        assert!(!line.trim_start().starts_with("::"), "{what}: {line:?}");
    }
}

#[test]
fn control_characters_and_ci_commands_in_files_reach_no_terminal_raw() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.rewrite(&id, |t| {
        t.replace(
            "title: Rotate TLS certificates",
            "title: \"Rotate\\e[2J\\r\\u202E\\n::error::pwned\"\n\"bad\\ekey\": 1",
        )
    });
    s.git(&["commit", "-qam", "::warning::hand edit\x1b[31m"]);
    for args in [
        vec!["show", id.as_str()],
        vec!["list"],
        vec!["list", "--format", "csv"],
        vec!["log", id.as_str()],
        vec!["validate"],
        vec!["audit"],
        vec!["approve", id.as_str()],
    ] {
        let r = s.chg("em@example.com", &args);
        assert_harmless(&format!("{args:?} stdout"), &r.stdout);
        assert_harmless(&format!("{args:?} stderr"), &r.stderr);
    }
    // validate keeps one finding per line.
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout
            .lines()
            .all(|l| l.starts_with("changes/") || l.starts_with("policy/")),
        "{}",
        r.stdout
    );
    // Readable again, the title itself is shown escaped.
    s.rewrite(&id, |t| t.replace("\"bad\\ekey\": 1\n", ""));
    let r = s.chg("alice@example.com", &["show", &id]).ok();
    assert!(r.stdout.contains("Rotate\\x1b[2J"), "{}", r.stdout);
    assert_harmless("show", &r.stdout);
}

#[test]
fn csv_cells_are_never_spreadsheet_formulas() {
    let s = Store::new();
    let args = [
        super::COMPLETE,
        &["--title", "=HYPERLINK(\"http://evil\",\"x\")"],
    ]
    .concat();
    s.chg("alice@example.com", &args).ok();
    let r = s
        .chg("alice@example.com", &["list", "--format", "csv"])
        .ok();
    assert!(r.stdout.contains("'=HYPERLINK"), "{}", r.stdout);
    assert!(!r.stdout.contains(",=HYPERLINK"), "{}", r.stdout);
    let out = s.export_2025();
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    assert!(population.contains("'=HYPERLINK"), "{population}");
}

#[test]
fn times_never_go_back_on_a_change() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    // A clock set back a day.
    s.at("2025-03-09T10:00:00Z");
    let before = s.snapshot();
    let r = s.chg("em@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("later than now"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    // Written by hand: approved before it was requested.
    s.rewrite(&id, |t| {
        t.replace(
            "status: pending_approval\n",
            "status: pending_approval\napprovals:\n- by: em@example.com\n  role: engineering-manager\n  decision: approved\n  at: 2025-03-01T00:00:00Z\n",
        )
    });
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("time-order"), "{}", r.stdout);
    assert!(r.stdout.contains(":20:7: time-order"), "{}", r.stdout);
    let r = s.chg("alice@example.com", &["report", "--format", "json"]);
    assert!(!r.stdout.contains(": -"), "{}", r.stdout);
}

#[test]
fn no_file_is_written_past_the_limit_chg_reads() {
    let s = Store::new();
    let input = s.dir.path().join("big.yaml");
    let head = "title: Big\ndescription: ";
    let tail = "\nbusiness_justification: j\nchange_type: feature\npriority: low\nrisk_level: low\naffected_systems: [api]\nimplementation_plan: p\nrollback_plan: r\n";
    let fill = 1024 * 1024 - head.len() - tail.len() - 10;
    std::fs::write(&input, format!("{head}{}{tail}", "x".repeat(fill))).unwrap();
    let before = s.snapshot();
    let r = s
        .chg(
            "alice@example.com",
            &["new", "--from", input.to_str().unwrap()],
        )
        .code(2);
    assert!(r.stderr.contains("over chg's limit"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    s.fsck();
}

#[test]
#[cfg(unix)]
fn special_files_are_refused_not_read_forever() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["new", "--from", "/dev/zero"])
        .code(2);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    // A FIFO in the place of a change file.
    let file = s.file(&id);
    std::fs::remove_file(&file).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(fifo.success());
    let r = s.chg("em@example.com", &["approve", &id]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("not a regular file"), "{}", r.stdout);
    std::fs::remove_file(&file).unwrap();
    s.git(&["checkout", "--", "."]);
    s.fsck();
}

impl Store {
    /// `chg edit ID` with `script` (a shell script given the file) as the editor.
    fn edit_with(&self, id: &str, script: &str) -> super::Run {
        let path = self.dir.path().join(format!("editor-{}.sh", script.len()));
        std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
        let mut cmd = self.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
        run_output(
            cmd.env("EDITOR", format!("sh {}", path.display()))
                .args(["edit", id])
                .output()
                .unwrap(),
        )
    }
}

#[test]
#[cfg(target_os = "linux")]
fn ctrl_c_while_the_editor_runs_does_not_lose_the_saved_edit() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // The editor saves, then the user presses Ctrl-C: SIGINT reaches chg too.
    let r = s.edit_with(
        &id,
        r#"sed -i 's/Rotate TLS certificates/Rotate TLS certs/' "$1"
p=$PPID
while [ "$(cat /proc/$p/comm)" != chg ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done
kill -INT $p
sleep 0.2
"#,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.read(&id).contains("title: Rotate TLS certs\n"));
    assert_eq!(s.git(&["status", "--porcelain"]), "");
}

#[test]
fn an_edit_that_cannot_be_committed_is_kept_and_resumed() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let before = s.snapshot();
    let r = s.edit_with(
        &id,
        r#"sed -i 's/^priority: medium/priority: urgent/; s/Rotate TLS certificates/Kept title/' "$1""#,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("kept in"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    // The next edit starts from the kept text, not from the committed file.
    let r = s.edit_with(
        &id,
        r#"grep -q 'Kept title' "$1" && sed -i 's/^priority: urgent/priority: high/' "$1""#,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = s.read(&id);
    assert!(
        text.contains("title: Kept title") && text.contains("priority: high"),
        "{text}"
    );
    assert!(!s.root().join(format!(".git/chg/edit/{id}.yaml")).exists());
    s.fsck();
}

#[test]
fn prompts_end_with_ctrl_d_and_ctrl_c_and_write_nothing() {
    let s = Store::new();
    let before = s.snapshot();
    for key in ['\x04', '\x03'] {
        let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
        cmd.env("TERM", "dumb").args(["new", "--title", "Prompted"]);
        // Ctrl-C is the terminal's SIGINT, which chg leaves as it found it: a suite run as
        // a background job of a non-interactive shell (nohup ... &) inherits it ignored, and
        // chg then rightly keeps waiting. The person at this terminal has it as usual.
        // SAFETY: signal(2) with SIG_DFL, between fork and exec, touches no memory.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut p = rexpect::session::spawn_command(cmd, Some(10_000)).unwrap();
        p.exp_string("description").unwrap();
        p.send(&key.to_string()).unwrap();
        p.flush().unwrap();
        p.exp_eof().unwrap();
        let status = format!("{:?}", p.process_mut().wait().unwrap());
        assert!(
            status.contains("Signaled") || (status.contains("Exited") && !status.contains(", 0)")),
            "{key:?}: {status}"
        );
        super::assert_unchanged(&s, &before);
    }
}

#[test]
fn two_stores_in_one_repository_do_not_audit_each_others_commits() {
    let s = Store::bare();
    s.git(&["init", "-q", "-b", "main"]);
    let (a, b) = (s.root().join("a"), s.root().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir(dir).unwrap();
        s.chg_in(dir, "alice@example.com", &["init"]).ok();
        let args = [super::COMPLETE, &[]].concat();
        let id = s.chg_in(dir, "alice@example.com", &args).ok().stdout;
        s.chg_in(dir, "em@example.com", &["approve", id.trim()])
            .ok();
    }
    for dir in [&a, &b] {
        let r = s.chg_in(dir, "alice@example.com", &["audit"]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        // Each keeps its own index: the second run verifies nothing again.
        let r = s.chg_in(dir, "alice@example.com", &["audit"]).ok();
        assert!(r.stderr.contains("(0 verified now)"), "{}", r.stderr);
    }
    s.fsck();
}

#[test]
fn identities_resolve_as_git_resolves_them() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // user.useConfigOnly: git refuses to take $EMAIL, so chg does too.
    s.git(&["config", "user.useConfigOnly", "true"]);
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    let r = run_output(
        cmd.env_remove("GIT_AUTHOR_EMAIL")
            .env_remove("GIT_COMMITTER_EMAIL")
            .env("EMAIL", "em@example.com")
            .args(["approve", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    // The author acts; the committer is the configured user, as `git commit` has it.
    s.git(&["config", "user.name", "Carol"]);
    s.git(&["config", "user.email", "carol@example.com"]);
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "em@example.com");
    let r = run_output(
        cmd.env_remove("GIT_COMMITTER_NAME")
            .env_remove("GIT_COMMITTER_EMAIL")
            .args(["approve", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.git(&["log", "-1", "--format=%ae %ce"]).trim(),
        "em@example.com carol@example.com"
    );
    s.fsck();
}

#[test]
fn commit_times_git_cannot_read_alike_are_refused() {
    let mut s = Store::new();
    let before = s.snapshot();
    for now in [
        "2107-01-01T00:00:00Z",
        "1969-12-31T00:00:00Z",
        "2025-03-10T10:00:00+25:00",
    ] {
        s.at(now);
        let r = s.chg("alice@example.com", super::COMPLETE).code(2);
        assert_eq!(r.stderr.lines().count(), 1, "{now}: {}", r.stderr);
        super::assert_unchanged(&s, &before);
    }
    // Fractional seconds are recorded as whole seconds.
    s.at("2025-03-10T10:00:00.75Z");
    let id = s.new_change(&[]);
    assert!(s.read(&id).contains("request_date: 2025-03-10T10:00:00Z"));
    s.fsck();
}

#[test]
fn commit_gpgsign_signs_chg_commits_as_git_would() {
    let s = Store::new();
    let key = s.dir.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = s.dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {public}")).unwrap();
    for (k, v) in [
        ("commit.gpgsign", "true"),
        ("gpg.format", "ssh"),
        (
            "user.signingkey",
            key.with_extension("pub").to_str().unwrap(),
        ),
        ("gpg.ssh.allowedSignersFile", allowed.to_str().unwrap()),
    ] {
        s.git(&["config", k, v]);
    }
    let id = s.new_change(&[]);
    s.git(&["verify-commit", "HEAD"]);
    // A key that cannot sign stops the step before anything is written.
    s.git(&["config", "user.signingkey", "/nonexistent/key.pub"]);
    let before = s.snapshot();
    let r = s.chg("em@example.com", &["approve", &id]).code(2);
    assert!(r.stderr.contains("could not sign"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    s.git(&["config", "--unset", "user.signingkey"]);
    let r = s.chg("em@example.com", &["approve", &id]).code(2);
    assert!(r.stderr.contains("user.signingkey"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    s.fsck();
}

#[test]
#[cfg(unix)]
fn new_files_take_the_umask_like_any_program_s() {
    use std::os::unix::fs::PermissionsExt;
    let s = Store::new();
    for (umask, want) in [("022", 0o644), ("027", 0o640)] {
        let mut cmd = s.cmd(Path::new("sh"), "alice@example.com");
        let mut args = vec![
            "-c".to_owned(),
            format!("umask {umask}; exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_chg").to_owned(),
        ];
        args.extend(super::COMPLETE.iter().map(|a| a.to_string()));
        let r = run_output(cmd.args(&args).output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mode = std::fs::metadata(s.file(r.stdout.trim()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, want, "umask {umask}");
    }
}

#[test]
fn long_and_odd_branch_names_work() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let branch = format!("{}/x", "ü".repeat(120));
    s.git(&["checkout", "-q", "-b", &branch]);
    s.chg("alice@example.com", &["audit"]).ok();
    s.chg("alice@example.com", &["log", &id]).ok();
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
    s.fsck();
}

#[test]
fn a_held_git_lock_is_explained_in_chg_s_words_and_changes_nothing() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let lock = s.root().join(".git/refs/heads/main.lock");
    std::fs::write(&lock, b"").unwrap();
    let before = s.snapshot();
    let r = s.chg("em@example.com", &["approve", &id]).code(3);
    assert!(!r.stderr.contains("class="), "{}", r.stderr);
    assert!(r.stderr.contains("remove the .lock file"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    std::fs::remove_file(&lock).unwrap();
    s.chg("em@example.com", &["approve", &id]).ok();
    s.fsck();
}
