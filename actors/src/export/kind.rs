//! The export as a kind of job (`export`): its row (the spec, checkpoint
//! and result as JSON), its terminal write (`ExportCompleted` on the
//! events topic and to its webhook), its pipeline, and, when it fails or
//! is cancelled, its files deleted so that no partial export passes for a
//! whole one.

use super::actors::export_pipeline::{self, Resume};
use super::encoder;
use super::event::ExportCompleted;
use super::sink::{discard, FileSink};
use super::webhook;
use super::{Export, ExportOutcome};
use crate::error::{JobError, StoreError};
use crate::job::store::Columns;
use crate::job::terminal::End;
use crate::job::{Family, Job, JobStatus, Kind, Run, Spawned};
use crate::pipeline::Ctx;

/// The kind's `kind` column.
pub const KIND: &str = "export";

impl Kind for Export {
    type Outcome = ExportOutcome;
    type Ctx = Ctx;

    fn names() -> Vec<(&'static str, Family)> {
        vec![(KIND, Family::Exports)]
    }

    fn name(&self) -> &'static str {
        KIND
    }

    fn read(_: &str, row: &Columns<'_>) -> Result<Self, StoreError> {
        Ok(Export {
            spec: row
                .json("spec")?
                .ok_or_else(|| row.unreadable("spec", "an export without its spec"))?,
            checkpoint: row.json("checkpoint")?.unwrap_or_default(),
            result: row.json("result")?,
            expired_at: row.get("expired_at")?,
        })
    }

    fn rows(&self) -> u64 {
        self.result
            .as_ref()
            .map_or(self.checkpoint.rows, |r| r.rows)
    }

    fn given_up(job: &Job<Self>, reason: &str) -> ExportOutcome {
        ExportOutcome::as_checkpointed(&job.work, reason)
    }

    fn failure_reason(outcome: &ExportOutcome) -> Option<&str> {
        outcome.failure_reason.as_deref()
    }

    /// Its result, and `ExportCompleted`: on the events topic, and to the
    /// webhook, queued in the same statement.
    fn end(job: &Job<Self>, status: JobStatus, o: &ExportOutcome, end: &mut End) {
        let event = ExportCompleted::new(job, status, o);
        let payload = serde_json::to_string(&event).expect("an event serialises");
        let url = &job.work.spec.webhook_url;
        let host = end.bind(url.as_deref().and_then(webhook::host_of));
        let hooked = end.bind(url.clone());
        end.event(job.id.to_string(), payload, None);
        ended_export(end, o);
        end.with(format!(
            "hooked AS (
                 INSERT INTO webhook_deliveries (job_id, domain_id, host, url, payload)
                 SELECT id, domain_id, {host}, {hooked}, {payload}
                 FROM done WHERE {hooked}::text IS NOT NULL)",
            payload = End::PAYLOAD
        ));
    }

    fn leaves_work(_: &Job<Self>, status: JobStatus) -> bool {
        status != JobStatus::Completed
    }

    async fn spawn(
        run: Run<Self>,
        supervisor: ractor::ActorCell,
        ctx: &Ctx,
    ) -> Result<Spawned, JobError> {
        let spec = &run.job.work.spec;
        let (format, compression) = (spec.format, spec.compression);
        let settings = ctx.exports.clone();
        let sink = FileSink::for_spec(spec, &ctx.storage, &ctx.exports, &ctx.retry).shared();
        let args = export_pipeline::Args {
            run,
            catalog: ctx.catalog.clone(),
            settings: ctx.exports.clone(),
            database: ctx.database.clone(),
            read_database: ctx.read_database.clone(),
            sink,
            encoder: Box::new(move |fields| encoder(format, compression, fields, &settings)),
            resume: Resume::AfterLastPart,
        };
        spawn_pipeline(supervisor, args).await
    }

    /// A failed or cancelled export's files are incomplete: they go, with
    /// the parts of an unfinished one.
    async fn on_end(job: &Job<Self>, ctx: &Ctx) -> Result<bool, String> {
        let sink = FileSink::for_spec(&job.work.spec, &ctx.storage, &ctx.exports, &ctx.retry);
        discard(&sink, &job.work.checkpoint)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(job_id = %job.id, files = job.work.checkpoint.files.len(), "Deleted a failed export's files.");
        Ok(true)
    }
}

/// The export pipeline of an attempt, linked to `supervisor`.
pub async fn spawn_pipeline(
    supervisor: ractor::ActorCell,
    args: export_pipeline::Args,
) -> Result<Spawned, JobError> {
    export_pipeline::spawn_linked(supervisor, args)
        .await
        .map(|pipeline| Spawned {
            root: pipeline.get_cell(),
            name: export_pipeline::NAME,
        })
        .map_err(|e| JobError::of_actor(Box::new(e), export_pipeline::NAME))
}

/// The columns an export of any kind ends with: its result, its rows, why
/// it failed.
pub fn ended_export(end: &mut End, o: &ExportOutcome) {
    let row = end.writes();
    row.set(
        "result",
        serde_json::to_value(&o.result).expect("a result serialises"),
    );
    row.set("processed_rows", o.result.rows as i64);
    row.set("failure_reason", o.failure_reason.clone());
}
