//! The durable job queue's primitives against a real PostgreSQL: claims
//! with `FOR UPDATE SKIP LOCKED`, leases that expire with their instance,
//! renewal, release, and the NOTIFY that announces a new job.

use std::collections::HashSet;
use std::time::Duration;

use ferry_actors::formats::rejects::Rejects;
use ferry_actors::job::{InputFormat, Job, JobStatus, NewJob, Outcome, Target};
use ferry_actors::pg::rejects::RejectsStore;
use ferry_actors::pg::{self, jobs, migrations};
use ferry_actors::settings::DatabaseSettings;
use ferry_actors::status::{IdLists, StatusEvent};
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::harness::{domain, TestDb};

async fn migrated(db: &TestDb) -> tokio_postgres::Client {
    let mut c = db.client().await;
    migrations::migrate(&mut c).await.unwrap();
    c
}

fn new_job(n: usize) -> NewJob {
    NewJob::file(
        Target::Nodes,
        domain(),
        "queue",
        "USER",
        &format!("/data/users-{n}.csv"),
        InputFormat::Csv,
    )
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let mut created = HashSet::new();
    for n in 0..40 {
        created.insert(jobs::create(&c, &new_job(n)).await.unwrap().job.id);
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let client = db.client().await;
        claimers.push(tokio::spawn(async move {
            let owner = format!("instance-{w}");
            let mut mine = Vec::new();
            loop {
                let got = jobs::claim(&client, &owner, Duration::from_secs(30), 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let unique: HashSet<Uuid> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 40, "each job claimed once");
    assert_eq!(unique, created);
}

#[tokio::test]
async fn an_expired_lease_is_claimed_by_another_instance() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let job = jobs::create(&c, &new_job(1)).await.unwrap().job;
    let short = Duration::from_millis(300);

    let a = jobs::claim(&c, "a", short, 10).await.unwrap();
    assert_eq!(a.iter().map(|j| j.id).collect::<Vec<_>>(), vec![job.id]);
    jobs::start_attempt(&c, job.id).await.unwrap();
    assert!(jobs::claim(&c, "b", short, 10).await.unwrap().is_empty());

    // "a" renews while it lives: "b" still cannot take the job.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            jobs::renew(&c, "a", &[job.id], short).await.unwrap(),
            vec![job.id]
        );
    }
    assert!(jobs::claim(&c, "b", short, 10).await.unwrap().is_empty());

    // "a" dies: its lease runs out and "b" takes the RUNNING job over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = jobs::claim(&c, "b", short, 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].status.as_str(), "RUNNING");
    assert!(
        jobs::renew(&c, "a", &[job.id], short)
            .await
            .unwrap()
            .is_empty(),
        "a lost it"
    );

    // A release hands it over at once.
    assert_eq!(jobs::release(&c, "b", &[job.id]).await.unwrap(), 1);
    assert_eq!(jobs::claim(&c, "c", short, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn finished_jobs_are_never_claimed() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let job = jobs::create(&c, &new_job(1)).await.unwrap().job;
    let (outcome, event) = completed(&job, 0);
    let lease = Duration::from_secs(30);
    assert_eq!(jobs::claim(&c, "a", lease, 10).await.unwrap().len(), 1);
    assert!(jobs::finish(&c, job.id, "a", &outcome, &event)
        .await
        .unwrap());
    assert!(jobs::claim(&c, "a", Duration::from_secs(1), 10)
        .await
        .unwrap()
        .is_empty());
}

/// Only the lease's holder writes the job row: an instance that stalled
/// past its lease can neither checkpoint nor finish a job that another
/// instance took over, and its status event is not queued either.
#[tokio::test]
async fn writes_to_a_job_are_fenced_by_its_lease() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let new = new_job(1).reporting_to("status".into(), serde_json::json!({"test": true}));
    let job = jobs::create(&c, &new).await.unwrap().job;
    let short = Duration::from_millis(200);
    assert_eq!(jobs::claim(&c, "stalled", short, 1).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        jobs::claim(&c, "taker", Duration::from_secs(30), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let cp = ferry_actors::job::Checkpoint {
        records: 10,
        inserted: 10,
        ..Default::default()
    };
    assert!(!jobs::save_checkpoint(&c, job.id, "stalled", &cp)
        .await
        .unwrap());
    assert!(jobs::save_checkpoint(&c, job.id, "taker", &cp)
        .await
        .unwrap());
    let (outcome, event) = completed(&job, 10);
    assert!(!jobs::finish(&c, job.id, "stalled", &outcome, &event)
        .await
        .unwrap());
    assert_eq!(queued(&c).await, 0);
    assert!(jobs::finish(&c, job.id, "taker", &outcome, &event)
        .await
        .unwrap());
    assert_eq!(
        queued(&c).await,
        1,
        "the event is queued with the terminal update"
    );
    let payload: String = c
        .query_one("SELECT payload FROM status_outbox", &[])
        .await
        .unwrap()
        .get(0);
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload["jobId"], job.id.to_string());
    assert_eq!(payload["status"], "COMPLETED");
    assert_eq!(payload["processed"], 10);
    // Finished once: a second finish, even by the holder, changes nothing.
    assert!(!jobs::finish(&c, job.id, "taker", &outcome, &event)
        .await
        .unwrap());
    assert_eq!(queued(&c).await, 1);
}

/// A job that finishes while its lease is being renewed is finished, not
/// lost: the renewal waits for the finish and must then see it.
#[tokio::test]
async fn a_job_finishing_during_a_renewal_is_not_taken_for_lost() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let job = jobs::create(&c, &new_job(1)).await.unwrap().job;
    let lease = Duration::from_secs(30);
    assert_eq!(jobs::claim(&c, "me", lease, 1).await.unwrap().len(), 1);

    let mut finisher = db.client().await;
    let tx = finisher.transaction().await.unwrap();
    let (outcome, event) = completed(&job, 10);
    assert!(jobs::finish(&tx, job.id, "me", &outcome, &event)
        .await
        .unwrap());
    let renewal = tokio::spawn(async move { jobs::renew(&c, "me", &[job.id], lease).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!renewal.is_finished(), "the renewal waits for the finish");
    tx.commit().await.unwrap();
    let held = renewal.await.unwrap().unwrap();
    assert_eq!(held, [job.id], "finished, so not lost");
}

/// A job's saved rejects stay until its rejects file holds them: a job
/// given up on before writing one keeps them; a finished one drops them.
/// Saving a reject again (a resumed job reading the line again) adds
/// nothing.
#[tokio::test]
async fn saved_rejects_go_only_once_a_rejects_file_holds_them() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let database = DatabaseSettings {
        url: db.url.clone(),
        ..Default::default()
    };
    let lease = Duration::from_secs(30);
    let mut made = Vec::new();
    for n in 0..2 {
        let job = jobs::create(&c, &new_job(n)).await.unwrap().job;
        let mut store = RejectsStore::new(job.id, database.clone());
        for _attempt in 0..2 {
            let mut rejects = Rejects::new("line", &["id".to_string()], 0);
            rejects.push(7, "bad", [&b"r7"[..]]);
            store.save(&mut rejects).await.unwrap();
        }
        made.push(job);
    }
    assert_eq!(jobs::claim(&c, "me", lease, 10).await.unwrap().len(), 2);
    let saved = |id: Uuid| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT count(*) FROM import_rejects WHERE job_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(saved(made[0].id).await, 1, "saved once");
    let ids = pg::rejects::failed_ids(&c, made[0].id, 10).await.unwrap();
    assert_eq!(ids, ["r7"], "the reject's reference id, for failedList");

    let (given_up, event) = completed(&made[0], 10);
    assert!(jobs::finish(&c, made[0].id, "me", &given_up, &event)
        .await
        .unwrap());
    assert_eq!(saved(made[0].id).await, 1, "no file: the rejects stay");

    let (mut done, event) = completed(&made[1], 10);
    done.rejects_path = Some("/r/job.csv".into());
    assert!(jobs::finish(&c, made[1].id, "me", &done, &event)
        .await
        .unwrap());
    assert_eq!(saved(made[1].id).await, 0, "in the file: the rows go");
}

#[tokio::test]
async fn a_new_job_is_announced() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let (listener, mut conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener
        .batch_execute(&format!("LISTEN {}", jobs::JOBS_CHANNEL))
        .await
        .unwrap();
    let job = jobs::create(&c, &new_job(1)).await.unwrap().job;
    let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(channel, jobs::JOBS_CHANNEL);
    assert_eq!(payload, job.id.to_string());
}

/// A `ferry import` holds its job while it runs, renewing the lease; when
/// it is killed (`kill -9`), the lease runs out and another instance can
/// claim the RUNNING job, with the checkpoint it had reached.
#[tokio::test]
async fn an_import_holds_its_job_until_it_dies() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 600_000, 5).unwrap();
    let lease = Duration::from_millis(600);
    let mut child = db
        .command(
            &[
                "import",
                file.to_str().unwrap(),
                "--domain",
                crate::harness::DOMAIN,
                "--group",
                "held",
                "--batch-rows",
                "2000",
            ],
            &[
                ("FERRY__JOBS__LEASE", "600ms"),
                ("FERRY__IMPORT__WRITERS", "1"),
                ("FERRY__IMPORT__MAX_IN_FLIGHT_BATCHES", "1"),
            ],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Running, renewed: nobody else gets it, for over three leases.
    let started = tokio::time::Instant::now();
    loop {
        assert!(
            jobs::claim(&c, "other", lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "a running import's job was claimable"
        );
        let committed: i64 = c
            .query_one(
                "SELECT coalesce(max(processed_rows), 0) FROM import_jobs",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if committed > 0 && started.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the import never committed a batch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import ended too soon"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Dead: after its lease, the job is there to be resumed.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken = jobs::claim(&c, "other", lease, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].status.as_str(), "RUNNING");
    assert!(taken[0].checkpoint.records > 0, "{:?}", taken[0].checkpoint);
}

async fn queued(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM status_outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// A COMPLETED outcome of `rows` inserted rows, and its status event.
fn completed(job: &Job, rows: u64) -> (Outcome, StatusEvent) {
    let outcome = Outcome {
        status: JobStatus::Completed,
        total: rows,
        inserted: rows,
        updated: 0,
        duplicates: 0,
        rejected: 0,
        rejects_path: None,
        failure_reason: None,
    };
    let event = StatusEvent::new(job, &outcome, IdLists::counts_only(&outcome));
    (outcome, event)
}

/// Bulk sessions (a job's control connection, its writers' pool) commit
/// without waiting for the WAL flush from their first statement; others do.
#[tokio::test]
async fn bulk_sessions_commit_asynchronously_from_the_start() {
    let db = TestDb::new().await;
    let settings = DatabaseSettings {
        url: db.url.clone(),
        ..Default::default()
    };
    let setting = "SELECT current_setting('synchronous_commit')";
    let bulk = pg::connect_bulk(&settings).await.unwrap();
    let mode: String = bulk.query_one(setting, &[]).await.unwrap().get(0);
    assert_eq!(mode, "off");
    let writers = pg::writer_pool(&settings, 1).unwrap();
    let writer = writers.get().await.unwrap();
    let mode: String = writer.query_one(setting, &[]).await.unwrap().get(0);
    assert_eq!(mode, "off");
    let plain = pg::connect(&settings).await.unwrap();
    let mode: String = plain.query_one(setting, &[]).await.unwrap().get(0);
    assert_eq!(mode, "on");
}
