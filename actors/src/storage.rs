//! Object storage (S3, MinIO, s3s) through aws-sdk-s3: the client built
//! from `[storage]`, the calls the pipeline makes, and which failures are
//! worth another try.

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::settings::{RetrySettings, StorageSettings};
use crate::supervision::{backoff, jittered};
use crate::telemetry::StorageFailed;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub message: String,
    /// 5xx, throttling, timeouts, a dropped connection.
    pub retriable: bool,
}

impl StorageError {
    fn from_sdk<E>(what: &str, e: SdkError<E>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let retriable = match &e {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ConstructionFailure(_) => false,
            _ => status.is_none_or(|s| s >= 500 || s == 429 || s == 408),
        };
        StorageFailed {
            op: what,
            retriable,
        }
        .emit();
        let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
        Self {
            message: format!("{what}{status}: {}", DisplayErrorContext(&e)),
            retriable,
        }
    }
}

/// An object as a listing or a lookup shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
}

impl Store {
    /// A client for the configured endpoint. Empty settings fall back to the
    /// standard `AWS_*` environment variables. The SDK's own retries are
    /// off: callers retry with their own backoff, and log each attempt.
    pub fn new(s: &StorageSettings) -> Self {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        let pick = |v: &str, k: &str| if v.is_empty() { env(k) } else { v.to_string() };
        let region = pick(&s.region, "AWS_REGION");
        let region = if region.is_empty() {
            "us-east-1".into()
        } else {
            region
        };
        let credentials = Credentials::new(
            pick(&s.access_key_id, "AWS_ACCESS_KEY_ID"),
            pick(&s.secret_access_key, "AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "ferry-config",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            .force_path_style(s.force_path_style)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(s.connect_timeout)
                    .read_timeout(s.read_timeout)
                    .build(),
            );
        let endpoint = pick(&s.endpoint, "AWS_ENDPOINT_URL");
        if !endpoint.is_empty() {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
        }
    }

    /// The object's size and ETag.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, StorageError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("HEAD", e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().unwrap_or_default().to_string(),
        })
    }

    /// The objects directly under `prefix` (a subfolder's are left out), in
    /// key order, at most `max` of them (the listing stops there, so a huge
    /// prefix costs no more).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                // The objects directly under it, not its subfolders'.
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| StorageError::from_sdk("ListObjectsV2", e))?;
            for o in out.contents() {
                if objects.len() == max {
                    return Ok(objects);
                }
                objects.push(ObjectInfo {
                    key: o.key().unwrap_or_default().to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                });
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    /// The object's bytes in `range` (not empty), as a stream.
    pub async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("GET", e))?;
        Ok(out.body)
    }

    /// Creates a bucket; one that exists already is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), StorageError> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let owned = e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                });
                if owned {
                    Ok(())
                } else {
                    Err(StorageError::from_sdk("CreateBucket", e))
                }
            }
        }
    }

    /// Uploads a local file.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
    ) -> Result<(), StorageError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StorageError {
                message: format!("reading {}: {e}", path.display()),
                retriable: false,
            })?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("PUT", e))?;
        Ok(())
    }
}

/// How a file is stored: its content type and encoding, and server-side
/// encryption when asked for.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    pub content_type: String,
    pub content_encoding: Option<String>,
    /// `AES256` or `aws:kms`; `None`: the bucket's default.
    pub server_side_encryption: Option<String>,
}

impl Store {
    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<String, StorageError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(&meta.content_type);
        if let Some(encoding) = &meta.content_encoding {
            req = req.content_encoding(encoding);
        }
        if let Some(sse) = &meta.server_side_encryption {
            req = req.server_side_encryption(sse.as_str().into());
        }
        let out = req
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("CreateMultipartUpload", e))?;
        out.upload_id()
            .map(String::from)
            .ok_or_else(|| StorageError {
                message: "CreateMultipartUpload: no upload id".into(),
                retriable: false,
            })
    }

    /// Uploads one part; returns its ETag.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("UploadPart", e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    /// Completes a multipart upload from its parts, in order.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), StorageError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// Drops an unfinished upload and its parts; one already gone is fine.
    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(StorageError::from_sdk("AbortMultipartUpload", e)),
        }
    }

    /// A GET of the object, signed for `ttl` (SigV4 allows at most 7 days):
    /// anyone with the URL may download it until then, and no one after.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<String, StorageError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl).map_err(|e| {
            StorageError {
                message: format!("presigning: {e}"),
                retriable: false,
            }
        })?;
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| StorageError::from_sdk("presigning GET", e))?;
        Ok(request.uri().to_string())
    }

    /// The object, or `range` of it (`bytes=A-B`), as a stream.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
    ) -> Result<ByteStream, StorageError> {
        let req = self.client.get_object().bucket(bucket).key(key);
        let out = req
            .set_range(range.map(String::from))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("GET", e))?;
        Ok(out.body)
    }

    /// Deletes an object; one already gone is fine.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("DeleteObject", e))?;
        Ok(())
    }
}

