//! Benchmark: `ferry export` of `nodes` (1M rows, the 9 metadata keys as
//! columns, ordered by `created_at`) against what a data engineer would
//! script, on the same server, in the same run. Every baseline runs the
//! very query ferry runs (ferry's plan, its bind parameters written in as
//! literals), selecting the fields alone as a hand-written query would (not
//! the positions ferry reads to resume), so the ratios measure ferry's
//! pipeline:
//!
//! - PostgreSQL's limit: `COPY (query) TO STDOUT` into /dev/null;
//! - CSV.gz: `psql \copy (query) TO STDOUT CSV HEADER | gzip -1`;
//! - the two-backend limit: the query's two halves (split at the median
//!   `created_at`), each `COPY | gzip -1`, at once;
//! - CSV.gz and JSONL.gz again with `exports.readers = 1`, to show what
//!   the readers gain;
//! - JSONL.gz: `COPY (SELECT row_to_json(t) FROM (query) t) | gzip -1`;
//! - Parquet (zstd): connectorx + pyarrow (a virtualenv made once under
//!   `~/.cache/ferry/bench-venv`), with its peak RSS;
//! - CSV.gz to S3 (s3s-fs), and an export in primary-key order only;
//! - seed 000's scheduled users export of the group (`ferry export users
//!   --now`), COST_BASED and NON_COST_BASED, against `psql \copy | gzip -1`
//!   plus the `UPDATE` that marks the users sent (on a copy of the group
//!   with the old `processed` flag), the next run after 10 users changed,
//!   and the tables' size after 5 runs;
//! - CSV.gz against `psql | gzip -1`, and peak RSS, at
//!   `FERRY_BENCH_BIG_ROWS` (default 5M) rows, `FERRY_BENCH_BIG_RUNS`
//!   (default 1) runs each.
//!
//! Each pair runs `FERRY_BENCH_RUNS` times (default 3), alternating; the
//! table shows medians. `FERRY_BENCH_ROWS` sets the size (default 1M);
//! `FERRY_BENCH_CASES=users` runs only the users export's cases.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{check, psql_value, vm_hwm_kib, DOMAIN, GROUP};
use ferry::localpg::{LocalPostgres, Tuning};
use ferry::locals3::LocalS3;
use ferry::report::grouped;
use ferry::sample;
use ferry_actors::export::object::Catalog;
use ferry_actors::export::plan::{Param, Plan};
use ferry_actors::export::{Compression, Destination, ExportSpec, Format};
use ferry_actors::settings::ExportSettings;

struct Timed {
    secs: f64,
    peak_kib: Option<u64>,
}

/// One line of the table: ferry's runs, and a baseline's.
struct Case {
    name: String,
    rows: u64,
    baseline: Option<(String, Vec<Timed>)>,
    ferry: Vec<Timed>,
}

fn case(name: &str, rows: u64, baseline: Option<(&str, Vec<Timed>)>, ferry: Vec<Timed>) -> Case {
    Case {
        name: name.into(),
        rows,
        baseline: baseline.map(|(n, runs)| (n.to_string(), runs)),
        ferry,
    }
}

