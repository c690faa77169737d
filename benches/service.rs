//! Benchmark: `ferry serve` end to end, with a real `ferry serve` process,
//! PostgreSQL, and a Kafka-protocol broker (librdkafka's mock cluster, in
//! this process).
//!
//! - Latency: a request produced → its COMPLETED status event consumed, for
//!   200 jobs of a 1,000-row CSV.gz, one at a time; p50 and p99.
//! - Throughput: 1,000 tiny jobs (10-id reference lists) produced at once;
//!   jobs per second until the last status event.
//! - Service overhead: a 1M-row CSV.gz job through Kafka (produce → status
//!   event) against the same file through `ferry import`, in the same run,
//!   each `FERRY_BENCH_BIG_RUNS` times (3), alternating, into new groups;
//!   the ratio is of the medians, and the spread is shown beside it.
//! - Exports through the API: `FERRY_BENCH_EXPORTS` (100) exports of a
//!   10,000-row domain POSTed at once; p50 and p99 from POST to the
//!   `ExportCompleted` event, and exports per second.
//! - API overhead: a 1M-row CSV.gz export through the API (POST → event)
//!   against `ferry export` on the same data, alternating, as above.
//! - The `ferry serve` process's peak RSS over the whole run.
//!
//! `FERRY_BENCH_LATENCY_JOBS`, `FERRY_BENCH_TINY_JOBS`, `FERRY_BENCH_BIG_ROWS`,
//! `FERRY_BENCH_BIG_RUNS` and `FERRY_BENCH_EXPORTS` change the sizes; `FERRY_BENCH_SERVE_LOG` is
//! `ferry serve`'s `RUST_LOG` (`warn`). Run it with
//! `benches/run.sh service`.

// Only `check`, `vm_hwm_kib` and `DOMAIN` are used here; the rest serves the import benches.
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{check, vm_hwm_kib, DOMAIN};
use ferry::localpg::{LocalPostgres, Tuning};
use ferry::report::grouped;
use ferry::sample;
use ferry_actors::service::kafka::embedded::EmbeddedBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

const TOPIC: &str = "bench-users";
const STATUS: &str = "ferry-nodes-status";
const EXPORT_EVENTS: &str = "ferry-exports-completed";
/// The domains the exports read: 10,000 users, and the big file's.
const SMALL_DOMAIN: &str = "6f1e2d3c-4b5a-4968-8776-655443322110";
const BIG_DOMAIN: &str = "7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d";

fn env_or(name: &str, default: u64) -> Result<u64> {
    std::env::var(name)
        .map_or(Ok(default), |v| v.parse())
        .with_context(|| name.to_string())
}

