//! WebhookSender: POSTs export completions to their webhooks. A delivery
//! is queued with the export's terminal update; this actor takes the due
//! ones (woken by `NOTIFY`, and on a tick), each in a task of its own so a
//! slow or dead endpoint delays no other, records every attempt, and tries
//! again with backoff after a 5xx, a 429 or no answer, up to
//! `exports.webhook_attempts`.
//!
//! Several instances share the queue. A delivery is claimed with a lease
//! (`leased_until`) that outlives its attempt, which is bounded by
//! `exports.webhook_timeout` in all: no two instances ever send one
//! delivery at once, and an attempt that ends after its lease was taken
//! over records nothing. Claims take a transaction's advisory lock and
//! count the leased deliveries, so deliveries in flight are bounded per
//! domain and per host across every instance: one tenant's slow endpoints
//! cannot hold the others' slots.

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

/// Claims of deliveries take turns across instances under this lock, so
/// each one counts the others' leases: "webhooks" in ASCII.
const CLAIM_LOCK: i64 = 0x7765_6268_6f6f_6b73;

/// How much longer than its attempt's bound a delivery's lease lasts: time
/// to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

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
                // The slot it freed goes to the next due delivery at once.
                match record(state, id, attempt, &delivery).await {
                    Ok(()) => take_due(&myself, state).await,
                    Err(e) => Err(e),
                }
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

/// Claims the due deliveries this instance has room for, within the
/// domain's and the host's bounds, and starts them.
async fn take_due(myself: &ActorRef<Msg>, state: &mut State) -> Result<(), JobError> {
    let exports = &state.args.exports;
    let room = exports.webhook_in_flight.max(1) - state.in_flight;
    if room <= 0 {
        return Ok(());
    }
    let lease = (exports.webhook_timeout + LEASE_MARGIN).as_secs_f64();
    let (per_domain, per_host) = (
        exports.webhook_per_domain.max(1),
        exports.webhook_per_host.max(1),
    );
    let client = state.client.get_mut().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await?;
    // Each due delivery's place among its domain's and its host's, after
    // the ones in flight (leased, on any instance).
    let rows = tx
        .query(
            "WITH busy AS (
                 SELECT domain_id, host FROM webhook_deliveries WHERE leased_until > now()),
             ranked AS (
                 SELECT id, next_attempt_at,
                     row_number() OVER (PARTITION BY domain_id ORDER BY next_attempt_at, id)
                         + (SELECT count(*) FROM busy b
                            WHERE b.domain_id IS NOT DISTINCT FROM d.domain_id) AS in_domain,
                     row_number() OVER (PARTITION BY host ORDER BY next_attempt_at, id)
                         + (SELECT count(*) FROM busy b
                            WHERE b.host IS NOT DISTINCT FROM d.host) AS at_host
                 FROM webhook_deliveries d
                 WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                     AND (leased_until IS NULL OR leased_until <= now())),
             picked AS (
                 SELECT id FROM ranked WHERE in_domain <= $2 AND at_host <= $3
                 ORDER BY next_attempt_at, id LIMIT $1)
             UPDATE webhook_deliveries SET leased_until = now() + make_interval(secs => $4),
                 attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE id IN (SELECT id FROM picked)
                     AND (leased_until IS NULL OR leased_until <= now())
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, url, payload, attempts",
            &[&room, &per_domain, &per_host, &lease],
        )
        .await?;
    tx.commit().await?;
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

/// Records an attempt, and what comes next: done, another try, or none;
/// and ends its lease. Only the claim that made the attempt records it (a
/// later claim has counted another attempt).
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
    let recorded = state
        .client
        .get()
        .await?
        .execute(
            "WITH mine AS (
                 SELECT id FROM webhook_deliveries
                 WHERE id = $1 AND attempts = $2 AND leased_until IS NOT NULL),
             attempt AS (
                 INSERT INTO webhook_attempts (delivery_id, attempt, status, error, millis)
                 SELECT id, $2, $3, $4, $5 FROM mine ON CONFLICT DO NOTHING)
             UPDATE webhook_deliveries SET last_status = $3, last_error = $4,
                 delivered_at = CASE WHEN $6 = 'delivered' THEN now() END,
                 failed_at = CASE WHEN $6 = 'failed' THEN now() END,
                 next_attempt_at = now() + make_interval(secs => $7),
                 leased_until = NULL
             WHERE id IN (SELECT id FROM mine)",
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
    if recorded == 0 {
        tracing::warn!(
            delivery = id,
            attempt,
            "A webhook attempt outlived its lease; another claim has it."
        );
    }
    Ok(())
}