fn main() -> Result<()> {
    let rows: u64 = env_num("FERRY_BENCH_ROWS", 1_000_000);
    let big: u64 = env_num("FERRY_BENCH_BIG_ROWS", 5_000_000);
    let runs: usize = env_num("FERRY_BENCH_RUNS", 3) as usize;
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-export");
    std::fs::create_dir_all(&work)?;
    let pg = LocalPostgres::start(Tuning { durable: true })?;
    let url = pg.url();
    let ferry = env!("CARGO_BIN_EXE_ferry");
    check(Command::new(ferry).arg("migrate").env("DATABASE_URL", &url))?;
    load(ferry, &url, &work, rows)?;
    let fields: Vec<String> = std::iter::once("reference_id".to_string())
        .chain(
            sample::USER_METADATA_KEYS
                .iter()
                .map(|k| format!("metadata.{k}")),
        )
        .collect();
    let query = fields_only(
        &literal_query(&url, &fields, Some("created_at"), None)?,
        &fields,
    );
    let pk_query = fields_only(&literal_query(&url, &fields, Some("id"), None)?, &fields);
    eprintln!("the baselines run ferry's query, values inlined: {query}");
    let python = python_with_connectorx()?;
    let out = |name: &str| work.join(name);
    let fields = fields.join(",");
    // `readers`: exports.readers ("0": the default); `s3`: the store's
    // environment, for an export to S3 instead of a local file.
    let ferry_export_with = |format: &str,
                             compression: &str,
                             file: &Path,
                             order: &str,
                             readers: &str,
                             s3: &[(String, String)]| {
        let mut args = vec![
            "export",
            "node",
            "--domain",
            DOMAIN,
            "--fields",
            &fields,
            "--order",
            order,
            "--format",
            format,
            "--compression",
            compression,
            "--json",
        ];
        let target = match s3 {
            [] => file.to_str().unwrap().to_string(),
            _ => format!("s3://bench/{}", file.file_name().unwrap().to_str().unwrap()),
        };
        args.extend(["--out", &target]);
        timed(
            Command::new(ferry)
                .args(&args)
                .env("DATABASE_URL", &url)
                .env("FERRY__EXPORTS__READERS", readers)
                .envs(s3.iter().cloned())
                .env("RUST_LOG", "warn"),
        )
    };
    let ferry_export = |format: &str, compression: &str, file: &Path, order: &str| {
        ferry_export_with(format, compression, file, order, "0", &[])
    };

    // The baseline a user would write: `psql \copy (query) | gzip -1`.
    let psql_csv_gz = |query: &str, file: &str| {
        sh(&format!(
            "psql -X -q '{url}' -c \"\\copy ({}) TO STDOUT WITH CSV HEADER\" | gzip -1 > {}",
            escape(query),
            out(file).display()
        ))
    };
    let mut table: Vec<Case> = Vec::new();
    let cases = std::env::var("FERRY_BENCH_CASES").unwrap_or_else(|_| "formats,users".into());
    if !cases.contains("formats") {
        table.extend(users_export(ferry, &url, &work, rows, runs)?);
        print(&table);
        return Ok(());
    }
    let limit = repeat(runs, || {
        sh(&format!(
            "psql -X -q '{url}' -c \"COPY ({}) TO STDOUT\" > /dev/null",
            escape(&query)
        ))
    })?;
    table.push(case(
        "PostgreSQL's limit: COPY (query) TO STDOUT > /dev/null",
        rows,
        None,
        limit,
    ));

    let (psql_csv, ferry_csv) = alternate(
        runs,
        || psql_csv_gz(&query, "psql.csv.gz"),
        || ferry_export("csv", "gzip", &out("ferry.csv.gz"), "created_at"),
    )?;
    table.push(case(
        "CSV.gz",
        rows,
        Some(("psql \\copy | gzip -1", psql_csv)),
        ferry_csv,
    ));

    // Two backends at once, each half of the rows (split at the median
    // `created_at`), each `COPY | gzip -1`: what two connections on this
    // machine can do at most with gzip -1.
    let median = psql_value(
        &url,
        &format!(
            "SELECT created_at FROM node_rows WHERE domain_id = '{DOMAIN}'
             ORDER BY created_at OFFSET {} LIMIT 1",
            rows / 2
        ),
    )?;
    let half = |cmp: &str| {
        query.replacen(
            " ORDER BY ",
            &format!(" AND t.\"created_at\" {cmp} '{median}' ORDER BY "),
            1,
        )
    };
    let (first_half, second_half) = (half("<="), half(">"));
    let (two_backends, ferry_csv2) = alternate(
        runs,
        || {
            sh(&format!(
                "psql -X -q '{url}' -c \"COPY ({}) TO STDOUT\" | gzip -1 > {} & \
                 psql -X -q '{url}' -c \"COPY ({}) TO STDOUT\" | gzip -1 > {}; wait",
                escape(&first_half),
                out("half1.csv.gz").display(),
                escape(&second_half),
                out("half2.csv.gz").display()
            ))
        },
        || ferry_export("csv", "gzip", &out("ferry.csv.gz"), "created_at"),
    )?;
    table.push(case(
        "CSV.gz vs the two-backend limit",
        rows,
        Some(("two halves at once, each COPY | gzip -1", two_backends)),
        ferry_csv2,
    ));
    let one_reader = |format: &'static str, file: &'static str| {
        move || ferry_export_with(format, "gzip", &out(file), "created_at", "1", &[])
    };
    let (psql_csv1, ferry_csv1) = alternate(
        runs,
        || psql_csv_gz(&query, "psql.csv.gz"),
        one_reader("csv", "ferry-1.csv.gz"),
    )?;
    table.push(case(
        "CSV.gz, one reader (exports.readers = 1)",
        rows,
        Some(("psql \\copy | gzip -1", psql_csv1)),
        ferry_csv1,
    ));

    let (psql_jsonl, ferry_jsonl) = alternate(
        runs,
        || {
            sh(&format!("psql -X -q '{url}' -c \"COPY (SELECT row_to_json(t) FROM ({}) t) TO STDOUT\" | gzip -1 > {}", escape(&query), out("psql.jsonl.gz").display()))
        },
        || ferry_export("jsonl", "gzip", &out("ferry.jsonl.gz"), "created_at"),
    )?;
    table.push(case(
        "JSONL.gz",
        rows,
        Some(("psql row_to_json | gzip -1", psql_jsonl)),
        ferry_jsonl,
    ));
    let (psql_jsonl1, ferry_jsonl1) = alternate(
        runs,
        || {
            sh(&format!("psql -X -q '{url}' -c \"COPY (SELECT row_to_json(t) FROM ({}) t) TO STDOUT\" | gzip -1 > {}", escape(&query), out("psql.jsonl.gz").display()))
        },
        one_reader("jsonl", "ferry-1.jsonl.gz"),
    )?;
    table.push(case(
        "JSONL.gz, one reader (exports.readers = 1)",
        rows,
        Some(("psql row_to_json | gzip -1", psql_jsonl1)),
        ferry_jsonl1,
    ));

    let script = work.join("connectorx_parquet.py");
    std::fs::write(
        &script,
        "import sys, connectorx as cx, pyarrow.parquet as pq\n\
         t = cx.read_sql(sys.argv[1], sys.argv[2], return_type='arrow')\n\
         pq.write_table(t, sys.argv[3], compression='zstd')\n",
    )?;
    let (cx, ferry_parquet) = alternate(
        runs,
        || {
            timed(
                Command::new(&python)
                    .arg(&script)
                    .arg(url.replace("postgres://", "postgresql://"))
                    .arg(&query)
                    .arg(out("cx.parquet")),
            )
        },
        || ferry_export("parquet", "zstd", &out("ferry.parquet"), "created_at"),
    )?;
    table.push(case(
        "Parquet (zstd)",
        rows,
        Some(("connectorx + pyarrow", cx)),
        ferry_parquet,
    ));

    let s3 = LocalS3::start()?;
    let s3_env = s3.env();
    let (psql_csv2, ferry_s3) = alternate(
        runs,
        || psql_csv_gz(&query, "psql.csv.gz"),
        || {
            ferry_export_with(
                "csv",
                "gzip",
                &out("ferry-s3.csv.gz"),
                "created_at",
                "0",
                &s3_env,
            )
        },
    )?;
    table.push(case(
        "CSV.gz to S3 (s3s-fs)",
        rows,
        Some(("psql \\copy | gzip -1, local", psql_csv2)),
        ferry_s3,
    ));

    let (psql_pk, ferry_pk) = alternate(
        runs,
        || psql_csv_gz(&pk_query, "psql-pk.csv.gz"),
        || ferry_export("csv", "gzip", &out("ferry-pk.csv.gz"), "id"),
    )?;
    table.push(case(
        "CSV.gz, primary-key order only",
        rows,
        Some(("psql \\copy | gzip -1", psql_pk)),
        ferry_pk,
    ));

    if cases.contains("users") {
        table.extend(users_export(ferry, &url, &work, rows, runs)?);
    }

    if big > rows {
        load(ferry, &url, &work, big)?;
        let big_runs = env_num("FERRY_BENCH_BIG_RUNS", 1) as usize;
        let (psql_big, ferry_big) = alternate(
            big_runs,
            || psql_csv_gz(&query, "psql-big.csv.gz"),
            || ferry_export("csv", "gzip", &out("ferry-big.csv.gz"), "created_at"),
        )?;
        table.push(case(
            "CSV.gz at scale (and its peak RSS)",
            big,
            Some(("psql \\copy | gzip -1", psql_big)),
            ferry_big,
        ));
    }
    print(&table);
    drop(s3);
    drop(pg);
    Ok(())
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The hand-written users export's table: the loaded group as `nodes`
/// was before the watermark (a `processed` flag, the three indexes).
const LEGACY: &str = "DROP TABLE IF EXISTS legacy_nodes;
CREATE TABLE legacy_nodes (
    id uuid PRIMARY KEY, reference_id varchar(255) NOT NULL, group_id uuid NOT NULL,
    type varchar(50) NOT NULL, domain_id uuid NOT NULL, processed boolean NOT NULL DEFAULT false,
    metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz, UNIQUE (group_id, domain_id, reference_id));
INSERT INTO legacy_nodes SELECT id, reference_id, group_id, type, domain_id, false, metadata,
    created_at, updated_at FROM node_rows;
CREATE INDEX ON legacy_nodes (domain_id, created_at, id);
VACUUM ANALYZE legacy_nodes; CHECKPOINT;";

/// Seed 000's users export of the loaded group, against the hand-written
/// path on [`LEGACY`] (the same rows through `psql \copy | gzip -1`, then
/// one `UPDATE` marking them sent), in the same run:
///
/// - COST_BASED, every user unsent (ferry's group reset before each run,
///   the flags set back and vacuumed for the hand-written one): tick to
///   message;
/// - the next run after 10 users changed through SQL: tick to message,
///   and the rows its query reads (`EXPLAIN (ANALYZE, BUFFERS)`);
/// - NON_COST_BASED, every user unsent: tick to its last message, against
///   `psql \copy (SELECT reference_id …)` and the same `UPDATE`;
/// - the table's and its indexes' size after 5 runs of each.
fn users_export(ferry: &str, url: &str, work: &Path, rows: u64, runs: usize) -> Result<Vec<Case>> {
    let group = ferry_actors::job::group_uuid(GROUP);
    let mut keys = sample::USER_METADATA_KEYS.to_vec();
    keys.sort();
    let columns: Vec<String> = keys
        .iter()
        .map(|k| format!("metadata->>'{k}' AS {k}"))
        .collect();
    let unsent = format!("domain_id = '{DOMAIN}' AND group_id = '{group}' AND NOT processed");
    let mark =
        format!("UPDATE legacy_nodes SET processed = true, updated_at = now() WHERE {unsent}");
    let hand_written = |select: &str, out: &str| {
        sh(&format!(
            "psql -X -q '{url}' -c \"\\copy (SELECT {select} FROM legacy_nodes WHERE {} ORDER BY reference_id) TO STDOUT WITH CSV HEADER\" | gzip -1 > {} \
             && psql -X -q '{url}' -c \"{}\"",
            escape(&unsent),
            work.join(out).display(),
            escape(&mark)
        ))
    };
    let unsend_legacy = || {
        common::psql(
            url,
            "UPDATE legacy_nodes SET processed = false; VACUUM ANALYZE legacy_nodes;",
        )
    };
    let groups = |args: &[&str]| {
        check(
            Command::new(ferry)
                .arg("groups")
                .args(args)
                .args([GROUP, "--domain", DOMAIN])
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn"),
        )
    };
    let local_dir = work.join("users-exports");
    let export = || {
        timed(
            Command::new(ferry)
                .args([
                    "export", "users", "--now", "--domain", DOMAIN, "--group", GROUP,
                ])
                .env("DATABASE_URL", url)
                .env("FERRY__EXPORTS__LOCAL_DIR", &local_dir)
                .env("RUST_LOG", "warn"),
        )
    };
    let reset_and_export = || {
        groups(&["reset"])?;
        export()
    };
    common::psql(url, LEGACY)?;
    let sizes = Sizes::read(url)?;

    groups(&["set", "--type", "cost-based"])?;
    let (psql, cost) = alternate(
        runs,
        || {
            unsend_legacy()?;
            let mut select = vec!["reference_id".to_string()];
            select.extend(columns.iter().cloned());
            hand_written(&select.join(", "), "psql-users.csv.gz")
        },
        reset_and_export,
    )?;

    // The next night: 10 users changed by another tool, through SQL.
    let mut changed = Vec::new();
    let mut psql_changed = Vec::new();
    for run in 0..runs.max(1) {
        let ten = format!(
            "(SELECT id FROM node_rows WHERE group_id = '{group}' ORDER BY id OFFSET {} LIMIT 10)",
            run * 1000 + 17
        );
        common::psql(
            url,
            &format!(
                "UPDATE nodes SET metadata = metadata || '{{\"city\": \"moved-{run}\"}}' WHERE id IN {ten};
                 UPDATE legacy_nodes SET processed = false WHERE id IN {ten};
                 CHECKPOINT;"
            ),
        )?;
        let mut select = vec!["reference_id".to_string()];
        select.extend(columns.iter().cloned());
        psql_changed.push(hand_written(&select.join(", "), "psql-users.csv.gz")?);
        if run + 1 == runs.max(1) {
            explain_unsent(url, group)?;
        }
        common::psql(url, "CHECKPOINT")?;
        let process = export()?;
        changed.push(Timed {
            secs: tick_to_message(url)?,
            ..process
        });
    }

    groups(&["set", "--type", "non-cost-based"])?;
    let (psql_refs, refs) = alternate(
        runs,
        || {
            unsend_legacy()?;
            hand_written("reference_id", "psql-refs.csv.gz")
        },
        reset_and_export,
    )?;

    // Five nights of the whole group, each way.
    groups(&["set", "--type", "cost-based"])?;
    let before = Sizes::read(url)?;
    for _ in 0..5 {
        unsend_legacy()?;
        hand_written("reference_id", "psql-refs.csv.gz")?;
        reset_and_export()?;
    }
    let after = Sizes::read(url)?;
    println!();
    println!(
        "| after 5 runs of {} users | table + indexes before | after |",
        grouped(rows as i64)
    );
    println!("|---|---:|---:|");
    println!(
        "| ferry (`node_rows`, watermark) | {} | {} |",
        before.ferry, after.ferry
    );
    println!(
        "| hand-written (`legacy_nodes`, flag) | {} | {} |",
        before.legacy, after.legacy
    );
    println!(
        "(at load: ferry {}, hand-written {})",
        sizes.ferry, sizes.legacy
    );
    Ok(vec![
        case(
            "users export, COST_BASED group: tick to message",
            rows,
            Some(("psql \\copy | gzip -1, then UPDATE … SET processed", psql)),
            cost,
        ),
        case(
            "users export, the next run after 10 users changed: tick to message (the script: start to end)",
            10,
            Some(("the same script, 10 flagged", psql_changed)),
            changed,
        ),
        case(
            "users export, NON_COST_BASED group: tick to last message",
            rows,
            Some((
                "psql \\copy (SELECT reference_id …), then UPDATE",
                psql_refs,
            )),
            refs,
        ),
    ])
}

/// The last users run's time from its tick (the run's row, made when the
/// tick starts; `fire_at` is the schedule's second) to its export's end
/// (the message is written in that statement).
fn tick_to_message(url: &str) -> Result<f64> {
    let out = psql_value(
        url,
        "SELECT extract(epoch FROM j.finished_at - r.created_at)
         FROM export_runs r JOIN jobs j ON j.spec -> 'users' ->> 'run_id' = r.id::text
         ORDER BY r.fire_at DESC LIMIT 1",
    )?;
    out.parse()
        .with_context(|| format!("tick to message: {out}"))
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the unsent users' query, as ferry runs
/// it (its plan, values inlined), printed to stderr.
fn explain_unsent(url: &str, group: uuid::Uuid) -> Result<()> {
    let query = literal_query(
        url,
        &["reference_id".into()],
        Some("reference_id"),
        Some(group),
    )?;
    let out = Command::new("psql")
        .args(["-X", "-q", url, "-c"])
        .arg(format!("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) {query}"))
        .output()?;
    eprintln!(
        "the next run's query: {query}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

/// `pg_total_relation_size` of both users tables.
struct Sizes {
    ferry: String,
    legacy: String,
}

impl Sizes {
    fn read(url: &str) -> Result<Self> {
        let size = |t: &str| {
            psql_value(
                url,
                &format!("SELECT pg_size_pretty(pg_total_relation_size('{t}'))"),
            )
        };
        Ok(Self {
            ferry: size("node_rows")?,
            legacy: size("legacy_nodes")?,
        })
    }
}

/// One value a query returns, as text.
/// Loads `rows` sample users into the bench domain (replacing what was there).
fn load(ferry: &str, url: &str, work: &Path, rows: u64) -> Result<()> {
    let file = work.join(format!("users-{rows}.csv.gz"));
    if !file.exists() {
        eprintln!(
            "generating {} rows → {}",
            grouped(rows as i64),
            file.display()
        );
        sample::write_users_csv_gz(&file, rows, 2024)?;
    }
    common::psql(url, "TRUNCATE node_rows")?;
    eprintln!("loading {} rows…", grouped(rows as i64));
    check(
        Command::new(ferry)
            .args([
                "import",
                file.to_str().unwrap(),
                "--domain",
                DOMAIN,
                "--group",
                GROUP,
                "--json",
            ])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn"),
    )?;
    common::psql(url, "VACUUM ANALYZE node_rows; CHECKPOINT;")
}

/// ferry's own query for the export, its parameters written in as
/// literals, so psql and connectorx run exactly what ferry runs.
fn literal_query(
    url: &str,
    fields: &[String],
    order: Option<&str>,
    unsent_of: Option<uuid::Uuid>,
) -> Result<String> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let settings = ExportSettings::default();
        let catalog = Catalog::load(&client, &settings).await?;
        let spec = ExportSpec {
            object: "node".into(),
            fields: fields.to_vec(),
            order: order.map(String::from),
            filters: None,
            format: Format::Csv,
            compression: Compression::Gzip,
            destination: Destination::Local {
                path: "/dev/null".into(),
            },
            user_id: None,
            webhook_url: None,
            channel: "API".into(),
            bare_metadata_names: false,
            unsent_of,
        };
        let plan = Plan::new(
            catalog.get("node").unwrap(),
            &spec,
            DOMAIN.parse()?,
            &settings,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (mut sql, params) = plan.query(None);
        // From the highest number down, so `$1` does not eat `$10`.
        for (i, p) in params.params.iter().enumerate().rev() {
            let literal = match p {
                Param::Uuid(u) => format!("'{u}'"),
                Param::Text(t) => format!("'{}'", t.replace('\'', "''")),
                Param::Texts(_) => bail!("no list parameters in the bench query"),
            };
            sql = sql.replace(&format!("${}", i + 1), &literal);
        }
        Ok(sql)
    })
}

/// The query's fields alone, named as ferry names them: what a hand-written
/// query selects. ferry's own query also selects each row's position (its
/// order key and primary key, as text) to resume after a crash; a baseline
/// that wrote those out too would do more work than a user's one-liner.
fn fields_only(query: &str, fields: &[String]) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect();
    let names = names.join(", ");
    format!("SELECT {names} FROM ({query}) q({names})")
}

/// A virtualenv with connectorx and pyarrow, made once.
fn python_with_connectorx() -> Result<PathBuf> {
    let venv = PathBuf::from(std::env::var("HOME")?).join(".cache/ferry/bench-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import connectorx, pyarrow"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("installing connectorx and pyarrow into {}…", venv.display());
        check(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        check(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "connectorx==0.4.3",
            "pyarrow",
        ]))?;
    }
    Ok(python)
}

