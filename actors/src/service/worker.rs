//! What the service's queue workers share (the StatusPublisher, the
//! WebhookSender, the JobCoordinator's claims): they wake on a tick and on
//! a `NOTIFY`, and talk to PostgreSQL on a connection that is made again
//! when it dropped. How each one takes its work from the queue is its own
//! (an advisory-lock leader, `FOR UPDATE SKIP LOCKED`).

use std::time::Duration;

use ractor::{ActorRef, Message};
use tokio_postgres::Client;

use crate::error::DbError;
use crate::pg;
use crate::settings::DatabaseSettings;

/// An actor's wake-ups: `msg()` every tick, and on each notification on a
/// channel (a missed one, a lost listener, are covered by the tick). They
/// end with this value: keep it in the actor's state.
pub struct Wakeups {
    listener: tokio::task::JoinHandle<()>,
}

impl Wakeups {
    pub fn start<M: Message>(
        actor: &ActorRef<M>,
        database: &DatabaseSettings,
        channel: &'static str,
        tick: Duration,
        msg: fn() -> M,
    ) -> Self {
        actor.send_interval(tick, msg);
        Self {
            listener: pg::wake_on(database.clone(), channel, actor.clone(), msg),
        }
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// A dedicated connection, named for `pg_stat_activity`, made when first
/// needed and again after it dropped (or after [`Reconnecting::reset`],
/// when a statement failed on it).
pub struct Reconnecting {
    database: DatabaseSettings,
    client: Option<Client>,
}

impl Reconnecting {
    pub fn new(database: &DatabaseSettings, name: &str) -> Self {
        Self {
            database: pg::named(database, name),
            client: None,
        }
    }

    /// Whether a live connection is held (the next [`Self::get`] makes no
    /// new one).
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    pub async fn get(&mut self) -> Result<&Client, DbError> {
        if !self.is_connected() {
            self.client = Some(pg::connect(&self.database).await?);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// The same, for a transaction.
    pub async fn get_mut(&mut self) -> Result<&mut Client, DbError> {
        if !self.is_connected() {
            self.client = Some(pg::connect(&self.database).await?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// The connection held, if any, without connecting.
    pub fn current(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// Drops the connection: the next use makes a new one.
    pub fn reset(&mut self) {
        self.client = None;
    }
}
