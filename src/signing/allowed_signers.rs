//! The allowed signers file (OpenSSH's format): which keys may sign for whom, the verdict
//! on a signature against it, the proofs kept between runs, and lines added and removed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use jiff::Timestamp;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::finding::Finding;
use crate::yaml::Pos;

use super::{DEFAULT_ATTESTING_SIGNER, NAMESPACE, SIGNATURE, Verdict};

/// One line of an allowed signers file.
#[derive(Debug, Clone)]
struct Signer {
    principals: Vec<String>,
    key: PublicKey,
    fingerprint: String,
    namespaces: Option<Vec<String>>,
    valid_after: Option<Timestamp>,
    valid_before: Option<Timestamp>,
}

/// The allowed signers file (OpenSSH format, ssh-keygen(1) ALLOWED SIGNERS): which keys may
/// sign for which emails, with the verdicts already reached (a record's verdict never
/// changes for the same file, so each is computed once per process).
#[derive(Debug, Default)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
    verdicts: Mutex<HashMap<([u8; 32], i64), Verdict>>,
    proven: OnceLock<Arc<ProvenSignatures>>,
}

/// Signatures already proven to verify their statement under the key they carry: the
/// expensive half of a verdict, which no policy change can alter (whether that key may sign
/// for that person then is judged afresh each time, from the allowed signers in force).
/// Kept by the caller between runs so that checking 100,000 unchanged records does not
/// repeat 100,000 verifications; a copy that is lost or damaged only costs time.
#[derive(Debug, Default)]
pub struct ProvenSignatures {
    known: HashSet<[u8; 32]>,
    added: Mutex<HashSet<[u8; 32]>>,
}

impl ProvenSignatures {
    /// The first line of the kept form; records of 32 bytes follow.
    pub const HEADER: &'static [u8] = b"chg proven signatures v1\n";

    /// Reads the kept form; `None` when it is not one (then start again from nothing).
    pub fn from_bytes(bytes: &[u8]) -> Option<ProvenSignatures> {
        let body = bytes.strip_prefix(Self::HEADER)?;
        if body.len() % 32 != 0 {
            return None;
        }
        let known = body
            .chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).expect("chunks of 32"))
            .collect();
        Some(ProvenSignatures {
            known,
            added: Mutex::default(),
        })
    }

    /// The records proven since this was read, in the kept form (to append).
    pub fn added_bytes(&self) -> Vec<u8> {
        let added = self.added.lock().map(|a| a.clone()).unwrap_or_default();
        added.into_iter().flatten().collect()
    }

    /// What a proof is keyed by: who, the statement and the whole signature (its key
    /// included), each length-prefixed so no two triples share a key.
    fn key(actor: &str, statement: &str, signature: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"chg proven signature v1\0");
        for part in [actor, statement, signature.trim()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.known.contains(key) || self.added.lock().is_ok_and(|a| a.contains(key))
    }

    fn add(&self, key: [u8; 32]) {
        if let Ok(mut a) = self.added.lock() {
            a.insert(key);
        }
    }
}

