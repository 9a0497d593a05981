//! A governed policy (SPEC section 10): unauthorized policy commits found by validate,
//! gate, audit and refused by every step; a revert restores service; propose, approve and
//! apply end to end, with every refusal changing nothing.

use super::{COMPLETE, Store, assert_unchanged};

/// A store whose policy, with one template, is governed by the security team lead
/// (adopted while ungoverned).
fn governed() -> Store {
    let s = Store::new();
    commit_policy_file(&s, "templates/tls.yaml", TLS, "a catalogue");
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    s.chg("alice@example.com", &["validate"]).ok();
    s
}

const TLS: &str = "description: Renew a certificate\nbusiness_justification: Expiry\nchange_type: configuration\npriority: low\nrisk_level: low\nimplementation_plan: Upload and reload\nrollback_plan: Reload the previous certificate\nvariable: [title, affected_systems]\n";

/// Writes `text` to `policy/REL` and commits it with plain git.
fn commit_policy_file(s: &Store, rel: &str, text: &str, message: &str) {
    let path = s.root().join("policy").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    s.git(&["add", "policy"]);
    s.git(&["commit", "-qm", message]);
}

/// Every reader reports the unauthorized commit, and steps are refused naming it.
fn assert_unauthorized(s: &Store, commit: &str, what: &str) {
    let short = &commit[..8];
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains("policy-unauthorized") && r.stdout.contains(short),
        "{what}: {}",
        r.stdout
    );
    let before = s.snapshot();
    let r = s.chg("alice@example.com", COMPLETE).code(1);
    assert!(
        r.stderr.contains(&format!("git revert {short}")),
        "{what}: {}",
        r.stderr
    );
    assert_unchanged(s, &before);
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(
        r.stdout.contains(&format!("{short} ")) && r.stdout.contains("policy-unauthorized"),
        "{what}: {}",
        r.stdout
    );
}

/// A plain-git edit of the store.
type Edit = Box<dyn Fn(&Store)>;

#[test]
fn policy_commits_outside_chg_are_unauthorized_until_reverted() {
    let s = governed();
    let id = s.new_change(&[]);
    let edits: Vec<(&str, Edit)> = vec![
        (
            "a role member added",
            Box::new(|s: &Store| {
                s.edit_policy("add mallory", |t| {
                    t.replace(
                        "change-manager: [cm@example.com]",
                        "change-manager: [cm@example.com, mallory@example.com]",
                    )
                })
            }),
        ),
        (
            "a key added",
            Box::new(|s: &Store| {
                commit_policy_file(
                    s,
                    "allowed_signers",
                    "mallory@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFk3VJ0pJtJQ3K9wXz2UZ0a1xY1j3YbXc1x1vZl0mH9z\n",
                    "add a key",
                )
            }),
        ),
        (
            "a template edited",
            Box::new(|s: &Store| {
                commit_policy_file(
                    s,
                    "templates/tls.yaml",
                    &TLS.replace("Reload the previous certificate", "Hope"),
                    "a laxer template",
                )
            }),
        ),
        (
            "governance removed",
            Box::new(|s: &Store| {
                s.edit_policy("no more governance", |t| {
                    t.replace("governance:\n  roles: [security-team-lead]\n", "")
                })
            }),
        ),
    ];
    for (what, edit) in edits {
        edit(&s);
        let commit = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
        assert_unauthorized(&s, &commit, what);
        let r = s
            .chg(
                "bob@example.com",
                &["gate", &id, "--at", "2025-03-10T10:00:00Z"],
            )
            .code(1);
        assert!(
            r.stdout.contains("policy-unauthorized"),
            "{what}: {}",
            r.stdout
        );
        // A revert to the authorized content restores service; the audit keeps the record.
        s.git(&["revert", "--no-edit", "HEAD"]);
        s.chg("alice@example.com", &["validate"]).ok();
        s.new_change(&[]);
        let r = s.chg("alice@example.com", &["audit"]).code(1);
        assert!(r.stdout.contains(&commit[..8]), "{what}: {}", r.stdout);
    }
}

#[test]
fn a_merge_bringing_a_policy_edit_is_unauthorized() {
    let s = governed();
    s.git(&["checkout", "-q", "-b", "side"]);
    s.edit_policy("add mallory", |t| {
        t.replace(
            "security-team-lead: [sec-lead@example.com]",
            "security-team-lead: [sec-lead@example.com, mallory@example.com]",
        )
    });
    s.git(&["checkout", "-q", "main"]);
    s.new_change(&[]);
    s.git(&["merge", "-q", "--no-edit", "side"]);
    let merge = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    assert_unauthorized(&s, &merge, "merge");
}

/// Edits the work tree's policy as a proposal would and files it; its id.
fn propose(s: &Store) -> String {
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace(
            "change-manager: [cm@example.com]",
            "change-manager: [cm@example.com, carol@example.com]",
        ),
    )
    .unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&COMPLETE[1..]);
    s.chg("alice@example.com", &args).ok_line()
}

