//! `chg withdraw` (issue 24, point 7): an approver takes back their own approval before
//! implementation, as one signed, trailered commit that every reader counts; a withdrawal
//! anyone else writes, by chg-looking trailers or by hand, is refused or reported.

use super::attacks::{exceptions, gate_rules};
use super::{Store, assert_unchanged, trailer_lines};

const AT: &str = "2025-03-11T09:30:00Z";

/// A store with one medium change approved by em and cm and scheduled; its id.
fn approved() -> (Store, String) {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    (s, id)
}

fn withdraw(s: &Store, who: &str, id: &str, more: &[&str]) -> super::Run {
    let args = [
        &["withdraw", id, "--comment", "Rollback not rehearsed"],
        more,
    ]
    .concat();
    s.chg(who, &args)
}

/// The audit's exceptions that are new since `before`, as (rule, change).
fn new_exceptions(s: &Store, before: &[(String, String, String)]) -> Vec<(String, String)> {
    exceptions(s)
        .into_iter()
        .filter(|e| !before.contains(e))
        .map(|(rule, change, _)| (rule, change))
        .collect()
}

#[test]
fn a_withdrawn_approval_reopens_the_change_closes_the_gate_and_may_be_given_again() {
    let (mut s, id) = approved();
    s.at("2025-03-10T12:00:00Z");
    assert_eq!(gate_rules(&s, &id, AT).0, 0);
    let r = withdraw(&s, "cm@example.com", &id, &[]).ok();
    assert!(
        r.stdout.contains(&format!(
            "{id}: withdraw (change-manager), approved -> pending_approval"
        )) && r.stdout.contains("waiting for approval by: change-manager"),
        "{}",
        r.stdout
    );
    // One commit, with the trailers of every transition.
    assert_eq!(
        trailer_lines(&s).last().unwrap(),
        "cm|cm@example.com|withdraw|change-manager|approved|pending_approval"
    );
    let subject = s.git(&["log", "-1", "--format=%s"]);
    assert_eq!(subject.trim(), format!("{id}: withdraw (change-manager)"));
    // The approval stays as history, the withdrawal follows it with its reason.
    let text = s.read(&id);
    assert_eq!(text.matches("decision: approved").count(), 2, "{text}");
    assert!(
        text.contains("- by: cm@example.com\n  role: change-manager\n  decision: withdrawn\n  at: 2025-03-10T12:00:00Z\n  comments: Rollback not rehearsed\n"),
        "{text}"
    );
    let (code, rules, out) = gate_rules(&s, &id, AT);
    assert_eq!(
        (code, rules[0].as_str()),
        (1, "implemented-unapproved"),
        "{out}"
    );
    // Every reader counts it: show, list's "waiting for", validate, audit, log.
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains("[ ] change-manager: waiting (approval withdrawn by cm@example.com at 2025-03-10 12:00)\n      Rollback not rehearsed\n")
            && show.contains("[x] engineering-manager: em@example.com"),
        "{show}"
    );
    let json = s
        .chg("alice@example.com", &["show", &id, "--json"])
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["missing_roles"], serde_json::json!(["change-manager"]));
    let mine = s
        .chg(
            "cm@example.com",
            &["list", "--awaiting-me", "--format", "json"],
        )
        .ok()
        .stdout;
    assert!(mine.contains(&id), "{mine}");
    let log = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert!(log.contains("withdraw"), "{log}");
    s.chg("alice@example.com", &["validate"]).ok();
    assert_eq!(exceptions(&s), vec![]);
    // cm may approve again: not "approving twice for the same role".
    s.at("2025-03-10T13:00:00Z");
    let r = s.chg("cm@example.com", &["approve", &id]).ok();
    assert!(
        r.stdout.contains("pending_approval -> approved"),
        "{}",
        r.stdout
    );
    assert_eq!(gate_rules(&s, &id, AT).0, 0);
    s.chg("alice@example.com", &["validate"]).ok();
    assert_eq!(exceptions(&s), vec![]);
    // Once implementation starts, no withdrawal.
    s.at(AT);
    s.chg("bob@example.com", &["implement", &id]).ok();
    let before = s.snapshot();
    let r = withdraw(&s, "em@example.com", &id, &[]).code(1);
    assert!(
        r.stderr.contains("is implementing")
            && r.stderr
                .contains("only while the change is pending approval or approved"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    assert_eq!(exceptions(&s), vec![]);
}

#[test]
fn only_the_approver_withdraws_their_own_approval_and_a_refusal_changes_nothing() {
    let (s, id) = {
        let s = Store::new();
        let id = s.new_change(&[]);
        s.chg("em@example.com", &["approve", &id]).ok();
        (s, id)
    };
    let before = s.snapshot();
    for (who, more, code, says) in [
        // cm has approved nothing: not em's approval to take back.
        (
            "cm@example.com",
            &[][..],
            1,
            "cm@example.com has no approval of",
        ),
        (
            "cm@example.com",
            &["--role", "engineering-manager"][..],
            1,
            "only the person who approved may withdraw it",
        ),
        // em did not approve as change manager.
        (
            "em@example.com",
            &["--role", "change-manager"][..],
            1,
            "em@example.com has no approval of",
        ),
        ("alice@example.com", &[][..], 1, "has no approval of"),
        (
            "em@example.com",
            &["--role", "cab"][..],
            2,
            "not a role in the policy",
        ),
    ] {
        let r = withdraw(&s, who, &id, more).code(code);
        assert!(r.stderr.contains(says), "{who} {more:?}: {}", r.stderr);
        assert_unchanged(&s, &before);
    }
    s.chg("em@example.com", &["withdraw", &id, "--comment", " "])
        .code(2);
    s.chg("em@example.com", &["withdraw", &id]).code(2);
    assert_unchanged(&s, &before);
    // Not on a rejected change.
    s.chg("cm@example.com", &["reject", &id, "--comment", "No"])
        .ok();
    let before = s.snapshot();
    let r = withdraw(&s, "em@example.com", &id, &[]).code(1);
    assert!(r.stderr.contains("is rejected"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn a_signed_withdrawal_verifies_and_an_unsigned_one_is_reported() {
    let s = Store::new();
    let (em, cm) = (s.keygen("em"), s.keygen("cm"));
    s.enable_signing(&[("em@example.com", &em), ("cm@example.com", &cm)], &[]);
    let id = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    s.signed("cm@example.com", &cm, &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    // Without a key: refused as any required signature is, nothing written.
    let before = s.snapshot();
    let r = withdraw(&s, "cm@example.com", &id, &[]).code(2);
    assert!(r.stderr.contains("withdraw"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    // With someone else's key: not listed for cm.
    let r = s
        .signed(
            "cm@example.com",
            &em,
            &["withdraw", &id, "--comment", "Rollback not rehearsed"],
        )
        .code(1);
    assert!(r.stderr.contains("do not list"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    let good = s.read(&id);
    s.signed(
        "cm@example.com",
        &cm,
        &["withdraw", &id, "--comment", "Rollback not rehearsed"],
    )
    .ok();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 3, "{text}");
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains("approval withdrawn by cm@example.com")
            && show.contains("      signed SHA256:"),
        "{show}"
    );
    s.chg("alice@example.com", &["validate"]).ok();
    assert_eq!(exceptions(&s), vec![]);
    // The same withdrawal written by hand without its signature, on the approved file: the
    // plain commit, and its missing signature, are reported.
    let signed = s.read(&id);
    let start = signed.rfind("  signature: |").unwrap();
    let end = signed.rfind("-----END SSH SIGNATURE-----").unwrap() + 28;
    let unsigned = format!("{}{}", &signed[..start], &signed[end..]);
    assert!(unsigned.contains("decision: withdrawn") && !unsigned.contains("\n\n"));
    std::fs::write(s.file(&id), &good).unwrap();
    s.git(&["commit", "-qam", "undo the withdrawal"]);
    let before = exceptions(&s);
    std::fs::write(s.file(&id), &unsigned).unwrap();
    s.git(&["commit", "-qam", "withdraw by hand"]);
    let r = s
        .chg("alice@example.com", &["validate", "--no-history", &id])
        .code(1);
    assert!(
        r.stdout
            .contains(": signature: the withdraw record by cm@example.com"),
        "{}",
        r.stdout
    );
    let new = new_exceptions(&s, &before);
    assert!(
        new.contains(&("manual-approval".to_owned(), id.clone())),
        "{new:?}"
    );
    // Written with chg's trailers but unsigned: the audit names the missing signature.
    std::fs::write(s.file(&id), &good).unwrap();
    s.git(&["commit", "-qam", "undo again"]);
    let before = exceptions(&s);
    std::fs::write(s.file(&id), &unsigned).unwrap();
    s.forge(
        &id,
        "withdraw",
        "cm@example.com",
        Some("change-manager"),
        ("approved", "pending_approval"),
        "2025-03-10T10:00:00Z",
    );
    assert_eq!(
        new_exceptions(&s, &before),
        vec![("signature".to_owned(), id.clone())]
    );
}

#[test]
fn withdrawals_the_approver_did_not_make_are_audit_exceptions() {
    let (s, id) = approved();
    let good = s.read(&id);
    let record = |by: &str, role: &str| {
        format!(
            "- by: {by}\n  role: {role}\n  decision: withdrawn\n  at: 2025-03-10T10:00:00Z\n  comments: Not mine\n"
        )
    };
    // (what, who commits, role in the trailers, record, trailers or a plain commit, rule)
    let cases: [(&str, &str, &str, String, bool, &str); 4] = [
        (
            "cm withdraws em's approval",
            "cm@example.com",
            "engineering-manager",
            record("em@example.com", "engineering-manager"),
            true,
            "withdrawal",
        ),
        (
            "em's approval withdrawn by mallory with plain git",
            "mallory@example.com",
            "",
            record("em@example.com", "engineering-manager"),
            false,
            "manual-approval",
        ),
        (
            "a role cm did not approve",
            "cm@example.com",
            "engineering-manager",
            record("cm@example.com", "engineering-manager"),
            true,
            "withdrawal",
        ),
        (
            "trailers that say another role than the record",
            "cm@example.com",
            "change-manager",
            record("cm@example.com", "engineering-manager"),
            true,
            "trailer-mismatch",
        ),
    ];
    for (what, who, role, rec, chg_like, rule) in cases {
        let before = exceptions(&s);
        let text = good.replace("status: approved", "status: pending_approval");
        let text = text.replacen("schedule:", &format!("{rec}schedule:"), 1);
        assert!(text.contains("decision: withdrawn"), "{what}: {text}");
        std::fs::write(s.file(&id), text).unwrap();
        if chg_like {
            s.forge(
                &id,
                "withdraw",
                who,
                Some(role),
                ("approved", "pending_approval"),
                "2025-03-10T10:00:00Z",
            );
        } else {
            s.commit_by_hand(who, "2025-03-10T10:00:00Z", "withdraw em's approval");
        }
        let new = new_exceptions(&s, &before);
        assert!(
            new.iter().any(|(r, c)| r == rule && c == &id),
            "{what}: {new:?}"
        );
        std::fs::write(s.file(&id), &good).unwrap();
        s.git(&["commit", "-qam", "restore"]);
    }
    // After implementation started: the life cycle's refusal, even by the approver.
    let mut s = s;
    s.at(AT);
    s.chg("bob@example.com", &["implement", &id]).ok();
    let started = s.read(&id);
    let before = exceptions(&s);
    let text = started.replacen(
        "schedule:",
        &format!("{}schedule:", record("cm@example.com", "change-manager")),
        1,
    );
    std::fs::write(s.file(&id), text).unwrap();
    s.forge(
        &id,
        "withdraw",
        "cm@example.com",
        Some("change-manager"),
        ("implementing", "implementing"),
        AT,
    );
    let new = new_exceptions(&s, &before);
    assert!(
        new.iter().any(|(r, c)| r == "lifecycle" && c == &id),
        "{new:?}"
    );
}
