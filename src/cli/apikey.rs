//! `ferry apikey create|revoke`: API keys for the HTTP API, one domain each.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_actors::pg::{self, api_keys};
use ferry_actors::settings::DatabaseSettings;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Make a key for one domain; it is printed once (only its hash is kept).
    Create {
        #[arg(long)]
        domain: Uuid,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key.
    Revoke { key: String },
}

pub async fn command(database: &DatabaseSettings, command: ApikeyCommand) -> Result<()> {
    match command {
        ApikeyCommand::Create { domain, name } => {
            println!("{}", create(database, domain, &name).await?);
        }
        ApikeyCommand::Revoke { key } => {
            if !revoke(database, &key).await? {
                bail!("no such active key");
            }
        }
    }
    Ok(())
}

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
