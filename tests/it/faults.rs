//! Real faults mid-job: CopyWriter connections terminated by the server
//! (`pg_terminate_backend`). The job must still end with exactly the rows
//! of a clean run, whether the writer retried on a new connection or the
//! whole pipeline restarted from its checkpoint.

use std::process::Stdio;
use std::time::Duration;

use ferry::sample;
use serde_json::Value;

use crate::harness::{metric, TestDb, DOMAIN};

const ROWS: u64 = 200_000;

/// Runs an import and terminates up to `kills` CopyWriter sessions while it
/// runs; returns the report, the exit code and how many were terminated.
async fn import_with_kills(
    db: &TestDb,
    file: &str,
    group: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    kills: usize,
) -> (Value, i32, usize) {
    let mut args = vec![
        "import",
        file,
        "--domain",
        DOMAIN,
        "--group",
        group,
        "--json",
        "--batch-rows",
        "2000",
    ];
    args.extend_from_slice(extra);
    let child = db
        .command(&args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let output = tokio::spawn(child.wait_with_output());
    let admin = db.client().await;
    let mut killed = 0;
    while killed < kills && !output.is_finished() {
        let n: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM (
                     SELECT pid FROM pg_stat_activity
                     WHERE application_name = 'ferry-copy-writer' AND state = 'active'
                       AND (query LIKE 'COPY%' OR query LIKE 'WITH up%')
                       AND datname = current_database() LIMIT 1) w",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        killed += n as usize;
        // Let the job move on between kills, so they hit different batches.
        let pause = if n > 0 { 300 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let out = output.await.unwrap().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, code, killed)
}

#[tokio::test]
async fn copy_writers_killed_mid_job_still_give_the_exact_row_set() {
    let db = TestDb::new().await;
    let file = db.path("users.csv.gz");
    sample::write_users_csv_gz(&file, ROWS, 11).unwrap();
    let path = file.to_str().unwrap();
    let (clean, code) = db.import(&file, "control", &[], &[]).await;
    assert_eq!(code, 0, "{clean}");
    let want = db.digest("control").await;

    kill_writers_in_every_mode(&db, path, Table::Nodes, &want).await;
}

/// The same faults while match suggestions load from Parquet.
#[tokio::test]
async fn copy_writers_killed_mid_parquet_job_still_give_the_exact_row_set() {
    let db = TestDb::new().await;
    let file = db.path("matches.parquet");
    sample::write_matches_parquet(&file, ROWS, 20_000, 11).unwrap();
    let path = file.to_str().unwrap();
    let (clean, code) = db.import_matches(path, "control", &[], &[]).await;
    assert_eq!(code, 0, "{clean}");
    let want = db.match_digest("control").await;
    kill_writers_in_every_mode(&db, path, Table::Matches, &want).await;
}

#[derive(Clone, Copy)]
enum Table {
    Nodes,
    Matches,
}

impl Table {
    async fn count(self, db: &TestDb, group: &str) -> i64 {
        match self {
            Self::Nodes => db.count(group).await,
            Self::Matches => db.match_count(group).await,
        }
    }

    async fn digest(self, db: &TestDb, group: &str) -> String {
        match self {
            Self::Nodes => db.digest(group).await,
            Self::Matches => db.match_digest(group).await,
        }
    }

    fn target(self) -> &'static str {
        match self {
            Self::Nodes => "nodes",
            Self::Matches => "matches",
        }
    }
}

/// Imports `path` four ways (upsert or fast path; writer retry or pipeline
/// restart), terminating writer sessions mid-batch; each must end with the
/// row set `want`.
async fn kill_writers_in_every_mode(db: &TestDb, path: &str, table: Table, want: &str) {
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        // The writer retries the batch on a new connection.
        ("upsert-retry", &["--no-fast-path"], &[]),
        ("fast-retry", &[], &[]),
        // One attempt per batch: the pipeline restarts from its checkpoint.
        (
            "upsert-restart",
            &["--no-fast-path"],
            &[("FERRY__RETRY__BATCH_ATTEMPTS", "1")],
        ),
        (
            "fast-restart",
            &[],
            &[("FERRY__RETRY__BATCH_ATTEMPTS", "1")],
        ),
    ];
    for (group, extra, env) in cases {
        let prom = db.path(&format!("{group}.prom"));
        let mut extra = extra.to_vec();
        extra.extend(["--target", table.target()]);
        extra.extend(["--metrics-textfile", prom.to_str().unwrap()]);
        let (r, code, killed) = import_with_kills(db, path, group, &extra, env, 2).await;
        assert!(killed >= 1, "{group}: no writer was caught mid-batch");
        assert_eq!(code, 0, "{group}: {r}");
        assert_eq!(r["status"], "COMPLETED", "{group}");
        assert_eq!(r["rowsRead"], ROWS, "{group}");
        let loaded = r["inserted"].as_u64().unwrap()
            + r["updated"].as_u64().unwrap()
            + r["unchanged"].as_u64().unwrap()
            + r["duplicates"].as_u64().unwrap();
        assert_eq!(loaded, ROWS, "{group}: every row accounted for: {r}");
        assert_eq!(table.count(db, group).await, ROWS as i64, "{group}");
        assert_eq!(
            table.digest(db, group).await,
            want,
            "{group}: the row set differs from a clean run"
        );
        if group.ends_with("restart") {
            let attempts = r["attempts"].as_i64().unwrap();
            assert!(attempts >= 2, "{group}: the pipeline restarted: {r}");
            let prom = std::fs::read_to_string(db.path(&format!("{group}.prom"))).unwrap();
            let restarts = metric(&prom, r#"ferry_actor_restarts_total{actor="copy_writer"}"#);
            assert!(restarts >= Some(1.0), "{group}: restarts counted: {prom}");
        }
    }
}

#[tokio::test]
async fn a_job_fails_with_the_reason_when_restarts_run_out() {
    let db = TestDb::new().await;
    let file = db.path("users.csv.gz");
    sample::write_users_csv_gz(&file, ROWS, 3).unwrap();
    let env = [
        ("FERRY__RETRY__BATCH_ATTEMPTS", "1"),
        ("FERRY__RETRY__MAX_RESTARTS", "0"),
    ];
    let (r, code, killed) = import_with_kills(
        &db,
        file.to_str().unwrap(),
        "doomed",
        &["--no-fast-path"],
        &env,
        1,
    )
    .await;
    assert_eq!(killed, 1);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "FAILED");
    let reason = r["failureReason"].as_str().unwrap();
    assert!(reason.starts_with("copy_writer failed: batch "), "{reason}");
    // The job row counts what its checkpoint covers; batches committed past
    // it are in the table too, so the table holds at least that.
    let inserted = r["inserted"].as_i64().unwrap();
    assert!(inserted < ROWS as i64, "{r}");
    assert!(db.count("doomed").await >= inserted);
}
