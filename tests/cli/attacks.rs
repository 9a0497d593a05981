//! The attacker of issue 22: push access and their own SSH key, nobody else's. They write
//! with plain git (`GIT_AUTHOR_*` as they please) and run chg with `CHG_NOW` set back. Each
//! attack must be refused by `chg gate` and `chg implement` and reported by `chg validate`
//! and `chg audit`, each with its rule, in the clone where it was made and in a fresh clone
//! (the caches under `.git/chg/` are not trusted for it).

use std::path::Path;

use super::{Store, assert_unchanged};

/// SSH keys made for some people, turned on as the store's allowed signers.
struct Keys(Vec<(String, std::path::PathBuf)>);

impl Keys {
    /// Keys for `names` (`em` is em@example.com), listed in a policy commit that requires
    /// signatures for approve, reject and `more`.
    fn signing(s: &Store, names: &[&str], more: &[&str]) -> Keys {
        let keys = Keys(
            names
                .iter()
                .map(|w| (format!("{w}@example.com"), s.keygen(w)))
                .collect(),
        );
        let signers: Vec<(&str, &Path)> = keys
            .0
            .iter()
            .map(|(w, k)| (w.as_str(), k.as_path()))
            .collect();
        s.enable_signing(&signers, more);
        keys
    }

    fn key(&self, who: &str) -> &Path {
        &self.0.iter().find(|(w, _)| w == who).unwrap().1
    }

    /// `chg ARGS` as `who`, signing with their key.
    fn sign(&self, s: &Store, who: &str, args: &[&str]) -> super::Run {
        s.signed(who, self.key(who), args)
    }
}

/// What every reader must say about an attacked change.
struct Caught<'a> {
    /// The change.
    id: &'a str,
    /// When the gate and implement are tried.
    at: &'a str,
    /// A rule among the gate's reasons, and among implement's words (its message).
    gate: &'a str,
    /// Words of implement's refusal.
    implement: String,
    /// The rule validate reports for the change's file.
    validate: &'a str,
    /// An audit exception that is new since before the attack.
    audit: &'a str,
}

impl<'a> Caught<'a> {
    /// The common verdict: gate and validate say `unverified-history`, implement names the
    /// audit's `rule`, which the audit reports, judged at [`AT`].
    fn history(id: &'a str, rule: &'a str) -> Self {
        Caught {
            id,
            at: AT,
            gate: "unverified-history",
            implement: format!("({rule})"),
            validate: "unverified-history",
            audit: rule,
        }
    }
}

/// The audit's exceptions, as (rule, change, commit) (exit 1 exactly when there is one).
pub(super) fn exceptions(s: &Store) -> Vec<(String, String, String)> {
    s.exceptions()
}

/// A clone of `s` made afresh (no `.git/chg/` caches), at the same time.
pub(super) fn fresh_clone(s: &Store) -> Store {
    let c = Store::bare();
    std::fs::remove_dir(c.root()).unwrap();
    let ok = std::process::Command::new("git")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args(["clone", "-q"])
        .arg(s.root())
        .arg(c.root())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", c.dir.path().join("home"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    Store {
        dir: c.dir,
        now: s.now.clone(),
    }
}

pub(super) fn gate_rules(s: &Store, id: &str, at: &str) -> (i32, Vec<String>, String) {
    let r = s.chg("bob@example.com", &["gate", id, "--at", at, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("gate printed no JSON: {}{}", r.stdout, r.stderr));
    let rules = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap().to_owned())
        .collect();
    (r.code, rules, r.stdout)
}

/// Gate and implement refuse, validate and audit report, with their rules, here and in a
/// fresh clone. `before` is the audit's exceptions from before the attack.
fn assert_caught(s: &Store, c: &Caught<'_>, before: &[(String, String, String)]) {
    let fresh = fresh_clone(s);
    for (store, clone) in [(s, "existing clone"), (&fresh, "fresh clone")] {
        let (code, rules, out) = gate_rules(store, c.id, c.at);
        assert_eq!(code, 1, "{clone}: the gate opened: {out}");
        assert!(
            rules.iter().any(|r| r == c.gate),
            "{clone}: gate without {}: {out}",
            c.gate
        );
        let snapshot = store.snapshot();
        let mut cmd = store.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "bob@example.com");
        let r = super::run_output(
            cmd.env("CHG_NOW", c.at)
                .args(["implement", c.id])
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, 1, "{clone}: implement: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&c.implement),
            "{clone}: implement without `{}`: {}",
            c.implement,
            r.stderr
        );
        assert_unchanged(store, &snapshot);
        let r = store.chg("alice@example.com", &["validate"]).code(1);
        assert!(
            r.stdout.contains(&format!(": {}: ", c.validate)),
            "{clone}: validate without {}: {}",
            c.validate,
            r.stdout
        );
        let now = exceptions(store);
        let new: Vec<&(String, String, String)> =
            now.iter().filter(|e| !before.contains(e)).collect();
        assert!(
            new.iter().any(|(rule, _, _)| rule == c.audit),
            "{clone}: audit without a new {}: {new:?}",
            c.audit
        );
    }
}

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

const AT: &str = "2025-03-11T09:30:00Z";

/// Edits the change file with `f` and commits it with plain git as mallory.
fn forge(s: &Store, id: &str, message: &str, f: impl FnOnce(String) -> String) {
    s.rewrite(id, f);
    mallory_commit(s, message);
}

