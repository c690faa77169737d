//! An attempt's right to write its job's progress: every write its
//! pipeline makes to the job row (checkpoints, the rejects file's header)
//! changes the row only while the attempt's owner holds the lease and the
//! job is PENDING or RUNNING; otherwise it is [`Fenced::Lost`].

use std::sync::Arc;

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::terminal::Writes;
use crate::error::Fenced;
use crate::vocab::JobStatus;

/// An attempt's right to write its job's progress, for its pipeline.
#[derive(Debug, Clone)]
pub struct Fence {
    job_id: Uuid,
    owner: Arc<str>,
}

impl Fence {
    pub(super) fn new(job_id: Uuid, owner: Arc<str>) -> Self {
        Self { job_id, owner }
    }

    pub fn job_id(&self) -> Uuid {
        self.job_id
    }

    /// Records progress: the kind's checkpoint, and the counts its row
    /// shows meanwhile (`counts` adds them).
    pub async fn checkpoint(
        &self,
        c: &impl GenericClient,
        checkpoint: &impl Serialize,
        counts: impl FnOnce(&mut Writes),
    ) -> Result<(), Fenced> {
        let mut writes = Writes::from(3);
        writes.set(
            "checkpoint",
            serde_json::to_value(checkpoint).expect("a checkpoint serialises"),
        );
        counts(&mut writes);
        self.update(c, &writes).await
    }

    /// Records the header of the job's rejects file (its source's columns),
    /// once its first rejects are saved.
    pub async fn rejects_header(
        &self,
        c: &impl GenericClient,
        header: Vec<u8>,
    ) -> Result<(), Fenced> {
        let mut writes = Writes::from(3);
        writes.set("rejects_header", header);
        self.update(c, &writes).await
    }

    /// `writes`, fenced: `$1` the job, `$2` the owner.
    async fn update(&self, c: &impl GenericClient, writes: &Writes) -> Result<(), Fenced> {
        let sql = format!(
            "UPDATE jobs SET updated_at = now(){sets}
             WHERE id = $1 AND lease_owner = $2 AND status IN {active}",
            sets = writes.assignments(),
            active = JobStatus::sql_list(&JobStatus::ACTIVE)
        );
        let head: [&(dyn ToSql + Sync); 2] = [&self.job_id, &&*self.owner];
        let params: Vec<&(dyn ToSql + Sync)> = head.into_iter().chain(writes.params()).collect();
        match c.execute(&sql, &params).await? {
            1 => Ok(()),
            _ => Err(Fenced::Lost(self.job_id)),
        }
    }
}