fn main() -> Result<()> {
    let latency_jobs = env_or("FERRY_BENCH_LATENCY_JOBS", 200)?;
    let tiny_jobs = env_or("FERRY_BENCH_TINY_JOBS", 1000)?;
    let big_rows = env_or("FERRY_BENCH_BIG_ROWS", 1_000_000)?;
    let big_runs = env_or("FERRY_BENCH_BIG_RUNS", 3)?.max(1);
    let small_exports = env_or("FERRY_BENCH_EXPORTS", 100)?.max(1);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-service");
    std::fs::create_dir_all(&work)?;
    let small = work.join("users-1k.csv.gz");
    let big = work.join(format!("users-{big_rows}.csv.gz"));
    let exportable = work.join("users-10k.csv.gz");
    sample::write_users_csv_gz(&small, 1_000, 1)?;
    sample::write_users_csv_gz(&exportable, 10_000, 3)?;
    if !big.exists() {
        sample::write_users_csv_gz(&big, big_rows, 2)?;
    }

    let pg = LocalPostgres::start(Tuning { durable: true })?;
    let url = pg.url();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    check(Command::new(ferry).arg("migrate").env("DATABASE_URL", &url))?;
    let topics: Vec<String> = [
        TOPIC,
        STATUS,
        EXPORT_EVENTS,
        "ferry-matches-status",
        "ferry-dlq",
    ]
    .map(String::from)
    .to_vec();
    let broker = EmbeddedBroker::start(&topics, 4).map_err(anyhow::Error::msg)?;
    let brokers = broker.bootstrap_servers().to_string();
    let serve = Serve::start(ferry, &url, &brokers, &work)?;
    let events = Events::start(&brokers, STATUS, "groupId", "COMPLETED")?;
    let exported = Events::start(&brokers, EXPORT_EVENTS, "exportId", "DONE")?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .create()?;
    let request = |group: &str, body: serde_json::Value| {
        let mut r = json!({"domainId": DOMAIN, "groupId": group});
        r.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        r.to_string()
    };
    let send = |payload: &str| -> Result<()> {
        producer
            .send(BaseRecord::<(), str>::to(TOPIC).payload(payload))
            .map_err(|(e, _)| e)?;
        producer.flush(Duration::from_secs(10))?;
        Ok(())
    };

    // Latency, one job at a time.
    let small_path = small.display().to_string();
    let mut latencies = Vec::new();
    for i in 0..latency_jobs {
        let group = format!("lat-{i}");
        let t = Instant::now();
        send(&request(&group, json!({"filePath": small_path})))?;
        let read = events.wait_for(&[group], Duration::from_secs(60))?;
        latencies.push(last(&read) - t);
    }
    let (p50, p99) = (
        percentile(&mut latencies, 0.50),
        percentile(&mut latencies, 0.99),
    );

    // Throughput: tiny jobs, all at once.
    let groups: Vec<String> = (0..tiny_jobs).map(|i| format!("tiny-{i}")).collect();
    let t = Instant::now();
    for g in &groups {
        let ids: Vec<String> = (0..10).map(|n| format!("{g}-{n}")).collect();
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC).payload(&request(g, json!({"referenceIds": ids}))),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let tiny_secs = (last(&events.wait_for(&groups, Duration::from_secs(600))?) - t).as_secs_f64();

    // One big job, through Kafka and through `ferry import` in turns: each
    // run loads a new group into a table that grows, so neither path gets
    // the emptier table.
    let big_path = big.display().to_string();
    let (mut kafka_secs, mut import_secs) = (Vec::new(), Vec::new());
    for run in 0..big_runs {
        let group = format!("big-kafka-{run}");
        let t = Instant::now();
        send(&request(&group, json!({"filePath": big_path})))?;
        let read = events.wait_for(&[group], Duration::from_secs(900))?;
        kafka_secs.push((last(&read) - t).as_secs_f64());

        let t = Instant::now();
        check(
            Command::new(ferry)
                .args(["import", &big_path, "--domain", DOMAIN])
                .args(["--group", &format!("big-import-{run}"), "--json"])
                .env("DATABASE_URL", &url)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null()),
        )?;
        import_secs.push(t.elapsed().as_secs_f64());
    }

    // Exports through the API: many small ones at once, then a big one
    // against `ferry export` in turns.
    for (file, domain) in [(&exportable, SMALL_DOMAIN), (&big, BIG_DOMAIN)] {
        check(
            Command::new(ferry)
                .args(["import", &file.display().to_string(), "--domain", domain])
                .args(["--group", "exported", "--json"])
                .env("DATABASE_URL", &url)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null()),
        )?;
    }
    let api = Exports::new(&serve, ferry, &url)?;
    let small_key = api.key(SMALL_DOMAIN)?;
    let csv_gz =
        json!({"exported_object": "node", "parameters": {"format": "csv", "compression": "gzip"}});
    let t = Instant::now();
    let posted = api.create_all(&small_key, &csv_gz, small_exports as usize)?;
    let ids: Vec<String> = posted.iter().map(|(id, _)| id.clone()).collect();
    let ended = exported.wait_for(&ids, Duration::from_secs(900))?;
    let exports_secs = (last(&ended) - t).as_secs_f64();
    let mut export_latencies: Vec<Duration> =
        posted.iter().map(|(id, at)| ended[id] - *at).collect();
    let (e50, e99) = (
        percentile(&mut export_latencies, 0.50),
        percentile(&mut export_latencies, 0.99),
    );

    let big_key = api.key(BIG_DOMAIN)?;
    let (mut api_secs, mut cli_secs) = (Vec::new(), Vec::new());
    for _ in 0..big_runs {
        let (id, at) = api.create_all(&big_key, &csv_gz, 1)?.remove(0);
        let ended = exported.wait_for(std::slice::from_ref(&id), Duration::from_secs(900))?;
        api_secs.push((ended[&id] - at).as_secs_f64());

        let t = Instant::now();
        check(
            Command::new(ferry)
                .args(["export", "node", "--domain", BIG_DOMAIN])
                .args(["--format", "csv", "--compression", "gzip", "--json"])
                .env("DATABASE_URL", &url)
                .env("FERRY__EXPORTS__LOCAL_DIR", work.join("exports"))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null()),
        )?;
        cli_secs.push(t.elapsed().as_secs_f64());
    }

    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", serve.child.id()))
        .ok()
        .and_then(|s| vm_hwm_kib(&s));
    drop(serve);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| measure | ferry serve | baseline | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| request → COMPLETED status event, {latency_jobs} jobs of 1,000 rows, one at a time | p50 {:.0} ms, p99 {:.0} ms | target p50 ≤ 500 ms | |",
        ms(p50),
        ms(p99)
    );
    println!(
        "| {} tiny jobs (10-id lists) produced at once | {:.0} jobs/s ({:.1} s) | | |",
        grouped(tiny_jobs as i64),
        tiny_jobs as f64 / tiny_secs,
        tiny_secs
    );
    let (kafka, import) = (Runs::of(kafka_secs), Runs::of(import_secs));
    println!(
        "| {}-row CSV.gz job, median of {big_runs} | {} through Kafka | {} `ferry import` | {:.3}x |",
        grouped(big_rows as i64),
        kafka,
        import,
        kafka.median / import.median
    );
    println!(
        "| {small_exports} exports of 10,000 rows (CSV.gz) POSTed at once, POST → ExportCompleted event | p50 {:.0} ms, p99 {:.0} ms; {:.1} exports/s ({:.1} s) | | |",
        ms(e50),
        ms(e99),
        small_exports as f64 / exports_secs,
        exports_secs
    );
    let (through_api, cli) = (Runs::of(api_secs), Runs::of(cli_secs));
    println!(
        "| {}-row CSV.gz export, median of {big_runs} | {} through the API | {} `ferry export` | {:.3}x |",
        grouped(big_rows as i64),
        through_api,
        cli,
        through_api.median / cli.median
    );
    if let Some(kib) = peak_kib {
        println!(
            "| ferry serve peak RSS, whole run | {} MiB | | |",
            kib / 1024
        );
    }
    Ok(())
}

