//! Where an export's output goes, part by part: a [`Sink`]. Files go to
//! a [`FileSink`]: an S3 multipart upload, or a local file written at each
//! part's offset (`FILE.partial`, renamed when complete). Each call is
//! retried with backoff on transient failures, behind one circuit breaker
//! for the store (a store that keeps failing is waited out by every export
//! together, not hammered by each); a part is durable when its call
//! returns (a local part is synced), so the checkpoint that records it
//! never claims more than is stored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{Destination, OpenFile};
use crate::settings::RetrySettings;
use crate::storage::{ObjectMeta, StorageError, Store};
use crate::supervision::{backoff, jittered, Breaker};
use crate::telemetry::CircuitOpened;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SinkError {
    pub location: String,
    pub message: String,
    pub retriable: bool,
}

/// Where an export's parts are stored. A part is stored when its call
/// returns; a file's parts may be stored in any order, and the file is
/// whole once `complete` returns.
pub trait Sink: Send + Sync + 'static {
    /// Makes `file` ready for its next part (a file continued after a
    /// restart goes on after its stored parts).
    fn begin<'a>(&'a self, file: &'a mut OpenFile) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Stores part `number`, which begins `offset` bytes into the file;
    /// returns its tag.
    fn put_part<'a>(
        &'a self,
        location: &'a Destination,
        upload_id: Option<&'a str>,
        number: i32,
        offset: u64,
        body: Bytes,
    ) -> BoxFuture<'a, Result<String, SinkError>>;

    /// Makes the file whole from its stored parts.
    fn complete<'a>(&'a self, file: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Drops an unfinished file and its stored parts.
    fn abort<'a>(&'a self, file: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Deletes a finished file.
    fn delete<'a>(&'a self, location: &'a Destination) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Drops everything an export stored: its finished files, and the parts
/// of its open one.
pub async fn discard(
    sink: &dyn Sink,
    checkpoint: &super::ExportCheckpoint,
) -> Result<(), SinkError> {
    if let Some(open) = &checkpoint.open {
        sink.abort(open).await?;
    }
    for file in &checkpoint.files {
        sink.delete(&file.location).await?;
    }
    Ok(())
}

/// The store files go to, and how hard to try.
#[derive(Clone)]
pub struct FileSink {
    store: Option<Store>,
    meta: ObjectMeta,
    max_attempts: u32,
    retry: RetrySettings,
}

/// The object store's circuit breaker, one per process: when the store
/// keeps failing, every export's calls wait it out together instead of
/// each retrying on its own.
fn store_breaker(retry: &RetrySettings) -> &'static Mutex<Breaker> {
    static BREAKER: OnceLock<Mutex<Breaker>> = OnceLock::new();
    BREAKER.get_or_init(|| Mutex::new(Breaker::new(retry.clone())))
}

