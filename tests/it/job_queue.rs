//! The job lifecycle against a real PostgreSQL: claims with `FOR UPDATE
//! SKIP LOCKED`, leases that expire with their instance, renewal, release,
//! writes fenced on the lease, cancellation, the retention sweep, and the
//! NOTIFY that announces a new job.

use std::collections::HashSet;
use std::time::Duration;

use ferry_actors::error::{Fenced, JobError};
use ferry_actors::import::event::IdLists;
use ferry_actors::import::formats::rejects::Rejects;
use ferry_actors::import::save;
use ferry_actors::import::table::rejects::{self, RejectsStore};
use ferry_actors::import::{Checkpoint, ImportOutcome, ImportSpec, InputFormat, NewImport};
use ferry_actors::job::lifecycle::{self, Cancel};
use ferry_actors::job::{store, Family, JobStatus, NewJob};
use ferry_actors::kinds::{Attempt, Held, Outcome, Work};
use ferry_actors::pg::{self, migrations};
use ferry_actors::settings::DatabaseSettings;
use ferry_actors::vocab::{Counts, Target};
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::harness::{domain, TestDb};

async fn migrated(db: &TestDb) -> tokio_postgres::Client {
    let mut c = db.client().await;
    migrations::migrate(&mut c).await.unwrap();
    c
}

