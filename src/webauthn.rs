//! Passkey signatures (SPEC 12.1): a WebAuthn assertion made in the browser, turned into an
//! ordinary SSHSIG that plain `ssh-keygen -Y verify -n chg` accepts.
//!
//! The passkey's public key becomes an OpenSSH `sk-ecdsa-sha2-nistp256@openssh.com` key whose
//! *application* is the relying party id (the server's host name); the WebAuthn challenge is
//! the SSHSIG signed-data blob of the record's statement itself; the browser's answer
//! (clientDataJSON, authenticatorData, the DER signature) fills the
//! `webauthn-sk-ecdsa-sha2-nistp256@openssh.com` signature that OpenSSH's PROTOCOL.u2f
//! defines. OpenSSH checks the challenge, the RP id hash and the ECDSA signature; chg
//! checks, beyond that, what a browser guarantees and a hand-made assertion need not: the
//! origin, user presence and verification, the AT and ED flags and `crossOrigin`.
//!
//! A stored record is judged without the server: the origin then is the one the signature
//! claims, which must at least belong to the key's RP id (`https://` on that host or one of
//! its subdomains, or `http://localhost`). The server, which knows its public origin,
//! requires that exact origin before it commits anything ([`PasskeySignature::check`]).
//!
//! No cryptography is written here: `p256` verifies ECDSA, `sha2` hashes, `ssh-key` and
//! `ssh-encoding` read and write the OpenSSH encodings.

use base64ct::{Base64UrlUnpadded, Encoding as _};
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
use ssh_encoding::pem::PemLabel;
use ssh_encoding::{CheckedSum, Decode, DecodePem, Encode, EncodePem, LineEnding, Reader, Writer};
use ssh_key::public::{KeyData, SkEcdsaSha2NistP256};
use ssh_key::{HashAlg, Mpint, PublicKey, SshSig};

/// The OpenSSH key type of a passkey.
pub const KEY_TYPE: &str = "sk-ecdsa-sha2-nistp256@openssh.com";

/// The OpenSSH signature type of a WebAuthn assertion (PROTOCOL.u2f).
pub const SIGNATURE_TYPE: &str = "webauthn-sk-ecdsa-sha2-nistp256@openssh.com";

/// The WebAuthn COSE algorithm a passkey must use (ES256): OpenSSH has no WebAuthn form for
/// any other.
pub const ES256: i64 = -7;

/// authenticatorData flags (WebAuthn §6.1).
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

/// authenticatorData: rpIdHash (32), flags (1), signCount (4), then extensions.
const AUTH_DATA_MIN: usize = 37;

/// The SSHSIG namespace of chg's records (`crate::signing`'s, which this module does not
/// import: signing reads passkey signatures through it; the tests assert they agree).
const NAMESPACE: &str = "chg";

/// The version of SSHSIG written (the only one there is).
const SSHSIG_VERSION: u32 = 1;

/// Why a passkey signature is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    /// The input cannot be read as what it claims to be.
    #[error("{0}")]
    Malformed(String),
    /// A well-formed signature that is not this key's over this statement: made over
    /// another statement (or changed since), or by another key.
    #[error("{0}")]
    Mismatch(String),
    /// A valid signature that chg does not take: another origin, no user verification, a
    /// cross-origin frame, inconsistent flags.
    #[error("{0}")]
    Refused(String),
}

fn malformed(what: impl std::fmt::Display) -> PasskeyError {
    PasskeyError::Malformed(what.to_string())
}

/// The SSHSIG signed-data blob of `statement` (namespace `chg`, SHA-512): what the passkey
/// signs, as the WebAuthn challenge, byte for byte.
pub fn signed_data(statement: &[u8]) -> Vec<u8> {
    blob(HashAlg::Sha512, statement)
}

fn blob(hash: HashAlg, statement: &[u8]) -> Vec<u8> {
    SshSig::signed_data(NAMESPACE, hash, statement).expect("the namespace is not empty")
}

/// [`signed_data`], base64url without padding: the challenge's text in clientDataJSON.
pub fn challenge(statement: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(&signed_data(statement))
}

