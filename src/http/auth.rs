//! Who is calling: an API key (`fk_…`, one domain each, stored hashed) or,
//! when `[http.jwt]` names a key, a JWT bearer token signed by an identity
//! provider (seed 001: JWT/OAuth). A token is taken only when signed with
//! RS256 or ES256 by a configured key (`alg: none` and HMAC algorithms are
//! refused, so a public key cannot be used as an HMAC secret), within its
//! `exp` and `nbf`, for the configured `iss` and `aud`, and naming a domain
//! in the configured claim.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use uuid::Uuid;

use crate::config::JwtSettings;

/// A caller a token named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub domain: Uuid,
    /// `sub`, for the completion event's `userId`.
    pub subject: Option<String>,
}

/// The keys tokens are checked with.
pub struct JwtVerifier {
    /// By `kid`; the one key of a PEM file under `None`.
    keys: HashMap<Option<String>, (DecodingKey, Algorithm)>,
    settings: JwtSettings,
}

impl JwtVerifier {
    /// Reads the configured key or key set; `None` when JWTs are off.
    pub fn load(settings: &JwtSettings) -> Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let mut keys = HashMap::new();
        if !settings.public_key_file.is_empty() {
            let pem = std::fs::read_to_string(&settings.public_key_file).with_context(|| {
                format!("http.jwt.public_key_file {}", settings.public_key_file)
            })?;
            let key = match DecodingKey::from_ec_pem(pem.as_bytes()) {
                Ok(key) => (key, Algorithm::ES256),
                Err(_) => (
                    DecodingKey::from_rsa_pem(pem.as_bytes()).context(
                        "http.jwt.public_key_file is neither an RSA nor an EC public key",
                    )?,
                    Algorithm::RS256,
                ),
            };
            keys.insert(None, key);
        }
        if !settings.jwks_file.is_empty() {
            let text = std::fs::read_to_string(&settings.jwks_file)
                .with_context(|| format!("http.jwt.jwks_file {}", settings.jwks_file))?;
            let set: JwkSet =
                serde_json::from_str(&text).context("http.jwt.jwks_file is not a JWKS")?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                };
                keys.insert(
                    jwk.common.key_id.clone(),
                    (DecodingKey::from_jwk(jwk)?, algorithm),
                );
            }
        }
        if keys.is_empty() {
            bail!("[http.jwt] names no RSA or EC public key");
        }
        Ok(Some(Self {
            keys,
            settings: settings.clone(),
        }))
    }

    /// The caller a token names, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("a malformed token: {e}"))?;
        let (key, algorithm) = self
            .keys
            .get(&header.kid)
            .or_else(|| self.keys.get(&None))
            .ok_or("no key for the token's kid")?;
        // The configured key says the algorithm; the token's header must agree.
        if header.alg != *algorithm {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let mut validation = Validation::new(*algorithm);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        match self.settings.issuer.as_str() {
            "" => {}
            iss => validation.set_issuer(&[iss]),
        }
        match self.settings.audience.as_str() {
            "" => validation.validate_aud = false,
            aud => validation.set_audience(&[aud]),
        }
        let data = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| format!("the token is not accepted: {e}"))?;
        let claim = &self.settings.domain_claim;
        let domain = data.claims[claim.as_str()]
            .as_str()
            .and_then(|d| Uuid::parse_str(d).ok())
            .ok_or_else(|| format!("the token names no domain in `{claim}`"))?;
        Ok(Claims {
            domain,
            subject: data.claims["sub"].as_str().map(String::from),
        })
    }
}
