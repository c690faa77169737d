//! A job's rejected rows in the database (`import_rejects`), so that the
//! rejects file survives the instance that read them: a reader saves each
//! step's rejects before the step's rows go on, and whichever instance
//! finishes the job writes the file from them.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::ImportError;
use crate::formats::rejects::Rejects;
use crate::settings::DatabaseSettings;

/// Rejects read per query when the file is written.
const PAGE: i64 = 10_000;

/// Where one reader saves its rejects. It connects on the first save: a
/// job without rejects never does.
pub struct RejectsStore {
    job_id: Uuid,
    database: DatabaseSettings,
    client: Option<Client>,
    header_saved: bool,
}

impl RejectsStore {
    pub fn new(job_id: Uuid, database: DatabaseSettings) -> Self {
        Self {
            job_id,
            database,
            client: None,
            header_saved: false,
        }
    }

    /// Saves the buffered rejects, then clears them. A reject saved by an
    /// earlier attempt (at the same position) is left as it was.
    pub async fn save(&mut self, rejects: &mut Rejects) -> Result<(), ImportError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let client = match &mut self.client {
            Some(client) => client,
            none => none
                .insert(super::connect_bulk(&super::named(&self.database, "ferry-rejects")).await?),
        };
        let header = (!self.header_saved).then(|| rejects.header());
        let pending = rejects.pending();
        let saved = client
            .execute(
                "WITH header AS (
                     UPDATE jobs SET rejects_header = $5
                     WHERE id = $1 AND $5::bytea IS NOT NULL)
                 INSERT INTO import_rejects (job_id, position, line, key)
                 SELECT $1, p, l, k FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) AS r (p, l, k)
                 ON CONFLICT (job_id, position) DO NOTHING",
                &[
                    &self.job_id,
                    &pending.positions,
                    &pending.lines,
                    &pending.keys,
                    &header,
                ],
            )
            .await;
        if let Err(e) = saved {
            // The next attempt starts on a new connection.
            self.client = None;
            return Err(e.into());
        }
        self.header_saved = true;
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
    actor: &'static str,
) -> Result<u64, ImportError> {
    let header: Option<Vec<u8>> = client
        .query_one("SELECT rejects_header FROM jobs WHERE id = $1", &[&job_id])
        .await?
        .get(0);
    let Some(header) = header else {
        return Ok(0);
    };
    let io_error = |e: std::io::Error| ImportError::Stage {
        actor,
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
