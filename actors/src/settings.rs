//! Settings the engine runs with. The application layers them (built-in
//! `config/default.toml`, a file, `FERRY__…` env vars, CLI flags) and hands
//! the result down; every struct here refuses unknown keys, so a typo in a
//! config file is an error that names the key.
//!
//! The `///` comments are the reference documentation of each key: keep
//! `config/default.toml` in step with them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[database]`: where PostgreSQL is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// libpq-style URL or key=value string. `DATABASE_URL` overrides it.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connections in the shared pool (job bookkeeping, API reads).
    /// CopyWriters have a pool of their own (`jobs.concurrency` ×
    /// `import.writers` connections).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long to wait for a connection before giving up.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_database_url() -> String {
    "postgres://postgres@127.0.0.1:5432/postgres".into()
}
fn default_pool_size() -> usize {
    8
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            pool_size: default_pool_size(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

/// `[import]`: how a file becomes rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSettings {
    /// Rows per batch handed to the CopyWriters. One batch is one transaction
    /// per writer; 20K rows amortises the statement overhead while keeping a
    /// batch's memory small (a few MB).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// A batch is also sealed when its encoded text reaches this many bytes,
    /// so wide rows do not make huge batches.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// A partial batch is sealed after this long without filling up, so a
    /// slow source still makes progress visible in the database.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Batches in flight between the BatchAccumulator and the CopyWriters.
    /// This is the backpressure bound: the reader waits when it is reached.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_batches: usize,
    /// CopyWriter workers, one PostgreSQL connection each. Batches are split
    /// by key hash, so two writers never touch the same key.
    #[serde(default = "default_writers")]
    pub writers: usize,
    /// Rows a reader parses (CSV) or decodes (Parquet) per step before
    /// handing them on.
    #[serde(default = "default_read_rows")]
    pub read_rows: usize,
    /// Size of each read from the source.
    #[serde(default = "default_read_chunk_bytes")]
    pub read_chunk_bytes: usize,
    /// Byte chunks buffered between the FileFetcher and the CsvReader.
    #[serde(default = "default_read_ahead_chunks")]
    pub read_ahead_chunks: usize,
    /// A field longer than this (in bytes) rejects its row.
    #[serde(default = "default_max_field_bytes")]
    pub max_field_bytes: usize,
    /// An import that changes a node's metadata makes it unsent (its
    /// `changed_xid` moves past its group's watermark), so the scheduled
    /// users export sends the matching engine the change at its next tick
    /// (seed 000).
    #[serde(default = "default_true")]
    pub resend_changed: bool,
    /// Header that holds the reference id, after normalisation. Empty: the
    /// first header found in `reference_candidates`, else the first column.
    #[serde(default)]
    pub reference_column: String,
    /// Normalised headers tried, in order, when `reference_column` is empty.
    #[serde(default = "default_reference_candidates")]
    pub reference_candidates: Vec<String>,
    /// Folder for rejects files (`JOBID.csv`), written when a job ends.
    /// Empty: a `rejects/` folder beside a local source, else a temp
    /// folder. An object's rejects file is then uploaded beside it.
    #[serde(default)]
    pub rejects_dir: String,
    /// Node type when the request names none (seed 004: `type VARCHAR(50)`).
    #[serde(default = "default_node_type")]
    pub node_type: String,
    /// A source larger than this (compressed, as stored) is refused before
    /// it is read. Seed 004 BR-2: 5 GB.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Files one job may read (a prefix, a glob, or a `filePaths` list);
    /// more fail the job (a list longer than this is refused).
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Bytes (as stored) all of a job's files may add up to.
    #[serde(default = "default_max_job_bytes")]
    pub max_job_bytes: u64,
    /// The input may decompress to at most this many bytes (100 GiB).
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: u64,
    /// The input may decompress to at most this many times its stored size,
    /// judged past the first 16 MiB. CSV gzips 5-15x; a bomb, 1000x.
    #[serde(default = "default_max_compression_ratio")]
    pub max_compression_ratio: u64,
    /// A header with more columns fails the job.
    #[serde(default = "default_max_columns")]
    pub max_columns: usize,
    /// A record longer than this (approximately, within the read buffers)
    /// fails the job: the parser must hold a whole record in memory. Fields
    /// over `max_field_bytes` but within this only reject their row.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// A Parquet row group whose needed columns store more than this many
    /// bytes fails the job (a row group's column chunks are fetched whole),
    /// and so does any single read larger than this (a footer claiming to
    /// be huge). 256 MiB.
    #[serde(default = "default_max_row_group_bytes")]
    pub max_row_group_bytes: u64,
    /// Load a group that has no rows yet with plain INSERTs, which skip the
    /// conflict checks of `ON CONFLICT` (a batch that meets a conflict is
    /// upserted instead), under an exclusive per-group lock.
    #[serde(default = "default_true")]
    pub fast_path: bool,
    /// A sync (`"mode": "sync"`) that would delete more than this share
    /// of its group's rows fails and deletes nothing, unless the request
    /// says `"force": true`: a truncated file must not wipe a group.
    #[serde(default = "default_sync_max_delete_ratio")]
    pub sync_max_delete_ratio: f64,
}

fn default_sync_max_delete_ratio() -> f64 {
    0.5
}

fn default_batch_rows() -> usize {
    20_000
}
fn default_batch_bytes() -> usize {
    16 << 20
}
fn default_linger() -> Duration {
    Duration::from_secs(1)
}
fn default_max_in_flight() -> usize {
    4
}
fn default_writers() -> usize {
    2
}
fn default_read_rows() -> usize {
    4_096
}
fn default_read_chunk_bytes() -> usize {
    256 << 10
}
fn default_read_ahead_chunks() -> usize {
    8
}
fn default_max_field_bytes() -> usize {
    64 << 10
}
fn default_max_object_bytes() -> u64 {
    5_000_000_000
}
fn default_max_files() -> usize {
    1000
}
fn default_max_job_bytes() -> u64 {
    50_000_000_000
}
fn default_max_decompressed_bytes() -> u64 {
    100 << 30
}
fn default_max_compression_ratio() -> u64 {
    100
}
fn default_max_columns() -> usize {
    1_000
}
fn default_max_record_bytes() -> u64 {
    16 << 20
}
fn default_max_row_group_bytes() -> u64 {
    256 << 20
}
fn default_reference_candidates() -> Vec<String> {
    ["reference_id", "username", "user_id", "id"]
        .map(String::from)
        .to_vec()
}
fn default_node_type() -> String {
    "USER".into()
}
fn default_true() -> bool {
    true
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            batch_rows: default_batch_rows(),
            batch_bytes: default_batch_bytes(),
            linger: default_linger(),
            max_in_flight_batches: default_max_in_flight(),
            writers: default_writers(),
            read_rows: default_read_rows(),
            read_chunk_bytes: default_read_chunk_bytes(),
            read_ahead_chunks: default_read_ahead_chunks(),
            max_field_bytes: default_max_field_bytes(),
            reference_column: String::new(),
            reference_candidates: default_reference_candidates(),
            rejects_dir: String::new(),
            node_type: default_node_type(),
            resend_changed: true,
            max_object_bytes: default_max_object_bytes(),
            max_files: default_max_files(),
            max_job_bytes: default_max_job_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            max_compression_ratio: default_max_compression_ratio(),
            max_columns: default_max_columns(),
            max_record_bytes: default_max_record_bytes(),
            max_row_group_bytes: default_max_row_group_bytes(),
            fast_path: true,
            sync_max_delete_ratio: default_sync_max_delete_ratio(),
        }
    }
}

