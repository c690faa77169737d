//! Multi-file imports: a prefix, a glob or a list of files loads as one
//! job, from a real S3 server (s3s-fs) or a local folder, resumes inside
//! the file it was in, and fails, naming it, on a file that changed since
//! it was listed.

use std::time::Duration;

use ferry::locals3::LocalS3;
use ferry::sample;
use serde_json::Value;

use crate::harness::{TestDb, DOMAIN};
use crate::service::{api_key, broker, post_import, request, wait_for, Serve};

const SHARDS: u64 = 8;
const SHARD_ROWS: u64 = 5_000;

/// Eight Parquet shards under `imports/daily/`, plus what a Spark job
/// leaves beside them (a marker, a note, a subfolder); returns their local
/// copies, in name order.
async fn shards(db: &TestDb, s3: &LocalS3) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for i in 0..SHARDS {
        let name = format!("part-{i:05}.parquet");
        let path = db.path(&format!("shards/{name}"));
        sample::write_matches_parquet_from(&path, i * SHARD_ROWS, SHARD_ROWS, 1_000, 100 + i)
            .unwrap();
        s3.put_file("imports", &format!("daily/{name}"), &path)
            .await
            .unwrap();
        paths.push(path);
    }
    let success = db.path("_SUCCESS");
    std::fs::write(&success, b"").unwrap();
    s3.put_file("imports", "daily/_SUCCESS", &success)
        .await
        .unwrap();
    s3.put_file("imports", "daily/notes.txt", &success)
        .await
        .unwrap();
    // A subfolder's shard is not the prefix's: it is neither read nor listed.
    s3.put_file("imports", "daily/_temporary/part-00000.parquet", &paths[0])
        .await
        .unwrap();
    paths
}

fn env(s3: &LocalS3, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = s3.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn import(db: &TestDb, source: &str, group: &str, env: &[(String, String)]) -> (Value, i32) {
    db.import_matches(source, group, &[], &env_refs(env)).await
}

/// `ferry import SOURCE --json` of matches into `group`, in the background.
fn spawn_import(
    db: &TestDb,
    source: &str,
    group: &str,
    env: &[(String, String)],
) -> tokio::task::JoinHandle<std::io::Result<std::process::Output>> {
    let args = [
        "import", source, "--target", "matches", "--domain", DOMAIN, "--group", group, "--json",
    ];
    let mut cmd = db.command(&args, &env_refs(env));
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    tokio::spawn(cmd.spawn().unwrap().wait_with_output())
}

/// The digest of the shards loaded one by one, the single-file path.
async fn one_by_one(db: &TestDb, s3: &LocalS3, group: &str) -> String {
    for i in 0..SHARDS {
        let uri = format!("s3://imports/daily/part-{i:05}.parquet");
        let (r, code) = import(db, &uri, group, &env(s3, &[])).await;
        assert_eq!(code, 0, "{r}");
    }
    db.match_digest(group).await
}

#[tokio::test]
async fn a_prefix_of_eight_shards_loads_as_one_job_and_a_glob_picks_its_files() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    shards(&db, &s3).await;
    let want = one_by_one(&db, &s3, "single").await;

    let (r, code) = import(&db, "s3://imports/daily/", "prefix", &env(&s3, &[])).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(r["rowsRead"], SHARDS * SHARD_ROWS, "{r}");
    assert_eq!(db.match_count("prefix").await as u64, SHARDS * SHARD_ROWS);
    assert_eq!(db.match_digest("prefix").await, want);
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), SHARDS as usize, "{r}");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f["uri"], format!("s3://imports/daily/part-{i:05}.parquet"));
        assert_eq!(f["records"], SHARD_ROWS, "{f}");
    }
    assert_eq!(
        r["skippedFiles"],
        serde_json::json!(["_SUCCESS", "notes.txt"])
    );

    // A glob, in the seed's http:// form, then one that picks one shard.
    let glob = format!("{}/imports/daily/part-*.parquet", s3.endpoint());
    let (r, code) = import(&db, &glob, "glob", &env(&s3, &[])).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["files"].as_array().unwrap().len(), SHARDS as usize, "{r}");
    assert_eq!(r["skippedFiles"], Value::Null, "{r}");
    assert_eq!(db.match_digest("glob").await, want);
    let (r, code) = import(
        &db,
        "s3://imports/daily/*-00003.parquet",
        "one",
        &env(&s3, &[]),
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rowsRead"], SHARD_ROWS, "{r}");
    assert_eq!(
        r["files"][0]["uri"],
        "s3://imports/daily/part-00003.parquet"
    );
}

