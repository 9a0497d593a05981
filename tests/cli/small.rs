//! The small things an attacker or a careful user trips over (issue 22, point 8): each one
//! exits with the right code and a clear sentence, and changes nothing when it refuses.

use std::path::Path;

use super::{Store, assert_unchanged, new_args, run_output};

fn chg_env(
    s: &Store,
    who: &str,
    env: &[(&str, &str)],
    remove: &[&str],
    args: &[&str],
) -> super::Run {
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), who);
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_output(cmd.args(args).output().unwrap())
}

#[test]
fn a_nul_in_a_field_is_refused_with_its_place() {
    let s = Store::new();
    let from = s.dir.path().join("nul.yaml");
    std::fs::write(&from, "title: \"a\\0b\"\n").unwrap();
    let before = s.snapshot();
    let mut args = new_args("x");
    args.retain(|a| *a != "--title" && *a != "x");
    args.extend(["--from", from.to_str().unwrap()]);
    let r = s.chg("alice@example.com", &args).code(2);
    assert!(
        r.stderr
            .contains("nul.yaml:1:8: yaml: a value contains a NUL character"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn a_fraction_of_a_second_is_refused_or_judged_never_a_failure() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let before = s.snapshot();
    let r = s
        .schedule(&id, "2025-03-11T09:00:00.5Z", "2025-03-11T10:00:00Z")
        .code(2);
    assert!(
        r.stderr.contains("has a fraction of a second")
            && r.stderr.contains("2025-03-11T09:00:00Z"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    // Judging at a fraction records nothing: the gate answers.
    s.chg(
        "alice@example.com",
        &["gate", &id, "--at", "2025-03-11T09:00:00.25Z"],
    )
    .code(1);
}

#[test]
fn an_edit_dated_before_the_request_is_refused_like_every_step() {
    let mut s = Store::new();
    let id = s.new_change(&[]);
    s.at("2025-03-09T10:00:00Z");
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["set", &id, "title=Earlier"])
        .code(1);
    assert!(r.stderr.contains("later than now"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn git_author_date_is_read_as_git_reads_it() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // Without a zone: the user's local time, as git takes it (TZ here: two hours east).
    chg_env(
        &s,
        "em@example.com",
        &[("GIT_AUTHOR_DATE", "2025-03-11 12:00"), ("TZ", "XYZ-2")],
        &["CHG_NOW"],
        &["approve", &id],
    )
    .ok();
    assert_eq!(
        s.git(&["log", "-1", "--format=%aI"]).trim(),
        "2025-03-11T10:00:00Z"
    );
    assert!(
        s.read(&id).contains("at: 2025-03-11T10:00:00Z"),
        "{}",
        s.read(&id)
    );
    // One git refuses is refused, not replaced by the clock.
    let before = s.snapshot();
    let r = chg_env(
        &s,
        "cm@example.com",
        &[("GIT_AUTHOR_DATE", "garbage")],
        &["CHG_NOW"],
        &["approve", &id],
    )
    .code(2);
    assert!(
        r.stderr
            .contains("GIT_AUTHOR_DATE=`garbage` is not a date git accepts"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn configuration_from_the_environment_is_honoured() {
    // `git -c user.email=…` and GIT_CONFIG_COUNT reach chg as they reach git.
    let s = Store::new();
    let r = chg_env(
        &s,
        "ignored@example.com",
        &[
            ("GIT_CONFIG_COUNT", "2"),
            ("GIT_CONFIG_KEY_0", "user.email"),
            ("GIT_CONFIG_VALUE_0", "zed@example.com"),
            ("GIT_CONFIG_KEY_1", "user.name"),
            ("GIT_CONFIG_VALUE_1", "Zed"),
        ],
        &["GIT_AUTHOR_EMAIL", "GIT_AUTHOR_NAME"],
        &new_args("From the environment"),
    )
    .ok();
    let id = r.stdout.trim().to_owned();
    assert!(
        s.read(&id).contains("requester: zed@example.com"),
        "{}",
        s.read(&id)
    );
    assert_eq!(
        s.git(&["log", "-1", "--format=%an <%ae>"]).trim(),
        "Zed <zed@example.com>"
    );
}

#[test]
fn init_uses_the_identity_git_would_use_in_the_new_repository() {
    let s = Store::bare();
    let home = s.dir.path().join("home");
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\temail = private@example.com\n\tname = Ann\n[includeIf \"gitdir:~/work/\"]\n\tpath = ~/work.inc\n",
    )
    .unwrap();
    std::fs::write(
        home.join("work.inc"),
        "[user]\n\temail = ann@work.example\n",
    )
    .unwrap();
    let target = home.join("work/store");
    let r = chg_env(
        &s,
        "x@example.com",
        &[],
        &[
            "GIT_AUTHOR_EMAIL",
            "GIT_AUTHOR_NAME",
            "GIT_COMMITTER_EMAIL",
            "GIT_COMMITTER_NAME",
        ],
        &["init", target.to_str().unwrap()],
    )
    .ok();
    let _ = r;
    let o = std::process::Command::new("git")
        .args(["log", "-1", "--format=%ae"])
        .current_dir(&target)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "ann@work.example"
    );
}

#[test]
fn a_short_rsa_key_is_refused_with_its_reason() {
    let s = Store::new();
    let key = s.dir.path().join("rsa1024");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    s.enable_signing(&[("em@example.com", &key)], &[]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains("allowed_signers:1:1:")
            && r.stdout.contains("an RSA key of 1024 bits is too weak"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_public_signing_key_without_its_private_half_names_the_key_not_commit_signing() {
    let s = Store::new();
    let em = s.keygen("em");
    s.enable_signing(&[("em@example.com", &em)], &[]);
    let id = s.new_change(&[]);
    std::fs::remove_file(&em).unwrap();
    let before = s.snapshot();
    let r = s
        .signed(
            "em@example.com",
            &em.with_extension("pub"),
            &["approve", &id],
        )
        .code(2);
    assert!(
        r.stderr.contains("could not sign the record")
            && r.stderr.contains("ssh-add")
            && !r.stderr.contains("commit.gpgsign"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn the_audit_says_what_a_plain_commit_did_to_the_policy_and_records() {
    let s = Store::new();
    // A template committed by hand is a policy change like any other (a note, ungoverned).
    let t = s.root().join("policy/templates/tls.yaml");
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::write(&t, "description: d\nbusiness_justification: j\nchange_type: configuration\npriority: low\nrisk_level: low\nimplementation_plan: p\nrollback_plan: r\nvariable: [title, affected_systems]\n").unwrap();
    s.git(&["add", "policy"]);
    s.git(&["commit", "-qm", "a template"]);
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        r.stdout.contains("note: policy-change: the policy was changed by a commit without chg trailers (policy/templates/tls.yaml)"),
        "{}",
        r.stdout
    );
    // A reverted cancellation: the record was removed, not written.
    let id = s.new_change(&[]);
    s.chg("alice@example.com", &["cancel", &id, "--reason", "no"])
        .ok();
    s.git(&["revert", "--no-edit", "HEAD"]);
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(
        r.stdout
            .contains("manual-cancellation: the cancellation record was removed without chg"),
        "{}",
        r.stdout
    );
    // A commit naming a change in its trailers while changing only policy/ shows in its log.
    std::fs::write(&t, "description: changed\nbusiness_justification: j\nchange_type: configuration\npriority: low\nrisk_level: low\nimplementation_plan: p\nrollback_plan: r\nvariable: [title, affected_systems]\n").unwrap();
    s.git(&[
        "commit",
        "-qam",
        &format!("apply\n\nChg-Id: {id}\nChg-Action: implement\n"),
    ]);
    let head = s.git(&["rev-parse", "--short=8", "HEAD"]);
    let log = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert!(log.contains(head.trim()), "{log}");
}

#[test]
fn a_slipped_in_policy_file_is_reported_where_it_is() {
    let s = Store::new();
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    let t = s.root().join("policy/templates/tls.yaml");
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::write(&t, "description: d\nbusiness_justification: j\nchange_type: configuration\npriority: low\nrisk_level: low\nimplementation_plan: p\nrollback_plan: r\nvariable: [title, affected_systems]\n").unwrap();
    s.git(&["add", "policy"]);
    s.git(&["commit", "-qm", "a template"]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout
            .contains("policy/templates/tls.yaml: policy-unauthorized: "),
        "{}",
        r.stdout
    );
}

#[test]
fn a_commit_that_leaves_a_change_unreadable_is_named_by_the_audit() {
    // An unknown key slipped into someone's approval stops their gate: the audit says who.
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.rewrite(&id, |t| t.replace("  digest:", "  extra: 1\n  digest:"));
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    assert!(
        cmd.args(["commit", "-qam", "x"])
            .status()
            .unwrap()
            .success()
    );
    s.chg("bob@example.com", &["gate", &id]).code(2);
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(
        r.stdout.contains("mallory@example.com: malformed-file: ")
            && r.stdout.contains("unknown key `extra` in approvals[0]"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_local_time_is_the_users_not_midnight_utc() {
    // Issue 24, point 1: `2031-02-03T10:30` was recorded as 2031-02-03T00:00:00Z.
    let s = Store::new();
    let id = s.new_change(&[]);
    let berlin = [("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")];
    for (start, recorded) in [
        ("2031-02-03T10:30", "start: 2031-02-03T09:30:00Z"),
        ("2031-02-04 10:30", "start: 2031-02-04T09:30:00Z"),
        ("2031-02-05T10:00:00", "start: 2031-02-05T09:00:00Z"),
        ("2031-02-06", "start: 2031-02-06T00:00:00Z"),
    ] {
        chg_env(
            &s,
            "alice@example.com",
            &berlin,
            &[],
            &["schedule", &id, "--start", start, "--end", "+1h"],
        )
        .ok();
        assert!(s.read(&id).contains(recorded), "{start}: {}", s.read(&id));
    }
    let r = chg_env(
        &s,
        "alice@example.com",
        &berlin,
        &[],
        &["gate", &id, "--at", "2031-02-06T01:30", "--json"],
    );
    assert!(
        r.stdout.contains("\"at\": \"2031-02-06T00:30:00Z\""),
        "{}",
        r.stdout
    );
}

#[test]
fn every_time_flag_says_what_it_understood_and_refuses_a_zone_it_cannot_read() {
    // Issue 24, point 1: what chg understood is echoed in the user's zone and in UTC.
    let s = Store::new();
    let id = s.new_change(&[]);
    let berlin = [("TZ", "Europe/Berlin")];
    let r = chg_env(
        &s,
        "alice@example.com",
        &berlin,
        &[],
        &[
            "schedule",
            &id,
            "--start",
            "2031-02-03 10:30",
            "--end",
            "+1h",
        ],
    )
    .ok();
    assert!(
        r.stderr.contains(&format!(
            "{id} scheduled 2031-02-03 10:30 CET (2031-02-03T09:30:00Z) to 2031-02-03 11:30 CET (2031-02-03T10:30:00Z)"
        )),
        "{}",
        r.stderr
    );
    for (flag_args, said) in [
        (
            vec!["gate", id.as_str(), "--at", "2031-02-03 10:45"],
            "`2031-02-03 10:45` is 2031-02-03 10:45 CET (2031-02-03T09:45:00Z)",
        ),
        (
            vec!["list", "--since", "2025-03"],
            "`2025-03` is 2025-03-01 01:00 CET (2025-03-01T00:00:00Z)",
        ),
        (
            vec!["report", "--since", "2025-03-01", "--until", "+1d"],
            "`+1d` is 2025-03-11 11:00 CET (2025-03-11T10:00:00Z)",
        ),
    ] {
        let r = chg_env(&s, "alice@example.com", &berlin, &[], &flag_args);
        assert!(r.stderr.contains(said), "{flag_args:?}: {}", r.stderr);
    }
    // An RFC 3339 time says itself: no echo.
    let r = chg_env(
        &s,
        "alice@example.com",
        &berlin,
        &[],
        &["gate", &id, "--at", "2031-02-03T09:45:00Z"],
    );
    assert!(!r.stderr.contains(" is "), "{}", r.stderr);
    // A TZ chg cannot read is an error, never UTC in disguise; a skipped hour is refused.
    let before = s.snapshot();
    for (tz, start) in [
        ("CET-1CEST", "2031-02-03 10:30"),
        ("Nowhere/Land", "2031-02-03 10:30"),
        ("Europe/Berlin", "2031-03-30 02:30"),
    ] {
        let r = chg_env(
            &s,
            "alice@example.com",
            &[("TZ", tz)],
            &[],
            &["schedule", &id, "--start", start, "--end", "+1h"],
        )
        .code(2);
        assert!(r.stderr.starts_with("chg: error: "), "{tz}: {}", r.stderr);
    }
    assert_unchanged(&s, &before);
    // A window already over is accepted, and said.
    let r = s
        .chg(
            "alice@example.com",
            &[
                "schedule",
                &id,
                "--start",
                "2025-03-01T10:00:00Z",
                "--end",
                "+1h",
            ],
        )
        .ok();
    assert!(
        r.stderr.contains("warning: this window ended 8 days ago"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_gate_names_what_is_missing() {
    // Issue 24, point 6: `implemented-unapproved: … is closed`, and
    // `implemented-outside-schedule` for a change with no schedule.
    let mut s = Store::new();
    let id = s.new_change(&[]);
    let r = s.chg("alice@example.com", &["gate", &id]).code(1);
    assert!(r.stdout.contains("  unscheduled: "), "{}", r.stdout);
    assert!(
        !r.stdout.contains("implemented-outside-schedule"),
        "{}",
        r.stdout
    );
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    let r = s.chg("alice@example.com", &["gate", &id]).code(1);
    assert!(
        r.stdout.contains("  lifecycle: ") && r.stdout.contains("is closed"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("implemented-unapproved"), "{}", r.stdout);
}

#[test]
fn validate_takes_ids_as_every_command_does() {
    // Issue 24, point 6: `chg validate 1` said "neither a change id nor an existing file".
    let s = Store::new();
    let id = s.new_change(&[]);
    for short in ["1", "2025-1", "chg-2025-1", id.as_str()] {
        s.chg("alice@example.com", &["validate", short]).ok();
    }
    let r = s.chg("alice@example.com", &["validate", "7"]).code(2);
    assert!(r.stderr.contains("no change CHG-2025-007"), "{}", r.stderr);
}

#[test]
fn validate_without_history_checks_the_files_only() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    // A plain commit that changes approved content, then puts the status back by hand.
    s.rewrite(&id, |t| {
        t.replace("Reload the previous certificate", "None")
    });
    s.git(&["commit", "-qam", "by hand"]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains(": unverified-history: "), "{}", r.stdout);
    let r = s
        .chg("alice@example.com", &["validate", "--no-history"])
        .code(1);
    assert!(
        !r.stdout.contains("unverified-history") && r.stdout.contains(": approval-digest: "),
        "{}",
        r.stdout
    );
}

#[test]
fn audit_export_asks_for_a_period_in_either_form() {
    // Issue 24, point 8: without a period it said `--period` is required, while the README
    // (and the command) take --since and --until too.
    let s = Store::new();
    for args in [vec![], vec!["--since", "2025-01-01"]] {
        let mut all = vec!["audit", "export", "--out", "pack"];
        all.extend(args);
        let r = s.chg("alice@example.com", &all).code(2);
        assert!(
            r.stderr.contains("--period 2025-Q1") && r.stderr.contains("--since DATE --until DATE"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn schedule_now_to_plus_2h_is_the_steps_own_time_and_two_hours_later() {
    // Issue 26: the window counted from one reading of the clock and the step was dated by
    // another; on the real clock (no CHG_NOW, no GIT_AUTHOR_DATE) both are one instant.
    let s = Store::new();
    let id = s.new_change(&[]);
    chg_env(
        &s,
        "alice@example.com",
        &[],
        &["CHG_NOW", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"],
        &["schedule", &id, "--start", "now", "--end", "+2h"],
    )
    .ok();
    let authored: i64 = s
        .git(&["log", "-1", "--format=%at"])
        .trim()
        .parse()
        .unwrap();
    let text = s.read(&id);
    let field = |name: &str| -> jiff::Timestamp {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim_matches(['\'', '"'])
            .parse()
            .unwrap()
    };
    let (start, end) = (field("start"), field("end"));
    assert_eq!(start.as_second(), authored, "{text}");
    assert_eq!(end.as_second() - start.as_second(), 2 * 3600, "{text}");
}

/// git reads `GIT_CONFIG_GLOBAL` (a CI job's or a test harness's own config file) and libgit2
/// does not: chg's identity and `chg init`'s first branch come from it as git's would.
#[test]
fn identity_and_first_branch_come_from_git_config_global_as_git_reads_them() {
    let s = super::Store::bare();
    let config = s.dir.path().join("ci.gitconfig");
    std::fs::write(
        &config,
        "[user]\n\tname = Casey CI\n\temail = ci@example.com\n[init]\n\tdefaultBranch = trunk\n",
    )
    .unwrap();
    let run = |program: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(program);
        super::base_env(&mut cmd, &s.dir.path().join("home"));
        let o = cmd
            .current_dir(s.root())
            .env("GIT_CONFIG_GLOBAL", &config)
            .env("CHG_NOW", "2025-03-10T09:00:00Z")
            .args(args)
            .output()
            .unwrap();
        super::run_output(o)
    };
    run(env!("CARGO_BIN_EXE_chg"), &["init"]).ok();
    assert_eq!(
        run("git", &["branch", "--show-current"]).stdout.trim(),
        "trunk"
    );
    assert_eq!(
        run("git", &["log", "-1", "--format=%an <%ae> / %cn <%ce>"])
            .stdout
            .trim(),
        "Casey CI <ci@example.com> / Casey CI <ci@example.com>"
    );
    // /dev/null, git's way of reading no global file: no identity, as git says.
    let none = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chg"));
        super::base_env(&mut cmd, &s.dir.path().join("home"));
        cmd.current_dir(s.root())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["new", "--title", "x"]);
        super::run_output(cmd.output().unwrap())
    };
    assert_ne!(none.code, 0, "{}", none.stdout);
    assert!(none.stderr.contains("no git identity"), "{}", none.stderr);
}
