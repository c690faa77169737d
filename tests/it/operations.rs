//! Operations: the Prometheus alert rules pass `promtool` (checked, and
//! each alert unit-tested to fire on a made-up series and stay quiet on a
//! healthy one), and every metric they and the Grafana dashboard name is
//! one a real `ferry serve` serves once it has run an import and an export,
//! so no alert watches, and no panel shows, a name that does not exist.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::TestDb;
use crate::service::{
    broker, file_request, post_import, produce, producer, request, status_events, Serve,
    USERS_TOPIC,
};

fn rules_dir() -> PathBuf {
    config_dir().join("prometheus")
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("13 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The metric names an expression file mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if (word.starts_with("ferry_") || word.starts_with("process_")) && word.len() > 8 {
            names.insert(word.to_string());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alerts_and_the_dashboard_name_is_served() {
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yml")).unwrap();
    let mut names = metric_names(&rules);
    assert!(names.len() >= 12, "{names:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(config_dir().join("grafana/ferry.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 25, "{exprs:?}");
    for expr in &exprs {
        names.extend(metric_names(expr));
    }

    let db = TestDb::new().await;
    let kafka = broker();
    let brokers = kafka.bootstrap_servers().to_string();
    let serve = Serve::start(&db, &brokers, &[]).await;
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 1_000, 3).unwrap();
    produce(
        &producer(&brokers),
        USERS_TOPIC,
        "k",
        &file_request("ops", &file),
    )
    .await;
    assert_eq!(status_events(&brokers, 1, Duration::from_secs(30)).len(), 1);
    // An export through the API.
    let key = crate::service::api_key(&db, crate::harness::DOMAIN).await;
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    create_export(&serve, &headers).await;
    let done = crate::service::wait_for(
        &db,
        "SELECT count(*) FROM jobs WHERE kind = 'export' AND status = 'COMPLETED'",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, 1, "{}", serve.log_text());

    // The consumer's lag comes with librdkafka's statistics, every 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let (status, metrics) = request(&serve.http, "GET", "/metrics", &[], "")
            .await
            .unwrap();
        assert_eq!(status, 200);
        let served: BTreeSet<&str> = metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !served.contains(n.as_str()))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "named in the alerts or the dashboard, but not served: {missing:?}"
    );
    // Served is not enough: most series are registered at zero. The ones
    // this scenario moves must have moved.
    let (_, metrics) = request(&serve.http, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    for series in [
        r#"ferry_jobs_total{kind="export",status="COMPLETED"}"#,
        r#"ferry_jobs_total{kind="nodes",status="COMPLETED"}"#,
        r#"ferry_rows_written_total{target="nodes"}"#,
        r#"ferry_rows_exported_total{object="node"}"#,
        "ferry_export_bytes_total",
        "ferry_status_events_sent_total",
    ] {
        let value = crate::harness::metric(&metrics, series);
        assert!(value > Some(0.0), "{series} did not move: {value:?}");
    }
    serve.terminate().await;
}

/// `deploy/compose.yml` cannot run here (no container engine), so what
/// can drift is checked: every `FERRY__…` variable it sets is a real key,
/// with a value of the key's type (ferry's own loader reads them).
#[test]
fn the_compose_file_sets_only_real_config_keys() {
    let compose = std::fs::read_to_string(config_dir().join("../deploy/compose.yml")).unwrap();
    let env: Vec<(String, String)> = compose
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(k, _)| k.starts_with("FERRY__") || *k == "DATABASE_URL")
        .map(|(k, v)| (k.to_string(), v.trim().trim_matches('\'').to_string()))
        .collect();
    assert!(env.len() >= 10, "{env:?}");
    let config = ferry::config::load(None, env.clone())
        .unwrap_or_else(|e| panic!("deploy/compose.yml: {e}"));
    assert_eq!(config.kafka.brokers, "kafka:9092");
    assert_eq!(config.storage.endpoint, "http://minio:9000");
    assert_eq!(config.http.signing_keys.len(), 1);
    // A key that is not one is refused, so the check can fail.
    let mut wrong = env;
    wrong.push(("FERRY__STORAGE__ENDPIONT".into(), "x".into()));
    assert!(ferry::config::load(None, wrong).is_err());
}

/// With JSON logs, every line a job's actors log carries the job's id in
/// its spans, so one job's story is one filter away
/// (`jq 'select(.spans[]?.job_id == "…")'`).
#[tokio::test(flavor = "multi_thread")]
async fn every_line_a_job_logs_carries_its_job_id() {
    let db = TestDb::new().await;
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 5_000, 4).unwrap();
    let out = db
        .ferry(
            &[
                "--log-format",
                "json",
                "import",
                file.to_str().unwrap(),
                "--domain",
                crate::harness::DOMAIN,
                "--group",
                "logs",
                "--json",
            ],
            &[(
                "RUST_LOG",
                "debug,rdkafka=info,tokio_postgres=info,aws=info,hyper=info,h2=info",
            )],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = report["jobId"].as_str().unwrap();
    let stages = [
        "import_pipeline",
        "file_fetcher",
        "csv_reader",
        "batch_accumulator",
        "copy_writer",
    ];
    let mut inside = 0;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let target = entry["target"].as_str().unwrap_or_default();
        if !stages.iter().any(|s| target.ends_with(&format!("::{s}"))) {
            continue;
        }
        inside += 1;
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        assert!(
            spans
                .iter()
                .any(|s| s["name"] == "job" && s["job_id"] == job_id),
            "a line of the job without its id: {line}"
        );
    }
    assert!(inside >= 2, "the job's actors logged {inside} lines");
}

