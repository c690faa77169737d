//! Sync imports (`--mode sync`): the group ends holding exactly its file's
//! rows; the guard against a file that would wipe it; a failed load
//! deletes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry::sample;
use serde_json::{json, Value};

use crate::harness::{gzip, metric, TestDb};

const USERS: u64 = 10_000;

/// Imports `file` into `group` (an upsert), which must complete.
async fn load(db: &TestDb, file: &Path, group: &str) {
    let (r, code) = db.import(file, group, &[], &[]).await;
    assert_eq!(code, 0, "{r}");
}

/// `ferry import FILE --mode sync` into `group`, with `extra` arguments:
/// the report, the exit code and the run's metrics.
async fn sync(
    db: &TestDb,
    file: &Path,
    group: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Value, i32, String) {
    let metrics = db.path(&format!("{group}-{}.prom", uuid::Uuid::new_v4()));
    let mut args = vec![
        "--mode",
        "sync",
        "--metrics-textfile",
        metrics.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (r, code) = db.import(file, group, &args, env).await;
    (
        r,
        code,
        std::fs::read_to_string(&metrics).unwrap_or_default(),
    )
}

/// Seen keys kept by every sync of the database.
async fn seen_keys(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM sync_seen_nodes", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_sync_leaves_the_group_holding_exactly_its_file() {
    let db = TestDb::new().await;
    let today = db.path("today.csv.gz");
    let tomorrow = db.path("tomorrow.csv.gz");
    sample::write_users_csv_gz(&today, USERS, 7).unwrap();
    sample::write_users_next_day_csv_gz(&tomorrow, USERS, 7).unwrap();
    // What the group must hold: the next day's file, loaded on its own.
    load(&db, &tomorrow, "reference").await;
    let want = db.digest("reference").await;
    for group in ["synced", "bystander"] {
        load(&db, &today, group).await;
    }
    let bystander = db.digest("bystander").await;

    let (r, code, prom) = sync(&db, &tomorrow, "synced", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "COMPLETED");
    assert_eq!(r["mode"], "sync");
    // 1% left, 1% changed, 1% new (see `write_users_next_day_csv_gz`).
    let left = USERS / 100;
    assert_eq!(
        (
            &r["inserted"],
            &r["updated"],
            &r["unchanged"],
            &r["deleted"]
        ),
        (
            &json!(left),
            &json!(left),
            &json!(USERS - 2 * left),
            &json!(left)
        ),
        "{r}"
    );
    assert_eq!(
        metric(&prom, r#"ferry_rows_deleted_total{target="nodes"}"#),
        Some(left as f64),
        "{prom}"
    );
    assert_eq!(db.count("synced").await, USERS as i64);
    assert_eq!(db.digest("synced").await, want, "the group is the file");
    assert_eq!(
        db.digest("bystander").await,
        bystander,
        "another group of the same ids is untouched"
    );
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT import_mode, deleted_rows FROM jobs WHERE id = $1",
            &[&uuid::Uuid::parse_str(r["jobId"].as_str().unwrap()).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "sync");
    assert_eq!(row.get::<_, i64>(1), left as i64);
    assert_eq!(seen_keys(&db).await, 0, "the seen keys are forgotten");

    // The same sync again: nothing left to delete, nothing written.
    let (again, code, _) = sync(&db, &tomorrow, "synced", &[], &[]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["unchanged"], &again["deleted"]),
        (&json!(USERS), &json!(0)),
        "{again}"
    );
    assert_eq!(db.digest("synced").await, want);

    // A sync into an empty group is a load.
    let (first, code, _) = sync(&db, &tomorrow, "new-group", &[], &[]).await;
    assert_eq!(code, 0, "{first}");
    assert_eq!(
        (&first["inserted"], &first["deleted"]),
        (&json!(USERS), &json!(0))
    );
    assert_eq!(db.digest("new-group").await, want);
}

#[tokio::test]
async fn the_guard_refuses_a_sync_that_would_wipe_the_group_unless_forced() {
    let db = TestDb::new().await;
    let full = db.path("full.csv.gz");
    let truncated = db.path("truncated.csv.gz");
    sample::write_users_csv_gz(&full, 1000, 7).unwrap();
    // The same seed: the first 300 users of the full file.
    sample::write_users_csv_gz(&truncated, 300, 7).unwrap();
    load(&db, &full, "guarded").await;
    let before = db.digest("guarded").await;

    let (refused, code, prom) = sync(&db, &truncated, "guarded", &[], &[]).await;
    assert_ne!(code, 0, "{refused}");
    assert_eq!(refused["status"], "FAILED");
    let reason = refused["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("would delete 700 of the group's 1000 rows (70.0%)")
            && reason.contains("nothing was deleted")
            && reason.contains("\"force\": true"),
        "{reason}"
    );
    assert_eq!(refused["deleted"], 0);
    assert_eq!(
        metric(&prom, r#"ferry_syncs_refused_total{target="nodes"}"#),
        Some(1.0),
        "{prom}"
    );
    assert_eq!(db.digest("guarded").await, before, "nothing was deleted");
    assert_eq!(
        seen_keys(&db).await,
        0,
        "a refused sync forgets what it saw"
    );

    // A higher ratio lets a larger share go.
    let ratio = [("FERRY__IMPORT__SYNC_MAX_DELETE_RATIO", "0.8")];
    let (looser, code, _) = sync(&db, &truncated, "guarded", &[], &ratio).await;
    assert_eq!(code, 0, "0.8 allows 70%: {looser}");
    assert_eq!(looser["deleted"], 700);
    assert_eq!(db.count("guarded").await, 300);

    // Forced, it deletes however many.
    load(&db, &full, "forced").await;
    let (forced, code, _) = sync(&db, &truncated, "forced", &["--force"], &[]).await;
    assert_eq!(code, 0, "{forced}");
    assert_eq!(forced["deleted"], 700);
    assert_eq!(db.digest("forced").await, db.digest("guarded").await);

    // `--force` means nothing without a sync: refused, not ignored.
    let out = db
        .ferry(
            &[
                "import",
                truncated.to_str().unwrap(),
                "--domain",
                crate::harness::DOMAIN,
                "--group",
                "forced",
                "--force",
            ],
            &[],
        )
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("force applies only to a sync"), "{stderr}");
}

#[tokio::test]
async fn a_sync_whose_file_has_a_rejected_row_deletes_nothing() {
    let db = TestDb::new().await;
    let full = db.path("full.csv.gz");
    sample::write_users_csv_gz(&full, 100, 7).unwrap();
    load(&db, &full, "careful").await;
    let before = db.count("careful").await;
    // 50 users, one of them a field short: its key would be unseen, and
    // its stored row deleted, if the sync went on.
    let mut csv = format!("{}\n", sample::USER_HEADER).into_bytes();
    let mut rng = sample::Rng::new(7);
    for n in 1..=50 {
        if n == 20 {
            csv.extend_from_slice(b"u00000020,short");
        } else {
            sample::user_row(&mut csv, n, &mut rng).unwrap();
        }
        csv.push(b'\n');
    }
    let bad = db.path("bad.csv.gz");
    std::fs::write(&bad, gzip(&csv)).unwrap();
    let (r, code, _) = sync(&db, &bad, "careful", &[], &[]).await;
    assert_ne!(code, 0, "{r}");
    assert_eq!(r["status"], "FAILED");
    assert_eq!(r["rejected"], 1);
    let reason = r["failureReason"].as_str().unwrap();
    assert!(
        reason.starts_with("1 of 50 rows rejected") && reason.contains("nothing was deleted"),
        "{reason}"
    );
    assert_eq!(db.count("careful").await, before);
}

#[tokio::test]
async fn a_sync_of_match_suggestions_replaces_yesterdays() {
    let db = TestDb::new().await;
    let yesterday = db.path("yesterday.parquet");
    let today = db.path("today.parquet");
    sample::write_matches_parquet(&yesterday, 1000, 500, 1).unwrap();
    // The first 600 suggestions, their scores drawn afresh.
    sample::write_matches_parquet_from(&today, 0, 600, 500, 2).unwrap();
    let (r, code) = db
        .import_matches(today.to_str().unwrap(), "reference", &[], &[])
        .await;
    assert_eq!(code, 0, "{r}");
    let want = db.match_digest("reference").await;
    let (r, code) = db
        .import_matches(yesterday.to_str().unwrap(), "daily", &[], &[])
        .await;
    assert_eq!(code, 0, "{r}");

    let (r, code) = db
        .import_matches(today.to_str().unwrap(), "daily", &["--mode", "sync"], &[])
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (&r["deleted"], &r["inserted"]),
        (&json!(400), &json!(0)),
        "{r}"
    );
    assert_eq!(db.match_count("daily").await, 600);
    assert_eq!(db.match_digest("daily").await, want);
}