#[tokio::test]
async fn an_empty_prefix_and_too_many_files_fail_naming_them() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    shards(&db, &s3).await;
    let cases = [
        (
            "s3://imports/nothing/",
            "empty",
            None,
            "s3://imports/nothing/: no .parquet file",
        ),
        (
            "s3://imports/daily/",
            "many",
            Some(("FERRY__IMPORT__MAX_FILES", "3")),
            "8 files, over import.max_files (3)",
        ),
        (
            "s3://imports/daily/",
            "big",
            Some(("FERRY__IMPORT__MAX_JOB_BYTES", "1000")),
            "over import.max_job_bytes (1000)",
        ),
    ];
    for (source, group, setting, want) in cases {
        let (r, code) = import(&db, source, group, &env(&s3, setting.as_slice())).await;
        assert_eq!(code, 1, "{r}");
        let reason = r["failureReason"].as_str().unwrap();
        assert!(reason.contains(want), "{group}: {reason}");
        assert_eq!(db.match_count(group).await, 0, "{group}");
    }
}

/// Keys with characters a URL escapes or cuts at (Hive's `%3A`, a `#`)
/// are read under their own names; a file over `import.max_object_bytes`
/// fails the job from its listing, before any file is read.
#[tokio::test]
async fn odd_keys_are_read_as_listed_and_a_file_too_big_fails_before_any_is_read() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    let paths = shards(&db, &s3).await;
    for (i, key) in ["odd/a#1.parquet", "odd/dt=2026-11-30T00%3A00.parquet"]
        .iter()
        .enumerate()
    {
        s3.put_file("imports", key, &paths[i]).await.unwrap();
    }
    let (r, code) = import(&db, "s3://imports/odd/", "odd", &env(&s3, &[])).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rowsRead"], 2 * SHARD_ROWS, "{r}");
    assert_eq!(db.match_count("odd").await as u64, 2 * SHARD_ROWS);

    let size = std::fs::metadata(&paths[7]).unwrap().len();
    let smaller = (size - 1).to_string();
    let tight = env(&s3, &[("FERRY__IMPORT__MAX_OBJECT_BYTES", &smaller)]);
    let (r, code) = import(&db, "s3://imports/daily/", "tight", &tight).await;
    assert_eq!(code, 1, "{r}");
    let reason = r["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("over import.max_object_bytes") && reason.contains("part-0000"),
        "{reason}"
    );
    assert_eq!(db.match_count("tight").await, 0, "no file was read");
}

