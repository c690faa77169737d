//! Per-caller bounds, which hold across every instance on the database
//! ([`ferry_actors::pg::limits`]): behind a load balancer, N instances do
//! not give a caller N times its limit.
//!
//! - [`Permits`]: at most so many requests in flight, or event streams
//!   open, per caller. Each is a hold row, renewed by its instance while
//!   it lasts and released when it ends; an instance that dies leaves
//!   holds that expire within [`HOLD_TTL`]. A caller's requests pass this
//!   instance's own bound first, so a flood of them is refused without
//!   taking the database's connections.
//! - [`Limiter`]: a token bucket per caller, so each may create
//!   `exports.create_per_minute` exports a minute, in bursts up to that
//!   many. Only creations take a token: the token is taken in the
//!   creation's transaction, so a refusal costs none.
//!
//! Over either, 429 with when to try again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use deadpool_postgres::Pool;
use ferry_actors::pg::limits::{self as pg_limits, HoldKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::ApiError;

/// How long a hold lasts unless its instance renews it.
pub const HOLD_TTL: Duration = Duration::from_secs(60);

/// How often an instance renews its holds.
const RENEW_EVERY: Duration = Duration::from_secs(15);

/// This instance's holds, shared by its [`Permits`].
pub struct Holds {
    pool: Pool,
    /// Whose holds they are (the instance's lease owner).
    instance: String,
    live: Mutex<HashSet<Uuid>>,
}

impl Holds {
    pub fn new(pool: Pool, instance: String) -> Arc<Self> {
        Arc::new(Self {
            pool,
            instance,
            live: Mutex::new(HashSet::new()),
        })
    }

    /// Renews this instance's live holds until the runtime stops, and
    /// clears dead ones (another instance's that expired, its own whose
    /// release failed) and full buckets.
    pub fn keep_renewed(self: &Arc<Self>) {
        let holds = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RENEW_EVERY);
            loop {
                every.tick().await;
                let Some(holds) = holds.upgrade() else {
                    return;
                };
                if let Err(e) = holds.renew().await {
                    tracing::warn!(error = %e, "Renewing the API's holds failed; the next tick tries again.");
                }
            }
        });
    }

    async fn renew(&self) -> anyhow::Result<()> {
        let live: Vec<Uuid> = self.live().iter().copied().collect();
        let client = self.pool.get().await?;
        pg_limits::renew(&**client, &self.instance, &live, HOLD_TTL).await?;
        pg_limits::forget_full_buckets(&**client).await?;
        Ok(())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.live.lock().expect("no panic while held")
    }
}

/// At most `limit` of something held at once per caller.
pub struct Permits {
    kind: HoldKind,
    holds: Arc<Holds>,
    /// This instance's share, checked first.
    local: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One of a caller's permits, held until dropped.
pub struct Permit {
    id: Uuid,
    holds: Arc<Holds>,
    _local: OwnedSemaphorePermit,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.holds.live().remove(&self.id);
        let (holds, id) = (self.holds.clone(), self.id);
        // A release that fails leaves a hold that the next renewal clears.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(client) = holds.pool.get().await {
                    let _ = pg_limits::release(&**client, id).await;
                }
            });
        }
    }
}

impl Permits {
    pub fn new(limit: usize, what: &'static str, holds: Arc<Holds>) -> Self {
        let limit = limit.max(1);
        Self {
            kind: HoldKind {
                what,
                limit: limit as i64,
            },
            holds,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// One of `caller`'s permits; 429 when it has `limit` already, on this
    /// instance or on all of them.
    pub async fn take(&self, caller: &str) -> Result<Permit, ApiError> {
        let refused = || {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "this key has {} {} already",
                    self.kind.limit, self.kind.what
                ),
            )
            .retry_after(1)
        };
        let local = {
            let mut local = self.local.lock().expect("no panic while held");
            if local.len() > 10_000 {
                // Forget callers that hold nothing.
                local.retain(|_, s| Arc::strong_count(s) > 1);
            }
            local
                .entry(caller.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.kind.limit as usize)))
                .clone()
        };
        let local = local.try_acquire_owned().map_err(|_| refused())?;
        // Live before its row commits, so that this instance's next
        // request counts it; the permit's drop ends it, whatever happens.
        let id = Uuid::now_v7();
        self.holds.live().insert(id);
        let permit = Permit {
            id,
            holds: self.holds.clone(),
            _local: local,
        };
        let mut client = self.holds.pool.get().await?;
        let tx = client.transaction().await?;
        let me = (self.holds.instance.as_str(), id);
        let live = || self.holds.live().iter().copied().collect();
        let held = pg_limits::hold(&tx, self.kind, caller, me, live, HOLD_TTL).await?;
        tx.commit().await?;
        held.then_some(permit).ok_or_else(refused)
    }
}

/// Export creations per caller.
pub struct Limiter {
    per_minute: u32,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
        }
    }

    /// Takes one token of `caller`'s bucket in `c` (the creation's
    /// transaction), or says when there is one.
    pub async fn take(
        &self,
        c: &impl tokio_postgres::GenericClient,
        caller: &str,
    ) -> Result<(), ApiError> {
        pg_limits::take_token(c, caller, self.per_minute)
            .await?
            .map_err(|wait| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "at most {} exports a minute; try again in {wait} s",
                        self.per_minute
                    ),
                )
                .retry_after(wait)
            })
    }
}