/// `[jobs]`: the durable job queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// How long a claim on a job lasts without renewal. A running instance
    /// renews it every third of this; when an instance dies, another may
    /// take its jobs over this long after its last renewal.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Jobs one `ferry serve` instance runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How often `ferry serve` looks for claimable jobs besides being woken
    /// by `NOTIFY` (a missed notification, a lease that ran out).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// On shutdown, how long running jobs may take to finish; then they
    /// stop at their last checkpoint and their leases are released.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A status event lists at most this many ids in `successList` and in
    /// `failedList` (then `…Truncated` is true), so it stays well under the
    /// broker's message size.
    #[serde(default = "default_max_status_ids")]
    pub max_status_ids: usize,
    /// Finished jobs (with their saved rejects and sent status events) are
    /// deleted this long after they ended; seed 003 archives jobs after 30
    /// days. A job whose event is still unsent stays until it is sent.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// How often `ferry serve` sweeps finished jobs past `retention` (one
    /// instance at a time).
    #[serde(default = "default_sweep_interval", with = "humantime_serde")]
    pub sweep_interval: Duration,
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    2
}
fn default_poll() -> Duration {
    Duration::from_secs(2)
}
fn default_drain() -> Duration {
    Duration::from_secs(20)
}
fn default_max_status_ids() -> usize {
    1000
}
fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_sweep_interval() -> Duration {
    Duration::from_secs(600)
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            lease: default_lease(),
            concurrency: default_concurrency(),
            poll: default_poll(),
            drain_timeout: default_drain(),
            max_status_ids: default_max_status_ids(),
            retention: default_retention(),
            sweep_interval: default_sweep_interval(),
        }
    }
}

