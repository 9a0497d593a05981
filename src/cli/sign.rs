//! Commit signing as git configures it (`commit.gpgsign`, `gpg.format`, `user.signingkey`,
//! `gpg.program`, `gpg.ssh.program`), by the same programs git runs, so agents, hardware
//! keys and `git verify-commit` all work as they do for the user's own commits.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chg::Error;
use chg::context::CommitSigner;
use chg::signing::RecordSigner;
use git2::Repository;

/// How git would sign a commit in `repo`, if `commit.gpgsign` is on.
pub fn commit_signer(
    ui: &super::ui::Ui,
    repo: &Repository,
) -> Result<Option<Arc<dyn CommitSigner>>, Error> {
    let config = ui.git_config(Some(repo));
    if !config.bool("commit.gpgsign").unwrap_or(false) {
        return Ok(None);
    }
    let format = config
        .string("gpg.format")
        .unwrap_or_else(|| "openpgp".into());
    let key = config
        .string("user.signingkey")
        .filter(|k| !k.trim().is_empty());
    let signer: Arc<dyn CommitSigner> = match format.as_str() {
        "ssh" => {
            let Some(key) = key else {
                return Err(Error::Usage(
                    "commit.gpgsign is on with gpg.format=ssh, but user.signingkey is not set; set it to your key (git config user.signingkey ~/.ssh/id_ed25519.pub) or turn signing off (git config commit.gpgsign false)".into(),
                ));
            };
            Arc::new(Ssh {
                program: config
                    .string("gpg.ssh.program")
                    .unwrap_or_else(|| "ssh-keygen".into()),
                key,
                namespace: "git",
            })
        }
        "openpgp" | "x509" => {
            let (program_key, default) = if format == "x509" {
                ("gpg.x509.program", "gpgsm")
            } else {
                ("gpg.program", "gpg")
            };
            let program = config
                .string(program_key)
                .or_else(|| config.string("gpg.program"))
                .unwrap_or_else(|| default.into());
            Arc::new(Gpg { program, key })
        }
        other => {
            return Err(Error::Usage(format!(
                "gpg.format={other} is not a signing format git knows (openpgp, x509, ssh)"
            )));
        }
    };
    Ok(Some(signer))
}

/// The signer of records (SPEC section 9): the SSH key git would sign with
/// (`user.signingkey`), whatever `gpg.format` says for commits; `None` without one.
pub fn record_signer(
    ui: &super::ui::Ui,
    repo: &Repository,
) -> Result<Option<Arc<dyn RecordSigner>>, Error> {
    signer_for(ui, repo, chg::signing::NAMESPACE)
}

/// The signer of evidence packs: the same key, under the namespace `chg-evidence`, so a
/// pack's signature can never pass for a record's, nor a record's for a pack's.
pub fn evidence_signer(
    ui: &super::ui::Ui,
    repo: &Repository,
) -> Result<Option<Arc<dyn RecordSigner>>, Error> {
    signer_for(ui, repo, "chg-evidence")
}

fn signer_for(
    ui: &super::ui::Ui,
    repo: &Repository,
    namespace: &'static str,
) -> Result<Option<Arc<dyn RecordSigner>>, Error> {
    let config = ui.git_config(Some(repo));
    let Some(key) = config
        .string("user.signingkey")
        .filter(|k| !k.trim().is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(Arc::new(Ssh {
        program: config
            .string("gpg.ssh.program")
            .unwrap_or_else(|| "ssh-keygen".into()),
        key,
        namespace,
    })))
}

/// A record signer with the SSH key at `key` (a path, or `key::` and a public key held by
/// the agent): `chg serve --attest-key`.
pub fn key_signer(key: &str) -> Arc<dyn RecordSigner> {
    Arc::new(Ssh {
        program: "ssh-keygen".into(),
        key: key.to_owned(),
        namespace: chg::signing::NAMESPACE,
    })
}

/// `ssh-keygen -Y sign -n NAMESPACE`, as git runs it.
struct Ssh {
    program: String,
    key: String,
    namespace: &'static str,
}

