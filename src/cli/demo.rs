//! `ferry demo`: the main flow on embedded defaults. It generates a sample
//! users file, starts a throwaway PostgreSQL when none is configured,
//! imports the file (a new group: the fast path), imports it again (every
//! row an update), and shows a node's metadata through the seed's
//! `node_metadata` view.

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
    let rows = client
        .query(
            "SELECT m.metadata_key, m.metadata_value FROM node_metadata m
             JOIN nodes n ON n.id = m.node_id
             WHERE n.reference_id = 'u00000001' AND n.group_id = $1 AND n.domain_id = $2
             ORDER BY 1",
            &[&ferry_actors::job::group_uuid(&group), &DEMO_DOMAIN],
        )
        .await?;
    writeln!(out, "== node_metadata of u00000001 (group {group})")?;
    for r in rows {
        writeln!(
            out,
            "  {:<12} {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        )?;
    }
    Ok(all_completed)
}
