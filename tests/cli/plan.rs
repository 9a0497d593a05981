//! `chg gate`, `chg schedule` conflicts and `--next-slot`, `chg calendar`, `chg cab`.

use super::*;

/// `chg gate ID --at AT --json`, which must be closed (exit 1); its JSON.
fn closed_gate(s: &Store, id: &str, at: &str) -> serde_json::Value {
    let r = s
        .chg("alice@example.com", &["gate", id, "--at", at, "--json"])
        .code(1);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The rules of a gate's reasons.
fn reason_rules(v: &serde_json::Value) -> Vec<&str> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect()
}

/// An approved medium change on `systems`, scheduled `start`..`end`.
fn approved(s: &Store, systems: &str, start: &str, end: &str) -> String {
    let id = s.new_change(&["--system", systems]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, start, end).ok();
    id
}

#[test]
fn the_gate_opens_only_inside_the_schedule_of_an_approved_change() {
    let s = Store::new();
    let id = approved(
        &s,
        "edge-proxy",
        "2025-03-11T09:00:00Z",
        "2025-03-11T11:00:00Z",
    );
    let gate = |at: &str| s.chg("alice@example.com", &["gate", &id, "--at", at, "--json"]);
    let r = gate("2025-03-11T09:30:00Z").ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["open"].as_bool(), v["reasons"].as_array().unwrap().len()),
        (Some(true), 0)
    );
    let v = closed_gate(&s, &id, "2025-03-11T12:00:00Z");
    assert_eq!(reason_rules(&v), ["implemented-outside-schedule"]);
    // Unapproved, unscheduled: every reason at once, in text.
    let pending = s.new_change(&[]);
    let r = s
        .chg(
            "alice@example.com",
            &["gate", &pending, "--at", "2025-03-11T09:30:00Z"],
        )
        .code(1);
    assert!(
        r.stdout.starts_with(&format!(
            "{pending}: blocked at 2025-03-11T09:30:00Z (not cleared to deploy)\n"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("implemented-unapproved: "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("unscheduled: ") && !r.stdout.contains("implemented-outside-schedule"),
        "{}",
        r.stdout
    );
    // In a freeze (an approved change scheduled before the policy had one).
    s.edit_policy("freeze", |t| {
        t.replace(
            "2025-12-20T00:00:00Z, end: 2026-01-04T00:00:00Z",
            "2025-03-11T10:00:00Z, end: 2025-03-12T00:00:00Z",
        )
    });
    let v = closed_gate(&s, &id, "2025-03-11T10:30:00Z");
    assert_eq!(reason_rules(&v), ["implemented-in-freeze"]);
    // Emergencies pass at once; a draft or unknown id does not.
    let e = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg(
        "alice@example.com",
        &["gate", &e, "--at", "2025-03-11T10:30:00Z"],
    )
    .ok();
    s.chg("alice@example.com", &["gate", "CHG-2025-999"])
        .code(2);
}

#[test]
fn overlapping_changes_to_a_common_system_warn_or_block_as_the_policy_says() {
    let s = Store::new();
    let a = approved(&s, "db,api", "2025-03-15T02:00:00Z", "2025-03-15T04:00:00Z");
    let b = s.new_change(&["--system", "db"]);
    let r = s
        .schedule(&b, "2025-03-15T03:00:00Z", "2025-03-15T05:00:00Z")
        .ok();
    assert!(r.stderr.contains(&format!("warning: overlap: {b} (2025-03-15T03:00:00Z to 2025-03-15T05:00:00Z) and {a} (2025-03-15T02:00:00Z to 2025-03-15T04:00:00Z) both change edge-proxy, db")), "{}", r.stderr);
    // Touching is not overlapping; another system is no conflict.
    let c = s.new_change(&["--system", "db"]);
    let r = s
        .schedule(&c, "2025-03-15T05:00:00Z", "2025-03-15T06:00:00Z")
        .ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let v = s
        .chg("alice@example.com", &["validate", "--format", "json"])
        .ok();
    let found: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    let conflicts: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "conflict")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(conflicts, [a.as_str(), b.as_str()]);
    // The policy makes overlaps block: validate fails, schedule refuses with both ids.
    s.edit_policy("block overlaps", |t| {
        t.replace("overlap: warn", "overlap: block")
    });
    s.chg("alice@example.com", &["validate"]).code(1);
    let d = s.new_change(&["--system", "api"]);
    let before = s.snapshot();
    let r = s
        .schedule(&d, "2025-03-15T01:00:00Z", "2025-03-15T03:00:00Z")
        .code(1);
    assert!(
        r.stderr.contains(&d) && r.stderr.contains(&a),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn next_slot_finds_the_first_free_window() {
    let s = Store::new();
    approved(&s, "db", "2025-03-10T10:00:00Z", "2025-03-10T14:00:00Z");
    let b = s.new_change(&["--system", "db"]);
    let r = s
        .chg(
            "alice@example.com",
            &["schedule", &b, "--next-slot", "--duration", "2h"],
        )
        .ok();
    assert!(
        r.stderr.contains(&format!(
            "next free slot for {b}: 2025-03-10T14:00:00Z to 2025-03-10T16:00:00Z"
        )),
        "{}",
        r.stderr
    );
    assert!(s.read(&b).contains("start: 2025-03-10T14:00:00Z"));
    // In a maintenance window: the next weekend opening (Saturday 02:00 UTC).
    let c = s.new_change(&["--system", "web"]);
    s.chg(
        "alice@example.com",
        &[
            "schedule",
            &c,
            "--next-slot",
            "--duration",
            "3h",
            "--maintenance-window",
        ],
    )
    .ok();
    let text = s.read(&c);
    assert!(
        text.contains("start: 2025-03-15T02:00:00Z") && text.contains("end: 2025-03-15T05:00:00Z"),
        "{text}"
    );
    s.chg("alice@example.com", &["schedule", &c, "--next-slot"])
        .code(2);
}

#[test]
fn the_calendar_in_ics_parses_back_with_a_real_icalendar_parser() {
    let s = Store::new();
    let a = approved(&s, "db", "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "calendar",
                "--from",
                "2025-03-10",
                "--to",
                "2025-03-20",
                "--format",
                "ics",
            ],
        )
        .ok();
    assert!(r.stdout.contains("\r\n"));
    let cals: Vec<_> = ical::IcalParser::new(std::io::BufReader::new(r.stdout.as_bytes()))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(cals.len(), 1);
    let events = &cals[0].events;
    let prop = |e: &ical::parser::ical::component::IcalEvent, name: &str| {
        e.properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
            .unwrap_or_default()
    };
    let summaries: Vec<String> = events.iter().map(|e| prop(e, "SUMMARY")).collect();
    // The change and the weekend's two openings (Saturday and Sunday 15-16 March).
    assert_eq!(events.len(), 3, "{summaries:?}");
    let change = events
        .iter()
        .find(|e| prop(e, "UID") == format!("{a}@chg.invalid"))
        .unwrap();
    assert_eq!(prop(change, "DTSTART"), "20250311T090000Z");
    assert_eq!(prop(change, "DTEND"), "20250311T110000Z");
    assert_eq!(
        prop(change, "SUMMARY"),
        format!("{a}: Rotate TLS certificates")
    );
    for e in events {
        for required in ["UID", "DTSTAMP", "DTSTART", "DTEND"] {
            assert!(!prop(e, required).is_empty(), "{required} missing");
        }
    }
    // The freeze over the year end, in JSON; the table in UTC.
    let j = s
        .chg(
            "alice@example.com",
            &[
                "calendar",
                "--from",
                "2025-12-01",
                "--to",
                "2026-01-10",
                "--format",
                "json",
            ],
        )
        .ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "freeze" && e["start"] == "2025-12-20T00:00:00Z")
    );
    let t = s
        .chg(
            "alice@example.com",
            &[
                "calendar",
                "--from",
                "2025-03-10",
                "--to",
                "2025-03-12",
                "--utc",
            ],
        )
        .ok();
    assert!(
        t.stdout.contains("2025-03-11T09:00:00Z") && t.stdout.contains(&a),
        "{}",
        t.stdout
    );
}