/// Reads one object, or a range of it, as a stream of chunks of at least
/// `chunk` bytes. When the connection breaks mid-body it opens the object
/// again with a range request at the byte it reached, after a backoff; only
/// `max_attempts` failures in a row end the read.
pub struct ObjectReader {
    store: Store,
    bucket: String,
    key: String,
    size: u64,
    etag: String,
    offset: u64,
    /// Where the current read ends: the object's size, or a range's end.
    end: u64,
    body: Option<ByteStream>,
    failures: u32,
    max_attempts: u32,
    retry: RetrySettings,
}

impl ObjectReader {
    /// Looks the object up (retrying transient failures) and returns a
    /// reader positioned at its first byte, with the object's size.
    pub async fn open(
        store: Store,
        bucket: &str,
        key: &str,
        max_attempts: u32,
        retry: RetrySettings,
    ) -> Result<Self, StorageError> {
        let mut failures = 0;
        let info = loop {
            match store.head(bucket, key).await {
                Ok(info) => break info,
                Err(e) if e.retriable && failures + 1 < max_attempts => {
                    failures += 1;
                    tracing::warn!(bucket, key, attempt = failures, error = %e, "Object lookup failed; retrying.");
                    tokio::time::sleep(jittered(backoff(&retry, failures))).await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            store,
            bucket: bucket.into(),
            key: key.into(),
            size: info.size,
            etag: info.etag,
            offset: 0,
            end: info.size,
            body: None,
            failures: 0,
            max_attempts: max_attempts.max(1),
            retry,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Reads `range` whole (a ranged read, as Parquet's footer and row
    /// groups are read), with the same resumption as a streamed read. The
    /// range lies within the object: the FileFetcher checks every range
    /// against the size, whatever the source.
    pub async fn read_range(&mut self, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.body = None;
        self.offset = range.start;
        self.end = range.end;
        let len = (range.end - range.start) as usize;
        Ok(self.next_chunk(len).await?.unwrap_or_default())
    }

    /// The next chunk, or `None` at the end of the object (or range).
    pub async fn next_chunk(&mut self, chunk: usize) -> Result<Option<Bytes>, StorageError> {
        let mut buf = BytesMut::with_capacity(chunk);
        while buf.len() < chunk && self.offset < self.end {
            let body = match &mut self.body {
                Some(body) => body,
                None => match self
                    .store
                    .read_range(&self.bucket, &self.key, self.offset..self.end)
                    .await
                {
                    Ok(body) => self.body.insert(body),
                    Err(e) => {
                        self.failed(e).await?;
                        continue;
                    }
                },
            };
            match body.next().await {
                Some(Ok(bytes)) => {
                    self.offset += bytes.len() as u64;
                    self.failures = 0;
                    buf.extend_from_slice(&bytes);
                }
                Some(Err(e)) => {
                    self.body = None;
                    let e = StorageError {
                        message: format!("reading the body at byte {}: {e}", self.offset),
                        retriable: true,
                    };
                    self.failed(e).await?;
                }
                // The body ended before the object's size (the connection
                // closed): a failure like any other, resumed from here.
                None => {
                    self.body = None;
                    let e = StorageError {
                        message: format!("the body ended at byte {} of {}", self.offset, self.end),
                        retriable: true,
                    };
                    self.failed(e).await?;
                }
            }
        }
        Ok((!buf.is_empty()).then(|| buf.freeze()))
    }

    /// Counts a failure; waits before the next try, or gives up.
    async fn failed(&mut self, e: StorageError) -> Result<(), StorageError> {
        self.failures += 1;
        if !e.retriable || self.failures >= self.max_attempts {
            return Err(e);
        }
        tracing::warn!(
            bucket = %self.bucket,
            key = %self.key,
            offset = self.offset,
            attempt = self.failures,
            error = %e,
            "Object read failed; resuming with a range request."
        );
        tokio::time::sleep(jittered(backoff(&self.retry, self.failures))).await;
        Ok(())
    }
}
