//! The CLI as gh and jj users expect it (issue 17): tables that stay data in a pipe, list
//! filters for people, unknown values refused with a suggestion.

use super::Store;

/// Three changes: two by alice (one approved by cm), one by bob; ids in request order.
fn three() -> Store {
    let mut s = Store::new();
    let a = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &a]).ok();
    s.chg("cm@example.com", &["approve", &a]).ok();
    s.at("2025-03-11T10:00:00Z");
    s.new_change(&[]);
    s.at("2025-03-12T10:00:00Z");
    let mut args = super::COMPLETE.to_vec();
    args[2] = "Bob's change";
    s.chg("bob@example.com", &args).ok();
    s
}

fn ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[test]
fn list_filters_for_people() {
    let s = three();
    let r = s.chg("alice@example.com", &["list", "--mine"]).ok();
    assert_eq!(ids(&r.stdout), ["CHG-2025-001", "CHG-2025-002"]);
    let r = s
        .chg(
            "alice@example.com",
            &["list", "--requester", "BOB@example.com"],
        )
        .ok();
    assert_eq!(ids(&r.stdout), ["CHG-2025-003"]);
    // em has approved 001; 002 and 003 still need the engineering manager.
    let r = s.chg("em@example.com", &["list", "--awaiting-me"]).ok();
    assert_eq!(ids(&r.stdout), ["CHG-2025-002", "CHG-2025-003"]);
    let r = s.chg("bob@example.com", &["list", "--awaiting-me"]).ok();
    assert_eq!(ids(&r.stdout), Vec::<String>::new());
    let r = s
        .chg(
            "alice@example.com",
            &["list", "--sort=-requested", "--limit", "2"],
        )
        .ok();
    assert_eq!(ids(&r.stdout), ["CHG-2025-003", "CHG-2025-002"]);
    assert!(r.stderr.contains("showing 2 of 3"), "{}", r.stderr);
    let r = s
        .chg("alice@example.com", &["list", "--sort", "titel"])
        .code(2);
    assert!(r.stderr.contains("did you mean `title`"), "{}", r.stderr);
    let r = s
        .chg("alice@example.com", &["list", "--type", "infra"])
        .code(2);
    assert!(
        r.stderr.contains("did you mean `infrastructure`"),
        "{}",
        r.stderr
    );
}

#[test]
fn ids_as_people_type_them() {
    let s = three();
    for (typed, id) in [
        ("1", "CHG-2025-001"),
        ("2025-2", "CHG-2025-002"),
        ("chg-2025-3", "CHG-2025-003"),
        ("CHG-2025-0003", "CHG-2025-003"),
        ("Chg-2025-01", "CHG-2025-001"),
    ] {
        let r = s.chg("alice@example.com", &["show", typed]).ok();
        assert!(
            r.stdout.starts_with(&format!("{id}  ")),
            "{typed}: {}",
            r.stdout
        );
    }
    let r = s.chg("alice@example.com", &["show", "9"]).code(2);
    assert!(r.stderr.contains("CHG-2025-009"), "{}", r.stderr);
    let r = s.chg("alice@example.com", &["show", "one"]).code(2);
    assert!(r.stderr.contains("2026-3 that year's"), "{}", r.stderr);
}