/// `"` and `\` escaped for a shell double-quoted string.
fn escape(sql: &str) -> String {
    sql.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
}

fn sh(script: &str) -> Result<Timed> {
    timed(Command::new("bash").args(["-o", "pipefail", "-c", script]))
}

/// Runs a command, sampling its peak RSS (VmHWM) until it exits.
fn timed(cmd: &mut Command) -> Result<Timed> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn().context("spawn")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(Timed {
        secs: started.elapsed().as_secs_f64(),
        peak_kib: Some(peak),
    })
}

fn repeat(runs: usize, mut f: impl FnMut() -> Result<Timed>) -> Result<Vec<Timed>> {
    (0..runs.max(1)).map(|_| f()).collect()
}

/// `runs` of each, alternating, so drift on the machine hits both alike.
fn alternate(
    runs: usize,
    mut baseline: impl FnMut() -> Result<Timed>,
    mut ferry: impl FnMut() -> Result<Timed>,
) -> Result<(Vec<Timed>, Vec<Timed>)> {
    let (mut b, mut f) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        b.push(baseline()?);
        f.push(ferry()?);
    }
    Ok((b, f))
}

fn median(runs: &[Timed]) -> (f64, f64, f64) {
    let mut secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
    secs.sort_by(f64::total_cmp);
    (secs[secs.len() / 2], secs[0], secs[secs.len() - 1])
}

