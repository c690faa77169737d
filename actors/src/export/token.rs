//! Signed links and signatures: a download token for one file of one
//! export, valid until it expires (an HMAC-SHA256 with a server secret,
//! several accepted so keys can rotate), and the signature of a webhook's
//! body (Stripe's scheme: `t=TIMESTAMP,v1=HMAC(secret, "TIMESTAMP.BODY")`).
//! Signatures are compared in constant time.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

type Hmac = hmac::Hmac<Sha256>;

fn mac(key: &[u8], message: &[u8]) -> Hmac {
    let mut m = Hmac::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(message);
    m
}

/// Why a download token is refused (the API answers 401 to each alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a malformed token")]
    Malformed,
    #[error("the token is for another export")]
    OtherExport,
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// Signs and checks download tokens.
#[derive(Clone)]
pub struct Signer {
    /// The first signs; every one verifies (the others are older keys
    /// still accepted while links signed with them live).
    keys: Vec<Vec<u8>>,
}

impl Signer {
    pub fn new(keys: Vec<Vec<u8>>) -> Self {
        assert!(!keys.is_empty(), "a signer needs a key");
        Self { keys }
    }

    fn message(export: Uuid, file: usize, expires: u64) -> String {
        format!("{export}.{file}.{expires}")
    }

    /// `EXPORT.FILE.EXPIRES.SIGNATURE`: file `file` of `export`, until
    /// `expires` (Unix seconds).
    pub fn sign(&self, export: Uuid, file: usize, expires: u64) -> String {
        let message = Self::message(export, file, expires);
        let signature = mac(&self.keys[0], message.as_bytes())
            .finalize()
            .into_bytes();
        format!("{message}.{}", hex::encode(signature))
    }

    /// Which file of `export` the token opens, if it is genuine and has
    /// not expired at `now`. Only the spelling that was signed is genuine:
    /// the signature covers the token's text as written, so `00` for `0`,
    /// an uppercase UUID or hex, or a leading zero in the expiry is not
    /// the same token.
    pub fn verify(&self, token: &str, export: Uuid, now: u64) -> Result<usize, TokenError> {
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = message.split('.');
        let (Some(id), Some(file), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if signature.len() != 64 || !lower_hex(signature) {
            return Err(TokenError::Malformed);
        }
        let signature = hex::decode(signature).map_err(|_| TokenError::Malformed)?;
        let genuine = self
            .keys
            .iter()
            .any(|k| mac(k, message.as_bytes()).verify_slice(&signature).is_ok());
        if !genuine {
            return Err(TokenError::BadSignature);
        }
        let id: Uuid = id.parse().map_err(|_| TokenError::Malformed)?;
        let file: usize = file.parse().map_err(|_| TokenError::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if Self::message(id, file, expires) != message {
            return Err(TokenError::Malformed);
        }
        if id != export {
            return Err(TokenError::OtherExport);
        }
        if expires <= now {
            return Err(TokenError::Expired);
        }
        Ok(file)
    }
}

/// A webhook's signature header: `t=TIMESTAMP,v1=HEX`.
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut m = mac(secret, format!("{timestamp}.").as_bytes());
    m.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(m.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_one_file_of_one_export_until_they_expire() {
        let (export, other) = (Uuid::now_v7(), Uuid::now_v7());
        let old = Signer::new(vec![b"old".to_vec()]);
        let signer = Signer::new(vec![b"new".to_vec(), b"old".to_vec()]);
        let token = signer.sign(export, 2, 1000);
        assert_eq!(signer.verify(&token, export, 999), Ok(2));
        assert_eq!(
            signer.verify(&token, export, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            signer.verify(&token, other, 999),
            Err(TokenError::OtherExport)
        );
        // Rotation: a link signed with the old key still opens.
        assert_eq!(signer.verify(&old.sign(export, 0, 1000), export, 1), Ok(0));
        assert_eq!(
            old.verify(&token, export, 1),
            Err(TokenError::BadSignature),
            "the new key is not the old one's"
        );
        let tampered = token.replacen(".2.", ".3.", 1);
        assert_eq!(
            signer.verify(&tampered, export, 1),
            Err(TokenError::BadSignature)
        );
        let later = token.replacen(".1000.", ".9999.", 1);
        assert_eq!(
            signer.verify(&later, export, 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer.verify("nope", export, 1), Err(TokenError::Malformed));
    }

    #[test]
    fn only_the_signed_spelling_of_a_token_opens() {
        let export = Uuid::now_v7();
        let signer = Signer::new(vec![b"key".to_vec()]);
        let token = signer.sign(export, 0, 1_796_000_000);
        assert_eq!(signer.verify(&token, export, 1), Ok(0));
        let (id, rest) = token.split_once('.').unwrap();
        let signature = token.rsplit('.').next().unwrap();
        let others = [
            token.replacen(".0.", ".00.", 1),
            token.replacen(".1796000000.", ".01796000000.", 1),
            format!("{}.{rest}", id.to_uppercase()),
            format!("{}.{rest}", id.replace('-', "")),
            token.replacen(signature, &signature.to_uppercase(), 1),
            format!("{token}."),
            format!(" {token}"),
        ];
        for other in others {
            assert!(signer.verify(&other, export, 1).is_err(), "{other}");
        }
    }

    #[test]
    fn a_webhook_signature_is_stripes_shape() {
        let sig = webhook_signature(b"secret", 1700000000, b"{}");
        assert!(sig.starts_with("t=1700000000,v1="));
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, webhook_signature(b"secret", 1700000000, b"{ }"));
    }
}
