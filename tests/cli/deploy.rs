//! `chg deploy` and `chg audit reconcile` (issue 25, point 3): a deployment is recorded on a
//! change only while its gate is open, signed where the policy says, audited like every
//! step; a CI/CD system's deployments reconcile to those records or are exceptions.

use std::path::{Path, PathBuf};

use super::{Store, assert_unchanged};

/// A commit id no repository here has: the deployed code lives elsewhere.
const ELSEWHERE: &str = "0123456789abcdef0123456789abcdef01234567";

/// A medium change approved by em and cm, scheduled 2025-03-11 09:00 to 11:00 (the clock
/// still at NOW, the day before).
fn approved_change(s: &Store) -> String {
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    id
}

fn deploy(s: &Store, id: &str, commit: &str, env: &str) -> super::Run {
    s.chg(
        "bob@example.com",
        &[
            "deploy",
            id,
            "--commit",
            commit,
            "--environment",
            env,
            "--run",
            "https://ci.example.com/runs/7",
        ],
    )
}

#[test]
fn a_deployment_is_recorded_only_while_the_gate_is_open_and_is_shown() {
    let mut s = Store::new();
    let id = approved_change(&s);
    // The day before its window: the gate is closed; nothing changes.
    let before = s.snapshot();
    let r = deploy(&s, &id, ELSEWHERE, "production").code(1);
    assert!(
        r.stderr.contains("not cleared to deploy") && r.stderr.contains("outside the schedule"),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
    s.at("2025-03-11T09:30:00Z");
    // A short id this repository does not know, and a name with a space: bad input.
    deploy(&s, &id, "0123456", "production").code(2);
    deploy(&s, &id, ELSEWHERE, "prod uction").code(2);
    assert_unchanged(&s, &before);
    // Inside the window, approved: recorded, the status and the approvals stay. A
    // revision this repository knows is recorded in full.
    let head = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let r = deploy(&s, &id, "HEAD", "production").ok();
    assert!(r.stdout.contains("deploy, approved"), "{}", r.stdout);
    let text = s.read(&id);
    assert!(
        text.contains(&format!(
            "deployments:\n- commit: {head}\n  environment: production\n  run: https://ci.example.com/runs/7\n  at: 2025-03-11T09:30:00Z\n  by: bob@example.com\n"
        )),
        "{text}"
    );
    assert!(text.contains("status: approved"), "{text}");
    let msg = s.git(&["log", "-1", "--format=%B"]);
    assert!(
        msg.contains("Chg-Action: deploy\n")
            && msg.contains("Chg-From: approved\nChg-To: approved\n")
            && msg.contains(&format!("Deployed {head} to production")),
        "{msg}"
    );
    // While implementing, inside the window: open too.
    s.at("2025-03-11T10:00:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
    deploy(&s, &id, ELSEWHERE, "staging").ok();
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains(&format!(
            "deployments:\n  production at 2025-03-11 09:30 by bob@example.com\n    commit: {head}\n    run: https://ci.example.com/runs/7\n  staging at 2025-03-11 10:00 by bob@example.com\n    commit: {ELSEWHERE}\n"
        )),
        "{show}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &s.chg("alice@example.com", &["show", &id, "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(json["deployments"][1]["commit"], ELSEWHERE);
    assert_eq!(json["deployments"][1]["environment"], "staging");
    let log = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert!(
        log.contains(&format!("deploy production {}", &head[..8])),
        "{log}"
    );
    // The schema accepts the file as chg wrote it.
    let schema: serde_json::Value =
        serde_json::from_str(&s.chg("alice@example.com", &["schema"]).ok().stdout).unwrap();
    let doc = serde_json::to_value(chg::decode::decode_str("c.yaml", &s.read(&id)).change).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = doc.clone();
    bad["deployments"][0]["commit"] = "0123456".into();
    assert!(!v.is_valid(&bad));
    // Audited like every step; closed, the gate shuts.
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    let before = s.snapshot();
    deploy(&s, &id, ELSEWHERE, "production").code(1);
    assert_unchanged(&s, &before);
    assert!(s.exceptions().is_empty(), "{:?}", s.exceptions());
    s.chg("alice@example.com", &["validate"]).ok();
}

#[test]
fn a_signed_deployment_verifies_and_an_unsigned_one_is_refused_where_required() {
    let mut s = Store::new();
    let (em, cm, bob) = (s.keygen("em"), s.keygen("cm"), s.keygen("bob"));
    s.enable_signing(
        &[
            ("em@example.com", &em),
            ("cm@example.com", &cm),
            ("bob@example.com", &bob),
        ],
        &["deploy"],
    );
    let id = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    s.signed("cm@example.com", &cm, &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    let before = s.snapshot();
    let r = deploy(&s, &id, ELSEWHERE, "production").code(2);
    assert!(r.stderr.contains("user.signingkey"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    let args = [
        "deploy",
        &id,
        "--commit",
        ELSEWHERE,
        "--environment",
        "production",
    ];
    s.signed("bob@example.com", &bob, &args).ok();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 3, "{text}");
    s.chg("alice@example.com", &["validate", &id]).ok();
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    assert!(
        show.contains("deploy by bob@example.com: signed SHA256:"),
        "{show}"
    );
    assert!(s.exceptions().is_empty(), "{:?}", s.exceptions());
    // The signature names the environment: moved to another one, it no longer verifies.
    std::fs::write(
        s.file(&id),
        text.replace("environment: production", "environment: staging"),
    )
    .unwrap();
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(r.stdout.contains(": signature: "), "{}", r.stdout);
}

#[test]
fn a_deployment_written_by_hand_or_while_the_gate_was_closed_is_an_exception() {
    let s = Store::new();
    let id = approved_change(&s);
    // Written by hand, without trailers.
    s.rewrite(&id, |t| {
        format!("{t}deployments:\n- commit: {ELSEWHERE}\n  environment: production\n  at: 2025-03-10T10:00:00Z\n  by: bob@example.com\n")
    });
    let hand = s.commit_by_hand("bob@example.com", super::NOW, "record the deploy");
    let found = s.exceptions();
    assert_eq!(
        found,
        [("manual-deployment".to_owned(), id.clone(), hand)],
        "{found:?}"
    );
    // Reconciliation does not believe it either: the change's history does not verify.
    let file = write(
        &s,
        "deployed.csv",
        &format!("commit,environment,time\n{ELSEWHERE},production,2025-03-10T10:00:00Z\n"),
    );
    let r = reconcile(&s, &file, &[]).code(1);
    assert!(
        r.stdout.contains("unreconciled-deployment") && r.stderr.contains(&id),
        "{}{}",
        r.stdout,
        r.stderr
    );
    // With chg's trailers, a day before the window opened: the gate was closed.
    let other = approved_change(&s);
    s.rewrite(&other, |t| {
        format!("{t}deployments:\n- commit: {ELSEWHERE}\n  environment: production\n  at: 2025-03-10T10:00:00Z\n  by: bob@example.com\n")
    });
    s.forge(
        &other,
        "deploy",
        "bob@example.com",
        None,
        ("approved", "approved"),
        super::NOW,
    );
    let rules: Vec<(String, String)> = s.exceptions().into_iter().map(|(r, c, _)| (r, c)).collect();
    assert!(
        rules.contains(&("deployment-gate".to_owned(), other.clone())),
        "{rules:?}"
    );
}

/// A store with one change that recorded ELSEWHERE to production at 09:30 on 2025-03-11.
fn recorded() -> (Store, String) {
    let mut s = Store::new();
    let id = approved_change(&s);
    s.at("2025-03-11T09:30:00Z");
    deploy(&s, &id, ELSEWHERE, "production").ok();
    (s, id)
}

fn write(s: &Store, name: &str, text: &str) -> PathBuf {
    let p = s.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn reconcile(s: &Store, file: &Path, extra: &[&str]) -> super::Run {
    let mut args = vec!["audit", "reconcile", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.chg("alice@example.com", &args)
}

#[test]
fn reconcile_names_every_deployment_no_change_records() {
    let (s, id) = recorded();
    // A short id of the recorded commit, inside the window, extra columns: reconciled.
    let good = write(
        &s,
        "good.csv",
        "pipeline,commit,environment,time\nweb,0123456,Production,2025-03-11T09:29:00Z\n",
    );
    let r = reconcile(&s, &good, &[]).ok();
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let json = write(
        &s,
        "good.json",
        &format!(
            "[\n  {{\"commit\": \"{ELSEWHERE}\", \"environment\": \"production\", \"time\": \"2025-03-11T10:00:00Z\"}}\n]\n"
        ),
    );
    let r = reconcile(&s, &json, &["--format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["deployments"][0]["change"], id.as_str());
    // Another commit, the recorded one to another environment, and the recorded one
    // outside the change's window: three exceptions, each named.
    let bad = write(
        &s,
        "deploys.csv",
        &format!(
            "commit,environment,time\n{ELSEWHERE},production,2025-03-11T09:31:00Z\nfeedfacefeedface,production,2025-03-11T09:40:00Z\n{ELSEWHERE},staging,2025-03-11T09:40:00Z\n{ELSEWHERE},production,2025-03-12T09:40:00Z\n"
        ),
    );
    let r = reconcile(&s, &bad, &[]).code(1);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(
        lines[0].contains("unreconciled-deployment")
            && lines[0]
                .contains("no change records the deployment of feedfacefeedface to production"),
        "{}",
        r.stdout
    );
    assert!(lines[1].contains("to staging"), "{}", r.stdout);
    assert!(
        lines[2].starts_with(&id)
            && lines[2].contains("its gate was not open at 2025-03-12T09:40:00Z"),
        "{}",
        r.stdout
    );
    // A malformed file: exit 2, at its line.
    let broken = write(
        &s,
        "broken.csv",
        "commit,environment,time\n0123456,production,2025-03-11T09:29:00Z\n0123456,production,yesterday\n",
    );
    let r = reconcile(&s, &broken, &[]).code(2);
    assert!(r.stderr.contains("broken.csv:3:1"), "{}", r.stderr);
    let r = reconcile(&s, &write(&s, "no.json", "[{\"commit\": 1}]"), &[]).code(2);
    assert!(r.stderr.contains("no.json:1:1"), "{}", r.stderr);
}

#[test]
fn the_evidence_pack_carries_the_reconciliation() {
    let (s, id) = recorded();
    let file = write(
        &s,
        "deploys.csv",
        &format!(
            "commit,environment,time\n{ELSEWHERE},production,2025-03-11T09:31:00Z\nfeedfacefeedface,production,2025-03-11T09:40:00Z\n"
        ),
    );
    let out = s.dir.path().join("pack");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "audit",
                "export",
                "--period",
                "2025",
                "--out",
                out.to_str().unwrap(),
                "--deployments",
                file.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(r.stdout.contains("1 exception(s)"), "{}", r.stdout);
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(
        read("deployments.csv"),
        format!(
            "commit,environment,time,change,source\n{ELSEWHERE},production,2025-03-11T09:31:00Z,{id},{f}:2\nfeedfacefeedface,production,2025-03-11T09:40:00Z,unreconciled,{f}:3\n",
            f = file.display()
        )
    );
    assert!(
        read("exceptions.csv").contains("exception,unreconciled-deployment,,"),
        "{}",
        read("exceptions.csv")
    );
    let manifest: serde_json::Value = serde_json::from_str(&read("manifest.json")).unwrap();
    assert_eq!(manifest["deployments"]["unreconciled"], 1);
    assert_eq!(manifest["deployments"]["reconciled"], 1);
    assert_eq!(manifest["rows"]["exceptions"], 1);
    assert!(read("SHA256SUMS").contains("  deployments.csv\n"));
}

/// Second attacker session on the evidence: a deployment made long before its record (a
/// window scheduled into the past after the fact, or an emergency filed by hand with its
/// request backdated) reconciles nothing; an export with such a file does not crash.
#[test]
fn a_deployment_recorded_long_after_it_was_made_does_not_reconcile() {
    let mut s = Store::new();
    let id = approved_change(&s);
    // The deployment happened on 1 March, ungated; on the 11th the window is moved over it.
    s.at("2025-03-11T09:30:00Z");
    s.schedule(&id, "2025-03-01T00:00:00Z", "2025-03-12T00:00:00Z")
        .ok();
    deploy(&s, &id, ELSEWHERE, "production").ok();
    let file = write(
        &s,
        "deployed.csv",
        &format!("commit,environment,time\n{ELSEWHERE},production,2025-03-01T03:00:00Z\n"),
    );
    let r = reconcile(&s, &file, &[]).code(1);
    assert!(
        r.stdout
            .contains("not when it was made (2025-03-01T03:00:00Z)"),
        "{}",
        r.stdout
    );
    // The pack for a month with no commit but that deployment: written, not a panic.
    let out = s.dir.path().join("pack");
    let r = s.chg(
        "alice@example.com",
        &[
            "audit",
            "export",
            "--since",
            "2025-02-01",
            "--until",
            "2025-03-02",
            "--deployments",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deployments = std::fs::read_to_string(out.join("deployments.csv")).unwrap();
    assert!(deployments.contains("unreconciled"), "{deployments}");
}

#[test]
fn a_deployments_file_naming_a_column_twice_is_refused() {
    let s = Store::new();
    let file = write(
        &s,
        "twice.csv",
        &format!(
            "commit,environment,time,commit\n{ELSEWHERE},production,2025-03-11T09:00:00Z,feedface\n"
        ),
    );
    let r = reconcile(&s, &file, &[]).code(2);
    assert!(
        r.stderr.contains("names the column commit twice"),
        "{}",
        r.stderr
    );
    // A file that is not there is wrong input too.
    let r = s
        .chg(
            "alice@example.com",
            &["audit", "reconcile", "no-such-file.csv"],
        )
        .code(2);
    assert!(r.stderr.contains("no-such-file.csv"), "{}", r.stderr);
}
