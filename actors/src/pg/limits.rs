//! Per-caller limits that hold across every instance on one database:
//! token buckets (a row per caller, taken with one upsert under its row
//! lock) and holds (what a caller has open at once: a row per request or
//! stream, counted under a transaction's advisory lock, renewed by the
//! instance that holds it and gone soon after that instance is).

use std::time::Duration;

use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

/// Takes one token of `caller`'s bucket, which holds `per_minute` and
/// refills at `per_minute` a minute. `Err(seconds)`: empty, with the wait
/// for its next token. In a transaction, the token goes back if it rolls
/// back, and the caller's other takes wait for it.
pub async fn take_token(
    c: &impl GenericClient,
    caller: &str,
    per_minute: u32,
) -> Result<Result<(), u32>, tokio_postgres::Error> {
    let capacity = f64::from(per_minute.max(1));
    let refilled =
        "least($2::float8, b.tokens + extract(epoch FROM clock_timestamp() - b.at)::float8 * $2 / 60)";
    let taken = c
        .query_opt(
            &format!(
                "INSERT INTO api_buckets AS b (caller, tokens, at)
                 VALUES ($1, $2::float8 - 1, clock_timestamp())
                 ON CONFLICT (caller) DO UPDATE
                 SET tokens = {refilled} - 1, at = clock_timestamp()
                 WHERE {refilled} >= 1
                 RETURNING tokens"
            ),
            &[&caller, &capacity],
        )
        .await?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let row = c
        .query_one(
            &format!("SELECT {refilled} FROM api_buckets b WHERE caller = $1"),
            &[&caller, &capacity],
        )
        .await?;
    let tokens: f64 = row.get(0);
    let wait = ((1.0 - tokens) * 60.0 / capacity).ceil().max(1.0);
    Ok(Err(wait as u32))
}

/// Forgets buckets that are full again (untouched for a minute): a caller
/// without a row has a full bucket.
pub async fn forget_full_buckets(c: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "DELETE FROM api_buckets WHERE at < clock_timestamp() - interval '1 minute'",
        &[],
    )
    .await
}

/// What a hold is of, and its bound.
#[derive(Debug, Clone, Copy)]
pub struct HoldKind {
    /// "requests in flight", "event streams open".
    pub what: &'static str,
    pub limit: i64,
}

/// Takes hold `id` of `caller`'s `kind` for `instance`, lasting `ttl`
/// unless renewed; false when the caller has `kind.limit` already (across
/// every instance). Of `instance`'s own rows only those that `live` names
/// count (one just released may not be deleted yet); it is asked after the
/// transaction's advisory lock, which makes the count and the insert one
/// step, so it names every hold of this instance that committed before.
pub async fn hold(
    tx: &Transaction<'_>,
    kind: HoldKind,
    caller: &str,
    (instance, id): (&str, Uuid),
    live: impl FnOnce() -> Vec<Uuid>,
    ttl: Duration,
) -> Result<bool, tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('ferry-holds:' || $1 || ':' || $2, 0))",
        &[&kind.what, &caller],
    )
    .await?;
    let live = live();
    let row = tx
        .query_opt(
            "WITH gone AS (
                 DELETE FROM api_holds
                 WHERE caller = $2 AND what = $3 AND until < clock_timestamp())
             INSERT INTO api_holds (id, caller, what, instance, until)
             SELECT $1, $2, $3, $4, clock_timestamp() + make_interval(secs => $6)
             WHERE (SELECT count(*) FROM api_holds
                    WHERE caller = $2 AND what = $3 AND until >= clock_timestamp()
                        AND (instance <> $4 OR id = ANY($7))) < $5
             RETURNING id",
            &[
                &id,
                &caller,
                &kind.what,
                &instance,
                &kind.limit,
                &ttl.as_secs_f64(),
                &live,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// Ends a hold.
pub async fn release(c: &impl GenericClient, id: Uuid) -> Result<u64, tokio_postgres::Error> {
    c.execute("DELETE FROM api_holds WHERE id = $1", &[&id])
        .await
}

/// Renews `instance`'s holds that are still `live` for `ttl`, and deletes
/// its others (a release that failed) and everyone's expired ones (an
/// instance that died).
pub async fn renew(
    c: &impl GenericClient,
    instance: &str,
    live: &[Uuid],
    ttl: Duration,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "WITH renewed AS (
             UPDATE api_holds SET until = clock_timestamp() + make_interval(secs => $3)
             WHERE id = ANY($2))
         DELETE FROM api_holds
         WHERE NOT id = ANY($2) AND (instance = $1 OR until < clock_timestamp())",
        &[&instance, &live, &ttl.as_secs_f64()],
    )
    .await?;
    Ok(())
}
