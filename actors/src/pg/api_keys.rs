//! API keys: each belongs to one domain. Only a key's SHA-256 is stored; the
//! key itself is shown once, when it is created.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Makes a key for `domain_id`; returns the key (`fk_` and 64 hex digits).
pub async fn create(
    c: &impl GenericClient,
    domain_id: Uuid,
    name: &str,
) -> Result<String, tokio_postgres::Error> {
    let key = format!("fk_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    c.execute(
        "INSERT INTO api_keys (key_hash, domain_id, name) VALUES ($1, $2, $3)",
        &[&hash(&key), &domain_id, &name],
    )
    .await?;
    Ok(key)
}

/// A key's SHA-256, computed here: whatever a caller sends (a backslash,
/// a NUL), it is only ever bytes to hash, never text for the server to
/// parse.
pub fn hash(key: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The domain a key belongs to; `None` for an unknown or revoked key.
pub async fn domain_of(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT domain_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash(key)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Revokes a key; false if there was no such active key.
pub async fn revoke(c: &impl GenericClient, key: &str) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE api_keys SET revoked_at = now()
             WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash(key)],
        )
        .await?;
    Ok(n == 1)
}
