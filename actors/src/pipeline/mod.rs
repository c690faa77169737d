//! What every pipeline root shares: the resources an attempt's pipeline
//! is spawned with ([`Ctx`]), the root's actor over a [`root::Pipeline`]
//! (its start, its failures, its stages' events), its stages spawned,
//! linked and named ([`stages`]), out-of-order completions made one
//! contiguous mark ([`watermark`]), and the read snapshot ([`snapshot`]).

pub mod root;
pub mod snapshot;
pub mod stages;
pub mod watermark;

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::error::JobError;
use crate::export::object::Catalog;
use crate::pg;
use crate::settings::{
    DatabaseSettings, ExportSettings, ImportSettings, JobSettings, RetrySettings, StorageSettings,
};

pub use root::Pipeline;
pub use stages::Stages;
pub use watermark::Watermark;

/// What an attempt's pipeline may use, made once per process by the
/// JobCoordinator and shared by every job it runs.
#[derive(Clone)]
pub struct Ctx {
    /// Where the job rows are (checkpoints, saved rejects, pending
    /// messages).
    pub database: DatabaseSettings,
    /// Where exports read their rows: the primary, or `exports.read_url`.
    pub read_database: DatabaseSettings,
    /// Bookkeeping connections.
    pub pool: Pool,
    /// The CopyWriters' connections, kept across jobs.
    pub writers: Pool,
    /// What exports may read, from the catalog at start.
    pub catalog: Arc<Catalog>,
    pub import: Arc<ImportSettings>,
    pub exports: Arc<ExportSettings>,
    pub storage: StorageSettings,
    pub retry: RetrySettings,
    pub jobs: JobSettings,
}

impl Ctx {
    /// What this process's pipelines will be spawned with: the writers'
    /// pool (made when first needed, up to every writer of every job that
    /// can run at once), and what exports may read, from the catalog now.
    pub async fn load(
        pool: Pool,
        database: DatabaseSettings,
        import: ImportSettings,
        exports: ExportSettings,
        storage: StorageSettings,
        retry: RetrySettings,
        jobs: JobSettings,
    ) -> Result<Self, JobError> {
        let writers = pg::writer_pool(&database, jobs.concurrency.max(1) * import.writers.max(1))?;
        let catalog = {
            let c = pool
                .get()
                .await
                .map_err(|e| crate::error::DbError::Pool(e.to_string()))?;
            Catalog::load(&**c, &exports)
                .await
                .map_err(|e| JobError::permanent("catalog", e))?
        };
        let read_database = match exports.read_url.as_str() {
            "" => database.clone(),
            url => DatabaseSettings {
                url: url.to_string(),
                ..database.clone()
            },
        };
        Ok(Self {
            database,
            read_database,
            pool,
            writers,
            catalog: Arc::new(catalog),
            import: Arc::new(import),
            exports: Arc::new(exports),
            storage,
            retry,
            jobs,
        })
    }
}