/// Base64url (padding optional), as `navigator.credentials` answers are sent.
pub fn base64url_decode(field: &str, text: &str) -> Result<Vec<u8>, PasskeyError> {
    Base64UrlUnpadded::decode_vec(text.trim().trim_end_matches('='))
        .map_err(|_| malformed(format!("{field} is not base64url")))
}

/// Base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Whether `rp_id` can be a relying party id: a host name (no scheme, port or path).
fn valid_rp_id(rp_id: &str) -> bool {
    !rp_id.is_empty()
        && rp_id.len() <= 253
        && rp_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

/// The OpenSSH public key of a passkey, from the SubjectPublicKeyInfo DER that
/// `response.getPublicKey()` gives at enrolment: the P-256 point, with the application
/// `rp_id`. Refused: any key but P-256 (the passkey was not made with ES256).
pub fn public_key_from_spki(spki_der: &[u8], rp_id: &str) -> Result<PublicKey, PasskeyError> {
    use p256::pkcs8::DecodePublicKey as _;
    if !valid_rp_id(rp_id) {
        return Err(malformed(format!(
            "`{rp_id}` is not a relying party id (a host name)"
        )));
    }
    let key = p256::PublicKey::from_public_key_der(spki_der).map_err(|_| {
        malformed("the public key is not a P-256 key in SubjectPublicKeyInfo form (the passkey must use ES256)")
    })?;
    let point = p256::EncodedPoint::from(key);
    let sk = SkEcdsaSha2NistP256::new(point, rp_id);
    Ok(PublicKey::from(KeyData::SkEcdsaSha2NistP256(sk)))
}

/// The allowed-signers line of `email`'s passkey `key`: `email sk-ecdsa-sha2-nistp256@openssh.com AAAA…`.
pub fn allowed_signers_line(email: &str, key: &PublicKey) -> String {
    let text = key.to_openssh().unwrap_or_default();
    let mut fields = text.split_whitespace();
    let (kind, body) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    format!("{email} {kind} {body}")
}

/// The relying party id (application) of a passkey key; `None` for any other key.
pub fn rp_id(key: &PublicKey) -> Option<&str> {
    match key.key_data() {
        KeyData::SkEcdsaSha2NistP256(sk) => Some(sk.application()),
        _ => None,
    }
}

/// What `navigator.credentials.get()` answered, decoded from base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `response.clientDataJSON`, exactly as the browser returned it.
    pub client_data_json: Vec<u8>,
    /// `response.authenticatorData`.
    pub authenticator_data: Vec<u8>,
    /// `response.signature`: an ASN.1 DER ECDSA signature.
    pub signature: Vec<u8>,
}

/// The parts of clientDataJSON chg reads (the rest is left as the browser wrote it).
#[derive(Debug, serde::Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

fn client_data(json: &[u8]) -> Result<ClientData, PasskeyError> {
    serde_json::from_slice(json)
        .map_err(|e| malformed(format!("clientDataJSON is not the browser's JSON ({e})")))
}

/// A `webauthn-sk-ecdsa-sha2-nistp256@openssh.com` SSHSIG, read or assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeySignature {
    /// The signing key (`sk-ecdsa-sha2-nistp256@openssh.com`).
    pub public_key: KeyData,
    /// The SSHSIG namespace (`chg` for records).
    pub namespace: String,
    reserved: Vec<u8>,
    /// The hash of the signed data (`sha512` as chg makes them; OpenSSH allows `sha256`).
    pub hash_alg: HashAlg,
    r: Mpint,
    s: Mpint,
    /// authenticatorData's flags.
    pub flags: u8,
    /// authenticatorData's signature counter.
    pub counter: u32,
    /// The origin the signature claims (also in clientDataJSON).
    pub origin: String,
    /// clientDataJSON, exactly as the browser returned it.
    pub client_data: Vec<u8>,
    /// authenticatorData's extensions (empty without ED).
    pub extensions: Vec<u8>,
}

