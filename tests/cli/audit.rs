//! `chg audit`: histories made by chg pass; every exception of SPEC section 7 planted by
//! hand-made commits (with and without trailers, backdated) is reported with its change,
//! commit and rule; the index is incremental and notices a rewritten history.

use super::*;

impl Store {
    /// Commits everything in the work tree as `who` at `when` with `message`, as a person
    /// with plain git would (no chg).
    pub(super) fn commit_by_hand(&self, who: &str, when: &str, message: &str) -> String {
        let name = who.split('@').next().unwrap();
        let run = |args: &[&str]| {
            let o = self
                .cmd(Path::new("git"), who)
                .env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_DATE", when)
                .env("GIT_COMMITTER_DATE", when)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        };
        run(&["add", "-A"]);
        run(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Commits everything as a chg `action` by `who` at `when` would look, trailers and all
    /// (a forgery: the content is whatever the test wrote).
    pub(super) fn forge(
        &self,
        id: &str,
        action: &str,
        who: &str,
        role: Option<&str>,
        (from, to): (&str, &str),
        when: &str,
    ) {
        self.commit_by_hand(who, when, &trailers(id, action, who, role, from, to));
    }

    /// `chg audit --format json` as alice; the parsed output and the exit code.
    fn audit(&self, extra: &[&str]) -> (serde_json::Value, i32) {
        let mut args = vec!["audit", "--format", "json"];
        args.extend_from_slice(extra);
        let r = self.chg("alice@example.com", &args);
        assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
        (serde_json::from_str(&r.stdout).unwrap(), r.code)
    }

    /// The (rule, change, commit) of every exception; exit 1 exactly when there is one.
    pub(super) fn exceptions(&self) -> Vec<(String, String, String)> {
        let (v, code) = self.audit(&[]);
        let list: Vec<(String, String, String)> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["level"] == "exception")
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["change"].as_str().unwrap_or("-").to_owned(),
                    f["commit"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(code, i32::from(!list.is_empty()), "{v:#}");
        list
    }
}

/// Asserts the (rule, change) of every exception audit reports, in order.
fn assert_exceptions(s: &Store, want: &[(&str, &str)]) {
    let found = s.exceptions();
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|(r, c, _)| (r.as_str(), c.as_str()))
        .collect();
    assert_eq!(found, want);
}

/// Trailers of a chg transition, for forged commits.
pub(super) fn trailers(
    id: &str,
    action: &str,
    actor: &str,
    role: Option<&str>,
    from: &str,
    to: &str,
) -> String {
    let role = role.map(|r| format!("Chg-Role: {r}\n")).unwrap_or_default();
    format!(
        "{id}: {action}\n\nChg-Id: {id}\nChg-Action: {action}\nChg-Actor: {actor}\n{role}Chg-From: {from}\nChg-To: {to}\n"
    )
}

/// A change file of a pending change, edited by hand: status set to `status` and an
/// engineering-manager approval by `by` added, as no chg command would write it.
fn hand_approved(text: String, status: &str, by: &str) -> String {
    text.replace(
        "status: pending_approval\n",
        &format!(
            "status: {status}\napprovals:\n- by: {by}\n  role: engineering-manager\n  decision: approved\n  at: 2025-03-10T11:00:00Z\n"
        ),
    )
}

/// A medium change taken through its whole life by chg.
fn closed_change(s: &mut Store) -> String {
    let id = s.new_change(&[]);
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
    id
}

#[test]
fn a_history_made_by_chg_passes_and_hand_made_drafts_are_notes() {
    let mut s = Store::new();
    closed_change(&mut s);
    // An emergency change, approved and reviewed within the deadlines.
    s.at("2025-03-12T10:00:00Z");
    let e = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &e]).ok();
    s.at("2025-03-12T20:00:00Z");
    s.chg("sec-lead@example.com", &["approve", &e]).ok();
    s.chg("em@example.com", &["approve", &e]).ok();
    s.chg(
        "bob@example.com",
        &[
            "close",
            &e,
            "--outcome",
            "successful",
            "--review",
            "Post-mortem held",
        ],
    )
    .ok();
    let rejected = s.new_change(&[]);
    s.chg("em@example.com", &["reject", &rejected, "--comment", "no"])
        .ok();
    let edited = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &edited]).ok();
    s.chg(
        "alice@example.com",
        &["set", &edited, "rollback_plan=Restore the snapshot"],
    )
    .ok();
    s.chg(
        "alice@example.com",
        &["cancel", &edited, "--reason", "not needed"],
    )
    .ok();
    // A draft written by hand and merged like any pull request, then edited by hand.
    std::fs::write(
        s.root().join("changes/2025/03/CHG-2025-009.yaml"),
        "id: CHG-2025-009\ntitle: Hand-written\nstatus: draft\n",
    )
    .unwrap();
    s.commit_by_hand(
        "carol@example.com",
        "2025-03-13T10:00:00Z",
        "Propose a change",
    );
    s.rewrite("CHG-2025-009", |t| {
        t.replace("Hand-written", "Hand-written, better")
    });
    s.commit_by_hand("carol@example.com", "2025-03-13T11:00:00Z", "Reword");
    // A file moved into its right folder with `git mv` is a rename.
    std::fs::create_dir_all(s.root().join("changes/2025/04")).unwrap();
    s.git(&[
        "mv",
        "changes/2025/03/CHG-2025-009.yaml",
        "changes/2025/04/CHG-2025-009.yaml",
    ]);
    s.commit_by_hand("carol@example.com", "2025-03-13T12:00:00Z", "Move");

    let (v, code) = s.audit(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["exceptions"], 0);
    let notes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "policy-change",
            "manual-create",
            "manual-edit",
            "manual-rename"
        ]
    );
    // A later policy change does not rewrite the past: em leaves the role.
    let policy = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            "engineering-manager: [em@example.com]",
            "engineering-manager: [erin@example.com]",
        ),
    )
    .unwrap();
    s.commit_by_hand(
        "cm@example.com",
        "2025-03-14T10:00:00Z",
        "New engineering manager",
    );
    let (v, code) = s.audit(&[]);
    assert_eq!((code, v["exceptions"].as_u64()), (0, Some(0)), "{v:#}");
    let text = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        text.stdout.contains(
            "note: policy-change: the policy was changed by a commit without chg trailers"
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stderr.contains("0 exception(s), 5 note(s)"),
        "{}",
        text.stderr
    );
}