/// `[storage]`: object storage (S3, MinIO) and the local files an import
/// may read. Empty keys fall back to the standard `AWS_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// S3 endpoint, e.g. `http://minio:9000`. Empty: `AWS_ENDPOINT_URL`,
    /// else AWS itself.
    #[serde(default)]
    pub endpoint: String,
    /// Empty: `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: String,
    /// Empty: `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: String,
    /// Empty: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: String,
    /// Path-style URLs (`endpoint/bucket/key`), as MinIO and s3s need.
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// Hosts (`host:port`) besides the endpoint's whose `http(s)://host/
    /// bucket/key` URLs are read as objects of this store. Any other host is
    /// refused: a payload must not make ferry fetch arbitrary URLs (SSRF).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Buckets an import may read. Empty: any.
    #[serde(default)]
    pub allowed_buckets: Vec<String>,
    /// Local paths and `file://` URLs must lie under this folder (after
    /// resolving `..` and symlinks). Empty: any local path, for the CLI.
    #[serde(default)]
    pub local_root: String,
    /// Attempts at one request before the read fails (5xx, timeouts,
    /// throttling, dropped connections), with backoff and jitter. A download
    /// that breaks resumes at the byte it reached.
    #[serde(default = "default_storage_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_storage_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    #[serde(default = "default_storage_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
}

impl StorageSettings {
    /// Whether an object store is configured: an endpoint or keys, here or
    /// in the standard `AWS_*` variables.
    pub fn configured(&self) -> bool {
        let env = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
        !self.endpoint.is_empty()
            || !self.access_key_id.is_empty()
            || env("AWS_ENDPOINT_URL")
            || env("AWS_ACCESS_KEY_ID")
    }
}

fn default_storage_attempts() -> u32 {
    5
}
fn default_storage_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_storage_read_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            force_path_style: true,
            allowed_hosts: Vec::new(),
            allowed_buckets: Vec::new(),
            local_root: String::new(),
            max_attempts: default_storage_attempts(),
            connect_timeout: default_storage_connect_timeout(),
            read_timeout: default_storage_read_timeout(),
        }
    }
}

/// `[retry]`: the one restart policy every supervisor uses, and the retry of
/// transient database errors inside a CopyWriter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Restarts of a job pipeline allowed within `window` before the job is
    /// FAILED.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// The window in which restarts are counted.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// First backoff; each further attempt doubles it, with jitter.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Backoff ceiling.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Attempts a CopyWriter makes at one batch (reconnecting in between)
    /// before it gives up and lets its pipeline restart.
    #[serde(default = "default_batch_attempts")]
    pub batch_attempts: u32,
}

fn default_max_restarts() -> u32 {
    3
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_batch_attempts() -> u32 {
    5
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_restarts: default_max_restarts(),
            window: default_window(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            batch_attempts: default_batch_attempts(),
        }
    }
}