impl PasskeySignature {
    /// The SSHSIG of an assertion by `key` (a passkey key, [`public_key_from_spki`]), ready
    /// to check and to armor. Only the form is checked here ([`PasskeySignature::check`] does
    /// the rest): the DER signature becomes the mpints r and s, the flags, counter and
    /// extensions come from authenticatorData, the origin from clientDataJSON.
    pub fn assemble(key: &PublicKey, assertion: &Assertion) -> Result<Self, PasskeyError> {
        if rp_id(key).is_none() {
            return Err(malformed(format!(
                "{} is not a passkey key ({KEY_TYPE})",
                key.algorithm()
            )));
        }
        let auth = &assertion.authenticator_data;
        if auth.len() < AUTH_DATA_MIN {
            return Err(malformed(format!(
                "authenticatorData is {} bytes, shorter than the {AUTH_DATA_MIN} every assertion has",
                auth.len()
            )));
        }
        let cd = client_data(&assertion.client_data_json)?;
        let der = p256::ecdsa::Signature::from_der(&assertion.signature)
            .map_err(|_| malformed("the signature is not a DER ECDSA P-256 signature"))?;
        let (r, s) = der.split_bytes();
        let mpint = |b: &[u8]| Mpint::from_positive_bytes(b).map_err(malformed);
        Ok(PasskeySignature {
            public_key: key.key_data().clone(),
            namespace: NAMESPACE.to_owned(),
            reserved: Vec::new(),
            hash_alg: HashAlg::Sha512,
            r: mpint(&r)?,
            s: mpint(&s)?,
            flags: auth[32],
            counter: u32::from_be_bytes([auth[33], auth[34], auth[35], auth[36]]),
            origin: cd.origin,
            client_data: assertion.client_data_json.clone(),
            extensions: auth[AUTH_DATA_MIN..].to_vec(),
        })
    }

    /// The armored form (`-----BEGIN SSH SIGNATURE-----`), as `ssh-keygen -Y sign` writes it.
    pub fn to_pem(&self) -> Result<String, PasskeyError> {
        self.encode_pem_string(LineEnding::LF).map_err(malformed)
    }

    /// Reads an armored SSHSIG: `Ok(None)` when it is a signature of another type (left to
    /// `ssh-key`), an error when it is a passkey signature that cannot be read.
    pub fn from_pem(text: &str) -> Result<Option<Self>, PasskeyError> {
        // Only the signature's type is looked at first: whatever else fails to read here is
        // for the caller's own parser to report.
        let Ok(envelope) = Envelope::decode_pem(text.trim()) else {
            return Ok(None);
        };
        let mut sig = envelope.signature.as_slice();
        let Ok(kind) = String::decode(&mut sig) else {
            return Ok(None);
        };
        if kind != SIGNATURE_TYPE {
            return Ok(None);
        }
        let bad = |what: &str| malformed(format!("a passkey signature with {what}"));
        let public_key = KeyData::decode(&mut envelope.public_key.as_slice())
            .map_err(|_| bad("an unreadable public key"))?;
        if !matches!(public_key, KeyData::SkEcdsaSha2NistP256(_)) {
            return Err(bad(&format!("a {} key", public_key.algorithm())));
        }
        let hash_alg = HashAlg::new(&envelope.hash_alg)
            .map_err(|_| bad(&format!("the hash `{}`", envelope.hash_alg)))?;
        let body = |sig: &mut &[u8]| -> ssh_key::Result<_> {
            let (r, s) = sig.read_prefixed(|rs| -> ssh_key::Result<_> {
                let r = Mpint::decode(rs)?;
                let s = Mpint::decode(rs)?;
                if !rs.is_finished() {
                    return Err(ssh_encoding::Error::Length.into());
                }
                Ok((r, s))
            })?;
            let flags = u8::decode(sig)?;
            let counter = u32::decode(sig)?;
            let origin = String::decode(sig)?;
            let client_data = Vec::<u8>::decode(sig)?;
            let extensions = Vec::<u8>::decode(sig)?;
            Ok((r, s, flags, counter, origin, client_data, extensions))
        };
        let (r, s, flags, counter, origin, client_data, extensions) =
            body(&mut sig).map_err(|_| bad("an unreadable signature field"))?;
        if !sig.is_empty() {
            return Err(bad("bytes after its last field"));
        }
        Ok(Some(PasskeySignature {
            public_key,
            namespace: envelope.namespace,
            reserved: envelope.reserved,
            hash_alg,
            r,
            s,
            flags,
            counter,
            origin,
            client_data,
            extensions,
        }))
    }

    /// The key's relying party id.
    fn application(&self) -> &str {
        match &self.public_key {
            KeyData::SkEcdsaSha2NistP256(sk) => sk.application(),
            _ => "",
        }
    }