fn lock(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    breaker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FileSink {
    /// `store` is `None` for local files only.
    pub fn new(
        store: Option<Store>,
        meta: ObjectMeta,
        max_attempts: u32,
        retry: RetrySettings,
    ) -> Self {
        Self {
            store,
            meta,
            max_attempts: max_attempts.max(1),
            retry,
        }
    }

    /// A destination with no file (messages) has nothing to store here.
    fn no_file(location: &Destination) -> SinkError {
        SinkError {
            location: location.uri(),
            message: "this export writes messages, not a file".into(),
            retriable: false,
        }
    }

    fn store(&self, location: &Destination) -> Result<&Store, SinkError> {
        self.store.as_ref().ok_or_else(|| SinkError {
            location: location.uri(),
            message: "no object store is configured".into(),
            retriable: false,
        })
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of tries.
    async fn retried<T, F, Fut>(
        &self,
        location: &Destination,
        what: &str,
        call: F,
    ) -> Result<T, SinkError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let mut failures = 0;
        let breaker = store_breaker(&self.retry);
        loop {
            let wait = lock(breaker).wait(Instant::now());
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            let result = call().await;
            match &result {
                Ok(_) => lock(breaker).success(),
                Err(e) if e.retriable => {
                    let opened = lock(breaker).failure(Instant::now());
                    if let Some(open_for) = opened {
                        CircuitOpened {
                            service: "store",
                            open_for,
                            error: &e.message,
                        }
                        .emit();
                    }
                }
                Err(_) => {}
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.retriable && failures + 1 < self.max_attempts => {
                    failures += 1;
                    tracing::warn!(location = %location.uri(), attempt = failures, error = %e, "{what} failed; retrying.");
                    tokio::time::sleep(jittered(backoff(&self.retry, failures))).await;
                }
                Err(e) => {
                    return Err(SinkError {
                        location: location.uri(),
                        message: e.message,
                        retriable: e.retriable,
                    })
                }
            }
        }
    }

    /// Starts a file's upload, or (a file continued after a restart) cuts a
    /// local file back to its stored parts.
    async fn begin_file(&self, file: &mut OpenFile) -> Result<(), SinkError> {
        match &file.location {
            Destination::Store { bucket, key } => {
                if file.upload_id.is_none() {
                    let store = self.store(&file.location)?;
                    if file.index == 0 {
                        self.retried(&file.location, "CreateBucket", || {
                            store.create_bucket(bucket)
                        })
                        .await?;
                    }
                    let id = self
                        .retried(&file.location, "CreateMultipartUpload", || {
                            store.create_multipart(bucket, key, &self.meta)
                        })
                        .await?;
                    file.upload_id = Some(id);
                }
                Ok(())
            }
            Destination::Local { path } => {
                let partial = partial(path);
                let stored = file.bytes();
                let location = file.location.clone();
                blocking(&location, move || {
                    if let Some(dir) = partial.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(false)
                        .open(&partial)?;
                    f.set_len(stored)?;
                    f.sync_all()
                })
                .await
            }
            Destination::Topic { .. } => Err(Self::no_file(&file.location)),
        }
    }

    async fn store_part(
        &self,
        location: &Destination,
        upload_id: Option<&str>,
        number: i32,
        offset: u64,
        body: Bytes,
    ) -> Result<String, SinkError> {
        match location {
            Destination::Store { bucket, key } => {
                let store = self.store(location)?;
                let upload_id = upload_id.ok_or_else(|| SinkError {
                    location: location.uri(),
                    message: "a part before its upload began".into(),
                    retriable: false,
                })?;
                self.retried(location, "UploadPart", || {
                    store.upload_part(bucket, key, upload_id, number, body.clone())
                })
                .await
            }
            Destination::Local { path } => {
                let partial = partial(path);
                blocking(location, move || {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::OpenOptions::new().write(true).open(&partial)?;
                    f.write_all_at(&body, offset)?;
                    f.sync_data()
                })
                .await?;
                Ok(String::new())
            }
            Destination::Topic { .. } => Err(Self::no_file(location)),
        }
    }

    async fn complete_file(&self, file: &OpenFile) -> Result<(), SinkError> {
        match &file.location {
            Destination::Store { bucket, key } => {
                let store = self.store(&file.location)?;
                let upload_id = file.upload_id.as_deref().unwrap_or_default();
                let parts: Vec<(i32, String)> = file
                    .parts
                    .iter()
                    .map(|p| (p.number, p.etag.clone()))
                    .collect();
                self.retried(&file.location, "CompleteMultipartUpload", || {
                    store.complete_multipart(bucket, key, upload_id, &parts)
                })
                .await
            }
            Destination::Local { path } => {
                let (from, to) = (partial(path), PathBuf::from(path));
                blocking(&file.location, move || {
                    std::fs::rename(&from, &to)?;
                    match to.parent() {
                        Some(dir) => std::fs::File::open(dir)?.sync_all(),
                        None => Ok(()),
                    }
                })
                .await
            }
            Destination::Topic { .. } => Err(Self::no_file(&file.location)),
        }
    }

    async fn abort_file(&self, file: &OpenFile) -> Result<(), SinkError> {
        match (&file.location, &file.upload_id) {
            (Destination::Store { bucket, key }, Some(upload_id)) => {
                let store = self.store(&file.location)?;
                self.retried(&file.location, "AbortMultipartUpload", || {
                    store.abort_multipart(bucket, key, upload_id)
                })
                .await
            }
            (Destination::Store { .. }, None) => Ok(()),
            (Destination::Local { path }, _) => remove(&file.location, partial(path)).await,
            (Destination::Topic { .. }, _) => Ok(()),
        }
    }

    async fn delete_file(&self, location: &Destination) -> Result<(), SinkError> {
        match location {
            Destination::Store { bucket, key } => {
                let store = self.store(location)?;
                self.retried(location, "DeleteObject", || {
                    store.delete_object(bucket, key)
                })
                .await
            }
            Destination::Local { path } => remove(location, PathBuf::from(path)).await,
            Destination::Topic { .. } => Ok(()),
        }
    }
}

impl Sink for FileSink {
    fn begin<'a>(&'a self, file: &'a mut OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.begin_file(file))
    }

    fn put_part<'a>(
        &'a self,
        location: &'a Destination,
        upload_id: Option<&'a str>,
        number: i32,
        offset: u64,
        body: Bytes,
    ) -> BoxFuture<'a, Result<String, SinkError>> {
        Box::pin(self.store_part(location, upload_id, number, offset, body))
    }

    fn complete<'a>(&'a self, file: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.complete_file(file))
    }

    fn abort<'a>(&'a self, file: &'a OpenFile) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.abort_file(file))
    }

    fn delete<'a>(&'a self, location: &'a Destination) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.delete_file(location))
    }
}

