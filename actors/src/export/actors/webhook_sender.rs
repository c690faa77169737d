//! WebhookSender: POSTs export completions to their webhooks. A delivery
//! is queued with the export's terminal update; this actor takes the due
//! ones (woken by `NOTIFY`, and on a tick), each in a task of its own so a
//! slow or dead endpoint delays no other, records every attempt, and tries
//! again with backoff after a 5xx, a 429 or no answer, up to
//! `exports.webhook_attempts`. Several instances share the queue: a taken
//! delivery is leased by moving its next attempt past its timeout.

use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use crate::error::JobError;
use crate::export::webhook::{self, Delivery};
use crate::service::worker::{Reconnecting, Wakeups};
use crate::settings::{DatabaseSettings, ExportSettings, RetrySettings};
use crate::supervision::{backoff, jittered};
use crate::telemetry::{WebhookAttempted, WebhookOutcome};

pub const NAME: &str = "webhook_sender";

/// The channel a new delivery is announced on.
pub const WEBHOOKS_CHANNEL: &str = "ferry_webhooks";

/// Deliveries in flight at once, per instance.
const IN_FLIGHT: i64 = 16;

pub enum Msg {
    /// Takes and starts the due deliveries.
    Poll,
    /// A delivery's attempt ended.
    Attempted {
        id: i64,
        attempt: i32,
        delivery: Delivery,
    },
}

#[derive(Clone)]
pub struct Args {
    pub database: DatabaseSettings,
    pub exports: ExportSettings,
    pub retry: RetrySettings,
    pub secret: Vec<u8>,
    pub tick: Duration,
}

pub struct State {
    args: Args,
    client: Reconnecting,
    in_flight: i64,
    _wakeups: Wakeups,
}

pub type WebhookSenderRef = ActorRef<Msg>;

/// Spawns it under its name (others find it by name), linked to the
/// service's supervisor.
pub async fn spawn_linked(supervisor: ActorCell, args: Args) -> Result<WebhookSenderRef, SpawnErr> {
    let name = Some(NAME.to_string());
    let (actor, _) = Actor::spawn_linked(name, WebhookSender, args, supervisor).await?;
    Ok(actor)
}

pub struct WebhookSender;

impl Actor for WebhookSender {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let wakeups = Wakeups::start(&myself, &args.database, WEBHOOKS_CHANNEL, args.tick, || {
            Msg::Poll
        });
        Ok(State {
            client: Reconnecting::new(&args.database, "ferry-webhooks"),
            args,
            in_flight: 0,
            _wakeups: wakeups,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let result = match msg {
            Msg::Poll => take_due(&myself, state).await,
            Msg::Attempted {
                id,
                attempt,
                delivery,
            } => {
                state.in_flight -= 1;
                record(state, id, attempt, &delivery).await
            }
        };
        if let Err(e) = result {
            // The next tick tries again, on a new connection.
            tracing::warn!(error = %e, "Webhook bookkeeping failed.");
            state.client.reset();
        }
        Ok(())
    }
}

/// Takes the due deliveries this instance has room for, and starts them.
async fn take_due(myself: &ActorRef<Msg>, state: &mut State) -> Result<(), JobError> {
    let room = IN_FLIGHT - state.in_flight;
    if room <= 0 {
        return Ok(());
    }
    let lease = state.args.exports.webhook_timeout.as_secs_f64() * 2.0 + 5.0;
    let rows = state
        .client
        .get()
        .await?
        .query(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2),
                 attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, url, payload, attempts",
            &[&room, &lease],
        )
        .await?;
    for row in rows {
        let (id, url, payload, attempt): (i64, String, String, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        state.in_flight += 1;
        let (me, exports, secret) = (
            myself.clone(),
            state.args.exports.clone(),
            state.args.secret.clone(),
        );
        tokio::spawn(async move {
            let delivery = webhook::deliver(
                &url,
                &exports.webhook_allowed_hosts,
                &payload,
                &secret,
                id,
                exports.webhook_timeout,
            )
            .await;
            let _ = me.cast(Msg::Attempted {
                id,
                attempt,
                delivery,
            });
        });
    }
    Ok(())
}

/// Records an attempt, and what comes next: done, another try, or none.
async fn record(state: &mut State, id: i64, attempt: i32, d: &Delivery) -> Result<(), JobError> {
    let max = state.args.exports.webhook_attempts.max(1);
    let outcome = if d.ok() {
        WebhookOutcome::Delivered
    } else if d.retriable() && attempt < max {
        WebhookOutcome::Retry
    } else {
        WebhookOutcome::Failed
    };
    WebhookAttempted {
        delivery: id,
        attempt,
        status: d.status,
        error: d.error.as_deref(),
        outcome,
    }
    .emit();
    let wait = jittered(backoff(&state.args.retry, attempt as u32));
    let status = d.status.map(i32::from);
    let millis = d.took.as_millis().min(i32::MAX as u128) as i32;
    state
        .client
        .get()
        .await?
        .execute(
            "WITH attempt AS (
                 INSERT INTO webhook_attempts (delivery_id, attempt, status, error, millis)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING)
             UPDATE webhook_deliveries SET last_status = $3, last_error = $4,
                 delivered_at = CASE WHEN $6 = 'delivered' THEN now() END,
                 failed_at = CASE WHEN $6 = 'failed' THEN now() END,
                 next_attempt_at = now() + make_interval(secs => $7)
             WHERE id = $1",
            &[
                &id,
                &attempt,
                &status,
                &d.error,
                &millis,
                &outcome.as_str(),
                &wait.as_secs_f64(),
            ],
        )
        .await?;
    Ok(())
}
