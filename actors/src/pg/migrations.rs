//! Schema migrations, embedded in the binary and applied in order, each in
//! its own transaction, under an advisory lock so that two processes
//! starting at once do not race. Applying them again is a no-op.

use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "nodes",
        sql: include_str!("../../migrations/0001_nodes.sql"),
    },
    Migration {
        version: 2,
        name: "reference_lists",
        sql: include_str!("../../migrations/0002_reference_lists.sql"),
    },
    Migration {
        version: 3,
        name: "match_suggestions",
        sql: include_str!("../../migrations/0003_match_suggestions.sql"),
    },
    Migration {
        version: 4,
        name: "job_queue",
        sql: include_str!("../../migrations/0004_job_queue.sql"),
    },
    Migration {
        version: 5,
        name: "service",
        sql: include_str!("../../migrations/0005_service.sql"),
    },
    Migration {
        version: 6,
        name: "rejects",
        sql: include_str!("../../migrations/0006_rejects.sql"),
    },
    Migration {
        version: 7,
        name: "job_lifecycle",
        sql: include_str!("../../migrations/0007_job_lifecycle.sql"),
    },
    Migration {
        version: 8,
        name: "exports",
        sql: include_str!("../../migrations/0008_exports.sql"),
    },
    Migration {
        version: 9,
        name: "request_hash",
        sql: include_str!("../../migrations/0009_request_hash.sql"),
    },
    Migration {
        version: 10,
        name: "webhooks",
        sql: include_str!("../../migrations/0010_webhooks.sql"),
    },
    Migration {
        version: 11,
        name: "nodes_by_domain",
        sql: include_str!("../../migrations/0011_nodes_by_domain.sql"),
    },
    Migration {
        version: 12,
        name: "users_export",
        sql: include_str!("../../migrations/0012_users_export.sql"),
    },
    Migration {
        version: 13,
        name: "job_kinds",
        sql: include_str!("../../migrations/0013_job_kinds.sql"),
    },
    Migration {
        version: 14,
        name: "watermarks",
        sql: include_str!("../../migrations/0014_watermarks.sql"),
    },
    Migration {
        version: 15,
        name: "webhook_leases",
        sql: include_str!("../../migrations/0015_webhook_leases.sql"),
    },
    Migration {
        version: 16,
        name: "api_limits",
        sql: include_str!("../../migrations/0016_api_limits.sql"),
    },
    Migration {
        version: 17,
        name: "unchanged_rows",
        sql: include_str!("../../migrations/0017_unchanged_rows.sql"),
    },
    Migration {
        version: 18,
        name: "sync_imports",
        sql: include_str!("../../migrations/0018_sync_imports.sql"),
    },
    Migration {
        version: 19,
        name: "data_contracts",
        sql: include_str!("../../migrations/0019_data_contracts.sql"),
    },
];

/// Lock id for migrations: "ferry" in ASCII.
const MIGRATION_LOCK: i64 = 0x0066_6572_7279;

/// Applies what is missing; returns the versions applied now. The whole
/// run holds a session advisory lock: even `CREATE TABLE IF NOT EXISTS`
/// races when two processes start at once.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    migrate_until(client, i32::MAX).await
}

/// [`migrate`] up to version `last` only: a test of a migration starts
/// from the schema before it.
pub async fn migrate_until(
    client: &mut Client,
    last: i32,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = apply(client, last).await;
    // On error the connection is dropped anyway, and the lock with it.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    applied
}

async fn apply(client: &mut Client, last: i32) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ferry_schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
        let tx = client.transaction().await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM ferry_schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(m.sql).await?;
            tx.execute(
                "INSERT INTO ferry_schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await?;
            applied.push(m.version);
        }
        tx.commit().await?;
    }
    Ok(applied)
}
