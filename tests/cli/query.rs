//! The query layer seen from the command line (issue 26, point 2): `list --awaiting-me`
//! lists exactly what `chg approve` accepts, `list --overdue` counts from submission.

use super::{COMPLETE, Store};

/// The ids `chg list --awaiting-me` shows `who` (CSV, so no terminal defaults).
pub(super) fn awaiting(s: &Store, who: &str) -> Vec<String> {
    let out = s
        .chg(who, &["list", "--awaiting-me", "--format", "csv"])
        .ok()
        .stdout;
    out.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

#[test]
fn awaiting_me_then_approve_agree_for_a_member_of_two_roles() {
    let s = Store::new();
    // em is also a change manager: one person still fills one role per change.
    s.edit_policy("em in two roles", |t| {
        t.replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, em@example.com]",
        )
    });
    let id = s.new_change(&[]);
    assert_eq!(awaiting(&s, "em@example.com"), [id.as_str()]);
    s.chg(
        "em@example.com",
        &["approve", &id, "--role", "engineering-manager"],
    )
    .ok();
    // Before: still listed for em (change-manager was missing and she holds it), and
    // approve then refused her.
    assert_eq!(awaiting(&s, "em@example.com"), Vec::<String>::new());
    let r = s.chg("em@example.com", &["approve", &id]).code(1);
    assert!(
        r.stderr.contains("one person fills one role per change"),
        "{}",
        r.stderr
    );
    assert_eq!(awaiting(&s, "cm@example.com"), [id.as_str()]);
    s.chg("cm@example.com", &["approve", &id]).ok();
    assert_eq!(awaiting(&s, "cm@example.com"), Vec::<String>::new());
}

#[test]
fn awaiting_me_leaves_out_who_history_shows_made_the_content() {
    let s = Store::new();
    let id = s.new_change(&[]);
    // em rewrites the plan: her approval would vouch for her own content.
    s.chg(
        "em@example.com",
        &["set", &id, "implementation_plan=Upload, then reload"],
    )
    .ok();
    assert_eq!(awaiting(&s, "em@example.com"), Vec::<String>::new());
    let r = s.chg("em@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("made the content"), "{}", r.stderr);
    assert_eq!(awaiting(&s, "cm@example.com"), [id]);
}

/// The ids `chg list --overdue` shows.
fn overdue(s: &Store) -> Vec<String> {
    s.chg("bob@example.com", &["list", "--overdue"])
        .ok()
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[test]
fn overdue_counts_the_policy_timeout_from_submission() {
    let mut s = Store::new();
    // Filed pending at 10 March 10:00: medium, 72 h to approve.
    let filed = s.new_change(&[]);
    // Filed as a draft at the same time, submitted two days later.
    let args = [COMPLETE, &["--draft"]].concat();
    let draft = s.chg("alice@example.com", &args).ok_line();
    s.at("2025-03-12T10:00:00Z");
    s.chg("alice@example.com", &["submit", &draft]).ok();
    s.at("2025-03-13T10:00:00Z");
    assert_eq!(overdue(&s), Vec::<String>::new(), "exactly 72 h is on time");
    s.at("2025-03-13T11:00:00Z");
    assert_eq!(overdue(&s), [filed.as_str()]);
    s.at("2025-03-15T11:00:00Z");
    assert_eq!(overdue(&s), [filed.clone(), draft.clone()]);
    // Approved by every role: nothing is pending any more.
    s.chg("em@example.com", &["approve", &filed]).ok();
    assert_eq!(overdue(&s), [filed.clone(), draft.clone()]);
    s.chg("cm@example.com", &["approve", &filed]).ok();
    assert_eq!(overdue(&s), [draft]);
}