impl RecordSigner for Ssh {
    fn public_key(&self) -> Result<String, Error> {
        if let Some(literal) = self.key.strip_prefix("key::") {
            return Ok(literal.trim().to_owned());
        }
        let path = expand_home(&self.key);
        let public = if path.extension().is_some_and(|e| e == "pub") {
            path.clone()
        } else {
            let mut p = path.clone().into_os_string();
            p.push(".pub");
            PathBuf::from(p)
        };
        if let Ok(text) = std::fs::read_to_string(&public) {
            return Ok(text.trim().to_owned());
        }
        // A private key without its .pub beside it: ask ssh-keygen for the public half.
        let out = Command::new(&self.program)
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("cannot run {}", self.program), e))?;
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "user.signingkey {} is not a usable SSH key ({}); set it to your key (git config user.signingkey ~/.ssh/id_ed25519.pub)",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn sign(&self, statement: &[u8]) -> Result<String, Error> {
        self.sign_with(statement)
    }
}

impl CommitSigner for Ssh {
    fn sign(&self, payload: &[u8]) -> Result<String, Error> {
        self.sign_with(payload)
    }
}

impl Ssh {
    fn sign_with(&self, payload: &[u8]) -> Result<String, Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("cannot make a signing folder", e))?;
        // A literal key (`key::ssh-ed25519 AAAA…`) names a key held by the agent.
        let key: PathBuf = match self.key.strip_prefix("key::") {
            Some(literal) => {
                let p = dir.path().join("key.pub");
                std::fs::write(&p, format!("{}\n", literal.trim()))
                    .map_err(|e| Error::io("cannot write the signing key", e))?;
                p
            }
            None => expand_home(&self.key),
        };
        let data = dir.path().join("commit");
        std::fs::write(&data, payload).map_err(|e| Error::io("cannot write the commit", e))?;
        let out = Command::new(&self.program)
            .args(["-Y", "sign", "-n", self.namespace, "-f"])
            .arg(&key)
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::io(format!("cannot run {} to sign the commit", self.program), e))?;
        if !out.status.success() {
            if self.namespace == chg::signing::NAMESPACE {
                return Err(record_failed(&self.program, &self.key, &out.stderr));
            }
            return Err(failed(&self.program, &out.stderr));
        }
        let mut sig = data.into_os_string();
        sig.push(".sig");
        std::fs::read_to_string(&sig).map_err(|e| Error::io("cannot read the signature", e))
    }
}

/// `gpg --status-fd=2 -bsau KEY`, as git runs it.
struct Gpg {
    program: String,
    key: Option<String>,
}

impl CommitSigner for Gpg {
    fn sign(&self, payload: &[u8]) -> Result<String, Error> {
        let mut cmd = Command::new(&self.program);
        cmd.args(["--status-fd=2", "-bsa"]);
        if let Some(k) = &self.key {
            cmd.args(["-u", k]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("cannot run {} to sign the commit", self.program), e))?;
        let mut stdin = child.stdin.take().expect("piped");
        let fed = stdin.write_all(payload);
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("cannot run {}", self.program), e))?;
        fed.map_err(|e| Error::io(format!("cannot give {} the commit", self.program), e))?;
        let created = String::from_utf8_lossy(&out.stderr).contains("SIG_CREATED");
        if !out.status.success() || !created {
            return Err(failed(&self.program, &out.stderr));
        }
        String::from_utf8(out.stdout).map_err(|_| {
            Error::Usage(format!(
                "{} gave a signature that is not text",
                self.program
            ))
        })
    }
}

fn failed(program: &str, stderr: &[u8]) -> Error {
    let why = String::from_utf8_lossy(stderr);
    let why = why
        .lines()
        .find(|l| !l.starts_with("[GNUPG:]") && !l.trim().is_empty())
        .unwrap_or("no reason given");
    Error::Usage(format!(
        "{program} could not sign the commit ({}); nothing was changed (commit.gpgsign is on: fix the key, or turn signing off with git config commit.gpgsign false)",
        why.trim()
    ))
}

/// A record that could not be signed: the key git config names is the one to fix (a
/// public key whose private half is in no agent, most often), not commit signing.
fn record_failed(program: &str, key: &str, stderr: &[u8]) -> Error {
    let why = String::from_utf8_lossy(stderr);
    let why = why
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no reason given");
    let hint = if key.ends_with(".pub") || key.starts_with("key::") {
        "a public key signs only through ssh-agent: add its private half (ssh-add), or set user.signingkey to the private key file"
    } else {
        "check the key file and its passphrase"
    };
    Error::Usage(format!(
        "{program} could not sign the record with user.signingkey {key} ({}); nothing was changed ({hint})",
        why.trim()
    ))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}
