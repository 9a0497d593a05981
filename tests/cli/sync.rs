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
