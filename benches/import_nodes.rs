//! Benchmark: `ferry import` of users CSV.gz into `nodes`, against the
//! hand-written psql path on the same schema and server, in the same run:
//! `\copy` into a temp table, then one `INSERT … ON CONFLICT`.
//!
//! Cases, per file size:
//! - new group: psql path vs ferry (the group is empty: ferry's fast path);
//! - new group, upsert only: psql path vs `ferry --no-fast-path`;
//! - re-import (every row an update): psql path vs ferry;
//! - new group, the file in S3 (s3s-fs): ferry downloads it, while the psql
//!   path reads it locally (psql has no S3 client).
//!
//! Prints a table of rows/s, the ratio ferry/psql, and ferry's peak RSS.
//! Sizes come from `FERRY_BENCH_ROWS` (default "1000000,5000000");
//! `FERRY_BENCH_CASES` picks cases (`fresh,upsert,update,s3`; default all for
//! the first size, `fresh` for the others). Run it with `benches/run.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry::localpg::{LocalPostgres, Tuning};
use ferry::locals3::LocalS3;
use ferry::report::grouped;
use ferry::sample;

const DOMAIN: &str = "5b0c7e4a-2f1d-4c3b-8a9e-6d7f1e2c3b4a";
const GROUP: &str = "bench-group";
const META: [&str; 9] = sample::USER_METADATA_KEYS;

struct Run {
    secs: f64,
    peak_rss_kib: Option<u64>,
}

struct Row {
    case: String,
    rows: u64,
    psql: Run,
    ferry: Run,
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let sizes: Vec<u64> = std::env::var("FERRY_BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,5000000".into())
        .split(',')
        .map(|s| s.trim().parse().context("FERRY_BENCH_ROWS"))
        .collect::<Result<_>>()?;
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-import-nodes");
    std::fs::create_dir_all(&work)?;
    let pg = LocalPostgres::start(Tuning { durable: true })?;
    let url = pg.url();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    check(Command::new(ferry).arg("migrate").env("DATABASE_URL", &url))?;

    let mut table = Vec::new();
    let mut s3: Option<LocalS3> = None;
    for (i, &rows) in sizes.iter().enumerate() {
        let file = work.join(format!("users-{rows}.csv.gz"));
        if !file.exists() {
            eprintln!(
                "generating {} rows → {}",
                grouped(rows as i64),
                file.display()
            );
            sample::write_users_csv_gz(&file, rows, 2024)?;
        }
        let default_cases = if i == 0 {
            "fresh,upsert,update,s3"
        } else {
            "fresh"
        };
        let cases = std::env::var("FERRY_BENCH_CASES").unwrap_or_else(|_| default_cases.into());
        for case in cases.split(',') {
            eprintln!("{case} {}…", grouped(rows as i64));
            let (psql, ferry_run) = match case {
                "fresh" => {
                    reset(&url)?;
                    let p = psql_path(&url, &file)?;
                    reset(&url)?;
                    let f = ferry_import(ferry, &url, &file, &[])?;
                    (p, f)
                }
                "upsert" => {
                    reset(&url)?;
                    let p = psql_path(&url, &file)?;
                    reset(&url)?;
                    let f = ferry_import(ferry, &url, &file, &["--no-fast-path"])?;
                    (p, f)
                }
                "s3" => {
                    // psql has no S3 client: its path reads the same file
                    // locally, so this row prices ferry's download too.
                    let s3 = s3.get_or_insert_with(|| LocalS3::start().expect("s3s-fs"));
                    let key = format!("users-{rows}.csv.gz");
                    tokio::runtime::Runtime::new()?.block_on(s3.put_file("bench", &key, &file))?;
                    reset(&url)?;
                    let p = psql_path(&url, &file)?;
                    reset(&url)?;
                    let uri = format!("s3://bench/{key}");
                    let f = ferry_run(ferry, &url, &uri, &[], &s3.env())?;
                    (p, f)
                }
                "update" => {
                    reset(&url)?;
                    psql_path(&url, &file)?;
                    let p = psql_path(&url, &file)?;
                    let f = ferry_import(ferry, &url, &file, &[])?;
                    (p, f)
                }
                other => bail!("unknown case {other}"),
            };
            table.push(Row {
                case: case.to_string(),
                rows,
                psql,
                ferry: ferry_run,
            });
        }
    }
    print_table(&table);
    drop(pg);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| case | rows | psql path rows/s | ferry rows/s | ferry / psql | ferry peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let rate = |run: &Run| r.rows as f64 / run.secs;
        println!(
            "| {} | {} | {} ({:.1} s) | {} ({:.1} s) | {:.2}x | {} |",
            match r.case.as_str() {
                "fresh" => "new group",
                "upsert" => "new group, upsert only",
                "s3" => "new group, CSV.gz from S3 (s3s-fs)",
                _ => "re-import (all updates)",
            },
            grouped(r.rows as i64),
            grouped(rate(&r.psql) as i64),
            r.psql.secs,
            grouped(rate(&r.ferry) as i64),
            r.ferry.secs,
            rate(&r.ferry) / rate(&r.psql),
            r.ferry
                .peak_rss_kib
                .map_or("-".into(), |k| format!("{} MiB", k / 1024)),
        );
    }
}

