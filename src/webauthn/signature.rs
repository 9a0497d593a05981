//! A passkey signature assembled from the browser's assertion, and checked: what OpenSSH
//! checks of it, and what chg requires beyond (origin, user presence and verification,
//! flags, `crossOrigin`).

use base64ct::{Base64UrlUnpadded, Encoding as _};
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, Mpint, PublicKey};

use super::{
    AT, AUTH_DATA_MIN, Assertion, ED, KEY_TYPE, NAMESPACE, PasskeyError, PasskeySignature, UP, UV,
    blob, client_data, malformed, origin_fits, rp_id,
};

impl PasskeySignature {
    /// The SSHSIG of an assertion by `key` (a passkey key, [`public_key_from_spki`]), ready
    /// to check and to armor. Only the form is checked here ([`PasskeySignature::check`] does
    /// the rest): the DER signature becomes the mpints r and s, the flags, counter and
    /// extensions come from authenticatorData, the origin from clientDataJSON.
    ///
    /// [`public_key_from_spki`]: super::public_key_from_spki
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webauthn::base64url_decode;
    use crate::webauthn::made::{Made, ORIGIN, STATEMENT, assert_with, key, signed};

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
}
