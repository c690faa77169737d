//! The API's per-caller limits as a client behind a load balancer sees
//! them: three `ferry serve` processes on one database, requests
//! round-robin between them, and each limit is the documented one, not
//! three times it. Only creations count against the creation rate.

use std::time::Duration;

use ferry::locals3::LocalS3;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::exports_api::{serve, Api};
use crate::harness::{TestDb, DOMAIN};
use crate::service::{api_key, broker, request};

fn export() -> serde_json::Value {
    json!({"exported_object": "node", "parameters": {"format": "csv"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_limits_hold_across_three_instances() {
    let db = TestDb::new().await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let env = [
        ("FERRY__EXPORTS__CREATE_PER_MINUTE", "3"),
        ("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "50"),
        ("FERRY__JOBS__CONCURRENCY", "0"),
        ("FERRY__HTTP__MAX_REQUESTS_PER_KEY", "2"),
        ("FERRY__HTTP__BODY_TIMEOUT", "3s"),
    ];
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(serve(&db, kafka.bootstrap_servers(), &s3, &env).await);
    }
    let (key, other) = (api_key(&db, DOMAIN).await, api_key(&db, DOMAIN).await);

    // Creations: 3 a minute for the caller, whichever instance it asks.
    let apis: Vec<Api> = instances.iter().map(|s| Api::new(s, &key)).collect();
    let mut statuses = Vec::new();
    for n in 0..9 {
        let (status, _, body) = apis[n % 3].post(export(), &[]).await;
        statuses.push((status, body["code"].as_str().unwrap_or("").to_string()));
    }
    let accepted = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 3, "{statuses:?}");
    assert!(
        statuses[3..]
            .iter()
            .all(|(s, code)| *s == StatusCode::TOO_MANY_REQUESTS && code == "rate_limited"),
        "{statuses:?}"
    );
    assert_eq!(
        Api::new(&instances[2], &other).post(export(), &[]).await.0,
        StatusCode::ACCEPTED,
        "another caller has its own bucket"
    );

    // Requests in flight: two slow bodies, on two instances, are the
    // key's two; a request to the third is refused, another key's is not.
    let mut slow = Vec::new();
    for serve in &instances[..2] {
        let mut s = tokio::net::TcpStream::connect(&serve.http).await.unwrap();
        let head = format!(
            "POST /v1/exports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let get = |serve: usize, key: &str| {
        let (http, auth) = (instances[serve].http.clone(), format!("Bearer {key}"));
        async move {
            request(&http, "GET", "/v1/exports", &[("Authorization", &auth)], "")
                .await
                .unwrap()
        }
    };
    let (status, body) = get(2, &key).await;
    assert_eq!(status, 429, "the key's third request in flight: {body}");
    assert!(body.contains("too_many_requests"), "{body}");
    assert_eq!(get(2, &other).await.0, 200, "another key's request");

    // The slow bodies time out (408) and their holds end with them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(slow);
    let (status, body) = get(2, &key).await;
    assert_eq!(status, 200, "{body}");
    let held: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM api_holds", &[])
        .await
        .unwrap()
        .get(0);
    assert!(held <= 1, "holds left behind: {held}");
    for serve in instances {
        serve.terminate().await;
    }
}

/// A refusal costs the caller no token: at the domain's cap, a 429
/// `too_many_exports` leaves the creation budget as it was (it used to
/// take a token, so the next creation was `rate_limited`).
#[tokio::test(flavor = "multi_thread")]
async fn only_creations_count_against_the_creation_rate() {
    let db = TestDb::new().await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let env = [
        ("FERRY__EXPORTS__CREATE_PER_MINUTE", "2"),
        ("FERRY__EXPORTS__MAX_RUNNING_PER_DOMAIN", "1"),
        ("FERRY__JOBS__CONCURRENCY", "0"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let api = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let (status, _, first) = api.post(export(), &[]).await;
    assert_eq!(status, 202, "{first}");
    for _ in 0..3 {
        let (status, _, body) = api.post(export(), &[]).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["code"], "too_many_exports", "{body}");
    }
    let id = first["id"].as_str().unwrap();
    let (status, _, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/exports/{id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, body) = api.post(export(), &[]).await;
    assert_eq!(status, 202, "the second creation of the minute: {body}");
    serve.terminate().await;
}
