//! Imports from a real S3 server (s3s-fs, SigV4 verified).

use std::time::Duration;

use ferry::sample;
use serde_json::Value;

use crate::harness::{metric, TestDb, DOMAIN};
use ferry::locals3::LocalS3;

async fn import_uri(
    db: &TestDb,
    s3: &LocalS3,
    uri: &str,
    group: &str,
    extra_env: &[(&str, &str)],
) -> (Value, i32) {
    let s3_env = s3.env();
    let mut env: Vec<(&str, &str)> = s3_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend_from_slice(extra_env);
    db.import_source(uri, group, &[], &env).await
}

fn reason(r: &Value) -> &str {
    r["failureReason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn csv_gz_from_s3_by_s3_url_and_by_the_seeds_http_url() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    let file = db.path("users.csv.gz");
    sample::write_users_csv_gz(&file, 10_000, 9).unwrap();
    put(
        &s3,
        "imports",
        "daily/users 2024.csv.gz",
        std::fs::read(&file).unwrap(),
    )
    .await;

    let (r, code) = import_uri(
        &db,
        &s3,
        "s3://imports/daily/users 2024.csv.gz",
        "by-s3",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["inserted"], 10_000);
    // Seed 004's filePath: http://minio:9000/bucket/file.csv.gz, key URL-encoded.
    let url = format!("{}/imports/daily/users%202024.csv.gz", s3.endpoint());
    let (r, code) = import_uri(&db, &s3, &url, "by-http", &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(db.digest("by-s3").await, db.digest("by-http").await);
    assert_eq!(db.count("by-http").await, 10_000);
}

#[tokio::test]
async fn refused_hosts_missing_objects_and_wrong_keys_fail_clearly() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    put(&s3, "imports", "u.csv", b"id\na\n".to_vec()).await;

    let foreign = format!("http://127.0.0.2:{}/imports/u.csv", s3.port);
    let (r, code) = import_uri(&db, &s3, &foreign, "g", &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).contains("is not the storage endpoint"), "{r}");
    let (r, _) = import_uri(
        &db,
        &s3,
        "http://169.254.169.254/latest/meta-data",
        "g",
        &[],
    )
    .await;
    assert!(reason(&r).contains("is not the storage endpoint"), "{r}");

    let (r, code) = import_uri(&db, &s3, "s3://imports/nope.csv", "g", &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).contains("HTTP 404"), "{r}");

    let wrong = [("FERRY__STORAGE__SECRET_ACCESS_KEY", "not-the-secret")];
    let (r, code) = import_uri(&db, &s3, "s3://imports/u.csv", "g", &wrong).await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).contains("HTTP 403"), "{r}");
    assert_eq!(r["attempts"], 1, "a refused key is not retried: {r}");
}

#[tokio::test]
async fn rejects_of_an_object_are_written_beside_it() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    put(
        &s3,
        "imports",
        "in/u.csv",
        b"id,city\na,Pune\nb\nc,Delhi\n".to_vec(),
    )
    .await;
    let (r, code) = import_uri(&db, &s3, "s3://imports/in/u.csv", "g", &[]).await;
    assert_eq!(code, 1, "{r}");
    let job = r["jobId"].as_str().unwrap();
    let key = format!("in/rejects/{job}.csv");
    assert_eq!(r["rejectsPath"], format!("s3://imports/{key}"));
    let rejects = String::from_utf8(get(&s3, "imports", &key).await).unwrap();
    assert_eq!(
        rejects,
        "line,reason,id,city\n3,\"has 1 fields, expected 2\",b\n"
    );
}

const ROWS: u64 = 120_000;