#[test]
fn at_a_terminal_list_shows_open_changes_most_recent_first_aligned() {
    let mut s = three();
    s.schedule(
        "CHG-2025-001",
        "2025-03-12T10:00:00Z",
        "2025-03-12T12:00:00Z",
    )
    .ok();
    s.at("2025-03-12T10:30:00Z");
    s.chg("bob@example.com", &["implement", "CHG-2025-001"])
        .ok();
    s.chg(
        "bob@example.com",
        &["close", "CHG-2025-001", "--outcome", "successful"],
    )
    .ok();
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    cmd.env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("CHG_PAGER", "")
        .args(["list"]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    let text = p.exp_eof().unwrap();
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines[0].starts_with("ID            STATUS"), "{text}");
    assert!(
        lines[1].starts_with("CHG-2025-003  pending_approval"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("CHG-2025-002  pending_approval"),
        "{text}"
    );
    assert!(
        !text.contains("CHG-2025-001") && !text.contains('\t'),
        "{text}"
    );
}

#[test]
fn the_small_things_say_what_happened() {
    let mut s = Store::new();
    // new: the id alone on stdout, the file on stderr.
    let r = s.chg("alice@example.com", super::COMPLETE).ok();
    assert_eq!(r.stdout, "CHG-2025-001\n");
    assert!(
        r.stderr.contains("filed changes/2025/03/CHG-2025-001.yaml"),
        "{}",
        r.stderr
    );
    // schedule: the window it set, resolved.
    s.chg("em@example.com", &["approve", "1"]).ok();
    s.chg("cm@example.com", &["approve", "1"]).ok();
    let r = s
        .chg(
            "bob@example.com",
            &["schedule", "1", "--start", "now", "--end", "+2h"],
        )
        .ok();
    assert!(
        r.stderr
            .contains("scheduled 2025-03-10 10:00 UTC (2025-03-10T10:00:00Z) to 2025-03-10 12:00 UTC (2025-03-10T12:00:00Z)"),
        "{}",
        r.stderr
    );
    // An emergency change's first approval says who is still awaited.
    let e = s.new_change(&["--emergency"]);
    s.chg("bob@example.com", &["implement", &e]).ok();
    let r = s.chg("sec-lead@example.com", &["approve", &e]).ok();
    assert!(
        r.stdout
            .contains("waiting for approval by: engineering-manager"),
        "{}",
        r.stdout
    );
    // The gate says blocked, not "closed" (which reads like the change's status).
    let r = s
        .chg(
            "bob@example.com",
            &["gate", "1", "--at", "2025-03-12T10:00:00Z"],
        )
        .code(1);
    assert!(r.stdout.contains("blocked at"), "{}", r.stdout);
    // One error prefix, clap's errors included.
    let r = s.chg("alice@example.com", &["list", "--bogus"]).code(2);
    assert!(r.stderr.starts_with("chg: error: "), "{}", r.stderr);
    // Evidence pack files get the mode any new file gets (the umask's), not 0600.
    s.at("2025-03-20T10:00:00Z");
    let pack = s.export_2025();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let probe = s.dir.path().join("probe");
        std::fs::write(&probe, "x").unwrap();
        let want = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        let got = std::fs::metadata(pack.join("population.csv"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, want);
    }
}

#[test]
fn init_without_an_identity_leaves_nothing_behind() {
    let s = Store::bare();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chg"));
    super::base_env(&mut cmd, &s.dir.path().join("home"));
    let o = cmd.current_dir(s.root()).arg("init").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no git identity"));
    assert_eq!(std::fs::read_dir(s.root()).unwrap().count(), 0);
}

#[test]
fn every_time_flag_takes_the_same_words() {
    let s = three();
    // now is 2025-03-12T10:00:00Z in this store's clock.
    s.chg(
        "alice@example.com",
        &["calendar", "--from", "now", "--to", "+30d"],
    )
    .ok();
    s.chg(
        "alice@example.com",
        &["calendar", "--from", "today", "--to", "2025-04"],
    )
    .ok();
    let r = s
        .chg("alice@example.com", &["list", "--since", "-36h"])
        .ok();
    assert_eq!(ids(&r.stdout), ["CHG-2025-002", "CHG-2025-003"]);
    s.chg("bob@example.com", &["gate", "1", "--at", "now"])
        .code(1);
    let out = s.dir.path().join("march");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "audit",
                "export",
                "--period",
                "2025-03",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(
        r.stdout.contains("3 change(s) in the population"),
        "{}",
        r.stdout
    );
    let r = s
        .chg("alice@example.com", &["list", "--since", "last tuesday"])
        .code(2);
    assert!(r.stderr.contains("now, today, +2h or -7d"), "{}", r.stderr);
}

#[test]
fn every_command_that_prints_data_takes_json() {
    let s = three();
    // Each with its exit code: the store is clean, and change 1 is not approved (gate: 1).
    for (args, code) in [
        (&["validate", "--json"][..], 0),
        (&["audit", "--json"], 0),
        (&["report", "--json", "--period", "2025"], 0),
        (&["calendar", "--json", "--from", "2025-03-01"], 0),
        (&["cab", "--json"], 0),
        (&["list", "--json"], 0),
        (&["show", "1", "--json"], 0),
        (&["log", "1", "--json"], 0),
        (&["templates", "--json"], 0),
        (&["templates", "--format", "json"], 0),
        (&["gate", "1", "--format", "json"], 1),
    ] {
        let r = s.chg("alice@example.com", args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        let v: Result<serde_json::Value, _> = serde_json::from_str(&r.stdout);
        assert!(v.is_ok(), "{args:?}: {}", r.stdout);
    }
    let r = s.chg("alice@example.com", &["cab", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["total"], 2, "{v:#}");
    assert_eq!(
        v["agenda"][0]["changes"][0]["awaiting"][0],
        "engineering-manager"
    );
}

#[test]
fn json_narrowed_by_fields_or_jq() {
    let s = three();
    let r = s
        .chg("alice@example.com", &["list", "--json=id,status"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"id": "CHG-2025-001", "status": "approved"})
    );
    let r = s
        .chg(
            "alice@example.com",
            &[
                "list",
                "--jq",
                ".[] | select(.status == \"pending_approval\") | .id",
            ],
        )
        .ok();
    assert_eq!(r.stdout, "CHG-2025-002\nCHG-2025-003\n");
    let r = s
        .chg(
            "alice@example.com",
            &["show", "1", "--jq", ".approvals | length"],
        )
        .ok();
    assert_eq!(r.stdout, "2\n");
    let r = s
        .chg("alice@example.com", &["list", "--json=id,stauts"])
        .code(2);
    assert!(r.stderr.contains("did you mean `status`"), "{}", r.stderr);
    let r = s
        .chg("alice@example.com", &["list", "--jq", ".[] |"])
        .code(2);
    assert!(r.stderr.contains("not a jq expression"), "{}", r.stderr);
}

#[test]
fn help_has_examples_and_every_command_has_a_man_page() {
    let s = Store::new();
    let top = s.chg("alice@example.com", &["--help"]).ok().stdout;
    let commands = super::listed_commands(&top);
    assert!(commands.len() > 20, "{top}");
    for c in &commands {
        let help = s.chg("alice@example.com", &[c, "--help"]).ok().stdout;
        assert!(help.contains("Examples:\n  chg "), "{c}: {help}");
        assert!(!help.contains("SPEC"), "{c}: {help}");
    }
    let dir = s.dir.path().join("man");
    s.chg(
        "alice@example.com",
        &["man", "--out", dir.to_str().unwrap()],
    )
    .ok();
    let chg1 = std::fs::read_to_string(dir.join("chg.1")).unwrap();
    for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"] {
        assert!(
            chg1.contains(&format!(".SH {section}"))
                || chg1.contains(&format!(".SH \"{section}\"")),
            "{section}"
        );
    }
    for c in &commands {
        assert!(dir.join(format!("chg-{c}.1")).exists(), "chg-{c}.1");
    }
    assert!(dir.join("chg-policy-apply.1").exists());
}

#[test]
fn long_output_goes_through_the_pager_only_at_a_terminal() {
    let s = three();
    let run = |extra: &[&str]| {
        let mut cmd = s.cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "alice@example.com",
        );
        cmd.env("TERM", "dumb")
            .env("NO_COLOR", "1")
            .env("CHG_PAGER", "sed s/^/paged:/")
            .arg("list")
            .args(extra);
        let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
        p.exp_eof().unwrap()
    };
    let paged = run(&[]);
    assert!(paged.contains("paged:ID"), "{paged}");
    let plain = run(&["--no-pager"]);
    assert!(
        !plain.contains("paged:") && plain.contains("ID "),
        "{plain}"
    );
    // Piped, never.
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    let o = cmd
        .env("CHG_PAGER", "sed s/^/paged:/")
        .arg("list")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("paged:"));
}

