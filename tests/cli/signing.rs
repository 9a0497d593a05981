//! Signed records (SPEC section 9) with real keys made by ssh-keygen: a signed life cycle,
//! every refusal changing nothing, hand-forged records found by validate, gate and audit,
//! signatures surviving a sync replay, and hostile allowed-signers files.

use std::path::{Path, PathBuf};

use super::{Store, assert_unchanged};

impl Store {
    /// A fresh ed25519 key for `who`; returns the private key's path (`.pub` beside it).
    pub(super) fn keygen(&self, who: &str) -> PathBuf {
        let path = self.dir.path().join(format!("key-{who}"));
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        path
    }

    pub(super) fn public(&self, key: &Path) -> String {
        std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Turns signing on for approvals (and `more` actions) with these signers, by a commit.
    pub(super) fn enable_signing(&self, signers: &[(&str, &Path)], more: &[&str]) {
        let lines: String = signers
            .iter()
            .map(|(who, key)| format!("{who} {}\n", self.public(key)))
            .collect();
        std::fs::write(self.root().join("policy/allowed_signers"), lines).unwrap();
        let required = [&["approve", "reject"], more].concat().join(", ");
        self.edit_policy("turn on signed records", |t| {
            format!("{t}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [{required}]\n")
        });
        self.git(&["add", "policy/allowed_signers"]);
        self.git(&["commit", "-qm", "allowed signers"]);
    }

    /// `chg ARGS` as `who`, signing with `key`.
    pub(super) fn signed(&self, who: &str, key: &Path, args: &[&str]) -> super::Run {
        self.git(&["config", "user.signingkey", key.to_str().unwrap()]);
        let r = self.chg(who, args);
        self.git(&["config", "--unset", "user.signingkey"]);
        r
    }
}

/// A store with signed approvals for em and cm, and one medium change approved by both.
fn signed_store() -> (Store, String, PathBuf, PathBuf) {
    let s = Store::new();
    let (em, cm) = (s.keygen("em"), s.keygen("cm"));
    s.enable_signing(&[("em@example.com", &em), ("cm@example.com", &cm)], &[]);
    let id = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    s.signed("cm@example.com", &cm, &["approve", &id]).ok();
    (s, id, em, cm)
}

#[test]
fn a_signed_life_cycle_verifies_everywhere_and_with_plain_ssh_keygen() {
    let (mut s, id, _em, cm) = signed_store();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 2, "{text}");
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    s.chg("bob@example.com", &["implement", &id]).ok();
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);
    let log = s.chg("alice@example.com", &["log", &id]).ok().stdout;
    assert!(log.contains("[signed SHA256:"), "{log}");
    let pack = s.export_2025();
    let population = std::fs::read_to_string(pack.join("population.csv")).unwrap();
    assert!(
        population.lines().next().unwrap().contains(",signatures,"),
        "{population}"
    );
    assert!(
        population.contains("approve change-manager by cm@example.com: signed SHA256:"),
        "{population}"
    );
    let evidence = std::fs::read_to_string(pack.join(format!("changes/{id}.md"))).unwrap();
    assert_eq!(
        evidence.matches("Signature: approve").count(),
        2,
        "{evidence}"
    );
    let show = s.chg("alice@example.com", &["show", &id]).ok().stdout;
    let fingerprint = fingerprint(&cm);
    assert!(show.contains(&format!("signed {fingerprint}")), "{show}");
    // An auditor's check without chg: the statement rebuilt from the file, verified by
    // OpenSSH against the allowed signers committed in the policy.
    let digest = field(&text, "  digest: ");
    let at = text
        .lines()
        .filter(|l| l.starts_with("  at: "))
        .nth(1)
        .unwrap()
        .trim_start_matches("  at: ")
        .to_owned();
    let statement = format!(
        "chg signed record v1\nchange-requested-by: alice@example.com\nchange-requested-at: {}\naction: approve\nrole: change-manager\ndecision: approved\nactor: cm@example.com\nat: {at}\ndigest: {digest}\n",
        field(&text, "request_date: ")
    );
    let sig = text
        .split("-----BEGIN SSH SIGNATURE-----")
        .nth(2)
        .unwrap()
        .split("-----END SSH SIGNATURE-----")
        .next()
        .unwrap();
    let sig: String = sig
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let sig_file = s.dir.path().join("approval.sig");
    std::fs::write(
        &sig_file,
        format!("-----BEGIN SSH SIGNATURE-----\n{sig}\n-----END SSH SIGNATURE-----\n"),
    )
    .unwrap();
    let verify = |statement: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "chg", "-I", "cm@example.com", "-f"])
            .arg(s.root().join("policy/allowed_signers"))
            .arg("-s")
            .arg(&sig_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(statement.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().status.success()
    };
    assert!(verify(&statement), "{statement}");
    assert!(!verify(
        &statement.replace("cm@example.com", "em@example.com")
    ));
}

fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_owned()
}

fn fingerprint(key: &Path) -> String {
    let o = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[test]
fn approvals_without_a_usable_listed_key_are_refused_and_change_nothing() {
    let s = Store::new();
    let (em, cm) = (s.keygen("em"), s.keygen("cm"));
    let stranger = s.keygen("stranger");
    s.enable_signing(&[("em@example.com", &em), ("cm@example.com", &cm)], &[]);
    let id = s.new_change(&[]);
    let before = s.snapshot();
    // No key at all: exit 2, saying what to configure.
    let r = s.chg("em@example.com", &["approve", &id]).code(2);
    assert!(r.stderr.contains("user.signingkey"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    // Another person's key, and a key in no line: exit 1, rule signature.
    for key in [&cm, &stranger] {
        let r = s.signed("em@example.com", key, &["approve", &id]).code(1);
        assert!(r.stderr.contains("do not list"), "{}", r.stderr);
        assert_unchanged(&s, &before);
    }
    // The environment cannot make anyone else: em's key signs only for em.
    let mut cmd = s.cmd(Path::new(env!("CARGO_BIN_EXE_chg")), "cm@example.com");
    s.git(&["config", "user.signingkey", em.to_str().unwrap()]);
    let r = super::run_output(cmd.args(["approve", &id]).output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_unchanged(&s, &before);
}

#[test]
fn forged_records_are_found_by_validate_gate_and_audit() {
    let (mut s, id, em, _cm) = signed_store();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    let good = s.read(&id);
    let sig_of = |text: &str, n: usize| -> String {
        let start = text.match_indices("  signature: |").nth(n).unwrap().0;
        let end = text[start..].find("-----END SSH SIGNATURE-----").unwrap() + start + 27;
        text[start..end].to_owned()
    };
    let (em_sig, cm_sig) = (sig_of(&good, 0), sig_of(&good, 1));
    let forgeries: Vec<(&str, String)> = vec![
        // No signature at all.
        ("missing", good.replace(&format!("\n{cm_sig}"), "")),
        // em's signature under cm's approval.
        ("another person's", good.replace(&cm_sig, &em_sig)),
        // Corrupted: one character of the signature changed.
        ("corrupted", {
            let bad = cm_sig.replacen("AAAA", "AAAB", 1);
            good.replace(&cm_sig, &bad)
        }),
        // Truncated.
        ("truncated", {
            let lines: Vec<&str> = cm_sig.lines().collect();
            let cut = [&lines[..3], &lines[lines.len() - 1..]].concat().join("\n");
            good.replace(&cm_sig, &cut)
        }),
        // Signed over older content: the plan changed and the digests made to match.
        ("older content", {
            let changed = good.replace(
                "Upload the new certificate and reload",
                "Open SSH to the world",
            );
            let new_digest = digest_after_edit(&s, &id, &changed);
            let old_digest = field(&good, "  digest: ");
            changed.replace(&old_digest, &new_digest)
        }),
    ];
    // A signature copied from another change (filed later, so its record differs).
    s.at("2025-03-10T12:00:00Z");
    let other = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &other]).ok();
    let copied = sig_of(&s.read(&other), 0);
    let mut all = forgeries;
    all.push(("from another change", good.replace(&em_sig, &copied)));
    // cm's signed approval turned into a rejection: the signature was for another action.
    let cm_at = good.rfind("- by: cm@example.com").unwrap();
    let mut reused = good.clone();
    reused.replace_range(
        cm_at..,
        &good[cm_at..].replacen("decision: approved", "decision: rejected", 1),
    );
    all.push(("another action", reused));
    s.at("2025-03-11T09:30:00Z");
    for (what, text) in all {
        let exceptions_before = super::attacks::exceptions(&s);
        std::fs::write(s.file(&id), &text).unwrap();
        s.git(&["commit", "-qam", &format!("forge: {what}")]);
        let r = s.chg("alice@example.com", &["validate", &id]).code(1);
        assert!(r.stdout.contains(": signature: "), "{what}: {}", r.stdout);
        let (code, rules, out) = super::attacks::gate_rules(&s, &id, "2025-03-11T09:30:00Z");
        assert_eq!(code, 1, "{what}: {out}");
        assert_eq!(rules[0], "unverified-history", "{what}: {out}");
        let before = s.snapshot();
        let r = s.chg("bob@example.com", &["implement", &id]).code(1);
        // Every forgery is a plain commit: its history does not verify.
        assert!(
            r.stderr.contains("history does not verify") && r.stderr.contains("(manual-approval)"),
            "{what}: {}",
            r.stderr
        );
        assert_unchanged(&s, &before);
        // The audit's new exceptions: this forgery's own, not the earlier ones'.
        let new: Vec<(String, String)> = super::attacks::exceptions(&s)
            .into_iter()
            .filter(|e| !exceptions_before.contains(e))
            .map(|(rule, change, _)| (rule, change))
            .collect();
        let mut want = vec![("manual-approval".to_owned(), id.clone())];
        if what == "older content" {
            want.push(("manual-edit-approved".to_owned(), id.clone()));
        }
        assert_eq!(new, want, "{what}");
        std::fs::write(s.file(&id), &good).unwrap();
        s.git(&["commit", "-qam", "restore"]);
    }
}

/// The material digest of `text` as chg computes it.
fn digest_after_edit(_s: &Store, _id: &str, text: &str) -> String {
    chg::decode::decode_str("change.yaml", text)
        .change
        .material_digest()
}

#[test]
fn a_key_removed_from_the_allowed_signers_no_longer_counts() {
    let (mut s, id, em, cm) = signed_store();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    // cm's key is rolled: removed by a policy change, a new one added.
    let new_cm = s.keygen("cm2");
    let lines = format!(
        "em@example.com {}\ncm@example.com {}\n",
        s.public(&em),
        s.public(&new_cm)
    );
    std::fs::write(s.root().join("policy/allowed_signers"), lines).unwrap();
    s.git(&["commit", "-qam", "roll cm's key"]);
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("do not list"), "{}", r.stdout);
    s.at("2025-03-11T09:30:00Z");
    s.chg("bob@example.com", &["implement", &id]).code(1);
    // The old approval was valid when it was given: audit does not call it forged.
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);
    let _ = cm;
}

