//! RefsExporter: one attempt of a NON_COST_BASED group's users export
//! (seed 000). No file: it reads the group's unsent reference ids from one
//! `REPEATABLE READ` snapshot, in order, packs them into messages
//! ([`IdChunker`]), and writes each to `pending_messages` as it fills, so
//! memory holds one message whatever the group's size. The terminal write
//! moves them to the outbox and marks the users sent, in one transaction;
//! a retried attempt first deletes the last one's pending messages.

use futures::{pin_mut, StreamExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use super::export_pipeline::save;
use super::job_pipeline::FINISHED;
use crate::error::ImportError;
use crate::export::users::{now, IdChunker, IdsMessage, UsersDelivery};
use crate::export::{ExportCheckpoint, ExportResult};
use crate::job::lifecycle::Fence;
use crate::job::{Export, ExportOutcome, Job, Outcome};
use crate::pg;
use crate::progress::Progress;
use crate::settings::DatabaseSettings;
use crate::telemetry::RowsExported;

pub const NAME: &str = "refs_exporter";

/// Ids between two checkpoints (progress, and a check of the lease).
const CHECKPOINT_IDS: u64 = 50_000;

pub enum Msg {
    Start,
}

pub struct Args {
    pub job: Job,
    pub export: Export,
    pub fence: Fence,
    pub report: Option<oneshot::Sender<Outcome>>,
    /// Where the job row and the pending messages are.
    pub database: DatabaseSettings,
    /// Where the ids are read (the primary, or `exports.read_url`).
    pub read_database: DatabaseSettings,
    pub progress: std::sync::Arc<Progress>,
}

/// It keeps its arguments, and nothing else, between messages.
pub type State = Args;

pub type RefsExporterRef = ActorRef<Msg>;

pub struct RefsExporter;

impl Actor for RefsExporter {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<Args, ActorProcessingErr> {
        myself.cast(Msg::Start)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        Msg::Start: Msg,
        args: &mut Args,
    ) -> Result<(), ActorProcessingErr> {
        let users = args
            .export
            .spec
            .users
            .clone()
            .ok_or_else(|| permanent("a reference id export without its group".into()))?;
        let (result, snapshot) = run(args, &users).await.map_err(as_stage)?;
        if let Some(report) = args.report.take() {
            let _ = report.send(Outcome::Export(ExportOutcome {
                result,
                failure_reason: None,
                snapshot: Some(snapshot),
            }));
        }
        myself.stop(Some(FINISHED.into()));
        Ok(())
    }
}

/// A failure, named as this stage's (for `ferry_actor_restarts_total`),
/// as retriable as it was.
fn as_stage(err: ActorProcessingErr) -> ActorProcessingErr {
    match err.downcast::<ImportError>() {
        Ok(e) if matches!(*e, ImportError::Stage { .. } | ImportError::LeaseLost(_)) => e,
        Ok(e) => Box::new(ImportError::Stage {
            actor: NAME,
            reason: e.to_string(),
            retriable: e.is_retriable(),
        }),
        Err(other) => other,
    }
}

fn permanent(reason: String) -> ImportError {
    ImportError::Stage {
        actor: NAME,
        reason,
        retriable: false,
    }
}

/// The result, and the snapshot the ids were read from.
async fn run(
    args: &Args,
    users: &UsersDelivery,
) -> Result<(ExportResult, String), ActorProcessingErr> {
    let job_id = args.job.id;
    let control = pg::connect(&pg::named(&args.database, "ferry-job")).await?;
    control
        .execute("DELETE FROM pending_messages WHERE job_id = $1", &[&job_id])
        .await
        .map_err(ImportError::Database)?;
    let read = pg::connect(&pg::named(&args.read_database, "ferry-export")).await?;
    read.batch_execute("SET TIME ZONE 'UTC'; BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(ImportError::Database)?;
    let taken = read
        .query_one(
            "SELECT to_char(statement_timestamp(), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    pg_current_snapshot()::text,
                    (SELECT count(*) FROM nodes
                     WHERE domain_id = $1 AND group_id = $2 AND NOT processed)",
            &[&args.job.domain_id, &users.group_id],
        )
        .await
        .map_err(ImportError::Database)?;
    let total = taken.get::<_, i64>(2) as u64;
    let mut checkpoint = ExportCheckpoint {
        data_as_of: Some(taken.get(0)),
        snapshot: Some(taken.get(1)),
        total,
        ..ExportCheckpoint::default()
    };
    save(&control, &args.fence, &checkpoint).await?;
    Progress::set(&args.progress.records_total, total);
    tracing::info!(
        job_id = %job_id, run_id = %users.run_id, group = %users.group_key,
        total, "Reference id export reading."
    );

    let ids = read
        .query_raw(
            "SELECT reference_id FROM nodes
             WHERE domain_id = $1 AND group_id = $2 AND NOT processed
             ORDER BY reference_id",
            [
                &args.job.domain_id as &(dyn tokio_postgres::types::ToSql + Sync),
                &users.group_id,
            ],
        )
        .await
        .map_err(ImportError::Database)?;
    pin_mut!(ids);
    let mut chunker = IdChunker::new(
        IdsMessage {
            domain_id: args.job.domain_id,
            group_id: users.group_key.clone(),
            group_type: users.group_type,
            run_id: users.run_id,
            exported_at: now(),
            part: 1,
            parts: None,
            reference_ids: Vec::new(),
        },
        users.max_ids_per_message,
        users.max_message_bytes,
    );
    let key = users.message_key(args.job.domain_id);
    let mut bytes = 0u64;
    let mut since_checkpoint = 0;
    while let Some(row) = ids.next().await {
        let id: String = row.map_err(ImportError::Database)?.get(0);
        let full = chunker.push(id).map_err(|e| permanent(e.to_string()))?;
        if let Some(message) = full {
            bytes += pend(&control, args, users, &key, chunker.parts(), &message).await?;
        }
        checkpoint.rows += 1;
        since_checkpoint += 1;
        if since_checkpoint == CHECKPOINT_IDS {
            since_checkpoint = 0;
            save(&control, &args.fence, &checkpoint).await?;
            Progress::set(&args.progress.records_committed, checkpoint.rows);
        }
    }
    if let Some(message) = chunker.take() {
        bytes += pend(&control, args, users, &key, chunker.parts(), &message).await?;
    }
    read.batch_execute("COMMIT")
        .await
        .map_err(ImportError::Database)?;
    save(&control, &args.fence, &checkpoint).await?;
    Progress::set(&args.progress.records_committed, checkpoint.rows);
    RowsExported {
        object: args.export.spec.object.clone(),
        rows: checkpoint.rows,
    }
    .emit();
    let snapshot = checkpoint.snapshot.unwrap_or_default();
    Ok((
        ExportResult {
            files: Vec::new(),
            rows: checkpoint.rows,
            bytes,
            data_as_of: checkpoint.data_as_of,
        },
        snapshot,
    ))
}

/// Writes message `seq` to the pending messages; its size.
async fn pend(
    control: &Client,
    args: &Args,
    users: &UsersDelivery,
    key: &str,
    seq: u32,
    message: &str,
) -> Result<u64, ImportError> {
    control
        .execute(
            "INSERT INTO pending_messages (job_id, seq, topic, message_key, payload)
             VALUES ($1, $2, $3, $4, $5)",
            &[&args.job.id, &(seq as i32), &users.topic, &key, &message],
        )
        .await
        .map_err(ImportError::Database)?;
    Ok(message.len() as u64)
}
