//! CopyWriter: one PostgreSQL connection, from the writers' pool, that
//! writes shards of batches with binary COPY. A transient error (connection
//! lost, server restarting, deadlock) is retried on a fresh connection
//! (the old one is closed, not pooled) with backoff; the shard's
//! write is idempotent, so a retry cannot duplicate rows. When the attempts
//! run out the actor fails, and its job pipeline restarts from the
//! checkpoint.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::{Object, Pool};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::error::{DbError, JobError};
use crate::flow::Credit;
use crate::import::table::copy::copy_rows;
use crate::import::table::Table;
use crate::settings::RetrySettings;
use crate::supervision::{backoff, jittered};
use crate::telemetry::{BatchCommitted, BatchRetried, DbFailed, Depth, Mailbox};
use crate::vocab::{WriteMode, Written};

pub const NAME: &str = "copy_writer";

/// This writer's part of a batch: row indexes into the shared batch.
pub struct Shard<B> {
    pub seq: u64,
    pub batch: Arc<B>,
    pub rows: Vec<u32>,
    /// Returned when every shard of the batch is dropped.
    pub credit: Arc<Credit>,
}

pub enum Msg<B> {
    Write(Shard<B>),
}

/// What a writer tells its pipeline: it committed its shard of batch
/// `seq`.
pub struct Committed {
    pub seq: u64,
    pub written: Written,
}

pub struct Args<T> {
    pub index: usize,
    pub job_id: Uuid,
    /// The writers' pool (`pg::writer_pool`).
    pub pool: Pool,
    pub retry: RetrySettings,
    pub mode: WriteMode,
    /// A sync job's writers also keep each batch's keys as seen.
    pub marks_seen: bool,
    pub target: T,
    pub pipeline: Mailbox<Committed>,
    pub depth: Depth,
}

pub struct State<T> {
    args: Args<T>,
    client: Option<Object>,
}

pub type CopyWriterRef<B> = ActorRef<Msg<B>>;

pub async fn spawn_linked<T: Table>(
    pipeline: ActorCell,
    args: Args<T>,
) -> Result<CopyWriterRef<T::Batch>, SpawnErr> {
    let (writer, _) = Actor::spawn_linked(None, CopyWriter::<T>::default(), args, pipeline).await?;
    Ok(writer)
}

/// A writer into one [`Table`].
pub struct CopyWriter<T>(PhantomData<fn() -> T>);

impl<T> Default for CopyWriter<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Table> Actor for CopyWriter<T> {
    type Msg = Msg<T::Batch>;
    type State = State<T>;
    type Arguments = Args<T>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: Args<T>,
    ) -> Result<State<T>, ActorProcessingErr> {
        let client = connect(&args).await?;
        Ok(State {
            args,
            client: Some(client),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        Msg::Write(shard): Self::Msg,
        state: &mut State<T>,
    ) -> Result<(), ActorProcessingErr> {
        state.args.depth.received();
        let started = Instant::now();
        let mut attempt = 1;
        let written = loop {
            let written = write(state, &shard).await;
            if let Err(JobError::Database(error)) = &written {
                DbFailed { error }.emit();
            }
            match written {
                Ok(counts) => break counts,
                Err(e) if e.is_retriable() && attempt < state.args.retry.batch_attempts => {
                    BatchRetried {
                        job_id: state.args.job_id,
                        writer: state.args.index,
                        seq: shard.seq,
                        attempt,
                        error: &e.to_string(),
                    }
                    .emit();
                    discard(&mut state.client);
                    tokio::time::sleep(jittered(backoff(&state.args.retry, attempt))).await;
                    attempt += 1;
                }
                Err(e) => {
                    discard(&mut state.client);
                    return Err(JobError::Stage {
                        stage: NAME,
                        reason: format!("batch {}: {e}", shard.seq),
                        retriable: e.is_retriable(),
                    }
                    .into());
                }
            }
        };
        BatchCommitted {
            target: T::TARGET,
            written,
            elapsed: started.elapsed(),
        }
        .emit();
        state.args.pipeline.send(Committed {
            seq: shard.seq,
            written,
        });
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut State<T>,
    ) -> Result<(), ActorProcessingErr> {
        state.args.depth.drain();
        Ok(())
    }
}

/// A pooled bulk connection with this table's stage ready (it stays from
/// an earlier job; emptied at each commit).
async fn connect<T: Table>(args: &Args<T>) -> Result<Object, JobError> {
    let client = args
        .pool
        .get()
        .await
        .map_err(|e| DbError::Pool(e.to_string()))?;
    client.batch_execute(T::CREATE_STAGE).await?;
    Ok(client)
}

/// Closes the connection instead of handing it back to the pool: after an
/// error its session may not be clean.
fn discard(client: &mut Option<Object>) {
    if let Some(object) = client.take() {
        drop(Object::take(object));
    }
}

/// Writes one shard in one transaction: what became of its rows.
async fn write<T: Table>(
    state: &mut State<T>,
    shard: &Shard<T::Batch>,
) -> Result<Written, JobError> {
    if state.client.as_ref().is_none_or(|c| c.is_closed()) {
        state.client = Some(connect(&state.args).await?);
    }
    let client = state.client.as_mut().expect("connected above");
    let target = &state.args.target;
    let mut tx = client.transaction().await?;
    let sink = tx.copy_in(T::COPY_STAGE).await?;
    copy_rows(sink, shard.rows.iter().copied(), |enc, i| {
        T::encode(&shard.batch, i, enc)
    })
    .await?;
    let (inserted, updated) = match state.args.mode {
        WriteMode::Upsert => target.upsert_staged(&tx).await?,
        WriteMode::Fast => {
            let plain = tx.savepoint("plain_insert").await?;
            match target.insert_staged(&plain).await {
                Ok(inserted) => {
                    plain.commit().await?;
                    (inserted, 0)
                }
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    plain.rollback().await?;
                    target.upsert_staged(&tx).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if state.args.marks_seen {
        tx.execute(T::MARK_SEEN, &[&state.args.job_id]).await?;
    }
    tx.commit().await?;
    // Upserts write only what differs: the other staged rows are the same.
    let staged = shard.rows.len() as u64;
    Ok(Written {
        inserted,
        updated,
        unchanged: staged.saturating_sub(inserted + updated),
    })
}