/// `[kafka]`: where import requests come from and where their status goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port,…`. Empty: `ferry serve` starts an embedded broker
    /// (librdkafka's mock cluster) and logs its address.
    #[serde(default)]
    pub brokers: String,
    /// The consumer group: every `ferry serve` in it shares the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Which topics are import requests, and what they import. The first
    /// route whose pattern matches a topic wins.
    #[serde(default = "default_routes")]
    pub routes: Vec<RouteSettings>,
    /// Where messages that cannot become a job go, with the reason in headers.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// The largest message the brokers take: their `message.max.bytes`
    /// (Kafka's default is 1048588). The one setting every size follows: a
    /// request larger than this is dead-lettered unread; the producer's
    /// `message.max.bytes` is this; a dead letter or a status event that
    /// would not fit is sent cut down to fit (and says so).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The consumer is reported not ready (`/health/ready`) when one
    /// message has been in hand this long without its offset moving on.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// A request may list at most this many `referenceIds`.
    #[serde(default = "default_max_reference_ids")]
    pub max_reference_ids: usize,
    /// How soon a new topic matching a route is subscribed to.
    #[serde(default = "default_metadata_refresh", with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// The consumer's group session timeout: how soon a dead instance's
    /// partitions move to the others.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long a send (status event, DLQ entry) may take before it is
    /// tried again; nothing is dropped in between.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Topics the embedded broker creates at start (besides the DLQ and
    /// status topics), so that the routes' patterns match them.
    #[serde(default = "default_embedded_topics")]
    pub embedded_topics: Vec<String>,
    /// Partitions of each topic the embedded broker creates.
    #[serde(default = "default_embedded_partitions")]
    pub embedded_partitions: i32,
    /// Extra librdkafka properties for every client, e.g.
    /// `{ "security.protocol" = "ssl" }`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// One `[[kafka.routes]]`: topics matching `pattern` (a regex) carry
/// `NodeExchange` requests that import into `target`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    pub pattern: String,
    /// `nodes` (CSV, or `referenceIds`) or `matches` (Parquet).
    pub target: crate::vocab::Target,
    /// Where the jobs' status events (`NodesTransferJobExchange`) go.
    pub status_topic: String,
    /// Node type when a request names none (`nodes` only). Empty:
    /// `import.node_type`.
    #[serde(default)]
    pub node_type: String,
}

impl RouteSettings {
    /// The route's node type, else `default` (`import.node_type`).
    pub fn node_type_or<'a>(&'a self, default: &'a str) -> &'a str {
        match self.node_type.as_str() {
            "" => default,
            own => own,
        }
    }
}

fn default_group_id() -> String {
    "ferry".into()
}
fn default_routes() -> Vec<RouteSettings> {
    vec![
        RouteSettings {
            pattern: "^.+-users$".into(),
            target: crate::vocab::Target::Nodes,
            status_topic: "ferry-nodes-status".into(),
            node_type: String::new(),
        },
        RouteSettings {
            pattern: "^.+-matches$".into(),
            target: crate::vocab::Target::Matches,
            status_topic: "ferry-matches-status".into(),
            node_type: String::new(),
        },
    ]
}
fn default_dlq_topic() -> String {
    "ferry-dlq".into()
}
fn default_max_message_bytes() -> usize {
    1_000_000
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_reference_ids() -> usize {
    100_000
}
fn default_metadata_refresh() -> Duration {
    Duration::from_secs(10)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_embedded_topics() -> Vec<String> {
    vec!["demo-users".into(), "demo-matches".into()]
}
fn default_embedded_partitions() -> i32 {
    4
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: default_group_id(),
            routes: default_routes(),
            dlq_topic: default_dlq_topic(),
            max_message_bytes: default_max_message_bytes(),
            stall_timeout: default_stall_timeout(),
            max_reference_ids: default_max_reference_ids(),
            metadata_refresh: default_metadata_refresh(),
            session_timeout: default_session_timeout(),
            send_timeout: default_send_timeout(),
            embedded_topics: default_embedded_topics(),
            embedded_partitions: default_embedded_partitions(),
            properties: Default::default(),
        }
    }
}

