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
//!
//! This file holds the constants, the error, the challenge and the decoded answer and
//! signature types; `relying_party` binds a passkey's key to its RP id and judges origins,
//! `signature` assembles and checks a signature, `wire` reads and writes its SSHSIG form.

use base64ct::{Base64UrlUnpadded, Encoding as _};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, Mpint, SshSig};

#[cfg(test)]
mod made;
mod relying_party;
mod signature;
mod wire;

pub use relying_party::{
    allowed_signers_line, origin_and_rp_id, origin_fits, public_key_from_spki, rp_id,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

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
}
