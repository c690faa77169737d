//! PostgreSQL: connections and pools, `LISTEN`, the schema's migrations,
//! API keys, the matching groups, and the API's limits across instances.

/// SQL that shows a `timestamptz` column or expression as RFC 3339 in UTC
/// with microseconds (`2026-12-02T16:49:02.718492Z`): the one way ferry
/// shows a time, in the API, the CLI and its events.
#[macro_export]
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

pub mod api_keys;
pub mod groups;
pub mod limits;
pub mod migrations;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{Client, NoTls};

pub use crate::error::{is_transient, DbError};
use crate::settings::DatabaseSettings;

pub fn pg_config(settings: &DatabaseSettings) -> Result<tokio_postgres::Config, DbError> {
    let mut config: tokio_postgres::Config = settings.url.parse().map_err(DbError::Url)?;
    config.connect_timeout(settings.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("ferry");
    }
    Ok(config)
}

/// The same settings with `application_name` set, so that a role's
/// sessions can be told apart in `pg_stat_activity`.
pub fn named(settings: &DatabaseSettings, name: &str) -> DatabaseSettings {
    let url = &settings.url;
    let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    };
    DatabaseSettings {
        url,
        ..settings.clone()
    }
}

/// The same connection settings for bulk writes: the session's commits do
/// not wait for the WAL flush, and its writes of nodes say whether they
/// changed one (`ferry.writer`: the `node_rows_changed` trigger, for other
/// writers, leaves them alone). Set at connection start, so a pooled
/// session has them from its first use.
fn bulk_config(settings: &DatabaseSettings) -> Result<tokio_postgres::Config, DbError> {
    const BULK: &str = "-c synchronous_commit=off -c ferry.writer=on";
    let mut config = pg_config(settings)?;
    let options = match config.get_options() {
        Some(given) => format!("{given} {BULK}"),
        None => BULK.to_string(),
    };
    config.options(&options);
    Ok(config)
}

/// A dedicated connection, driven on its own task.
pub async fn connect(settings: &DatabaseSettings) -> Result<Client, DbError> {
    connect_with(pg_config(settings)?).await
}

async fn connect_with(config: tokio_postgres::Config) -> Result<Client, DbError> {
    let (client, connection) = config.connect(NoTls).await.map_err(DbError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed.");
        }
    });
    Ok(client)
}

/// A connection for bulk writes: commits do not wait for the WAL flush.
/// A crash may lose the last batches' commits, never corrupt them, and the
/// job's checkpoint only ever counts what was committed before it.
pub async fn connect_bulk(settings: &DatabaseSettings) -> Result<Client, DbError> {
    connect_with(bulk_config(settings)?).await
}

/// A connection that `LISTEN`s on `channel`; the payloads of its
/// notifications arrive on the receiver, which closes when the connection
/// does. Keep the client: dropping it closes the connection.
pub async fn listen(
    settings: &DatabaseSettings,
    channel: &str,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), DbError> {
    let (client, mut connection) = pg_config(settings)?
        .connect(NoTls)
        .await
        .map_err(DbError::Connect)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection closed.");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(DbError::Connect)?;
    Ok((client, rx))
}

/// Casts `msg()` to `actor` on each notification on `channel`, and once
/// on each (re)connect; reconnects when the connection drops (the actor's
/// own poll covers the gap). Ends when the actor is gone.
pub fn wake_on<M: ractor::Message>(
    database: DatabaseSettings,
    channel: &'static str,
    actor: ractor::ActorRef<M>,
    msg: fn() -> M,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&named(&database, "ferry-listen"), channel).await {
                Ok((_client, mut notifications)) => {
                    let _ = actor.cast(msg());
                    while notifications.recv().await.is_some() {
                        if actor.cast(msg()).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, channel, "Could not LISTEN; polling."),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// The shared pool for bookkeeping and reads.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    pool_of(pg_config(settings)?, settings, settings.pool_size)
}

/// The CopyWriters' bulk connections (`ferry-copy-writer`), kept from one
/// job to the next: a job's writers start on warm sessions whose stage
/// tables exist, instead of new backends. `size` is every writer that can
/// run at once.
pub fn writer_pool(settings: &DatabaseSettings, size: usize) -> Result<Pool, DbError> {
    let named = named(settings, "ferry-copy-writer");
    pool_of(bulk_config(&named)?, settings, size)
}

fn pool_of(
    config: tokio_postgres::Config,
    settings: &DatabaseSettings,
    size: usize,
) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(settings.connect_timeout))
        .wait_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}