impl AllowedSigners {
    /// Parses the file; every line that cannot be used is a finding with its place (and is
    /// left out), so one bad line never disables the others silently.
    pub fn parse(file: &str, text: &str) -> (AllowedSigners, Vec<Finding>) {
        let mut signers = Vec::new();
        let mut findings = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let place = Some(Pos {
                line: u32::try_from(n + 1).unwrap_or(u32::MAX),
                column: u32::try_from(raw.len() - raw.trim_start().len() + 1).unwrap_or(1),
            });
            match parse_line(line) {
                Ok(s) => signers.push(s),
                Err(why) => findings.push(Finding::error(file, place, SIGNATURE, why)),
            }
        }
        (
            AllowedSigners {
                signers,
                verdicts: Mutex::default(),
                proven: OnceLock::new(),
            },
            findings,
        )
    }

    /// Uses (and adds to) `proven` for the cryptographic half of each verdict.
    pub fn remember_in(&self, proven: Arc<ProvenSignatures>) {
        let _ = self.proven.set(proven);
    }

    /// Every principal (email or pattern) with its line's fingerprint, for checks against
    /// the roles.
    pub fn principals(&self) -> impl Iterator<Item = (&str, &str)> {
        self.signers.iter().flat_map(|s| {
            s.principals
                .iter()
                .map(move |p| (p.as_str(), s.fingerprint.as_str()))
        })
    }

    /// The keys listed for `email` at `at` (patterns, `namespaces`, validity honoured).
    fn keys_for(&self, email: &str, at: Timestamp) -> impl Iterator<Item = &Signer> {
        self.signers.iter().filter(move |s| {
            principal_matches(&s.principals, email)
                && s.namespaces
                    .as_ref()
                    .is_none_or(|ns| ns.iter().any(|n| pattern_matches(n, NAMESPACE)))
                && s.valid_after.is_none_or(|t| at >= t)
                && s.valid_before.is_none_or(|t| at < t)
        })
    }

    /// Whether any key listed for `email` is limited in time (`valid-after`,
    /// `valid-before`): only then does the time a record is judged at matter.
    pub fn has_time_limits(&self, email: &str) -> bool {
        self.signers.iter().any(|s| {
            (s.valid_after.is_some() || s.valid_before.is_some())
                && principal_matches(&s.principals, email)
        })
    }

    /// Whether `key` (OpenSSH public key text) may sign for `email` at `at`.
    pub fn lists(&self, email: &str, at: Timestamp, key: &str) -> bool {
        let Ok(k) = PublicKey::from_openssh(key.trim()) else {
            return false;
        };
        self.keys_for(email, at)
            .any(|s| s.key.key_data() == k.key_data())
    }

    /// The verdict on `signature` for a record by `actor` at `at` over `statement`.
    pub fn verify(
        &self,
        actor: &str,
        at: Timestamp,
        statement: &str,
        signature: Option<&str>,
    ) -> Verdict {
        let Some(signature) = signature else {
            return Verdict::Missing;
        };
        let key = ProvenSignatures::key(actor, statement, signature);
        // A key's validity depends on the time it is judged at: part of the verdict's key.
        let mem = (key, at.as_second());
        if let Some(v) = self.verdicts.lock().ok().and_then(|m| m.get(&mem).cloned()) {
            return v;
        }
        let v = self.judge(actor, at, statement, signature, key);
        if let Ok(mut m) = self.verdicts.lock() {
            m.insert(mem, v.clone());
        }
        v
    }

    fn judge(
        &self,
        actor: &str,
        at: Timestamp,
        statement: &str,
        signature: &str,
        key: [u8; 32],
    ) -> Verdict {
        // A passkey's signature (SPEC 12.1), which `ssh-key` does not read.
        match crate::webauthn::PasskeySignature::from_pem(signature) {
            Ok(Some(passkey)) => return self.judge_passkey(actor, at, statement, &passkey, key),
            Err(e) => return Verdict::Corrupt(e.to_string()),
            Ok(None) => {}
        }
        let sig = match SshSig::from_pem(signature.trim()) {
            Ok(s) => s,
            Err(e) => return Verdict::Corrupt(e.to_string()),
        };
        if sig.namespace() != NAMESPACE {
            return Verdict::Corrupt(format!(
                "made for `{}` rather than chg records",
                sig.namespace()
            ));
        }
        self.judge_with(
            actor,
            at,
            sig.public_key(),
            key,
            false,
            |signer| match signer.key.verify(NAMESPACE, statement.as_bytes(), &sig) {
                Ok(()) => None,
                Err(_) => Some(None),
            },
        )
    }

    /// The verdict on a signature made with `public` by `actor` at `at`: foreign unless the
    /// allowed signers list that key for them then; valid when this signature was proven
    /// before or `verify` finds nothing wrong (`Some(None)`: made over another statement, a
    /// transplant; `Some(Some(why))`: corrupt).
    fn judge_with(
        &self,
        actor: &str,
        at: Timestamp,
        public: &ssh_key::public::KeyData,
        key: [u8; 32],
        passkey: bool,
        verify: impl FnOnce(&Signer) -> Option<Option<String>>,
    ) -> Verdict {
        let Some(signer) = self
            .keys_for(actor, at)
            .find(|s| s.key.key_data() == public)
        else {
            let fingerprint = PublicKey::from(public.clone())
                .fingerprint(HashAlg::Sha256)
                .to_string();
            return Verdict::Foreign { fingerprint };
        };
        let fingerprint = signer.fingerprint.clone();
        let proven = self.proven.get();
        if proven.is_some_and(|p| p.contains(&key)) {
            return Verdict::Valid {
                fingerprint,
                passkey,
                attested: None,
            };
        }
        match verify(signer) {
            None => {
                if let Some(p) = proven {
                    p.add(key);
                }
                Verdict::Valid {
                    fingerprint,
                    passkey,
                    attested: None,
                }
            }
            Some(None) => Verdict::Transplanted { fingerprint },
            Some(Some(why)) => Verdict::Corrupt(why),
        }
    }
}

impl AllowedSigners {
    /// [`AllowedSigners::judge`] for a passkey's signature: the same verdicts, with what
    /// chg requires of passkeys beyond OpenSSH (user verification, flags, `crossOrigin`, an
    /// origin of the key's relying party; see [`crate::webauthn`]) a corrupt signature.
    fn judge_passkey(
        &self,
        actor: &str,
        at: Timestamp,
        statement: &str,
        sig: &crate::webauthn::PasskeySignature,
        key: [u8; 32],
    ) -> Verdict {
        use crate::webauthn::PasskeyError;
        self.judge_with(actor, at, &sig.public_key, key, true, |_| {
            match sig.check(statement.as_bytes(), None) {
                Ok(()) => None,
                Err(PasskeyError::Mismatch(_)) => Some(None),
                Err(e) => Some(Some(e.to_string())),
            }
        })
    }