#[test]
fn commits_without_trailers_that_decide_implement_close_cancel_or_delete_are_exceptions() {
    let mut s = Store::new();
    let a = s.new_change(&[]);
    let b = s.new_change(&[]);
    let c = s.new_change(&[]);
    let d = s.new_change(&[]);
    let e = closed_change(&mut s);
    s.rewrite(&a, |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    s.commit_by_hand("alice@example.com", "2025-03-12T10:00:00Z", "approve");
    s.rewrite(&b, |t| {
        hand_approved(t, "pending_approval", "bob@example.com")
    });
    s.commit_by_hand("bob@example.com", "2025-03-12T11:00:00Z", "lgtm");
    s.rewrite(&c, |t| {
        t + "cancellation:\n  by: alice@example.com\n  at: 2025-03-12T12:00:00Z\n  reason: gone\n"
    });
    s.commit_by_hand("alice@example.com", "2025-03-12T12:00:00Z", "note");
    std::fs::remove_file(s.file(&d)).unwrap();
    s.commit_by_hand("alice@example.com", "2025-03-12T13:00:00Z", "clean up");
    s.rewrite(&e, |t| t.replace("Reload the previous certificate", "Hope"));
    s.commit_by_hand("alice@example.com", "2025-03-12T14:00:00Z", "typo");
    assert_exceptions(
        &s,
        &[
            ("manual-status", &a),
            ("manual-approval", &b),
            ("manual-cancellation", &c),
            ("manual-delete", &d),
            ("manual-edit-approved", &e),
            // The approvals now sit on content nobody approved.
            ("approval-digest", &e),
        ],
    );
    // Each names the commit and its author; text output has one line each.
    let text = s
        .chg("alice@example.com", &["audit", "--exceptions-only"])
        .code(1);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", text.stdout);
    let bob = s.git(&["rev-parse", "--short=8", "HEAD~3"]);
    assert!(
        lines[1].starts_with(&format!("{b} {} 2025-03-12T11:00:00Z bob@example.com: manual-approval: written without chg: approval by bob@example.com as engineering-manager, not a member of that role", bob.trim())),
        "{}",
        lines[1]
    );
}

#[test]
fn forged_trailers_and_steps_the_policy_forbids_are_exceptions() {
    let s = Store::new();
    // An approval by someone outside the role, in a commit that looks like chg's.
    let a = s.new_change(&[]);
    s.rewrite(&a, |t| {
        hand_approved(t, "pending_approval", "bob@example.com")
    });
    s.forge(
        &a,
        "approve",
        "bob@example.com",
        Some("engineering-manager"),
        ("pending_approval", "pending_approval"),
        "2025-03-10T11:00:00Z",
    );
    // The requester approving her own change.
    let b = s.new_change(&[]);
    s.rewrite(&b, |t| {
        hand_approved(t, "pending_approval", "alice@example.com")
    });
    s.forge(
        &b,
        "approve",
        "alice@example.com",
        Some("engineering-manager"),
        ("pending_approval", "pending_approval"),
        "2025-03-10T11:00:00Z",
    );
    // An implementation before approval.
    let c = s.new_change(&[]);
    s.rewrite(&c, |t| t.replace("status: pending_approval", "status: implementing\nimplementation:\n  implementer: bob@example.com\n  started_at: 2025-03-10T12:00:00Z"));
    s.forge(
        &c,
        "implement",
        "bob@example.com",
        None,
        ("pending_approval", "implementing"),
        "2025-03-10T12:00:00Z",
    );
    // Trailers that say approve, on a commit that also rewrote the rollback plan.
    let d = s.new_change(&[]);
    s.rewrite(&d, |t| {
        hand_approved(t, "pending_approval", "em@example.com")
            .replace("Reload the previous certificate", "Hope")
    });
    s.forge(
        &d,
        "approve",
        "em@example.com",
        Some("engineering-manager"),
        ("pending_approval", "pending_approval"),
        "2025-03-10T11:00:00Z",
    );
    // Two change files in one chg-looking commit.
    let e = s.new_change(&[]);
    let f = s.new_change(&[]);
    s.rewrite(&e, |t| t.replace("status: pending_approval", "status: cancelled\ncancellation:\n  by: alice@example.com\n  at: 2025-03-10T13:00:00Z\n  reason: dup"));
    s.rewrite(&f, |t| t.replace("status: pending_approval", "status: cancelled\ncancellation:\n  by: alice@example.com\n  at: 2025-03-10T13:00:00Z\n  reason: dup"));
    s.forge(
        &e,
        "cancel",
        "alice@example.com",
        None,
        ("pending_approval", "cancelled"),
        "2025-03-10T13:00:00Z",
    );
    assert_exceptions(
        &s,
        &[
            ("approval-role", &a),
            // Each change after the first is filed at the store's clock, before the forged
            // commit it follows (dated later by hand): history shows the step backdated.
            ("time-order", &b),
            ("segregation-of-duties", &b),
            ("approval-role", &b),
            ("time-order", &c),
            ("implemented-unapproved", &c),
            ("unscheduled", &c),
            ("time-order", &d),
            ("trailer-mismatch", &d),
            ("time-order", &e),
            ("multiple-files", &e),
            ("manual-status", &f),
            ("manual-cancellation", &f),
        ],
    );
}

#[test]
fn an_edit_that_keeps_approvals_and_an_implementation_in_a_freeze_are_exceptions() {
    let mut s = Store::new();
    let a = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &a]).ok();
    s.chg("cm@example.com", &["approve", &a]).ok();
    s.rewrite(&a, |t| t.replace("Reload the previous certificate", "Hope"));
    s.commit_by_hand(
        "alice@example.com",
        "2025-03-10T12:00:00Z",
        &(trailers(
            &a,
            "edit",
            "alice@example.com",
            None,
            "approved",
            "approved",
        ) + "Chg-Fields: rollback_plan\n"),
    );
    // Scheduled across the holiday freeze's start, implemented inside it. Filed after the
    // hand edit's commit (this test's clock stood two hours before it, and the filing was
    // a time-order exception of its own that the approvals below were refused on).
    s.at("2025-03-10T13:00:00Z");
    let b = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &b]).ok();
    s.chg("cm@example.com", &["approve", &b]).ok();
    s.schedule(&b, "2025-12-19T20:00:00Z", "2025-12-19T23:00:00Z")
        .ok();
    s.rewrite(&b, |t| t.replace("status: approved", "status: implementing") + "implementation:\n  implementer: bob@example.com\n  started_at: 2025-12-20T01:00:00Z\n");
    s.forge(
        &b,
        "implement",
        "bob@example.com",
        None,
        ("approved", "implementing"),
        "2025-12-20T01:00:00Z",
    );
    assert_exceptions(
        &s,
        &[
            ("approval-survived-edit", &a),
            ("approval-digest", &a),
            ("implemented-outside-schedule", &b),
            ("implemented-in-freeze", &b),
        ],
    );
}