/// The seen keys live in an unlogged table, which a server crash empties:
/// a sync that finds fewer keys than it committed fails, deleting nothing.
#[tokio::test]
async fn a_sync_whose_seen_keys_were_lost_fails_and_deletes_nothing() {
    let db = TestDb::new().await;
    let today = db.path("today.csv.gz");
    let tomorrow = db.path("tomorrow.csv.gz");
    sample::write_users_csv_gz(&today, 50_000, 7).unwrap();
    sample::write_users_next_day_csv_gz(&tomorrow, 50_000, 7).unwrap();
    load(&db, &today, "lost").await;
    let before = db.count("lost").await;
    let slow = [
        ("FERRY__IMPORT__BATCH_ROWS", "1000"),
        ("FERRY__IMPORT__WRITERS", "1"),
    ];
    // What a crash does to an unlogged table, once the sync is loading.
    let crash = async {
        let client = db.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let going: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT FROM jobs WHERE import_mode = 'sync'
                                    AND status = 'RUNNING' AND processed_rows > 0)",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if going {
                break;
            }
            assert!(Instant::now() < deadline, "the sync never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client
            .batch_execute("TRUNCATE sync_seen_nodes")
            .await
            .unwrap();
    };
    let ((r, code, _), ()) = tokio::join!(sync(&db, &tomorrow, "lost", &[], &slow), crash);
    assert_ne!(code, 0, "{r}");
    assert_eq!(r["status"], "FAILED");
    let reason = r["failureReason"].as_str().unwrap();
    assert!(
        reason.contains("lost the keys this sync had seen")
            && reason.contains("nothing was deleted"),
        "{reason}"
    );
    assert_eq!(r["deleted"], 0);
    // The load went on (upserts), nothing was deleted.
    assert!(db.count("lost").await >= before);
}
