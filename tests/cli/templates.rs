//! Standard changes from a catalogue (SPEC section 11): filed from a template, pre-approved
//! only while they keep what it fixes; self-declared standard changes refused or reported.

use super::{Store, assert_unchanged};

const TLS: &str = "# Routine certificate renewal
description: Replace an expiring TLS certificate with one renewed from the internal CA
business_justification: Certificates expire; renewal is routine and rehearsed
change_type: configuration
priority: low
risk_level: low
implementation_plan: Upload the renewed certificate, reload the proxy, check the new expiry date
rollback_plan: Reload the previous certificate
testing_required: false
variable: [title, affected_systems, test_plan, test_environment]
";

/// A store with the catalogue's one template committed.
fn with_catalogue() -> Store {
    let s = Store::new();
    std::fs::create_dir_all(s.root().join("policy/templates")).unwrap();
    std::fs::write(
        s.root()
            .join("policy/templates/rotate-tls-certificate.yaml"),
        TLS,
    )
    .unwrap();
    s.git(&["add", "policy"]);
    s.git(&["commit", "-qm", "a catalogue"]);
    s
}

fn file_from_template(s: &Store) -> String {
    s.chg(
        "alice@example.com",
        &[
            "new",
            "--template",
            "rotate-tls-certificate",
            "--title",
            "Renew the edge certificate",
            "--system",
            "edge-proxy",
        ],
    )
    .ok_line()
}

