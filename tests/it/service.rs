//! `ferry serve` end to end: a real `ferry serve` process, a Kafka-protocol
//! broker (librdkafka's mock cluster, owned by the test so it can take it
//! down), real PostgreSQL, and the HTTP API over a socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry::topics::{self, Until};
use ferry_actors::service::kafka::embedded::EmbeddedBroker;
use ferry_actors::settings::KafkaSettings;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use crate::harness::{self, TestDb, DOMAIN};

pub const USERS_TOPIC: &str = "acme-users";
pub const MATCHES_TOPIC: &str = "acme-matches";
pub const NODES_STATUS: &str = "ferry-nodes-status";
pub const DLQ: &str = "ferry-dlq";

/// A mock cluster with the topics a test needs.
pub fn broker() -> EmbeddedBroker {
    let topics: Vec<String> = [
        USERS_TOPIC,
        MATCHES_TOPIC,
        NODES_STATUS,
        "ferry-matches-status",
        DLQ,
    ]
    .map(String::from)
    .to_vec();
    EmbeddedBroker::start(&topics, 2).expect("start a mock Kafka cluster")
}

/// A new API key for `domain`, made by `ferry apikey create`.
pub async fn api_key(db: &TestDb, domain: &str) -> String {
    let out = db
        .ferry(&["apikey", "create", "--domain", domain], &[])
        .await;
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A running `ferry serve`.
pub struct Serve {
    pub child: Child,
    pub http: String,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `ferry serve` on `db` and `brokers` and waits until it is ready.
    pub async fn start(db: &TestDb, brokers: &str, env: &[(&str, &str)]) -> Self {
        let serve = Self::spawn(db, brokers, env);
        serve.wait_ready().await;
        serve
    }

    /// Starts `ferry serve` without waiting for it to be ready (it is not,
    /// while the broker is down).
    pub fn spawn(db: &TestDb, brokers: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        let log = db.path(&format!("serve-{port}.log"));
        let root = db.dir.path().to_str().unwrap().to_string();
        let mut defaults: Vec<(&str, &str)> = vec![
            ("FERRY__KAFKA__BROKERS", brokers),
            ("FERRY__HTTP__LISTEN", &http),
            ("FERRY__KAFKA__SESSION_TIMEOUT", "6s"),
            ("FERRY__KAFKA__METADATA_REFRESH", "1s"),
            ("FERRY__JOBS__POLL", "500ms"),
            ("FERRY__STORAGE__LOCAL_ROOT", &root),
            ("RUST_LOG", "info"),
        ];
        defaults.extend_from_slice(env);
        let mut cmd = db.command(&["serve"], &defaults);
        cmd.stderr(std::fs::File::create(&log).unwrap())
            .stdout(std::process::Stdio::null());
        let child = cmd.spawn().expect("start ferry serve");
        Self { child, http, log }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = request(&self.http, "GET", "/health/ready", &[], "").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ferry serve not ready:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    pub async fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().expect("running") as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("ferry serve exits after SIGTERM")
            .unwrap();
        (status.code().unwrap_or(-1), self.log_text())
    }

    pub async fn kill(mut self) -> String {
        self.child.kill().await.unwrap();
        self.log_text()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; the status and the body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Small bodies come in one chunk: "len\r\nbody\r\n0\r\n\r\n".
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split_once("\r\n")
            .map(|(_, rest)| {
                rest.rsplitn(3, "\r\n0\r\n")
                    .last()
                    .unwrap_or("")
                    .trim_end()
                    .to_string()
            })
            .unwrap_or_default()
    } else {
        body
    };
    Ok((status, body))
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a producer")
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &str) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// A message's headers (key, value) and payload.
pub type Record = (Vec<(String, String)>, Vec<u8>);

/// Every message on `topic`, read from the start: once at least `want`
/// are there, every message up to the topic's end, so a duplicate sent by
/// then is among them (asserting on the count then proves "exactly once",
/// which reading `want` messages alone could not). Each message's headers
/// and payload.
pub fn read_topic(brokers: &str, topic: &str, want: usize, wait: Duration) -> Vec<Record> {
    let settings = KafkaSettings::default();
    let read = |until| topics::read(&settings, brokers, topic, until, wait).expect("read a topic");
    let mut messages = read(Until::Count(want));
    if messages.len() >= want {
        messages = read(Until::End);
    }
    messages
        .iter()
        .map(|m| {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (headers, m.payload().unwrap_or_default().to_vec())
        })
        .collect()
}

/// The status events on the nodes status topic, as JSON (see [`read_topic`]).
pub fn status_events(brokers: &str, want: usize, wait: Duration) -> Vec<Value> {
    read_topic(brokers, NODES_STATUS, want, wait)
        .into_iter()
        .map(|(_, p)| serde_json::from_slice(&p).expect("a status event is JSON"))
        .collect()
}

/// A seed-style request for a users file.
pub fn file_request(group: &str, path: &Path) -> String {
    json!({
        "domainId": DOMAIN,
        "groupId": group,
        "filePath": path.to_str().unwrap(),
        "fileName": path.file_name().unwrap().to_str().unwrap(),
        "contentType": "application/gzip",
    })
    .to_string()
}

/// POSTs an import request through the API; the job's id.
pub async fn post_import(serve: &Serve, headers: &[(&str, &str)], body: &str) -> String {
    let (status, created) = request(&serve.http, "POST", "/v1/imports", headers, body)
        .await
        .unwrap();
    assert_eq!(status, 202, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["jobId"].as_str().unwrap().to_string()
}

/// Waits until `sql` (one bigint) reaches `want`.
pub async fn wait_for(db: &TestDb, sql: &str, want: i64, wait: Duration) -> i64 {
    let client = db.client().await;
    let deadline = Instant::now() + wait;
    loop {
        let n: i64 = client
            .query_one(sql, &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(-1);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_message_becomes_a_completed_job_and_a_status_event() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 5_000, 7).unwrap();
    let serve = Serve::start(&db, &brokers, &[]).await;

    let p = producer(&brokers);
    produce(&p, USERS_TOPIC, "k1", &file_request("svc-file", &file)).await;
    let long = "x".repeat(300);
    let refs = json!({"domainId": DOMAIN, "groupId": "svc-refs", "referenceIds": ["a", "b", "a", "", &long, "c"]});
    produce(&p, USERS_TOPIC, "k2", &refs.to_string()).await;

    let events = status_events(&brokers, 2, Duration::from_secs(60));
    assert_eq!(events.len(), 2, "{events:?}\n{}", serve.log_text());
    let file_event = events.iter().find(|e| e["groupId"] == "svc-file").unwrap();
    assert_eq!(file_event["status"], "COMPLETED");
    assert_eq!(file_event["processed"], 5_000);
    assert_eq!(file_event["total"], 5_000);
    assert_eq!(file_event["domainId"], DOMAIN);
    assert_eq!(db.count("svc-file").await, 5_000);
    let refs_event = events.iter().find(|e| e["groupId"] == "svc-refs").unwrap();
    // The over-long id and the empty one are rejected (the empty one has no
    // id to list, which the flag says); "a" twice is one node.
    assert_eq!(refs_event["status"], "FAILED", "{refs_event}");
    assert_eq!(refs_event["successList"], json!(["a", "b", "c"]));
    assert_eq!(refs_event["failedList"], json!([long]));
    assert_eq!(refs_event["failedListTruncated"], true);
    assert_eq!(refs_event["successListTruncated"], false);
    assert_eq!(refs_event["rejected"], 2);
    assert_eq!(refs_event["total"], 6, "every id is counted");
    assert_eq!(db.count("svc-refs").await, 3);
    let job_id = file_event["jobId"].as_str().unwrap();
    let job: String = db
        .client()
        .await
        .query_one(
            "SELECT status FROM jobs WHERE id = $1::text::uuid",
            &[&job_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(job, "COMPLETED");
    // The writers' connections stay open for the next jobs: no more than
    // can write at once (2 jobs of 2 writers).
    let pooled = wait_for(
        &db,
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'ferry-copy-writer' AND datname = current_database()",
        1,
        Duration::ZERO,
    )
    .await;
    assert!((1..=4).contains(&pooled), "{pooled} writer connections");

    let (code, log) = serve.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_twice_makes_one_job() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 1_000, 3).unwrap();
    let serve = Serve::start(&db, &brokers, &[]).await;
    let p = producer(&brokers);
    let payload = file_request("twice", &file);
    produce(&p, USERS_TOPIC, "k", &payload).await;
    produce(&p, USERS_TOPIC, "k", &payload).await;
    // A different requestId is a new request for the same file.
    let again: Value = serde_json::from_str(&payload).unwrap();
    let mut again = again.as_object().unwrap().clone();
    again.insert("requestId".into(), json!("second-run"));
    produce(&p, USERS_TOPIC, "k", &Value::Object(again).to_string()).await;

    let events = status_events(&brokers, 2, Duration::from_secs(60));
    let jobs = wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'",
        2,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(jobs, 2, "{}", serve.log_text());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(db.count("twice").await, 1_000);
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_go_to_the_dlq_with_headers_and_the_consumer_goes_on() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let serve = Serve::start(&db, &brokers, &[]).await;
    let p = producer(&brokers);
    produce(&p, USERS_TOPIC, "bad-json", "{\"domainId\": ").await;
    produce(
        &p,
        USERS_TOPIC,
        "no-group",
        &json!({"domainId": DOMAIN, "referenceIds": ["x"]}).to_string(),
    )
    .await;
    produce(&p, USERS_TOPIC, "ssrf", &json!({"domainId": DOMAIN, "groupId": "g", "filePath": "http://169.254.169.254/latest/meta-data"}).to_string()).await;
    let good = json!({"domainId": DOMAIN, "groupId": "after-bad", "referenceIds": ["r1", "r2"]});
    produce(&p, USERS_TOPIC, "good", &good.to_string()).await;

    let events = status_events(&brokers, 1, Duration::from_secs(60));
    assert_eq!(events.len(), 1, "{}", serve.log_text());
    assert_eq!(events[0]["status"], "COMPLETED");
    assert_eq!(db.count("after-bad").await, 2);

    let letters = read_topic(&brokers, DLQ, 3, Duration::from_secs(30));
    assert_eq!(letters.len(), 3);
    let header = |h: &Vec<(String, String)>, k: &str| {
        h.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|(h, _)| header(h, "ferry-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["invalid_field", "malformed_json", "missing_field"]
    );
    for (headers, payload) in &letters {
        assert_eq!(
            header(headers, "ferry-source-topic").as_deref(),
            Some(USERS_TOPIC)
        );
        assert!(header(headers, "ferry-source-offset").is_some());
        assert!(header(headers, "ferry-source-partition").is_some());
        assert!(header(headers, "ferry-failed-at-ms").is_some());
        assert!(!header(headers, "ferry-error").unwrap().is_empty());
        assert!(!payload.is_empty());
    }
    assert!(
        letters.iter().any(|(_, p)| p == b"{\"domainId\": "),
        "the original bytes are kept"
    );

    // `ferry dlq list` shows them; a replay sends them back (and they are
    // dead-lettered again, still being bad).
    let out = db.ferry(&["dlq", "--brokers", &brokers, "list"], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("3 dead letter(s)"), "{text}");
    assert!(
        text.contains("malformed_json") && text.contains("groupId is required"),
        "{text}"
    );
    let out = db
        .ferry(
            &[
                "dlq",
                "--brokers",
                &brokers,
                "replay",
                "--topic",
                USERS_TOPIC,
            ],
            &[],
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replayed 3 message(s)"
    );
    let letters = read_topic(&brokers, DLQ, 6, Duration::from_secs(30));
    assert_eq!(letters.len(), 6);
    let (code, log) = serve.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_a_domain_only_its_own_jobs() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let other_domain = "11111111-2222-4333-8444-555555555555";
    let key = |domain: &str| {
        let db = &db;
        let domain = domain.to_string();
        async move {
            let out = db
                .ferry(&["apikey", "create", "--domain", &domain], &[])
                .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let (mine, theirs) = (key(DOMAIN).await, key(other_domain).await);
    let auth = |k: &str| format!("Bearer {k}");
    let body =
        json!({"domainId": DOMAIN, "groupId": "api", "referenceIds": ["p", "q"]}).to_string();

    let (status, _) = request(&serve.http, "POST", "/v1/imports", &[], &body)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, _) = request(
        &serve.http,
        "POST",
        "/v1/imports",
        &[("Authorization", &auth(&theirs))],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "a key cannot import into another domain");
    let (status, created) = request(
        &serve.http,
        "POST",
        "/v1/imports",
        &[("Authorization", &auth(&mine))],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{created}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["jobId"].as_str().unwrap();
    let path = format!("/v1/imports/{id}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let (status, job) = request(
            &serve.http,
            "GET",
            &path,
            &[("Authorization", &auth(&mine))],
            "",
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{job}");
        let job: Value = serde_json::from_str(&job).unwrap();
        if job["status"] == "COMPLETED" || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["rows"]["inserted"], 2, "{job}");
    crate::harness::assert_rfc3339(&job, &["/createdAt", "/startedAt", "/finishedAt"]);
    assert_eq!(job["rows"]["read"], 2, "{job}");
    assert_eq!(job["groupId"], "api", "{job}");
    assert!(
        job.get("checkpoint").is_none() && job.get("inserted_rows").is_none(),
        "the API shows its own shape, not the row: {job}"
    );
    let (status, body) = request(
        &serve.http,
        "DELETE",
        &path,
        &[("Authorization", &auth(&mine))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 409, "a finished job cannot be cancelled: {body}");

    let (status, _) = request(
        &serve.http,
        "GET",
        &path,
        &[("Authorization", &auth(&theirs))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        status, 404,
        "another domain's job does not exist for this key"
    );
    let (status, _) = request(
        &serve.http,
        "DELETE",
        &path,
        &[("Authorization", &auth(&theirs))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "nor can it be cancelled");
    let (status, page) = request(
        &serve.http,
        "GET",
        "/v1/imports",
        &[("Authorization", &auth(&theirs))],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&page).unwrap()["items"],
        json!([])
    );
    let (status, page) = request(
        &serve.http,
        "GET",
        "/v1/imports?limit=10",
        &[("X-Api-Key", &mine)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], id);

    let (status, metrics) = request(&serve.http, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        harness::metric(&metrics, "ferry_jobs{status=\"COMPLETED\"}"),
        Some(1.0),
        "{metrics}"
    );
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_the_whole_loop() {
    let db = TestDb::new().await;
    let out = db.ferry(&["demo", "--rows", "2000"], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(line("ferry-nodes-status: COMPLETED nodes"), 3, "{text}");
    assert_eq!(
        line("ferry-matches-status: COMPLETED matches processed 20,000/20,000"),
        1,
        "{text}"
    );
    assert_eq!(line("processed 2,000/2,000  inserted 2,000"), 1, "{text}");
    assert_eq!(
        line("processed 2,000/2,000  inserted 0 updated 0 unchanged 2,000"),
        1,
        "{text}"
    );
    assert!(
        text.contains("successList [\"vip-1\",\"vip-2\",\"vip-3\"]"),
        "{text}"
    );
    assert_eq!(
        line("FAILED nodes   processed 3/5  inserted 3 updated 0 unchanged 0 rejected 2  failedList [\"u00000002\",\"u00000004\"]"),
        1,
        "{text}"
    );
    let rejects = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("rejects file "))
        .expect("the rejects file is named");
    let rejects = std::fs::read_to_string(rejects).unwrap();
    assert_eq!(rejects.lines().count(), 3, "{rejects}");
    assert!(
        rejects.contains("\n3,\"has 2 fields, expected 10\",u00000002,Asha\n"),
        "{rejects}"
    );
    assert!(
        text.contains("invalid_field: domainId \"not-a-uuid\" is not a UUID"),
        "{text}"
    );
    assert!(text.contains("/metrics"), "{text}");
}

/// Cancelling a running import over the API: the job is CANCELLED at once
/// with one status event, its pipeline stops (no more rows arrive), and
/// its slot goes to the next job.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_import_is_cancelled_through_the_api() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let file = db.path("big.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 400_000, 5).unwrap();
    let slow = [
        ("FERRY__JOBS__CONCURRENCY", "1"),
        ("FERRY__IMPORT__BATCH_ROWS", "2000"),
        ("FERRY__IMPORT__WRITERS", "1"),
        ("FERRY__IMPORT__MAX_IN_FLIGHT_BATCHES", "1"),
    ];
    let serve = Serve::start(&db, &brokers, &slow).await;
    let out = db
        .ferry(&["apikey", "create", "--domain", DOMAIN], &[])
        .await;
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let auth = format!("Bearer {key}");
    let p = producer(&brokers);
    produce(&p, USERS_TOPIC, "k", &file_request("cancel-me", &file)).await;
    let loaded = "SELECT coalesce(max(processed_rows), 0) FROM jobs";
    assert!(wait_for(&db, loaded, 1, Duration::from_secs(30)).await > 0);
    let id: uuid::Uuid = db
        .client()
        .await
        .query_one("SELECT id FROM jobs", &[])
        .await
        .unwrap()
        .get(0);

    let path = format!("/v1/imports/{id}");
    let (status, body) = request(
        &serve.http,
        "DELETE",
        &path,
        &[("Authorization", &auth)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let job: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(job["status"], "CANCELLED", "{job}");
    // The next job gets the only slot once the cancelled one has stopped.
    let refs = json!({"domainId": DOMAIN, "groupId": "after-cancel", "referenceIds": ["a"]});
    produce(&p, USERS_TOPIC, "k2", &refs.to_string()).await;

    let events = status_events(&brokers, 2, Duration::from_secs(60));
    assert_eq!(events.len(), 2, "{events:?}\n{}", serve.log_text());
    let cancelled = events.iter().find(|e| e["groupId"] == "cancel-me").unwrap();
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    let next = events
        .iter()
        .find(|e| e["groupId"] == "after-cancel")
        .unwrap();
    assert_eq!(next["status"], "COMPLETED", "{next}");
    let stored = db.count("cancel-me").await;
    assert!(stored < 400_000, "the import went on to the end");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(db.count("cancel-me").await, stored, "rows still arrive");
    let (status, body) = request(&serve.http, "GET", &path, &[("Authorization", &auth)], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "CANCELLED"
    );
    let (code, log) = serve.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Stopped a job whose lease was lost."), "{log}");
}

/// Finished jobs go after `jobs.retention`, once their status event was
/// sent: the job row and its outbox row are deleted by the sweep.
#[tokio::test(flavor = "multi_thread")]
async fn finished_jobs_are_swept_after_their_retention() {
    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let short = [
        ("FERRY__JOBS__RETENTION", "1s"),
        ("FERRY__JOBS__SWEEP_INTERVAL", "300ms"),
    ];
    let migrated = db.ferry(&["migrate"], &[]).await;
    assert!(migrated.status.success());
    // Two runs of the users export's schedule, both past the retention,
    // and a pending message no job will release.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO export_runs (id, schedule, fire_at, created_at) VALUES
                 (gen_random_uuid(), 'users', now() - interval '2 days', now() - interval '2 days'),
                 (gen_random_uuid(), 'users', now() - interval '1 day', now() - interval '1 day');
             INSERT INTO pending_messages (job_id, seq, topic, message_key, payload)
                 VALUES (gen_random_uuid(), 1, 't', 'k', '{}');",
        )
        .await
        .unwrap();
    let serve = Serve::start(&db, &brokers, &short).await;
    let p = producer(&brokers);
    let refs = json!({"domainId": DOMAIN, "groupId": "swept", "referenceIds": ["a", "b"]});
    produce(&p, USERS_TOPIC, "k", &refs.to_string()).await;
    let events = status_events(&brokers, 1, Duration::from_secs(30));
    assert_eq!(events.len(), 1, "{}", serve.log_text());
    assert_eq!(events[0]["status"], "COMPLETED");

    let gone = "SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM status_outbox)";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = wait_for(&db, gone, 0, Duration::ZERO).await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} rows left\n{}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(db.count("swept").await, 2, "the rows themselves stay");
    let kept = wait_for(
        &db,
        "SELECT count(*) FROM export_runs WHERE fire_at > now() - interval '36 hours'",
        1,
        Duration::ZERO,
    )
    .await;
    let runs = wait_for(&db, "SELECT count(*) FROM export_runs", 1, Duration::ZERO).await;
    assert_eq!((runs, kept), (1, 1), "a schedule keeps its latest run");
    let orphans = wait_for(
        &db,
        "SELECT count(*) FROM pending_messages",
        0,
        Duration::ZERO,
    )
    .await;
    assert_eq!(orphans, 0);
    let (status, metrics) = request(&serve.http, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        harness::metric(&metrics, "ferry_jobs_swept_total"),
        Some(1.0),
        "{metrics}"
    );
    serve.terminate().await;
}