/// The S3 server dies mid-download and comes back 500 ms later. With the
/// default attempts the download resumes with a range request at the byte
/// it reached. With one attempt the CsvReader fails instead, and the
/// pipeline restarts from its checkpoint. Either way the rows are exactly
/// those of a clean run, and a restart shows in the job row and the metric.
#[tokio::test]
async fn the_s3_server_killed_mid_download_still_gives_the_exact_row_set() {
    let db = TestDb::new().await;
    let mut s3 = LocalS3::start().unwrap();
    // The object must be far larger than what the kernel can hold in flight
    // on loopback (here tcp_rmem allows 32 MiB, plus 4 MiB to send), or the
    // whole body is already received when the server dies: 62 MB of plain
    // CSV, 120K rows of 512 random hex characters.
    let mut rng = sample::Rng::new(17);
    let mut csv = String::with_capacity(64 << 20);
    csv.push_str("id,blob\n");
    for i in 0..ROWS {
        csv.push_str(&format!("r{i},"));
        for _ in 0..32 {
            csv.push_str(&format!("{:016x}", rng.next_u64()));
        }
        csv.push('\n');
    }
    let file = db.path("big.csv");
    std::fs::write(&file, &csv).unwrap();
    drop(csv);
    put(&s3, "imports", "big.csv", std::fs::read(&file).unwrap()).await;
    let (clean, code) = db.import(&file, "clean", &[], &[]).await;
    assert_eq!(code, 0, "{clean}");
    let want = db.digest("clean").await;

    // Resumed inside the FileFetcher.
    let big = Crash::csv("resumed");
    let (r, log) = import_through_a_crash(&db, &mut s3, &big, &[]).await;
    assert!(log.contains("resuming with a range request"), "{r}\n{log}");
    assert_eq!(db.digest("resumed").await, want);

    // The reader fails; the pipeline restarts from its checkpoint.
    restart_through_a_crash(&db, &mut s3, &Crash::csv("restarted"), "csv_reader").await;
    assert_eq!(db.digest("restarted").await, want);
}

/// The same for Parquet, read by ranges: a range cut off mid-body resumes
/// in the FileFetcher; with one attempt the ParquetReader fails and resumes
/// at the checkpoint's row group and offset.
#[tokio::test]
async fn the_s3_server_killed_mid_parquet_read_still_gives_the_exact_row_set() {
    let db = TestDb::new().await;
    let mut s3 = LocalS3::start().unwrap();
    // 62 MB for the same reason as above: ids of 250 random hex characters.
    let mut rng = sample::Rng::new(19);
    let mut id = |i: u64| {
        let mut s = format!("{i:09}-");
        while s.len() < 250 {
            s.push_str(&format!("{:016x}", rng.next_u64()));
        }
        s.truncate(250);
        s
    };
    let n = ROWS as usize;
    let participants: Vec<String> = (0..ROWS).map(&mut id).collect();
    let matched: Vec<String> = (0..ROWS).map(&mut id).collect();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("participant_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new(
            "matched_participant_id",
            arrow_schema::DataType::Utf8,
            false,
        ),
        arrow_schema::Field::new(
            "compatibility_score",
            arrow_schema::DataType::Float64,
            false,
        ),
        arrow_schema::Field::new("rank", arrow_schema::DataType::Int32, false),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow_array::StringArray::from(participants)),
            std::sync::Arc::new(arrow_array::StringArray::from(matched)),
            std::sync::Arc::new(arrow_array::Float64Array::from(vec![0.5; n])),
            std::sync::Arc::new(arrow_array::Int32Array::from(vec![1; n])),
        ],
    )
    .unwrap();
    let file = db.path("big.parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(10_000))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&file).unwrap(),
        schema,
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    drop(batch);
    s3.put_file("imports", "big.parquet", &file).await.unwrap();
    let (clean, code) = db
        .import_matches(file.to_str().unwrap(), "clean", &[], &[])
        .await;
    assert_eq!(code, 0, "{clean}");
    let want = db.match_digest("clean").await;

    let (r, log) = import_through_a_crash(&db, &mut s3, &Crash::parquet("resumed"), &[]).await;
    assert!(log.contains("resuming with a range request"), "{r}\n{log}");
    assert_eq!(db.match_digest("resumed").await, want);

    let log =
        restart_through_a_crash(&db, &mut s3, &Crash::parquet("restarted"), "parquet_reader").await;
    // The second attempt started past the first row: at the checkpoint's
    // row group and offset, not at the top of the file.
    let resumed_mid_file = log
        .lines()
        .filter(|l| l.contains("Parquet file opened."))
        .any(|l| !l.contains("resume_row_group=0 resume_offset=0"));
    assert!(resumed_mid_file, "{log}");
    assert_eq!(db.match_digest("restarted").await, want);
}