#[test]
fn hostile_allowed_signers_files_get_findings_with_places() {
    let s = Store::new();
    let em = s.keygen("em");
    s.enable_signing(&[("em@example.com", &em)], &[]);
    let key = s.public(&em);
    let file = s.root().join("policy/allowed_signers");
    for (text, want) in [
        (
            format!("em@example.com {key}\nthis is not a key\n"),
            "allowed_signers:2:1:",
        ),
        (
            format!("em@example.com cert-authority {key}\n"),
            "cert-authority",
        ),
        (
            format!("em@example.com valid-before=\"2025\" {key}\n"),
            "is not a time",
        ),
        (
            format!("em@example.com frobnicate {key}\n"),
            "allowed_signers:1:1:",
        ),
    ] {
        std::fs::write(&file, &text).unwrap();
        let r = s.chg("alice@example.com", &["validate"]).code(1);
        assert!(r.stdout.contains(want), "{text}: {}", r.stdout);
    }
    // Anyone may sign (requesters hold no role): a signer in no role is fine, unless the
    // email is close to a member's, which is worth a warning (with the look-alike escaped).
    for (who, want) in [
        ("mallory@example.com", None),
        // A colleague at the same domain is not a look-alike of sec1@example.com.
        ("alice@example.com", None),
        ("em@examp1e.com", Some("em@examp1e.com (key SHA256:")),
        (
            "em@ex\u{430}mple.com",
            Some("em@ex\\u{430}mple.com (key SHA256:"),
        ),
    ] {
        std::fs::write(&file, format!("em@example.com {key}\n{who} {key}\n")).unwrap();
        let r = s.chg("alice@example.com", &["validate"]).ok();
        match want {
            None => assert!(!r.stdout.contains("signature"), "{who}: {}", r.stdout),
            Some(w) => assert!(
                r.stdout
                    .contains("allowed_signers:2:1: signature: warning: ")
                    && r.stdout.contains(w)
                    && r.stdout.contains("close to the member em@example.com"),
                "{who}: {}",
                r.stdout
            ),
        }
    }
    // A valid-before in the past: em's key no longer signs.
    std::fs::write(
        &file,
        format!("em@example.com valid-before=\"20200101\" {key}\n"),
    )
    .unwrap();
    s.git(&["commit", "-qam", "expire em"]);
    let id = s.new_change(&[]);
    let r = s.signed("em@example.com", &em, &["approve", &id]).code(1);
    assert!(r.stderr.contains("do not list"), "{}", r.stderr);
    // A missing file stops every command with its place.
    std::fs::remove_file(&file).unwrap();
    s.git(&["commit", "-qam", "drop the signers"]);
    let r = s.chg("alice@example.com", &["list"]).code(2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn a_copy_of_a_signed_change_under_another_id_is_reported() {
    let (s, id, _em, _cm) = signed_store();
    let text = s.read(&id);
    let copy = id.replace("-001", "-099");
    let path = s.file(&id).with_file_name(format!("{copy}.yaml"));
    std::fs::write(&path, text.replace(&id, &copy)).unwrap();
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("duplicate-request"), "{}", r.stdout);
}

#[test]
fn signed_implement_close_and_cancel_records_verify_and_refuse_without_a_key() {
    let mut s = Store::new();
    let keys: Vec<(&str, PathBuf)> = ["em", "cm", "bob", "alice"]
        .iter()
        .map(|w| (*w, s.keygen(w)))
        .collect();
    s.edit_policy("implementers are a role, so they may sign", |t| {
        t.replace(
            "  change-manager: [cm@example.com]",
            "  change-manager: [cm@example.com]\n  implementers: [bob@example.com, alice@example.com]",
        )
    });
    let signers: Vec<(String, &Path)> = keys
        .iter()
        .map(|(w, k)| (format!("{w}@example.com"), k.as_path()))
        .collect();
    let signers: Vec<(&str, &Path)> = signers.iter().map(|(w, k)| (w.as_str(), *k)).collect();
    s.enable_signing(&signers, &["implement", "close", "cancel"]);
    let key = |w: &str| keys.iter().find(|(k, _)| *k == w).unwrap().1.clone();
    let id = s.new_change(&[]);
    s.signed("em@example.com", &key("em"), &["approve", &id])
        .ok();
    s.signed("cm@example.com", &key("cm"), &["approve", &id])
        .ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    // Unsigned implement and close are refused and change nothing.
    let before = s.snapshot();
    let r = s.chg("bob@example.com", &["implement", &id]).code(2);
    assert!(r.stderr.contains("user.signingkey"), "{}", r.stderr);
    assert_unchanged(&s, &before);
    s.signed("bob@example.com", &key("bob"), &["implement", &id])
        .ok();
    let before = s.snapshot();
    s.chg(
        "bob@example.com",
        &["close", &id, "--outcome", "successful"],
    )
    .code(2);
    assert_unchanged(&s, &before);
    s.signed(
        "bob@example.com",
        &key("bob"),
        &["close", &id, "--outcome", "successful"],
    )
    .ok();
    let text = s.read(&id);
    assert_eq!(text.matches("BEGIN SSH SIGNATURE").count(), 4, "{text}");
    // A cancellation is signed too.
    let other = s.new_change(&[]);
    let before = s.snapshot();
    s.chg(
        "alice@example.com",
        &["cancel", &other, "--reason", "Not needed"],
    )
    .code(2);
    assert_unchanged(&s, &before);
    s.signed(
        "alice@example.com",
        &key("alice"),
        &["cancel", &other, "--reason", "Not needed"],
    )
    .ok();
    assert!(s.read(&other).contains("BEGIN SSH SIGNATURE"));
    s.chg("alice@example.com", &["validate"]).ok();
    let r = s.chg("alice@example.com", &["audit"]).ok();
    assert!(!r.stdout.contains(": signature: "), "{}", r.stdout);
    // The implementation record signed by bob cannot be claimed by alice.
    assert!(text.contains("implementer: bob@example.com"), "{text}");
    let forged = text.replace(
        "implementer: bob@example.com",
        "implementer: alice@example.com",
    );
    std::fs::write(s.file(&id), forged).unwrap();
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(r.stdout.contains(": signature: "), "{}", r.stdout);
}

#[test]
fn an_allowed_signers_file_past_the_size_limit_is_named_as_such() {
    let s = Store::new();
    let em = s.keygen("em");
    s.enable_signing(&[("em@example.com", &em)], &[]);
    let file = s.root().join("policy/allowed_signers");
    let mut text = format!("em@example.com {}\n", s.public(&em));
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&file, &text).unwrap();
    let r = s.chg("alice@example.com", &["validate"]).code(1);
    assert!(r.stdout.contains("larger than chg's limit"), "{}", r.stdout);
    s.git(&["commit", "-qam", "a huge signers file"]);
    let r = s.chg("alice@example.com", &["list"]).code(2);
    assert!(r.stderr.contains("larger than chg's limit"), "{}", r.stderr);
    assert!(!r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn proofs_are_kept_in_git_dir_and_a_damaged_copy_is_rebuilt() {
    let (s, id, _em, _cm) = signed_store();
    let kept = s.root().join(".git/chg/proven-signatures");
    s.chg("alice@example.com", &["validate"]).ok();
    let bytes = std::fs::read(&kept).unwrap();
    assert!(bytes.starts_with(b"chg proven signatures v1\n"));
    assert_eq!((bytes.len() - 25) % 32, 0);
    assert!(bytes.len() > 25);
    // Never in the store's history or status.
    assert_eq!(s.git(&["status", "--porcelain"]), "");
    // A damaged copy costs time only: validate still verifies and writes it anew.
    std::fs::write(&kept, b"garbage").unwrap();
    s.chg("alice@example.com", &["validate"]).ok();
    assert!(
        std::fs::read(&kept)
            .unwrap()
            .starts_with(b"chg proven signatures v1\n")
    );
    // Kept proofs do not make a changed statement verify.
    let text = s.read(&id);
    std::fs::write(
        s.file(&id),
        text.replacen("role: change-manager", "role: security-team", 1),
    )
    .unwrap();
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(r.stdout.contains(": signature: "), "{}", r.stdout);
}

#[test]
fn a_governance_approval_counts_only_when_validly_signed() {
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
    s.edit_policy("adopt governance", |t| {
        format!("{t}governance:\n  roles: [security-team-lead]\n")
    });
    let p = s.root().join("policy/policy.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}# proposed\n")).unwrap();
    let mut args = vec!["policy", "propose"];
    args.extend_from_slice(&super::COMPLETE[1..]);
    let id = s.chg("alice@example.com", &args).ok_line();
    s.git(&["checkout", "-q", "--", "policy"]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    s.signed("cm@example.com", &cm, &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    s.at("2025-03-11T09:30:00Z");
    // The lead's approval written by hand, unsigned, with the status moved along.
    let text = s.read(&id);
    let digest = field(&text, "  digest: ");
    let lead_approval = format!(
        "- by: sec-lead@example.com\n  role: security-team-lead\n  decision: approved\n  at: 2025-03-11T09:00:00Z\n  digest: {digest}\n"
    );
    let forged = text
        .replace("status: pending_approval", "status: approved")
        .replace("\nschedule:\n", &format!("\n{lead_approval}schedule:\n"));
    assert!(forged.contains(&lead_approval), "{forged}");
    std::fs::write(s.file(&id), forged).unwrap();
    s.git(&["commit", "-qam", "lead approves by hand"]);
    let before = s.snapshot();
    let r = s
        .chg("alice@example.com", &["policy", "apply", &id])
        .code(1);
    // Refused by the governance check itself, not only by implement's signature rule.
    assert!(
        r.stderr.contains(
            "not approved by every governance role yet (waiting for: security-team-lead)"
        ),
        "{}",
        r.stderr
    );
    assert_unchanged(&s, &before);
}

#[test]
fn a_chg_looking_approval_with_someone_elses_signature_is_caught_by_its_signature() {
    // Everything about the commit is what chg would write, the trailers included; only the
    // signature is em's, under cm's approval. Nothing but the signature check can tell.
    let s = Store::new();
    let (em, cm) = (s.keygen("em"), s.keygen("cm"));
    s.enable_signing(&[("em@example.com", &em), ("cm@example.com", &cm)], &[]);
    let id = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &id]).ok();
    s.schedule(&id, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z")
        .ok();
    // What cm's approval would be, made in a scratch clone.
    let scratch = super::attacks::fresh_clone(&s);
    scratch
        .signed("cm@example.com", &cm, &["approve", &id])
        .ok();
    let real = scratch.read(&id);
    let sig_of = |text: &str, n: usize| -> String {
        let start = text.match_indices("  signature: |").nth(n).unwrap().0;
        let end = text[start..].find("-----END SSH SIGNATURE-----").unwrap() + start + 27;
        text[start..end].to_owned()
    };
    let forged = real.replace(&sig_of(&real, 1), &sig_of(&real, 0));
    let before = super::attacks::exceptions(&s);
    std::fs::write(s.file(&id), forged).unwrap();
    s.git(&["add", "."]);
    let mut cmd = s.cmd(Path::new("git"), "cm@example.com");
    let message = format!(
        "{id}: approve (change-manager)\n\nChg-Id: {id}\nChg-Action: approve\nChg-Actor: cm@example.com\nChg-Role: change-manager\nChg-From: pending_approval\nChg-To: approved\n"
    );
    assert!(
        cmd.args(["commit", "-qm", &message])
            .status()
            .unwrap()
            .success()
    );
    let new: Vec<String> = super::attacks::exceptions(&s)
        .into_iter()
        .filter(|e| !before.contains(e))
        .map(|(rule, _, _)| rule)
        .collect();
    let audit = s.chg("alice@example.com", &["audit"]).stdout;
    assert_eq!(new, ["signature"], "{audit}");
    let r = s
        .chg(
            "bob@example.com",
            &["gate", &id, "--at", "2025-03-11T09:30:00Z"],
        )
        .code(1);
    assert!(r.stdout.contains("(signature)"), "{}", r.stdout);
}

#[test]
fn a_planted_proof_fools_no_fresh_clone() {
    // `.git/chg/proven-signatures` spares the arithmetic of signatures already proven; whoever
    // can write .git/ can plant a proof for a corrupted signature. A fresh clone has none.
    let (s, id, _em, _cm) = signed_store();
    let good = s.read(&id);
    let start = good.match_indices("  signature: |").nth(1).unwrap().0;
    let end = good[start..].find("-----END SSH SIGNATURE-----").unwrap() + start + 27;
    let sig = &good[start..end];
    // One character of the signature's last bytes changed: still an SSHSIG, not a valid one.
    let lines: Vec<&str> = sig.lines().collect();
    let last = lines[lines.len() - 2];
    let mut chars: Vec<char> = last.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let changed: String = chars.into_iter().collect();
    let corrupted = good.replace(sig, &sig.replace(last, &changed));
    std::fs::write(s.file(&id), &corrupted).unwrap();
    s.git(&["commit", "-qam", "corrupt cm's signature"]);
    // The proof chg would keep for that record, planted by hand.
    let change = chg::decode::decode_str("c.yaml", &corrupted).change;
    let record = chg::signing::records(&change)
        .into_iter()
        .find(|r| r.actor == "cm@example.com")
        .unwrap();
    let key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"chg proven signature v1\0");
        for part in [
            record.actor.as_str(),
            record.statement.text().as_str(),
            record.signature.unwrap().trim(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize()
    };
    let path = s.root().join(".git/chg/proven-signatures");
    let mut kept =
        std::fs::read(&path).unwrap_or_else(|_| chg::signing::ProvenSignatures::HEADER.to_vec());
    kept.extend_from_slice(&key);
    std::fs::write(&path, kept).unwrap();
    // The planted clone takes the proof (that is what planting means: README, "Speed")...
    let r = s.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(
        !r.stdout
            .contains(": signature: the approve record by cm@example.com")
            && r.stdout.contains(": unverified-history: "),
        "{}",
        r.stdout
    );
    // ...a fresh clone verifies the signature itself.
    let fresh = super::attacks::fresh_clone(&s);
    let r = fresh.chg("alice@example.com", &["validate", &id]).code(1);
    assert!(
        r.stdout
            .contains(": signature: the approve record by cm@example.com"),
        "{}",
        r.stdout
    );
    // And in the planted clone the gate still refuses: the history does not verify.
    let r = s
        .chg(
            "bob@example.com",
            &["gate", &id, "--at", "2025-03-11T09:30:00Z"],
        )
        .code(1);
    assert!(r.stdout.contains("unverified-history"), "{}", r.stdout);
}

/// The README's signed walkthrough from one clone: keys added the governed way with `chg
/// policy signers add`, each approver signing with `--signing-key` or `CHG_SIGNING_KEY` as
/// git takes `-c user.signingkey=`.
#[test]
fn two_approvers_sign_from_one_clone_with_keys_added_by_chg() {
    let s = Store::new();
    let (alice, em, cm) = (s.keygen("alice"), s.keygen("em"), s.keygen("cm"));
    // Without signing, validate warns that approvals are claims.
    let r = s.chg("alice@example.com", &["validate"]).ok();
    assert!(
        r.stdout
            .contains("warning: the policy requires no signatures"),
        "{}",
        r.stdout
    );
    for (who, key) in [
        ("alice@example.com", &alice),
        ("em@example.com", &em),
        ("cm@example.com", &cm),
    ] {
        let pub_key = key.with_extension("pub");
        let r = s
            .chg(
                "alice@example.com",
                &["policy", "signers", "add", who, pub_key.to_str().unwrap()],
            )
            .ok();
        assert!(
            r.stdout
                .contains(&format!("added {who} (ssh-ed25519 SHA256:")),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("has no `signing` section yet"),
            "{}",
            r.stdout
        );
    }
    // Refused, the file unchanged: a key listed twice, a private key, a pattern, no key.
    let signers = s.root().join("policy/allowed_signers");
    let before = std::fs::read_to_string(&signers).unwrap();
    let cm_pub = cm.with_extension("pub");
    for (who, key) in [
        ("cm@example.com", cm_pub.to_str().unwrap()),
        ("cm@example.com", cm.to_str().unwrap()),
        ("*@example.com", cm_pub.to_str().unwrap()),
        ("cm@example.com", "/nonexistent.pub"),
    ] {
        let r = s
            .chg("alice@example.com", &["policy", "signers", "add", who, key])
            .code(2);
        assert!(r.stderr.starts_with("chg: error: "), "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(&signers).unwrap(), before);
    s.edit_policy("sign approvals", |t| {
        format!("{t}signing:\n  allowed_signers: policy/allowed_signers\n  required_for: [approve, reject]\n")
    });
    s.git(&["add", "policy/allowed_signers"]);
    s.git(&["commit", "-qm", "allowed signers"]);
    let r = s.chg("alice@example.com", &["validate"]).ok();
    assert!(!r.stdout.contains("requires no signatures"), "{}", r.stdout);
    let id = s.new_change(&[]);
    let em_key = em.to_str().unwrap();
    s.chg("em@example.com", &["--signing-key", em_key, "approve", &id])
        .ok();
    let o = s
        .cmd(
            std::path::Path::new(env!("CARGO_BIN_EXE_chg")),
            "cm@example.com",
        )
        .env("CHG_SIGNING_KEY", &cm)
        .args(["approve", &id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.read(&id).matches("BEGIN SSH SIGNATURE").count(), 2);
    // Someone else's key for cm's approval: refused as rule signature.
    let id2 = s.new_change(&[]);
    let r = s
        .chg(
            "cm@example.com",
            &["--signing-key", em_key, "approve", &id2],
        )
        .code(1);
    assert!(
        r.stderr.contains("the allowed signers do not list"),
        "{}",
        r.stderr
    );
    s.chg("alice@example.com", &["validate"]).ok();
    let audit = s.chg("alice@example.com", &["audit"]).ok();
    assert!(
        audit
            .stdout
            .contains("signatures required for approve, reject"),
        "{}",
        audit.stdout
    );
    assert!(
        audit.stdout.contains("it requires no signatures"),
        "{}",
        audit.stdout
    );
    // The evidence pack says for which stretch signing was in force.
    let pack = s.export_2025();
    let controls = std::fs::read_to_string(pack.join("controls.md")).unwrap();
    assert!(
        controls.contains("## Signed records") && controls.contains("signed: approve, reject"),
        "{controls}"
    );
    // Removing one key by its fingerprint: another key's fingerprint removes nothing
    // (exit 2, the file as it was); cm's own removes cm's line only.
    let before_remove = std::fs::read_to_string(&signers).unwrap();
    s.chg(
        "alice@example.com",
        &[
            "policy",
            "signers",
            "remove",
            "cm@example.com",
            "--fingerprint",
            &fingerprint(&em),
        ],
    )
    .code(2);
    assert_eq!(std::fs::read_to_string(&signers).unwrap(), before_remove);
    let r = s
        .chg(
            "alice@example.com",
            &[
                "policy",
                "signers",
                "remove",
                "cm@example.com",
                "--fingerprint",
                &fingerprint(&cm),
            ],
        )
        .ok();
    assert!(
        r.stdout.contains("removed 1 line(s) for cm@example.com"),
        "{}",
        r.stdout
    );
    let now = std::fs::read_to_string(&signers).unwrap();
    assert!(
        !now.contains("cm@example.com") && now.contains("em@example.com"),
        "{now}"
    );
    s.chg(
        "alice@example.com",
        &["policy", "signers", "remove", "cm@example.com"],
    )
    .code(2);
}

/// Helper-18's F1: a signed approval moved onto a copy of its change (filed again at the
/// same request time with `CHG_NOW`, the original cancelled) by a commit that wears chg's
/// approve trailers. The statement names the change by requester and request time (so that
/// renumbering keeps it), so the replayed step verifies on its own; the copy must not.
#[test]
fn a_signed_approval_moved_onto_a_copy_of_its_change_opens_no_gate() {
    let s = Store::new();
    let (em, cm) = (s.keygen("em"), s.keygen("cm"));
    s.enable_signing(&[("em@example.com", &em), ("cm@example.com", &cm)], &[]);
    let original = s.new_change(&[]);
    s.signed("em@example.com", &em, &["approve", &original])
        .ok();
    s.signed("cm@example.com", &cm, &["approve", &original])
        .ok();
    s.chg(
        "cm@example.com",
        &[
            "cancel",
            &original,
            "--reason",
            "the CAB decided against it",
        ],
    )
    .ok();
    // The same request, filed again at the same time: a new id, no approvals yet.
    let copy = s.new_change(&[]);
    assert_ne!(copy, original);
    // Each signed approval pasted in by its approver's name, as `chg approve` writes it.
    let block = {
        let text = s.read(&original);
        let at = text.find("approvals:\n").unwrap() + "approvals:\n".len();
        let end = text[at..]
            .find("\ncancellation:")
            .map_or(text.len(), |e| at + e + 1);
        text[at..end].to_owned()
    };
    let entries: Vec<String> = block
        .split("\n- ")
        .map(|e| format!("- {}\n", e.trim_start_matches("- ").trim_end()))
        .collect();
    assert_eq!(entries.len(), 2, "{block}");
    for (i, (who, role, to)) in [
        ("em@example.com", "engineering-manager", "pending_approval"),
        ("cm@example.com", "change-manager", "approved"),
    ]
    .into_iter()
    .enumerate()
    {
        s.rewrite(&copy, |t| {
            let t = t.replace("status: pending_approval", &format!("status: {to}"));
            if i == 0 {
                format!("{t}approvals:\n{}", entries[0])
            } else {
                format!("{t}{}", entries[1])
            }
        });
        let mut cmd = s.cmd(std::path::Path::new("git"), who);
        let message = format!(
            "{copy}: approve ({role})\n\nChg-Id: {copy}\nChg-Action: approve\nChg-Actor: {who}\nChg-Role: {role}\nChg-From: pending_approval\nChg-To: {to}\n"
        );
        let o = cmd.args(["commit", "-qam", &message]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The history of the copy replays as chg steps: only the copy gives it away.
    let r = s.chg("alice@example.com", &["audit"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    s.schedule(&copy, "2025-03-11T09:00:00Z", "2025-03-11T11:00:00Z");
    for args in [
        vec!["gate", copy.as_str(), "--at", "2025-03-11T09:30:00Z"],
        vec!["validate", copy.as_str()],
    ] {
        let r = s.chg("alice@example.com", &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(
            r.stdout.contains("duplicate-request"),
            "{args:?}: {}",
            r.stdout
        );
    }
    let r = s.chg("ops1@example.com", &["implement", &copy]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("repeats the signed request"),
        "{}",
        r.stderr
    );
    // The server's gate finds it too, among the summaries it keeps by request time.
    let token = s.token("alice@example.com");
    let srv = s.serve(&[]);
    let gate = srv
        .get(&format!("{}/{copy}/gate", crate::serve::BASE), &token)
        .json();
    assert_eq!(gate["open"], false, "{gate}");
    assert!(
        gate["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule"] == "duplicate-request"),
        "{gate}"
    );
}
