//! `ferry demo`: the main flows on embedded defaults. It starts a throwaway
//! PostgreSQL when none is configured, generates a sample users file,
//! imports it (a new group: the fast path), imports it again (every row an
//! update), shows a node's metadata through the seed's `node_metadata`
//! view, then imports a Parquet file of match suggestions (seed 003) and
//! shows one participant's top picks.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use ferry_actors::job::{InputFormat, NewJob, Target};
use ferry_actors::pg;
use uuid::Uuid;

use crate::config::Config;
use crate::localpg::{LocalPostgres, Tuning};
use crate::report::grouped;
use crate::sample;

pub const DEMO_DOMAIN: Uuid = Uuid::from_u128(0x0d0d_0000_0000_4000_8000_0000_0000_0001);

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

    let file = work.join("users.csv.gz");
    let t = Instant::now();
    let path = file.clone();
    tokio::task::spawn_blocking(move || sample::write_users_csv_gz(&path, rows, 42)).await??;
    writeln!(
        out,
        "Sample: {} users, 9 metadata columns, gzip CSV, {} bytes, written in {:.1} s: {}\n",
        grouped(rows as i64),
        grouped(std::fs::metadata(&file)?.len() as i64),
        t.elapsed().as_secs_f64(),
        file.display()
    )?;

    let group = format!("demo-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let new = NewJob::file(
        Target::Nodes,
        DEMO_DOMAIN,
        &group,
        &config.import.node_type,
        &file.display().to_string(),
        InputFormat::Csv,
    );
    let progress = std::io::stderr().is_terminal();
    let mut all_completed = true;
    for title in [
        "First import (new group: plain INSERT fast path)",
        "Same file again (every row an update)",
    ] {
        writeln!(out, "== {title}")?;
        let report = super::import::run(&config, new.clone(), progress).await?;
        report.write_text(&mut out)?;
        writeln!(out)?;
        all_completed &= report.status == ferry_actors::job::JobStatus::Completed;
    }

    let client = pg::connect(&config.database).await?;
    let metadata = client
        .query(
            "SELECT m.metadata_key, m.metadata_value FROM node_metadata m
             JOIN nodes n ON n.id = m.node_id
             WHERE n.reference_id = 'u00000001' AND n.group_id = $1 AND n.domain_id = $2
             ORDER BY 1",
            &[&ferry_actors::job::group_uuid(&group), &DEMO_DOMAIN],
        )
        .await?;
    writeln!(out, "== node_metadata of u00000001 (group {group})")?;
    for r in metadata {
        writeln!(
            out,
            "  {:<12} {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        )?;
    }
    all_completed &= import_matches(&config, &work, rows, &group, progress, &mut out).await?;
    Ok(all_completed)
}

/// Seed 003: the engine's Parquet file of suggestions, ten per user.
async fn import_matches(
    config: &Config,
    work: &std::path::Path,
    users: u64,
    group: &str,
    progress: bool,
    out: &mut impl Write,
) -> Result<bool> {
    let file = work.join("matches.parquet");
    let rows = users * sample::MATCHES_PER_PARTICIPANT;
    let path = file.clone();
    tokio::task::spawn_blocking(move || sample::write_matches_parquet(&path, rows, 200_000, 42))
        .await??;
    writeln!(
        out,
        "\n== Match suggestions: {} rows of Parquet (snappy, 200K-row row groups, {} bytes)",
        grouped(rows as i64),
        grouped(std::fs::metadata(&file)?.len() as i64),
    )?;
    let new = NewJob::file(
        Target::Matches,
        DEMO_DOMAIN,
        group,
        "",
        &file.display().to_string(),
        InputFormat::Parquet,
    );
    let report = super::import::run(config, new, progress).await?;
    report.write_text(out)?;
    let client = pg::connect(&config.database).await?;
    let picks = client
        .query(
            "SELECT rank, matched_participant_id, compatibility_score FROM match_suggestions
             WHERE group_id = $1 AND domain_id = $2 AND participant_id = 'u00000001'
             ORDER BY rank LIMIT 3",
            &[&ferry_actors::job::group_uuid(group), &DEMO_DOMAIN],
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
    Ok(report.status == ferry_actors::job::JobStatus::Completed)
}
