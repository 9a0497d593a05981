//! The evidence pack as an auditor tests it (issue 25): records judged by the rules of
//! their day, a complete population, a pack complete on its own and signed.

use super::Store;

/// Emergency and normal changes approved by em in October under a signed policy; in
/// November an applied policy change retires em (role and key).
fn october() -> (Store, String, String) {
    let mut s = Store::new();
    let (em, cm, lead) = (s.keygen("em"), s.keygen("cm"), s.keygen("lead"));
    s.enable_signing(
        &[
            ("em@example.com", &em),
            ("cm@example.com", &cm),
            ("sec-lead@example.com", &lead),
        ],
        &[],
    );
    s.at("2025-10-06T09:00:00Z");
    let normal = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &normal]).ok();
    s.signed("cm@example.com", &cm, &["approve", &normal]).ok();
    s.schedule(&normal, "2025-10-07T09:00:00Z", "2025-10-07T11:00:00Z")
        .ok();
    s.at("2025-10-07T09:30:00Z");
    s.chg("bob@example.com", &["implement", &normal]).ok();
    s.chg(
        "bob@example.com",
        &["close", &normal, "--outcome", "successful"],
    )
    .ok();
    let emergency = s.new_change(&["--emergency", "--test-plan", "replay"]);
    s.chg("bob@example.com", &["implement", &emergency]).ok();
    s.at("2025-10-07T12:00:00Z");
    s.signed("sec-lead@example.com", &lead, &["approve", &emergency])
        .ok();
    s.signed("em@example.com", &em, &["approve", &emergency])
        .ok();
    s.chg(
        "bob@example.com",
        &[
            "close",
            &emergency,
            "--outcome",
            "successful",
            "--review",
            "fine",
        ],
    )
    .ok();
    (s, normal, emergency)
}