    /// What `ssh-keygen -Y verify -n chg` checks (OpenSSH's `ssh-ecdsa-sk.c`): the
    /// namespace, the challenge in clientDataJSON being this statement's signed-data blob
    /// and the origin the signature carries, the AT flag clear and ED matching the
    /// extensions, and the ECDSA P-256 signature over authenticatorData (rebuilt from the
    /// key's application, the flags, counter and extensions) ‖ SHA-256(clientDataJSON).
    /// High-S and low-S signatures are both accepted, as OpenSSH does.
    pub fn verify_openssh(&self, statement: &[u8]) -> Result<(), PasskeyError> {
        if self.namespace != NAMESPACE {
            return Err(malformed(format!(
                "made for `{}` rather than chg records",
                self.namespace
            )));
        }
        if self.origin.contains('"') {
            return Err(malformed("its origin contains a quote"));
        }
        if self.flags & AT != 0 {
            return Err(PasskeyError::Refused(
                "its authenticator data carries attested credential data (AT flag), which an assertion never has".into(),
            ));
        }
        let has_extensions = !self.extensions.is_empty();
        if (self.flags & ED != 0) != has_extensions {
            return Err(PasskeyError::Refused(
                "its ED flag does not match its extensions".into(),
            ));
        }
        let prefix = format!(
            "{{\"type\":\"webauthn.get\",\"challenge\":\"{}\",\"origin\":\"{}\"",
            Base64UrlUnpadded::encode_string(&blob(self.hash_alg, statement)),
            self.origin
        );
        if !self.client_data.starts_with(prefix.as_bytes()) {
            return Err(PasskeyError::Mismatch(
                "it was made over another statement (the challenge it answers is not this record's)".into(),
            ));
        }
        self.verify_ecdsa()
    }

    /// The ECDSA P-256 signature over authenticatorData (rebuilt from the key's
    /// application, the flags, counter and extensions) ‖ SHA-256(clientDataJSON): whether
    /// this key made it, whatever it says.
    pub fn verify_ecdsa(&self) -> Result<(), PasskeyError> {
        let KeyData::SkEcdsaSha2NistP256(sk) = &self.public_key else {
            return Err(malformed("not a passkey key"));
        };
        let key = p256::ecdsa::VerifyingKey::from_encoded_point(sk.ec_point())
            .map_err(|_| malformed("its public key is not a P-256 point"))?;
        let mut rs = [0u8; 64];
        for (part, end) in [(&self.r, 32), (&self.s, 64)] {
            let b = part
                .as_positive_bytes()
                .filter(|b| b.len() <= 32)
                .ok_or_else(|| malformed("its r or s is not a P-256 scalar"))?;
            rs[end - b.len()..end].copy_from_slice(b);
        }
        let signature = p256::ecdsa::Signature::from_slice(&rs)
            .map_err(|_| malformed("its r or s is not a P-256 scalar"))?;
        let mut signed = Vec::with_capacity(AUTH_DATA_MIN + self.extensions.len() + 32);
        signed.extend_from_slice(&Sha256::digest(sk.application().as_bytes()));
        signed.push(self.flags);
        signed.extend_from_slice(&self.counter.to_be_bytes());
        signed.extend_from_slice(&self.extensions);
        signed.extend_from_slice(&Sha256::digest(&self.client_data));
        key.verify(&signed, &signature).map_err(|_| {
            PasskeyError::Mismatch(
                "its ECDSA signature does not verify for this key (another credential, or changed after signing)".into(),
            )
        })
    }

