//! Risk from a questionnaire (SPEC section 11): every boundary of the levels, refusals by
//! new and set, findings by validate and audit.

use super::{Store, assert_unchanged, new_args};

const RISK: &str = "risk:
  questions:
    - {id: customer_facing, ask: \"Can customers notice if it goes wrong?\", weight: 3}
    - {id: untested_rollback, ask: \"Is the rollback untested?\", weight: 2}
    - {id: security_control, ask: \"Does it change authentication, access, firewall or encryption?\", weight: 3}
    - {id: data_migration, ask: \"Does it migrate or delete data?\", weight: 4}
  levels: {medium: 3, high: 6, critical: 9}
";

fn with_questionnaire() -> Store {
    let s = Store::new();
    s.edit_policy("a risk questionnaire", |t| format!("{t}{RISK}"));
    s
}

/// `chg new` (low priority) with these yes answers (the rest no) and this risk level.
fn new_with(s: &Store, yes: &[&str], level: &str) -> super::Run {
    let mut args: Vec<String> = new_args("Risky").iter().map(|a| a.to_string()).collect();
    let at = args.iter().position(|a| a == "--risk").unwrap();
    args[at + 1] = level.to_owned();
    for q in [
        "customer_facing",
        "untested_rollback",
        "security_control",
        "data_migration",
    ] {
        let answer = if yes.contains(&q) { "yes" } else { "no" };
        args.push("--answer".into());
        args.push(format!("{q}={answer}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.chg("alice@example.com", &args)
}

#[test]
fn every_boundary_of_the_levels() {
    let s = with_questionnaire();
    let cases: [(&[&str], u32, &str); 8] = [
        (&[], 0, "low"),
        (&["untested_rollback"], 2, "low"),
        (&["customer_facing"], 3, "medium"),
        (&["customer_facing", "untested_rollback"], 5, "medium"),
        (&["customer_facing", "security_control"], 6, "high"),
        (
            &["customer_facing", "untested_rollback", "security_control"],
            8,
            "high",
        ),
        (
            &["customer_facing", "untested_rollback", "data_migration"],
            9,
            "critical",
        ),
        (
            &[
                "customer_facing",
                "untested_rollback",
                "security_control",
                "data_migration",
            ],
            12,
            "critical",
        ),
    ];
    let levels = ["low", "medium", "high", "critical"];
    for (yes, score, level) in cases {
        let i = levels.iter().position(|l| *l == level).unwrap();
        // The score's level and every level above it are accepted...
        for ok in &levels[i..] {
            new_with(&s, yes, ok).ok();
        }
        // ...the one below is refused, saying the score, and nothing is filed.
        if i > 0 {
            let before = s.snapshot();
            let r = new_with(&s, yes, levels[i - 1]);
            assert_eq!(r.code, 2, "{score}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("below {level}"))
                    && r.stderr.contains(&format!("({score})")),
                "{score}: {}",
                r.stderr
            );
            assert_unchanged(&s, &before);
        }
    }
    s.chg("alice@example.com", &["validate"]).ok();
}

#[test]
fn unanswered_or_misanswered_questionnaires_are_refused_and_reported() {
    let mut s = with_questionnaire();
    let before = s.snapshot();
    let r = s.chg("alice@example.com", &new_args("No answers")).code(2);
    assert!(
        r.stderr.contains("risk questionnaire is not answered"),
        "{}",
        r.stderr
    );
    let mut args = new_args("Typo");
    args.extend(["--answer", "customer_facnig=yes"]);
    let r = s.chg("alice@example.com", &args).code(2);
    assert!(
        r.stderr.contains("did you mean `customer_facing`"),
        "{}",
        r.stderr
    );
    let mut args = new_args("Maybe");
    args.extend(["--answer", "customer_facing=maybe"]);
    s.chg("alice@example.com", &args).code(2);
    assert_unchanged(&s, &before);
    // A medium change cannot be talked down with set.
    let id = new_with(&s, &["customer_facing"], "medium").ok_line();
    let before = s.snapshot();
    let r = s.chg("alice@example.com", &["set", &id, "risk_level=low"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("below medium"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    // By hand: validate reports it at its place; audit reports the implement of it.
    s.rewrite(&id, |t| t.replace("risk_level: medium", "risk_level: low"));
    s.git(&["commit", "-qam", "talk it down"]);
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(
        r.stdout.contains(": risk: risk_level low is below medium"),
        "{}",
        r.stdout
    );
    // Nobody can approve it as it is: an approval vouches for the risk declared.
    let before = s.snapshot();
    let r = s.chg("cm@example.com", &["approve", &id]).code(1);
    assert!(
        r.stderr
            .contains("cannot be approved as it is: risk_level low is below medium"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    s.schedule(&id, "2025-03-10T10:00:00Z", "2025-03-10T12:00:00Z")
        .code(0);
    s.at("2025-03-10T10:30:00Z");
    let r = s.chg("bob@example.com", &["implement", &id]).code(1);
    assert!(r.stderr.contains("below medium"), "{}", r.stderr);
    let (code, rules, out) = super::attacks::gate_rules(&s, &id, "2025-03-10T10:30:00Z");
    assert_eq!(code, 1, "{out}");
    assert!(rules.iter().any(|r| r == "risk"), "{out}");
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(r.stdout.contains(": risk: "), "{}", r.stdout);
}

#[test]
fn a_questionnaire_with_mistakes_has_findings_with_places() {
    let s = Store::new();
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    for (risk, want) in [
        (
            RISK.replace("levels: {medium: 3, high: 6", "levels: {medium: 7, high: 6"),
            "high starts at 6, below medium (7)",
        ),
        (RISK.replace("weight: 2", "weight: 0"), "has weight 0"),
        (
            RISK.replace("id: untested_rollback", "id: customer_facing"),
            "asked twice",
        ),
        (
            RISK.replace("levels: {medium: 3", "levels: {low: 0, medium: 3"),
            "names `low`",
        ),
    ] {
        std::fs::write(&p, format!("{text}{risk}")).unwrap();
        let r = s.chg("alice@example.com", &["validate"]).code(1);
        assert!(r.stdout.contains(want), "{want}: {}", r.stdout);
    }
}

#[test]
fn new_asks_the_questions_at_a_terminal() {
    let s = with_questionnaire();
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    cmd.env("TERM", "dumb").args(new_args("Asked"));
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    p.exp_string("Can customers notice if it goes wrong? [y/N]")
        .unwrap();
    p.send_line("y").unwrap();
    p.exp_string("Is the rollback untested?").unwrap();
    p.send_line("n").unwrap();
    p.exp_string("firewall or encryption?").unwrap();
    p.send_line("").unwrap();
    p.exp_string("migrate or delete data?").unwrap();
    p.send_line("no").unwrap();
    // Low is below the score's medium: asked again, offering only what the policy accepts,
    // the scored level by default.
    p.exp_string("your answers score medium, above the risk level low given")
        .unwrap();
    p.exp_string("[medium, high, critical] (default medium)")
        .unwrap();
    p.send_line("").unwrap();
    p.exp_string("CHG-2025-001").unwrap();
    p.exp_eof().unwrap();
    assert!(s.read("CHG-2025-001").contains("risk_level: medium"));
    s.chg("cm@example.com", &["cancel", "1", "--reason", "again"])
        .ok();
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    let mut args = new_args("Asked");
    let at = args.iter().position(|a| *a == "--risk").unwrap();
    args[at + 1] = "medium";
    cmd.env("TERM", "dumb").args(args);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    for answer in ["y", "n", "n", "n"] {
        p.exp_string("[y/N]").unwrap();
        p.send_line(answer).unwrap();
    }
    p.exp_string("CHG-2025-002").unwrap();
    p.exp_eof().unwrap();
    let text = s.read("CHG-2025-002");
    assert!(
        text.contains("risk_assessment:") && text.contains("customer_facing: true"),
        "{text}"
    );
}

/// A refusal after the prompts keeps what was typed, and `--from` the kept file resumes it.
#[test]
fn a_refused_interactive_new_keeps_what_was_typed() {
    let s = with_questionnaire();
    // Only the security-team lead may declare an emergency: refused at the end.
    s.edit_policy("declared_by", |t| {
        t.replacen(
            "\nemergency:\n",
            "\nemergency:\n  declared_by: [security-team-lead]\n",
            1,
        )
    });
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    let mut args = new_args("Typed with care");
    args.retain(|a| *a != "--rollback" && *a != "r");
    args.push("--emergency");
    cmd.env("TERM", "dumb").args(&args);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    for _ in 0..4 {
        p.exp_string("[y/N]").unwrap();
        p.send_line("n").unwrap();
    }
    p.exp_string("rollback plan").unwrap();
    p.send_line("A rollback written at length").unwrap();
    p.exp_string("what you typed is kept in .git/chg/new.yaml")
        .unwrap();
    p.exp_eof().unwrap();
    let kept = std::fs::read_to_string(s.root().join(".git/chg/new.yaml")).unwrap();
    assert!(
        kept.contains("rollback_plan: A rollback written at length")
            && kept.contains("customer_facing: false"),
        "{kept}"
    );
    assert!(!s.root().join("changes/2025").exists());
    let r = s.chg(
        "alice@example.com",
        &["new", "--from", ".git/chg/new.yaml", "--model", "normal"],
    );
    let id = r.ok().stdout.trim().to_owned();
    assert!(s.read(&id).contains("A rollback written at length"));
    assert!(!s.root().join(".git/chg/new.yaml").exists());
}

/// Adopting the questionnaire strands no open change: those submitted before it keep the
/// rules of their day (answers optional, checked where given); a draft submitted after it
/// answers it; `chg set --answer` and `chg edit` answer it.
#[test]
fn adopting_the_questionnaire_keeps_open_changes_moving() {
    let s = Store::new();
    let old = s.new_change(&[]);
    let draft = s.new_change(&["--draft"]);
    s.edit_policy("a risk questionnaire", |t| format!("{t}{RISK}"));
    // Validate, set, schedule, approve, gate and implement all take the older change.
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("alice@example.com", &["set", &old, "risk_level=medium"])
        .ok();
    s.chg(
        "alice@example.com",
        &[
            "schedule",
            &old,
            "--start",
            "2025-03-11T10:00:00Z",
            "--end",
            "+1h",
        ],
    )
    .ok();
    for who in ["em@example.com", "cm@example.com"] {
        s.chg(who, &["approve", &old]).ok();
    }
    let gate = s.chg(
        "alice@example.com",
        &["gate", &old, "--at", "2025-03-11T10:30:00Z"],
    );
    assert_eq!(gate.code, 0, "{}", gate.stdout);
    // Its answers, once given, are checked: low answers never lower the declared level, and
    // yes to everything is above it.
    let r = s
        .chg(
            "alice@example.com",
            &[
                "set",
                &old,
                "--answer",
                "data_migration=yes",
                "--answer",
                "customer_facing=yes",
                "--answer",
                "untested_rollback=no",
                "--answer",
                "security_control=no",
            ],
        )
        .code(1);
    assert!(r.stderr.contains("below high"), "{}", r.stderr);
    // The draft is submitted under the questionnaire: it must answer.
    let r = s.chg("alice@example.com", &["submit", &draft]).code(1);
    assert!(
        r.stderr
            .contains(&format!("chg set {draft} --answer customer_facing=yes|no")),
        "{}",
        r.stderr
    );
    let mut answers = vec!["set", draft.as_str()];
    for a in [
        "customer_facing=no",
        "untested_rollback=no",
        "security_control=no",
        "data_migration=no",
    ] {
        answers.extend(["--answer", a]);
    }
    s.chg("alice@example.com", &answers).ok();
    s.chg("alice@example.com", &["submit", &draft]).ok();
    s.chg("alice@example.com", &["validate"]).ok();
    let audit = s.chg("alice@example.com", &["audit"]);
    assert_eq!(audit.code, 0, "{}", audit.stdout);
    // A draft submitted by hand under the questionnaire without answers is not of the
    // older day: validate and audit report it.
    let late = s.new_change(&["--draft"]);
    s.rewrite(&late, |t| {
        t.replace("status: draft", "status: pending_approval")
    });
    s.git(&["commit", "-qam", "submitted by hand"]);
    let r = s.chg("alice@example.com", &["validate", &late]).code(1);
    assert!(
        r.stdout.contains("risk questionnaire is not answered"),
        "{}",
        r.stdout
    );
    let audit = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(audit.stdout.contains("risk"), "{}", audit.stdout);
}

#[test]
fn a_draft_needs_no_answers_until_it_is_submitted() {
    let s = with_questionnaire();
    let r = s.chg("alice@example.com", &["new", "--draft", "--title", "Idea"]);
    let id = r.ok().stdout.trim().to_owned();
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["submit", &id]).code(1);
    assert!(
        r.stderr.contains("risk questionnaire is not answered"),
        "{}",
        r.stderr
    );
}

/// `chg edit` answers the questionnaire: the answers are content (it said "nothing to
/// change").
#[test]
fn edit_answers_the_questionnaire() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.edit_policy("a risk questionnaire", |t| format!("{t}{RISK}"));
    let script = s.dir.path().join("answer.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'risk_assessment: {customer_facing: false, untested_rollback: false, security_control: false, data_migration: false}\\n' >> \"$1\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "alice@example.com",
    );
    let o = cmd
        .env("EDITOR", script.display().to_string())
        .args(["edit", &id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        s.read(&id).contains("data_migration: false"),
        "{}",
        s.read(&id)
    );
}

#[test]
fn show_gives_the_answers_the_risk_level_came_from() {
    // Issue 24: show printed the level and hid the answers a reviewer checks it against.
    let s = with_questionnaire();
    let id = new_with(&s, &["customer_facing"], "medium").ok_line();
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains(
            "\nrisk_assessment:\n  customer_facing: yes\n  data_migration: no\n  security_control: no\n  untested_rollback: no\n"
        ),
        "{show}"
    );
}

/// A branch made before the questionnaire does not carry the older rules in: a change it
/// brings in submitted is submitted into main by the merge, under main's policy.
#[test]
fn a_merge_brings_a_change_in_under_the_questionnaire_of_its_line() {
    let s = Store::new();
    let old = s.new_change(&[]);
    s.git(&["checkout", "-qb", "feature"]);
    let branch = s.new_change(&["--title", "Filed on a branch"]);
    s.git(&["checkout", "-q", "main"]);
    s.edit_policy("a risk questionnaire", |t| format!("{t}{RISK}"));
    s.git(&[
        "merge",
        "-q",
        "--no-ff",
        "feature",
        "-m",
        "Merge the feature branch",
    ]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains(&format!("chg set {branch} --answer")) && !r.stdout.contains(&old),
        "{}",
        r.stdout
    );
    let gate = s.chg("alice@example.com", &["gate", &branch]).code(1);
    assert!(gate.stdout.contains("  risk: "), "{}", gate.stdout);
    let mut answers = vec!["set", branch.as_str()];
    for a in [
        "customer_facing=no",
        "untested_rollback=no",
        "security_control=no",
        "data_migration=no",
    ] {
        answers.extend(["--answer", a]);
    }
    s.chg("alice@example.com", &answers).ok();
    s.chg("alice@example.com", &["validate"]).ok();
}
