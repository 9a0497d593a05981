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
    s.chg("alice@example.com", &["audit"]).ok();
}
