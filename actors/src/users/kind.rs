//! A group's users export as two kinds of job over the export pipeline:
//! `users_file` (COST_BASED: a gzip CSV in the store, and a message
//! pointing at it) and `users_refs` (NON_COST_BASED: the reference ids in
//! messages). Both read from one snapshot from their start on every
//! attempt ([`Resume::FromStart`]), so the terminal write can make that
//! snapshot the group's watermark: what it saw is sent.

use std::sync::Arc;

use super::ids::{IdChunker, IdsEncoder, IdsMessage};
use super::pending::PendingSink;
use super::{now, GroupType, Users, UsersSpec, FILE, REFS};
use crate::error::{JobError, StoreError};
use crate::export::actors::export_pipeline::{self, Resume};
use crate::export::encoder;
use crate::export::kind::spawn_pipeline;
use crate::export::sink::{discard, FileSink, Sink};
use crate::export::{Export, ExportOutcome};
use crate::job::store::Columns;
use crate::job::terminal::End;
use crate::job::{Announce, Family, Job, JobStatus, Kind, Run, Spawned};
use crate::pipeline::Ctx;

impl Kind for Users {
    type Outcome = ExportOutcome;
    type Ctx = Ctx;

    fn names() -> Vec<(&'static str, Family)> {
        vec![(FILE, Family::Exports), (REFS, Family::Exports)]
    }

    fn name(&self) -> &'static str {
        super::name(self.delivery.group_type)
    }

    fn read(_: &str, row: &Columns<'_>) -> Result<Self, StoreError> {
        let spec: UsersSpec = row
            .json("spec")?
            .ok_or_else(|| row.unreadable("spec", "a users export without its spec"))?;
        Ok(Users {
            export: Export {
                spec: spec.export,
                checkpoint: row.json("checkpoint")?.unwrap_or_default(),
                result: row.json("result")?,
                expired_at: row.get("expired_at")?,
            },
            delivery: spec.users,
        })
    }

    fn rows(&self) -> u64 {
        self.export.rows()
    }

    fn given_up(job: &Job<Self>, reason: &str) -> ExportOutcome {
        ExportOutcome::as_checkpointed(&job.work.export, reason)
    }

    fn failure_reason(outcome: &ExportOutcome) -> Option<&str> {
        outcome.failure_reason.as_deref()
    }

    fn end(job: &Job<Self>, status: JobStatus, o: &ExportOutcome, end: &mut End) {
        super::terminal::end(job, status, o, end)
    }

    fn ended(
        job: &Job<Self>,
        status: JobStatus,
        o: &ExportOutcome,
        row: &tokio_postgres::Row,
    ) -> Result<Announce, StoreError> {
        super::terminal::ended(job, status, o, row)
    }

    /// A failed group's file goes (its pending messages went with its end).
    fn leaves_work(job: &Job<Self>, status: JobStatus) -> bool {
        job.work.delivery.group_type == GroupType::CostBased && status != JobStatus::Completed
    }

    async fn spawn(
        run: Run<Self>,
        supervisor: ractor::ActorCell,
        ctx: &Ctx,
    ) -> Result<Spawned, JobError> {
        let (job_id, domain_id) = (run.job.id, run.job.domain_id);
        let users = run.job.work.delivery.clone();
        let spec = &run.job.work.export.spec;
        let (sink, encoder): (Arc<dyn Sink>, export_pipeline::Encoder) = match users.group_type {
            GroupType::CostBased => {
                let (format, compression) = (spec.format, spec.compression);
                let settings = ctx.exports.clone();
                (
                    FileSink::for_spec(spec, &ctx.storage, &ctx.exports, &ctx.retry).shared(),
                    Box::new(move |fields| encoder(format, compression, fields, &settings)),
                )
            }
            GroupType::NonCostBased => {
                let head = IdsMessage {
                    domain_id,
                    group_id: users.group_key.clone(),
                    group_type: users.group_type,
                    run_id: users.run_id,
                    exported_at: now(),
                    part: 1,
                    parts: None,
                    reference_ids: Vec::new(),
                };
                let chunker =
                    IdChunker::new(head, users.max_ids_per_message, users.max_message_bytes);
                let sink = PendingSink {
                    pool: ctx.pool.clone(),
                    job_id,
                    topic: users.topic.clone(),
                    key: users.message_key(domain_id),
                };
                (
                    Arc::new(sink),
                    Box::new(move |_| Box::new(IdsEncoder::new(chunker))),
                )
            }
        };
        let args = export_pipeline::Args {
            run: run.map(|users| users.export, |outcome| outcome),
            catalog: ctx.catalog.clone(),
            settings: ctx.exports.clone(),
            database: ctx.database.clone(),
            read_database: ctx.read_database.clone(),
            sink,
            encoder,
            resume: Resume::FromStart,
        };
        spawn_pipeline(supervisor, args).await
    }

    async fn on_end(job: &Job<Self>, ctx: &Ctx) -> Result<bool, String> {
        let export = &job.work.export;
        let sink = FileSink::for_spec(&export.spec, &ctx.storage, &ctx.exports, &ctx.retry);
        discard(&sink, &export.checkpoint)
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }
}
