//! A job's rejected rows in the database (`import_rejects`), so that the
//! rejects file survives the instance that read them: a reader saves each
//! step's rejects before the step's rows go on, and whichever instance
//! finishes the job writes the file from them.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::JobError;
use crate::import::formats::rejects::Rejects;
use crate::job::fence::Fence;
use crate::pg;
use crate::settings::{DatabaseSettings, StorageSettings};
use crate::storage::Store;
use crate::telemetry::RowsRejected;
use crate::vocab::Target;

/// Rejects read per query when the file is written.
const PAGE: i64 = 10_000;

/// Where one reader saves its rejects. It connects on the first save: a
/// job without rejects never does. The rejects file's header goes on the
/// job row, through the attempt's fence.
pub struct RejectsStore {
    fence: Fence,
    database: DatabaseSettings,
    client: Option<Client>,
    header_saved: bool,
}

impl RejectsStore {
    pub fn new(fence: Fence, database: DatabaseSettings) -> Self {
        Self {
            fence,
            database,
            client: None,
            header_saved: false,
        }
    }

    /// Ends a reader's step: saves the step's rejects (`rejected` of them,
    /// into `target`), before its rows go on, so that a checkpoint past
    /// them never lacks them; then clears them. A reject saved by an
    /// earlier attempt (at the same position) is left as it was.
    pub async fn save(
        &mut self,
        rejects: &mut Rejects,
        target: Target,
        rejected: u64,
    ) -> Result<(), JobError> {
        RowsRejected {
            target,
            rows: rejected,
        }
        .emit();
        if rejects.is_empty() {
            return Ok(());
        }
        let client = match &mut self.client {
            Some(client) => client,
            none => {
                none.insert(pg::connect_bulk(&pg::named(&self.database, "ferry-rejects")).await?)
            }
        };
        if !self.header_saved {
            if let Err(e) = self
                .fence
                .rejects_header(&*client, rejects.header().to_vec())
                .await
            {
                self.client = None;
                return Err(e.into());
            }
            self.header_saved = true;
        }
        let pending = rejects.pending();
        let saved = client
            .execute(
                "INSERT INTO import_rejects (job_id, position, line, key)
                 SELECT $1, p, l, k FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) AS r (p, l, k)
                 ON CONFLICT (job_id, position) DO NOTHING",
                &[
                    &self.fence.job_id(),
                    &pending.positions,
                    &pending.lines,
                    &pending.keys,
                ],
            )
            .await;
        if let Err(e) = saved {
            // The next attempt starts on a new connection.
            self.client = None;
            return Err(e.into());
        }
        rejects.clear();
        Ok(())
    }
}

/// Writes job `job_id`'s rejects file at `path`: the header, then every
/// reject in position order, a page at a time. Returns how many rejects it
/// holds; a job without rejects gets no file (0).
pub async fn write_file(
    client: &Client,
    job_id: Uuid,
    path: &Path,
    stage: &'static str,
) -> Result<u64, JobError> {
    let header: Option<Vec<u8>> = client
        .query_one("SELECT rejects_header FROM jobs WHERE id = $1", &[&job_id])
        .await?
        .get(0);
    let Some(header) = header else {
        return Ok(0);
    };
    let io_error = |e: std::io::Error| JobError::Stage {
        stage,
        reason: format!("writing the rejects file {}: {e}", path.display()),
        retriable: true,
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
    }
    let file = tokio::fs::File::create(path).await.map_err(io_error)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header).await.map_err(io_error)?;
    let (mut after, mut written) = (-1_i64, 0_u64);
    loop {
        let rows = client
            .query(
                "SELECT position, line FROM import_rejects
                 WHERE job_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                &[&job_id, &after, &PAGE],
            )
            .await?;
        for row in &rows {
            out.write_all(row.get::<_, &[u8]>(1))
                .await
                .map_err(io_error)?;
        }
        written += rows.len() as u64;
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => after = last.get(0),
            _ => break,
        }
    }
    out.flush().await.map_err(io_error)?;
    out.get_mut().sync_all().await.map_err(io_error)?;
    Ok(written)
}

/// The reference ids of job `job_id`'s rejected rows, in file order, up to
/// `limit`; rows without one are left out, and an id that is not UTF-8 is
/// shown lossily.
pub async fn failed_ids(
    client: &Client,
    job_id: Uuid,
    limit: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT key FROM import_rejects WHERE job_id = $1 AND key IS NOT NULL
             ORDER BY position LIMIT $2",
            &[&job_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned())
        .collect())
}

/// Puts a job's rejects file beside its object source
/// (`…/rejects/JOBID.csv`): where the job's rejects can be found. If the
/// upload fails the local copy stays, and its path is the answer.
pub async fn upload(
    job_id: Uuid,
    path: &Path,
    (bucket, key): &(String, String),
    storage: &StorageSettings,
) -> String {
    let local = path.display().to_string();
    match Store::new(storage).put_file(bucket, key, path).await {
        Ok(()) => {
            let _ = tokio::fs::remove_file(path).await;
            format!("s3://{bucket}/{key}")
        }
        Err(e) => {
            tracing::error!(job_id = %job_id, error = %e, path = %local, "Could not upload the rejects file; it stays local.");
            local
        }
    }
}
