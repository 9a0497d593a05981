//! `chg policy propose` and `chg policy apply`: the only way the policy changes once it
//! is governed (SPEC section 10).

use std::process::ExitCode;

use chg::Error;
use chg::policy::{POLICY_PATH, Policy};
use chg::store::Store;
use clap::{Args, Subcommand};

use super::{CmdResult, new, transitions, ui::Ui};

/// Change the policy through an approved change request.
///
/// With `governance` in the policy, everything under policy/ changes only this way: edit
/// the files in the work tree, `chg policy propose` files a change request carrying them,
/// the governance roles (and the roles its priority needs) approve it, and `chg policy
/// apply` commits it. Any other change under policy/ is `policy-unauthorized`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// File a change request proposing policy/ as it is in the work tree (every file under
    /// it); the work tree is left as it is. Takes the flags of `chg new`.
    Propose(Box<new::NewArgs>),
    /// Commit an approved proposal's content under policy/: the proposal's implement step,
    /// in one commit. Needs every governance role's approval and the schedule's window.
    Apply(transitions::IdArgs),
    /// Prepare a change to the allowed signers (policy/allowed_signers) in the work tree,
    /// for `chg policy propose` (or a commit, while the policy is not governed).
    #[command(subcommand)]
    Signers(SignersCommand),
}

#[derive(Debug, Subcommand)]
enum SignersCommand {
    /// Add a person's SSH public key: `chg policy signers add EMAIL ~/.ssh/id_ed25519.pub`
    /// (`-` reads the key from standard input).
    Add {
        /// The email the person acts as (their git user.email).
        email: String,
        /// Their public key file (the .pub), or `-`.
        key: std::path::PathBuf,
    },
    /// Remove a person's keys (or only the one with this fingerprint). Records they
    /// signed stay valid: each is judged by the signers in force when it was written.
    Remove {
        /// The email whose lines go.
        email: String,
        /// Only the key with this fingerprint (SHA256:…).
        #[arg(long)]
        fingerprint: Option<String>,
    },
}