fn peak(runs: &[Timed]) -> String {
    runs.iter()
        .filter_map(|r| r.peak_kib)
        .max()
        .map_or("-".into(), |k| format!("{} MiB", k / 1024))
}

fn print(table: &[Case]) {
    println!();
    println!("| case | rows | baseline | baseline s (median, min–max) | ferry s (median, min–max) | ferry rows/s | speed-up (baseline s / ferry s) | ferry peak RSS | baseline peak RSS |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let limit = table
        .first()
        .filter(|c| c.name.starts_with("PostgreSQL"))
        .map(|c| median(&c.ferry).0);
    for Case {
        name: case,
        rows,
        baseline,
        ferry,
    } in table
    {
        let (f, fmin, fmax) = median(ferry);
        let (name, b, ratio, bpeak) = match baseline {
            Some((name, runs)) => {
                let (b, bmin, bmax) = median(runs);
                (
                    name.clone(),
                    format!("{b:.2} ({bmin:.2}–{bmax:.2})"),
                    format!("{:.2}x", b / f),
                    peak(runs),
                )
            }
            None if case.starts_with("PostgreSQL") => {
                ("-".into(), "-".into(), "1.00x".into(), "-".into())
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {case} | {} | {name} | {b} | {f:.2} ({fmin:.2}–{fmax:.2}) | {} | {ratio} | {} | {bpeak} |",
            grouped(*rows),
            grouped((*rows as f64 / f) as i64),
            if case.starts_with("PostgreSQL") { "-".into() } else { peak(ferry) },
        );
    }
    if let Some(limit) = limit {
        println!();
        println!(
            "ferry's CSV.gz time is {:.0}% over PostgreSQL's limit (COPY … TO STDOUT into /dev/null).",
            (median(&table[1].ferry).0 / limit - 1.0) * 100.0
        );
    }
}