    /// The passkey keys (`sk-ecdsa-sha2-nistp256@openssh.com`) listed for `email` at `at`
    /// whose relying party is `rp_id`: the keys a passkey approval by `email` may be made with.
    pub fn passkeys_for(&self, email: &str, at: Timestamp, rp_id: &str) -> Vec<PublicKey> {
        self.keys_for(email, at)
            .filter(|s| crate::webauthn::rp_id(&s.key) == Some(rp_id))
            .map(|s| s.key.clone())
            .collect()
    }
}

/// An allowed signers file `text` with a line for `email` and the public key `key` (OpenSSH
/// form, as in a `.pub` file) added at its end, and the key's type and fingerprint, for
/// `chg policy signers add`. Refused: an email that is not one principal, a key that does
/// not parse or is weak, and the same key listed for the email already.
pub fn with_signer(
    text: &str,
    email: &str,
    key: &str,
) -> std::result::Result<(String, String), String> {
    // One address: local@domain, nothing OpenSSH would read otherwise (a leading `#` is a
    // comment there, a backslash or quote changes the field).
    // Or the principal `chg serve`'s attesting key is listed under by default.
    let one_address = email == DEFAULT_ATTESTING_SIGNER
        || email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !one_address
        || email.starts_with('#')
        || email.contains(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '"' | '\\' | '\'')
        })
        || is_pattern(email)
    {
        return Err(format!(
            "`{email}` is not one email: a signer is named by the email they act as (no spaces, commas, quotes or patterns)"
        ));
    }
    let key = key.trim();
    if key.contains("PRIVATE KEY") {
        return Err("that is a private key: give its public half (the .pub file)".into());
    }
    let line = format!("{email} {}", key.lines().next().unwrap_or(""));
    let signer = parse_line(&line)?;
    let (existing, _) = AllowedSigners::parse("allowed_signers", text);
    if existing
        .signers
        .iter()
        .any(|s| s.principals.iter().any(|p| p == email) && s.fingerprint == signer.fingerprint)
    {
        return Err(format!(
            "{email} is already listed with this key ({})",
            signer.fingerprint
        ));
    }
    // The comment is left out: the email names the person, and a comment is unverified.
    let entry = format!(
        "{email} {}",
        signer
            .key
            .to_openssh()
            .map_err(|e| format!("cannot write the key: {e}"))?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&entry);
    out.push('\n');
    Ok((
        out,
        format!("{} {}", signer.key.algorithm(), signer.fingerprint),
    ))
}

/// An allowed signers file `text` without the lines that list `email` alone (with the key
/// of fingerprint `fingerprint`, where given), and how many went; for `chg policy signers
/// remove`. Lines naming others too are left: removing a shared line is for a person.
pub fn without_signer(text: &str, email: &str, fingerprint: Option<&str>) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let drop = !t.starts_with('#')
            && !t.is_empty()
            && parse_line(t).is_ok_and(|s| {
                s.principals == [email] && fingerprint.is_none_or(|f| s.fingerprint == f)
            });
        if drop {
            removed += 1;
        } else {
            out.push_str(line);
        }
    }
    (out, removed)
}

/// The smallest RSA modulus chg accepts (OpenSSH refuses smaller keys since 8.8).
const MIN_RSA_BITS: usize = 2048;

/// One line: `principals [options] keytype base64 [comment]`.
fn parse_line(line: &str) -> std::result::Result<Signer, String> {
    let (principals, rest) = split_field(line);
    if principals.is_empty() || rest.is_empty() {
        return Err("a line names the signer's email(s) and then their public key".into());
    }
    let principals: Vec<String> = principals.split(',').map(str::to_owned).collect();
    if principals.iter().any(|p| p.is_empty()) {
        return Err(format!("`{principals:?}` has an empty principal"));
    }
    // Options come before the key when the next field is not a key type.
    let (options, key_text) =
        if rest.starts_with("ssh-") || rest.starts_with("ecdsa-") || rest.starts_with("sk-") {
            ("", rest)
        } else {
            split_field(rest)
        };
    let mut signer = Signer {
        principals,
        key: PublicKey::from_openssh(key_text.trim())
            .map_err(|e| format!("not a public key in OpenSSH form ({e})"))?,
        fingerprint: String::new(),
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    signer.fingerprint = signer.key.fingerprint(HashAlg::Sha256).to_string();
    if let Some(rsa) = signer.key.key_data().rsa() {
        // Leading zero bytes of the modulus do not count towards its size.
        let n = rsa.n.as_positive_bytes().unwrap_or(rsa.n.as_bytes());
        let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "an RSA key of {bits} bits is too weak to prove anything (at least {MIN_RSA_BITS} bits, as OpenSSH requires; ed25519 is better)"
            ));
        }
    }
    for opt in split_options(options) {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.to_ascii_lowercase(), Some(v.trim_matches('"').to_owned())),
            None => (opt.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("cert-authority", _) => {
                return Err(
                    "cert-authority is not supported: list each signer's own key (chg verifies plain keys, not certificates)"
                        .into(),
                );
            }
            ("namespaces", Some(v)) => {
                signer.namespaces = Some(v.split(',').map(str::to_owned).collect());
            }
            ("valid-after", Some(v)) => signer.valid_after = Some(openssh_time(&v)?),
            ("valid-before", Some(v)) => signer.valid_before = Some(openssh_time(&v)?),
            (other, _) => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(signer)
}