#[test]
fn emergency_deadlines_late_or_never_and_a_close_without_review() {
    let mut s = Store::new();
    // Approved 30 hours after implementation started: the policy allows 24.
    let late = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &late]).ok();
    s.at("2025-03-11T16:00:00Z");
    s.chg("sec-lead@example.com", &["approve", &late]).ok();
    s.chg("em@example.com", &["approve", &late]).ok();
    s.chg(
        "bob@example.com",
        &[
            "close",
            &late,
            "--outcome",
            "successful",
            "--review",
            "held",
        ],
    )
    .ok();
    // Never approved, never reviewed.
    let never = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &never]).ok();
    // Closed without the review the policy requires (a forged close).
    let unreviewed = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &unreviewed]).ok();
    s.chg("sec-lead@example.com", &["approve", &unreviewed])
        .ok();
    s.chg("em@example.com", &["approve", &unreviewed]).ok();
    s.rewrite(&unreviewed, |t| {
        t.replace("status: implementing", "status: closed").replace(
            "  started_at: 2025-03-11T16:00:00Z\n",
            "  started_at: 2025-03-11T16:00:00Z\n  completed_at: 2025-03-11T17:00:00Z\n  outcome: successful\n",
        )
    });
    s.forge(
        &unreviewed,
        "close",
        "bob@example.com",
        None,
        ("implementing", "closed"),
        "2025-03-11T17:00:00Z",
    );
    // Deadlines that have not passed yet are not exceptions.
    s.at("2025-03-11T17:00:00Z");
    let soon: Vec<String> = s.exceptions().into_iter().map(|e| e.0).collect();
    assert_eq!(
        soon,
        [
            "emergency-approval-late",
            "emergency-approval-late",
            "review-missing"
        ]
    );
    s.at("2025-03-20T00:00:00Z");
    assert_exceptions(
        &s,
        &[
            ("emergency-approval-late", &late),
            ("emergency-approval-late", &late),
            ("review-missing", &unreviewed),
            ("emergency-approval-missing", &never),
            ("emergency-review-missing", &never),
            ("emergency-review-missing", &unreviewed),
        ],
    );
    // chg log shows, step by step, what audit found.
    let log = s.chg("alice@example.com", &["log", &never]).ok();
    assert!(
        log.stdout.contains("emergency-approval-missing"),
        "{}",
        log.stdout
    );
    let json = s.chg("alice@example.com", &["log", &late, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rules: Vec<Vec<&str>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["problems"]
                .as_array()
                .map(|p| p.iter().map(|p| p["rule"].as_str().unwrap()).collect())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        rules,
        [
            vec![],
            vec![],
            vec!["emergency-approval-late"],
            vec!["emergency-approval-late"],
            vec![]
        ]
    );
}

