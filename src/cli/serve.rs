//! `chg serve` and `chg token` (SPEC section 12).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chg::Error;
use chg::store::Store;
use chg::tokens::Tokens;
use clap::{Args, Subcommand};

use super::{CmdResult, ui::Ui};

/// Serve the JSON API and the web pages for approvers.
///
/// Every state change is one commit authored by the person the request authenticated (a
/// token from `chg token create`), with a `Chg-Via` trailer naming the token. TLS is the
/// reverse proxy's: listen on a local address behind it (examples/deploy/).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (port 0 picks a free port; the address is said on stderr).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// The origin people reach (https://chg.example.com); default http://localhost:PORT.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Sync every state change to this remote before answering (as `chg sync`).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_body: usize,
    /// How long one request may take, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
    /// The server's own SSH key, to attest decisions where the policy allows it
    /// (signing.server_attests); its public key must be listed in the allowed signers
    /// under the policy's server_attests.signer.
    #[arg(long, env = "CHG_SERVE_ATTEST_KEY", value_name = "PATH")]
    attest_key: Option<String>,
}

/// API tokens: who a request to `chg serve` acts for.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for a person; it is printed once, alone on stdout, and only its hash
    /// is kept (under .git/chg/).
    Create {
        /// The person's email (the commits' author; the policy's roles name it).
        email: String,
        /// How long it works (like 90d, 24h); default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// The person's name, as commits record it (default: the email's local part).
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// List the tokens: id, person, state, creation and expiry.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: requests with it, and sessions made from it, are refused at once.
    Revoke {
        /// The token id (tok_…, from `chg token list`).
        token_id: String,
    },
}

pub fn serve(ui: &Ui, store: &Store, a: ServeArgs) -> CmdResult {
    if let Some(url) = &a.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Error::Usage(format!(
            "--public-url `{url}` must start with http:// or https://"
        )));
    }
    if a.max_body == 0 || a.timeout == 0 {
        return Err(Error::Usage(
            "--max-body and --timeout must be more than 0".into(),
        ));
    }
    let attester = a
        .attest_key
        .as_deref()
        .map(|key| attesting_key(store, key, ui.now()?))
        .transpose()?;
    let cwd = store.root().to_path_buf();
    crate::serve::serve(crate::serve::Options {
        attester,
        listen: a.listen,
        public_url: a.public_url,
        remote: a.remote,
        cwd,
        repo: None,
        max_body: a.max_body,
        timeout: Duration::from_secs(a.timeout),
        lock_timeout: super::context::lock_timeout(),
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn token(ui: &Ui, store: &Store, a: TokenArgs) -> CmdResult {
    let tokens = Tokens::in_git_dir(store.repo().path());
    let now = ui.now()?;
    match a.command {
        TokenCommand::Create {
            email,
            expires,
            name,
        } => {
            let expires = expires
                .map(|e| {
                    let d: chg::model::Duration = e.parse().map_err(Error::Usage)?;
                    now.checked_add(d.to_signed())
                        .map_err(|e| Error::Usage(format!("--expires: {e}")))
                })
                .transpose()?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_owned());
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
            let (token, record) = tokens.create(&email, &name, now, expires, secret)?;
            ui.out(&format!("{token}\n"))?;
            eprintln!(
                "chg: token {} for {}{}; it is shown once, keep it secret",
                record.id,
                record.email,
                record
                    .expires
                    .map(|e| format!(", expires {}", chg::model::format_timestamp(e)))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List { json } => {
            let all = tokens.list()?;
            if json {
                let items: Vec<_> = all
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id,
                            "email": r.email,
                            "name": r.name,
                            "state": r.state(now),
                            "created": chg::model::format_timestamp(r.created),
                            "expires": r.expires.map(chg::model::format_timestamp),
                            "revoked": r.revoked.map(chg::model::format_timestamp),
                        })
                    })
                    .collect();
                ui.out_json(&items)?;
            } else {
                let mut s = String::new();
                for r in &all {
                    s.push_str(&format!(
                        "{}\t{}\t{}\tcreated {}\t{}\n",
                        r.id,
                        r.email,
                        r.state(now),
                        chg::model::format_timestamp(r.created),
                        r.expires
                            .map(|e| format!("expires {}", chg::model::format_timestamp(e)))
                            .unwrap_or_else(|| "no expiry".into())
                    ));
                }
                if all.is_empty() {
                    eprintln!("chg: no tokens (chg token create EMAIL makes one)");
                }
                ui.out(&s)?;
            }
        }
        TokenCommand::Revoke { token_id } => {
            let r = tokens.revoke(&token_id, now)?;
            eprintln!("chg: token {} of {} revoked", r.id, r.email);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's attesting key (`--attest-key`): usable, and said on stderr where the
/// policy at HEAD would not take its attestations (no `server_attests`, or the allowed
/// signers do not list the key under its signer), so an operator learns it at start.
fn attesting_key(
    store: &Store,
    key: &str,
    now: jiff::Timestamp,
) -> Result<std::sync::Arc<dyn chg::signing::RecordSigner>, Error> {
    if !key.starts_with("key::") && !std::path::Path::new(key).is_file() {
        return Err(Error::Usage(format!(
            "--attest-key {key}: no such file; give the path of the server's private SSH key (its .pub beside it)"
        )));
    }
    let signer = super::sign::key_signer(key);
    let public = signer
        .public_key()
        .map_err(|e| Error::Usage(format!("--attest-key {key} is not a usable SSH key: {e}")))?;
    let policy = store.policy()?;
    let attests = policy
        .signing
        .as_ref()
        .and_then(|s| s.server_attests.as_ref());
    match (attests, policy.signers()) {
        (Some(a), Some(signers)) if signers.lists(&a.signer, now, &public) => {}
        (Some(a), _) => eprintln!(
            "chg serve: warning: the allowed signers do not list the --attest-key key for `{}` (signing.server_attests.signer): nothing will be attested until a policy change adds it",
            a.signer
        ),
        (None, _) => eprintln!(
            "chg serve: warning: the policy has no signing.server_attests: the --attest-key key attests nothing"
        ),
    }
    Ok(signer)
}
