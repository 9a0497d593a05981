//! The library in process, as a server would use it: a `Store` opened per call, who acts and
//! when passed in a `Context`, nothing read from the environment. These tests set no
//! environment variable; the identity and the clock are values.

use chg::audit;
use chg::model::{ChangeRequest, Priority, RiskLevel};
use chg::store::Store as Lib;
use chg::workflow::Step;
use chg::{Context, Error, Identity};
use jiff::Timestamp;

fn at(t: &str) -> Timestamp {
    t.parse().unwrap()
}

fn person(email: &str) -> Identity {
    Identity::new(email.split('@').next().unwrap(), email).unwrap()
}

fn ctx(email: &str, t: &str) -> Context {
    Context::new(person(email), at(t))
}

/// A fresh store in a temporary folder, created by alice.
fn store() -> (tempfile::TempDir, Lib) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Lib::init(
        &ctx("alice@example.com", "2025-03-01T09:00:00Z"),
        dir.path(),
        None,
    )
    .unwrap();
    (dir, store)
}

fn change(title: &str) -> ChangeRequest {
    ChangeRequest {
        title: Some(title.into()),
        description: Some("Replace the expiring certificate".into()),
        business_justification: Some("It expires in 10 days".into()),
        change_type: Some("configuration".into()),
        change_model: Some(chg::model::ChangeModel::Normal),
        priority: Some(Priority::Medium),
        risk_level: Some(RiskLevel::Low),
        affected_systems: vec!["edge-proxy".into()],
        implementation_plan: Some("Upload and reload".into()),
        rollback_plan: Some("Reload the previous one".into()),
        ..ChangeRequest::default()
    }
}

/// `git` with nothing of the caller's environment (no `GIT_DIR`, no global
/// `commit.gpgsign`, no dates), as `who`, at a pinned time.
fn plain_git(cwd: &std::path::Path, who: &str) -> std::process::Command {
    let home = std::env::temp_dir().join("chg-library-test-home");
    let _ = std::fs::create_dir_all(&home);
    let mut cmd = std::process::Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2025-03-10T12:00:00Z")
        .env("GIT_COMMITTER_DATE", "2025-03-10T12:00:00Z")
        .args([
            "-c",
            &format!("user.name={who}"),
            "-c",
            &format!("user.email={who}"),
        ])
        .current_dir(cwd);
    cmd
}