/// `[exports]`: rows out of PostgreSQL into files (seeds 000, 001, 002).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// Exports read from this database (seed 001's read replica) instead
    /// of `database.url`. Empty: the primary.
    #[serde(default)]
    pub read_url: String,
    /// The bucket of the configured store that exports go to; created if
    /// missing.
    #[serde(default = "default_export_bucket")]
    pub bucket: String,
    /// The folder exports go to when no object store is configured (the
    /// embedded default, so the demo needs no S3 server). Empty: the temp
    /// folder's `ferry-exports`.
    #[serde(default)]
    pub local_dir: String,
    /// Put before every key: `{prefix}/{domain}/exports/{yyyy}/{mm}/
    /// {object}-{id}.{ext}` (seed 002's layout). Empty: no prefix.
    #[serde(default)]
    pub prefix: String,
    /// A file's parts: S3 multipart parts of about this many bytes (5 MiB
    /// at least, S3's minimum), each ending on a row. A restarted export
    /// continues after the last part that was stored.
    #[serde(default = "default_part_bytes")]
    pub part_bytes: usize,
    /// Parts uploading at once, per export.
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// A new file starts once a file holds this many bytes (DuckDB's
    /// FILE_SIZE_BYTES; Voucherify: "may be split into chunks"). 0: no
    /// limit.
    #[serde(default = "default_file_bytes")]
    pub file_bytes: u64,
    /// A new file starts once a file holds this many rows. 0: no limit.
    #[serde(default)]
    pub file_rows: u64,
    /// Rows the ExportReader hands on in one message.
    #[serde(default = "default_fetch_rows")]
    pub fetch_rows: usize,
    /// Row batches in flight from the reader to the encoder (backpressure);
    /// with several readers, encoded runs in flight per reader.
    #[serde(default = "default_export_in_flight")]
    pub max_in_flight: usize,
    /// Connections that read one export at once, each a range of its order
    /// key in the one snapshot (`pg_export_snapshot()`), encoding and
    /// compressing what it reads. 0: the cores, at most 4. 1: one reader.
    #[serde(default)]
    pub readers: usize,
    /// About this many rows make a range: the readers take ranges in
    /// order, so a range ahead of the one being written waits in memory.
    #[serde(default = "default_range_rows")]
    pub range_rows: u64,
    /// gzip level, 1 (fastest, `gzip -1`) to 9.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// zstd level, 1 to 19 (also Parquet's own compression).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// A Parquet row group holds at most this many rows …
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// … and about this many bytes, as encoded.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: usize,
    /// S3 server-side encryption of every file (seed 001: encrypted at
    /// rest): `AES256` or `aws:kms`. Empty: the bucket's default.
    #[serde(default)]
    pub server_side_encryption: String,
    /// Fields one export may name (PostgreSQL takes at most 1664 columns
    /// in a query's result; an export also selects its order keys).
    #[serde(default = "default_max_fields")]
    pub max_fields: usize,
    /// Conditions in one request's filters, all groups together.
    #[serde(default = "default_max_conditions")]
    pub max_conditions: usize,
    /// Values in one condition.
    #[serde(default = "default_max_values")]
    pub max_values: usize,
    /// How deep filter groups nest.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// How long a presigned URL (`result.url`) works; signed afresh on
    /// every GET. At most 7 days (SigV4's limit).
    #[serde(default = "default_url_ttl", with = "humantime_serde")]
    pub url_ttl: Duration,
    /// A finished export's files are deleted this long after it ended
    /// (Shopify keeps bulk results 7 days); the export then shows
    /// `expired: true`.
    #[serde(default = "default_export_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Exports one caller may create per minute (a token bucket; 429 and
    /// `Retry-After` beyond).
    #[serde(default = "default_create_per_minute")]
    pub create_per_minute: u32,
    /// Exports of one domain waiting or running at once (429 beyond). The
    /// queue takes domains in turn, so one domain's burst does not starve
    /// the others.
    #[serde(default = "default_max_running_per_domain")]
    pub max_running_per_domain: i64,
    /// Where `ExportCompleted` events go (seed 001), through the outbox.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// Hosts (`host` or `host:port`) a `webhook_url` may name over plain
    /// http, or at a private, loopback or link-local address. Any other
    /// webhook must be https to a public address (no SSRF).
    #[serde(default)]
    pub webhook_allowed_hosts: Vec<String>,
    /// Deliveries of one webhook before it is given up (5xx, 429 and
    /// timeouts are retried with backoff; other 4xx are not).
    #[serde(default = "default_webhook_attempts")]
    pub webhook_attempts: i32,
    /// How long one delivery may take.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Deliveries one instance has in flight at once.
    #[serde(default = "default_webhook_in_flight")]
    pub webhook_in_flight: i64,
    /// Deliveries of one domain in flight at once, across every instance:
    /// one tenant's slow endpoints hold no more slots than this.
    #[serde(default = "default_webhook_per_target")]
    pub webhook_per_domain: i64,
    /// Deliveries to one host in flight at once, across every instance.
    #[serde(default = "default_webhook_per_target")]
    pub webhook_per_host: i64,
    /// The secret webhook signatures are made with (`Ferry-Signature:
    /// t=…,v1=HMAC-SHA256(secret, "t.body")`). Empty: `http.signing_keys`'s
    /// first.
    #[serde(default)]
    pub webhook_secret: String,
    /// Objects declared by the operator, beside the built-in `node` and
    /// `match_suggestion`.
    #[serde(default)]
    pub objects: Vec<ExportObjectSettings>,
    /// The scheduled users export (seed 000).
    #[serde(default)]
    pub users: UsersExportSettings,
}

