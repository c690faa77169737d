//! `ferry apikey create|revoke`: API keys for the HTTP API, one domain each.

use anyhow::{Context, Result};
use ferry_actors::pg::{self, api_keys};
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

/// Makes a key for `domain`; it is printed once and stored only hashed.
pub async fn create(database: &DatabaseSettings, domain: Uuid, name: &str) -> Result<String> {
    let mut client = pg::connect(database).await?;
    pg::migrations::migrate(&mut client)
        .await
        .context("applying migrations")?;
    Ok(api_keys::create(&client, domain, name).await?)
}

pub async fn revoke(database: &DatabaseSettings, key: &str) -> Result<bool> {
    let client = pg::connect(database).await?;
    Ok(api_keys::revoke(&client, key).await?)
}
