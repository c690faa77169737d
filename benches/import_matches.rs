//! Benchmark: `ferry import --target matches` of a Parquet file of match
//! suggestions (snappy, ~200K-row row groups) from s3s-fs, against the
//! hand-written psql path on the same schema and server, in the same run:
//! the same rows as CSV (converted beforehand, not timed), `\copy` into a
//! temp table, then one `INSERT … ON CONFLICT`.
//!
//! Cases: a new group (ferry's fast path), a new group with upserts only
//! (`--no-fast-path`), and a re-import where every row is an update. Then
//! `shards`: the same rows as 8 Parquet shards under a prefix, one job,
//! against the one file, alternating, medians of `FERRY_BENCH_RUNS` (3).
//!
//! Prints a table of rows/s, the ratio ferry/psql, and ferry's peak RSS.
//! `FERRY_BENCH_MATCH_ROWS` sets the size (default 2000000),
//! `FERRY_BENCH_CASES` the cases (`fresh,upsert,update,shards`). Run it
//! with `benches/run.sh matches`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use common::{check, ferry_run, print_table, psql, psql_timed, Row, Run, DOMAIN, GROUP};
use ferry::localpg::{LocalPostgres, Tuning};
use ferry::locals3::LocalS3;
use ferry::report::grouped;
use ferry::sample;

const ROW_GROUP_ROWS: usize = 200_000;
const SEED: u64 = 2003;

fn main() -> Result<()> {
    let rows: u64 = std::env::var("FERRY_BENCH_MATCH_ROWS")
        .unwrap_or_else(|_| "2000000".into())
        .parse()
        .context("FERRY_BENCH_MATCH_ROWS")?;
    let cases =
        std::env::var("FERRY_BENCH_CASES").unwrap_or_else(|_| "fresh,upsert,update,shards".into());
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-import-matches");
    std::fs::create_dir_all(&work)?;
    let parquet = work.join(format!("matches-{rows}.parquet"));
    let csv = work.join(format!("matches-{rows}.csv"));
    if !parquet.exists() || !csv.exists() {
        eprintln!(
            "generating {} match suggestions → {}",
            grouped(rows as i64),
            parquet.display()
        );
        sample::write_matches_parquet(&parquet, rows, ROW_GROUP_ROWS, SEED)?;
        sample::write_matches_csv(&csv, rows, SEED)?;
    }

    let pg = LocalPostgres::start(Tuning { durable: true })?;
    let url = pg.url();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    check(Command::new(ferry).arg("migrate").env("DATABASE_URL", &url))?;
    let s3 = LocalS3::start()?;
    let key = format!("matches-{rows}.parquet");
    tokio::runtime::Runtime::new()?.block_on(s3.put_file("bench", &key, &parquet))?;
    let uri = format!("s3://bench/{key}");
    let import = |extra: &[&str]| {
        let args: Vec<&str> = ["--target", "matches"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        ferry_run(ferry, &url, &uri, &args, &s3.env())
    };

    let mut table = Vec::new();
    let mut shards = None;
    for case in cases.split(',') {
        if case == "shards" {
            shards = Some(shard_runs(&work, &url, &s3, rows, &uri)?);
            continue;
        }
        eprintln!("{case} {}…", grouped(rows as i64));
        let (label, psql_run, ferry_run) = match case {
            "fresh" => {
                reset(&url)?;
                let p = psql_path(&url, &csv)?;
                reset(&url)?;
                ("new group, Parquet from S3 (s3s-fs)", p, import(&[])?)
            }
            "upsert" => {
                reset(&url)?;
                let p = psql_path(&url, &csv)?;
                reset(&url)?;
                ("new group, upsert only", p, import(&["--no-fast-path"])?)
            }
            "update" => {
                reset(&url)?;
                psql_path(&url, &csv)?;
                let p = psql_path(&url, &csv)?;
                ("re-import (all updates)", p, import(&[])?)
            }
            other => bail!("unknown case {other}"),
        };
        table.push(Row {
            case: label,
            rows,
            psql: psql_run,
            ferry: ferry_run,
        });
    }
    print_table(&table);
    if let Some((one, eight)) = shards {
        println!();
        println!(
            "| case | rows | one file | 8 shards (prefix) | 8 shards / one file | peak RSS, one file / 8 shards |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        println!(
            "| new group, Parquet from S3, median of {} | {} | {:.2} s ({}) | {:.2} s ({}) | {:.3}x | {} / {} MiB |",
            one.secs.len(),
            grouped(rows as i64),
            median(&one.secs),
            spread(&one.secs),
            median(&eight.secs),
            spread(&eight.secs),
            median(&eight.secs) / median(&one.secs),
            one.peak_rss_kib / 1024,
            eight.peak_rss_kib / 1024,
        );
    }
    Ok(())
}

const SHARDS: u64 = 8;

/// The same rows as 8 shards under `bench/shards-ROWS/`, imported as one
/// job by their prefix, and the one file, alternating; the seconds of each.
fn shard_runs(
    work: &Path,
    url: &str,
    s3: &LocalS3,
    rows: u64,
    one_file: &str,
) -> Result<(Runs, Runs)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let per = rows.div_ceil(SHARDS);
    for i in 0..SHARDS {
        let path = work.join(format!("shards-{rows}/part-{i:05}.parquet"));
        let first = i * per;
        if !path.exists() {
            let n = per.min(rows - first);
            sample::write_matches_parquet_from(&path, first, n, ROW_GROUP_ROWS, SEED + i)?;
        }
        let key = format!("shards-{rows}/part-{i:05}.parquet");
        runtime.block_on(s3.put_file("bench", &key, &path))?;
    }
    let prefix = format!("s3://bench/shards-{rows}/");
    let runs: usize = std::env::var("FERRY_BENCH_RUNS")
        .unwrap_or_else(|_| "3".into())
        .parse()
        .context("FERRY_BENCH_RUNS")?;
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let (mut one, mut eight) = (Runs::default(), Runs::default());
    for _ in 0..runs {
        for (source, way) in [(one_file, &mut one), (prefix.as_str(), &mut eight)] {
            reset(url)?;
            let run = ferry_run(ferry, url, source, &["--target", "matches"], &s3.env())?;
            eprintln!("  {source}: {:.2} s", run.secs);
            way.secs.push(run.secs);
            way.peak_rss_kib = way.peak_rss_kib.max(run.peak_rss_kib.unwrap_or(0));
        }
    }
    Ok((one, eight))
}