    /// Everything chg requires of a passkey signature over `statement`: what OpenSSH checks
    /// ([`PasskeySignature::verify_openssh`]), and beyond it: clientDataJSON of type
    /// `webauthn.get` that is not `crossOrigin`, user presence and user verification, and the
    /// origin: exactly `origin` where it is known (the server's public origin), otherwise
    /// one that belongs to the key's relying party id (a stored record judged offline).
    pub fn check(&self, statement: &[u8], origin: Option<&str>) -> Result<(), PasskeyError> {
        self.verify_openssh(statement)?;
        let cd = client_data(&self.client_data)?;
        if cd.kind != "webauthn.get" || cd.origin != self.origin {
            return Err(malformed(
                "its clientDataJSON does not say what its prefix says",
            ));
        }
        if cd.cross_origin == Some(true) {
            return Err(PasskeyError::Refused(
                "it was made in a cross-origin frame (crossOrigin: true)".into(),
            ));
        }
        if self.flags & UP == 0 {
            return Err(PasskeyError::Refused(
                "the authenticator did not confirm user presence (UP flag)".into(),
            ));
        }
        if self.flags & UV == 0 {
            return Err(PasskeyError::Refused(
                "the authenticator did not verify the user (UV flag: PIN, biometrics)".into(),
            ));
        }
        match origin {
            Some(expected) if self.origin != expected => Err(PasskeyError::Refused(format!(
                "it was made for the origin {}, not {expected}",
                self.origin
            ))),
            Some(_) => Ok(()),
            None if origin_fits(&self.origin, self.application()) => Ok(()),
            None => Err(PasskeyError::Refused(format!(
                "its origin {} does not belong to the passkey's relying party {}",
                self.origin,
                self.application()
            ))),
        }
    }
}

/// A passkey answer as clients send it (`POST …/approve`'s `passkey` field): the fields of
/// `navigator.credentials.get()`'s response, base64url.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAnswer {
    /// `response.clientDataJSON`.
    pub client_data_json: String,
    /// `response.authenticatorData`.
    pub authenticator_data: String,
    /// `response.signature` (DER).
    pub signature: String,
    /// The credential's id (`rawId`); informational: the key is found by its signature.
    #[serde(default)]
    pub credential_id: Option<String>,
}

impl PasskeyAnswer {
    /// The decoded assertion; an error names the field that is not base64url.
    pub fn assertion(&self) -> Result<Assertion, PasskeyError> {
        Ok(Assertion {
            client_data_json: base64url_decode("client_data_json", &self.client_data_json)?,
            authenticator_data: base64url_decode("authenticator_data", &self.authenticator_data)?,
            signature: base64url_decode("signature", &self.signature)?,
        })
    }
}

/// Whether a browser could have made an assertion at `origin` for the relying party id
/// `rp_id`: `https://` on the RP id or a subdomain of it, or `http://localhost`.
pub fn origin_fits(origin: &str, rp_id: &str) -> bool {
    let (secure, rest) = if let Some(r) = origin.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = origin.strip_prefix("http://") {
        (false, r)
    } else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => rest,
    };
    if host.contains(['/', '@', '?', '#']) || host.is_empty() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let rp = rp_id.to_ascii_lowercase();
    let belongs = host == rp || host.ends_with(&format!(".{rp}"));
    belongs && (secure || host == "localhost")
}

/// The origin (`scheme://host[:port]`) and relying party id (host) of a public URL, as
/// `chg serve --public-url` names it.
pub fn origin_and_rp_id(public_url: &str) -> Result<(String, String), PasskeyError> {
    let bad = || {
        malformed(format!(
            "`{public_url}` is not a URL like https://chg.example.com or http://localhost:8080"
        ))
    };
    let (scheme, rest) = public_url.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.starts_with('[') {
        return Err(bad());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => (h, Some(p)),
        Some(_) => return Err(bad()),
        None => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    if !valid_rp_id(&host) {
        return Err(bad());
    }
    let default_port = if scheme == "https" { "443" } else { "80" };
    let origin = match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    };
    Ok((origin, host))
}

/// The SSHSIG envelope, its key and signature left as bytes (read before the signature's
/// type is known).
struct Envelope {
    public_key: Vec<u8>,
    namespace: String,
    reserved: Vec<u8>,
    hash_alg: String,
    signature: Vec<u8>,
}

impl PemLabel for Envelope {
    const PEM_LABEL: &'static str = "SSH SIGNATURE";
}

impl Decode for Envelope {
    type Error = ssh_encoding::Error;

    fn decode(reader: &mut impl Reader) -> ssh_encoding::Result<Self> {
        let mut magic = [0u8; 6];
        reader.read(&mut magic)?;
        if &magic != b"SSHSIG" || u32::decode(reader)? != SSHSIG_VERSION {
            return Err(ssh_encoding::Error::CharacterEncoding);
        }
        Ok(Envelope {
            public_key: Vec::decode(reader)?,
            namespace: String::decode(reader)?,
            reserved: Vec::decode(reader)?,
            hash_alg: String::decode(reader)?,
            signature: Vec::decode(reader)?,
        })
    }
}

