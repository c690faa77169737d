//! The demo's exports: what was imported goes out again, through the
//! exports API (seed 001) and through a run of the scheduled users export
//! (seed 000).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use ferry_actors::kinds::Work;
use ferry_actors::pg;
use ferry_actors::users::schedule::{self, Claim, Only, MANUAL};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::Config;
use crate::service::Service;
use crate::topics::{read_json, Until};

/// The demo's domain.
pub const DEMO_DOMAIN: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0001);

pub async fn run(
    config: &Config,
    service: &Service,
    [group, typos_group]: [&str; 2],
    out: &mut impl Write,
) -> Result<bool> {
    let key = crate::cli::apikey::create(&config.database, DEMO_DOMAIN, "demo").await?;
    let api = Api {
        base: format!("http://{}", service.http_addr),
        http: reqwest::Client::new(),
        key,
    };
    let exported = export_nodes(config, service, &api, out).await?;
    let sent = users_export(config, service, &api, [group, typos_group], out).await?;
    Ok(exported && sent)
}

struct Api {
    base: String,
    http: reqwest::Client,
    key: String,
}

/// An export of what was imported, through the exports API (seed 001):
/// a key for the demo's domain, `POST /v1/exports`, polling until DONE,
/// the download link and the file's first lines, and the
/// `ExportCompleted` event.
async fn export_nodes(
    config: &Config,
    service: &Service,
    api: &Api,
    out: &mut impl Write,
) -> Result<bool> {
    writeln!(
        out,
        "\n== Export through the API: the domain's pro and team users, as CSV.gz"
    )?;
    let (base, http, key) = (&api.base, &api.http, &api.key);
    let request = json!({
        "exported_object": "node",
        "parameters": {
            "fields": ["reference_id", "metadata.first_name", "metadata.city", "metadata.plan", "created_at"],
            "order": "reference_id",
            "filters": {"metadata.plan": {"conditions": {"$in": ["pro", "team"]}}},
            "format": "csv",
            "compression": "gzip",
        },
    });
    writeln!(out, "  POST {base}/v1/exports {request}")?;
    let started = Instant::now();
    let created = http
        .post(format!("{base}/v1/exports"))
        .bearer_auth(key)
        .json(&request)
        .send()
        .await
        .context("POST /v1/exports")?;
    let status = created.status();
    let location = created
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let export: Value = created.json().await?;
    writeln!(
        out,
        "  <- {status}, Location: {location}, status {}",
        export["status"]
    )?;
    anyhow::ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "the export was refused: {export}"
    );
    let export = loop {
        let export: Value = http
            .get(format!("{base}{location}"))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        let ended = !matches!(export["status"].as_str(), Some("SCHEDULED" | "IN_PROGRESS"));
        if ended || started.elapsed() > Duration::from_secs(120) {
            break export;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    writeln!(
        out,
        "  GET {location} -> {} in {:.1} s: {} rows, {} bytes, data as of {}",
        export["status"],
        started.elapsed().as_secs_f64(),
        export["result"]["rows"],
        export["result"]["bytes"],
        export["result"]["data_as_of"],
    )?;
    let Some(url) = export["result"]["download_url"].as_str() else {
        writeln!(out, "  no file: {}", export["error"])?;
        return Ok(false);
    };
    writeln!(
        out,
        "  download (no key needed, valid {:?}): {url}",
        config.exports.url_ttl
    )?;
    let body = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..]).read_to_string(&mut text)?;
    writeln!(out, "  first lines:")?;
    for line in text.lines().take(4) {
        writeln!(out, "    {line}")?;
    }
    let events = read_json(
        &config.kafka,
        &service.brokers,
        &config.exports.events_topic,
        Until::Count(1),
    )
    .await?;
    for e in &events {
        writeln!(
            out,
            "  {}: {} {} rows in {} file(s)",
            config.exports.events_topic,
            e["status"],
            e["rows"],
            e["files"].as_array().map_or(0, Vec::len),
        )?;
    }
    Ok(export["status"] == "DONE"
        && events.len() == 1
        && Some(text.lines().count() as u64 - 1) == export["result"]["rows"].as_u64())
}

/// Seed 000's users export: the demo's users group as COST_BASED (a file
/// and a message), its typos group as NON_COST_BASED (the ids in a
/// message), set through `PUT /v1/groups`, one run, its messages; then a
/// second run, which has nothing new to send.
async fn users_export(
    config: &Config,
    service: &Service,
    api: &Api,
    groups: [&str; 2],
    out: &mut impl Write,
) -> Result<bool> {
    let topic = &config.exports.users.topic;
    writeln!(
        out,
        "\n== The scheduled users export (seed 000), one run now: messages on {topic}"
    )?;
    for (group, kind) in groups.iter().zip(["COST_BASED", "NON_COST_BASED"]) {
        let url = format!("{}/v1/groups/{group}", api.base);
        let answer = api
            .http
            .put(&url)
            .bearer_auth(&api.key)
            .json(&json!({ "groupType": kind }))
            .send()
            .await?
            .error_for_status()
            .context("PUT /v1/groups")?;
        writeln!(
            out,
            "  PUT /v1/groups/{group} {kind} -> {}",
            answer.status()
        )?;
    }
    let only = Only {
        domain: Some(DEMO_DOMAIN),
        group_key: None,
    };
    let mut client = pg::connect(&config.database).await?;
    let started = Instant::now();
    let run = run_once(&mut client, config, &only).await?;
    writeln!(
        out,
        "  run {}: {} group exports queued",
        run.id,
        run.jobs.len()
    )?;
    let messages = read_json(&config.kafka, &service.brokers, topic, Until::Count(2)).await?;
    for m in &messages {
        let mut shown = m.clone();
        if let Some(ids) = shown.get_mut("referenceIds").and_then(Value::as_array_mut) {
            let n = ids.len();
            if n > 3 {
                ids.truncate(3);
                ids.push(json!(format!("… {n} in all")));
            }
        }
        writeln!(out, "  {topic}: {shown}")?;
    }
    writeln!(out, "  (in {:.1} s)", started.elapsed().as_secs_f64())?;
    let file = messages.iter().find_map(|m| m["filePath"].as_str());
    if let Some(path) = file {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path)?)
            .take(4096)
            .read_to_string(&mut text)
            .ok();
        writeln!(out, "  {path}, first lines:")?;
        for line in text.lines().take(3) {
            writeln!(out, "    {line}")?;
        }
    }
    let unsent: i64 = client
        .query_one(
            "SELECT count(*) FROM nodes WHERE domain_id = $1 AND NOT processed",
            &[&DEMO_DOMAIN],
        )
        .await?
        .get(0);
    writeln!(out, "  users of the domain still unsent: {unsent}")?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = run_once(&mut client, config, &only).await?;
    writeln!(
        out,
        "  a second run: {} exports, {} groups with no new users",
        again.jobs.len(),
        again.empty.len()
    )?;
    Ok(messages.len() == 2 && file.is_some() && unsent == 0 && again.jobs.is_empty())
}

/// One run of the users export now, its exports queued for the service.
async fn run_once(
    client: &mut tokio_postgres::Client,
    config: &Config,
    only: &Only,
) -> Result<schedule::Run<Work>> {
    let settings = crate::service::run_settings(config);
    schedule::start_run(client, &settings, MANUAL, Utc::now(), only, Claim::Queue)
        .await?
        .context("a run at this very time exists already")
}
