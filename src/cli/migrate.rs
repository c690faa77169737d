//! `ferry migrate`: applies the embedded schema migrations.

use anyhow::{Context, Result};
use ferry_actors::pg::{self, migrations};
use ferry_actors::settings::DatabaseSettings;

/// Applies what is missing; returns the versions applied now.
pub async fn run(database: &DatabaseSettings) -> Result<Vec<i32>> {
    let mut client = pg::connect(database).await?;
    migrations::migrate(&mut client)
        .await
        .context("applying migrations")
}