/// One way of reading the rows: each run's seconds, and the largest peak
/// RSS of any run.
#[derive(Default)]
struct Runs {
    secs: Vec<f64>,
    peak_rss_kib: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> String {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    format!("{lo:.2}–{hi:.2}")
}

/// Empties the table and settles the server, so runs start alike.
fn reset(url: &str) -> Result<()> {
    psql(
        url,
        "TRUNCATE match_suggestions; VACUUM ANALYZE match_suggestions; CHECKPOINT;",
    )
}

/// The hand-written path: `\copy` into a temp table, then one upsert.
fn psql_path(url: &str, csv: &Path) -> Result<Run> {
    let script = format!(
        "SET synchronous_commit = off;
CREATE TEMP TABLE tmp (participant_id text, matched_participant_id text,
                       compatibility_score float8, rank int4);
\\copy tmp FROM '{file}' WITH (FORMAT csv, HEADER true)
INSERT INTO match_suggestions (group_id, domain_id, participant_id, matched_participant_id,
                               compatibility_score, rank, created_at, updated_at)
SELECT '{group}', '{DOMAIN}', participant_id, matched_participant_id, compatibility_score, rank,
       now(), now() FROM tmp
ON CONFLICT (group_id, domain_id, participant_id, matched_participant_id) DO UPDATE
SET compatibility_score = EXCLUDED.compatibility_score, rank = EXCLUDED.rank, updated_at = now();
",
        file = csv.display(),
        group = ferry_actors::job::group_uuid(GROUP),
    );
    psql_timed(url, &script)
}
