//! The import as a kind of job: its row (the `nodes` and `matches` kinds),
//! its terminal write (the status event, and the saved rejects that its
//! rejects file now holds), its checkpoints, and its pipeline.

use super::actors::import_pipeline;
use super::event::StatusEvent;
use super::table::matches::Matches;
use super::table::nodes::Nodes;
use super::table::Table;
use super::{Checkpoint, Import, ImportOutcome, InputFormat};
use crate::error::{JobError, StoreError};
use crate::job::store::Columns;
use crate::job::terminal::End;
use crate::job::{Family, Job, JobStatus, Kind, Run, Spawned};
use crate::pipeline::Ctx;
use crate::vocab::{Counts, ImportMode, Target};

impl Kind for Import {
    type Outcome = ImportOutcome;
    type Ctx = Ctx;

    fn names() -> Vec<(&'static str, Family)> {
        Target::ALL
            .iter()
            .map(|t| (t.as_str(), Family::Imports))
            .collect()
    }

    fn name(&self) -> &'static str {
        self.target.as_str()
    }

    fn read(kind: &str, row: &Columns<'_>) -> Result<Self, StoreError> {
        let target = Target::parse(kind)
            .ok_or_else(|| row.unreadable("kind", format!("unknown value {kind:?}")))?;
        let counts = Counts {
            records: row.count("total_rows")?,
            inserted: row.count("inserted_rows")?,
            updated: row.count("updated_rows")?,
            unchanged: row.count("unchanged_rows")?,
            duplicates: row.count("duplicate_rows")?,
            rejected: row.count("rejected_rows")?,
            deleted: row.count("deleted_rows")?,
        };
        let checkpoint: Checkpoint = row.json("checkpoint")?.unwrap_or_default();
        Ok(Import {
            target,
            group_id: row.get("group_id")?,
            group_key: row.get("group_key")?,
            node_type: row.get("node_type")?,
            source: row.get("source")?,
            format: row.parse("format", InputFormat::parse)?,
            mode: row.parse("import_mode", ImportMode::parse)?,
            force: row.get("sync_force")?,
            counts,
            rejects_path: row.get("rejects_path")?,
            checkpoint,
        })
    }

    fn rows(&self) -> u64 {
        self.counts.records
    }

    fn given_up(job: &Job<Self>, reason: &str) -> ImportOutcome {
        ImportOutcome::as_checkpointed(&job.work, reason)
    }

    fn failure_reason(outcome: &ImportOutcome) -> Option<&str> {
        outcome.failure_reason.as_deref()
    }

    /// The counts the import ended with, and its status event. Its saved
    /// rejects go once its rejects file holds them (`rejects_path` is set);
    /// an import given up on before writing one keeps them.
    fn end(job: &Job<Self>, status: JobStatus, o: &ImportOutcome, end: &mut End) {
        let event = StatusEvent::new(job, status, o);
        let payload = serde_json::to_string(&event).expect("a status event serialises");
        end.event(event.message_key(), payload, None);
        let n = &o.counts;
        let row = end.writes();
        row.set("total_rows", n.records as i64);
        row.set("processed_rows", n.loaded() as i64);
        row.set("inserted_rows", n.inserted as i64);
        row.set("updated_rows", n.updated as i64);
        row.set("unchanged_rows", n.unchanged as i64);
        row.set("duplicate_rows", n.duplicates as i64);
        row.set("rejected_rows", n.rejected as i64);
        row.set("deleted_rows", n.deleted as i64);
        row.set("failure_reason", o.failure_reason.clone());
        let path = row.set("rejects_path", o.rejects_path.clone());
        end.with(format!(
            "written AS (
                 DELETE FROM import_rejects
                 WHERE job_id = {job} AND {path}::text IS NOT NULL AND EXISTS (SELECT FROM done))",
            job = End::JOB
        ));
        // A completed import's columns are what the group's next import
        // is compared with.
        if let (JobStatus::Completed, Some(drift)) = (status, &o.drift) {
            drift.record(end);
        }
        // A sync that ended before its delete (failed, refused, cancelled)
        // forgets the keys it saw; one that deleted forgot them then.
        if job.work.mode == ImportMode::Sync {
            end.with(format!(
                "forgotten AS (DELETE FROM {seen} WHERE job_id = {job} AND EXISTS (SELECT FROM done))",
                seen = match job.work.target {
                    Target::Nodes => Nodes::SEEN,
                    Target::Matches => Matches::SEEN,
                },
                job = End::JOB
            ));
        }
    }

    async fn spawn(
        run: Run<Self>,
        supervisor: ractor::ActorCell,
        ctx: &Ctx,
    ) -> Result<Spawned, JobError> {
        let args = import_pipeline::Args {
            run,
            database: ctx.database.clone(),
            writers: ctx.writers.clone(),
            settings: ctx.import.clone(),
            retry: ctx.retry.clone(),
            storage: ctx.storage.clone(),
            max_status_ids: ctx.jobs.max_status_ids,
        };
        import_pipeline::spawn_linked(supervisor, args)
            .await
            .map(|pipeline| Spawned {
                root: pipeline.get_cell(),
                name: import_pipeline::NAME,
            })
            .map_err(|e| JobError::of_actor(Box::new(e), import_pipeline::NAME))
    }
}
