//! Segregation of duties as a mapping (issue 25, point 5): each check forbids its pair of
//! duties in implement, close and approve, validate and the audit report it, the evidence
//! pack shows every check; `true` keeps today's meaning.

use super::{Store, assert_unchanged};

/// Replaces `segregation_of_duties: true` with `value` and commits it.
fn segregation(s: &Store, value: &str) {
    s.edit_policy("segregation of duties", |t| {
        t.replace(
            "segregation_of_duties: true",
            &format!("segregation_of_duties: {value}"),
        )
    });
}

const ALL_THREE: &str =
    "{approver_implements: false, requester_implements: false, implementer_reviews: false}";

/// A medium change by alice, approved by em and cm, scheduled around 09:30 on 11 March;
/// the clock at 09:30.
fn approved(s: &mut Store) -> String {
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    id
}

/// Runs `args` as `who`: exit 1, a message with `says`, nothing changed.
fn refused(s: &Store, who: &str, args: &[&str], says: &str) {
    let before = s.snapshot();
    let r = s.chg(who, args).code(1);
    assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    assert!(r.stderr.contains("segregation of duties"), "{}", r.stderr);
    assert_unchanged(s, &before);
}

#[test]
fn each_check_forbids_its_pair_of_duties_and_a_refusal_changes_nothing() {
    let mut s = Store::new();
    segregation(&s, ALL_THREE);
    let id = approved(&mut s);
    let implement = ["implement", id.as_str()];
    refused(
        &s,
        "em@example.com",
        &implement,
        "em@example.com approved CHG-2025-001 as engineering-manager and may not implement it",
    );
    refused(
        &s,
        "alice@example.com",
        &implement,
        "alice@example.com requested CHG-2025-001 and may not implement it",
    );
    s.chg("bob@example.com", &implement).ok();
    refused(
        &s,
        "bob@example.com",
        &["close", &id, "--outcome", "successful", "--review", "Fine"],
        "bob@example.com implemented CHG-2025-001 and may not write its post-implementation review",
    );
    // Someone else reviews; closing without a review stays the implementer's to do.
    s.chg(
        "cm@example.com",
        &["close", &id, "--outcome", "successful", "--review", "Fine"],
    )
    .ok();

    // An emergency change is approved after it is implemented: not by its implementer.
    s.at("2025-03-12T10:00:00Z");
    let e = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("em@example.com", &["implement", &e]).ok();
    refused(
        &s,
        "em@example.com",
        &["approve", &e],
        "em@example.com implemented CHG-2025-002 and may not approve it",
    );
    // What chg let through, the audit passes.
    assert_eq!(s.exceptions(), []);
}

#[test]
fn the_implementer_may_not_be_whoever_history_shows_filed_the_change() {
    // bob files a copy of alice's change by hand, naming her its requester.
    let mut s = Store::new();
    segregation(&s, "{requester_implements: false}");
    let hers = s.new_change(&[]);
    let id = hers.replace("-001", "-002");
    let text = s.read(&hers).replace(&hers, &id);
    std::fs::write(s.file(&hers).with_file_name(format!("{id}.yaml")), text).unwrap();
    s.commit_by_hand("bob@example.com", "2025-03-10T10:00:00Z", "for alice");
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    refused(
        &s,
        "bob@example.com",
        &["implement", &id],
        "bob@example.com filed (its first version is their commit) CHG-2025-002 and may not implement it",
    );
    s.chg("cm@example.com", &["implement", &id]).ok();
}

#[test]
fn true_keeps_todays_meaning_and_false_forbids_nothing() {
    let mut s = Store::new();
    let id = approved(&mut s);
    // The requester may not approve (today's rule) …
    let other = s.new_change(&[]);
    refused(
        &s,
        "alice@example.com",
        &["approve", &other, "--role", "change-manager"],
        "alice@example.com requested",
    );
    // … but an approver implements and the implementer reviews, as before.
    s.chg("em@example.com", &["implement", &id]).ok();
    s.chg(
        "em@example.com",
        &["close", &id, "--outcome", "successful", "--review", "Fine"],
    )
    .ok();
    // The requester implements her own change.
    let mine = approved(&mut s);
    s.chg("alice@example.com", &["implement", &mine]).ok();
    assert_eq!(s.exceptions(), []);

    // `false`: one person in two roles is let through.
    s.edit_policy("em may also act as change manager", |t| {
        t.replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, em@example.com]",
        )
    });
    segregation(&s, "false");
    s.chg(
        "em@example.com",
        &["approve", &other, "--role", "engineering-manager"],
    )
    .ok();
    s.chg(
        "em@example.com",
        &["approve", &other, "--role", "change-manager"],
    )
    .ok();
}

#[test]
fn an_unknown_check_is_a_policy_error_at_its_place() {
    let s = Store::new();
    let id = s.new_change(&[]);
    let line = s
        .git(&["show", "HEAD:policy/policy.yaml"])
        .lines()
        .position(|l| l.starts_with("segregation_of_duties:"))
        .unwrap()
        + 1;
    segregation(
        &s,
        "{approver_implements: false, implementer_review: false}",
    );
    let r = s.chg("em@example.com", &["approve", &id]).code(2);
    assert!(
        r.stderr.contains(&format!("policy/policy.yaml:{line}:")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`implementer_review` is not a check of segregation_of_duties"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("did you mean `implementer_reviews`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_approver_implementing_by_hand_is_an_audit_exception() {
    let mut s = Store::new();
    segregation(&s, "{approver_implements: false}");
    let id = approved(&mut s);
    s.rewrite(&id, |t| {
        t.replace("status: approved\n", "status: implementing\n")
            + "implementation:\n  implementer: em@example.com\n  started_at: 2025-03-11T09:30:00Z\n"
    });
    let commit = s.commit_by_hand("em@example.com", "2025-03-11T09:30:00Z", "started");
    let found = s.exceptions();
    assert!(
        found.contains(&("segregation-of-duties".into(), id.clone(), commit)),
        "{found:?}"
    );
    // The gate, asked mid-deploy, judges the implementer the file records.
    let (code, rules, out) = super::attacks::gate_rules(&s, &id, "2025-03-11T09:30:00Z");
    assert_eq!(code, 1, "{out}");
    assert!(rules.iter().any(|r| r == "segregation-of-duties"), "{out}");
}

#[test]
fn validate_and_the_evidence_pack_report_a_reviewer_who_implemented() {
    // Closed under `true` (allowed then); the policy forbids it since.
    let mut s = Store::new();
    let id = approved(&mut s);
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful", "--review", "Fine"],
    )
    .ok();
    segregation(&s, "{implementer_reviews: false}");
    let text = s.read(&id);
    let review = text.lines().position(|l| l == "review:").unwrap();
    let by = review
        + 1
        + text
            .lines()
            .skip(review)
            .position(|l| l.starts_with("  by: "))
            .unwrap();
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains(&format!(":{by}:")) && r.stdout.contains("segregation-of-duties"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("bob@example.com implemented CHG-2025-001 and may not write its post-implementation review"),
        "{}",
        r.stdout
    );
    // Judged by the policy at its parent, the close broke nothing.
    assert_eq!(s.exceptions(), []);

    // The pack judges the close by the policy of its day, which allowed it.
    let pack = s.export_2025();
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    let row = population.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(",pass,"), "{row}");
    let evidence = std::fs::read_to_string(pack.join(format!("changes/{id}.md"))).unwrap();
    for want in [
        "## Segregation of duties",
        "| requester approves | pass |",
        "| implementer reviews | allowed by the policy |",
    ] {
        assert!(evidence.contains(want), "{want} missing:\n{evidence}");
    }
}
