//! `ferry demo`: the whole loop of `ferry serve` on embedded defaults. It
//! starts a throwaway PostgreSQL when none is configured and an embedded
//! Kafka broker, writes a sample users CSV.gz and a Parquet file of match
//! suggestions to a local store, produces seed-style requests (a file, a
//! reference list, the same file again, a Parquet file, a file with two bad
//! rows, and one bad request), waits for the status events and prints them,
//! shows what landed in the tables, exports some of it back out through the
//! exports API (and prints its link and first lines), and where the
//! metrics are.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_actors::pg;
use ferry_actors::service::kafka;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use uuid::Uuid;

use super::demo_exports::DEMO_DOMAIN;
use crate::config::Config;
use crate::localpg::{LocalPostgres, Tuning};
use crate::report::grouped;
use crate::sample;
use crate::service::Service;
use crate::topics::{self, Until};

const USERS_TOPIC: &str = "demo-users";
const MATCHES_TOPIC: &str = "demo-matches";

pub async fn run(mut config: Config, rows: u64, database_configured: bool) -> Result<bool> {
    let mut out = std::io::stdout();
    let work = std::env::temp_dir().join("ferry-demo");
    let _local = if database_configured {
        None
    } else {
        writeln!(out, "No database configured: starting a local PostgreSQL…")?;
        let local = tokio::task::spawn_blocking(|| LocalPostgres::start(Tuning { durable: true }))
            .await?
            .context("starting a local PostgreSQL (is the postgresql package installed?)")?;
        config.database.url = local.url();
        Some(local)
    };
    writeln!(out, "PostgreSQL: {}", config.database.url)?;

    let users = work.join("users.csv.gz");
    let matches = work.join("matches.parquet");
    let typos = work.join("users-with-typos.csv");
    let match_rows = rows * sample::MATCHES_PER_PARTICIPANT;
    let t = Instant::now();
    let (u, m, t5) = (users.clone(), matches.clone(), typos.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        sample::write_users_csv_gz(&u, rows, 42)?;
        sample::write_matches_parquet(&m, match_rows, 200_000, 42)?;
        write_typos(&t5)
    })
    .await??;
    writeln!(
        out,
        "Local store {}: users.csv.gz ({} users, {} bytes), matches.parquet ({} suggestions, {} bytes), written in {:.1} s",
        work.display(),
        grouped(rows as i64),
        grouped(std::fs::metadata(&users)?.len() as i64),
        grouped(match_rows as i64),
        grouped(std::fs::metadata(&matches)?.len() as i64),
        t.elapsed().as_secs_f64(),
    )?;

    // Requests may name files of the local store only; exports go there too.
    config.storage.local_root = work.display().to_string();
    config.exports.local_dir = work.join("exports").display().to_string();
    if config.http.listen == crate::config::HttpSettings::default().listen {
        config.http.listen = "127.0.0.1:0".into();
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let service = Service::start(config.clone(), metrics).await?;
    writeln!(
        out,
        "ferry serve is running in this process: Kafka at {} ({}), HTTP at http://{}\n",
        service.brokers,
        if service.embedded.is_some() {
            "embedded broker"
        } else {
            "configured"
        },
        service.http_addr,
    )?;

    let group = format!("demo-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let typos_group = format!("{group}-typos");
    let request_in = |group: &str, path: &std::path::Path, extra: Value| {
        let mut request = json!({
            "domainId": DEMO_DOMAIN,
            "groupId": group,
            "filePath": path.display().to_string(),
            "fileName": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        });
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        request.to_string()
    };
    let file_request = |path: &std::path::Path, extra: Value| request_in(&group, path, extra);
    let requests = [
        ("users file (new group: plain INSERT fast path)", USERS_TOPIC, file_request(&users, json!({"contentType": "application/gzip"}))),
        ("reference list (seed 004 UC-2)", USERS_TOPIC, json!({"domainId": DEMO_DOMAIN, "groupId": group, "referenceIds": ["vip-1", "vip-2", "vip-3"]}).to_string()),
        ("same users file again (every row unchanged: nothing written)", USERS_TOPIC, file_request(&users, json!({"requestId": "second-run"}))),
        ("match suggestions from Parquet (seed 003)", MATCHES_TOPIC, file_request(&matches, json!({}))),
        ("a users file with two bad rows (FAILED, the rows listed)", USERS_TOPIC, request_in(&typos_group, &typos, json!({"contentType": "text/csv"}))),
        ("a bad request (to the DLQ)", USERS_TOPIC, json!({"domainId": "not-a-uuid", "groupId": group, "filePath": "users.csv.gz"}).to_string()),
    ];
    let producer: FutureProducer = kafka::client_config(&config.kafka, &service.brokers)
        .create()
        .context("creating the demo's producer")?;
    writeln!(out, "== Producing seed-style requests")?;
    let started = Instant::now();
    for (what, topic, payload) in &requests {
        producer
            .send(
                FutureRecord::to(topic).key(&group).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .context("producing a request")?;
        writeln!(out, "  -> {topic:<13} {what}")?;
    }

    writeln!(out, "\n== Status events (NodesTransferJobExchange)")?;
    let expected = [("ferry-nodes-status", 4), ("ferry-matches-status", 1)];
    let mut as_expected = true;
    for (topic, n) in expected {
        let events =
            topics::read_json(&config.kafka, &service.brokers, topic, Until::Count(n)).await?;
        if events.len() < n {
            writeln!(
                out,
                "  {topic}: only {} of {n} events arrived",
                events.len()
            )?;
            as_expected = false;
        }
        for e in events {
            // Every job completes but the one whose file has two bad rows.
            as_expected &= if e["groupId"] == typos_group.as_str() {
                e["status"] == "FAILED" && e["rejected"] == 2
            } else {
                e["status"] == "COMPLETED"
            };
            writeln!(out, "  {topic}: {}", summary(&e))?;
        }
    }
    writeln!(
        out,
        "  (all within {:.1} s of producing)",
        started.elapsed().as_secs_f64()
    )?;

    let letters = dead_letters(&config, &service.brokers).await?;
    writeln!(out, "\n== Dead-letter topic {}", config.kafka.dlq_topic)?;
    for error in &letters {
        writeln!(out, "  {error}")?;
    }

    show_tables(&config, &group, &mut out).await?;
    as_expected &=
        super::demo_exports::run(&config, &service, [&group, &typos_group], &mut out).await?;
    writeln!(
        out,
        "\nMetrics: http://{addr}/metrics   Health: http://{addr}/health/ready\n\
         (`ferry serve` runs the same service until SIGTERM; see the README.)",
        addr = service.http_addr,
    )?;
    service.shutdown().await?;
    Ok(as_expected && !letters.is_empty())
}

/// One line per event: status, kind, counts, and the lists when short.
fn summary(e: &Value) -> String {
    let mut line = format!(
        "{} {:<7} processed {}/{}  inserted {} updated {} unchanged {} rejected {}",
        e["status"].as_str().unwrap_or("?"),
        e["kind"].as_str().unwrap_or("?"),
        grouped(e["processed"].as_i64().unwrap_or(0)),
        grouped(e["total"].as_i64().unwrap_or(0)),
        grouped(e["inserted"].as_i64().unwrap_or(0)),
        grouped(e["updated"].as_i64().unwrap_or(0)),
        grouped(e["unchanged"].as_i64().unwrap_or(0)),
        grouped(e["rejected"].as_i64().unwrap_or(0)),
    );
    let list = |name: &str| {
        e[name]
            .as_array()
            .filter(|l| !l.is_empty())
            .map(|l| format!("  {name} {}", Value::Array(l.clone())))
    };
    line.extend(list("successList"));
    line.extend(list("failedList"));
    if let Some(path) = e["rejectsPath"].as_str() {
        line.push_str(&format!("\n      rejects file {path}"));
    }
    line
}

/// Five users, two of them cut short (lines 3 and 5): their rows are
/// rejected with the reason, the others load.
fn write_typos(path: &std::path::Path) -> Result<()> {
    let mut csv = Vec::new();
    let mut rng = sample::Rng::new(7);
    writeln!(csv, "{}", sample::USER_HEADER)?;
    for n in 1..=5 {
        match n {
            2 => writeln!(csv, "u00000002,Asha")?,
            4 => writeln!(csv, "u00000004,Ravi,Kumar")?,
            _ => {
                sample::user_row(&mut csv, n, &mut rng)?;
                writeln!(csv)?;
            }
        }
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// The DLQ entries' errors.
async fn dead_letters(config: &Config, brokers: &str) -> Result<Vec<String>> {
    let (kafka, brokers) = (config.kafka.clone(), brokers.to_string());
    let letters =
        tokio::task::spawn_blocking(move || super::dlq::read_all(&kafka, &brokers)).await??;
    Ok(letters
        .into_iter()
        .map(|l| l.error.unwrap_or_default())
        .collect())
}

/// A node's metadata through the seed's `node_metadata` view, and one
/// participant's top picks.
async fn show_tables(config: &Config, group: &str, out: &mut impl Write) -> Result<()> {
    let client = pg::connect(&config.database).await?;
    let group_id = ferry_actors::job::group_uuid(group);
    let metadata = client
        .query(
            "SELECT m.metadata_key, m.metadata_value FROM node_metadata m
             JOIN nodes n ON n.id = m.node_id
             WHERE n.reference_id = 'u00000001' AND n.group_id = $1 AND n.domain_id = $2
             ORDER BY 1",
            &[&group_id, &DEMO_DOMAIN],
        )
        .await?;
    writeln!(out, "\n== node_metadata of u00000001 (group {group})")?;
    for r in metadata {
        writeln!(
            out,
            "  {:<12} {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        )?;
    }
    let picks = client
        .query(
            "SELECT rank, matched_participant_id, compatibility_score FROM match_suggestions
             WHERE group_id = $1 AND domain_id = $2 AND participant_id = 'u00000001'
             ORDER BY rank LIMIT 3",
            &[&group_id, &DEMO_DOMAIN],
        )
        .await?;
    writeln!(out, "\n== Top picks of u00000001")?;
    for r in picks {
        writeln!(
            out,
            "  #{} {}  score {}",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, f64>(2)
        )?;
    }
    let jobs = client
        .query(
            "SELECT kind, status, total_rows, extract(epoch FROM finished_at - started_at)::float8
             FROM jobs WHERE group_key = $1 ORDER BY created_at",
            &[&group],
        )
        .await?;
    writeln!(out, "\n== jobs")?;
    for r in jobs {
        let (rows, secs): (i64, Option<f64>) = (r.get(2), r.get(3));
        let secs = secs.unwrap_or(0.0);
        writeln!(
            out,
            "  {:<7} {:<9} {:>10} rows in {:.2} s ({} rows/s)",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            grouped(rows),
            secs,
            grouped((rows as f64 / secs.max(0.001)) as i64),
        )?;
    }
    Ok(())
}