#[test]
fn the_index_is_incremental_and_a_rewritten_history_is_reported() {
    let mut s = Store::new();
    closed_change(&mut s);
    // implement brought the index up to date; start from none.
    std::fs::remove_dir_all(s.root().join(".git/chg/audit")).unwrap();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        r.stderr
            .contains("7 commit(s) (7 verified now, index rebuilt)"),
        "{}",
        r.stderr
    );
    s.new_change(&[]);
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        r.stderr.contains("8 commit(s) (1 verified now)"),
        "{}",
        r.stderr
    );
    let r = s.chg("alice@example.com", &["audit", "--full"]).ok();
    assert!(
        r.stderr
            .contains("8 commit(s) (8 verified now, index rebuilt)"),
        "{}",
        r.stderr
    );
    // Someone drops the last commit and force-pushes.
    s.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let (v, code) = s.audit(&[]);
    assert_eq!(code, 1);
    assert_eq!(v["findings"][0]["rule"], "history-rewritten", "{v:#}");
    // Reported once as an exception; afterwards it stays visible as a note.
    let (v, code) = s.audit(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["findings"][0]["level"], "note");
    // A corrupt index is rebuilt, not trusted.
    let meta = s
        .root()
        .join(".git/chg/audit/refs%2Fheads%2Fmain/meta.json");
    std::fs::write(&meta, "{").unwrap();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(r.stderr.contains("index rebuilt"), "{}", r.stderr);
}