impl PasskeySignature {
    fn rs_len(&self) -> ssh_encoding::Result<usize> {
        [self.r.encoded_len()?, self.s.encoded_len()?].checked_sum()
    }

    fn signature_len(&self) -> ssh_encoding::Result<usize> {
        [
            SIGNATURE_TYPE.encoded_len()?,
            4 + self.rs_len()?,
            self.flags.encoded_len()?,
            self.counter.encoded_len()?,
            self.origin.encoded_len()?,
            self.client_data.encoded_len()?,
            self.extensions.encoded_len()?,
        ]
        .checked_sum()
    }
}

impl PemLabel for PasskeySignature {
    const PEM_LABEL: &'static str = "SSH SIGNATURE";
}

impl Encode for PasskeySignature {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        [
            6,
            4,
            self.public_key.encoded_len_prefixed()?,
            self.namespace.encoded_len()?,
            self.reserved.encoded_len()?,
            self.hash_alg.as_str().encoded_len()?,
            4 + self.signature_len()?,
        ]
        .checked_sum()
    }

    fn encode(&self, w: &mut impl Writer) -> ssh_encoding::Result<()> {
        w.write(b"SSHSIG")?;
        SSHSIG_VERSION.encode(w)?;
        self.public_key.encode_prefixed(w)?;
        self.namespace.encode(w)?;
        self.reserved.encode(w)?;
        self.hash_alg.as_str().encode(w)?;
        self.signature_len()?.encode(w)?;
        SIGNATURE_TYPE.encode(w)?;
        self.rs_len()?.encode(w)?;
        self.r.encode(w)?;
        self.s.encode(w)?;
        self.flags.encode(w)?;
        self.counter.encode(w)?;
        self.origin.encode(w)?;
        self.client_data.encode(w)?;
        self.extensions.encode(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    const ORIGIN: &str = "https://chg.example.com";
    const RP: &str = "chg.example.com";
    const STATEMENT: &[u8] = b"chg signed record v1\naction: approve\nactor: cm@example.com\n";

    /// What a browser's authenticator would answer.
    struct Made {
        origin: String,
        flags: u8,
        cross_origin: Option<bool>,
        extensions: Vec<u8>,
        rp_id: String,
        high_s: bool,
    }

    impl Default for Made {
        fn default() -> Self {
            Made {
                origin: ORIGIN.into(),
                flags: UP | UV,
                cross_origin: Some(false),
                extensions: Vec::new(),
                rp_id: RP.into(),
                high_s: false,
            }
        }
    }

    fn key(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let spki = p256::PublicKey::from(sk.verifying_key())
            .to_public_key_der()
            .unwrap();
        let public = public_key_from_spki(spki.as_bytes(), RP).unwrap();
        (sk, public)
    }

    fn assert_with(sk: &SigningKey, statement: &[u8], m: &Made) -> Assertion {
        let mut cd = format!(
            "{{\"type\":\"webauthn.get\",\"challenge\":\"{}\",\"origin\":\"{}\"",
            challenge(statement),
            m.origin
        );
        if let Some(c) = m.cross_origin {
            cd.push_str(&format!(",\"crossOrigin\":{c}"));
        }
        cd.push('}');
        let mut auth = Sha256::digest(m.rp_id.as_bytes()).to_vec();
        auth.push(m.flags);
        auth.extend_from_slice(&7u32.to_be_bytes());
        auth.extend_from_slice(&m.extensions);
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(cd.as_bytes()));
        let sig: p256::ecdsa::Signature = sk.sign(&signed);
        let sig = sig.normalize_s().unwrap_or(sig);
        let sig = if m.high_s {
            let (r, s) = sig.split_scalars();
            p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap()
        } else {
            sig
        };
        Assertion {
            client_data_json: cd.into_bytes(),
            authenticator_data: auth,
            signature: sig.to_der().as_bytes().to_vec(),
        }
    }

    fn signed(m: &Made) -> (PublicKey, PasskeySignature) {
        let (sk, public) = key(1);
        let a = assert_with(&sk, STATEMENT, m);
        (
            public.clone(),
            PasskeySignature::assemble(&public, &a).unwrap(),
        )
    }

    #[test]
    fn the_namespace_is_the_records_one() {
        assert_eq!(NAMESPACE, crate::signing::NAMESPACE);
    }

    #[test]
    fn the_challenge_is_the_sshsig_blob_itself() {
        let blob = signed_data(b"x");
        let mut want = b"SSHSIG".to_vec();
        for part in [&b"chg"[..], b"", b"sha512", &sha2::Sha512::digest(b"x")[..]] {
            want.extend_from_slice(&(part.len() as u32).to_be_bytes());
            want.extend_from_slice(part);
        }
        assert_eq!(blob, want);
        assert_eq!(base64url_decode("c", &challenge(b"x")).unwrap(), want);
    }

    #[test]
    fn an_spki_key_becomes_an_sk_ecdsa_line_with_the_rp_id() {
        let (sk, public) = key(1);
        assert_eq!(rp_id(&public), Some(RP));
        let line = allowed_signers_line("cm@example.com", &public);
        assert!(
            line.starts_with("cm@example.com sk-ecdsa-sha2-nistp256@openssh.com AAAA"),
            "{line}"
        );
        let back = PublicKey::from_openssh(line.split_once(' ').unwrap().1).unwrap();
        let KeyData::SkEcdsaSha2NistP256(k) = back.key_data() else {
            panic!()
        };
        assert_eq!(k.application(), RP);
        assert_eq!(
            k.ec_point().as_bytes(),
            sk.verifying_key().to_encoded_point(false).as_bytes()
        );
        // Not a P-256 key, not an RP id.
        assert!(public_key_from_spki(b"\x30\x03\x02\x01\x00", RP).is_err());
        let spki = p256::PublicKey::from(sk.verifying_key())
            .to_public_key_der()
            .unwrap();
        assert!(public_key_from_spki(spki.as_bytes(), "https://x").is_err());
    }

    #[test]
    fn an_assembled_signature_survives_its_armor_and_verifies() {
        for high_s in [false, true] {
            let (_, sig) = signed(&Made {
                high_s,
                ..Made::default()
            });
            let pem = sig.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN SSH SIGNATURE-----\n"), "{pem}");
            let back = PasskeySignature::from_pem(&pem).unwrap().unwrap();
            assert_eq!(back, sig);
            back.check(STATEMENT, Some(ORIGIN)).unwrap();
            back.check(STATEMENT, None).unwrap();
        }
    }

    #[test]
    fn other_signature_types_are_left_to_ssh_key() {
        let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]));
        let pem = key
            .sign(NAMESPACE, HashAlg::Sha512, STATEMENT)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(PasskeySignature::from_pem(&pem), Ok(None));
        assert_eq!(PasskeySignature::from_pem("garbage"), Ok(None));
    }

    #[test]
    fn refusals() {
        let refused = |m: Made, origin: Option<&str>| {
            let (_, sig) = signed(&m);
            sig.check(STATEMENT, origin).unwrap_err()
        };
        // Another origin: refused where the origin is known; offline, one outside the RP id.
        let e = refused(
            Made {
                origin: "https://evil.example.net".into(),
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(
            matches!(e, PasskeyError::Refused(ref m) if m.contains("evil.example.net")),
            "{e}"
        );
        assert!(matches!(
            refused(
                Made {
                    origin: "https://evil.example.net".into(),
                    ..Made::default()
                },
                None
            ),
            PasskeyError::Refused(_)
        ));
        // No user verification, no presence.
        let e = refused(
            Made {
                flags: UP,
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("UV"), "{e}");
        let e = refused(
            Made {
                flags: UV,
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("UP"), "{e}");
        // Attested credential data in an assertion; ED without extensions and the reverse.
        let e = refused(
            Made {
                flags: UP | UV | AT,
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("AT"), "{e}");
        let e = refused(
            Made {
                flags: UP | UV | ED,
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("ED"), "{e}");
        let e = refused(
            Made {
                extensions: vec![0xa0],
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("ED"), "{e}");
        // ED with its extensions is fine.
        let (_, sig) = signed(&Made {
            flags: UP | UV | ED,
            extensions: vec![0xa0],
            ..Made::default()
        });
        sig.check(STATEMENT, Some(ORIGIN)).unwrap();
        // Made in a cross-origin frame.
        let e = refused(
            Made {
                cross_origin: Some(true),
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(e.to_string().contains("crossOrigin"), "{e}");
        // Another RP id's assertion: the signature does not verify for this key.
        let e = refused(
            Made {
                rp_id: "other.example.com".into(),
                ..Made::default()
            },
            Some(ORIGIN),
        );
        assert!(matches!(e, PasskeyError::Mismatch(_)), "{e}");
    }

    #[test]
    fn over_another_statement_or_by_another_credential_is_a_mismatch() {
        let (_, sig) = signed(&Made::default());
        let e = sig
            .check(b"chg signed record v1\naction: reject\n", Some(ORIGIN))
            .unwrap_err();
        assert!(matches!(e, PasskeyError::Mismatch(_)), "{e}");
        // Another person's credential signed it; it is presented with this person's key.
        let (other, _) = key(2);
        let (_, mine) = key(1);
        let a = assert_with(&other, STATEMENT, &Made::default());
        let sig = PasskeySignature::assemble(&mine, &a).unwrap();
        let e = sig.check(STATEMENT, Some(ORIGIN)).unwrap_err();
        assert!(matches!(e, PasskeyError::Mismatch(_)), "{e}");
        // The clientDataJSON changed after signing (the prefix intact).
        let (sk, public) = key(1);
        let mut a = assert_with(&sk, STATEMENT, &Made::default());
        a.client_data_json.truncate(a.client_data_json.len() - 1);
        a.client_data_json.extend_from_slice(b",\"x\":1}");
        let sig = PasskeySignature::assemble(&public, &a).unwrap();
        assert!(matches!(
            sig.check(STATEMENT, Some(ORIGIN)),
            Err(PasskeyError::Mismatch(_))
        ));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let (sk, public) = key(1);
        let good = assert_with(&sk, STATEMENT, &Made::default());
        let bad = |f: &dyn Fn(&mut Assertion)| {
            let mut a = good.clone();
            f(&mut a);
            PasskeySignature::assemble(&public, &a).unwrap_err()
        };
        bad(&|a| a.authenticator_data.truncate(36));
        bad(&|a| a.client_data_json = b"not json".to_vec());
        bad(&|a| a.signature = vec![0x30, 0x00]);
        let ed = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]));
        assert!(PasskeySignature::assemble(ed.public_key(), &good).is_err());
        assert!(base64url_decode("signature", "a b").is_err());
        // A truncated armored signature.
        let pem = PasskeySignature::assemble(&public, &good)
            .unwrap()
            .to_pem()
            .unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let raw = base64ct::Base64::decode_vec(&body).unwrap();
        for cut in [raw.len() - 1, raw.len() - 40] {
            let b64 = base64ct::Base64::encode_string(&raw[..cut]);
            let text =
                format!("-----BEGIN SSH SIGNATURE-----\n{b64}\n-----END SSH SIGNATURE-----\n");
            assert!(
                !matches!(PasskeySignature::from_pem(&text), Ok(Some(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn public_urls_give_origin_and_rp_id() {
        let o = |u: &str| origin_and_rp_id(u).map_err(|e| e.to_string());
        assert_eq!(
            o("http://localhost:8080").unwrap(),
            ("http://localhost:8080".into(), "localhost".into())
        );
        assert_eq!(
            o("https://Chg.Example.com/").unwrap(),
            ("https://chg.example.com".into(), "chg.example.com".into())
        );
        assert_eq!(
            o("https://chg.example.com:443/x").unwrap().0,
            "https://chg.example.com"
        );
        for bad in [
            "chg.example.com",
            "ftp://x",
            "https://u@x",
            "https://x:port",
            "https://",
        ] {
            assert!(o(bad).is_err(), "{bad}");
        }
        assert!(origin_fits("http://localhost:8080", "localhost"));
        assert!(origin_fits("https://a.chg.example.com", RP));
        assert!(!origin_fits("http://chg.example.com", RP));
        assert!(!origin_fits("https://xchg.example.com", RP));
        assert!(!origin_fits("https://chg.example.com.evil.net", RP));
    }
}