/// Seconds per run: the median and the range.
struct Runs {
    median: f64,
    min: f64,
    max: f64,
}

impl Runs {
    fn of(mut secs: Vec<f64>) -> Self {
        secs.sort_by(f64::total_cmp);
        Self {
            median: secs[secs.len() / 2],
            min: secs[0],
            max: secs[secs.len() - 1],
        }
    }
}

impl std::fmt::Display for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} s ({:.2}–{:.2})", self.median, self.min, self.max)
    }
}

/// The `p` quantile of `samples`.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

/// The latest of the arrival times.
fn last(read: &HashMap<String, Instant>) -> Instant {
    read.values().max().copied().unwrap_or_else(Instant::now)
}

/// A `ferry serve` child process, killed when dropped.
struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    fn start(ferry: &str, url: &str, brokers: &str, work: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(ferry)
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("FERRY__KAFKA__BROKERS", brokers)
            .env("FERRY__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("FERRY__STORAGE__LOCAL_ROOT", work)
            .env("FERRY__KAFKA__METADATA_REFRESH", "1s")
            // The bench is one caller making many exports at once.
            .env("FERRY__EXPORTS__CREATE_PER_MINUTE", "100000")
            .env("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "100000")
            .env("FERRY__HTTP__MAX_REQUESTS_PER_KEY", "1000")
            .env("FERRY__EXPORTS__LOCAL_DIR", work.join("exports"))
            .env(
                "RUST_LOG",
                std::env::var("FERRY_BENCH_SERVE_LOG").unwrap_or("warn".into()),
            )
            .spawn()?;
        let serve = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("ferry serve did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(serve)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The exports API of the `ferry serve` under test.
struct Exports<'a> {
    base: String,
    ferry: &'a str,
    url: &'a str,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl<'a> Exports<'a> {
    fn new(serve: &Serve, ferry: &'a str, url: &'a str) -> Result<Self> {
        Ok(Self {
            base: format!("http://127.0.0.1:{}", serve.port),
            ferry,
            url,
            http: reqwest::Client::new(),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        })
    }

    /// A new API key for `domain`.
    fn key(&self, domain: &str) -> Result<String> {
        let out = Command::new(self.ferry)
            .args(["apikey", "create", "--domain", domain])
            .env("DATABASE_URL", self.url)
            .output()?;
        anyhow::ensure!(out.status.success(), "ferry apikey create failed");
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// `n` exports of `body` POSTed at once: each one's id and when its
    /// POST was sent.
    fn create_all(
        &self,
        key: &str,
        body: &serde_json::Value,
        n: usize,
    ) -> Result<Vec<(String, Instant)>> {
        let url = format!("{}/v1/exports", self.base);
        self.runtime
            .block_on(futures::future::try_join_all((0..n).map(|_| async {
                let sent = Instant::now();
                let response = self
                    .http
                    .post(&url)
                    .bearer_auth(key)
                    .json(body)
                    .send()
                    .await?;
                let status = response.status();
                let export: serde_json::Value = response.json().await?;
                anyhow::ensure!(
                    status == reqwest::StatusCode::ACCEPTED,
                    "POST /v1/exports: {status} {export}"
                );
                let id = export["id"].as_str().context("no id")?.to_string();
                Ok((id, sent))
            })))
    }
}

/// A topic of job events, read from its end on a thread: each event's
/// `key` field (a group, an export id) with when it was read (so a latency
/// does not include the time the bench took to look). An event without
/// the `ok` status is an error.
struct Events(mpsc::Receiver<Result<(String, Instant)>>);

impl Events {
    fn start(brokers: &str, topic: &str, key: &'static str, ok: &'static str) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("bench-{topic}"))
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)?;
        }
        consumer.assign(&tpl)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let event: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
            let name = event[key].as_str().unwrap_or_default().to_string();
            let sent = match event["status"].as_str() {
                Some(status) if status == ok => tx.send(Ok((name, Instant::now()))),
                _ => tx.send(Err(anyhow::anyhow!("{name} did not end {ok}: {event}"))),
            };
            if sent.is_err() {
                return;
            }
        });
        // The assignment takes effect on the first polls.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(rx))
    }

    /// Waits until every one of `keys` has its event; when each was read.
    fn wait_for(&self, keys: &[String], wait: Duration) -> Result<HashMap<String, Instant>> {
        let mut read = HashMap::new();
        let deadline = Instant::now() + wait;
        while read.len() < keys.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (name, at) = self.0.recv_timeout(left).context("waiting for events")??;
            if keys.contains(&name) {
                read.entry(name).or_insert(at);
            }
        }
        Ok(read)
    }
}