#[test]
fn merged_branches_are_audited_and_an_evil_merge_is_caught() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.git(&["checkout", "-q", "-b", "approvals"]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.git(&["checkout", "-q", "main"]);
    let other = s.new_change(&[]);
    s.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge approvals",
        "approvals",
    ]);
    let (v, code) = s.audit(&[]);
    assert_eq!(code, 0, "{v:#}");
    // A merge that changes a plan neither side had.
    s.git(&["checkout", "-q", "-b", "side"]);
    s.chg("cm@example.com", &["approve", &other]).ok();
    s.git(&["checkout", "-q", "main"]);
    s.chg("em@example.com", &["approve", &other]).ok();
    let o = s
        .cmd(Path::new("git"), "alice@example.com")
        .args(["merge", "-q", "--no-ff", "--no-commit", "side"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the two approvals conflict textually");
    s.git(&["checkout", "--theirs", "--", "."]);
    s.rewrite(&other, |t| {
        t.replace("Reload the previous certificate", "Hope")
    });
    s.commit_by_hand("alice@example.com", "2025-03-10T12:00:00Z", "Merge side");
    // The resolution kept one side's approval and dropped the other, and changed the plan.
    assert_exceptions(
        &s,
        &[
            ("manual-approval", &other),
            ("manual-edit-approved", &other),
            ("approval-digest", &other),
        ],
    );
}

#[test]
fn period_filters_and_formats() {
    let s = Store::new();
    let a = s.new_change(&[]);
    s.rewrite(&a, |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    s.commit_by_hand("alice@example.com", "2025-03-12T10:00:00Z", "approve");
    s.rewrite(&a, |t| {
        t.replace("status: approved", "status: implementing")
    });
    s.commit_by_hand("alice@example.com", "2025-04-12T10:00:00Z", "go");
    let (v, _) = s.audit(&["--since", "2025-04-01", "--until", "2025-05-01"]);
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["findings"][0]["when"], "2025-04-12T10:00:00Z");
    let csv = s
        .chg(
            "alice@example.com",
            &["audit", "--format", "csv", "--exceptions-only"],
        )
        .code(1);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "level,rule,change,path,commit,author,when,message"
    );
    assert_eq!(lines.len(), 3, "{}", csv.stdout);
    assert!(
        lines[1]
            .starts_with("exception,manual-status,CHG-2025-001,changes/2025/03/CHG-2025-001.yaml,")
    );
    s.chg("alice@example.com", &["audit", "--since", "soon"])
        .code(2);
}

