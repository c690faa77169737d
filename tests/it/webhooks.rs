//! Webhook deliveries under load from several tenants and instances: one
//! tenant's slow endpoints hold at most its share of the slots (per domain
//! and per host, across instances), and no two instances ever send one
//! delivery at once. A receiver here keeps every request's interval (from
//! its arrival to its answer, or to the client closing the connection), so
//! the tests count what was really open at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::locals3::LocalS3;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exports_api::{serve, Api, OTHER};
use crate::harness::{TestDb, DOMAIN};
use crate::service::{api_key, broker};

/// A third domain, beside `DOMAIN` and `OTHER`.
const THIRD: &str = "33333333-4444-4555-8666-777777777777";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    host: String,
    delivery: String,
    arrived: Instant,
    /// When it was answered or the client went away; None while open.
    ended: Option<Instant>,
    answered: Option<u16>,
}

/// A webhook receiver. `/hang/…` never answers (the client gives up);
/// `/slow-once/…` holds a delivery's first request for 3 s, then answers
/// the next ones 200 after 200 ms; anything else is 200 at once.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start() -> (u16, Self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = Self::default();
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(r.clone().serve(s));
            }
        });
        (port, receiver)
    }

    async fn serve(self, mut s: tokio::net::TcpStream) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head = loop {
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = header(head, "content-length").map_or(0, |v| v.parse().unwrap());
                if body.len() >= len {
                    break head.to_string();
                }
            }
        };
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let entry = Seen {
            host: header(&head, "host")
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap()
                .to_string(),
            delivery: header(&head, "ferry-delivery").unwrap_or("").to_string(),
            path,
            arrived: Instant::now(),
            ended: None,
            answered: None,
        };
        let earlier = {
            let mut seen = self.seen.lock().unwrap();
            let earlier = seen.iter().filter(|e| e.delivery == entry.delivery).count();
            seen.push(entry.clone());
            earlier
        };
        let hold = if entry.path.starts_with("/hang/") {
            Some(Duration::from_secs(120))
        } else if entry.path.starts_with("/slow-once/") {
            Some(if earlier == 0 {
                Duration::from_secs(3)
            } else {
                Duration::from_millis(200)
            })
        } else {
            None
        };
        let answer = match hold {
            None => true,
            Some(hold) => tokio::select! {
                _ = tokio::time::sleep(hold) => earlier > 0,
                // The request was read whole: a read now ends only when
                // the client closes the connection.
                _ = s.read(&mut buf) => false,
            },
        };
        if answer {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
        let mut seen = self.seen.lock().unwrap();
        let me = seen
            .iter_mut()
            .find(|e| e.arrived == entry.arrived && e.delivery == entry.delivery)
            .unwrap();
        me.ended = Some(Instant::now());
        me.answered = answer.then_some(200);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The most requests open at once among those `which` picks.
    fn most_open(&self, which: impl Fn(&Seen) -> bool) -> usize {
        let now = Instant::now();
        let picked: Vec<(Instant, Instant)> = self
            .seen()
            .into_iter()
            .filter(which)
            .map(|e| (e.arrived, e.ended.unwrap_or(now)))
            .collect();
        picked
            .iter()
            .map(|(at, _)| picked.iter().filter(|(a, b)| a <= at && at < b).count())
            .max()
            .unwrap_or(0)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn export_with_hook(api: &Api, url: String) -> String {
    let (status, _, created) = api
        .post(json!({"exported_object": "node", "webhook_url": url}), &[])
        .await;
    assert_eq!(status, 202, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// Two domains' endpoints hang; a third domain's delivery to another host
/// still goes at once. Deliveries in flight stay within
/// `exports.webhook_per_domain` (2) and `exports.webhook_per_host` (3),
/// and reach them (the old sender had 16 slots for whoever came first).
#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_slow_endpoints_hold_only_its_share_of_the_slots() {
    let db = TestDb::new().await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let (port, hooks) = Receiver::start().await;
    let env = [
        (
            "FERRY__EXPORTS__WEBHOOK_ALLOWED_HOSTS",
            "[\"127.0.0.1\", \"localhost\"]",
        ),
        ("FERRY__EXPORTS__WEBHOOK_TIMEOUT", "5s"),
        ("FERRY__EXPORTS__WEBHOOK_ATTEMPTS", "1"),
        ("FERRY__EXPORTS__WEBHOOK_PER_DOMAIN", "2"),
        ("FERRY__EXPORTS__WEBHOOK_PER_HOST", "3"),
    ];
    let serve = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let a = Api::new(&serve, &api_key(&db, DOMAIN).await);
    let c = Api::new(&serve, &api_key(&db, OTHER).await);
    let b = Api::new(&serve, &api_key(&db, THIRD).await);
    for _ in 0..4 {
        export_with_hook(&a, format!("http://127.0.0.1:{port}/hang/a")).await;
        export_with_hook(&c, format!("http://127.0.0.1:{port}/hang/c")).await;
    }
    until(
        "the hanging endpoints get their share",
        Duration::from_secs(30),
        || hooks.seen().iter().filter(|e| e.ended.is_none()).count() >= 3,
    )
    .await;

    let id = export_with_hook(&b, format!("http://localhost:{port}/fast/b")).await;
    let (done, _) = b.wait(&id).await;
    assert_eq!(done["status"], "DONE", "{done}");
    let ended = Instant::now();
    until(
        "the third domain's delivery goes while the others hang",
        Duration::from_secs(3),
        || hooks.seen().iter().any(|e| e.path == "/fast/b"),
    )
    .await;
    let fast = hooks
        .seen()
        .into_iter()
        .find(|e| e.path == "/fast/b")
        .unwrap();
    assert!(
        fast.arrived.duration_since(ended) < Duration::from_secs(2),
        "it waited {:?}",
        fast.arrived.duration_since(ended)
    );

    // Let the first hanging ones time out and the next ones start.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let in_a = hooks.most_open(|e| e.path == "/hang/a");
    let in_c = hooks.most_open(|e| e.path == "/hang/c");
    let at_host = hooks.most_open(|e| e.host == "127.0.0.1");
    assert_eq!(in_a, 2, "one domain's deliveries in flight: {in_a}");
    assert!(in_c <= 2, "{in_c}");
    assert_eq!(at_host, 3, "one host's deliveries in flight: {at_host}");
    assert!(
        hooks.seen().iter().filter(|e| e.path == "/hang/a").count() > 2,
        "the domain's next deliveries start as slots free"
    );
    serve.terminate().await;
}

/// Two instances share the queue, and a slow receiver counts what each
/// delivery has open: never two at once, though every first attempt
/// outlives its timeout and is retried, by either instance. Each delivery
/// is answered 200 exactly once, and every request is a recorded attempt.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_never_send_one_delivery_at_once() {
    let db = TestDb::new().await;
    let kafka = broker();
    let s3 = LocalS3::start().unwrap();
    let (port, hooks) = Receiver::start().await;
    let env = [
        ("FERRY__EXPORTS__WEBHOOK_ALLOWED_HOSTS", "[\"127.0.0.1\"]"),
        ("FERRY__EXPORTS__WEBHOOK_TIMEOUT", "1s"),
        ("FERRY__EXPORTS__WEBHOOK_PER_DOMAIN", "16"),
        ("FERRY__EXPORTS__WEBHOOK_PER_HOST", "16"),
        ("FERRY__RETRY__INITIAL_BACKOFF", "100ms"),
        ("FERRY__RETRY__MAX_BACKOFF", "200ms"),
    ];
    let first = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let second = serve(&db, kafka.bootstrap_servers(), &s3, &env).await;
    let key = api_key(&db, DOMAIN).await;
    let apis = [Api::new(&first, &key), Api::new(&second, &key)];
    let url = format!("http://127.0.0.1:{port}/slow-once/a");
    for n in 0..8 {
        export_with_hook(&apis[n % 2], url.clone()).await;
    }
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: i64 = client
            .query_one(
                "SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if delivered == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "{delivered} of 8 delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut by_delivery: HashMap<String, Vec<Seen>> = HashMap::new();
    for e in hooks.seen() {
        by_delivery.entry(e.delivery.clone()).or_default().push(e);
    }
    assert_eq!(by_delivery.len(), 8, "{:?}", by_delivery.keys());
    for (id, seen) in &by_delivery {
        let open = hooks.most_open(|e| &e.delivery == id);
        assert_eq!(open, 1, "delivery {id} was sent {open} times at once");
        let ok = seen.iter().filter(|e| e.answered == Some(200)).count();
        assert_eq!(ok, 1, "delivery {id}: {seen:?}");
        assert!(seen.len() >= 2, "its first attempt timed out: {seen:?}");
        let attempts: Vec<i32> = client
            .query(
                "SELECT attempt FROM webhook_attempts WHERE delivery_id = $1::text::bigint
                 ORDER BY attempt",
                &[id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<i32> = (1..=seen.len() as i32).collect();
        assert_eq!(attempts, expected, "delivery {id}: one attempt per request");
    }
    first.terminate().await;
    second.terminate().await;
}