fn november(s: &mut Store) {
    // November: em leaves; her role goes to carol and her key is removed.
    s.at("2025-11-03T09:00:00Z");
    std::fs::write(
        s.root().join("policy/allowed_signers"),
        std::fs::read_to_string(s.root().join("policy/allowed_signers"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("em@"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    s.edit_policy("em leaves", |t| {
        t.replace("[em@example.com]", "[carol@example.com]")
    });
}

fn export(s: &Store, out: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = s.dir.path().join(out);
    let mut all = vec!["audit", "export", "--out", dir.to_str().unwrap()];
    all.extend(args);
    s.chg("alice@example.com", &all).ok();
    dir
}

#[test]
fn october_records_are_judged_by_octobers_policy_in_a_december_pack() {
    let (mut s, normal, emergency) = october();
    s.at("2025-10-31T18:00:00Z");
    let on_time = export(&s, "october", &["--period", "2025-10"]);
    november(&mut s);
    s.at("2025-12-15T09:00:00Z");
    let pack = export(&s, "december", &["--period", "2025-10"]);
    // The same pack, but for when and from which HEAD it was made.
    let files = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_to_string(dir.join("SHA256SUMS"))
            .unwrap()
            .lines()
            .map(|l| l.split_once("  ").unwrap().1.to_owned())
            .filter(|n| n != "manifest.json")
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&on_time), files(&pack));
    for name in files(&pack) {
        assert_eq!(
            std::fs::read_to_string(on_time.join(&name)).unwrap(),
            std::fs::read_to_string(pack.join(&name)).unwrap(),
            "{name}"
        );
    }
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    for id in [&normal, &emergency] {
        let row = population
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap();
        assert!(!row.contains("fail"), "{row}");
        assert!(!row.contains("INVALID"), "{row}");
        assert!(row.contains("signed SHA256:"), "{row}");
    }
    let exceptions = std::fs::read_to_string(pack.join("exceptions.csv")).unwrap();
    assert!(!exceptions.contains("exception,"), "{exceptions}");
    let controls = std::fs::read_to_string(pack.join("controls.md")).unwrap();
    assert!(
        controls.contains("Population rows whose segregation_of_duties column fails: 0 of 2"),
        "{controls}"
    );
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn a_change_deleted_by_hand_stays_in_the_population_of_its_period() {
    let mut s = Store::new();
    s.at("2025-10-06T09:00:00Z");
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    s.chg("cm@example.com", &["approve", &id]).ok();
    s.at("2025-11-03T09:00:00Z");
    std::fs::remove_file(s.file(&id)).unwrap();
    s.git(&["commit", "-qam", "tidy up"]);
    let deleter = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
    s.at("2025-12-15T09:00:00Z");
    let pack = export(&s, "pack", &["--period", "2025-10"]);
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    let row = population
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{id} left the population:\n{population}"));
    assert!(row.ends_with(&deleter), "{row}");
    let page = std::fs::read_to_string(pack.join(format!("changes/{id}.md"))).unwrap();
    assert!(
        page.contains(&format!("**Deleted** by commit `{deleter}`")),
        "{page}"
    );
    // Its exception is in the pack of the period it was deleted in.
    let november = export(&s, "november", &["--period", "2025-11"]);
    let exceptions = std::fs::read_to_string(november.join("exceptions.csv")).unwrap();
    assert!(exceptions.contains("manual-delete"), "{exceptions}");
}

#[test]
fn a_shallow_clone_exports_no_pack_unless_marked_partial() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    let clone = s.dir.path().join("shallow");
    let url = format!("file://{}", s.root().display());
    let ok = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&clone)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let run = |args: &[&str]| {
        let mut cmd = s.cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "alice@example.com",
        );
        super::run_output(cmd.current_dir(&clone).args(args).output().unwrap())
    };
    let r = run(&["audit", "export", "--period", "2025", "--out", "pack"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("shallow") && r.stderr.contains("--unshallow"),
        "{}",
        r.stderr
    );
    assert!(!clone.join("pack").exists());
    let r = run(&[
        "audit",
        "export",
        "--period",
        "2025",
        "--out",
        "pack",
        "--allow-partial",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let manifest = std::fs::read_to_string(clone.join("pack/manifest.json")).unwrap();
    assert!(manifest.contains("\"partial\": true"), "{manifest}");
    assert!(clone.join("pack/PARTIAL").exists());
    let page = std::fs::read_to_string(clone.join(format!("pack/changes/{id}.md"))).unwrap();
    assert!(page.starts_with("> **Partial**"), "{page}");
}

#[test]
fn a_signed_pack_verifies_with_plain_ssh_keygen_and_fails_once_a_row_is_removed() {
    let s = Store::new();
    let id = s.new_change(&[]);
    s.chg("em@example.com", &["approve", &id]).ok();
    let key = s.keygen("alice");
    let out = s.dir.path().join("pack");
    let r = s
        .chg(
            "alice@example.com",
            &[
                "--signing-key",
                key.to_str().unwrap(),
                "audit",
                "export",
                "--period",
                "2025",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .ok();
    assert!(
        r.stderr
            .contains("signed manifest.json as alice@example.com"),
        "{}",
        r.stderr
    );
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    for field in [
        "\"branch\": \"main\"",
        "\"root_commits\"",
        "\"period_commits\"",
        "\"policy_versions\"",
        "\"signer\"",
    ] {
        assert!(manifest.contains(field), "{field}: {manifest}");
    }
    let allowed = s.dir.path().join("allowed");
    std::fs::write(&allowed, format!("alice@example.com {}\n", s.public(&key))).unwrap();
    let verify = |manifest: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-n",
                "chg-evidence",
                "-I",
                "alice@example.com",
                "-f",
            ])
            .arg(&allowed)
            .arg("-s")
            .arg(out.join("manifest.json.sig"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(manifest).unwrap();
        child.wait().unwrap().success()
    };
    assert!(verify(manifest.as_bytes()));
    // One row removed and the sums recomputed: the manifest no longer matches its signature.
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    let cut: String = population
        .lines()
        .take(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let old = super::sha256_hex(population.as_bytes());
    let new = super::sha256_hex(cut.as_bytes());
    let forged = manifest.replace(&old, &new);
    assert_ne!(forged, manifest);
    assert!(!verify(forged.as_bytes()));
    // The pack's own policy files are there to test roles and signatures from.
    assert!(
        std::fs::read_dir(out.join("policy-versions"))
            .unwrap()
            .count()
            >= 1
    );
}

#[test]
fn approvals_backdated_into_an_emergencys_deadline_are_exceptions() {
    // Issue 25, point 4: approvals given three days late with CHG_NOW set back into the
    // 24-hour window passed; their commits follow commits made days later.
    let mut s = Store::new();
    let id = s.new_change(&["--emergency", "--test-plan", "replay"]);
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.at("2025-03-13T10:00:00Z");
    s.new_change(&["--title", "Something else, three days on"]);
    // Three days late, dated an hour after the implementation (the commit's own dates too).
    s.at("2025-03-10T11:00:00Z");
    s.chg("sec-lead@example.com", &["approve", &id]).ok();
    // The first is dated before the commit it follows: nothing more is approved on a file
    // whose recorded times history contradicts.
    let second = s.chg("em@example.com", &["approve", &id]).code(1);
    assert!(
        second.stderr.contains("history does not verify") && second.stderr.contains("(time-order)"),
        "{}",
        second.stderr
    );
    let found = s.exceptions();
    let backdated: Vec<_> = found
        .iter()
        .filter(|(rule, change, _)| rule == "time-order" && *change == id)
        .collect();
    assert!(!backdated.is_empty(), "{found:?}");
    s.at("2025-03-13T11:00:00Z");
    let gate = s.chg("bob@example.com", &["gate", &id]).code(1);
    // Its first break: the approval counts from when it entered history, past the
    // deadline (and its dating is time-order besides).
    assert!(
        gate.stdout.contains("unverified-history")
            && gate.stdout.contains("(emergency-approval-late)"),
        "{}",
        gate.stdout
    );
    let r = s.chg("alice@example.com", &["audit"]).code(1);
    assert!(
        r.stdout.contains(
            "approvals[0].at is dated 2025-03-10T11:00:00Z, 2d 23h before the commit it follows"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn a_report_made_after_an_approver_retired_still_counts_her_approvals() {
    let (mut s, normal, _) = october();
    let before = s
        .chg(
            "alice@example.com",
            &["report", "--period", "2025-10", "--json"],
        )
        .ok()
        .stdout;
    november(&mut s);
    s.at("2025-12-15T09:00:00Z");
    let after = s
        .chg(
            "alice@example.com",
            &["report", "--period", "2025-10", "--json"],
        )
        .ok()
        .stdout;
    let approval = |json: &str| {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["approval_time"].clone()
    };
    assert_eq!(approval(&before), approval(&after), "{normal}: {after}");
    let medium = approval(&after)
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "medium")
        .unwrap()["count"]
        .clone();
    assert_eq!(medium, 1, "{after}");
}
