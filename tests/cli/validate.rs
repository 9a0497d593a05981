//! `chg validate`: a fixture per rule (a bad file flagged with the right rule and place),
//! tricky good files that must pass, hostile input, and snapshots of each output format.

use super::*;

/// A complete, valid change requested 2025-03-09 (so it lives in changes/2025/03).
const GOOD: &str = "\
id: CHG-2025-001
title: Rotate TLS certificates
description: Replace the expiring wildcard certificate
business_justification: The certificate expires in 10 days
requester: alice@example.com
request_date: 2025-03-09T08:00:00Z
change_type: configuration
change_model: normal
priority: medium
urgency: medium
risk_level: low
affected_systems: [edge-proxy]
implementation_plan: Upload and reload
rollback_plan: Reload the previous certificate
status: pending_approval
";

fn write(s: &Store, rel: &str, text: &[u8]) {
    let path = s.root().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Findings as (file, line, column, rule) from `--format json`.
fn findings(s: &Store) -> (i32, Vec<serde_json::Value>) {
    let r = s.chg("alice@example.com", &["validate", "--format", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    (r.code, v.as_array().unwrap().clone())
}

fn has(findings: &[serde_json::Value], rule: &str, line: Option<u64>, column: Option<u64>) -> bool {
    findings.iter().any(|f| {
        f["rule"] == rule
            && f["severity"] == "error"
            && line.is_none_or(|l| f["line"] == l)
            && column.is_none_or(|c| f["column"] == c)
    })
}

const FILE: &str = "changes/2025/03/CHG-2025-001.yaml";

/// A rule, the edit of GOOD that breaks it (from, to), and the expected line and column.
type Case = (
    &'static str,
    (&'static str, &'static str),
    Option<u64>,
    Option<u64>,
);

#[test]
fn each_rule_flags_the_right_place() {
    // (rule, edit of GOOD as (from, to), expected line, expected column)
    let cases: &[Case] = &[
        (
            "required",
            (
                "rollback_plan: Reload the previous certificate",
                "rollback_plan: '   '",
            ),
            Some(14),
            Some(16),
        ),
        (
            "required",
            ("rollback_plan: Reload the previous certificate\n", ""),
            None,
            None,
        ),
        (
            "enum",
            ("priority: medium", "priority: urgent"),
            Some(9),
            Some(11),
        ),
        (
            "enum",
            ("change_type: configuration", "change_type: configuraton"),
            Some(7),
            Some(14),
        ),
        (
            "unknown-key",
            ("rollback_plan:", "rollback_paln:"),
            Some(14),
            Some(1),
        ),
        (
            "type",
            (
                "affected_systems: [edge-proxy]",
                "affected_systems: edge-proxy",
            ),
            Some(12),
            Some(19),
        ),
        (
            "type",
            (
                "status: pending_approval",
                "status: pending_approval\ntesting_required: 'true'",
            ),
            Some(16),
            Some(19),
        ),
        (
            "timestamp",
            (
                "request_date: 2025-03-09T08:00:00Z",
                "request_date: 2025-03-09",
            ),
            Some(6),
            Some(15),
        ),
        (
            "file-name",
            ("id: CHG-2025-001", "id: CHG-2025-002"),
            Some(1),
            Some(5),
        ),
        (
            "yaml",
            ("urgency: medium", "urgency: medium\nurgency: high"),
            Some(11),
            Some(1),
        ),
        (
            "testing",
            ("change_type: configuration", "change_type: security"),
            None,
            None,
        ),
        (
            "schedule",
            (
                "status: pending_approval",
                "schedule:\n  start: 2025-03-12T10:00:00Z\n  end: 2025-03-12T09:00:00Z\nstatus: pending_approval",
            ),
            Some(17),
            Some(8),
        ),
        (
            "window",
            (
                "status: pending_approval",
                "schedule:\n  start: 2025-12-22T10:00:00Z\n  end: 2025-12-22T12:00:00Z\nstatus: pending_approval",
            ),
            Some(16),
            Some(3),
        ),
        (
            "approval-role",
            (
                "status: pending_approval",
                "status: pending_approval\napprovals:\n  - {by: mallory@example.com, role: change-manager, decision: approved, at: 2025-03-09T09:00:00Z}",
            ),
            Some(17),
            Some(10),
        ),
        (
            "approval-role",
            (
                "status: pending_approval",
                "status: pending_approval\napprovals:\n  - {by: cm@example.com, role: cab, decision: approved, at: 2025-03-09T09:00:00Z}",
            ),
            Some(17),
            Some(32),
        ),
        (
            "approval-role",
            (
                "status: pending_approval",
                "status: pending_approval\napprovals:\n  - {by: cm@example.com, role: change-manager, decision: approved, at: 2025-03-09T09:00:00Z}\n  - {by: cm@example.com, role: change-manager, decision: approved, at: 2025-03-09T10:00:00Z}",
            ),
            Some(18),
            Some(32),
        ),
        (
            "segregation-of-duties",
            ("requester: alice@example.com", "requester: cm@example.com"),
            None,
            None,
        ),
        (
            "status",
            ("status: pending_approval", "status: approved"),
            Some(15),
            Some(9),
        ),
        (
            "status",
            (
                "status: pending_approval",
                "status: closed\napprovals:\n  - {by: cm@example.com, role: change-manager, decision: approved, at: 2025-03-09T09:00:00Z}\n  - {by: em@example.com, role: engineering-manager, decision: approved, at: 2025-03-09T09:00:00Z}",
            ),
            None,
            None,
        ),
        (
            "review",
            (
                "status: pending_approval",
                "status: closed\napprovals:\n  - {by: cm@example.com, role: change-manager, decision: approved, at: 2025-03-09T09:00:00Z}\n  - {by: em@example.com, role: engineering-manager, decision: approved, at: 2025-03-09T09:00:00Z}\nimplementation:\n  implementer: bob@example.com\n  started_at: 2025-03-09T10:00:00Z\n  completed_at: 2025-03-09T11:00:00Z\n  outcome: failed",
            ),
            None,
            None,
        ),
        (
            "emergency",
            (
                "change_model: normal",
                "change_model: emergency\nimplementation:\n  implementer: bob@example.com\n  started_at: 2025-03-08T10:00:00Z",
            ),
            None,
            None,
        ),
    ];
    for (rule, (from, to), line, column) in cases {
        let s = Store::new();
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "{rule}: the edit {from:?} did not apply");
        let text = if *rule == "segregation-of-duties" {
            text.replace("status: pending_approval", "status: pending_approval\napprovals:\n  - {by: cm@example.com, role: change-manager, decision: approved, at: 2025-03-09T09:00:00Z}")
        } else {
            text
        };
        write(&s, FILE, text.as_bytes());
        let (code, f) = findings(&s);
        assert_eq!(code, 1, "{rule}: {f:#?}");
        assert!(
            has(&f, rule, *line, *column),
            "{rule} at {line:?}:{column:?} not in {f:#?}"
        );
    }
}

#[test]
fn files_in_the_wrong_place_or_claiming_one_id_twice_say_how_to_fix_it() {
    let s = Store::new();
    write(&s, "changes/2025/02/CHG-2025-001.yaml", GOOD.as_bytes());
    write(
        &s,
        "changes/2025/03/CHG-2025-009.yaml",
        GOOD.replace("CHG-2025-001", "CHG-2025-009").as_bytes(),
    );
    write(
        &s,
        "changes/2025/03/copy/CHG-2025-009.yaml",
        GOOD.replace("CHG-2025-001", "CHG-2025-009").as_bytes(),
    );
    let (_, f) = findings(&s);
    let location = f.iter().find(|x| x["rule"] == "location").unwrap();
    assert_eq!(location["file"], "changes/2025/02/CHG-2025-001.yaml");
    assert!(
        location["message"]
            .as_str()
            .unwrap()
            .contains("move it to changes/2025/03/CHG-2025-001.yaml")
    );
    let dup: Vec<_> = f.iter().filter(|x| x["rule"] == "duplicate-id").collect();
    assert_eq!(dup.len(), 2, "{f:#?}");
    assert!(
        dup[0]["message"]
            .as_str()
            .unwrap()
            .contains("also claimed by")
    );
}

#[test]
fn tricky_good_files_pass() {
    let tricky = [
        // Comments everywhere, block scalars, unusual key order, quoting, flow and block lists.
        "# top comment\n---\nstatus: pending_approval # where it is\nid: \"CHG-2025-001\"\nrollback_plan: >\n  Reload the previous\n  certificate\ntitle: 'Rotate TLS: wildcard'\ndescription: |\n  Line one\n\n  Line three\nbusiness_justification: Expiry\n# a comment between keys\nrequester: alice@example.com\nrequest_date: 2025-03-09T08:00:00+00:00\nchange_type: configuration\nchange_model: normal\npriority: medium\nrisk_level: low\naffected_systems:\n  - edge-proxy   # the public one\n  - \"cdn\"\nimplementation_plan: Upload and reload\n...\n",
        // CRLF line endings and unicode.
        &GOOD
            .replace(
                "title: Rotate TLS certificates",
                "title: Zertifikate erneuern – 証明書 🔐",
            )
            .replace('\n', "\r\n"),
        // A byte-order mark.
        &format!("\u{feff}{GOOD}"),
    ];
    for text in tricky {
        let s = Store::new();
        write(&s, FILE, text.as_bytes());
        let r = s.chg("alice@example.com", &["validate"]);
        assert_eq!(r.code, 0, "{text}\n{}", r.stdout);
    }
}

#[test]
fn hostile_input_gets_a_clear_finding_not_a_crash() {
    let s = Store::new();
    write(&s, FILE, GOOD.as_bytes());
    let mut bomb = String::from("id: CHG-2025-002\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..20 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    write(&s, "changes/2025/03/CHG-2025-002.yaml", bomb.as_bytes());
    write(
        &s,
        "changes/2025/03/CHG-2025-003.yaml",
        format!("title: {}{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
    );
    write(
        &s,
        "changes/2025/03/CHG-2025-004.yaml",
        b"id: CHG-2025-004\ntitle: caf\xe9\n",
    );
    write(
        &s,
        "changes/2025/03/CHG-2025-005.yaml",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    );
    write(&s, "changes/2025/03/notes.md", b"# not a change\n");
    let big = std::fs::File::create(s.root().join("changes/2025/03/CHG-2025-006.yaml")).unwrap();
    big.set_len(100 * 1024 * 1024).unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        s.root().join("changes/2025/03/CHG-2025-007.yaml"),
    )
    .unwrap();
    // Block nesting far past the depth budget (10,000 levels would exceed the size limit).
    let deep: String = (0..1_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    write(&s, "changes/2025/03/CHG-2025-008.yaml", deep.as_bytes());

    let (code, f) = findings(&s);
    assert_eq!(code, 1);
    let rule_of = |name: &str| -> Vec<&str> {
        f.iter()
            .filter(|x| x["file"].as_str().unwrap().ends_with(name))
            .map(|x| x["rule"].as_str().unwrap())
            .collect()
    };
    assert_eq!(rule_of("CHG-2025-001.yaml"), Vec::<&str>::new(), "{f:#?}");
    assert_eq!(rule_of("CHG-2025-002.yaml"), ["yaml"]);
    assert!(
        f.iter()
            .any(|x| x["message"].as_str().unwrap().contains("alias bomb"))
    );
    assert_eq!(rule_of("CHG-2025-003.yaml"), ["yaml"]);
    assert_eq!(rule_of("CHG-2025-004.yaml"), ["encoding"]);
    let utf8 = f
        .iter()
        .find(|x| x["rule"] == "encoding" && x["file"].as_str().unwrap().ends_with("004.yaml"))
        .unwrap();
    assert_eq!(
        (utf8["line"].as_u64(), utf8["column"].as_u64()),
        (Some(2), Some(11))
    );
    assert_eq!(rule_of("CHG-2025-005.yaml"), ["encoding"]);
    assert_eq!(rule_of("CHG-2025-006.yaml"), ["too-large"]);
    assert_eq!(rule_of("CHG-2025-007.yaml"), ["symlink"]);
    assert_eq!(rule_of("CHG-2025-008.yaml"), ["yaml"]);
    assert_eq!(rule_of("notes.md"), ["file-name"]);
    // Commands that read the store survive it too.
    s.chg("alice@example.com", &["list"]).ok();
    s.chg("alice@example.com", &["show", "CHG-2025-001"]).ok();
}

#[test]
fn scope_ids_paths_and_changed_since() {
    let s = Store::new();
    write(&s, FILE, GOOD.as_bytes());
    s.git(&["add", "."]);
    s.git(&["commit", "-qm", "a good change"]);
    s.git(&["branch", "base"]);
    let bad = GOOD
        .replace("CHG-2025-001", "CHG-2025-002")
        .replace("priority: medium", "priority: urgent");
    write(&s, "changes/2025/03/CHG-2025-002.yaml", bad.as_bytes());
    s.chg("alice@example.com", &["validate", "CHG-2025-001"])
        .ok();
    s.chg("alice@example.com", &["validate", FILE]).ok();
    s.chg(
        "alice@example.com",
        &["validate", "changes/2025/03/CHG-2025-002.yaml"],
    )
    .code(1);
    // Untracked files count as changed since the base.
    let r = s
        .chg(
            "alice@example.com",
            &["validate", "--changed-since", "base"],
        )
        .code(1);
    assert!(
        r.stdout.contains("CHG-2025-002.yaml:9:11: enum"),
        "{}",
        r.stdout
    );
    // A file that did not change is not reported, but still counts for duplicate ids.
    std::fs::remove_file(s.root().join("changes/2025/03/CHG-2025-002.yaml")).unwrap();
    write(
        &s,
        "changes/2025/03/copy/CHG-2025-001.yaml",
        GOOD.as_bytes(),
    );
    let r = s
        .chg(
            "alice@example.com",
            &["validate", "--changed-since", "base", "--format", "json"],
        )
        .code(1);
    let f: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        f.as_array()
            .unwrap()
            .iter()
            .all(|x| x["file"] == "changes/2025/03/copy/CHG-2025-001.yaml"),
        "{f:#?}"
    );
    s.chg(
        "alice@example.com",
        &["validate", "--changed-since", "no-such-ref"],
    )
    .code(2);
    s.chg("alice@example.com", &["validate", "nowhere.yaml"])
        .code(2);
}

#[test]
fn output_formats_are_stable() {
    let s = Store::new();
    write(
        &s,
        FILE,
        GOOD.replace("priority: medium", "priority: urgent")
            .replace("rollback_plan:", "rollback_paln:")
            .as_bytes(),
    );
    write(
        &s,
        "changes/2025/03/CHG-2025-002.yaml",
        b"id: CHG-2025-002\ntitle: [unclosed\n",
    );
    let mut all = String::new();
    for format in ["text", "json", "github"] {
        let r = s
            .chg("alice@example.com", &["validate", "--format", format])
            .code(1);
        all.push_str(&format!(
            "===== --format {format} (exit {})\n{}",
            r.code, r.stdout
        ));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn the_schema_accepts_what_validate_accepts() {
    let s = Store::new();
    let r = s.chg("alice@example.com", &["schema"]).ok();
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let props = schema["properties"].as_object().unwrap();
    for line in GOOD.lines() {
        let key = line.split(':').next().unwrap();
        assert!(props.contains_key(key), "{key} missing from the schema");
    }
    assert_eq!(props["change_type"]["enum"][0], "security");
    // An independent validator accepts what chg writes and refuses what validate refuses.
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json =
        |text: &str| serde_json::to_value(chg::decode::decode_str("c.yaml", text).change).unwrap();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    for text in [GOOD.to_owned(), s.read(&id)] {
        let doc = as_json(&text);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{text}");
    }
    let mut bad = as_json(GOOD);
    bad["priority"] = "urgent".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = as_json(GOOD);
    bad["rollback"] = "a typo for rollback_plan".into();
    assert!(!validator.is_valid(&bad));
}

#[test]
fn a_clean_merge_that_changes_an_approved_plan_is_caught() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.git(&["checkout", "-q", "-b", "side"]);
    s.rewrite(&id, |t| {
        t.replace(
            "Upload the new certificate and reload",
            "Restart everything",
        )
    });
    s.git(&["commit", "-qam", "plan, by hand"]);
    s.git(&["checkout", "-q", "main"]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    // Git merges the two textually without a conflict: approved, with a plan nobody approved.
    s.git(&["merge", "-q", "--no-edit", "side"]);
    let text = s.read(&id);
    assert!(text.contains("Restart everything") && text.contains("status: approved"));
    let (code, fs) = findings(&s);
    assert_eq!(code, 1);
    let (line, l) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with("digest:"))
        .unwrap();
    let column = l.find("sha256:").unwrap() as u64 + 1;
    assert!(
        has(&fs, "approval-digest", Some(line as u64 + 1), Some(column)),
        "{fs:#?}"
    );
    assert_eq!(
        fs.iter().filter(|f| f["rule"] == "approval-digest").count(),
        2,
        "one per approval: {fs:#?}"
    );
    // Neither the gate nor implement accepts it, and audit names the merge.
    let gate = s.chg("alice@example.com", &["gate", &id, "--json"]).code(1);
    assert!(gate.stdout.contains("approval-digest"), "{}", gate.stdout);
    let before = s.snapshot();
    let mut cmd = s.cmd(
        std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
        "bob@example.com",
    );
    let r = super::run_output(
        cmd.env("CHG_NOW", "2025-03-11T09:30:00Z")
            .args(["implement", &id])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("history does not verify"), "{}", r.stderr);
    super::assert_unchanged(&s, &before);
    let audit = s
        .chg("alice@example.com", &["audit", "--format", "json"])
        .code(1);
    let v: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "exception")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"approval-digest"), "{rules:?}");
    // A chg edit back to the approved plan is not needed: restoring the text by hand (and
    // committing it) clears it, as the file is back at the version the approvals were for.
    s.rewrite(&id, |t| {
        t.replace(
            "Restart everything",
            "Upload the new certificate and reload",
        )
    });
    s.git(&["commit", "-qam", "restore the approved plan"]);
    let (code, fs) = findings(&s);
    assert_eq!(code, 0, "{fs:#?}");
}