/// The job's checkpoint: which file it is in.
async fn current_file(db: &TestDb, group: &str) -> Option<i64> {
    let client = db.client().await;
    client
        .query_one(
            "SELECT (max(checkpoint::jsonb -> 'files' ->> 'current'))::bigint FROM jobs WHERE group_key = $1",
            &[&group],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_s3_server_killed_in_shard_five_resumes_in_shard_five() {
    let db = TestDb::new().await;
    let mut s3 = LocalS3::start().unwrap();
    shards(&db, &s3).await;
    let want = one_by_one(&db, &s3, "single").await;

    let env = env(
        &s3,
        &[
            ("FERRY__STORAGE__MAX_ATTEMPTS", "1"),
            (
                "RUST_LOG",
                "warn,ferry_actors::import::actors::import_pipeline=info",
            ),
            ("FERRY__IMPORT__READ_CHUNK_BYTES", "16384"),
            ("FERRY__IMPORT__BATCH_ROWS", "500"),
            ("FERRY__IMPORT__MAX_IN_FLIGHT_BATCHES", "1"),
        ],
    );
    let output = spawn_import(&db, "s3://imports/daily/", "crash", &env);
    let mut at = None;
    for _ in 0..4_000 {
        at = current_file(&db, "crash").await;
        if at >= Some(4) || output.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = at.expect("listed");
    assert!(
        (4..6).contains(&at),
        "the fault comes in shard 5 or 6: {at}"
    );
    s3.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s3.restart().unwrap();
    let out = output.await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(out.status.code(), Some(0), "{r}\n{log}");
    assert!(
        r["attempts"].as_i64() >= Some(2),
        "the pipeline restarted: {r}\n{log}"
    );
    // The second attempt began in the fifth shard, not at the first.
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Import pipeline starting."))
        .collect();
    assert!(starts.len() >= 2, "{log}");
    let resumed: i64 = starts[1]
        .split("part-")
        .nth(1)
        .and_then(|s| s.get(..5))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", starts[1]));
    assert!(
        resumed == at || resumed == at + 1,
        "at the fault the job was in file {at}; it resumed in {resumed}"
    );
    assert_eq!(r["rowsRead"], SHARDS * SHARD_ROWS, "{r}");
    assert_eq!(db.match_digest("crash").await, want);
}

#[tokio::test]
async fn a_shard_replaced_after_the_listing_fails_the_job_naming_it() {
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    let paths = shards(&db, &s3).await;
    let (r, code) = import(
        &db,
        "s3://imports/daily/part-00000.parquet",
        "warm",
        &env(&s3, &[]),
    )
    .await;
    assert_eq!(code, 0, "the tables exist: {r}");
    // The job lists its files, then waits on this lock for its first write.
    let lock = db.client().await;
    lock.batch_execute("BEGIN; LOCK TABLE match_suggestions IN SHARE MODE")
        .await
        .unwrap();
    let run = spawn_import(&db, "s3://imports/daily/", "changed", &env(&s3, &[]));
    for _ in 0..600 {
        if current_file(&db, "changed").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(current_file(&db, "changed").await, Some(0), "listed");
    // Shard 3 is written again, with other rows.
    sample::write_matches_parquet_from(&paths[3], 3 * SHARD_ROWS, SHARD_ROWS, 1_000, 999).unwrap();
    s3.put_file("imports", "daily/part-00003.parquet", &paths[3])
        .await
        .unwrap();
    lock.batch_execute("COMMIT").await.unwrap();
    let out = run.await.unwrap().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{r}");
    let reason = r["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("s3://imports/daily/part-00003.parquet")
            && reason.contains("changed since"),
        "{reason}"
    );
    // Nothing of it or after it was loaded (the shards before it were read,
    // and what of them was committed stays, as with any FAILED job).
    let loaded = db.match_count("changed").await as u64;
    assert!(loaded <= 3 * SHARD_ROWS, "{loaded}");
}

/// An import's view, as `GET /v1/imports/{id}` answers it.
async fn import_view(serve: &Serve, headers: &[(&str, &str)], id: &str) -> Value {
    let path = format!("/v1/imports/{id}");
    let (status, view) = request(&serve.http, "GET", &path, headers, "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{view}");
    serde_json::from_str(&view).unwrap()
}

/// Through the API: a `filePaths` list and a local folder load as one job
/// each, their rejects naming file and line; an entry out of bounds
/// refuses the whole request, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_and_a_local_folder_through_the_api() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let key = api_key(&db, DOMAIN).await;
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let dir = db.path("drop");
    std::fs::create_dir_all(&dir).unwrap();
    // Two files with a ragged row on the same line, and one that is not CSV.
    std::fs::write(dir.join("a.csv"), "id,city\na1,Pune\na2\na3,Goa\n").unwrap();
    std::fs::write(dir.join("b.csv"), "id,city\nb1,Pune\nb2\nb3,Goa\n").unwrap();
    let clean = db.path("clean");
    std::fs::create_dir_all(&clean).unwrap();
    std::fs::write(clean.join("d.csv"), "id,city\nd1,Pune\nd2,Goa\n").unwrap();
    std::fs::write(clean.join("c.csv"), "id,city\nc1,Pune\nc2,Goa\n").unwrap();
    std::fs::write(clean.join("readme.txt"), "not data").unwrap();
    let body = |files: serde_json::Value| {
        serde_json::json!({"domainId": DOMAIN, "groupId": "listed", "filePaths": files}).to_string()
    };
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // Out of bounds: a traversal, a foreign host.
    for bad in [
        format!("{}/../../etc/passwd", dir.display()),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        let (status, answer) = request(
            &serve.http,
            "POST",
            "/v1/imports",
            &headers,
            &body(serde_json::json!([path("a.csv"), bad])),
        )
        .await
        .unwrap();
        assert_eq!(status, 422, "{answer}");
        assert!(answer.contains("filePaths[1]"), "{answer}");
    }

    let listed = body(serde_json::json!([path("b.csv"), path("a.csv")]));
    let id = post_import(&serve, &headers, &listed).await;
    // A rejected row fails a job (seed 004); the others are loaded.
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE group_key = 'listed' AND status = 'FAILED'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 1, "{}", serve.log_text());
    let view = import_view(&serve, &headers, &id).await;
    assert_eq!(view["rows"]["loaded"], 4, "{view}");
    assert_eq!(view["rows"]["rejected"], 2, "{view}");
    let files = view["files"].as_array().unwrap();
    assert_eq!(files[0]["uri"], path("b.csv"), "in the list's order");
    assert_eq!(files[1]["records"], 3, "{view}");
    let rejects = std::fs::read_to_string(view["rejectsPath"].as_str().unwrap()).unwrap();
    assert!(
        rejects.contains("b.csv:3,") && rejects.contains("a.csv:3,"),
        "{rejects}"
    );
    assert_eq!(db.count("listed").await, 4);

    // A folder: its CSV files, the other one skipped.
    let prefix = format!("{}/", clean.display());
    let folder = serde_json::json!({"domainId": DOMAIN, "groupId": "folder", "filePath": prefix});
    let id = post_import(&serve, &headers, &folder.to_string()).await;
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE group_key = 'folder' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 1, "{}", serve.log_text());
    assert_eq!(db.count("folder").await, 4);
    let clean_path = |name: &str| clean.join(name).to_str().unwrap().to_string();
    let view = import_view(&serve, &headers, &id).await;
    assert_eq!(
        view["skippedFiles"],
        serde_json::json!(["readme.txt"]),
        "{view}"
    );
    assert_eq!(
        view["files"][0]["uri"],
        clean_path("c.csv"),
        "in name order"
    );
    serve.terminate().await;
}
