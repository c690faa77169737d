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
//! - The `ferry serve` process's peak RSS over the whole run.
//!
//! `FERRY_BENCH_LATENCY_JOBS`, `FERRY_BENCH_TINY_JOBS`, `FERRY_BENCH_BIG_ROWS`
//! and `FERRY_BENCH_BIG_RUNS` change the sizes; `FERRY_BENCH_SERVE_LOG` is
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
use ferry_actors::kafka::embedded::EmbeddedBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

const TOPIC: &str = "bench-users";
const STATUS: &str = "ferry-nodes-status";

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
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-service");
    std::fs::create_dir_all(&work)?;
    let small = work.join("users-1k.csv.gz");
    let big = work.join(format!("users-{big_rows}.csv.gz"));
    sample::write_users_csv_gz(&small, 1_000, 1)?;
    if !big.exists() {
        sample::write_users_csv_gz(&big, big_rows, 2)?;
    }

    let pg = LocalPostgres::start(Tuning { durable: true })?;
    let url = pg.url();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    check(Command::new(ferry).arg("migrate").env("DATABASE_URL", &url))?;
    let topics: Vec<String> = [TOPIC, STATUS, "ferry-matches-status", "ferry-dlq"]
        .map(String::from)
        .to_vec();
    let broker = EmbeddedBroker::start(&topics, 4).map_err(anyhow::Error::msg)?;
    let brokers = broker.bootstrap_servers().to_string();
    let serve = Serve::start(ferry, &url, &brokers, &work)?;
    let events = StatusEvents::start(&brokers)?;
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
        latencies.push(read - t);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let (p50, p99) = (pct(0.50), pct(0.99));

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
    let tiny_secs = (events.wait_for(&groups, Duration::from_secs(600))? - t).as_secs_f64();

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
        kafka_secs.push((read - t).as_secs_f64());

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
    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", serve.0.id()))
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

/// A `ferry serve` child process, killed when dropped.
struct Serve(Child);

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
            .env(
                "RUST_LOG",
                std::env::var("FERRY_BENCH_SERVE_LOG").unwrap_or("warn".into()),
            )
            .spawn()?;
        let serve = Self(child);
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
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The status topic, read from its end on a thread: each COMPLETED event's
/// group.
/// The groups whose status events arrived, each with when it was read (so
/// a latency does not include the time the bench took to look).
struct StatusEvents(mpsc::Receiver<Result<(String, Instant)>>);

impl StatusEvents {
    fn start(brokers: &str) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "bench-status")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(STATUS), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(STATUS, p.id(), Offset::End)?;
        }
        consumer.assign(&tpl)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let event: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
            let group = event["groupId"].as_str().unwrap_or_default().to_string();
            let sent = match event["status"].as_str() {
                Some("COMPLETED") => tx.send(Ok((group, Instant::now()))),
                _ => tx.send(Err(anyhow::anyhow!(
                    "job of {group} did not complete: {event}"
                ))),
            };
            if sent.is_err() {
                return;
            }
        });
        // The assignment takes effect on the first polls.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(rx))
    }

    /// Waits until every group in `groups` has its event; when the last
    /// one was read.
    fn wait_for(&self, groups: &[String], wait: Duration) -> Result<Instant> {
        let mut missing: HashMap<&str, ()> = groups.iter().map(|g| (g.as_str(), ())).collect();
        let deadline = Instant::now() + wait;
        let mut last = Instant::now();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (group, read) = self
                .0
                .recv_timeout(left)
                .context("waiting for status events")??;
            if missing.remove(group.as_str()).is_some() {
                last = read;
            }
        }
        Ok(last)
    }
}