#[test]
fn a_standard_change_comes_from_a_template_and_needs_no_approval() {
    let mut s = with_catalogue();
    let list = s.chg("alice@example.com", &["templates"]).ok().stdout;
    assert!(
        list.contains("rotate-tls-certificate") && list.contains("variable: title"),
        "{list}"
    );
    let id = file_from_template(&s);
    let text = s.read(&id);
    assert!(
        text.contains("change_model: standard")
            && text.contains("template: rotate-tls-certificate")
            && text.contains("template_digest: sha256:")
            && text.contains("rollback_plan: Reload the previous certificate"),
        "{text}"
    );
    s.chg("cm@example.com", &["approve", &id]).code(1);
    s.schedule(&id, "2025-03-10T10:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    s.at("2025-03-10T10:30:00Z");
    s.chg("alice@example.com", &["validate"]).ok();
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn self_declared_and_misfiled_standard_changes_are_refused() {
    let s = with_catalogue();
    let before = s.snapshot();
    let r = s.chg(
        "alice@example.com",
        &[super::COMPLETE, &["--standard"]].concat(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--template"), "{}", r.stderr);
    let r = s
        .chg(
            "alice@example.com",
            &["new", "--template", "rotate-tls-certifcate"],
        )
        .code(2);
    assert!(
        r.stderr.contains("did you mean `rotate-tls-certificate`"),
        "{}",
        r.stderr
    );
    // A flag for a fixed field.
    let r = s
        .chg(
            "alice@example.com",
            &[
                "new",
                "--template",
                "rotate-tls-certificate",
                "--title",
                "t",
                "--system",
                "x",
                "--rollback",
                "Hope",
            ],
        )
        .code(2);
    assert!(r.stderr.contains("`rollback_plan`"), "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn every_fixed_field_tampered_by_hand_is_found() {
    let mut s = with_catalogue();
    let id = file_from_template(&s);
    s.schedule(&id, "2025-03-10T10:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    s.at("2025-03-10T10:30:00Z");
    let good = s.read(&id);
    for (from, to) in [
        (
            "description: Replace an expiring",
            "description: Open SSH to the world. Replace an expiring",
        ),
        (
            "business_justification: Certificates",
            "business_justification: Trust me. Certificates",
        ),
        ("change_type: configuration", "change_type: security"),
        ("priority: low", "priority: high"),
        ("risk_level: low", "risk_level: critical"),
        (
            "implementation_plan: Upload",
            "implementation_plan: Also open port 22. Upload",
        ),
        ("rollback_plan: Reload", "rollback_plan: Hope. Reload"),
        (
            "testing_required: false",
            "testing_required: true\ntest_plan: later",
        ),
        ("template: rotate-tls-certificate", "template: open-ssh"),
        ("template_digest: sha256:", "template_digest: sha256:00"),
    ] {
        assert!(good.contains(from), "{from}: {good}");
        std::fs::write(s.file(&id), good.replacen(from, to, 1)).unwrap();
        s.git(&["commit", "-qam", "tamper"]);
        let r = s.chg("alice@example.com", &["validate", &id]).code(1);
        assert!(r.stdout.contains("standard-template"), "{to}: {}", r.stdout);
        let r = s
            .chg(
                "bob@example.com",
                &["gate", &id, "--at", "2025-03-10T10:30:00Z"],
            )
            .code(1);
        assert!(r.stdout.contains("standard-template"), "{to}: {}", r.stdout);
        let before = s.snapshot();
        let r = s.chg("bob@example.com", &["implement", &id]).code(1);
        assert!(
            r.stderr.contains("(standard-template)")
                || r.stderr.contains("conforming standard change"),
            "{to}: {}",
            r.stderr
        );
        assert_unchanged(&s, &before);
        // The audit names the tampering commit with the rule.
        let r = s
            .chg("alice@example.com", &["audit", "--format", "json"])
            .code(1);
        let tamper = s.git(&["rev-parse", "HEAD"]).trim().to_owned();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| { f["rule"] == "standard-template" && f["commit"] == tamper.as_str() }),
            "{to}: {}",
            r.stdout
        );
        std::fs::write(s.file(&id), &good).unwrap();
        s.git(&["commit", "-qam", "restore"]);
    }
    s.chg("bob@example.com", &["implement", &id]).ok();
}

#[test]
fn a_template_changed_later_does_not_change_the_changes_filed_from_it() {
    let mut s = with_catalogue();
    let id = file_from_template(&s);
    // The template's rollback plan is improved afterwards.
    let path = s
        .root()
        .join("policy/templates/rotate-tls-certificate.yaml");
    std::fs::write(
        &path,
        TLS.replace(
            "Reload the previous certificate",
            "Reload the previous certificate and page the on-call",
        ),
    )
    .unwrap();
    s.git(&["commit", "-qam", "a better rollback"]);
    // The change filed earlier is judged by its own version and still conforms...
    s.chg("alice@example.com", &["validate"]).ok();
    s.schedule(&id, "2025-03-10T10:00:00Z", "2025-03-10T12:00:00Z")
        .ok();
    s.at("2025-03-10T10:30:00Z");
    s.chg(
        "bob@example.com",
        &["gate", &id, "--at", "2025-03-10T10:30:00Z"],
    )
    .ok();
    // ...a new one takes the new version.
    let newer = file_from_template(&s);
    assert!(s.read(&newer).contains("page the on-call"));
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg("alice@example.com", &["audit"]).ok();
}

#[test]
fn bad_templates_get_findings_with_places() {
    let s = Store::new();
    std::fs::create_dir_all(s.root().join("policy/templates")).unwrap();
    for (text, want) in [
        (
            format!("{TLS}colour: blue\n"),
            "rotate.yaml:11:1: unknown-key: unknown key `colour`",
        ),
        (
            TLS.replace("variable: [title,", "variable: [titel,"),
            "did you mean `title`",
        ),
        (
            TLS.replace("variable: [title,", "variable: [rollback_plan, title,"),
            "both fixed by the template and variable",
        ),
        (
            TLS.replace("change_type: configuration", "change_type: magic"),
            "rotate.yaml:4:14: standard-template: change_type `magic`",
        ),
        (
            TLS.replace("variable: [title, affected_systems,", "variable: ["),
            "the policy requires `title`",
        ),
    ] {
        std::fs::write(s.root().join("policy/templates/rotate.yaml"), &text).unwrap();
        let r = s.chg("alice@example.com", &["validate"]).code(1);
        assert!(r.stdout.contains(want), "{want}: {}", r.stdout);
    }
}

#[test]
fn a_preapproved_standard_change_is_not_on_the_cab_agenda_and_show_names_its_template() {
    // Issue 24: cab listed pre-approved standard changes as awaiting approval, by nobody.
    let s = with_catalogue();
    let standard = file_from_template(&s);
    let normal = s.new_change(&[]);
    let cab = s
        .chg("alice@example.com", &["cab", "--for", "2025-03-10"])
        .ok()
        .stdout;
    assert!(
        cab.contains(&normal)
            && !cab.contains(&standard)
            && cab.contains(
                "1 change(s) awaiting approval (1 pre-approved standard change(s) not listed)"
            ),
        "{cab}"
    );
    let json = s
        .chg(
            "alice@example.com",
            &["cab", "--for", "2025-03-10", "--json"],
        )
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["preapproved"].as_u64()),
        (Some(1), Some(1))
    );
    let show = s.chg("alice@example.com", &["show", &standard]).ok().stdout;
    assert!(
        show.contains("template:         rotate-tls-certificate (digest sha256:")
            && show.contains("pre-approved (standard change)"),
        "{show}"
    );
}