impl FileSink {
    /// The sink for an export's files: its store when they go to one.
    pub fn for_spec(
        spec: &super::ExportSpec,
        storage: &crate::settings::StorageSettings,
        exports: &crate::settings::ExportSettings,
        retry: &RetrySettings,
    ) -> Self {
        let store =
            matches!(spec.destination, Destination::Store { .. }).then(|| Store::new(storage));
        // A compressed file is stored as what it is (`application/gzip`), not
        // with a `Content-Encoding` that clients would undo on download.
        let content_type = match (spec.format, spec.compression) {
            (super::Format::Parquet, _) | (_, super::Compression::None) => {
                spec.format.content_type()
            }
            (_, super::Compression::Gzip) => "application/gzip",
            (_, super::Compression::Zstd) => "application/zstd",
        };
        let meta = ObjectMeta {
            content_type: content_type.to_string(),
            content_encoding: None,
            server_side_encryption: Some(exports.server_side_encryption.clone())
                .filter(|s| !s.is_empty()),
        };
        Self::new(store, meta, storage.max_attempts, retry.clone())
    }

    /// The same, shared by a pipeline's stages.
    pub fn shared(self) -> Arc<dyn Sink> {
        Arc::new(self)
    }
}

/// Where a local file is written until it is complete.
fn partial(path: &str) -> PathBuf {
    let mut p = Path::new(path).as_os_str().to_owned();
    p.push(".partial");
    p.into()
}

async fn remove(location: &Destination, path: PathBuf) -> Result<(), SinkError> {
    blocking(location, move || match std::fs::remove_file(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
}

/// File system calls block: off the async threads. Disk errors are not
/// retried (a full disk stays full); the export's restart policy decides.
async fn blocking<F>(location: &Destination, f: F) -> Result<(), SinkError>
where
    F: FnOnce() -> std::io::Result<()> + Send + 'static,
{
    let failed = |message: String| SinkError {
        location: location.uri(),
        message,
        retriable: false,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
}