/// Plain git in `cwd`, as mallory (who is in no role).
fn git(cwd: &std::path::Path, args: &[&str]) {
    let o = plain_git(cwd, "mallory@example.com")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn approve() -> Step {
    Step::Approve {
        role: None,
        comment: None,
        conditions: vec![],
    }
}

#[test]
fn every_step_is_authored_by_the_context_at_its_time_and_committed_by_its_committer() {
    let (_dir, store) = store();
    let filed = store
        .create(
            &ctx("alice@example.com", "2025-03-02T10:00:00Z"),
            change("Rotate certificates"),
            false,
        )
        .unwrap();
    let id = filed.change.id.clone().unwrap();
    assert_eq!(filed.waiting_for, ["engineering-manager", "change-manager"]);
    // An approval made through a server: em acts, the server's identity commits.
    let server = person("chg-server@example.com");
    let acting = ctx("em@example.com", "2025-03-02T11:30:00Z")
        .committed_by(server.clone(), at("2025-03-02T11:30:05Z"));
    let o = store.transition(&acting, &id, approve()).unwrap();
    let commit = store.repo().find_commit(o.commit).unwrap();
    assert_eq!(commit.author().email().ok(), Some("em@example.com"));
    assert_eq!(
        commit.author().when().seconds(),
        at("2025-03-02T11:30:00Z").as_second()
    );
    assert_eq!(
        commit.committer().email().ok(),
        Some("chg-server@example.com")
    );
    assert_eq!(
        commit.committer().when().seconds(),
        at("2025-03-02T11:30:05Z").as_second()
    );
    let approval = &o.change.approvals[0];
    assert_eq!(
        (approval.by.as_str(), approval.at),
        ("em@example.com", at("2025-03-02T11:30:00Z"))
    );
    let trailers = chg::trailers::Trailers::parse(commit.message().unwrap());
    assert_eq!(trailers.action(), Some(chg::trailers::Action::Approve));
    assert_eq!(trailers.actor.as_deref(), Some("em@example.com"));
}

#[test]
fn a_refusal_names_its_rule_and_changes_nothing() {
    let (_dir, store) = store();
    let alice = ctx("alice@example.com", "2025-03-02T10:00:00Z");
    let id = store
        .create(&alice, change("Mine"), false)
        .unwrap()
        .change
        .id
        .unwrap();
    let head = store.repo().head().unwrap().target();
    let cases = [
        ("alice@example.com", "segregation-of-duties"),
        ("mallory@example.com", "approval-role"),
    ];
    for (who, rule) in cases {
        match store.transition(&ctx(who, "2025-03-02T11:00:00Z"), &id, approve()) {
            Err(Error::Refused(r)) => assert_eq!(r.rule, rule, "{who}: {r}"),
            other => panic!("{who}: {other:?}"),
        }
        assert_eq!(store.repo().head().unwrap().target(), head);
    }
    let implement = store.transition(
        &ctx("bob@example.com", "2025-03-02T11:00:00Z"),
        &id,
        Step::Implement,
    );
    assert_eq!(
        implement.unwrap_err().rule(),
        Some("implemented-unapproved")
    );
}

#[test]
fn stores_opened_per_thread_serialise_their_steps() {
    // What a server does: each request opens its own Store on its own thread.
    let (dir, store) = store();
    let id = store
        .create(
            &ctx("alice@example.com", "2025-03-02T10:00:00Z"),
            change("Two approvers"),
            false,
        )
        .unwrap()
        .change
        .id
        .unwrap();
    let root = dir.path().to_path_buf();
    let threads: Vec<_> = ["em@example.com", "cm@example.com"]
        .into_iter()
        .map(|who| {
            let (root, id) = (root.clone(), id.clone());
            std::thread::spawn(move || {
                let store =
                    Lib::discover(&root, Some(&root), std::time::Duration::from_secs(20)).unwrap();
                store
                    .transition(&ctx(who, "2025-03-02T12:00:00Z"), &id, approve())
                    .map(|o| o.commit)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let now = store.load(&id).unwrap();
    assert_eq!(now.change().approvals.len(), 2);
    assert_eq!(now.change().status(), chg::model::Status::Approved);
}

#[test]
fn audit_judges_a_history_made_in_process_and_finds_a_hand_made_approval() {
    let (dir, store) = store();
    let id = store
        .create(
            &ctx("alice@example.com", "2025-03-02T10:00:00Z"),
            change("Audited"),
            false,
        )
        .unwrap()
        .change
        .id
        .unwrap();
    store
        .transition(
            &ctx("em@example.com", "2025-03-02T11:00:00Z"),
            &id,
            approve(),
        )
        .unwrap();
    let opts = audit::Options {
        since: None,
        until: None,
        full: true,
        now: at("2025-03-03T00:00:00Z"),
    };
    assert_eq!(audit::run(&store, &opts).unwrap().exceptions(), 0);
    // A second approval written by hand and committed with plain git.
    let loaded = store.load(&id).unwrap();
    let forged = loaded
        .text
        .replace("status: pending_approval", "status: approved");
    std::fs::write(dir.path().join(&loaded.rel), forged).unwrap();
    git(dir.path(), &["commit", "-qam", "approve it"]);
    let report = audit::run(&store, &opts).unwrap();
    let rules: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.level == audit::Level::Exception)
        .map(|f| f.rule.as_str())
        .collect();
    assert_eq!(rules, ["manual-status"], "{:#?}", report.findings);
}

#[test]
fn sync_replays_steps_made_for_two_people_onto_the_remote() {
    let dir = tempfile::tempdir().unwrap();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let o = plain_git(cwd, "t@example.com").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let remote = dir.path().join("remote.git");
    git(
        dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    let one = dir.path().join("one");
    std::fs::create_dir(&one).unwrap();
    git(&one, &["init", "-q", "-b", "main"]);
    let (a, _) = Lib::init(
        &ctx("alice@example.com", "2025-03-01T09:00:00Z"),
        &one,
        None,
    )
    .unwrap();
    let id = a
        .create(
            &ctx("alice@example.com", "2025-03-02T10:00:00Z"),
            change("Synced"),
            false,
        )
        .unwrap()
        .change
        .id
        .unwrap();
    git(&one, &["remote", "add", "origin", remote.to_str().unwrap()]);
    git(&one, &["push", "-q", "origin", "main"]);
    let two = dir.path().join("two");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            two.to_str().unwrap(),
        ],
    );
    let b = Lib::discover(&two, Some(&two), std::time::Duration::from_secs(20)).unwrap();
    a.transition(
        &ctx("em@example.com", "2025-03-02T11:00:00Z"),
        &id,
        approve(),
    )
    .unwrap();
    b.transition(
        &ctx("cm@example.com", "2025-03-02T11:05:00Z"),
        &id,
        approve(),
    )
    .unwrap();
    let sync = |s: &Lib, who: &str| {
        chg::sync::sync(
            s,
            &ctx(who, "2025-03-02T12:00:00Z"),
            &chg::sync::Options::default(),
        )
        .unwrap()
    };
    assert_eq!(sync(&a, "em@example.com").pushed, 1);
    let r = sync(&b, "cm@example.com");
    assert_eq!((r.pulled, r.replayed.len(), r.pushed), (1, 1, 1));
    let merged = b.load(&id).unwrap();
    assert_eq!(merged.change().status(), chg::model::Status::Approved);
    // The replayed step keeps its author and time; the person syncing commits it.
    let head = b.repo().head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.author().email().ok(), Some("cm@example.com"));
    assert_eq!(
        head.author().when().seconds(),
        at("2025-03-02T11:05:00Z").as_second()
    );
    assert_eq!(
        head.committer().when().seconds(),
        at("2025-03-02T12:00:00Z").as_second()
    );
}