#[test]
fn the_cab_agenda_groups_pending_changes_by_priority_with_what_they_await() {
    let s = Store::new();
    let high = s.new_change(&["--priority", "high", "--system", "db"]);
    s.chg("sec1@example.com", &["approve", &high]).ok();
    s.schedule(&high, "2025-03-15T02:00:00Z", "2025-03-15T04:00:00Z")
        .ok();
    let low = s.new_change(&["--priority", "low", "--system", "db"]);
    s.schedule(&low, "2025-03-15T03:00:00Z", "2025-03-15T05:00:00Z")
        .ok();
    approved(&s, "web", "2025-03-15T02:00:00Z", "2025-03-15T04:00:00Z");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "cab",
                "--for",
                "2025-03-12",
                "--format",
                "markdown",
                "--utc",
            ],
        )
        .ok();
    let md = r.stdout;
    assert!(
        md.starts_with("# CAB agenda, 2025-03-12\n\n2 change(s) awaiting approval.\n"),
        "{md}"
    );
    let hi = md.find("## high priority").unwrap();
    let lo = md.find("## low priority").unwrap();
    assert!(hi < lo);
    assert!(md.contains(&format!("| {high} | Rotate TLS certificates | low | edge-proxy, db | 2025-03-15T02:00:00Z to 2025-03-15T04:00:00Z | {low} (edge-proxy, db); CHG-2025-003 (edge-proxy) | engineering-manager, change-manager |")), "{md}");
    assert!(
        md.contains(&format!("| {low} |")) && md.contains("| change-manager |"),
        "{md}"
    );
    s.chg("alice@example.com", &["cab"]).ok();
}