#[test]
fn people_read_local_times_and_how_long_ago() {
    let s = three();
    let show = |extra: &[&str]| {
        let mut cmd = s.cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "alice@example.com",
        );
        let o = cmd
            // Europe/Berlin's rules as a POSIX TZ string: no tzdata needed on the host.
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .args(["show", "1"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let local = show(&[]);
    // The form every table uses: local, to the minute, no zone.
    assert!(
        local.contains("request_date:     2025-03-10 11:00\n"),
        "{local}"
    );
    let utc = show(&["--utc"]);
    assert!(
        utc.contains("request_date:     2025-03-10T10:00:00Z"),
        "{utc}"
    );
    // At a terminal wide enough, list and log say how long ago; piped, the same local
    // time without it; JSON stays UTC.
    let text = at_terminal(&s, 200, false, &["log", "1"]);
    assert!(text.contains("2025-03-10 10:00 (2d ago)"), "{text}");
    let piped = s.chg("alice@example.com", &["log", "1"]).ok().stdout;
    assert!(
        piped.contains("\n2025-03-10 10:00\talice@example.com\t"),
        "{piped}"
    );
    let json = s
        .chg("alice@example.com", &["show", "1", "--json"])
        .ok()
        .stdout;
    assert!(
        json.contains("\"request_date\": \"2025-03-10T10:00:00Z\""),
        "{json}"
    );
}

#[test]
fn bash_completes_ids_statuses_and_roles_from_the_store() {
    let s = three();
    let complete = |words: &str| {
        let cword = words.split(' ').count() - 1;
        let script = format!(
            "source <(COMPLETE=bash {chg}); COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _clap_complete_chg chg \"${{COMP_WORDS[{cword}]}}\" x; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            chg = env!("CARGO_BIN_EXE_chg"),
        );
        let mut cmd = s.cmd(std::path::Path::new("bash"), "alice@example.com");
        let o = cmd.args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ids = complete("chg show ''");
    assert!(
        ids.starts_with("CHG-2025-003\nCHG-2025-002\nCHG-2025-001\n"),
        "{ids}"
    );
    let some = complete("chg approve CHG-2025-00");
    assert!(some.contains("CHG-2025-002"), "{some}");
    let statuses = complete("chg list --status pend");
    assert_eq!(statuses.trim(), "pending_approval");
    let roles = complete("chg approve 1 --role sec");
    assert_eq!(roles.lines().count(), 2, "{roles}");
    let types = complete("chg list --type infra");
    assert_eq!(types.trim(), "infrastructure");
}

#[test]
fn unknown_filter_values_say_what_is_close() {
    let s = three();
    let r = s
        .chg("alice@example.com", &["list", "--status", "pending"])
        .code(2);
    assert!(
        r.stderr.contains("did you mean `pending_approval`"),
        "{}",
        r.stderr
    );
    let r = s
        .chg("alice@example.com", &["list", "--system", "edge-prxy"])
        .ok();
    assert!(
        r.stderr
            .contains("no change names system `edge-prxy`; did you mean `edge-proxy`?"),
        "{}",
        r.stderr
    );
}

/// `chg ARGS` at a pseudo-terminal this many columns wide, colour as asked.
fn at_terminal(s: &Store, columns: u16, color: bool, args: &[&str]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "stty cols {columns} rows 60; exec {} {}",
        env!("CARGO_BIN_EXE_chg"),
        quoted.join(" ")
    );
    let mut cmd = s.cmd(std::path::Path::new("sh"), "alice@example.com");
    cmd.env("TERM", "dumb")
        .env("CHG_PAGER", "")
        .args(["-c", &script]);
    if color {
        cmd.env("CLICOLOR_FORCE", "1");
    } else {
        cmd.env("NO_COLOR", "1");
    }
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    // rexpect hands back one char per byte: put the UTF-8 together again.
    let raw = p.exp_eof().unwrap();
    let bytes: Vec<u8> = raw
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    String::from_utf8_lossy(&bytes).replace('\r', "")
}

#[test]
fn every_table_at_80_and_200_columns_with_and_without_colour() {
    let mut s = three();
    s.schedule("2", "2025-03-13T10:00:00Z", "2025-03-13T12:00:00Z")
        .ok();
    s.at("2025-03-12T11:00:00Z");
    let mut all = String::new();
    for (columns, color) in [(80, false), (200, false), (80, true)] {
        for args in [
            &["list", "--all"][..],
            &["log", "1"],
            &["cab", "--for", "2025-03-12"],
            &["calendar", "--from", "2025-03-01"],
        ] {
            let text = at_terminal(&s, columns, color, args);
            for line in text.lines() {
                let visible: String = {
                    // The width a person sees: colour codes take none.
                    let mut out = String::new();
                    let mut esc = false;
                    for ch in line.chars() {
                        match (esc, ch) {
                            (false, '\x1b') => esc = true,
                            (true, 'm') => esc = false,
                            (true, _) => {}
                            (false, c) => out.push(c),
                        }
                    }
                    out
                };
                assert!(
                    visible.chars().count() <= usize::from(columns),
                    "{columns} {args:?}: {line}"
                );
            }
            all.push_str(&format!(
                "===== {columns} columns, colour {color}: chg {}\n{text}\n",
                args.join(" ")
            ));
        }
    }
    insta::assert_snapshot!(all);
}

#[test]
fn at_80_columns_ids_emails_and_roles_are_whole_and_only_titles_give_way() {
    // Issue 24: at 80 columns log cut `em@example.…` and `engineering-…`, cab cut the
    // roles awaited, calendar spent 44 columns on two timestamps.
    let mut s = three();
    s.schedule("2", "2025-03-13T10:00:00Z", "2025-03-13T12:00:00Z")
        .ok();
    let mut args = super::COMPLETE.to_vec();
    args[2] = "Resize the Postgres cluster volumes ahead of the quarter-end batch jobs";
    let long = s.chg("alice@example.com", &args).ok_line();
    s.schedule(&long, "2025-03-14T22:00:00Z", "2025-03-15T01:00:00Z")
        .ok();
    s.at("2025-03-12T11:00:00Z");
    let log = at_terminal(&s, 80, false, &["log", "1"]);
    for fact in [
        "alice@example.com",
        "em@example.com",
        "cm@example.com",
        "engineering-manager",
        "change-manager",
    ] {
        assert!(log.contains(fact), "{fact}:\n{log}");
    }
    assert!(!log.contains('…') && log.contains("audit: ok"), "{log}");
    // At 120 the transitions fit too, once the "(2d ago)" notes make room.
    let log = at_terminal(&s, 120, false, &["log", "1"]);
    assert!(
        log.contains("pending_approval -> approved") && !log.contains('…'),
        "{log}"
    );
    let cab = at_terminal(&s, 80, false, &["cab", "--for", "2025-03-12"]);
    for id in ["CHG-2025-002", "CHG-2025-003", &long] {
        assert!(cab.contains(id), "{id}:\n{cab}");
    }
    assert_eq!(
        cab.matches("engineering-manager, change-manager").count(),
        3,
        "{cab}"
    );
    assert!(cab.contains("Resize the Postgres"), "{cab}");
    let calendar = at_terminal(&s, 80, false, &["calendar", "--from", "2025-03-12"]);
    // The end's date only when it is another day; the kind left out before the title is
    // cut (ids and titles say it).
    let row = |id: &str| {
        calendar
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_default()
    };
    assert!(
        row("CHG-2025-002").starts_with("2025-03-13 10:00-12:00 ")
            && row("CHG-2025-002").ends_with("  CHG-2025-002  Rotate TLS certificates"),
        "{calendar}"
    );
    assert!(
        row(&long).starts_with(&format!(
            "2025-03-14 22:00 to 2025-03-15 01:00  {long}  Resize"
        )),
        "{calendar}"
    );
    for text in [&cab, &calendar] {
        for line in text.lines().filter(|l| l.contains('…')) {
            assert!(line.contains("Resize the Postgres"), "cut: {line}");
        }
    }
}

#[test]
fn show_list_log_calendar_and_cab_read_times_alike() {
    let mut s = three();
    s.schedule("2", "2025-03-13T10:00:00Z", "2025-03-13T12:00:00Z")
        .ok();
    s.at("2025-03-12T11:00:00Z");
    // On a machine whose zone is UTC too: not RFC 3339 in show and dates in list.
    let show = s.chg("alice@example.com", &["show", "2"]).ok().stdout;
    assert!(
        show.contains("request_date:     2025-03-11 10:00\n")
            && show.contains("schedule: 2025-03-13 10:00-12:00\n"),
        "{show}"
    );
    let show = s.chg("alice@example.com", &["show", "1"]).ok().stdout;
    assert!(
        show.contains("  [x] change-manager: cm@example.com at 2025-03-10 10:00\n"),
        "{show}"
    );
    let log = s.chg("alice@example.com", &["log", "1"]).ok().stdout;
    assert!(log.contains("\n2025-03-10 10:00\t"), "{log}");
    let cab = s
        .chg("alice@example.com", &["cab", "--for", "2025-03-12"])
        .ok()
        .stdout;
    assert!(cab.contains("\t2025-03-13 10:00-12:00\t"), "{cab}");
    let list = s.chg("alice@example.com", &["list"]).ok().stdout;
    assert!(list.contains("\t2025-03-11\t"), "{list}");
    // --utc: the files' RFC 3339; JSON always.
    let show = s
        .chg("alice@example.com", &["show", "2", "--utc"])
        .ok()
        .stdout;
    assert!(
        show.contains("schedule: 2025-03-13T10:00:00Z to 2025-03-13T12:00:00Z"),
        "{show}"
    );
}

#[test]
fn severity_sorts_put_the_most_severe_first() {
    let s = Store::new();
    for (priority, risk) in [("low", "critical"), ("critical", "low"), ("medium", "high")] {
        let mut args = super::COMPLETE.to_vec();
        args[10] = priority;
        args[12] = risk;
        s.chg("alice@example.com", &args).ok();
    }
    let sorted = |key: &str| {
        ids(&s
            .chg("alice@example.com", &["list", "--sort", key])
            .ok()
            .stdout)
    };
    assert_eq!(
        sorted("priority"),
        ["CHG-2025-002", "CHG-2025-003", "CHG-2025-001"]
    );
    assert_eq!(
        sorted("risk"),
        ["CHG-2025-001", "CHG-2025-003", "CHG-2025-002"]
    );
    assert_eq!(
        sorted("-risk"),
        ["CHG-2025-002", "CHG-2025-003", "CHG-2025-001"]
    );
}

#[test]
fn colour_when_forced_even_piped() {
    let s = three();
    let list = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = s.cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "alice@example.com",
        );
        cmd.envs(env.iter().copied()).arg("list").args(extra);
        let o = cmd.output().unwrap();
        String::from_utf8_lossy(&o.stdout).contains('\x1b')
    };
    assert!(!list(&[], &[]));
    assert!(list(&["--color", "always"], &[]));
    // The flag given for this run outranks NO_COLOR; CLICOLOR_FORCE does not.
    assert!(list(&["--color", "always"], &[("NO_COLOR", "1")]));
    assert!(list(&[], &[("CLICOLOR_FORCE", "1")]));
    assert!(!list(&[], &[("CLICOLOR_FORCE", "0")]));
    assert!(!list(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
    assert!(!list(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]));
}

#[test]
fn report_and_cab_piped_are_tab_separated_like_list() {
    let s = three();
    let cab = s
        .chg("alice@example.com", &["cab", "--for", "2025-03-12"])
        .ok()
        .stdout;
    assert!(
        cab.contains("\nID\tTITLE\tRISK\tSYSTEMS\tWINDOW\tCONFLICTS\tAWAITING\n")
            && cab.contains("\nCHG-2025-002\tRotate TLS certificates\tlow\t"),
        "{cab}"
    );
    let report = s.chg("alice@example.com", &["report"]).ok().stdout;
    assert!(
        report.contains("\nBY\tVALUE\tCHANGES\n") && report.contains("\nstatus\tapproved\t1\n"),
        "{report}"
    );
    assert!(!report.contains("  "), "{report}");
}

#[test]
fn global_options_come_last_under_their_own_heading() {
    let s = Store::new();
    let help = s.chg("alice@example.com", &["list", "--help"]).ok().stdout;
    let global = help.find("\nGlobal Options:\n").expect(&help);
    for flag in ["--repo", "--no-pager", "--color"] {
        assert!(help.find(flag).unwrap() > global, "{flag}:\n{help}");
    }
    assert!(help.find("--status").unwrap() < global, "{help}");
}