#[test]
fn the_evidence_pack_holds_the_population_evidence_exceptions_and_verifiable_hashes() {
    use sha2::Digest;
    let mut s = Store::new();
    let id = closed_change(&mut s);
    // Approved by hand, by someone outside the role.
    let bad = s.new_change(&[]);
    s.rewrite(&bad, |t| hand_approved(t, "approved", "bob@example.com"));
    s.commit_by_hand("bob@example.com", "2025-03-12T10:00:00Z", "approve");
    // Outside the period: requested and touched in April only.
    s.at("2025-04-02T10:00:00Z");
    let later = s.new_change(&[]);
    let out = s.dir.path().join("pack");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "audit",
                "export",
                "--since",
                "2025-03-01",
                "--until",
                "2025-04-01",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(
        r.stdout
            .contains("2 change(s) in the population, 2 exception(s)"),
        "{}",
        r.stdout
    );
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    let population = read("population.csv");
    let rows: Vec<&str> = population.lines().collect();
    assert_eq!(rows.len(), 3, "{population}");
    assert!(rows[1].starts_with(&format!("{id},Rotate TLS certificates,configuration,normal,low,medium,closed,alice@example.com,2025-03-10T10:00:00Z,engineering-manager=em@example.com at 2025-03-10T10:00:00Z; change-manager=cm@example.com at 2025-03-10T10:00:00Z,bob@example.com,2025-03-11T09:30:00Z,2025-03-11T09:30:00Z,successful,,false,pass,0,")), "{}", rows[1]);
    assert!(
        rows[2].starts_with(&format!("{bad},"))
            && rows[2].contains(",false,\"fail: the approval by bob@example.com as engineering-manager records no digest")
            && rows[2].contains("; bob@example.com is not a member of the role engineering-manager\",2,"),
        "{}",
        rows[2]
    );
    assert!(!population.contains(&later));
    let evidence = read(&format!("changes/{id}.md"));
    for want in [
        "## Approvals",
        "| change-manager | cm@example.com | approved |",
        "## History (from git)",
        "| bob@example.com | implement |",
    ] {
        assert!(evidence.contains(want), "{want} missing:\n{evidence}");
    }
    assert!(read("exceptions.csv").contains("manual-status"));
    let manifest: serde_json::Value = serde_json::from_str(&read("manifest.json")).unwrap();
    assert_eq!(
        manifest["repository"]["head"].as_str().unwrap(),
        s.git(&["rev-parse", "HEAD"]).trim()
    );
    assert_eq!(manifest["rows"]["population"], 2);
    assert!(manifest["command"].as_str().unwrap().ends_with(&format!(
        "audit export --since 2025-03-01 --until 2025-04-01 --out {}",
        out.display()
    )));
    let files = manifest["files"].as_array().unwrap();
    // population, exceptions, controls, two change pages, and the policy in force.
    let policy_files = files
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("policy-versions/"))
        .count();
    assert_eq!(
        (files.len() - policy_files, policy_files > 0),
        (5, true),
        "{manifest:#}"
    );
    // The pack reads by control: criterion -> checks and evidence -> exceptions.
    let controls = manifest["controls"].as_array().unwrap();
    let ids: Vec<&str> = controls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "SOC2-CC8.1",
            "ISO27001-A.8.32",
            "ISO27001-A.8.29",
            "ISO27001-A.5.3"
        ]
    );
    assert_eq!(controls[0]["exceptions"], 2, "{manifest:#}");
    assert_eq!(controls[2]["exceptions"], 0, "{manifest:#}");
    assert_eq!(controls[3]["exceptions"], 1, "{manifest:#}");
    let md = read("controls.md");
    assert!(
        md.contains("## SOC2-CC8.1: SOC 2 (2017 Trust Services Criteria) CC8.1")
            && md.contains(
                "## ISO27001-A.5.3: ISO/IEC 27001:2022 Annex A 5.3 Segregation of duties"
            )
            && md.contains(&format!("  - {bad} "))
            && md.contains("approval-role"),
        "{md}"
    );
    for f in files {
        let bytes = std::fs::read(out.join(f["path"].as_str().unwrap())).unwrap();
        let digest: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"].as_str().unwrap(), digest, "{}", f["path"]);
    }
    let o = Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // The folder must be new or empty; a reversed period is refused.
    s.chg(
        "alice@example.com",
        &[
            "audit",
            "export",
            "--since",
            "2025-03-01",
            "--until",
            "2025-04-01",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .code(2);
    s.chg(
        "alice@example.com",
        &[
            "audit",
            "export",
            "--since",
            "2025-04-01",
            "--until",
            "2025-03-01",
            "--out",
            "x",
        ],
    )
    .code(2);
}

#[test]
fn report_figures_and_formats() {
    let mut s = Store::new();
    closed_change(&mut s);
    s.at("2025-03-12T10:00:00Z");
    let e = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &e]).ok();
    s.at("2025-03-12T13:00:00Z");
    s.chg(
        "bob@example.com",
        &[
            "close",
            &e,
            "--outcome",
            "rolled_back",
            "--review",
            "Rolled back",
        ],
    )
    .ok();
    let r = s
        .chg(
            "alice@example.com",
            &["report", "--period", "2025-03", "--format", "json"],
        )
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["period"], "2025-03");
    assert_eq!(v["total"], 2);
    assert_eq!(v["by_model"]["emergency"], 1);
    // The medium change was approved the moment it was requested (pinned clock): 0 h.
    let medium = v["approval_time"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["group"] == "medium")
        .unwrap()
        .clone();
    assert_eq!(
        (medium["count"].as_u64(), medium["average_hours"].as_f64()),
        (Some(1), Some(0.0))
    );
    // Implementation: 0 h and 3 h.
    assert_eq!(v["implementation_time"]["average_hours"], 1.5);
    let rate = |n: &str| {
        v["rates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(rate("success_rate")["value"], 0.5);
    assert_eq!(rate("success_rate")["met"], false);
    assert_eq!(rate("rollback_rate")["met"], false);
    assert_eq!(rate("emergency_rate")["value"], 0.5);
    let md = s
        .chg(
            "alice@example.com",
            &["report", "--period", "2025-Q1", "--format", "markdown"],
        )
        .ok();
    assert!(
        md.stdout.starts_with("# Change report: 2025-Q1\n"),
        "{}",
        md.stdout
    );
    assert_eq!(
        md.stdout
            .matches("<svg xmlns=\"http://www.w3.org/2000/svg\"")
            .count(),
        2
    );
    assert!(
        md.stdout
            .contains("| success_rate | 50.0% | >= 95.0% | **missed** |"),
        "{}",
        md.stdout
    );
    let csv = s
        .chg("alice@example.com", &["report", "--format", "csv"])
        .ok();
    assert!(
        csv.stdout
            .starts_with("section,name,value,target,met\ncount,total,2,,\n"),
        "{}",
        csv.stdout
    );
    assert!(
        csv.stdout
            .contains("rate,success_rate,0.5000,0.9500,false\n"),
        "{}",
        csv.stdout
    );
    let table = s
        .chg("alice@example.com", &["report", "--since", "2025-04-01"])
        .ok();
    assert!(
        table
            .stdout
            .starts_with("Changes requested in 2025-04-01T00:00:00Z to now: 0\n"),
        "{}",
        table.stdout
    );
    s.chg("alice@example.com", &["report", "--period", "2025-13"])
        .code(2);
    s.chg(
        "alice@example.com",
        &["report", "--period", "2025", "--since", "2025-01-01"],
    )
    .code(2);
}

#[test]
fn a_transition_the_life_cycle_forbids_and_hand_written_implementation_or_review() {
    let s = Store::new();
    // chg-looking trailers closing a change that never started.
    let a = s.new_change(&[]);
    s.rewrite(&a, |t| {
        t.replace("status: pending_approval", "status: closed")
            + "implementation:\n  completed_at: 2025-03-10T12:00:00Z\n  outcome: successful\n"
    });
    s.forge(
        &a,
        "close",
        "bob@example.com",
        None,
        ("pending_approval", "closed"),
        "2025-03-10T12:00:00Z",
    );
    // Hand-written implementation and review records, status untouched.
    let b = s.new_change(&[]);
    s.rewrite(&b, |t| {
        t + "implementation:\n  implementer: bob@example.com\n  started_at: 2025-03-10T12:00:00Z\n"
    });
    s.commit_by_hand("bob@example.com", "2025-03-10T12:00:00Z", "started");
    s.rewrite(&b, |t| {
        t + "review:\n  by: bob@example.com\n  at: 2025-03-10T13:00:00Z\n  summary: fine\n"
    });
    s.commit_by_hand("bob@example.com", "2025-03-10T13:00:00Z", "reviewed");
    assert_exceptions(
        &s,
        &[
            ("lifecycle", &a),
            ("time-order", &b),
            ("manual-implementation", &b),
            ("manual-review", &b),
        ],
    );
    let (v, _) = s.audit(&[]);
    let msg = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "lifecycle")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("only a change being implemented can be closed"),
        "{msg}"
    );
}

#[test]
fn a_post_mortem_after_the_emergency_deadline_is_late() {
    let s = Store::new();
    let e = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.chg("bob@example.com", &["implement", &e]).ok();
    s.chg("sec-lead@example.com", &["approve", &e]).ok();
    s.chg("em@example.com", &["approve", &e]).ok();
    // Completed at once, reviewed three days later (the policy allows 48 hours).
    s.rewrite(&e, |t| {
        t.replace("status: implementing", "status: closed").replace(
            "  started_at: 2025-03-10T10:00:00Z\n",
            "  started_at: 2025-03-10T10:00:00Z\n  completed_at: 2025-03-10T11:00:00Z\n  outcome: successful\n",
        ) + "review:\n  by: bob@example.com\n  at: 2025-03-13T11:00:00Z\n  summary: late post-mortem\n"
    });
    s.forge(
        &e,
        "close",
        "bob@example.com",
        None,
        ("implementing", "closed"),
        "2025-03-13T11:00:00Z",
    );
    // The forged close also wrote times chg would not have: the trailers do not match.
    assert_exceptions(
        &s,
        &[("emergency-review-late", &e), ("trailer-mismatch", &e)],
    );
}