/// The first whitespace-separated field (quotes keep spaces) and the rest.
fn split_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], s[i..].trim_start()),
            _ => {}
        }
    }
    (s, "")
}

/// Comma-separated options, commas inside quotes kept.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// `YYYYMMDD[HHMM[SS]]` with an optional `Z`, as ssh-keygen takes it (UTC with `Z`; chg
/// reads it as UTC either way, so a verdict does not depend on where it is reached).
fn openssh_time(v: &str) -> std::result::Result<Timestamp, String> {
    let d = v.trim_end_matches(['Z', 'z']);
    let bad = || format!("`{v}` is not a time like 20250131 or 202501311200");
    if !d.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&d.len()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| d.get(r).and_then(|x| x.parse::<i16>().ok());
    let (y, m, day) = (
        n(0..4).ok_or_else(bad)?,
        n(4..6).ok_or_else(bad)?,
        n(6..8).ok_or_else(bad)?,
    );
    let (hh, mm, ss) = (
        n(8..10).unwrap_or(0),
        n(10..12).unwrap_or(0),
        n(12..14).unwrap_or(0),
    );
    jiff::civil::DateTime::new(y, m as i8, day as i8, hh as i8, mm as i8, ss as i8, 0)
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(bad)
}

/// Whether the principals `pattern` (as an allowed signers line writes them) cover `email`.
pub fn covers(pattern: &str, email: &str) -> bool {
    let list: Vec<String> = pattern.split(',').map(str::to_owned).collect();
    principal_matches(&list, email)
}

/// OpenSSH's principal match: comma-separated patterns with `*` and `?`, `!` negating.
fn principal_matches(patterns: &[String], email: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if pattern_matches(neg, email) {
                return false;
            }
        } else if pattern_matches(p, email) {
            matched = true;
        }
    }
    matched
}

/// Glob with `*` and `?`, case-insensitive as emails are compared elsewhere in chg.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    // Case matters, as it does for `ssh-keygen -Y verify -I`: chg must accept exactly
    // what an auditor's own check with OpenSSH accepts.
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether a principal is a pattern rather than one email.
pub fn is_pattern(principal: &str) -> bool {
    principal.contains(['*', '?', '!'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_openssh() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(principal_matches(&p(&["*@example.com"]), "Ann@example.com"));
        // Case matters, as for `ssh-keygen -Y verify -I`.
        assert!(!principal_matches(
            &p(&["*@example.com"]),
            "Ann@Example.com"
        ));
        assert!(!principal_matches(
            &p(&["CM@EXAMPLE.COM"]),
            "cm@example.com"
        ));
        assert!(!principal_matches(
            &p(&["*@example.com", "!eve@example.com"]),
            "eve@example.com"
        ));
        assert!(principal_matches(&p(&["a?n@x"]), "ann@x"));
        assert!(!principal_matches(&p(&["ann@x"]), "ann@xy"));
    }

    #[test]
    fn bad_lines_are_findings_with_places() {
        let text = "# comment\n\nann@x garbage\nbob@x cert-authority ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFk3VJ0pJtJQ3K9wXz2UZ0a1xY1j3YbXc1x1vZl0mH9z\n   \n";
        let (s, f) = AllowedSigners::parse("policy/allowed_signers", text);
        assert_eq!(s.signers.len(), 0);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].pos.unwrap().line, 3);
        assert!(f[1].message.contains("cert-authority"), "{f:?}");
    }

    #[test]
    fn openssh_times() {
        assert_eq!(
            openssh_time("20250131").unwrap().to_string(),
            "2025-01-31T00:00:00Z"
        );
        assert_eq!(
            openssh_time("202501311230Z").unwrap().to_string(),
            "2025-01-31T12:30:00Z"
        );
        assert!(openssh_time("2025-01-31").is_err());
    }
}
