//! `ferry serve` under real faults: PostgreSQL stopped while requests
//! arrive, the broker down while jobs finish, an instance killed with
//! `kill -9` mid-job, and SIGTERM mid-job.

use std::io::Write;
use std::time::{Duration, Instant};

use ferry::localpg::{LocalPostgres, Tuning};
use serde_json::json;

use crate::harness::{gzip, TestDb, DOMAIN};
use crate::service::{
    broker, file_request, produce, producer, request, status_events, wait_for, Serve, USERS_TOPIC,
};

fn refs_request(group: &str) -> String {
    json!({"domainId": DOMAIN, "groupId": group, "referenceIds": [format!("{group}-1"), format!("{group}-2")]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_while_requests_arrive_loses_nothing() {
    // A cluster of its own: stopping the shared one would fail other tests.
    let pg = tokio::task::spawn_blocking(|| LocalPostgres::start(Tuning { durable: false }))
        .await
        .unwrap()
        .unwrap();
    let db = TestDb {
        url: pg.url(),
        dir: tempfile::tempdir().unwrap(),
    };
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let serve = Serve::start(&db, &brokers, &[]).await;
    let p = producer(&brokers);
    for n in 0..3 {
        produce(&p, USERS_TOPIC, "k", &refs_request(&format!("before-{n}"))).await;
    }
    assert_eq!(status_events(&brokers, 3, Duration::from_secs(30)).len(), 3);

    pg.stop().unwrap();
    for n in 0..5 {
        produce(&p, USERS_TOPIC, "k", &refs_request(&format!("during-{n}"))).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = request(&serve.http, "GET", "/health/ready", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    pg.start_again().unwrap();

    let events = status_events(&brokers, 8, Duration::from_secs(60));
    assert_eq!(events.len(), 8, "{}", serve.log_text());
    for n in 0..5 {
        assert_eq!(
            db.count(&format!("during-{n}")).await,
            2,
            "{}",
            serve.log_text()
        );
    }
    let log = serve.log_text();
    assert!(log.contains("pausing consumption"), "{log}");
    assert!(log.contains("resuming consumption"), "{log}");
    let (code, log) = serve.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_events_wait_out_a_broker_outage() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 100_000, 5).unwrap();
    let serve = Serve::start(&db, &brokers, &[("FERRY__KAFKA__SEND_TIMEOUT", "2s")]).await;
    let p = producer(&brokers);
    for n in 0..4 {
        produce(
            &p,
            USERS_TOPIC,
            "k",
            &file_request(&format!("outage-{n}"), &file),
        )
        .await;
    }
    let ingested = wait_for(&db, "SELECT count(*) FROM jobs", 4, Duration::from_secs(30)).await;
    assert_eq!(ingested, 4);
    kafka.refuse_writes();
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'",
        4,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 4, "{}", serve.log_text());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = wait_for(
        &db,
        "SELECT count(*) FROM status_outbox WHERE sent_at IS NULL",
        1,
        Duration::ZERO,
    )
    .await;
    assert!(waiting >= 1, "some events waited for the broker");
    kafka.accept_writes();

    let events = status_events(&brokers, 4, Duration::from_secs(60));
    let mut jobs: Vec<String> = events.iter().map(|e| e["jobId"].to_string()).collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 4, "{events:?}\n{}", serve.log_text());
    let unsent = wait_for(
        &db,
        "SELECT count(*) FROM status_outbox WHERE sent_at IS NULL",
        0,
        Duration::ZERO,
    )
    .await;
    assert_eq!(unsent, 0);
    serve.terminate().await;
}

/// The pid in a lease owner `serve@host:PID:tag`.
fn owner_pid(owner: &str) -> u32 {
    owner.rsplit(':').nth(1).unwrap().parse().unwrap()
}

/// Of instances `a` and `b`, the one whose lease is `owner`, then the
/// other, and the other's index (0: `a`).
fn holder_first(owner: &str, a: Serve, b: Serve) -> (Serve, Serve, usize) {
    let pid = owner_pid(owner);
    if a.child.id() == Some(pid) {
        return (a, b, 1);
    }
    assert_eq!(b.child.id(), Some(pid), "the job runs in one of the two");
    (b, a, 0)
}

/// Waits until the one job has committed some rows; its lease owner.
async fn wait_mid_job(db: &TestDb) -> String {
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_opt(
                "SELECT lease_owner, processed_rows FROM jobs WHERE status = 'RUNNING'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            let (owner, processed): (Option<String>, i64) = (row.get(0), row.get(1));
            if let (Some(owner), true) = (owner, processed > 0) {
                return owner;
            }
        }
        assert!(Instant::now() < deadline, "the job never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const BIG: u64 = 300_000;
/// Small batches and one writer: the job takes a few seconds and
/// checkpoints often.
const SLOW: [(&str, &str); 3] = [
    ("FERRY__IMPORT__BATCH_ROWS", "5000"),
    ("FERRY__IMPORT__WRITERS", "1"),
    ("FERRY__JOBS__LEASE", "3s"),
];

/// The digest of the file imported by `ferry import` into its own group.
async fn reference_digest(db: &TestDb, file: &std::path::Path) -> String {
    let (report, code) = db.import(file, "reference", &[], &[]).await;
    assert_eq!(code, 0, "{report}");
    db.digest("reference").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_killed_mid_job_is_replaced_by_the_other() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, BIG, 11).unwrap();
    let expected = reference_digest(&db, &file).await;
    let a = Serve::start(&db, &brokers, &SLOW).await;
    let b = Serve::start(&db, &brokers, &SLOW).await;
    produce(
        &producer(&brokers),
        USERS_TOPIC,
        "k",
        &file_request("killed", &file),
    )
    .await;

    let owner = wait_mid_job(&db).await;
    let (victim, survivor, _) = holder_first(&owner, a, b);
    victim.kill().await;

    let events = status_events(&brokers, 1, Duration::from_secs(90));
    assert_eq!(events.len(), 1, "{}", survivor.log_text());
    assert_eq!(events[0]["status"], "COMPLETED", "{}", events[0]);
    assert_eq!(db.count("killed").await, BIG as i64);
    assert_eq!(db.digest("killed").await, expected);
    let (attempts, last_owner_gone): (i32, bool) = {
        let row = db
            .client()
            .await
            .query_one(
                "SELECT attempts, lease_owner IS NULL FROM jobs WHERE group_key = 'killed'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(attempts >= 2, "resumed by the other instance");
    assert!(last_owner_gone);
    assert!(survivor.log_text().contains("Claimed a job."));
    survivor.terminate().await;
}

/// A sync killed mid-load resumes on the other instance, deletes what the
/// file does not hold once, and a redelivered request is the same job.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_killed_mid_sync_is_replaced_and_the_delete_happens_once() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let (today, tomorrow) = (db.path("today.csv.gz"), db.path("tomorrow.csv.gz"));
    ferry::sample::write_users_csv_gz(&today, BIG, 11).unwrap();
    ferry::sample::write_users_next_day_csv_gz(&tomorrow, BIG, 11).unwrap();
    let expected = reference_digest(&db, &tomorrow).await;
    let (r, code) = db.import(&today, "daily", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    let a = Serve::start(&db, &brokers, &SLOW).await;
    let b = Serve::start(&db, &brokers, &SLOW).await;
    let mut sync =
        serde_json::from_str::<serde_json::Value>(&file_request("daily", &tomorrow)).unwrap();
    sync["mode"] = json!("sync");
    let sync = sync.to_string();
    let p = producer(&brokers);
    produce(&p, USERS_TOPIC, "k", &sync).await;

    let owner = wait_mid_job(&db).await;
    let (victim, survivor, _) = holder_first(&owner, a, b);
    victim.kill().await;

    let events = status_events(&brokers, 1, Duration::from_secs(90));
    assert_eq!(events.len(), 1, "{}", survivor.log_text());
    let event = &events[0];
    assert_eq!(event["status"], "COMPLETED", "{event}");
    let left = BIG / 100;
    assert_eq!(event["deleted"], left, "{event}");
    let listed = event["deletedList"].as_array().unwrap();
    assert!(
        !listed.is_empty() && (listed.len() as u64) < left,
        "{event}"
    );
    assert_eq!(event["deletedListTruncated"], true);
    assert_eq!(
        listed[0], "u00000100",
        "every 100th user left, listed in order"
    );
    assert!(
        listed.iter().all(|id| id.as_str().unwrap().ends_with("00")),
        "{event}"
    );
    assert_eq!(db.count("daily").await, BIG as i64);
    assert_eq!(db.digest("daily").await, expected);
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT attempts, deleted_rows, (SELECT count(*) FROM sync_seen_nodes)
             FROM jobs WHERE group_key = 'daily' AND import_mode = 'sync'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i32>(0) >= 2, "resumed by the other instance");
    assert_eq!(row.get::<_, i64>(1), left as i64);
    assert_eq!(row.get::<_, i64>(2), 0);

    // The request delivered again is the job that ran: no second sync.
    produce(&p, USERS_TOPIC, "k", &sync).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let syncs: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE import_mode = 'sync'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(syncs, 1, "{}", survivor.log_text());
    assert_eq!(status_events(&brokers, 2, Duration::from_secs(2)).len(), 1);
    survivor.terminate().await;
}

/// A users file of `rows` rows in which every `bad_every`-th is one field
/// short; returns the lines of the bad rows.
fn users_with_bad_rows(path: &std::path::Path, rows: u64, bad_every: u64) -> Vec<u64> {
    let mut csv = Vec::new();
    let mut rng = ferry::sample::Rng::new(17);
    writeln!(csv, "{}", ferry::sample::USER_HEADER).unwrap();
    let mut bad = Vec::new();
    for n in 1..=rows {
        if n % bad_every == 0 {
            write!(csv, "u{n:08},short").unwrap();
            bad.push(n + 1); // the header is line 1
        } else {
            ferry::sample::user_row(&mut csv, n, &mut rng).unwrap();
        }
        csv.push(b'\n');
    }
    std::fs::write(path, gzip(&csv)).unwrap();
    bad
}

/// The rejects an instance read before it was killed are in the rejects
/// file the other instance writes, in a directory of its own (as on
/// another machine), each once.
#[tokio::test(flavor = "multi_thread")]
async fn rejects_outlive_the_instance_that_read_them() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    let bad = users_with_bad_rows(&file, BIG, 1000);
    let dirs = [db.path("rejects-a"), db.path("rejects-b")];
    fn env(dir: &std::path::Path) -> Vec<(&'static str, &str)> {
        let mut env = SLOW.to_vec();
        env.push(("FERRY__IMPORT__REJECTS_DIR", dir.to_str().unwrap()));
        env
    }
    let a = Serve::start(&db, &brokers, &env(&dirs[0])).await;
    let b = Serve::start(&db, &brokers, &env(&dirs[1])).await;
    produce(
        &producer(&brokers),
        USERS_TOPIC,
        "k",
        &file_request("rejects", &file),
    )
    .await;

    let owner = wait_mid_job(&db).await;
    let saved = wait_for(
        &db,
        "SELECT count(*) FROM import_rejects",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert!(saved >= 1, "the first instance saved some rejects");
    let (victim, survivor, other) = holder_first(&owner, a, b);
    let survivor_dir = &dirs[other];
    victim.kill().await;

    let events = status_events(&brokers, 1, Duration::from_secs(90));
    assert_eq!(events.len(), 1, "{}", survivor.log_text());
    let event = &events[0];
    assert_eq!(event["status"], "FAILED", "{event}");
    assert_eq!(event["processed"], BIG - bad.len() as u64, "{event}");
    // The bad rows' ids, as seed 004's failedList (300, under the cap).
    let failed: Vec<String> = bad.iter().map(|line| format!("u{:08}", line - 1)).collect();
    assert_eq!(event["failedList"], json!(failed), "{event}");
    assert_eq!(event["failedListTruncated"], false);
    let path = event["rejectsPath"].as_str().expect("a rejects file");
    assert!(path.starts_with(survivor_dir.to_str().unwrap()), "{path}");
    let rejects = std::fs::read_to_string(path).unwrap();
    let mut lines = rejects.lines();
    assert!(lines.next().unwrap().starts_with("line,reason,user_id,"));
    let listed: Vec<u64> = lines
        .map(|l| {
            assert!(l.contains(",short"), "{l}");
            l.split(',').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(listed, bad, "every reject, once, in line order");
    let left = wait_for(
        &db,
        "SELECT count(*) FROM import_rejects",
        0,
        Duration::ZERO,
    )
    .await;
    assert_eq!(left, 0, "a finished job's saved rejects are gone");
    survivor.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_job_exits_cleanly_and_the_job_finishes_after_restart() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, BIG, 13).unwrap();
    let expected = reference_digest(&db, &file).await;
    let mut env = SLOW.to_vec();
    env.push(("FERRY__JOBS__DRAIN_TIMEOUT", "200ms"));
    let first = Serve::start(&db, &brokers, &env).await;
    produce(
        &producer(&brokers),
        USERS_TOPIC,
        "k",
        &file_request("sigterm", &file),
    )
    .await;
    wait_mid_job(&db).await;

    let (code, log) = first.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Released the leases"), "{log}");
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT status, lease_owner IS NULL FROM jobs WHERE group_key = 'sigterm'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "RUNNING", "stopped mid-job");
    assert!(row.get::<_, bool>(1), "its lease was released");

    let second = Serve::start(&db, &brokers, &env).await;
    let events = status_events(&brokers, 1, Duration::from_secs(90));
    assert_eq!(events.len(), 1, "{}", second.log_text());
    assert_eq!(events[0]["status"], "COMPLETED");
    assert_eq!(events[0]["total"], BIG);
    assert_eq!(db.count("sigterm").await, BIG as i64);
    assert_eq!(db.digest("sigterm").await, expected);
    let jobs = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE group_key = 'sigterm'",
        1,
        Duration::ZERO,
    )
    .await;
    assert_eq!(jobs, 1, "the redelivered request made no second job");
    second.terminate().await;
}