fn new_job(n: usize) -> NewImport {
    let spec = ImportSpec::file(
        Target::Nodes,
        "queue",
        "USER",
        &format!("/data/users-{n}.csv"),
        InputFormat::Csv,
    );
    NewJob::new(domain(), spec)
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let mut created = HashSet::new();
    for n in 0..40 {
        created.insert(
            lifecycle::create::<Work, _>(&c, &new_job(n))
                .await
                .unwrap()
                .job
                .id,
        );
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let client = db.client().await;
        claimers.push(tokio::spawn(async move {
            let owner = format!("instance-{w}");
            let mut mine = Vec::new();
            loop {
                let got = lifecycle::claim::<Work>(&client, &owner, Duration::from_secs(30), 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.iter().map(|h| h.job().id));
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

/// Claims take turns across domains: a domain's burst does not make a
/// later domain's job wait behind all of it.
#[tokio::test]
async fn claims_take_turns_across_domains() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    for n in 0..6 {
        lifecycle::create::<Work, _>(&c, &new_job(n)).await.unwrap();
    }
    let mut late = new_job(99);
    late.domain_id = Uuid::from_u128(0x0b0b);
    let late = lifecycle::create::<Work, _>(&c, &late)
        .await
        .unwrap()
        .job
        .id;
    let first: Vec<Uuid> = lifecycle::claim::<Work>(&c, "a", Duration::from_secs(30), 2)
        .await
        .unwrap()
        .iter()
        .map(|h| h.job().id)
        .collect();
    assert_eq!(first.len(), 2);
    assert!(
        first.contains(&late),
        "the other domain's job goes second, not seventh"
    );
}

/// A domain's running jobs count in its turn: with two of a burst's jobs
/// running, another domain's one job is claimed next, not after the rest
/// of the burst (the turns used to be numbered among waiting jobs only,
/// so the busy domain's next job was always its "first").
#[tokio::test]
async fn a_domains_running_jobs_count_in_its_turn() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    for n in 0..6 {
        lifecycle::create::<Work, _>(&c, &new_job(n)).await.unwrap();
    }
    let running = lifecycle::claim::<Work>(&c, "a", Duration::from_secs(30), 2)
        .await
        .unwrap();
    assert!(running.iter().all(|h| h.job().domain_id == domain()));
    let mut small = new_job(99);
    small.domain_id = Uuid::from_u128(0x0b0b);
    let small = lifecycle::create::<Work, _>(&c, &small)
        .await
        .unwrap()
        .job
        .id;
    let next = lifecycle::claim::<Work>(&c, "a", Duration::from_secs(30), 1)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|h| h.job().id).collect::<Vec<_>>(),
        vec![small],
        "the other domain's job goes before the burst's third"
    );
    let rest = lifecycle::claim::<Work>(&c, "a", Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 4, "the burst's other jobs are still claimed");
}

#[tokio::test]
async fn an_expired_lease_is_claimed_by_another_instance() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let job = lifecycle::create::<Work, _>(&c, &new_job(1))
        .await
        .unwrap()
        .job;
    let short = Duration::from_millis(300);

    let a = lifecycle::claim::<Work>(&c, "a", short, 10).await.unwrap();
    assert_eq!(
        a.iter().map(|h| h.job().id).collect::<Vec<_>>(),
        vec![job.id]
    );
    running(&c, &a[0]).await;
    assert!(lifecycle::claim::<Work>(&c, "b", short, 10)
        .await
        .unwrap()
        .is_empty());

    // "a" renews while it lives: "b" still cannot take the job.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            lifecycle::renew(&c, "a", &[job.id], short).await.unwrap(),
            vec![job.id]
        );
    }
    assert!(lifecycle::claim::<Work>(&c, "b", short, 10)
        .await
        .unwrap()
        .is_empty());

    // "a" dies: its lease runs out and "b" takes the RUNNING job over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = lifecycle::claim::<Work>(&c, "b", short, 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].job().status, JobStatus::Running);
    assert!(
        lifecycle::renew(&c, "a", &[job.id], short)
            .await
            .unwrap()
            .is_empty(),
        "a lost it"
    );

    // A release hands it over at once.
    assert_eq!(lifecycle::release(&c, "b", &[job.id]).await.unwrap(), 1);
    assert_eq!(
        lifecycle::claim::<Work>(&c, "c", short, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn finished_jobs_are_never_claimed() {
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    lifecycle::create::<Work, _>(&c, &new_job(1)).await.unwrap();
    let lease = Duration::from_secs(30);
    let claimed = lifecycle::claim::<Work>(&c, "a", lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let attempt = running(&c, &claimed[0]).await;
    attempt.finish(&mut c, &completed(0)).await.unwrap();
    assert!(
        lifecycle::claim::<Work>(&c, "a", Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Only the lease's holder writes the job row: an instance that stalled
/// past its lease can neither checkpoint nor finish a job that another
/// instance took over, and its status event is not queued either.
#[tokio::test]
async fn writes_to_a_job_are_fenced_by_its_lease() {
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    let job = lifecycle::create::<Work, _>(&c, &reporting(1))
        .await
        .unwrap()
        .job;
    let short = Duration::from_millis(200);
    let stalled = lifecycle::claim::<Work>(&c, "stalled", short, 1)
        .await
        .unwrap();
    let stalled = running(&c, &stalled[0]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taker = lifecycle::claim::<Work>(&c, "taker", Duration::from_secs(30), 1)
        .await
        .unwrap();
    assert_eq!(taker.len(), 1);
    let taker = running(&c, &taker[0]).await;

    let cp = Checkpoint {
        counts: Counts {
            records: 10,
            inserted: 10,
            ..Counts::default()
        },
        ..Checkpoint::default()
    };
    assert!(lost(save(&c, &stalled.fence(), &cp).await));
    save(&c, &taker.fence(), &cp).await.unwrap();
    assert!(fenced(stalled.finish(&mut c, &completed(10)).await));
    assert_eq!(queued(&c).await, 0);
    let done = taker.finish(&mut c, &completed(10)).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(
        queued(&c).await,
        1,
        "the event is queued with the terminal update"
    );
    let payload = event_payload(&c).await;
    assert_eq!(payload["jobId"], job.id.to_string());
    assert_eq!(payload["status"], "COMPLETED");
    assert_eq!(payload["processed"], 10);
    // Finished once: a second finish, even by the holder, changes nothing.
    assert!(fenced(taker.finish(&mut c, &completed(10)).await));
    assert_eq!(queued(&c).await, 1);
}

/// An instance that stalled past its lease while another one ran the job
/// to its end must not bring the job back: a late start of an attempt, a
/// late failure, a late give-up leave the COMPLETED row as it is. (Before
/// the lifecycle, the late start set it RUNNING again, claimable, to be
/// run a second time with a second status event.)
#[tokio::test]
async fn a_stale_instance_leaves_a_finished_job_untouched() {
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    let job = lifecycle::create::<Work, _>(&c, &reporting(1))
        .await
        .unwrap()
        .job;
    let short = Duration::from_millis(200);
    let stale = lifecycle::claim::<Work>(&c, "stale", short, 1)
        .await
        .unwrap()
        .remove(0);
    let stale_attempt = running(&c, &stale).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taker = lifecycle::claim::<Work>(&c, "taker", Duration::from_secs(30), 1)
        .await
        .unwrap()
        .remove(0);
    let taken = running(&c, &taker).await;
    taken.finish(&mut c, &completed(10)).await.unwrap();
    let before = store::get::<Work>(&c, job.id).await.unwrap().unwrap();

    assert!(
        fenced(stale.start(&c).await),
        "a stale instance started a finished job"
    );
    assert!(fenced(stale_attempt.fail(&c, "late failure").await));
    assert!(fenced(stale.give_up(&mut c, "late give-up").await));

    let after = store::get::<Work>(&c, job.id).await.unwrap().unwrap();
    assert_eq!(after.status, JobStatus::Completed);
    assert_eq!(after.attempts, before.attempts, "no attempt was counted");
    assert_eq!(after.failure_reason, None);
    assert!(lifecycle::claim::<Work>(&c, "third", short, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(queued(&c).await, 1, "one status event");
}

/// A cancelled job ends at once with its status event; the attempt that
/// ran it can write nothing more, and its renewal reports the job lost.
#[tokio::test]
async fn a_cancelled_job_ends_and_its_attempt_is_fenced_off() {
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    let job = lifecycle::create::<Work, _>(&c, &reporting(1))
        .await
        .unwrap()
        .job;
    let lease = Duration::from_secs(30);
    let held = lifecycle::claim::<Work>(&c, "me", lease, 1)
        .await
        .unwrap()
        .remove(0);
    let attempt = running(&c, &held).await;

    let other_domain = Uuid::new_v4();
    assert!(matches!(
        lifecycle::cancel::<Work>(&mut c, Family::Imports, other_domain, job.id)
            .await
            .unwrap(),
        Cancel::Missing
    ));
    match lifecycle::cancel::<Work>(&mut c, Family::Imports, domain(), job.id)
        .await
        .unwrap()
    {
        Cancel::Cancelled(j) => assert_eq!(j.status, JobStatus::Cancelled),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        lifecycle::cancel::<Work>(&mut c, Family::Imports, domain(), job.id)
            .await
            .unwrap(),
        Cancel::Ended(_)
    ));
    let cp = Checkpoint::default();
    assert!(lost(save(&c, &attempt.fence(), &cp).await));
    assert!(fenced(attempt.finish(&mut c, &completed(1)).await));
    assert!(lifecycle::renew(&c, "me", &[job.id], lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(queued(&c).await, 1);
    assert_eq!(event_payload(&c).await["status"], "CANCELLED");
}

/// Finished jobs go after the retention, with their saved rejects and
/// sent events; running jobs, recent ones, and those whose event is still
/// unsent stay. One sweeper at a time: a second one skips the round.
#[tokio::test]
async fn the_sweep_deletes_only_jobs_past_their_retention() {
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    let lease = Duration::from_secs(30);
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            lifecycle::create::<Work, _>(&c, &reporting(n))
                .await
                .unwrap()
                .job
                .id,
        );
    }
    // 0, 1 and 2 finish, 0 with a reject saved; 3 keeps running.
    let database = DatabaseSettings {
        url: db.url.clone(),
        ..Default::default()
    };
    let held = lifecycle::claim::<Work>(&c, "me", lease, 10).await.unwrap();
    for h in &held[..3] {
        let attempt = running(&c, h).await;
        if h.job().id == ids[0] {
            let mut saved = RejectsStore::new(attempt.fence(), database.clone());
            let mut rejects = Rejects::new("line", &["id".to_string()], 0);
            rejects.push(3, "bad", [&b"r3"[..]]);
            saved.save(&mut rejects, Target::Nodes, 1).await.unwrap();
        }
        attempt.finish(&mut c, &completed(1)).await.unwrap();
    }
    running(&c, &held[3]).await;
    // 0 and 1 ended two days ago; 1's event was never sent.
    c.execute(
        "UPDATE jobs SET finished_at = now() - interval '2 days' WHERE id = ANY($1)",
        &[&vec![ids[0], ids[1]]],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE status_outbox SET sent_at = now() WHERE job_id <> $1",
        &[&ids[1]],
    )
    .await
    .unwrap();

    // Another instance is sweeping: this one skips the round.
    let day = Duration::from_secs(24 * 3600);
    let mut other = db.client().await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lifecycle::SWEEP_LOCK],
    )
    .await
    .unwrap();
    assert_eq!(lifecycle::sweep(&mut c, day, 100).await.unwrap(), None);
    tx.rollback().await.unwrap();

    assert_eq!(lifecycle::sweep(&mut c, day, 100).await.unwrap(), Some(1));
    let left: Vec<Uuid> = c
        .query("SELECT id FROM jobs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ids[1..].to_vec());
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM import_rejects").await, 0);
    assert_eq!(
        count("SELECT count(*) FROM status_outbox").await,
        2,
        "1 and 2 keep theirs"
    );
}

/// A job that finishes while its lease is being renewed is finished, not
/// lost: the renewal waits for the finish and must then see it.
#[tokio::test]
async fn a_job_finishing_during_a_renewal_is_not_taken_for_lost() {
    let db = TestDb::new().await;
    let c = migrated(&db).await;
    let job = lifecycle::create::<Work, _>(&c, &new_job(1))
        .await
        .unwrap()
        .job;
    let lease = Duration::from_secs(30);
    let held = lifecycle::claim::<Work>(&c, "me", lease, 1).await.unwrap();
    running(&c, &held[0]).await;

    // A terminal write in flight: the row is updated, not yet committed.
    let mut finisher = db.client().await;
    let tx = finisher.transaction().await.unwrap();
    tx.execute(
        "UPDATE jobs SET status = 'COMPLETED', lease_owner = NULL WHERE id = $1",
        &[&job.id],
    )
    .await
    .unwrap();
    let renewal = tokio::spawn(async move { lifecycle::renew(&c, "me", &[job.id], lease).await });
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
    let mut c = migrated(&db).await;
    let database = DatabaseSettings {
        url: db.url.clone(),
        ..Default::default()
    };
    let lease = Duration::from_secs(30);
    let mut made = Vec::new();
    for n in 0..2 {
        made.push(
            lifecycle::create::<Work, _>(&c, &new_job(n))
                .await
                .unwrap()
                .job,
        );
    }
    let held = lifecycle::claim::<Work>(&c, "me", lease, 10).await.unwrap();
    assert_eq!(held.len(), 2);
    let mut attempts = Vec::new();
    for h in &held {
        let attempt = running(&c, h).await;
        // Two attempts read the same reject.
        for _attempt in 0..2 {
            let mut store = RejectsStore::new(attempt.fence(), database.clone());
            let mut rejects = Rejects::new("line", &["id".to_string()], 0);
            rejects.push(7, "bad", [&b"r7"[..]]);
            store.save(&mut rejects, Target::Nodes, 1).await.unwrap();
        }
        attempts.push(attempt);
    }
    let reader = db.client().await;
    let saved = |id: Uuid| {
        let c = &reader;
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
    let ids = rejects::failed_ids(&c, made[0].id, 10).await.unwrap();
    assert_eq!(ids, ["r7"], "the reject's reference id, for failedList");

    let gave_up = held[0].give_up(&mut c, "too many failures").await.unwrap();
    assert_eq!(gave_up.status, JobStatus::Failed);
    assert_eq!(saved(made[0].id).await, 1, "no file: the rejects stay");

    let mut done = completed(10);
    if let Outcome::Import(o) = &mut done {
        o.rejects_path = Some("/r/job.csv".into());
    }
    attempts[1].finish(&mut c, &done).await.unwrap();
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
        .batch_execute(&format!("LISTEN {}", lifecycle::JOBS_CHANNEL))
        .await
        .unwrap();
    let job = lifecycle::create::<Work, _>(&c, &new_job(1))
        .await
        .unwrap()
        .job;
    let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(channel, lifecycle::JOBS_CHANNEL);
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
            lifecycle::claim::<Work>(&c, "other", lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "a running import's job was claimable"
        );
        let committed: i64 = c
            .query_one("SELECT coalesce(max(processed_rows), 0) FROM jobs", &[])
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
    let taken = lifecycle::claim::<Work>(&c, "other", lease, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].job().status, JobStatus::Running);
    let Work::Import(import) = &taken[0].job().work else {
        panic!("an import")
    };
    assert!(
        import.checkpoint.counts.records > 0,
        "{:?}",
        import.checkpoint
    );
}

async fn queued(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM status_outbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// A COMPLETED outcome of `rows` inserted rows.
fn completed(rows: u64) -> Outcome {
    let counts = Counts {
        records: rows,
        inserted: rows,
        ..Counts::default()
    };
    Outcome::Import(ImportOutcome {
        counts,
        rejects_path: None,
        failure_reason: None,
        lists: IdLists::counts_only(&counts),
        drift: None,
    })
}

/// A request whose end is announced on a status topic.
fn reporting(n: usize) -> NewImport {
    new_job(n)
        .reporting_to("status".into())
        .from_origin(serde_json::json!({"test": true}))
}

/// Starts an attempt of a held job.
async fn running(c: &tokio_postgres::Client, held: &Held) -> Attempt {
    held.start(c).await.expect("ours to start")
}

/// Whether a transition was refused: the job was not ours any more.
fn fenced<T>(done: Result<T, Fenced>) -> bool {
    matches!(done, Err(Fenced::Lost(_)))
}

/// Whether a pipeline's write was refused: the job was not ours any more.
fn lost(done: Result<(), JobError>) -> bool {
    matches!(done, Err(JobError::Lost(_)))
}

/// The one status event queued, as JSON.
async fn event_payload(c: &tokio_postgres::Client) -> serde_json::Value {
    let payload: String = c
        .query_one("SELECT payload FROM status_outbox", &[])
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&payload).unwrap()
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

/// A failed export's files are what its end leaves to do: the row says so
/// (`after_end_at` unset) until they are deleted, the retention sweep
/// keeps the job meanwhile, and doing it (after the commit, or later from
/// the sweeper) deletes them and says it is done.
#[tokio::test]
async fn a_failed_exports_files_are_left_to_do_until_they_are_deleted() {
    use ferry_actors::export::{
        self, Compression, Destination, ExportCheckpoint, ExportSpec, FileDone, Format, NewExport,
    };
    let db = TestDb::new().await;
    let mut c = migrated(&db).await;
    let path = db.path("failed.csv.gz");
    std::fs::write(&path, b"part of a file").unwrap();
    let destination = Destination::Local {
        path: path.display().to_string(),
    };
    let spec = ExportSpec {
        object: "node".into(),
        fields: vec!["id".into()],
        order: None,
        filters: None,
        format: Format::Csv,
        compression: Compression::Gzip,
        destination: destination.clone(),
        user_id: None,
        webhook_url: None,
        channel: "CLI".into(),
        bare_metadata_names: false,
        unsent_of: None,
    };
    let new: NewExport = NewJob::new(domain(), spec);
    lifecycle::create::<Work, _>(&c, &new).await.unwrap();
    let held = lifecycle::claim::<Work>(&c, "me", Duration::from_secs(30), 1)
        .await
        .unwrap()
        .remove(0);
    let attempt = running(&c, &held).await;
    let stored = ExportCheckpoint {
        rows: 1,
        files: vec![FileDone {
            location: destination,
            rows: 1,
            bytes: 14,
        }],
        ..ExportCheckpoint::default()
    };
    export::save(&c, &attempt.fence(), &stored).await.unwrap();
    let failed = held.give_up(&mut c, "the store broke").await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);

    let due = lifecycle::after_end_due::<Work>(&c, 10).await.unwrap();
    assert_eq!(due.iter().map(|j| j.id).collect::<Vec<_>>(), [failed.id]);
    c.execute(
        "UPDATE jobs SET finished_at = now() - interval '2 days'",
        &[],
    )
    .await
    .unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        lifecycle::sweep(&mut c, day, 100).await.unwrap(),
        Some(0),
        "a job whose files are not deleted yet stays"
    );
    assert!(path.exists());

    let database = DatabaseSettings {
        url: db.url.clone(),
        ..Default::default()
    };
    let ctx = ferry::service::pipelines(
        &ferry::config::Config {
            database: database.clone(),
            ..ferry::config::load(None, Vec::<(String, String)>::new()).unwrap()
        },
        pg::pool(&database).unwrap(),
    )
    .await
    .unwrap();
    let job = store::get::<Work>(&c, failed.id).await.unwrap().unwrap();
    ferry_actors::kinds::after_end(&job, &ctx, &c)
        .await
        .unwrap();
    assert!(!path.exists(), "the failed export's file is gone");
    assert!(lifecycle::after_end_due::<Work>(&c, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(lifecycle::sweep(&mut c, day, 100).await.unwrap(), Some(1));
}
