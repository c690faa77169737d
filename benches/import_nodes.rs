//! Benchmark: `ferry import` of users CSV.gz into `nodes`, against the
//! hand-written psql path on the same schema and server, in the same run:
//! `\copy` into a temp table, then one `INSERT … ON CONFLICT`.
//!
//! Cases, per file size:
//! - new group: psql path vs ferry (the group is empty: ferry's fast path);
//! - new group, upsert only: psql path vs `ferry --no-fast-path`;
//! - re-import of the same file: the psql path writes every row again,
//!   ferry finds them unchanged and writes none;
//! - re-import with every row changed (another file of the same ids): both
//!   write every row (what a ferry re-import cost before it compared rows);
//! - sync of the next day's file (1% changed, 1% new, 1% left): the psql
//!   path upserts and deletes the rest in one transaction, ferry runs
//!   `--mode sync`;
//! - new group, the file in S3 (s3s-fs): ferry downloads it, while the psql
//!   path reads it locally (psql has no S3 client);
//! - new group held to a data contract of 8 rules: here the baseline column
//!   is ferry without the contract, so the ratio is what the rules cost.
//!
//! Prints a table of rows/s, the ratio ferry/psql, and ferry's peak RSS.
//! Sizes come from `FERRY_BENCH_ROWS` (default "1000000,5000000");
//! `FERRY_BENCH_CASES` picks cases (`fresh,upsert,update,changed,sync,s3,contract`; default
//! all for the first size, `fresh` for the others); `FERRY_BENCH_RUNS` runs
//! each case so many times, alternating, and reports the medians. Run it with `benches/run.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use common::{check, ferry_run, print_table, psql, psql_timed, Row, Run, DOMAIN, GROUP};
use ferry::localpg::{LocalPostgres, Tuning};
use ferry::locals3::LocalS3;
use ferry::report::grouped;
use ferry::sample;

const META: [&str; 9] = sample::USER_METADATA_KEYS;

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
            "fresh,upsert,update,changed,sync,s3,contract"
        } else {
            "fresh"
        };
        let runs: usize = std::env::var("FERRY_BENCH_RUNS").map_or(Ok(1), |v| v.parse())?;
        let cases = std::env::var("FERRY_BENCH_CASES").unwrap_or_else(|_| default_cases.into());
        for case in cases.split(',') {
            eprintln!("{case} {}…", grouped(rows as i64));
            let mut psqls = Vec::new();
            let mut ferrys = Vec::new();
            for _ in 0..runs {
                let (p, f) = case_once(case, ferry, &url, &file, &work, rows, &mut s3)?;
                psqls.push(p);
                ferrys.push(f);
            }
            table.push(Row {
                case: match case {
                    "fresh" => "new group",
                    "upsert" => "new group, upsert only",
                    "s3" => "new group, CSV.gz from S3 (s3s-fs)",
                    "update" => "re-import, the same file (ferry: all unchanged)",
                    "changed" => "re-import, every row changed (all updates)",
                    "contract" => "new group, a contract of 8 rules (baseline: ferry without it)",
                    _ => {
                        "sync, next day's file: 1% changed, 1% new, 1% left (psql: upsert + DELETE)"
                    }
                },
                rows,
                psql: median(psqls),
                ferry: median(ferrys),
            });
        }
    }
    print_table(&table);
    drop(pg);
    Ok(())
}

/// One run of `case`: the psql path's, then ferry's.
fn case_once(
    case: &str,
    ferry: &str,
    url: &str,
    file: &Path,
    work: &Path,
    rows: u64,
    s3: &mut Option<LocalS3>,
) -> Result<(Run, Run)> {
    Ok(match case {
        "fresh" | "upsert" => {
            reset(url)?;
            let p = psql_path(url, file)?;
            reset(url)?;
            let extra: &[&str] = match case {
                "upsert" => &["--no-fast-path"],
                _ => &[],
            };
            (p, ferry_import(ferry, url, file, extra)?)
        }
        "s3" => {
            // psql has no S3 client: its path reads the same file
            // locally, so this row prices ferry's download too.
            let s3 = s3.get_or_insert_with(|| LocalS3::start().expect("s3s-fs"));
            let key = format!("users-{rows}.csv.gz");
            tokio::runtime::Runtime::new()?.block_on(s3.put_file("bench", &key, file))?;
            reset(url)?;
            let p = psql_path(url, file)?;
            reset(url)?;
            let uri = format!("s3://bench/{key}");
            (p, ferry_run(ferry, url, &uri, &[], &s3.env())?)
        }
        "update" => {
            reset(url)?;
            psql_path(url, file)?;
            let p = psql_path(url, file)?;
            let size = table_bytes(url)?;
            let f = ferry_import(ferry, url, file, &[])?;
            eprintln!(
                "node_rows: {} bytes before ferry's re-import, {} after",
                size,
                table_bytes(url)?
            );
            (p, f)
        }
        "changed" => {
            // The same ids, every row's metadata different.
            let other = work.join(format!("users-{rows}-other.csv.gz"));
            if !other.exists() {
                sample::write_users_csv_gz(&other, rows, 2025)?;
            }
            reset(url)?;
            psql_path(url, file)?;
            let p = psql_path(url, &other)?;
            // The table holds the other file: every row of this one differs.
            (p, ferry_import(ferry, url, file, &[])?)
        }
        "sync" => {
            let next = work.join(format!("users-{rows}-next-day.csv.gz"));
            if !next.exists() {
                sample::write_users_next_day_csv_gz(&next, rows, 2024)?;
            }
            reset(url)?;
            psql_path(url, file)?;
            let p = psql_sync_path(url, &next)?;
            reset(url)?;
            psql_path(url, file)?;
            let f = ferry_import(ferry, url, &next, &["--mode", "sync"])?;
            let held = common::psql_value(url, "SELECT count(*) FROM node_rows")?;
            if held != rows.to_string() {
                bail!("after the sync the group holds {held} rows, not {rows}");
            }
            (p, f)
        }
        "contract" => {
            reset(url)?;
            let without = ferry_import(ferry, url, file, &[])?;
            let contract = work.join("contract.json");
            std::fs::write(&contract, CONTRACT)?;
            set_contract(ferry, url, &["--contract", contract.to_str().unwrap()])?;
            reset(url)?;
            // A rejected row would fail the import, and the run with it.
            let with = ferry_import(ferry, url, file, &[]);
            set_contract(ferry, url, &["--no-contract"])?;
            (without, with?)
        }
        other => bail!("unknown case {other}"),
    })
}