/// `[exports.users]`: seed 000's export of each matching group's unsent
/// users to the matching engine, on a schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersExportSettings {
    /// Whether `ferry serve` runs the schedule.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A cron expression with seconds: `sec min hour day month weekday`
    /// (seed 000: 23:20 every day).
    #[serde(default = "default_users_schedule")]
    pub schedule: String,
    /// The IANA time zone the schedule is read in (seed 000: IST).
    #[serde(default = "default_users_timezone")]
    pub timezone: String,
    /// A tick missed while no instance ran: `latest` runs the latest one
    /// when an instance comes back; `none` waits for the next.
    #[serde(default = "default_catch_up")]
    pub catch_up: CatchUp,
    /// Where the messages go (seed 000's hard-coded `flairbit-users`).
    #[serde(default = "default_users_topic")]
    pub topic: String,
    /// Where a message the broker refuses for good goes (seed 000's
    /// `flairbit-dlq`).
    #[serde(default = "default_users_dlq_topic")]
    pub dlq_topic: String,
    /// The bucket COST_BASED files go to (seed 000's `flairbit-exports`);
    /// `exports.local_dir` when no store is configured.
    #[serde(default = "default_users_bucket")]
    pub bucket: String,
    /// Put before each file's key: `{prefix}/{domain}/{group}/{run}.csv.gz`.
    #[serde(default = "default_users_prefix")]
    pub prefix: String,
    /// A file's metadata columns, after the reference id. Empty: every
    /// metadata key the group's unsent users have.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Reference ids in one NON_COST_BASED message at most (a message also
    /// stays under `kafka.max_message_bytes`).
    #[serde(default = "default_max_ids_per_message")]
    pub max_ids_per_message: usize,
}

impl Default for UsersExportSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_users_schedule(),
            timezone: default_users_timezone(),
            catch_up: default_catch_up(),
            topic: default_users_topic(),
            dlq_topic: default_users_dlq_topic(),
            bucket: default_users_bucket(),
            prefix: default_users_prefix(),
            columns: Vec::new(),
            max_ids_per_message: default_max_ids_per_message(),
        }
    }
}

/// What a scheduler does about ticks missed while no instance ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    Latest,
    None,
}

fn default_users_schedule() -> String {
    "0 20 23 * * *".into()
}
fn default_users_timezone() -> String {
    "Asia/Kolkata".into()
}
fn default_catch_up() -> CatchUp {
    CatchUp::Latest
}
fn default_users_topic() -> String {
    "flairbit-users".into()
}
fn default_users_dlq_topic() -> String {
    "flairbit-dlq".into()
}
fn default_users_bucket() -> String {
    "flairbit-exports".into()
}
fn default_users_prefix() -> String {
    "users".into()
}
fn default_max_ids_per_message() -> usize {
    10_000
}