fn mallory_commit(s: &Store, message: &str) {
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd.args(["commit", "-qam", message]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_status_flipped_by_hand_is_not_believed() {
    // With no approval, and with one of the two a medium change needs: the status line is
    // all the attacker changed.
    for approvers in [&[][..], &["em@example.com"]] {
        let s = Store::new();
        let id = s.new_change(&[]);
        for who in approvers {
            s.chg(who, &["approve", &id]).ok();
        }
        s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
            .ok();
        let before = exceptions(&s);
        forge(&s, &id, "approved", |t| {
            t.replace("status: pending_approval", "status: approved")
        });
        assert_caught(&s, &Caught::history(&id, "manual-status"), &before);
    }
}

#[test]
fn nothing_is_approved_on_a_status_flipped_by_hand_and_nobody_is_told_it_awaits_them() {
    // A draft pushed to pending by hand (plain git, mallory's own identity): approve and
    // `list --awaiting-me` judge it by its verified history, not by its status line, in
    // this clone and in a fresh one, and agree again once the hand edit is reverted.
    let args = [super::COMPLETE, &["--draft"]].concat();
    let s = Store::new();
    let id = s.chg("alice@example.com", &args).ok_line();
    forge(&s, &id, "ready", |t| {
        t.replace("status: draft", "status: pending_approval")
    });
    let fresh = fresh_clone(&s);
    for (store, clone) in [(&s, "existing clone"), (&fresh, "fresh clone")] {
        assert_eq!(
            super::query::awaiting(store, "em@example.com"),
            Vec::<String>::new(),
            "{clone}"
        );
        let snapshot = store.snapshot();
        let r = store.chg("em@example.com", &["approve", &id]).code(1);
        assert!(
            r.stderr.contains("history does not verify") && r.stderr.contains("(manual-status)"),
            "{clone}: {}",
            r.stderr
        );
        assert_unchanged(store, &snapshot);
    }
    // A rejection stays open to an approver: it stops the change.
    fresh
        .chg(
            "em@example.com",
            &["reject", &id, "--comment", "not filed by chg"],
        )
        .ok();
    // Reverted, then submitted as chg submits: awaited and approved again.
    let mut cmd = s.cmd(Path::new("git"), "alice@example.com");
    let o = cmd.args(["revert", "--no-edit", "HEAD"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.chg("alice@example.com", &["submit", &id]).ok();
    assert_eq!(super::query::awaiting(&s, "em@example.com"), [id.as_str()]);
    s.chg("em@example.com", &["approve", &id]).ok();
}

#[test]
fn an_approver_of_a_change_flipped_to_approved_by_hand_is_told_its_history_does_not_verify() {
    // Not "already approved by every required role", which would read as all being well.
    let s = Store::new();
    let id = s.chg("alice@example.com", super::COMPLETE).ok_line();
    forge(&s, &id, "tidy", |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    let before = s.snapshot();
    let r = s.chg("em@example.com", &["approve", &id]).code(1);
    assert!(
        r.stderr.contains("history does not verify") && r.stderr.contains("(manual-status)"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn an_approved_change_copied_under_a_new_id_is_not_believed() {
    let (s, id) = approved();
    let before = exceptions(&s);
    let copy = id.replace("-001", "-002");
    let text = s.read(&id).replace(&id, &copy);
    let path = s.file(&id).with_file_name(format!("{copy}.yaml"));
    std::fs::write(&path, text).unwrap();
    s.git(&["add", "."]);
    mallory_commit(&s, "a copy");
    let caught = Caught::history(&copy, "manual-status");
    assert_caught(&s, &caught, &before);
}

#[test]
fn a_cancellation_undone_with_git_revert_is_not_believed() {
    let (s, id) = approved();
    s.chg(
        "alice@example.com",
        &["cancel", &id, "--reason", "not needed"],
    )
    .ok();
    let before = exceptions(&s);
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd.args(["revert", "--no-edit", "HEAD"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.read(&id).contains("status: approved"));
    let caught = Caught::history(&id, "manual-status");
    assert_caught(&s, &caught, &before);
}

#[test]
fn a_reverted_hand_edit_restores_the_change_and_nothing_older_does() {
    // Undoing the commit that did not verify returns the file to the last version a chg
    // step wrote: the change is believed again.
    let s = Store::new();
    let id = s.new_change(&[]);
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    forge(&s, &id, "approved", |t| {
        t.replace("status: pending_approval", "status: approved")
    });
    s.git(&["revert", "--no-edit", "HEAD"]);
    let (code, rules, out) = gate_rules(&s, &id, AT);
    assert_eq!(code, 1);
    assert_eq!(rules, ["implemented-unapproved"], "{out}");
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    let (code, _, out) = gate_rules(&s, &id, AT);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_creator_of_a_change_cannot_approve_it_whatever_requester_says() {
    // cm writes a change file by hand naming alice as its requester (a copy of one of
    // hers), then approves it as change-manager.
    let s = Store::new();
    let template = s
        .chg("alice@example.com", &super::new_args("Hers"))
        .ok_line();
    let id = template.replace("-001", "-002");
    let text = s.read(&template).replace(&template, &id);
    std::fs::write(s.file(&template).with_file_name(format!("{id}.yaml")), text).unwrap();
    s.git(&["add", "."]);
    let mut cmd = s.cmd(Path::new("git"), "cm@example.com");
    assert!(
        cmd.args(["commit", "-qm", "for alice"])
            .status()
            .unwrap()
            .success()
    );
    let before = s.snapshot();
    let r = s.chg("cm@example.com", &["approve", &id]).code(1);
    assert!(
        r.stderr.contains("cm@example.com filed this change")
            && r.stderr.contains("segregation of duties"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    // Whoever made the content (a material edit) may not approve it either.
    let other = s
        .chg("alice@example.com", &super::new_args("Other"))
        .ok()
        .stdout;
    let other = other.trim();
    s.chg(
        "cm@example.com",
        &["set", other, "rollback_plan=Restore the backup"],
    )
    .ok();
    let r = s.chg("cm@example.com", &["approve", other]).code(1);
    assert!(
        r.stderr
            .contains("cm@example.com made the content being approved"),
        "{}",
        r.stderr
    );

    // The approval made anyway, on a side branch whose policy has no segregation of duties,
    // and brought over with its chg trailers (a cherry-pick): the replay passes (requester:
    // says alice), but history shows cm filed it.
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    let before = exceptions(&s);
    s.git(&["checkout", "-qb", "side"]);
    s.edit_policy("no segregation", |t| {
        t.replace(
            "segregation_of_duties: true",
            "segregation_of_duties: false",
        )
    });
    s.chg("cm@example.com", &["approve", &id]).ok();
    let approval = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    s.git(&["checkout", "-q", "main"]);
    let mut cmd = s.cmd(Path::new("git"), "cm@example.com");
    let o = cmd.args(["cherry-pick", &approval]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.git(&["branch", "-qD", "side"]);
    let caught = Caught::history(&id, "segregation-of-duties");
    assert_caught(&s, &caught, &before);
}

// ---------------------------------------------------------------------------------------
// Governance

/// A governed store (security-team-lead), one template, and a medium change approved by em
/// and cm and scheduled; its id.
fn governed() -> (Store, String) {
    let s = Store::new();
    write_policy_file(&s, "templates/tls.yaml", TLS);
    s.git(&["add", "policy"]);
    s.git(&["commit", "-qm", "a catalogue"]);
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    (s, id)
}

const TLS: &str = "description: Renew a certificate\nbusiness_justification: Expiry\nchange_type: configuration\npriority: low\nrisk_level: low\nimplementation_plan: Upload and reload\nrollback_plan: Reload the previous certificate\nvariable: [title, affected_systems]\n";

fn write_policy_file(s: &Store, rel: &str, text: &str) {
    let path = s.root().join("policy").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Edits the work tree's policy with `f` and files it as a proposal (as alice); its id.
fn propose(s: &Store, f: impl FnOnce(String) -> String) -> String {
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(text)).unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&super::COMPLETE[1..]);
    let id = s.chg("alice@example.com", &args).ok_line();
    s.git(&["checkout", "-q", "--", "policy"]);
    id
}

fn approve_all(s: &Store, id: &str) {
    for who in ["em", "cm", "sec-lead"] {
        s.chg(&format!("{who}@example.com"), &["approve", id]).ok();
    }
}

fn add_to_change_managers(who: &str) -> impl FnOnce(String) -> String + '_ {
    move |t: String| {
        t.replace(
            "change-manager: [cm@example.com]",
            &format!("change-manager: [cm@example.com, {who}]"),
        )
    }
}

/// Commits the work tree as mallory with this message (plain git, any trailers).
fn mallory_commit_all(s: &Store, message: &str) {
    s.git(&["add", "-A"]);
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd.args(["commit", "-qm", message]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A policy that no authorized step produced is at HEAD: every reader says so.
fn assert_policy_caught(s: &Store, id: &str, before: &[(String, String, String)]) {
    let caught = Caught {
        id,
        at: AT,
        gate: "policy-unauthorized",
        implement: "no step is judged by it".into(),
        validate: "policy-unauthorized",
        audit: "policy-unauthorized",
    };
    assert_caught(s, &caught, before);
    // No step at all is taken under it.
    let snapshot = s.snapshot();
    let r = s.chg("alice@example.com", super::COMPLETE).code(1);
    assert!(r.stderr.contains("no step is judged by it"), "{}", r.stderr);
    assert_unchanged(s, &snapshot);
}

#[test]
fn a_commit_that_merely_names_a_rejected_proposal_is_not_an_apply() {
    let (s, id) = governed();
    let proposal = propose(&s, add_to_change_managers("mallory@example.com"));
    s.chg("em@example.com", &["approve", &proposal]).ok();
    s.chg("sec-lead@example.com", &["approve", &proposal]).ok();
    s.chg("cm@example.com", &["reject", &proposal, "--comment", "no"])
        .ok();
    let before = exceptions(&s);
    // The proposed policy written by hand, the proposal marked implementing, and every
    // trailer chg would write.
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, add_to_change_managers("mallory@example.com")(text)).unwrap();
    s.rewrite(&proposal, |t| {
        t.replace("status: rejected", "status: implementing")
    });
    mallory_commit_all(
        &s,
        &format!(
            "{proposal}: implement\n\nChg-Id: {proposal}\nChg-Action: implement\nChg-Actor: mallory@example.com\nChg-From: approved\nChg-To: implementing\n"
        ),
    );
    assert_policy_caught(&s, &id, &before);
    let r = s.chg("mallory@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("no step is judged by it"), "{}", r.stderr);
}

#[test]
fn a_proposal_applied_after_the_policy_changed_is_refused() {
    let (s, _) = governed();
    let first = propose(&s, add_to_change_managers("carol@example.com"));
    let second = propose(&s, add_to_change_managers("dave@example.com"));
    approve_all(&s, &first);
    approve_all(&s, &second);
    for p in [&first, &second] {
        s.schedule(p, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
            .ok();
    }
    let mut s = s;
    s.at(AT);
    s.chg("alice@example.com", &["policy", "apply", &first])
        .ok();
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &second])
        .code(1);
    assert!(
        r.stderr.contains("changed since") && r.stderr.contains("propose it again"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    // carol, whom the first added, stays.
    assert!(
        std::fs::read_to_string(s.root().join("policy/policy.yaml"))
            .unwrap()
            .contains("carol@example.com")
    );
}

#[test]
fn proposed_paths_stay_under_policy() {
    let (mut s, _) = governed();
    let proposal = propose(&s, add_to_change_managers("carol@example.com"));
    // Edited by hand before any approval (a note): a workflow file among the proposal's.
    s.rewrite(&proposal, |t| {
        t.replace(
            "proposed_policy:\n",
            "proposed_policy:\n  .github/workflows/x.yml: \"on: push\"\n",
        )
    });
    s.git(&["commit", "-qam", "more"]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains(": governance: ") && r.stdout.contains(".github/workflows/x.yml"),
        "{}",
        r.stdout
    );
    approve_all(&s, &proposal);
    s.schedule(&proposal, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &proposal])
        .code(1);
    assert!(
        r.stderr.contains("only files under policy/"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    // A link under policy/ is refused when proposing.
    std::os::unix::fs::symlink("/etc/passwd", s.root().join("policy/passwd")).unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&super::COMPLETE[1..]);
    let before = s.snapshot();
    let r = s.chg("alice@example.com", &args).code(2);
    assert!(r.stderr.contains("is a link"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn a_rollback_to_an_older_authorized_policy_is_unauthorized() {
    let (mut s, id) = governed();
    // carol was a change manager; an approved proposal removes her.
    let add = propose(&s, add_to_change_managers("carol@example.com"));
    approve_all(&s, &add);
    s.schedule(&add, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    s.chg("alice@example.com", &["policy", "apply", &add]).ok();
    let with_carol = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let remove = propose(&s, |t| {
        t.replace(
            "change-manager: [cm@example.com, carol@example.com]",
            "change-manager: [cm@example.com]",
        )
    });
    approve_all(&s, &remove);
    s.schedule(&remove, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.chg("alice@example.com", &["policy", "apply", &remove])
        .ok();
    s.chg("alice@example.com", &["validate"]).ok();
    let before = exceptions(&s);
    // The policy of the day carol was in, restored by a plain commit.
    s.git(&["checkout", "-q", &with_carol, "--", "policy"]);
    mallory_commit_all(
        &s,
        &format!("Revert \"remove carol\"\n\nThis reverts the policy to {with_carol}."),
    );
    assert_policy_caught(&s, &id, &before);
    let r = s.chg("carol@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("no step is judged by it"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// Standard changes from the catalogue

/// Files a standard change from the `tls` template as alice, scheduled; its id.
fn standard(s: &Store) -> String {
    let id = s
        .chg(
            "alice@example.com",
            &[
                "new",
                "--template",
                "tls",
                "--title",
                "Renew edge",
                "--system",
                "edge-proxy",
            ],
        )
        .ok_line();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    id
}

/// A hand-written copy of change `id` under the next free number, committed by mallory,
/// edited by `f`; the copy's id.
fn hand_copy(s: &Store, id: &str, n: u32, f: impl FnOnce(String) -> String) -> String {
    let copy = format!("{}-{n:03}", &id[..id.len() - 4]);
    let text = f(s.read(id).replace(id, &copy));
    std::fs::write(s.file(id).with_file_name(format!("{copy}.yaml")), text).unwrap();
    mallory_commit_all(s, "a routine renewal");
    copy
}

#[test]
fn a_template_retired_by_an_approved_proposal_preapproves_nothing() {
    let (mut s, _) = governed();
    let filed = standard(&s);
    // The catalogue's only template is retired through governance.
    std::fs::remove_file(s.root().join("policy/templates/tls.yaml")).unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&super::COMPLETE[1..]);
    let retire = s.chg("alice@example.com", &args).ok_line();
    approve_all(&s, &retire);
    s.schedule(&retire, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    s.chg("alice@example.com", &["policy", "apply", &retire])
        .ok();
    let before = exceptions(&s);
    // mallory files a "standard" change by hand naming the retired version.
    let copy = hand_copy(&s, &filed, 9, |t| t);
    let caught = Caught::history(&copy, "standard-template");
    assert_caught(&s, &caught, &before);
}

#[test]
fn a_template_slipped_in_and_reverted_preapproves_nothing() {
    let (mut s, _) = governed();
    let filed = standard(&s);
    let evil = TLS.replace("Renew a certificate", "Open SSH to the world");
    write_policy_file(&s, "templates/tls.yaml", &evil);
    mallory_commit_all(&s, "tweak the template");
    let slipped = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let digest = chg::templates::digest(evil.as_bytes());
    let copy = hand_copy(&s, &filed, 9, |t| {
        let old = t
            .lines()
            .find(|l| l.starts_with("template_digest: "))
            .unwrap()
            .to_owned();
        t.replace(&old, &format!("template_digest: {digest}"))
            .replace("Renew a certificate", "Open SSH to the world")
    });
    // The policy is put back: the slipped-in commit is undone, the change stays.
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd
        .args(["revert", "--no-edit", &slipped])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.at(AT);
    // The audit had the slipped-in policy already; what is new is the change's.
    let before: Vec<(String, String, String)> = exceptions(&s)
        .into_iter()
        .filter(|(rule, _, _)| rule != "standard-template")
        .collect();
    let caught = Caught::history(&copy, "standard-template");
    assert_caught(&s, &caught, &before);
}

#[test]
fn a_fixed_value_edited_by_hand_is_reported_by_every_reader() {
    let (s, _) = governed();
    let id = standard(&s);
    let before = exceptions(&s);
    forge(&s, &id, "a better plan", |t| {
        t.replace("Upload and reload", "Upload, reload, and open port 22")
    });
    let caught = Caught {
        id: &id,
        at: AT,
        gate: "unverified-history",
        implement: "(standard-template)".into(),
        validate: "standard-template",
        audit: "standard-template",
    };
    assert_caught(&s, &caught, &before);
}

// ---------------------------------------------------------------------------------------
// Signatures

#[test]
fn a_retired_key_is_not_revived_by_backdating() {
    let mut s = Store::new();
    let keys = Keys::signing(&s, &["em", "cm", "sec-lead"], &[]);
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    let sign = |s: &Store, who: &str, args: &[&str]| keys.sign(s, who, args);
    let id = s.new_change(&[]);
    s.schedule(&id, "2025-03-13T09:00:00Z", "2025-03-13T11:00:00Z")
        .ok();
    // em's key is retired from the 12th, through an approved proposal applied on the 12th.
    let p = s.root().join("policy/allowed_signers");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace(
            "em@example.com ",
            "em@example.com valid-before=\"20250312\" ",
        ),
    )
    .unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&super::COMPLETE[1..]);
    let retire = s.chg("alice@example.com", &args).ok_line();
    s.git(&["checkout", "-q", "--", "policy"]);
    for who in ["em@example.com", "cm@example.com", "sec-lead@example.com"] {
        sign(&s, who, &["approve", &retire]).ok();
    }
    s.schedule(&retire, "2025-03-12T09:00:00Z", "2025-03-12T11:00:00Z")
        .ok();
    s.at("2025-03-12T10:00:00Z");
    s.chg("alice@example.com", &["policy", "apply", &retire])
        .ok();
    s.chg("alice@example.com", &["validate"]).ok();
    // Today em's key is refused...
    s.at("2025-03-12T10:30:00Z");
    let r = sign(&s, "em@example.com", &["approve", &id]).code(1);
    assert!(r.stderr.contains("do not list"), "{}", r.stderr);
    // ...so em backdates the approval to the 11th, when the key was still good.
    let before = exceptions(&s);
    s.at("2025-03-11T12:00:00Z");
    sign(&s, "em@example.com", &["approve", &id]).ok();
    // Nothing is approved on top of the record history does not vouch for.
    let next = sign(&s, "cm@example.com", &["approve", &id]).code(1);
    assert!(
        next.stderr.contains("history does not verify") && next.stderr.contains("(signature)"),
        "{}",
        next.stderr
    );
    let caught = Caught {
        id: &id,
        at: "2025-03-13T09:30:00Z",
        gate: "unverified-history",
        implement: "(signature)".into(),
        validate: "unverified-history",
        audit: "signature",
    };
    assert_caught(&s, &caught, &before);
}

#[test]
fn requesters_and_implementers_sign_without_a_role() {
    let mut s = Store::new();
    let keys = Keys::signing(
        &s,
        &["em", "cm", "alice", "bob"],
        &["implement", "close", "cancel"],
    );
    s.chg("alice@example.com", &["validate"]).ok();
    let sign = |s: &Store, who: &str, args: &[&str]| keys.sign(s, who, args);
    let id = s.new_change(&[]);
    sign(&s, "em@example.com", &["approve", &id]).ok();
    sign(&s, "cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    sign(&s, "bob@example.com", &["implement", &id]).ok();
    sign(
        &s,
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    let other = s.new_change(&[]);
    sign(
        &s,
        "alice@example.com",
        &["cancel", &other, "--reason", "later"],
    )
    .ok();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 4, "{text}");
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);
}

#[test]
fn two_stores_in_one_repository_judge_their_own_policy() {
    let s = Store::bare();
    s.git(&["init", "-q", "-b", "main"]);
    for team in ["a", "b"] {
        s.chg("alice@example.com", &["init", &format!("teams/{team}")])
            .ok();
        let p = s.root().join(format!("teams/{team}/policy/policy.yaml"));
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            format!("{text}governance:\n  roles: [security-team-lead]\n"),
        )
        .unwrap();
        s.git(&["commit", "-qam", "adopt governance"]);
    }
    // A member slipped into team b's policy.
    let p = s.root().join("teams/b/policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, add_to_change_managers("mallory@example.com")(text)).unwrap();
    mallory_commit_all(&s, "b: one more manager");
    let in_team = |team: &str, args: &[&str]| {
        let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "alice@example.com");
        super::run_output(
            cmd.current_dir(s.root().join(format!("teams/{team}")))
                .args(args)
                .output()
                .unwrap(),
        )
    };
    // Team a's run first (its answer kept for this HEAD), then team b's.
    assert_eq!(in_team("a", &["validate"]).code, 0);
    let r = in_team("b", &["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("policy-unauthorized"), "{}", r.stdout);
    assert_eq!(in_team("a", &["validate"]).code, 0);
}

#[test]
fn requests_and_edits_can_be_proven() {
    let s = Store::new();
    let keys = Keys::signing(&s, &["alice", "em", "cm"], &["new", "edit"]);
    let sign = |s: &Store, who: &str, args: &[&str]| keys.sign(s, who, args);
    // Filing without a key is refused, changing nothing.
    let before = s.snapshot();
    let r = s.chg("alice@example.com", super::COMPLETE).code(2);
    assert!(r.stderr.contains("user.signingkey"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    let id = sign(&s, "alice@example.com", super::COMPLETE).ok_line();
    let text = s.read(&id);
    assert!(
        text.contains("content_signature:\n  action: new\n  by: alice@example.com\n"),
        "{text}"
    );
    // A material edit is signed by its author; a schedule (not content) needs no record.
    sign(
        &s,
        "em@example.com",
        &["set", &id, "rollback_plan=Restore the backup"],
    )
    .ok();
    assert!(
        s.read(&id)
            .contains("  action: edit\n  by: em@example.com\n"),
        "{}",
        s.read(&id)
    );
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    sign(&s, "cm@example.com", &["approve", &id]).ok();
    // em wrote the content now, and may not approve it.
    let r = sign(&s, "em@example.com", &["approve", &id]).code(1);
    assert!(
        r.stderr.contains("em@example.com made the content"),
        "{}",
        r.stderr
    );
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);

    // mallory files a change by hand in alice's name: nobody signed the request.
    let before = exceptions(&s);
    let copy = id.replace("-001", "-002");
    let forged = s.read(&id).replace(&id, &copy);
    let forged: String = forged
        .split("content_signature:")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(s.file(&id).with_file_name(format!("{copy}.yaml")), forged).unwrap();
    mallory_commit_all(&s, "for alice");
    let caught = Caught::history(&copy, "signature");
    assert_caught(&s, &caught, &before);
}

#[test]
fn only_those_the_policy_names_declare_an_emergency() {
    let s = Store::new();
    s.edit_policy("emergencies are declared by the security lead", |t| {
        t.replace(
            "  review_within: 48h",
            "  review_within: 48h\n  declared_by: [security-team-lead]",
        )
    });
    s.chg("alice@example.com", &["validate"]).ok();
    let emergency = ["--emergency", "--priority", "critical", "--risk", "high"];
    let before = s.snapshot();
    let mut args = super::COMPLETE.to_vec();
    args.extend(emergency);
    let r = s.chg("alice@example.com", &args).code(1);
    assert!(
        r.stderr.contains("alice@example.com may not declare")
            && r.stderr.contains("security-team-lead"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    s.chg("sec-lead@example.com", &args).ok();
    let id = s.new_change(&[]);
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["set", &id, "change_model=emergency"])
        .code(1);
    assert!(r.stderr.contains("may not declare"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    // Relabelled by hand to skip approval: an edit before any approval, otherwise a note.
    let before = exceptions(&s);
    forge(&s, &id, "it is urgent", |t| {
        t.replace("change_model: normal", "change_model: emergency")
    });
    let caught = Caught::history(&id, "emergency-declaration");
    assert_caught(&s, &caught, &before);
    // An unknown role in the list is a policy finding with its place.
    s.edit_policy("typo", |t| {
        t.replace(
            "declared_by: [security-team-lead]",
            "declared_by: [security-lead]",
        )
    });
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains("emergency.declared_by names unknown role `security-lead`; did you mean `security-team`?"),
        "{}",
        r.stdout
    );
}

// ---------------------------------------------------------------------------------------
// Merges: every parent line is held to its own governing policy

/// A signed, governed store: em, cm, sec-lead and mallory have keys (mallory's for her own
/// email); one medium change by alice, approved by em and cm, scheduled; one by mallory,
/// scheduled, unapproved. Returns the store, the keys and mallory's change.
fn signed_governed() -> (Store, Keys, String) {
    let s = Store::new();
    let keys = Keys::signing(&s, &["em", "cm", "sec-lead", "mallory"], &[]);
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    let id = s.chg("mallory@example.com", super::COMPLETE).ok_line();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    (s, keys, id)
}

/// Moves main to a merge made on `side` with `side` as its first parent and main second,
/// keeping `side`'s policy: a fast-forward of main, no force needed.
fn merge_main_into_side_and_fast_forward(s: &Store) {
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd
        .args([
            "merge",
            "-q",
            "--no-edit",
            "--allow-unrelated-histories",
            "-X",
            "ours",
            "main",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.git(&["checkout", "-q", "main"]);
    s.git(&["merge", "-q", "--ff-only", "side"]);
}

#[test]
fn a_policy_taken_over_by_swapping_a_merges_parents_is_unauthorized() {
    for from_root in [true, false] {
        let (s, keys, id) = signed_governed();
        let before = exceptions(&s);
        // mallory's own line: a new root, or a branch from before governance, holding
        // main's policy with her key listed for em and cm.
        if from_root {
            s.git(&["checkout", "-q", "--orphan", "side"]);
            s.git(&["rm", "-q", "-r", "--cached", "."]);
            s.git(&["clean", "-qfdx", "-e", "policy"]);
        } else {
            let init = s
                .git(&["rev-list", "--max-parents=0", "HEAD"])
                .trim()
                .to_owned();
            s.git(&["checkout", "-q", "-b", "side", &init]);
            s.git(&["checkout", "main", "--", "policy"]);
        }
        let mallory = s.public(keys.key("mallory@example.com"));
        let p = s.root().join("policy/allowed_signers");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            format!("{text}em@example.com {mallory}\ncm@example.com {mallory}\n"),
        )
        .unwrap();
        mallory_commit_all(&s, "policy");
        merge_main_into_side_and_fast_forward(&s);
        assert!(s.read(&id).contains("status: pending_approval"));
        // Her key now "is" em's and cm's: the approvals are refused under that policy.
        for who in ["em@example.com", "cm@example.com"] {
            let r = s
                .signed(who, keys.key("mallory@example.com"), &["approve", &id])
                .code(1);
            assert!(
                r.stderr.contains("merges in a policy that does not govern"),
                "{}",
                r.stderr
            );
        }
        let caught = Caught {
            id: &id,
            at: AT,
            gate: "policy-unauthorized",
            implement: "merges in a policy that does not govern".into(),
            validate: "policy-unauthorized",
            audit: "policy-unauthorized",
        };
        assert_caught(&s, &caught, &before);
    }
}

#[test]
fn records_a_merge_brings_are_judged_by_the_policy_they_enter() {
    let s = Store::new();
    let cm = s.keygen("cm");
    s.enable_signing(&[("cm@example.com", &cm)], &[]);
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    // A branch from before signing and governance: approvals there need no signature.
    let init = s
        .git(&["rev-list", "--max-parents=0", "HEAD"])
        .trim()
        .to_owned();
    s.git(&["checkout", "-q", "-b", "side", &init]);
    let id = s
        .chg("mallory@example.com", &super::new_args("On the side"))
        .ok_line();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.git(&["checkout", "-q", "main"]);
    let before = exceptions(&s);
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd
        .args(["merge", "-q", "--no-edit", "side"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let caught = Caught::history(&id, "signature");
    assert_caught(&s, &caught, &before);
}

#[test]
fn ordinary_merges_stay_clean() {
    // A branch whose changes were approved under the same policy, and a branch where a
    // proposal was applied after it left main: both merge without an exception.
    let (mut s, _) = governed();
    s.git(&["checkout", "-q", "-b", "feature"]);
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.git(&["checkout", "-q", "main"]);
    std::fs::write(s.root().join("NOTES"), "first\n").unwrap();
    s.git(&["add", "NOTES"]);
    s.git(&["commit", "-qm", "meanwhile on main"]);
    s.git(&["merge", "-q", "--no-edit", "feature"]);
    s.git(&["checkout", "-q", "-b", "policy-change"]);
    let proposal = propose(&s, add_to_change_managers("carol@example.com"));
    approve_all(&s, &proposal);
    s.schedule(&proposal, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    s.chg("alice@example.com", &["policy", "apply", &proposal])
        .ok();
    s.git(&["checkout", "-q", "main"]);
    std::fs::write(s.root().join("NOTES"), "meanwhile\n").unwrap();
    s.git(&["add", "NOTES"]);
    s.git(&["commit", "-qm", "meanwhile on main"]);
    s.git(&["merge", "-q", "--no-edit", "policy-change"]);
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains("policy-unauthorized"), "{}", r.stdout);
    let (code, _, out) = gate_rules(&s, &id, "2025-03-11T09:30:00Z");
    assert_eq!(code, 1, "{out}"); // no schedule: only the schedule closes it
    assert!(
        !out.contains("unverified-history") && !out.contains("policy-unauthorized"),
        "{out}"
    );
}

#[test]
fn a_store_planted_inside_another_is_pointed_out() {
    let s = Store::new();
    let inner = s.root().join("services/web");
    std::fs::create_dir_all(&inner).unwrap();
    s.chg("mallory@example.com", &["init", inner.to_str().unwrap()])
        .ok();
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "mallory@example.com");
    let r = super::run_output(cmd.current_dir(&inner).args(["validate"]).output().unwrap());
    assert!(
        r.stderr.contains("lies inside the store at") && r.stderr.contains("--repo"),
        "{}",
        r.stderr
    );
    // From the outer store's folder, nothing to say.
    let r = s.chg("alice@example.com", &["validate"]).ok();
    assert!(!r.stderr.contains("lies inside"), "{}", r.stderr);
}

#[test]
fn a_step_dated_in_the_future_does_not_push_its_deadlines_out_of_reach() {
    // An emergency implemented with CHG_NOW in 2106: its approvals would never be overdue.
    let mut s = Store::new();
    let id = s.new_change(&["--emergency", "--priority", "critical", "--risk", "high"]);
    s.at("2106-01-01T00:00:00Z");
    s.chg("mallory@example.com", &["implement", &id]).ok();
    s.at(AT);
    let (code, rules, out) = gate_rules(&s, &id, AT);
    assert_eq!(code, 1, "{out}");
    assert_eq!(rules[0], "time-order", "{out}");
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(
        r.stdout.contains("implementation.started_at") && r.stdout.contains(": time-order: "),
        "{}",
        r.stdout
    );
    let found = exceptions(&s);
    assert!(
        found
            .iter()
            .any(|(rule, change, _)| rule == "time-order" && change == &id),
        "{found:?}"
    );
}

#[test]
fn an_approved_proposal_applied_by_hand_is_not_an_apply() {
    // Every role approved it, but the commit is not its implement step (no implementer, no
    // schedule checked): the policy it writes is unauthorized until chg applies it.
    let (mut s, id) = governed();
    let proposal = propose(&s, add_to_change_managers("carol@example.com"));
    approve_all(&s, &proposal);
    // Scheduled, and committed inside its window: chg's own apply would be allowed here.
    s.schedule(&proposal, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at(AT);
    let before = exceptions(&s);
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, add_to_change_managers("carol@example.com")(text)).unwrap();
    mallory_commit_all(
        &s,
        &format!(
            "{proposal}: implement\n\nChg-Id: {proposal}\nChg-Action: implement\nChg-Actor: mallory@example.com\nChg-From: approved\nChg-To: implementing\n"
        ),
    );
    assert_policy_caught(&s, &id, &before);
}

#[test]
fn planted_caches_fool_no_fresh_clone_and_no_full_audit() {
    // Whoever can write .git/ can plant cache entries (README: authoritative checks run in
    // fresh clones). Planted here: the audit index claims it has judged the forgery already.
    let (s, id) = approved();
    let before = exceptions(&s);
    forge(&s, &id, "approved", |t| {
        t.replace("status: approved", "status: implementing")
    });
    let dir = std::fs::read_dir(s.root().join(".git/chg/audit"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let meta = dir.join("meta.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let json = text.trim_end().rsplit_once('\n').unwrap().0;
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["tip"] = serde_json::Value::String(s.git(&["rev-parse", "HEAD"]).trim().to_owned());
    let json = serde_json::to_string(&v).unwrap();
    let sum = chg::text::sha256_hex(json.as_bytes());
    std::fs::write(&meta, format!("{json}\n{sum}\n")).unwrap();
    // The clone with the planted index is fooled (that is what planting means)...
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        r.stdout.lines().all(|l| !l.contains("manual-status")),
        "{}",
        r.stdout
    );
    // ...a full audit and a fresh clone are not.
    let r = s.chg("alice@example.com", &["audit", "--full"]).code(1);
    assert!(r.stdout.contains("manual-status"), "{}", r.stdout);
    let fresh = fresh_clone(&s);
    let found = exceptions(&fresh);
    assert!(
        found.iter().any(|(rule, change, _)| rule == "manual-status"
            && change == &id
            && !before.iter().any(|b| b.0 == *rule)),
        "{found:?}"
    );
    let (code, rules, out) = gate_rules(&fresh, &id, AT);
    assert_eq!(code, 1, "{out}");
    assert_eq!(rules[0], "unverified-history", "{out}");
}

/// Runs git as mallory in `s`, asserting success.
fn mallory_git(s: &Store, args: &[&str]) {
    let mut cmd = s.cmd(Path::new("git"), "mallory@example.com");
    let o = cmd.args(args).output().unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_merge_that_takes_an_older_version_does_not_undo_a_withdrawal_or_a_cancellation() {
    // Second attacker session, H1: `git merge --no-commit side; git checkout side --
    // changes` took the version from before cm withdrew, and the gate opened.
    for (undone, args) in [
        ("withdrawn", vec!["withdraw", "--comment", "not yet"]),
        ("cancel", vec!["cancel", "--reason", "superseded"]),
    ] {
        let (s, id) = approved();
        s.git(&["branch", "side"]);
        let mut step = vec![args[0], id.as_str()];
        step.extend(&args[1..]);
        s.chg("cm@example.com", &step).ok();
        let before = exceptions(&s);
        mallory_git(&s, &["checkout", "-q", "side"]);
        mallory_git(&s, &["commit", "-q", "--allow-empty", "-m", "chore"]);
        mallory_git(&s, &["checkout", "-q", "main"]);
        mallory_git(&s, &["merge", "-q", "--no-commit", "side"]);
        mallory_git(&s, &["checkout", "side", "--", "changes"]);
        mallory_git(&s, &["commit", "-qm", "Merge branch side"]);
        assert!(!s.read(&id).contains(undone), "{undone}: {}", s.read(&id));
        assert_caught(&s, &Caught::history(&id, "manual-status"), &before);
    }
}

#[test]
fn a_merge_that_deletes_a_change_is_reported_and_keeps_it_in_the_population() {
    // H1b: a rejected change deleted inside a merge left no trace.
    let s = Store::new();
    s.git(&["branch", "side"]);
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["reject", &id, "--comment", "no"])
        .ok();
    mallory_git(&s, &["checkout", "-q", "side"]);
    mallory_git(&s, &["commit", "-q", "--allow-empty", "-m", "chore"]);
    mallory_git(&s, &["checkout", "-q", "main"]);
    mallory_git(&s, &["merge", "-q", "--no-commit", "side"]);
    mallory_git(&s, &["rm", "-q", s.file(&id).to_str().unwrap()]);
    mallory_git(&s, &["commit", "-qm", "Merge branch side"]);
    let found = exceptions(&s);
    assert!(
        found
            .iter()
            .any(|(rule, change, _)| rule == "manual-delete" && *change == id),
        "{found:?}"
    );
    let pack = s.export_2025();
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    assert!(population.contains(&id), "{population}");
}

#[test]
fn a_policy_slipped_in_and_reverted_exempts_no_change_from_the_questionnaire() {
    // H2: a change filed by hand under a slipped-in policy without `risk`, then the policy
    // reverted: the change kept the older rules, and cm could approve it unanswered.
    let (s, _) = governed();
    let questions = "risk:\n  questions:\n    - {id: customer_facing, ask: \"Customers notice?\", weight: 3}\n  levels: {medium: 3, high: 6, critical: 9}\n";
    let p = propose(&s, |t| format!("{t}{questions}"));
    approve_all(&s, &p);
    s.schedule(&p, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    let mut s = s;
    s.at(AT);
    s.chg("alice@example.com", &["policy", "apply", &p]).ok();
    let before = exceptions(&s);
    // Mallory slips in the policy without the questionnaire, files a change by hand under
    // it, and reverts the policy.
    let policy = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace(questions, "")).unwrap();
    mallory_commit_all(&s, "tidy the policy");
    let slipped = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let id = "CHG-2025-099";
    let file = s.root().join(format!("changes/2025/03/{id}.yaml"));
    std::fs::write(
        &file,
        format!("id: {id}\ntitle: Open the database port\ndescription: d\nbusiness_justification: j\nrequester: mallory@example.com\nrequest_date: {AT}\nchange_type: feature\nchange_model: normal\npriority: low\nrisk_level: low\naffected_systems: [db]\nimplementation_plan: p\nrollback_plan: r\nstatus: pending_approval\n"),
    )
    .unwrap();
    mallory_git(&s, &["add", "changes"]);
    mallory_commit(&s, "file a change");
    mallory_git(&s, &["revert", "--no-edit", &slipped]);
    let r = s.chg("cm@example.com", &["approve", id]).code(1);
    assert!(
        r.stderr.contains("risk questionnaire is not answered"),
        "{}",
        r.stderr
    );
    let found = exceptions(&s);
    assert!(
        found
            .iter()
            .any(|(rule, change, _)| rule == "risk" && change == id)
            && found.len() > before.len(),
        "{found:?}"
    );
    let (code, rules, out) = gate_rules(&s, id, AT);
    assert_eq!(code, 1, "{out}");
    assert!(rules.iter().any(|r| r == "risk"), "{out}");
}

#[test]
fn a_key_listed_for_an_email_in_another_case_is_not_a_role_members() {
    // H3: role members matched ignoring case, principals exactly: a key listed for
    // CM@example.com let mallory approve as change-manager.
    let (s, id) = {
        let s = Store::new();
        let id = s.new_change(&["--priority", "low"]);
        (s, id)
    };
    let (mallory, cm) = (s.keygen("mallory"), s.keygen("cm"));
    s.enable_signing(
        &[("cm@example.com", &cm), ("CM@example.com", &mallory)],
        &[],
    );
    let before = s.snapshot();
    let r = s
        .signed("CM@example.com", &mallory, &["approve", &id])
        .code(1);
    assert!(r.stderr.contains("holds none of the roles"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    // The same email in the role's own spelling signs as before.
    s.signed("cm@example.com", &cm, &["approve", &id]).ok();
}

#[test]
fn a_late_emergency_approval_backdated_on_a_branch_or_as_a_replay_is_time_order() {
    // Second attacker session on the evidence: (5) approvals made on a branch from the
    // implement commit, dated into the deadline, merged days later; (6) a backdated approval
    // whose commit claims to be a `chg sync` replay (Chg-Synced-From naming a commit the
    // line holds).
    for how in ["branch", "replay", "replay of nothing"] {
        let mut s = Store::new();
        let id = s.new_change(&["--emergency", "--test-plan", "replay"]);
        s.chg("bob@example.com", &["implement", &id]).ok();
        let implemented = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
        s.at("2025-03-14T10:00:00Z");
        s.new_change(&["--title", "Days later"]);
        let tip = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
        if how == "branch" {
            s.git(&["checkout", "-q", "-b", "late", &implemented]);
        }
        s.at("2025-03-10T11:00:00Z");
        s.chg("sec-lead@example.com", &["approve", &id]).ok();
        if how == "branch" {
            s.git(&["checkout", "-q", "main"]);
            s.at("2025-03-14T11:00:00Z");
            s.git(&["merge", "-q", "--no-ff", "-m", "Merge late", "late"]);
        } else {
            // Naming a commit the line holds, or one that never existed (then the step
            // counts from when it entered the line, past its deadline).
            let named = if how == "replay" {
                tip.clone()
            } else {
                "feedfacefeedfacefeedfacefeedfacefeedface".to_owned()
            };
            let message = format!(
                "{}\nChg-Synced-From: {named}\n",
                s.git(&["log", "-1", "--format=%B"]).trim_end()
            );
            mallory_git(&s, &["commit", "-q", "--amend", "-m", &message]);
        }
        let found = exceptions(&s);
        let want = if how == "replay of nothing" {
            "emergency-approval-late"
        } else {
            "time-order"
        };
        assert!(
            found
                .iter()
                .any(|(rule, change, _)| rule == want && *change == id),
            "{how}: {found:?}"
        );
    }
}

#[test]
fn an_approver_implementing_on_a_branch_with_a_loosened_policy_is_caught_at_the_merge() {
    // Second attacker session on the evidence (4): the branch loosens the policy, cm
    // implements what cm approved, the branch restores the policy, the merge brings it in.
    let s = Store::new();
    s.edit_policy("forbid approvers implementing", |t| {
        t.replace(
            "segregation_of_duties: true",
            "segregation_of_duties: {approver_implements: false}",
        )
    });
    let id = s.new_change(&["--priority", "low"]);
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-10T09:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    s.git(&["checkout", "-q", "-b", "side"]);
    s.edit_policy("loosen", |t| {
        t.replace(
            "segregation_of_duties: {approver_implements: false}",
            "segregation_of_duties: true",
        )
    });
    s.chg("cm@example.com", &["implement", &id]).ok();
    s.edit_policy("restore", |t| {
        t.replace(
            "segregation_of_duties: true",
            "segregation_of_duties: {approver_implements: false}",
        )
    });
    s.git(&["checkout", "-q", "main"]);
    s.git(&["merge", "-q", "--no-ff", "-m", "Merge side", "side"]);
    let found = exceptions(&s);
    assert!(
        found
            .iter()
            .any(|(rule, change, _)| rule == "segregation-of-duties" && *change == id),
        "{found:?}"
    );
    let pack = s.export_2025();
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    let row = population.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("\"fail: brought by a merge"), "{row}");
}
