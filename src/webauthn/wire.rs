//! The SSHSIG wire form of a passkey signature: read from its armor (other signature types
//! left to `ssh-key`) and written as `ssh-keygen -Y sign` writes one.

use ssh_encoding::pem::PemLabel;
use ssh_encoding::{CheckedSum, Decode, DecodePem, Encode, EncodePem, LineEnding, Reader, Writer};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, Mpint};

use super::{PasskeyError, PasskeySignature, SIGNATURE_TYPE, SSHSIG_VERSION, malformed};

impl PasskeySignature {
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
    use crate::webauthn::NAMESPACE;
    use crate::webauthn::made::{Made, ORIGIN, STATEMENT, signed};

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
}