/// `[[exports.objects]]`: a table or view that can be exported, with no
/// code. Its columns and types are read from the catalog at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportObjectSettings {
    /// What requests call it (`voucher`).
    pub name: String,
    /// The table or view, maybe schema-qualified (`public.vouchers`).
    pub table: String,
    /// The uuid column naming each row's domain.
    #[serde(default = "default_tenant_column")]
    pub tenant_column: String,
    /// Columns that identify a row. Empty: the table's primary key (a view
    /// must give them).
    #[serde(default)]
    pub key: Vec<String>,
    /// The output's columns when a request names none. Empty: every column.
    #[serde(default)]
    pub default_fields: Vec<String>,
    /// `field` or `-field` when a request gives no order. Empty: the key.
    #[serde(default)]
    pub default_order: String,
}

fn default_export_bucket() -> String {
    "ferry-exports".into()
}
fn default_part_bytes() -> usize {
    8 << 20
}
fn default_parts_in_flight() -> usize {
    2
}
fn default_file_bytes() -> u64 {
    1 << 30
}
fn default_range_rows() -> u64 {
    50_000
}

fn default_fetch_rows() -> usize {
    2000
}
fn default_export_in_flight() -> usize {
    4
}
fn default_gzip_level() -> u32 {
    1
}
fn default_zstd_level() -> i32 {
    3
}
fn default_row_group_rows() -> usize {
    122_880
}
fn default_row_group_bytes() -> usize {
    64 << 20
}
fn default_max_conditions() -> usize {
    50
}
fn default_max_values() -> usize {
    1000
}
fn default_max_fields() -> usize {
    500
}
fn default_max_depth() -> usize {
    3
}
fn default_url_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_export_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_create_per_minute() -> u32 {
    30
}
fn default_max_running_per_domain() -> i64 {
    10
}
fn default_events_topic() -> String {
    "ferry-exports-completed".into()
}
fn default_webhook_attempts() -> i32 {
    8
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_webhook_in_flight() -> i64 {
    16
}
fn default_webhook_per_target() -> i64 {
    4
}
fn default_tenant_column() -> String {
    "domain_id".into()
}

impl ExportSettings {
    /// Where exports go without an object store.
    pub fn local_dir(&self) -> std::path::PathBuf {
        match self.local_dir.as_str() {
            "" => std::env::temp_dir().join("ferry-exports"),
            dir => dir.into(),
        }
    }

    /// Connections that read one export: `readers`, or the cores (at most
    /// 4) when it is 0.
    pub fn readers(&self) -> usize {
        match self.readers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n,
        }
    }
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            read_url: String::new(),
            bucket: default_export_bucket(),
            local_dir: String::new(),
            prefix: String::new(),
            part_bytes: default_part_bytes(),
            parts_in_flight: default_parts_in_flight(),
            file_bytes: default_file_bytes(),
            file_rows: 0,
            fetch_rows: default_fetch_rows(),
            max_in_flight: default_export_in_flight(),
            readers: 0,
            range_rows: default_range_rows(),
            gzip_level: default_gzip_level(),
            zstd_level: default_zstd_level(),
            row_group_rows: default_row_group_rows(),
            row_group_bytes: default_row_group_bytes(),
            server_side_encryption: String::new(),
            max_conditions: default_max_conditions(),
            max_values: default_max_values(),
            max_depth: default_max_depth(),
            max_fields: default_max_fields(),
            url_ttl: default_url_ttl(),
            retention: default_export_retention(),
            create_per_minute: default_create_per_minute(),
            max_running_per_domain: default_max_running_per_domain(),
            events_topic: default_events_topic(),
            webhook_allowed_hosts: Vec::new(),
            webhook_attempts: default_webhook_attempts(),
            webhook_timeout: default_webhook_timeout(),
            webhook_in_flight: default_webhook_in_flight(),
            webhook_per_domain: default_webhook_per_target(),
            webhook_per_host: default_webhook_per_target(),
            webhook_secret: String::new(),
            objects: Vec::new(),
            users: UsersExportSettings::default(),
        }
    }
}
