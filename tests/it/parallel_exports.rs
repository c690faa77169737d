//! Exports read by several connections at once (`exports.readers`), each
//! a range of the order key in one snapshot: the files hold what one
//! reader's hold, row for row and in order, in every text format; a
//! reader killed mid-range and a process killed mid-file cost no row.

use serde_json::Value;

use crate::exports::{
    expected_jsonl_rows, expected_nodes_in, jsonl_export, jsonl_rows, loaded, reaches, read_back,
    rows_of, FIELDS,
};
use crate::harness::{TestDb, DOMAIN};

/// `ferry export node … --json` with `env`: the report, and how many
/// ranges the log says the rows were read in (0: one reader).
async fn export_in_ranges(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (Value, usize) {
    let mut all = vec!["export", "node", "--domain", DOMAIN, "--json"];
    all.extend_from_slice(args);
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "ferry_actors=info"));
    let out = db.ferry(&all, &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{all:?}: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ranges = stderr
        .lines()
        .filter(|l| l.contains("Export reading in ranges."))
        .filter_map(|l| {
            l.split("ranges=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0);
    (serde_json::from_slice(&out.stdout).unwrap(), ranges)
}

const READERS: [(&str, &str); 2] = [
    ("FERRY__EXPORTS__READERS", "3"),
    ("FERRY__EXPORTS__RANGE_ROWS", "700"),
];

#[tokio::test(flavor = "multi_thread")]
async fn several_readers_write_the_rows_one_reader_writes_in_its_order() {
    let db = TestDb::new().await;
    loaded(&db, 6_000).await;
    // More distinct times than the import's batches give, so that ranges
    // of `created_at` cut between rows of one batch too.
    db.client()
        .await
        .batch_execute(&format!(
            "UPDATE node_rows
             SET created_at = created_at + make_interval(secs => abs(hashtext(reference_id)) % 5000)
             WHERE domain_id = '{DOMAIN}'"
        ))
        .await
        .unwrap();
    for (format, compression, order, sql_order) in [
        ("csv", "gzip", "created_at", "created_at, id"),
        ("json", "zstd", "-created_at", "created_at DESC, id"),
        ("jsonl", "none", "id", "id"),
        ("csv", "none", "-id", "id DESC"),
    ] {
        let want = expected_nodes_in(&db, sql_order).await;
        assert_eq!(want.len(), 6_000);
        let mut files = Vec::new();
        for readers in ["1", "3"] {
            let ext = match compression {
                "gzip" => ".gz",
                "zstd" => ".zst",
                _ => "",
            };
            let out = db.path(&format!("{readers}-{order}.{format}{ext}"));
            let env = [READERS[0], READERS[1], ("FERRY__EXPORTS__READERS", readers)];
            let args = [
                "--fields",
                FIELDS,
                "--order",
                order,
                "--format",
                format,
                "--compression",
                compression,
                "--out",
                out.to_str().unwrap(),
            ];
            let (r, ranges) = export_in_ranges(&db, &args, &env).await;
            let case = format!("{format}/{compression} by {order}, {readers} readers");
            match readers {
                "1" => assert_eq!(ranges, 0, "{case}"),
                _ => assert!(ranges >= 3, "{case}: read in {ranges} ranges"),
            }
            assert_eq!(r["rows"], 6_000, "{case}: {r}");
            assert_eq!(r["bytes"], std::fs::metadata(&out).unwrap().len(), "{case}");
            let bytes = read_back(&out);
            assert_eq!(
                rows_of(format, &bytes),
                want,
                "{case}: rows and their order"
            );
            files.push(bytes);
        }
        assert!(files[0] == files[1], "{format}: the same file either way");
    }
}

/// Four readers and three rows: most ranges are empty, and the file
/// still holds each row once.
#[tokio::test(flavor = "multi_thread")]
async fn more_readers_than_rows() {
    let db = TestDb::new().await;
    loaded(&db, 3).await;
    let want = expected_nodes_in(&db, "id").await;
    for format in ["csv", "json", "jsonl"] {
        let out = db.path(&format!("few.{format}.gz"));
        let env = [
            ("FERRY__EXPORTS__READERS", "4"),
            ("FERRY__EXPORTS__RANGE_ROWS", "1"),
        ];
        let args = [
            "--fields",
            FIELDS,
            "--order",
            "id",
            "--format",
            format,
            "--compression",
            "gzip",
            "--out",
            out.to_str().unwrap(),
        ];
        let (r, ranges) = export_in_ranges(&db, &args, &env).await;
        assert!(ranges >= 2, "{format}: {ranges} ranges");
        assert_eq!(r["rows"], 3, "{r}");
        assert_eq!(rows_of(format, &read_back(&out)), want, "{format}");
    }
}

/// A RangeReader's connection is killed mid-range: the attempt fails, the
/// next one goes on after the last stored part, and the file holds every
/// row once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_readers_connection_killed_mid_range_costs_no_row() {
    let db = TestDb::new().await;
    loaded(&db, 200_000).await;
    let out = db.path("killed.jsonl");
    let env = [
        ("FERRY__EXPORTS__READERS", "3"),
        ("FERRY__EXPORTS__RANGE_ROWS", "5000"),
        ("FERRY__EXPORTS__PART_BYTES", "5242880"),
        ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ("FERRY__EXPORTS__FETCH_ROWS", "200"),
        ("RUST_LOG", "ferry_actors=info"),
    ];
    let child = jsonl_export(&db, &out, &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stored = reaches(
        &db,
        "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE kind = 'export'",
        1,
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(stored > 0, "no part was stored");
    let killed: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'ferry-export-range' AND state <> 'idle'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        killed >= 1,
        "no reader was reading when the test killed one"
    );
    let done = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{log}");
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["rows"], 200_000, "{report}");
    let attempts: i32 = db
        .client()
        .await
        .query_one("SELECT attempts FROM jobs WHERE kind = 'export'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        attempts >= 2,
        "the kill failed an attempt: {attempts}\n{log}"
    );
    let resumed = log
        .lines()
        .filter(|l| l.contains("Export pipeline starting."))
        .any(|l| !l.contains("resume_rows=0 "));
    assert!(
        resumed,
        "the next attempt went on after a stored part\n{log}"
    );
    assert_eq!(
        jsonl_rows(&read_back(&out)),
        expected_jsonl_rows(&db).await,
        "every row once, in order"
    );
}