/// The SSE events a raw response holds: `(event, data)`, in order.
fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    let mut events = Vec::new();
    let mut name = String::new();
    for line in body.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let value = serde_json::from_str(data.trim()).unwrap_or(serde_json::Value::Null);
            events.push((std::mem::take(&mut name), value));
        }
    }
    events
}

/// `GET …/{id}/events` follows a job: progress while it runs, its final
/// state as `end`, then the stream ends. Another domain's job is 404.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_can_be_followed_as_server_sent_events() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let key = crate::service::api_key(&db, crate::harness::DOMAIN).await;
    let other = crate::service::api_key(&db, "1f0e2d3c-4b5a-4697-8877-665544332211").await;
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 400_000, 5).unwrap();
    let id = post_import(&serve, &headers, &file_request("followed", &file)).await;
    let path = format!("/v1/imports/{id}/events");

    let other_auth = format!("Bearer {other}");
    let (status, _) = request(
        &serve.http,
        "GET",
        &path,
        &[("Authorization", &other_auth)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "another domain's job");

    let (status, body) = tokio::time::timeout(
        Duration::from_secs(120),
        request(&serve.http, "GET", &path, &[("Authorization", &auth)], ""),
    )
    .await
    .expect("the stream ends with the job")
    .unwrap();
    assert_eq!(status, 200);
    let events = sse_events(&body);
    let (last, state) = events.last().expect("events");
    assert_eq!(last, "end", "{body}");
    assert_eq!(state["status"], "COMPLETED");
    assert_eq!(state["rows"]["loaded"], 400_000, "{state}");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|(e, _)| e == "progress"),
        "{events:?}"
    );
    let running = events[..events.len() - 1]
        .iter()
        .filter(|(_, s)| s["rows"]["read"].as_i64() < Some(400_000))
        .count();
    assert!(running > 0, "no progress before the end: {events:?}");
    let seen: Vec<i64> = events
        .iter()
        .filter_map(|(_, s)| s["rows"]["read"].as_i64())
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {seen:?}"
    );

    // An export, followed the same way.
    let id = create_export(&serve, &headers).await;
    let path = format!("/v1/exports/{id}/events");
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(120),
        request(&serve.http, "GET", &path, &[("Authorization", &auth)], ""),
    )
    .await
    .expect("the stream ends with the export")
    .unwrap();
    assert_eq!(status, 200);
    let events = sse_events(&body);
    let (last, state) = events.last().expect("events");
    assert_eq!(last, "end", "{body}");
    assert_eq!(state["status"], "DONE", "{state}");
    assert_eq!(state["result"]["rows"], 400_000);
    serve.terminate().await;
}

/// `POST /v1/exports` of every node as CSV; the export's id.
async fn create_export(serve: &Serve, headers: &[(&str, &str)]) -> String {
    let body = serde_json::json!({"exported_object": "node", "parameters": {"format": "csv"}});
    let (status, created) = request(
        &serve.http,
        "POST",
        "/v1/exports",
        headers,
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["id"].as_str().unwrap().to_string()
}

/// A key has at most `http.max_streams_per_key` event streams open: one
/// more is 429, until one ends.
#[tokio::test(flavor = "multi_thread")]
async fn event_streams_per_key_are_bounded() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(
        &db,
        kafka.bootstrap_servers(),
        &[("FERRY__HTTP__MAX_STREAMS_PER_KEY", "1")],
    )
    .await;
    let key = crate::service::api_key(&db, crate::harness::DOMAIN).await;
    let auth = format!("Bearer {key}");
    // The import's writes wait on this lock, so its stream stays open.
    let lock = db.client().await;
    lock.batch_execute("BEGIN; LOCK TABLE node_rows IN SHARE MODE")
        .await
        .unwrap();
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 1_000, 6).unwrap();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let id = post_import(&serve, &headers, &file_request("streams", &file)).await;
    let path = format!("/v1/imports/{id}/events");

    let first = {
        let (http, path, auth) = (serve.http.clone(), path.clone(), auth.clone());
        tokio::spawn(
            async move { request(&http, "GET", &path, &[("Authorization", &auth)], "").await },
        )
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key_only = [("Authorization", auth.as_str())];
    let second = request(&serve.http, "GET", &path, &key_only, "");
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("refused at once, not streamed")
        .unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_requests"), "{body}");

    lock.batch_execute("COMMIT").await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the first stream ends with its job")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sse_events(&body).last().unwrap().0, "end", "{body}");
    // Its permit is back.
    let (status, body) = request(&serve.http, "GET", &path, &[("Authorization", &auth)], "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(sse_events(&body).last().unwrap().1["status"], "COMPLETED");
    serve.terminate().await;
}
