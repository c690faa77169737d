//! The scheduled users export (seed 000), end to end: matching groups set
//! with `ferry groups` or the API, runs started by `ferry export users` or
//! by the schedule of two `ferry serve` instances, files read back, the
//! messages in the outbox and on the topic, and `nodes.processed` (read
//! from the group's watermark: `users_watermark`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{self, TestDb, DOMAIN};
use crate::service::{broker, read_topic, request, wait_for, Serve};

pub(crate) const TOPIC: &str = "flairbit-users";
pub(crate) const OTHER_DOMAIN: &str = "1f0e2d3c-4b5a-4697-8877-665544332211";

/// Where the tests' files go.
pub(crate) fn files(db: &TestDb) -> String {
    db.path("exports").to_str().unwrap().to_string()
}

/// Settings every run here takes, and `extra`.
pub(crate) fn env<'a>(db_files: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("FERRY__EXPORTS__LOCAL_DIR", db_files)];
    env.extend_from_slice(extra);
    env
}

pub(crate) async fn set_group(db: &TestDb, domain: &str, key: &str, kind: &str) {
    let out = db
        .ferry(
            &["groups", "set", key, "--domain", domain, "--type", kind],
            &[],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ferry export users --now ARGS`: its output and exit code.
pub(crate) async fn run_now(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (String, i32) {
    let mut all = vec!["export", "users", "--now"];
    all.extend_from_slice(args);
    let out = db.ferry(&all, env).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.code().unwrap_or(-1))
}

/// The users topic's messages in the outbox, in order.
pub(crate) async fn outbox(db: &TestDb) -> Vec<Value> {
    db.client()
        .await
        .query(
            "SELECT payload FROM status_outbox WHERE topic = $1 ORDER BY id",
            &[&TOPIC],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect()
}

/// The group's users not sent (`nodes.processed`, computed from its
/// watermark).
pub(crate) async fn unsent(db: &TestDb, group: &str) -> BTreeSet<String> {
    users(db, group, "AND NOT processed").await
}

pub(crate) async fn reference_ids(db: &TestDb, group: &str) -> BTreeSet<String> {
    users(db, group, "").await
}

/// The group's reference ids, of the rows `condition` (SQL) selects.
pub(crate) async fn users(db: &TestDb, group: &str, condition: &str) -> BTreeSet<String> {
    let sql = format!(
        "SELECT reference_id FROM nodes WHERE domain_id = $1 AND group_id = $2 {condition}"
    );
    db.client()
        .await
        .query(
            &sql,
            &[&harness::domain(), &ferry_actors::job::group_uuid(group)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A gzip CSV's header and records.
pub(crate) fn read_csv_gz(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let bytes = harness::gunzip(&std::fs::read(path).unwrap());
    let mut reader = csv::Reader::from_reader(&bytes[..]);
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Writes a plain CSV of `user_id,city` rows.
pub(crate) fn write_cities(path: &Path, rows: &[(String, String)]) {
    let mut text = String::from("user_id,city\n");
    for (id, city) in rows {
        text.push_str(&format!("{id},{city}\n"));
    }
    std::fs::write(path, text).unwrap();
}

pub(crate) async fn load_users(db: &TestDb, group: &str, rows: u64) {
    let file = db.path(&format!("{group}.csv.gz"));
    ferry::sample::write_users_csv_gz(&file, rows, 11).unwrap();
    let (r, code) = db.import(&file, group, &[], &[]).await;
    assert_eq!(code, 0, "{r}");
}

/// `ferry export users --now`, held still (SIGSTOP) from when its export
/// has taken its snapshot until `meanwhile` is done: whether the export was
/// still running then, what `meanwhile` gave, and the export's output.
pub(crate) async fn while_held<T>(
    db: &TestDb,
    env: &[(&str, &str)],
    meanwhile: impl std::future::Future<Output = T>,
) -> (bool, T, std::process::Output) {
    let mut export = db.command(&["export", "users", "--now"], env);
    export
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let export = export.spawn().unwrap();
    let reading = wait_for(
        db,
        "SELECT count(*) FROM jobs WHERE status = 'RUNNING' AND checkpoint ? 'snapshot'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(reading, 1, "the export took its snapshot");
    let pid = export.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let done = meanwhile.await;
    let still = wait_for(
        db,
        "SELECT count(*) FROM jobs WHERE status = 'RUNNING' AND kind LIKE 'users_%'",
        1,
        Duration::ZERO,
    )
    .await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = export.wait_with_output().await.unwrap();
    (still == 1, done, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cost_based_group_sends_its_unsent_users_once_and_its_file_imports_back() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(&dir, &[]);
    load_users(&db, "mentors", 5_000).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;

    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    let messages = outbox(&db).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["domainId"], DOMAIN);
    assert_eq!(m["groupId"], "mentors");
    assert_eq!(m["groupType"], "COST_BASED");
    assert_eq!(m["contentType"], "text/csv");
    assert_eq!(m["rows"], 5_000);
    let path = m["filePath"].as_str().unwrap().to_string();
    assert!(path.ends_with(m["fileName"].as_str().unwrap()), "{m}");
    let (header, rows) = read_csv_gz(Path::new(&path));
    let mut keys: Vec<String> = ferry::sample::USER_METADATA_KEYS.map(String::from).to_vec();
    keys.sort();
    assert_eq!(header[0], "reference_id");
    assert_eq!(header[1..], keys[..], "the metadata keys, by name");
    let sent: BTreeSet<String> = rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(rows.len(), sent.len(), "each user once");
    assert_eq!(sent, reference_ids(&db, "mentors").await);
    assert_eq!(unsent(&db, "mentors").await.len(), 0, "all marked sent");

    // Nothing new: nothing goes.
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no new users"), "{out}");
    assert_eq!(outbox(&db).await.len(), 1);

    // The file imports as it is, into another group, unchanged.
    let (r, code) = db.import(Path::new(&path), "mentors-copy", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(db.digest("mentors").await, db.digest("mentors-copy").await);

    // An import that changes 10 users makes the next run send exactly them.
    let changed: Vec<(String, String)> = sent
        .iter()
        .step_by(97)
        .take(10)
        .map(|id| (id.clone(), "Atlantis".to_string()))
        .collect();
    let cities = db.path("cities.csv");
    write_cities(&cities, &changed);
    let (r, code) = db.import(&cities, "mentors", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    let ids: BTreeSet<String> = changed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(unsent(&db, "mentors").await, ids);
    let (out, code) = run_now(&db, &["--domain", DOMAIN, "--group", "mentors"], &env).await;
    assert_eq!(code, 0, "{out}");
    let messages = outbox(&db).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["rows"], 10);
    let (header, rows) = read_csv_gz(Path::new(messages[1]["filePath"].as_str().unwrap()));
    assert_eq!(header, ["reference_id", "city"]);
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect::<Vec<_>>(),
        changed
    );
    assert_eq!(unsent(&db, "mentors").await.len(), 0);

    // The same metadata again is no change; the 10 changed back are one.
    let (r, code) = db
        .import(&db.path("mentors.csv.gz"), "mentors", &[], &[])
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(unsent(&db, "mentors").await, ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_cost_based_group_sends_its_ids_in_numbered_parts_within_the_limit() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(&dir, &[("FERRY__EXPORTS__USERS__MAX_IDS_PER_MESSAGE", "7")]);
    load_users(&db, "mentees", 100).await;
    set_group(&db, DOMAIN, "mentees", "non-cost-based").await;

    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    let messages = outbox(&db).await;
    assert_eq!(messages.len(), 15, "100 ids, 7 a message");
    let mut ids = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["part"], i + 1);
        assert_eq!(m["parts"], 15);
        assert_eq!(m["groupType"], "NON_COST_BASED");
        assert_eq!(m["runId"], messages[0]["runId"]);
        let part = m["referenceIds"].as_array().unwrap();
        assert!(part.len() <= 7, "{m}");
        ids.extend(part.iter().map(|v| v.as_str().unwrap().to_string()));
    }
    let sorted: Vec<String> = reference_ids(&db, "mentees").await.into_iter().collect();
    assert_eq!(ids, sorted, "every id once, in order");
    assert_eq!(unsent(&db, "mentees").await.len(), 0);
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "no file for a NON_COST_BASED group");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_group_configs_skip_only_themselves() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(&dir, &[]);
    load_users(&db, "mentors", 50).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    set_group(&db, DOMAIN, "ghosts", "cost-based").await;
    set_group(&db, OTHER_DOMAIN, "mentees", "non-cost-based").await;
    // A type another tool wrote, which ferry does not know.
    db.client()
        .await
        .execute(
            "INSERT INTO matching_groups (domain_id, group_key, group_id, group_type)
             VALUES ($1, 'premium', $2, 'PREMIUM')",
            &[
                &harness::domain(),
                &ferry_actors::job::group_uuid("premium"),
            ],
        )
        .await
        .unwrap();
    let bad = db
        .ferry(
            &[
                "groups", "set", "x", "--domain", DOMAIN, "--type", "premium",
            ],
            &[],
        )
        .await;
    assert!(!bad.status.success(), "an unknown type is refused");

    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("skipped {DOMAIN}/premium: unknown group type")),
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped {DOMAIN}/ghosts: no new users")),
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped {OTHER_DOMAIN}/mentees: no new users")),
        "{out}"
    );
    assert_eq!(outbox(&db).await.len(), 1, "the good group went");
    assert_eq!(unsent(&db, "mentors").await.len(), 0);
    let run = db
        .client()
        .await
        .query_one("SELECT started, overlapped, invalid FROM export_runs", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            run.get::<_, i32>(0),
            run.get::<_, i32>(1),
            run.get::<_, i32>(2)
        ),
        (1, 0, 1)
    );
    let (out, code) = run_now(&db, &["--domain", DOMAIN, "--group", "nobody"], &env).await;
    assert_ne!(code, 0);
    assert!(out.contains("no enabled group `nobody`"), "{out}");
    let list = db.ferry(&["groups", "list"], &[]).await;
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("PREMIUM (unknown)"), "{list}");

    let shown = db.ferry(&["schedules"], &[]).await;
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("users export: `0 20 23 * * *` in Asia/Kolkata"),
        "{shown}"
    );
    assert_eq!(shown.matches("next: ").count(), 5, "{shown}");
    assert!(shown.contains("T23:20:00+05:30"), "{shown}");
    assert!(
        shown.contains("last run: none yet"),
        "a run by hand is not the schedule's"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.contains("mentors") && l.contains("COMPLETED") && l.contains(" 50 ")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_export_still_runs_is_not_started_again() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(&dir, &[]);
    load_users(&db, "mentors", 10).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    // Queued for `ferry serve`, which is not running: it waits.
    let queued = db.ferry(&["export", "users"], &env).await;
    assert!(queued.status.success());
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "skipped {DOMAIN}/mentors: still running from before"
        )),
        "{out}"
    );
    let overlapped: Vec<i32> = db
        .client()
        .await
        .query(
            "SELECT overlapped FROM export_runs ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(overlapped, [0, 1]);
    assert_eq!(unsent(&db, "mentors").await.len(), 10, "nothing went twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_groups_api_is_per_domain_and_checks_its_input() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let key = crate::service::api_key(&db, DOMAIN).await;
    let other = crate::service::api_key(&db, OTHER_DOMAIN).await;
    let call = |key: &str, method: &'static str, path: &str, body: Value| {
        let (http, key, path) = (serve.http.clone(), key.to_string(), path.to_string());
        async move {
            let auth = format!("Bearer {key}");
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            let headers = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ];
            let (status, text) = request(&http, method, &path, &headers, &body)
                .await
                .unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let (status, group) = call(
        &key,
        "PUT",
        "/v1/groups/mentors",
        json!({"groupType": "cost_based"}),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["groupType"], "COST_BASED");
    assert_eq!(group["enabled"], true);
    assert_eq!(group["domainId"], DOMAIN);
    crate::harness::assert_rfc3339(&group, &["/updatedAt"]);
    let (status, got) = call(&key, "GET", "/v1/groups/mentors", Value::Null).await;
    assert_eq!((status, &got["groupKey"]), (200, &json!("mentors")));
    let (status, _) = call(&other, "GET", "/v1/groups/mentors", Value::Null).await;
    assert_eq!(status, 404, "another domain's group is not there");
    let (status, list) = call(&other, "GET", "/v1/groups", Value::Null).await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    let (status, err) = call(
        &key,
        "PUT",
        "/v1/groups/mentors",
        json!({"groupType": "PREMIUM"}),
    )
    .await;
    assert_eq!((status, &err["code"]), (422, &json!("invalid_group_type")));
    assert_eq!(
        err["details"]["allowed"],
        json!(["COST_BASED", "NON_COST_BASED"])
    );
    let (status, err) = call(
        &key,
        "PUT",
        "/v1/groups/mentors",
        json!({"groupType": "COST_BASED", "bucket": "x"}),
    )
    .await;
    assert_eq!((status, &err["code"]), (400, &json!("invalid_request")));
    let (status, _) = call(
        &key,
        "PUT",
        "/v1/groups/%01",
        json!({"groupType": "COST_BASED"}),
    )
    .await;
    assert_eq!(status, 422, "a control character in a key");

    // What the group has been sent, and a reset.
    load_users(&db, "mentors", 50).await;
    let dir = files(&db);
    let (out, code) = run_now(&db, &[], &env(&dir, &[])).await;
    assert_eq!(code, 0, "{out}");
    let (status, got) = call(&key, "GET", "/v1/groups/mentors", Value::Null).await;
    assert_eq!((status, &got["unsent"]), (200, &json!(0)), "{got}");
    assert!(got["sentAt"].is_string(), "{got}");
    let (status, _) = call(&other, "POST", "/v1/groups/mentors/reset", Value::Null).await;
    assert_eq!(status, 404, "another domain's group is not reset");
    let (status, got) = call(&key, "POST", "/v1/groups/mentors/reset", Value::Null).await;
    assert_eq!(
        (status, &got["unsent"], &got["sentAt"]),
        (200, &json!(50), &Value::Null),
        "{got}"
    );
    let (status, list) = call(&key, "GET", "/v1/groups", Value::Null).await;
    assert_eq!((status, &list["items"][0]["unsent"]), (200, &json!(50)));

    let (status, _) = call(&other, "DELETE", "/v1/groups/mentors", Value::Null).await;
    assert_eq!(status, 404);
    let (status, _) = call(&key, "DELETE", "/v1/groups/mentors", Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = call(&key, "GET", "/v1/groups/mentors", Value::Null).await;
    assert_eq!(status, 404);
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_changed_while_the_export_reads_stays_unsent() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(
        &dir,
        &[
            ("FERRY__EXPORTS__FETCH_ROWS", "100"),
            ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ],
    );
    load_users(&db, "mentors", 100_000).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    // Held still while an import changes 10 of its users.
    let all: Vec<String> = reference_ids(&db, "mentors").await.into_iter().collect();
    let changed: Vec<(String, String)> = all
        .iter()
        .step_by(9_001)
        .take(10)
        .map(|id| (id.clone(), "Atlantis".to_string()))
        .collect();
    let cities = db.path("cities.csv");
    write_cities(&cities, &changed);
    let (still, (r, code), out) =
        while_held(&db, &env, db.import(&cities, "mentors", &[], &[])).await;
    assert_eq!(code, 0, "{r}");
    assert!(still, "the export had not ended when the import ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The file has the users as the snapshot saw them; the 10 changed
    // since are not marked, and go next time, changed.
    let messages = outbox(&db).await;
    let (header, rows) = read_csv_gz(Path::new(messages[0]["filePath"].as_str().unwrap()));
    assert_eq!(rows.len(), 100_000);
    let city = header.iter().position(|h| h == "city").unwrap();
    let ids: BTreeSet<String> = changed.iter().map(|(id, _)| id.clone()).collect();
    for row in rows.iter().filter(|r| ids.contains(&r[0])) {
        assert_ne!(row[city], "Atlantis", "read before the change");
    }
    let left = unsent(&db, "mentors").await;
    assert_eq!(left.len(), ids.len(), "only the changed users are unsent");
    assert_eq!(left, ids);
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    let messages = outbox(&db).await;
    let (_, rows) = read_csv_gz(Path::new(messages[1]["filePath"].as_str().unwrap()));
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect::<Vec<_>>(),
        changed
    );
    assert_eq!(unsent(&db, "mentors").await.len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tick_runs_once_across_two_instances_and_every_message_arrives_once() {
    let db = TestDb::new().await;
    let kafka = broker();
    kafka.create_topic(TOPIC).unwrap();
    let brokers = kafka.bootstrap_servers().to_string();
    load_users(&db, "mentors", 300).await;
    load_users(&db, "mentees", 50).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    set_group(&db, DOMAIN, "mentees", "non-cost-based").await;
    let dir = files(&db);
    let env = env(
        &dir,
        &[
            ("FERRY__EXPORTS__USERS__SCHEDULE", "*/2 * * * * *"),
            ("FERRY__EXPORTS__USERS__TIMEZONE", "UTC"),
            ("FERRY__EXPORTS__USERS__MAX_IDS_PER_MESSAGE", "20"),
        ],
    );
    let a = Serve::start(&db, &brokers, &env).await;
    let b = Serve::start(&db, &brokers, &env).await;
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        2,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 2, "{}", a.log_text());
    // A new user goes at the next tick, alone.
    let newcomer = db.path("newcomer.csv");
    std::fs::write(&newcomer, "user_id,city\nnewcomer-1,Pune\n").unwrap();
    let (r, code) = db.import(&newcomer, "mentees", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        3,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 3);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let records = read_topic(&brokers, TOPIC, 5, Duration::from_secs(60));
    let messages: Vec<Value> = records
        .iter()
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(messages.len(), 5, "1 file + 3 parts + 1 part: {messages:?}");
    let file = messages
        .iter()
        .find(|m| m["groupType"] == "COST_BASED")
        .unwrap();
    assert_eq!(file["rows"], 300);
    let mut ids: Vec<String> = messages
        .iter()
        .filter(|m| m["groupType"] == "NON_COST_BASED")
        .flat_map(|m| m["referenceIds"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = reference_ids(&db, "mentees").await.into_iter().collect();
    expected.sort();
    assert_eq!(ids, expected, "every mentee once");

    // One run per tick, each 2 s after the last; no group started twice.
    let client = db.client().await;
    let fired: Vec<f64> = client
        .query(
            "SELECT extract(epoch FROM fire_at)::float8 FROM export_runs
             WHERE schedule = 'users' ORDER BY fire_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(fired.len() >= 4, "{fired:?}");
    assert!(
        fired.windows(2).all(|w| (w[1] - w[0] - 2.0).abs() < 1e-6),
        "a run for each tick: {fired:?}"
    );
    let twice: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT FROM jobs WHERE kind LIKE 'users_%'
             GROUP BY spec -> 'users' ->> 'run_id', spec -> 'users' ->> 'group_key'
             HAVING count(*) > 1) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 0);
    let (code_a, _) = a.terminate().await;
    let (code_b, _) = b.terminate().await;
    assert_eq!((code_a, code_b), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_outlives_kill_9_and_its_message_waits_out_the_broker() {
    let db = TestDb::new().await;
    let kafka = broker();
    kafka.create_topic(TOPIC).unwrap();
    let brokers = kafka.bootstrap_servers().to_string();
    load_users(&db, "mentors", 200_000).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    let dir = files(&db);
    let env = env(
        &dir,
        &[
            ("FERRY__JOBS__LEASE", "1s"),
            ("FERRY__EXPORTS__FETCH_ROWS", "200"),
            ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
            ("FERRY__EXPORTS__PART_BYTES", "5242880"),
            ("FERRY__KAFKA__SEND_TIMEOUT", "2s"),
            ("FERRY__EXPORTS__USERS__ENABLED", "false"),
        ],
    );
    let first = Serve::start(&db, &brokers, &env).await;
    let queued = db.ferry(&["export", "users"], &env).await;
    assert!(queued.status.success());
    let reading = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE status = 'RUNNING' AND checkpoint ? 'snapshot'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(reading, 1, "the export began");
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().await;
    let ended = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        1,
        Duration::ZERO,
    )
    .await;
    assert_eq!(ended, 0, "killed mid-run");

    kafka.refuse_writes();
    let second = Serve::spawn(&db, &brokers, &env);
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(done, 1, "{}", second.log_text());
    let waiting = wait_for(
        &db,
        "SELECT count(*) FROM status_outbox WHERE sent_at IS NULL",
        1,
        Duration::ZERO,
    )
    .await;
    assert_eq!(waiting, 1, "the message waits for the broker");
    // Sends that keep failing open the broker's circuit breaker.
    let tries = wait_for(
        &db,
        "SELECT coalesce(max(attempts), 0)::bigint FROM status_outbox WHERE sent_at IS NULL",
        3,
        Duration::from_secs(60),
    )
    .await;
    assert!(tries >= 3, "{tries}");
    let (_, metrics) = request(&second.http, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    let opened = harness::metric(&metrics, "ferry_circuit_opened_total{service=\"broker\"}");
    assert!(opened >= Some(1.0), "{metrics}");
    kafka.accept_writes();

    let records = read_topic(&brokers, TOPIC, 1, Duration::from_secs(60));
    assert_eq!(records.len(), 1, "the message, once");
    let message: Value = serde_json::from_slice(&records[0].1).unwrap();
    let (_, rows) = read_csv_gz(Path::new(message["filePath"].as_str().unwrap()));
    let ids: BTreeSet<String> = rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        (rows.len(), ids.len()),
        (200_000, 200_000),
        "each user once"
    );
    assert_eq!(ids, reference_ids(&db, "mentors").await);
    assert_eq!(unsent(&db, "mentors").await.len(), 0, "all marked once");
    second.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_missed_while_no_instance_ran_runs_once_when_one_comes_back() {
    let db = TestDb::new().await;
    let kafka = broker();
    load_users(&db, "mentors", 20).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    // The schedule last ran three hours ago; it fires hourly.
    let out = db.ferry(&["migrate"], &[]).await;
    assert!(out.status.success());
    db.client()
        .await
        .execute(
            "INSERT INTO export_runs (id, schedule, fire_at)
             VALUES (gen_random_uuid(), 'users', date_trunc('hour', now()) - interval '3 hours')",
            &[],
        )
        .await
        .unwrap();
    let dir = files(&db);
    let hourly = [
        ("FERRY__EXPORTS__USERS__SCHEDULE", "0 0 * * * *"),
        ("FERRY__EXPORTS__USERS__TIMEZONE", "UTC"),
    ];
    let none = env(
        &dir,
        &[
            hourly[0],
            hourly[1],
            ("FERRY__EXPORTS__USERS__CATCH_UP", "none"),
        ],
    );
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &none).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = wait_for(&db, "SELECT count(*) FROM export_runs", 2, Duration::ZERO).await;
    assert_eq!(runs, 1, "catch_up = none waits for the next tick");
    serve.terminate().await;

    let latest = env(&dir, &hourly);
    let a = Serve::start(&db, kafka.bootstrap_servers(), &latest).await;
    let b = Serve::start(&db, kafka.bootstrap_servers(), &latest).await;
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 1, "{}", a.log_text());
    let missed = db
        .client()
        .await
        .query_one(
            "SELECT count(*), min(fire_at) = date_trunc('hour', now()) FROM export_runs
             WHERE fire_at > date_trunc('hour', now()) - interval '3 hours'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(missed.get::<_, i64>(0), 1, "the latest missed tick, once");
    assert!(missed.get::<_, bool>(1));
    assert_eq!(unsent(&db, "mentors").await.len(), 0);
    a.terminate().await;
    b.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_broker_refuses_for_good_goes_to_the_dead_letter_topic() {
    let db = TestDb::new().await;
    let kafka = broker();
    kafka.create_topic(TOPIC).unwrap();
    kafka.create_topic("flairbit-dlq").unwrap();
    let brokers = kafka.bootstrap_servers().to_string();
    load_users(&db, "mentees", 30).await;
    set_group(&db, DOMAIN, "mentees", "non-cost-based").await;
    let dir = files(&db);
    let env = env(
        &dir,
        &[
            ("FERRY__EXPORTS__USERS__ENABLED", "false"),
            ("FERRY__EXPORTS__USERS__MAX_IDS_PER_MESSAGE", "10"),
        ],
    );
    let serve = Serve::start(&db, &brokers, &env).await;
    kafka.refuse_for_good(1);
    let queued = db.ferry(&["export", "users"], &env).await;
    assert!(queued.status.success());
    let sent = wait_for(
        &db,
        "SELECT count(*) FROM status_outbox WHERE sent_at IS NOT NULL",
        3,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(sent, 3, "{}", serve.log_text());

    // Each id is on the users topic or, with the reason, in the DLQ: once.
    let delivered = read_topic(&brokers, TOPIC, 0, Duration::from_secs(5));
    let dead = read_topic(&brokers, "flairbit-dlq", 1, Duration::from_secs(30));
    assert!(!dead.is_empty(), "{}", serve.log_text());
    assert_eq!(delivered.len() + dead.len(), 3);
    for (headers, _) in &dead {
        let header = |k: &str| {
            headers
                .iter()
                .find(|(h, _)| h == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("ferry-reason"), Some("too_large"), "{headers:?}");
        assert_eq!(header("ferry-source-topic"), Some(TOPIC));
    }
    let mut ids: Vec<String> = delivered
        .iter()
        .chain(&dead)
        .map(|(_, p)| serde_json::from_slice::<Value>(p).unwrap())
        .flat_map(|m| m["referenceIds"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let expected: Vec<String> = reference_ids(&db, "mentees").await.into_iter().collect();
    assert_eq!(ids, expected);
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_arrives_after_the_tick_is_in_the_file() {
    let db = TestDb::new().await;
    let kafka = broker();
    load_users(&db, "mentors", 20).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    let dir = files(&db);
    let env = env(&dir, &[("FERRY__EXPORTS__USERS__ENABLED", "false")]);
    // The tick queues the group's export; before it reads, a user comes
    // with a key no other user has.
    let queued = db.ferry(&["export", "users"], &env).await;
    assert!(queued.status.success());
    let newcomer = db.path("newcomer.csv");
    std::fs::write(&newcomer, "user_id,nickname\nnew-1,Neo\n").unwrap();
    let (r, code) = db.import(&newcomer, "mentors", &[], &[]).await;
    assert_eq!(code, 0, "{r}");

    let serve = Serve::start(&db, kafka.bootstrap_servers(), &env).await;
    let done = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind LIKE 'users_%' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 1, "{}", serve.log_text());
    let messages = outbox(&db).await;
    let (header, rows) = read_csv_gz(Path::new(messages[0]["filePath"].as_str().unwrap()));
    let nickname = header.iter().position(|h| h == "nickname");
    let nickname = nickname.unwrap_or_else(|| panic!("no nickname column: {header:?}"));
    let row = rows.iter().find(|r| r[0] == "new-1").expect("the newcomer");
    assert_eq!(row[nickname], "Neo");
    assert_eq!(rows.len(), 21);
    assert_eq!(unsent(&db, "mentors").await.len(), 0);
    serve.terminate().await;
}
