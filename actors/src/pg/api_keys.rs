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
        "INSERT INTO api_keys (key_hash, domain_id, name) VALUES (sha256($1::text::bytea), $2, $3)",
        &[&key, &domain_id, &name],
    )
    .await?;
    Ok(key)
}

/// The domain a key belongs to; `None` for an unknown or revoked key.
pub async fn domain_of(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT domain_id FROM api_keys
             WHERE key_hash = sha256($1::text::bytea) AND revoked_at IS NULL",
            &[&key],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Revokes a key; false if there was no such active key.
pub async fn revoke(c: &impl GenericClient, key: &str) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE api_keys SET revoked_at = now()
             WHERE key_hash = sha256($1::text::bytea) AND revoked_at IS NULL",
            &[&key],
        )
        .await?;
    Ok(n == 1)
}
