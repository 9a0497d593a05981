//! API tokens for `chg serve` (SPEC section 12): who a request acts for.
//!
//! A token is 32 random bytes shown once (`chg_` and their unpadded base64url). Only its
//! SHA-256 is kept, in `.git/chg/tokens.json` (never committed), with an id, the person's
//! email and name, when it was made, when it expires and whether it was revoked. A presented
//! token is hashed and compared with every kept hash in constant time.
//!
//! The library reads no clock and draws no randomness: the caller gives the time and the
//! random bytes.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What a token is written as: this prefix, then base64url of its 32 bytes.
pub const PREFIX: &str = "chg_";

/// One kept token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's id (`tok_` and 12 hex digits): what `token list`, `token revoke` and
    /// the `Chg-Via` trailer name.
    pub id: String,
    /// The person it acts for (the commit's author email).
    pub email: String,
    /// The person's name, as commits record it.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it was made.
    pub created: Timestamp,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether the token works at `now`: not revoked, not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: Timestamp) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if !self.is_live(now) {
            "expired"
        } else {
            "active"
        }
    }
}

/// The kept tokens of one repository.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    tokens: Vec<TokenRecord>,
}

/// SHA-256 of `token`, hex.
pub fn hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    /// The tokens kept in the git directory `git_dir` (`.git/chg/tokens.json`).
    pub fn in_git_dir(git_dir: &Path) -> Tokens {
        Tokens {
            path: git_dir.join("chg").join("tokens.json"),
        }
    }

    /// Where they are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every kept token, oldest first.
    pub fn list(&self) -> Result<Vec<TokenRecord>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let f: File = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Internal(format!("{} is damaged: {e}", self.path.display()))
                })?;
                Ok(f.tokens)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(format!("cannot read {}", self.path.display()), e)),
        }
    }

    fn write(&self, tokens: Vec<TokenRecord>) -> Result<()> {
        let text = serde_json::to_vec_pretty(&File { tokens })
            .map_err(|e| Error::Internal(e.to_string()))?;
        crate::git::atomic_write(&self.path, &text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(())
    }

    /// Makes a token for `email` from `secret` (32 random bytes the caller drew), keeps its
    /// hash, and returns the token (to show once) with its record.
    pub fn create(
        &self,
        email: &str,
        name: &str,
        now: Timestamp,
        expires: Option<Timestamp>,
        secret: [u8; 32],
    ) -> Result<(String, TokenRecord)> {
        use base64::Engine;
        let identity = crate::Identity::new(name, email)?;
        if !email.contains('@') {
            return Err(Error::Usage(format!("`{email}` is not an email address")));
        }
        if let Some(e) = expires
            && e <= now
        {
            return Err(Error::Usage(
                "the token would expire before it is made".into(),
            ));
        }
        let token = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let hash = hash(&token);
        let mut all = self.list()?;
        let record = TokenRecord {
            id: format!("tok_{}", &crate::tokens::hash(&hash)[..12]),
            email: identity.email,
            name: identity.name,
            hash,
            created: crate::context::whole_seconds(now),
            expires,
            revoked: None,
        };
        if all.iter().any(|r| r.id == record.id) {
            return Err(Error::Internal("token id collision; try again".into()));
        }
        all.push(record.clone());
        self.write(all)?;
        Ok((token, record))
    }

    /// Revokes token `id` at `now`; refused for an unknown id. Revoking twice keeps the
    /// first time.
    pub fn revoke(&self, id: &str, now: Timestamp) -> Result<TokenRecord> {
        let mut all = self.list()?;
        let r = all
            .iter_mut()
            .find(|r| r.id == id.trim())
            .ok_or_else(|| Error::Usage(format!("no token {id} (chg token list shows them)")))?;
        if r.revoked.is_none() {
            r.revoked = Some(crate::context::whole_seconds(now));
        }
        let out = r.clone();
        self.write(all)?;
        Ok(out)
    }

    /// The live record of `token` at `now`, or `None` (unknown, revoked, expired). Every
    /// kept hash is compared, in constant time.
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        let presented = hash(token.trim());
        let mut found = None;
        for r in self.list()? {
            if bool::from(r.hash.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(r);
            }
        }
        Ok(found.filter(|r| r.is_live(now)))
    }

    /// The record of token id `id` if it is live at `now` (a session re-checks its token
    /// on every request, so a revocation ends it at once).
    pub fn live_by_id(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|r| r.id == id)
            .filter(|r| r.is_live(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_authenticates_until_revoked_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::in_git_dir(dir.path());
        let now = ts("2026-01-01T00:00:00Z");
        let (token, rec) = t
            .create(
                "em@example.com",
                "Em",
                now,
                Some(ts("2026-02-01T00:00:00Z")),
                [7; 32],
            )
            .unwrap();
        assert!(token.starts_with(PREFIX));
        let kept = std::fs::read_to_string(t.path()).unwrap();
        assert!(!kept.contains(&token), "only the hash is kept");
        assert_eq!(t.authenticate(&token, now).unwrap().unwrap().id, rec.id);
        assert!(t.authenticate("chg_wrong", now).unwrap().is_none());
        assert!(
            t.authenticate(&token, ts("2026-02-01T00:00:00Z"))
                .unwrap()
                .is_none()
        );
        t.revoke(&rec.id, now).unwrap();
        assert!(t.authenticate(&token, now).unwrap().is_none());
        assert!(t.live_by_id(&rec.id, now).unwrap().is_none());
        assert!(t.revoke("tok_nope", now).is_err());
    }
}