/// Empties the table and settles the server, so runs start alike.
fn reset(url: &str) -> Result<()> {
    psql(url, "TRUNCATE nodes; VACUUM ANALYZE nodes; CHECKPOINT;")?;
    Ok(())
}

/// The hand-written path: `\copy` into a temp table, then one upsert.
fn psql_path(url: &str, file: &Path) -> Result<Run> {
    let cols = META.map(|c| format!("{c} text")).join(", ");
    let meta = META.map(|c| format!("'{c}', {c}")).join(", ");
    let script = format!(
        "SET synchronous_commit = off;
CREATE TEMP TABLE tmp (user_id text, {cols});
\\copy tmp FROM PROGRAM 'gzip -dc {file}' WITH (FORMAT csv, HEADER true)
INSERT INTO nodes (reference_id, group_id, domain_id, type, metadata, created_at, updated_at)
SELECT user_id, '{group}', '{DOMAIN}', 'USER', jsonb_build_object({meta}), now(), now() FROM tmp
ON CONFLICT (group_id, domain_id, reference_id) DO UPDATE
SET type = EXCLUDED.type, metadata = EXCLUDED.metadata, updated_at = now();
",
        file = file.display(),
        group = ferry_actors::job::group_uuid(GROUP),
    );
    let started = Instant::now();
    psql(url, &script)?;
    Ok(Run {
        secs: started.elapsed().as_secs_f64(),
        peak_rss_kib: None,
    })
}

fn psql(url: &str, script: &str) -> Result<()> {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("psql")?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("psql failed: {status}");
    }
    Ok(())
}

fn ferry_import(ferry: &str, url: &str, file: &Path, extra: &[&str]) -> Result<Run> {
    ferry_run(ferry, url, file.to_str().unwrap(), extra, &[])
}

/// Runs `ferry import SOURCE`, sampling its peak RSS (VmHWM) until it exits.
fn ferry_run(
    ferry: &str,
    url: &str,
    source: &str,
    extra: &[&str],
    env: &[(String, String)],
) -> Result<Run> {
    let started = Instant::now();
    let mut child = Command::new(ferry)
        .args([
            "import", source, "--domain", DOMAIN, "--group", GROUP, "--json",
        ])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("ferry import failed: {status}");
            }
            break;
        }
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    let report: serde_json::Value = serde_json::from_str(out.trim())?;
    if report["status"] != "COMPLETED" {
        bail!("ferry import did not complete: {report}");
    }
    Ok(Run {
        secs,
        peak_rss_kib: Some(peak),
    })
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn check(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
