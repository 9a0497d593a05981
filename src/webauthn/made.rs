//! Test fixtures: what a browser's authenticator would answer, made with a P-256 key of a
//! fixed seed, for the tests of each part of the module.

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};
use ssh_key::PublicKey;

use super::{Assertion, PasskeySignature, UP, UV, challenge, public_key_from_spki};

pub(super) const ORIGIN: &str = "https://chg.example.com";
pub(super) const RP: &str = "chg.example.com";
pub(super) const STATEMENT: &[u8] =
    b"chg signed record v1\naction: approve\nactor: cm@example.com\n";

/// What a browser's authenticator would answer.
pub(super) struct Made {
    pub(super) origin: String,
    pub(super) flags: u8,
    pub(super) cross_origin: Option<bool>,
    pub(super) extensions: Vec<u8>,
    pub(super) rp_id: String,
    pub(super) high_s: bool,
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

pub(super) fn key(seed: u8) -> (SigningKey, PublicKey) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let spki = p256::PublicKey::from(sk.verifying_key())
        .to_public_key_der()
        .unwrap();
    let public = public_key_from_spki(spki.as_bytes(), RP).unwrap();
    (sk, public)
}

pub(super) fn assert_with(sk: &SigningKey, statement: &[u8], m: &Made) -> Assertion {
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

pub(super) fn signed(m: &Made) -> (PublicKey, PasskeySignature) {
    let (sk, public) = key(1);
    let a = assert_with(&sk, STATEMENT, m);
    (
        public.clone(),
        PasskeySignature::assemble(&public, &a).unwrap(),
    )
}