#[test]
fn the_gate_names_windows_tests_and_blocking_conflicts() {
    let s = Store::new();
    // A low-priority security change (it needs a test plan), in a weekend window.
    let id = s.new_change(&[
        "--type",
        "security",
        "--priority",
        "low",
        "--test-plan",
        "t",
    ]);
    s.chg("cm@example.com", &["approve", &id]).ok();
    let flagged = s
        .chg(
            "alice@example.com",
            &[
                "schedule",
                &id,
                "--start",
                "2025-03-15T02:00:00Z",
                "--end",
                "2025-03-15T04:00:00Z",
                "--maintenance-window",
            ],
        )
        .ok();
    assert!(flagged.stdout.contains("schedule"), "{}", flagged.stdout);
    s.chg(
        "alice@example.com",
        &["gate", &id, "--at", "2025-03-15T03:00:00Z"],
    )
    .ok();
    // The policy's window moves to Sundays: the same moment is now outside every window.
    s.edit_policy("Sundays only; overlaps block", |t| {
        t.replace("days: [sat, sun]", "days: [sun]")
            .replace("overlap: warn", "overlap: block")
    });
    let v = closed_gate(&s, &id, "2025-03-15T03:00:00Z");
    let rules = reason_rules(&v);
    assert_eq!(rules, ["implemented-outside-window"], "{v:#}");
    // The test plan removed by hand: the gate says so too, and that the approval was given
    // to other content (the test plan is material).
    s.rewrite(&id, |t| t.replace("test_plan: t\n", ""));
    s.git(&["commit", "-qam", "drop the test plan"]);
    let v = closed_gate(&s, &id, "2025-03-15T03:00:00Z");
    let rules = reason_rules(&v);
    assert_eq!(
        rules,
        [
            "unverified-history",
            "approval-digest",
            "testing-missing",
            "implemented-outside-window"
        ],
        "{v:#}"
    );
    // An approved change on the same system, scheduled by hand over the first: with
    // overlaps blocking, its gate is closed by the conflict alone.
    let other = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &other]).ok();
    s.chg("cm@example.com", &["approve", &other]).ok();
    s.rewrite(&other, |t| {
        t + "schedule:\n  start: 2025-03-15T02:30:00Z\n  end: 2025-03-15T03:30:00Z\n"
    });
    s.git(&["commit", "-qam", "schedule by hand"]);
    let v = closed_gate(&s, &other, "2025-03-15T03:00:00Z");
    let rules = reason_rules(&v);
    assert_eq!(rules, ["conflict"], "{v:#}");
    assert!(v["reasons"][0]["message"].as_str().unwrap().contains(&id));
}

#[test]
fn people_see_local_time_unless_they_ask_for_utc() {
    let s = Store::new();
    let id = approved(&s, "db", "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z");
    let run = |args: &[&str]| {
        let o = s
            .cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com")
            // Europe/Berlin's rules as a POSIX TZ string: no tzdata needed on the host.
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let local = run(&["calendar", "--from", "2025-03-11", "--to", "2025-03-12"]);
    // The window in local time, its end's date only on another day.
    assert!(local.contains("2025-03-11 10:00-12:00"), "{local}");
    let utc = run(&[
        "calendar",
        "--from",
        "2025-03-11",
        "--to",
        "2025-03-12",
        "--utc",
    ]);
    assert!(
        utc.contains("2025-03-11T09:00:00Z") && !utc.contains("CET"),
        "{utc}"
    );
    let pending = s.new_change(&["--system", "web"]);
    s.schedule(&pending, "2025-07-01T09:00:00Z", "2025-07-01T10:00:00Z")
        .ok();
    let cab = run(&["cab", "--for", "2025-03-12"]);
    assert!(
        cab.contains(&pending) && cab.contains("2025-07-01 11:00-12:00"),
        "{cab}"
    );
    assert!(!cab.contains(&id), "{cab}");
}

#[test]
fn two_racing_schedules_for_one_system_cannot_both_pass_a_blocking_overlap() {
    // Before the overlap check moved inside the locked transition, both runs read the store
    // before either committed and both succeeded in most rounds.
    let s = Store::new();
    s.edit_policy("block overlaps", |t| {
        t.replace("overlap: warn", "overlap: block")
    });
    for round in 0..4 {
        let a = s.new_change(&["--system", "db"]);
        let b = s.new_change(&["--system", "db"]);
        let day = format!("2025-04-{:02}", 10 + round);
        let spawn = |id: &str| {
            s.cmd(
                std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
                "alice@example.com",
            )
            .args([
                "schedule",
                id,
                "--start",
                &format!("{day}T10:00:00Z"),
                "--end",
                &format!("{day}T12:00:00Z"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        };
        let (x, y) = (spawn(&a), spawn(&b));
        let codes = [x, y].map(|c| c.wait_with_output().unwrap().status.code());
        let mut sorted = codes;
        sorted.sort();
        assert_eq!(sorted, [Some(0), Some(1)], "round {round}: {codes:?}");
        s.chg("alice@example.com", &["validate"]).ok();
    }
}