pub fn run(ui: &Ui, store: &Store, policy: &Policy, a: PolicyArgs) -> CmdResult {
    match a.command {
        PolicyCommand::Propose(args) => {
            let proposal = store.worktree_policy_files()?;
            if proposal == store.committed_policy_files()? {
                return Err(Error::Usage(
                    "nothing to propose: policy/ in the work tree is what HEAD has; edit it first"
                        .into(),
                ));
            }
            // A proposal that could never be applied is refused now, with its places.
            let text = proposal
                .get(POLICY_PATH)
                .ok_or_else(|| Error::Usage(format!("the proposal has no {POLICY_PATH}")))?;
            let (mut proposed, _) =
                chg::policy_source::parse(text.as_bytes()).map_err(|findings| Error::Invalid {
                    summary: format!("the proposed {POLICY_PATH} is not a usable policy"),
                    findings,
                })?;
            let files = chg::policy_source::Files::Map(&proposal);
            let problems: Vec<_> = chg::policy_source::attach(&mut proposed, &files, None)?
                .signers
                .into_iter()
                .filter(chg::finding::Finding::is_error)
                .collect();
            if !problems.is_empty() {
                return Err(Error::Invalid {
                    summary: "the proposed allowed signers are not usable".into(),
                    findings: problems,
                });
            }
            new::run_with(ui, store, policy, *args, Some(proposal))
        }
        PolicyCommand::Apply(a) => {
            let o = store.apply_policy(&super::context::for_store(ui, store)?, &a.parse(ui)?)?;
            transitions::done(ui, o)?;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Signers(c) => signers(ui, store, policy, c),
    }
}

/// `chg policy signers add|remove`: edits the allowed signers file in the work tree and
/// says how the edit becomes policy (a proposal under governance, else a commit).
fn signers(ui: &Ui, store: &Store, policy: &Policy, c: SignersCommand) -> CmdResult {
    let rel = policy.signing.as_ref().map_or_else(
        || "policy/allowed_signers".to_owned(),
        |s| s.allowed_signers.clone(),
    );
    let path = store.root().join(&rel);
    let text = match std::fs::read(&path) {
        Ok(b) => {
            String::from_utf8(b).map_err(|_| Error::Usage(format!("{rel} is not UTF-8 text")))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("cannot read {rel}"), e)),
    };
    let (next, said) = match c {
        SignersCommand::Add { email, key } => {
            let key_text = if key.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut t)
                    .map_err(|e| Error::io("cannot read the key from standard input", e))?;
                t
            } else {
                std::fs::read_to_string(&key).map_err(|e| {
                    Error::Usage(format!("cannot read the key file {}: {e}", key.display()))
                })?
            };
            let (next, what) =
                chg::signing::with_signer(&text, &email, &key_text).map_err(|why| {
                    // The email's problems are the email's; the rest are the key file's.
                    Error::Usage(if why.starts_with('`') {
                        why
                    } else {
                        format!("{}: {why}", key.display())
                    })
                })?;
            // Principals match exactly: a key for `CM@example.com` is not the role
            // member `cm@example.com`'s, and gives no role.
            for members in policy.roles.values() {
                if let Some(m) = members
                    .iter()
                    .find(|m| *m != &email && m.eq_ignore_ascii_case(&email))
                {
                    eprintln!(
                        "chg: warning: {email} differs from the role member {m} only in case; signers are matched exactly, so this key will not sign as {m} (write it as the member is written)"
                    );
                }
            }
            (next, format!("added {email} ({what})"))
        }
        SignersCommand::Remove { email, fingerprint } => {
            let (next, n) = chg::signing::without_signer(&text, &email, fingerprint.as_deref());
            if n == 0 {
                return Err(Error::Usage(format!(
                    "{rel} has no line for {email} alone{}",
                    fingerprint
                        .map(|f| format!(" with key {f}"))
                        .unwrap_or_default()
                )));
            }
            (next, format!("removed {n} line(s) for {email}"))
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    chg::store::commit::atomic_write(&path, next.as_bytes())?;
    let mut msg = format!("{rel}: {said} (in the work tree, not committed)\n");
    if policy.signing.is_none() {
        msg.push_str(&format!(
            "The policy has no `signing` section yet: add it to policy/policy.yaml with the same edit, so that records are signed and checked:\n  signing:\n    allowed_signers: {rel}\n    required_for: [approve, reject]\n"
        ));
    }
    if policy.governance.is_some() {
        msg.push_str("Next: chg policy propose --title \"Allowed signers\" --justification \"…\" (plus the fields your policy requires); once approved, chg policy apply ID\n");
    } else {
        msg.push_str(&format!(
            "Next: git add {rel} policy/policy.yaml && git commit -m \"Allowed signers\" (with governance in the policy, chg policy propose instead)\n"
        ));
    }
    ui.out(&msg)?;
    Ok(ExitCode::SUCCESS)
}

/// List the standard-change catalogue: each template of policy/templates/, what it fixes
/// and what the requester fills in (`chg new --template NAME`).
#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// Output format (`--format json` is the same as `--json`).
    #[arg(long, value_enum, default_value = "text")]
    format: super::show::TextFormat,
    #[command(flatten)]
    json: super::json::JsonArgs,
}

pub fn templates(ui: &Ui, policy: &Policy, a: TemplatesArgs) -> CmdResult {
    if ui.json(&a.json) || a.format == super::show::TextFormat::Json {
        let list: Vec<serde_json::Value> = policy
            .templates
            .values()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "digest": t.digest,
                    "fixed": t.fixed_fields.iter().map(|f| (f.to_string(), serde_json::json!(t.fixed.field_text(f)))).collect::<serde_json::Map<_, _>>(),
                    "variable": t.variable,
                })
            })
            .collect();
        ui.out_json(&serde_json::Value::Array(list))?;
        return Ok(ExitCode::SUCCESS);
    }
    if policy.templates.is_empty() {
        eprintln!("no templates: add policy/templates/NAME.yaml through a policy change");
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    for t in policy.templates.values() {
        s.push_str(&format!("{}\n", t.name));
        for f in &t.fixed_fields {
            let v = t.fixed.field_text(f).unwrap_or_default();
            s.push_str(&format!("  {f}: {}\n", chg::text::one_line(&v)));
        }
        s.push_str(&format!("  variable: {}\n", t.variable.join(", ")));
    }
    ui.out(&s)?;
    Ok(ExitCode::SUCCESS)
}
