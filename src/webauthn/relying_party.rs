//! The relying party: a passkey's public key as an OpenSSH key whose application is the RP
//! id, and which origins belong to an RP id (a browser signs only on one of them).

use ssh_key::PublicKey;
use ssh_key::public::{KeyData, SkEcdsaSha2NistP256};

use super::{PasskeyError, malformed};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webauthn::made::{RP, key};
    use p256::pkcs8::EncodePublicKey as _;

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