#[test]
fn propose_approve_apply_commits_the_policy_in_one_step() {
    let mut s = governed();
    let id = propose(&s);
    // The work tree keeps its edits; the request carries them, and show diffs them.
    assert!(
        s.git(&["status", "--porcelain"])
            .contains("policy/policy.yaml")
    );
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains("-  change-manager: [cm@example.com]")
            && show.contains("+  change-manager: [cm@example.com, carol@example.com]"),
        "{show}"
    );
    // Piped, the log's rows are stdout and the diff goes to stderr.
    let log = s.chg("alice@example.com", &["log", &id]).ok().stderr;
    assert!(
        log.contains("+  change-manager: [cm@example.com, carol@example.com]"),
        "{log}"
    );
    // Nothing to propose when the work tree is the policy at HEAD.
    s.git(&["stash", "-q"]);
    let mut again = vec!["policy", "propose"];
    again.extend_from_slice(&COMPLETE[1..]);
    let r = s.chg("alice@example.com", &again).code(2);
    assert!(r.stderr.contains("nothing to propose"), "{}", r.stderr);
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    // Refused before approval: the priority's roles and the governance role are missing.
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &id])
        .code(1);
    assert!(r.stderr.contains("security-team-lead"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    let r = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(r.contains("pending_approval"), "{r}");
    s.chg("sec-lead@example.com", &["approve", &id]).ok();
    // Refused with unrelated uncommitted edits under policy/.
    let p = s.root().join("policy/policy.yaml");
    let committed = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{committed}# an unrelated edit\n")).unwrap();
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &id])
        .code(2);
    assert!(r.stderr.contains("not what"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    std::fs::write(&p, &committed).unwrap();
    // Applied: one commit with the policy and the implement step, nothing left over.
    let head = s.git(&["rev-parse", "HEAD"]);
    let r = s.chg("alice@example.com", &["policy", "apply", &id]).ok();
    assert!(
        r.stdout.contains("approved -> implementing"),
        "{}",
        r.stdout
    );
    assert_eq!(
        s.git(&["rev-parse", "HEAD~1"]),
        head,
        "apply makes exactly one commit"
    );
    let files = s.git(&["show", "--name-only", "--format=", "HEAD"]);
    assert!(
        files.contains("policy/policy.yaml") && files.contains(&id),
        "{files}"
    );
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    assert!(
        std::fs::read_to_string(&p)
            .unwrap()
            .contains("carol@example.com")
    );
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains("policy-unauthorized"), "{}", r.stdout);
    // Carol's new role counts at once.
    let other = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &other]).ok();
    s.chg("carol@example.com", &["approve", &other]).ok();
}

#[test]
fn a_proposal_edited_after_approval_needs_approval_again() {
    let mut s = governed();
    let id = propose(&s);
    s.git(&["checkout", "-q", "--", "policy"]);
    for who in ["em", "cm", "sec-lead"] {
        s.chg(&format!("{who}@example.com"), &["approve", &id]).ok();
    }
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    // Someone slips a different content into the approved request by hand.
    s.rewrite(&id, |t| {
        t.replace(
            "[cm@example.com, carol@example.com]",
            "[cm@example.com, carol@example.com, mallory@example.com]",
        )
    });
    s.git(&["commit", "-qam", "tweak the proposal"]);
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(r.stdout.contains(": approval-digest: "), "{}", r.stdout);
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &id])
        .code(1);
    // The approvals were for other content: the governance role's no longer counts.
    assert!(
        r.stderr
            .contains("not approved by every governance role yet"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn a_slipped_in_governance_role_cannot_approve_its_way_out() {
    let mut s = governed();
    // Mallory makes himself security-team-lead with a plain commit...
    s.edit_policy("mallory leads", |t| {
        t.replace(
            "security-team-lead: [sec-lead@example.com]",
            "security-team-lead: [mallory@example.com]",
        )
    });
    // ...then proposes that very content and approves it in every role he now holds.
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}# make it official\n")).unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&COMPLETE[1..]);
    let id = s.chg("alice@example.com", &args).ok_line();
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.chg("mallory@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    // The governance role is judged by the last policy that counted: still sec-lead.
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &id])
        .code(1);
    assert!(r.stderr.contains("security-team-lead"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn governance_names_known_roles() {
    let s = Store::new();
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        format!("{text}governance:\n  roles: [security-team-leed]\n"),
    )
    .unwrap();
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains("unknown role `security-team-leed`")
            && r.stdout.contains("did you mean `security-team-lead`"),
        "{}",
        r.stdout
    );
}

#[test]
fn uncommitted_policy_edits_under_governance_are_pointed_at_a_proposal_not_a_commit() {
    // Issue 24, point 6: validate told a proposer to commit, which governance forbids.
    let s = governed();
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("timeout: 7d", "timeout: 5d")).unwrap();
    let r = s.chg("alice@example.com", &["validate"]).ok();
    assert!(
        r.stdout.contains("policy-uncommitted") && r.stdout.contains("chg policy propose"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("until they are committed"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_evidence_pack_shows_what_a_proposal_changes() {
    // Issue 25, point 6: a proposal's page shows its diff against the policy it was
    // proposed on, beside the content approved.
    let s = governed();
    let id = propose(&s);
    let pack = s.export_2025();
    let page = std::fs::read_to_string(pack.join(format!("changes/{id}.md"))).unwrap();
    assert!(
        page.contains("## Proposed policy: its change to the policy it was proposed against")
            && page.contains("+  change-manager: [cm@example.com, carol@example.com]")
            && page.contains("-  change-manager: [cm@example.com]"),
        "{page}"
    );
}