/// Eight rules the sample's every row keeps: a required list, a format, a
/// type and two bounds, an enum, a pattern, another format.
const CONTRACT: &str = r#"{"nodes": {
  "required": ["email", "plan"],
  "properties": {
    "email": {"format": "email"},
    "age": {"type": "integer", "minimum": 18, "maximum": 130},
    "plan": {"enum": ["free", "pro", "team", "enterprise"]},
    "country": {"pattern": "^[A-Z]{2}$"},
    "signup_date": {"format": "date"}
  }
}}"#;

/// `ferry groups set` of the bench's group, with `extra`.
fn set_contract(ferry: &str, url: &str, extra: &[&str]) -> Result<()> {
    let mut cmd = Command::new(ferry);
    cmd.args([
        "groups",
        "set",
        GROUP,
        "--domain",
        DOMAIN,
        "--type",
        "COST_BASED",
    ])
    .args(extra)
    .env("DATABASE_URL", url);
    check(&mut cmd)
}

/// The run of median time.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Empties the table and settles the server, so runs start alike.
fn reset(url: &str) -> Result<()> {
    psql(
        url,
        "TRUNCATE node_rows; VACUUM ANALYZE node_rows; CHECKPOINT;",
    )?;
    Ok(())
}

/// The table's size on disk, with its indexes.
fn table_bytes(url: &str) -> Result<String> {
    common::psql_value(url, "SELECT pg_total_relation_size('node_rows')")
}

/// The hand-written path: `\copy` into a temp table, then one upsert.
fn psql_path(url: &str, file: &Path) -> Result<Run> {
    psql_timed(url, &upsert_script(file))
}

fn upsert_script(file: &Path) -> String {
    let cols = META.map(|c| format!("{c} text")).join(", ");
    let meta = META.map(|c| format!("'{c}', {c}")).join(", ");
    format!(
        "SET synchronous_commit = off;
CREATE TEMP TABLE tmp (user_id text, {cols});
\\copy tmp FROM PROGRAM 'gzip -dc {file}' WITH (FORMAT csv, HEADER true)
INSERT INTO node_rows (reference_id, group_id, domain_id, type, metadata, created_at, updated_at)
SELECT user_id, '{group}', '{DOMAIN}', 'USER', jsonb_build_object({meta}), now(), now() FROM tmp
ON CONFLICT (group_id, domain_id, reference_id) DO UPDATE
SET type = EXCLUDED.type, metadata = EXCLUDED.metadata, updated_at = now();
",
        file = file.display(),
        group = ferry_actors::job::group_uuid(GROUP),
    )
}

/// The hand-written sync: the same upsert, then a `DELETE` of the
/// group's rows the file does not hold, in one transaction.
fn psql_sync_path(url: &str, file: &Path) -> Result<Run> {
    let script = format!(
        "BEGIN;
{upsert}
DELETE FROM node_rows n WHERE n.group_id = '{group}' AND n.domain_id = '{DOMAIN}'
  AND NOT EXISTS (SELECT FROM tmp WHERE tmp.user_id = n.reference_id);
COMMIT;
",
        upsert = upsert_script(file),
        group = ferry_actors::job::group_uuid(GROUP),
    );
    psql_timed(url, &script)
}

fn ferry_import(ferry: &str, url: &str, file: &Path, extra: &[&str]) -> Result<Run> {
    ferry_run(ferry, url, file.to_str().unwrap(), extra, &[])
}