/// The crash with one storage attempt: `actor`, the reader, fails and the
/// pipeline restarts from its checkpoint; the restart shows in the job row
/// and in `ferry_actor_restarts_total{actor}`. Returns ferry's log.
async fn restart_through_a_crash(
    db: &TestDb,
    s3: &mut LocalS3,
    crash: &Crash,
    actor: &str,
) -> String {
    let prom = db.path(&format!("{}.prom", crash.group));
    let prom_arg = prom.to_str().unwrap().to_string();
    let extra = [
        ("FERRY__STORAGE__MAX_ATTEMPTS", "1"),
        ("--metrics-textfile", prom_arg.as_str()),
    ];
    let (r, log) = import_through_a_crash(db, s3, crash, &extra).await;
    assert!(
        r["attempts"].as_i64() >= Some(2),
        "the pipeline restarted: {r}\n{log}"
    );
    let prom = std::fs::read_to_string(&prom).unwrap();
    let series = format!(r#"ferry_actor_restarts_total{{actor="{actor}"}}"#);
    assert!(metric(&prom, &series) >= Some(1.0), "{prom}");
    log
}

/// An import that a crash of the S3 server interrupts.
struct Crash {
    source: &'static str,
    target: &'static str,
    group: &'static str,
}

impl Crash {
    fn csv(group: &'static str) -> Self {
        Self {
            source: "s3://imports/big.csv",
            target: "nodes",
            group,
        }
    }

    fn parquet(group: &'static str) -> Self {
        Self {
            source: "s3://imports/big.parquet",
            target: "matches",
            group,
        }
    }
}

/// Runs the import, killing the S3 server once the job's first batch is
/// committed and bringing it back 500 ms later. `extra` holds env vars, and flags (those starting with
/// `--`). Returns the report and ferry's log.
async fn import_through_a_crash(
    db: &TestDb,
    s3: &mut LocalS3,
    crash: &Crash,
    extra: &[(&str, &str)],
) -> (Value, String) {
    let group = crash.group;
    let mut args = vec![
        "import",
        crash.source,
        "--target",
        crash.target,
        "--domain",
        DOMAIN,
        "--group",
        group,
        "--json",
    ];
    let mut env = s3.env();
    for (k, v) in extra {
        if k.starts_with("--") {
            args.extend([*k, *v]);
        } else {
            env.push((k.to_string(), v.to_string()));
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut cmd = db.command(&args, &env);
    // Small reads and one batch in flight, so the download is still going
    // when the server dies.
    cmd.env(
        "RUST_LOG",
        "warn,ferry_actors::import::actors::parquet_reader=info",
    )
    .env("FERRY__IMPORT__READ_CHUNK_BYTES", "16384")
    .env("FERRY__IMPORT__READ_AHEAD_CHUNKS", "1")
    .env("FERRY__IMPORT__BATCH_ROWS", "2000")
    .env("FERRY__IMPORT__MAX_IN_FLIGHT_BATCHES", "1")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let output = tokio::spawn(cmd.spawn().unwrap().wait_with_output());
    // The fault comes once the job has a checkpoint past the first batch,
    // so that a restart has somewhere to resume from.
    let client = db.client().await;
    for _ in 0..200 {
        let committed: i64 = client
            .query_one(
                "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE group_key = $1",
                &[&group],
            )
            .await
            .unwrap()
            .get(0);
        if committed > 0 || output.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !output.is_finished(),
        "{group}: the import finished before the fault"
    );
    s3.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s3.restart().unwrap();
    let out = output.await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{group}: no report ({e}): {log}"));
    assert_eq!(out.status.code(), Some(0), "{group}: {r}\n{log}");
    assert_eq!(r["rowsRead"], ROWS, "{group}");
    (r, log)
}

/// Writes `bytes` to `bucket/key`.
async fn put(s3: &LocalS3, bucket: &str, key: &str, bytes: Vec<u8>) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    s3.put_file(bucket, key, tmp.path()).await.unwrap();
}

/// Reads `bucket/key` whole.
async fn get(s3: &LocalS3, bucket: &str, key: &str) -> Vec<u8> {
    let store = s3.store();
    let size = store.head(bucket, key).await.unwrap().size;
    let body = store.read_range(bucket, key, 0..size).await.unwrap();
    body.collect().await.unwrap().into_bytes().to_vec()
}
