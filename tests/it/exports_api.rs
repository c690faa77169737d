//! The exports API of `ferry serve` (seeds 001 and 002) against real
//! PostgreSQL, a real S3 server (SigV4 verified) and the Kafka-protocol
//! broker: create, poll, fetch the presigned URL and the signed download,
//! the event, the webhook, tenancy, limits, JWTs, delete, retention.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry::locals3::LocalS3;
use ferry_actors::export::token::Signer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{gunzip, TestDb, DOMAIN};
use crate::service::{api_key, broker, read_topic, Serve};

pub(crate) const OTHER: &str = "11111111-2222-4333-8444-555555555555";
const SIGNING_KEY: &str = "test-signing-key";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn load_users(db: &TestDb, rows: u64) {
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, rows, 5).unwrap();
    let (r, code) = db.import(&file, "api-src", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
}

/// The exports API's settings: the S3 server, a signing key, and `extra`.
fn settings(s3: &LocalS3, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = s3.env();
    env.push((
        "FERRY__HTTP__SIGNING_KEYS".into(),
        format!("[\"{SIGNING_KEY}\"]"),
    ));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A `ferry serve` with the exports API's settings, ready.
pub(crate) async fn serve(
    db: &TestDb,
    brokers: &str,
    s3: &LocalS3,
    extra: &[(&str, &str)],
) -> Serve {
    Serve::start(db, brokers, &pairs(&settings(s3, extra))).await
}

pub(crate) struct Api {
    base: String,
    auth: String,
}

impl Api {
    pub(crate) fn new(serve: &Serve, key: &str) -> Self {
        Self {
            base: format!("http://{}", serve.http),
            auth: format!("Bearer {key}"),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = client()
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
        };
        (status, headers, json)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(reqwest::Method::GET, path, None, &[]).await;
        (s, v)
    }

    pub(crate) async fn post(
        &self,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(reqwest::Method::POST, "/v1/exports", Some(body), headers)
            .await
    }

    /// Polls an export until it ends; the progress seen on the way.
    pub(crate) async fn wait(&self, id: &str) -> (Value, Vec<u64>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let (status, export) = self.get(&format!("/v1/exports/{id}")).await;
            assert_eq!(status, 200, "{export}");
            seen.push(export["progress"]["rows"].as_u64().unwrap());
            if ["DONE", "ERROR", "CANCELLED"].contains(&export["status"].as_str().unwrap()) {
                return (export, seen);
            }
            assert!(Instant::now() < deadline, "{export}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The domain's users as `reference_id,city` CSV lines, in reference order.
async fn expected_csv(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT reference_id || ',' || (metadata->>'city') FROM nodes WHERE domain_id = $1 ORDER BY reference_id",
            &[&crate::harness::domain()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn csv_lines(gz: &[u8]) -> Vec<String> {
    let text = String::from_utf8(gunzip(gz)).unwrap();
    text.lines().skip(1).map(String::from).collect()
}

fn request(format: &str) -> Value {
    json!({
        "exported_object": "node",
        "parameters": {"fields": ["reference_id", "metadata.city"], "order": "reference_id", "format": format, "compression": "gzip"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_from_request_to_presigned_url_download_and_event() {
    let db = TestDb::new().await;
    load_users(&db, 5_000).await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let s3 = LocalS3::start().unwrap();
    let serve = serve(&db, &brokers, &s3, &[]).await;
    let (mine, theirs) = (api_key(&db, DOMAIN).await, api_key(&db, OTHER).await);
    let api = Api::new(&serve, &mine);

    let (status, headers, created) = api
        .post(request("csv"), &[("idempotency-key", "export-1")])
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], format!("/v1/exports/{id}").as_str());
    assert_eq!(created["object"], "export");
    assert_eq!(created["status"], "SCHEDULED");
    assert_eq!(created["channel"], "API");
    assert_eq!(created["parameters"]["order"], "reference_id");
    let (status, _, again) = api
        .post(request("csv"), &[("idempotency-key", "export-1")])
        .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ACCEPTED, &created["id"]),
        "a retry is the same export"
    );

    let (done, progress) = api.wait(&id).await;
    assert_eq!(done["status"], "DONE", "{done}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert_eq!(done["progress"], json!({"rows": 5000, "total": 5000}));
    let result = &done["result"];
    assert_eq!(result["rows"], 5000);
    assert!(result["data_as_of"].as_str().unwrap().ends_with('Z'));
    let want = expected_csv(&db).await;

    // The presigned URL, with a plain HTTP client and no key.
    let url = result["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    let body = client().get(url).send().await.unwrap();
    assert_eq!(body.status(), 200);
    let gz = body.bytes().await.unwrap();
    assert_eq!(csv_lines(&gz), want);
    assert_eq!(result["bytes"], gz.len() as u64);
    // Signed afresh on every read.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, later) = api.get(&format!("/v1/exports/{id}")).await;
    assert_ne!(later["result"]["url"], result["url"]);

    // The download link: whole, a range, a redirect; no key needed.
    let download = result["download_url"].as_str().unwrap().to_string();
    let whole = client().get(&download).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "application/gzip");
    assert_eq!(whole.bytes().await.unwrap(), gz);
    let part = client()
        .get(&download)
        .header("range", "bytes=10-109")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-109/{}", gz.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), gz[10..110]);
    // RFC 9110: another unit, bad syntax, several ranges are ignored; an
    // end past the file (even past 2^64) clamps; a start past it is 416.
    for ignored in ["items=0-1", "bytes=abc", "bytes=0-1,5-6", "bytes=9-2"] {
        let whole = client()
            .get(&download)
            .header("range", ignored)
            .send()
            .await
            .unwrap();
        assert_eq!(whole.status(), 200, "{ignored}");
        assert_eq!(whole.bytes().await.unwrap(), gz, "{ignored}");
    }
    let tail = client()
        .get(&download)
        .header("range", "bytes=10-99999999999999999999999")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-range"],
        format!("bytes 10-{}/{}", gz.len() - 1, gz.len()).as_str()
    );
    assert_eq!(tail.bytes().await.unwrap(), gz[10..]);
    let past = client()
        .get(&download)
        .header("range", format!("bytes={}-", gz.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.json::<Value>().await.unwrap()["code"], "bad_range");
    let redirect = client()
        .get(format!("{download}&redirect=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 303);
    let to = redirect.headers()["location"].to_str().unwrap();
    assert_eq!(
        client()
            .get(to)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        gz
    );
    // Tampered, expired, another export's: 401 alike.
    let signer = Signer::new(vec![SIGNING_KEY.as_bytes().to_vec()]);
    let export_id: Uuid = id.parse().unwrap();
    let base = download.split("?token=").next().unwrap();
    let tampered = download.replacen("download?token=", "download?token=0", 1);
    let expired = format!("{base}?token={}", signer.sign(export_id, 0, 1));
    let foreign = format!(
        "{base}?token={}",
        signer.sign(Uuid::now_v7(), 0, u64::MAX / 2)
    );
    let forged = format!(
        "{base}?token={}",
        Signer::new(vec![b"guess".to_vec()]).sign(export_id, 0, u64::MAX / 2)
    );
    // Another spelling of the genuine token: the file index as `00`.
    let respelled = {
        let (head, tail) = download.split_once("?token=").unwrap();
        let mut fields: Vec<String> = tail.split('.').map(String::from).collect();
        fields[1] = format!("0{}", fields[1]);
        format!("{head}?token={}", fields.join("."))
    };
    for bad in [
        tampered,
        expired,
        foreign,
        forged,
        respelled,
        base.to_string(),
    ] {
        let r = client().get(&bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }

    // The event, once (read to the end of the topic).
    let events = read_topic(
        &brokers,
        "ferry-exports-completed",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_slice(&events[0].1).unwrap();
    assert_eq!(event["exportId"], id.as_str());
    assert_eq!(event["status"], "DONE");
    assert_eq!(event["rows"], 5000);
    assert_eq!(event["domainId"], DOMAIN);
    assert_eq!(event["files"][0]["bucket"], "ferry-exports");
    assert!(event["files"][0]["key"]
        .as_str()
        .unwrap()
        .ends_with(".csv.gz"));
    assert!(event.get("url").is_none(), "keys, not URLs");

    // Another domain sees nothing of it.
    let other = Api::new(&serve, &theirs);
    assert_eq!(other.get(&format!("/v1/exports/{id}")).await.0, 404);
    let (status, _, _) = other
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/exports/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 404);
    let (status, page) = other.get("/v1/exports").await;
    assert_eq!((status, &page["total"]), (StatusCode::OK, &json!(0)));
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_and_order_and_bad_requests_get_a_clear_400() {
    let db = TestDb::new().await;
    load_users(&db, 100).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &[]).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let mut ids = Vec::new();
    for format in ["csv", "json", "jsonl"] {
        let (status, _, created) = api.post(request(format), &[]).await;
        assert_eq!(status, 202, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(api.wait(id).await.0["status"], "DONE");
    }
    let (status, page) = api.get("/v1/exports?limit=2&page=1&order=created_at").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (
            page["object"].as_str(),
            page["data_ref"].as_str(),
            page["total"].as_i64()
        ),
        (Some("list"), Some("exports"), Some(3))
    );
    let first: Vec<&str> = page["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[0].as_str(), ids[1].as_str()]);
    let (_, page2) = api.get("/v1/exports?limit=2&page=2&order=created_at").await;
    assert_eq!(page2["exports"][0]["id"], ids[2].as_str());
    let (_, newest) = api.get("/v1/exports?limit=1").await;
    assert_eq!(
        newest["exports"][0]["id"],
        ids[2].as_str(),
        "newest first by default"
    );
    let (_, done) = api.get("/v1/exports?status=DONE").await;
    assert_eq!(done["total"], 3);

    let bad = |body: Value| {
        let api = &api;
        async move { api.post(body, &[]).await }
    };
    let cases = [
        (
            json!({"exported_object": "nope"}),
            "invalid_exported_object",
        ),
        (
            json!({"exported_object": "node", "paramters": {}}),
            "invalid_request",
        ),
        (
            json!({"exported_object": "node", "parameters": {"fields": ["nope"]}}),
            "invalid_export_fields",
        ),
        (
            json!({"exported_object": "node", "parameters": {"format": "xml"}}),
            "invalid_format",
        ),
        (
            json!({"exported_object": "node", "parameters": {"order": "-nope"}}),
            "invalid_order",
        ),
        (
            json!({"exported_object": "node", "parameters": {"filters": {"reference_id": {"conditions": {"$like": ["a"]}}}}}),
            "unknown_operator",
        ),
        (
            json!({"exported_object": "node", "parameters": {"filters": {"created_at": {"conditions": {"$after": ["soon"]}}}}}),
            "invalid_value",
        ),
        (
            json!({"exported_object": "node", "webhook_url": "http://127.0.0.1:9/hook"}),
            "invalid_webhook_url",
        ),
        (
            json!({"exported_object": "node", "webhook_url": "https://169.254.169.254/x"}),
            "invalid_webhook_url",
        ),
        // Loopback in disguise, and a header injection to a public host.
        (
            json!({"exported_object": "node", "webhook_url": "https://[::127.0.0.1]/"}),
            "invalid_webhook_url",
        ),
        (
            json!({"exported_object": "node", "webhook_url": "https://[64:ff9b::7f00:1]/"}),
            "invalid_webhook_url",
        ),
        (
            json!({"exported_object": "node", "webhook_url": "https://8.8.8.8/ok\r\nX-Injected: 1"}),
            "invalid_webhook_url",
        ),
    ];
    for (body, code) in cases {
        let (status, _, answer) = bad(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], code, "{body}: {answer}");
        if code == "invalid_webhook_url" {
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(
                message.starts_with("webhook_url: "),
                "names the field: {answer}"
            );
        }
    }
    let (_, _, fields) =
        bad(json!({"exported_object": "node", "parameters": {"fields": ["nope"]}})).await;
    assert!(
        fields["details"]["allowed"]
            .as_array()
            .unwrap()
            .contains(&json!("reference_id")),
        "{fields}"
    );
    let raw = client()
        .post(format!("{}/v1/exports", api.base))
        .header("authorization", &api.auth)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    for path in [
        "/v1/exports?limit=0",
        "/v1/exports?limit=101",
        "/v1/exports?page=0",
        "/v1/exports?page=1000001",
        "/v1/exports?page=9223372036854775807",
        "/v1/exports?order=size",
        "/v1/exports?status=RUNNING",
        "/v1/exports?limit=x",
    ] {
        assert_eq!(api.get(path).await.0, 400, "{path}");
    }
    assert_eq!(api.get("/v1/exports/not-an-id").await.0, 404);
    let (total, _) = (api.get("/v1/exports").await.1["total"].clone(), ());
    assert_eq!(total, 3, "no bad request made an export");
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn creations_are_rate_limited_per_caller_and_capped_per_domain() {
    let db = TestDb::new().await;
    load_users(&db, 10).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let limits = [
        ("FERRY__EXPORTS__CREATE_PER_MINUTE", "2"),
        ("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "50"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &limits).await;
    let (a, b) = (api_key(&db, DOMAIN).await, api_key(&db, DOMAIN).await);
    let api = Api::new(&serve, &a);
    let keyed = [("Idempotency-Key", "retry-1")];
    let (status, _, first) = api.post(request("csv"), &keyed).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(api.post(request("csv"), &[]).await.0, 202);
    let (status, headers, body) = api.post(request("csv"), &[]).await;
    assert_eq!(status, 429, "{body}");
    let (status, _, again) = api.post(request("csv"), &keyed).await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ACCEPTED, &first["id"]),
        "a retry is not counted against the rate: {again}"
    );
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        Api::new(&serve, &b).post(request("csv"), &[]).await.0,
        202,
        "another caller has its own bucket"
    );
    serve.terminate().await;

    // A domain has at most one export waiting or running: nothing runs
    // here, so the first stays SCHEDULED and the second is refused.
    let capped = [
        ("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "1"),
        ("FERRY__JOBS__CONCURRENCY", "0"),
    ];
    let serve = crate::exports_api::serve(&db, kafka.bootstrap_servers(), &s3, &capped).await;
    let other = Api::new(&serve, &api_key(&db, OTHER).await);
    let (status, _, first) = other.post(request("csv"), &keyed).await;
    assert_eq!(status, 202, "{first}");
    let (status, headers, body) = other.post(request("csv"), &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "too_many_exports");
    assert!(headers.contains_key("retry-after"));
    let (status, _, again) = other.post(request("csv"), &keyed).await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ACCEPTED, &first["id"]),
        "a retry at the cap gets the export it made: {again}"
    );
    serve.terminate().await;
}

/// The per-domain cap holds under concurrency: 24 requests at once from 3
/// keys of one domain, a cap of 10, and exactly 10 exports (it let 17 in
/// when the count and the insert were two steps).
#[tokio::test(flavor = "multi_thread")]
async fn the_domain_cap_holds_for_requests_at_once() {
    let db = TestDb::new().await;
    load_users(&db, 10).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let capped = [
        ("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "10"),
        ("FERRY__EXPORTS__CREATE_PER_MINUTE", "1000"),
        ("FERRY__JOBS__CONCURRENCY", "0"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &capped).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(api_key(&db, DOMAIN).await);
    }
    let apis: Vec<Api> = keys.iter().map(|k| Api::new(&serve, k)).collect();
    let posts = (0..24).map(|i| apis[i % 3].post(request("csv"), &[]));
    let statuses: Vec<u16> = futures::future::join_all(posts)
        .await
        .into_iter()
        .map(|(status, _, _)| status.as_u16())
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((accepted, refused), (10, 14), "{statuses:?}");
    let made: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM jobs WHERE kind = 'export'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(made, 10);
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_running_export_leaves_no_file_and_no_upload() {
    let db = TestDb::new().await;
    load_users(&db, 200_000).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let slow = [
        ("FERRY__EXPORTS__PART_BYTES", "5242880"),
        ("FERRY__EXPORTS__FETCH_ROWS", "200"),
        ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &slow).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let body = json!({"exported_object": "node", "parameters": {"fields": ["id", "reference_id", "metadata"], "format": "jsonl", "compression": "none"}});
    let (status, _, created) = api.post(body, &[]).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let stored = crate::service::wait_for(
        &db,
        "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE kind = 'export'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert!(stored > 0 && stored < 200_000, "{stored}");
    let (status, _, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/exports/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(api.get(&format!("/v1/exports/{id}")).await.0, 404);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = files_under(&s3.object_path("ferry-exports", ""));
    assert!(left.is_empty(), "files left: {left:?}");
    serve.terminate().await;
}

/// `ferry serve` killed with `kill -9` mid-export; another takes it over
/// (its lease run out) while the broker is down. The export ends DONE with
/// every row once, and its event waits for the broker and arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_outlives_kill_9_and_its_event_waits_out_the_broker() {
    let db = TestDb::new().await;
    load_users(&db, 200_000).await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let s3 = LocalS3::start().unwrap();
    let env = [
        ("FERRY__JOBS__LEASE", "1s"),
        ("FERRY__EXPORTS__PART_BYTES", "5242880"),
        ("FERRY__EXPORTS__FETCH_ROWS", "200"),
        ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ("FERRY__KAFKA__SEND_TIMEOUT", "2s"),
    ];
    let first = serve(&db, &brokers, &s3, &env).await;
    let key = api_key(&db, DOMAIN).await;
    let body = json!({"exported_object": "node", "parameters": {"fields": ["id", "reference_id", "metadata"], "format": "jsonl", "compression": "none"}});
    let (status, _, created) = Api::new(&first, &key).post(body, &[]).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let stored = crate::service::wait_for(
        &db,
        "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE kind = 'export'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert!(
        stored > 0 && stored < 200_000,
        "killed mid-export ({stored})"
    );
    first.kill().await;

    kafka.refuse_writes();
    let second = Serve::spawn(&db, &brokers, &pairs(&settings(&s3, &env)));
    let done = crate::service::wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind = 'export' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(done, 1, "{}", second.log_text());
    let waiting = crate::service::wait_for(
        &db,
        "SELECT count(*) FROM status_outbox WHERE sent_at IS NULL",
        1,
        Duration::ZERO,
    )
    .await;
    assert_eq!(waiting, 1, "the event waits for the broker");
    kafka.accept_writes();

    let api = Api::new(&second, &key);
    let (export, _) = api.wait(&id).await;
    assert_eq!(export["status"], "DONE", "{export}");
    assert!(export["attempts"].as_i64().unwrap() >= 2, "{export}");
    let url = export["result"]["url"].as_str().unwrap();
    let bytes = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        crate::exports::jsonl_rows(&bytes),
        crate::exports::expected_jsonl_rows(&db).await,
        "every row once, in order"
    );
    let events = read_topic(
        &brokers,
        "ferry-exports-completed",
        1,
        Duration::from_secs(60),
    );
    let ids: Vec<Value> = events
        .iter()
        .map(|(_, p)| serde_json::from_slice::<Value>(p).unwrap()["exportId"].clone())
        .collect();
    assert_eq!(ids, vec![json!(id)], "the event, once");
    second.terminate().await;
}

/// Every file under `dir`, recursively (s3s-fs keeps objects, and the parts
/// of unfinished uploads, as files there).
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn jwt(key_file: &str, alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: Value) -> String {
    let pem = std::fs::read(fixture(key_file)).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_bearer_tokens_are_taken_only_when_genuine_and_current() {
    let db = TestDb::new().await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let rsa_jwks = fixture("jwks.json");
    let jwt_env = [
        ("FERRY__HTTP__JWT__JWKS_FILE", rsa_jwks.to_str().unwrap()),
        ("FERRY__HTTP__JWT__ISSUER", "https://id.example"),
        ("FERRY__HTTP__JWT__AUDIENCE", "ferry"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &jwt_env).await;
    let good = json!({"iss": "https://id.example", "aud": "ferry", "sub": "user-7", "domain_id": DOMAIN, "exp": now() + 600});
    let with = |changes: Value| {
        let mut c = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let rs = jsonwebtoken::Algorithm::RS256;
    let ok = jwt("rsa.pem", rs, Some("k1"), good.clone());
    let (status, body) = Api::new(&serve, &ok).get("/v1/exports").await;
    assert_eq!(status, 200, "{body}");
    let none_header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = base64url(good.to_string().as_bytes());
    let hs_with_public_key = {
        let public = std::fs::read(fixture("rsa.pub.pem")).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(
            &header,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap()
    };
    let refused = [
        (
            "expired",
            jwt("rsa.pem", rs, Some("k1"), with(json!({"exp": now() - 600}))),
        ),
        (
            "not yet",
            jwt("rsa.pem", rs, Some("k1"), with(json!({"nbf": now() + 600}))),
        ),
        (
            "other issuer",
            jwt(
                "rsa.pem",
                rs,
                Some("k1"),
                with(json!({"iss": "https://evil.example"})),
            ),
        ),
        (
            "other audience",
            jwt("rsa.pem", rs, Some("k1"), with(json!({"aud": "other"}))),
        ),
        (
            "no domain",
            jwt("rsa.pem", rs, Some("k1"), with(json!({"domain_id": null}))),
        ),
        (
            "no exp",
            jwt("rsa.pem", rs, Some("k1"), with(json!({"exp": null}))),
        ),
        (
            "another key",
            jwt("other-rsa.pem", rs, Some("k1"), good.clone()),
        ),
        ("alg none", format!("{none_header}.{claims}.")),
        ("HMAC with the public key", hs_with_public_key),
    ];
    for (why, token) in refused {
        let (status, body) = Api::new(&serve, &token).get("/v1/exports").await;
        assert_eq!(status, 401, "{why}: {body}");
    }
    // The token's domain is the caller's: another domain's export is 404.
    let (status, _, created) = Api::new(&serve, &ok)
        .post(json!({"exported_object": "node"}), &[])
        .await;
    assert_eq!(status, 202, "{created}");
    let theirs = jwt("rsa.pem", rs, Some("k1"), with(json!({"domain_id": OTHER})));
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        Api::new(&serve, &theirs)
            .get(&format!("/v1/exports/{id}"))
            .await
            .0,
        404
    );
    serve.terminate().await;

    // ES256 from a public key file.
    let ec = fixture("ec.pub.pem");
    let serve = crate::exports_api::serve(
        &db,
        kafka.bootstrap_servers(),
        &s3,
        &[("FERRY__HTTP__JWT__PUBLIC_KEY_FILE", ec.to_str().unwrap())],
    )
    .await;
    let es = jwt(
        "ec.pem",
        jsonwebtoken::Algorithm::ES256,
        None,
        json!({"domain_id": DOMAIN, "exp": now() + 60}),
    );
    assert_eq!(Api::new(&serve, &es).get("/v1/exports").await.0, 200);
    let rs_to_ec = jwt(
        "rsa.pem",
        rs,
        None,
        json!({"domain_id": DOMAIN, "exp": now() + 60}),
    );
    assert_eq!(Api::new(&serve, &rs_to_ec).get("/v1/exports").await.0, 401);
    serve.terminate().await;
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A tiny HTTP server for webhooks: answers the first `fail` requests
/// with 500, then 200; every request's headers and body come out on `rx`.
async fn webhook_server(
    fail: usize,
) -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(Vec<(String, String)>, String)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, body) = loop {
                let n = s.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                }
                if n == 0 {
                    break (String::new(), String::new());
                }
            };
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let _ = tx.send((headers, body));
            let status = if served < fail {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            served += 1;
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_is_signed_and_retried_after_a_500() {
    let db = TestDb::new().await;
    load_users(&db, 50).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let (port, mut hooks) = webhook_server(1).await;
    let env = [
        ("FERRY__EXPORTS__WEBHOOK_ALLOWED_HOSTS", "[\"127.0.0.1\"]"),
        ("FERRY__EXPORTS__WEBHOOK_SECRET", "whsec-test"),
        ("FERRY__RETRY__INITIAL_BACKOFF", "200ms"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, _, created) = api
        .post(json!({"exported_object": "node", "webhook_url": url}), &[])
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(30), hooks.recv())
                .await
                .expect("a delivery")
                .unwrap(),
        );
    }
    for (headers, body) in &got {
        let header = |k: &str| {
            headers
                .iter()
                .find(|(h, _)| h == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let signature = header("ferry-signature");
        let (t, v1) = signature.split_once(",v1=").unwrap();
        let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
        assert_eq!(
            signature,
            ferry_actors::export::token::webhook_signature(b"whsec-test", t, body.as_bytes())
        );
        assert_eq!(v1.len(), 64);
        assert_eq!(
            header("ferry-delivery"),
            got[0]
                .0
                .iter()
                .find(|(h, _)| h == "ferry-delivery")
                .unwrap()
                .1
        );
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["exportId"], id.as_str());
        assert_eq!(event["status"], "DONE");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, export) = api.get(&format!("/v1/exports/{id}")).await;
        if export["webhook"]["status"] == "delivered" {
            assert_eq!(export["webhook"]["attempts"], 2, "{export}");
            assert_eq!(export["webhook"]["last_status"], 200, "{export}");
            crate::harness::assert_rfc3339(
                &export,
                &[
                    "/created_at",
                    "/started_at",
                    "/finished_at",
                    "/webhook/delivered_at",
                ],
            );
            break;
        }
        assert!(Instant::now() < deadline, "{export}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM webhook_attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2, "every attempt is recorded");
    serve.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_swept_after_their_retention_and_the_export_says_so() {
    let db = TestDb::new().await;
    load_users(&db, 50).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let env = [
        ("FERRY__EXPORTS__RETENTION", "2s"),
        ("FERRY__JOBS__SWEEP_INTERVAL", "300ms"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let (_, _, created) = api.post(json!({"exported_object": "node"}), &[]).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (done, _) = api.wait(&id).await;
    assert_eq!(done["status"], "DONE");
    let download = done["result"]["download_url"].as_str().unwrap().to_string();
    let key = done["result"]["files"][0]["location"]
        .as_str()
        .unwrap()
        .strip_prefix("s3://ferry-exports/")
        .unwrap()
        .to_string();
    assert!(s3.object_path("ferry-exports", &key).exists());
    let deadline = Instant::now() + Duration::from_secs(20);
    let expired = loop {
        let (_, export) = api.get(&format!("/v1/exports/{id}")).await;
        if export["expired"] == true {
            break export;
        }
        assert!(Instant::now() < deadline, "{export}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(expired["result"], Value::Null);
    assert!(
        !s3.object_path("ferry-exports", &key).exists(),
        "the file is gone"
    );
    assert_eq!(client().get(&download).send().await.unwrap().status(), 410);
    serve.terminate().await;
}

/// A download link is built from `http.public_url`, never from the
/// request's `Host` header: `Host: evil.example:666` gave
/// `http://evil.example:666/v1/exports/…`, a link a forwarded message
/// could point anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn download_links_are_built_from_the_public_url_not_the_host_header() {
    let db = TestDb::new().await;
    load_users(&db, 10).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let public = [("FERRY__HTTP__PUBLIC_URL", "https://ferry.example.com/")];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &public).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let (status, _, created) = api.post(request("csv"), &[]).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    api.wait(&id).await;
    let (_, _, done) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/exports/{id}"),
            None,
            &[("Host", "evil.example:666")],
        )
        .await;
    let link = done["result"]["download_url"].as_str().unwrap_or_default();
    assert!(
        link.starts_with(&format!(
            "https://ferry.example.com/v1/exports/{id}/download?token="
        )),
        "{done}"
    );
    serve.terminate().await;
}

/// Round 2, 5. A request PostgreSQL could not run is refused at creation
/// (too many fields, a year-0 date: both used to be accepted, then fail),
/// and an export the database refuses once it runs says so by SQLSTATE and
/// an error id, never in the database's words (which here quote a row's
/// value); the log has those words under the same id.
#[tokio::test(flavor = "multi_thread")]
async fn what_postgresql_cannot_run_is_refused_and_its_words_stay_in_the_log() {
    let db = TestDb::new().await;
    load_users(&db, 10).await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &[]).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);

    let many: Vec<String> = (0..2000).map(|i| format!("metadata.k{i}")).collect();
    let year_zero = json!({"created_at": {"conditions": {"$after": ["0000-01-01T00:00:00Z"]}}});
    for (parameters, code) in [
        (json!({"fields": many}), "too_many_fields"),
        (json!({"filters": year_zero}), "invalid_value"),
    ] {
        let body = json!({"exported_object": "node", "parameters": parameters});
        let (status, _, answer) = api.post(body, &[]).await;
        assert_eq!(
            (status.as_u16(), answer["code"].as_str()),
            (400, Some(code)),
            "{answer}"
        );
    }

    // The schema changes under the running service: reading a reference
    // id now fails, in words that quote the row.
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse(v text) RETURNS text LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'private value %', v; END $$;
             CREATE OR REPLACE VIEW nodes_export AS
             SELECT n.id, refuse(n.reference_id)::varchar(255) AS reference_id, n.group_id,
                    n.type, n.domain_id,
                    coalesce(pg_visible_in_snapshot(n.changed_xid, w.snapshot), false) AS processed,
                    n.metadata, n.created_at, n.updated_at, n.changed_xid
             FROM node_rows n
             LEFT JOIN group_watermarks w
               ON w.domain_id = n.domain_id AND w.group_id = n.group_id",
        )
        .await
        .unwrap();
    let (status, _, created) = api.post(request("csv"), &[]).await;
    assert_eq!(status, 202, "{created}");
    let (done, _) = api.wait(created["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ERROR", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(!message.contains("private value"), "{message}");
    assert!(message.contains("SQLSTATE P0001"), "{message}");
    let error_id = message
        .split("error id ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no error id: {message}"));
    let log = serve.log_text();
    let logged = log
        .lines()
        .find(|l| l.contains(error_id))
        .unwrap_or_else(|| panic!("{error_id} is not in the log"));
    assert!(logged.contains("private value"), "{logged}");
    serve.terminate().await;
}
