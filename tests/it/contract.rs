//! The API contract: the OpenAPI document a live `ferry serve` serves is
//! valid to an independent validator (`openapi-spec-validator`), documents
//! every `/v1` route the router has, and schemathesis, generating valid and
//! invalid requests for every operation from it, finds no 5xx and no
//! response the document does not describe. The Python tools come from
//! PyPI into a virtualenv `scripts/test.sh` makes (`FERRY_PY_TOOLS`).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{TestDb, DOMAIN};
use crate::service::{api_key, broker, file_request, post_import, request, Serve};

/// A tool of the Python virtualenv.
pub fn python_tool(name: &str) -> PathBuf {
    let bin = std::env::var("FERRY_PY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ferry/tools/py/bin")
        });
    let tool = bin.join(name);
    assert!(
        tool.exists(),
        "{} is missing: scripts/test.sh installs it",
        tool.display()
    );
    tool
}

/// The `/v1` routes `src/http/mod.rs` gives the router, in OpenAPI's
/// spelling (they are the same: `{id}`).
fn routed_paths() -> Vec<String> {
    let source = include_str!("../../src/http/mod.rs");
    source
        .split(".route(")
        .skip(1)
        .filter_map(|call| {
            let path = call.trim_start().strip_prefix('"')?;
            Some(path[..path.find('"')?].to_string())
        })
        .filter(|p| p.starts_with("/v1/") && p != "/v1/openapi.json")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_keeps_to_its_openapi_document() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let (status, text) = request(&serve.http, "GET", "/v1/openapi.json", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");

    // Every route is documented, with each of its methods.
    let routes = routed_paths();
    assert!(routes.len() >= 9, "{routes:?}");
    let paths = doc["paths"].as_object().unwrap();
    for route in &routes {
        assert!(paths.contains_key(route), "{route} is not in the document");
    }
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, 16, "{:?}", paths.keys());

    // An independent validator accepts it.
    let file = db.path("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(python_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real import first, so lists hold a job whose every field the
    // response checks see.
    let key = api_key(&db, DOMAIN).await;
    let auth = format!("Bearer {key}");
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 1_000, 3).unwrap();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    post_import(&serve, &headers, &file_request("contract", &file)).await;

    // Schemathesis, against the live service with a real key: every check
    // but `positive_data_acceptance`, which takes a request the schema
    // allows as one the service must accept. Ours also checks what no
    // schema can say (the file exists, `domainId` is the caller's, the
    // webhook's host is allowed), and answers those with a documented 4xx.
    let report = db.path("schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    let out = tokio::process::Command::new(python_tool("st"))
        // Its cache (.schemathesis/) goes there too, not into the clone.
        .current_dir(&report)
        .args(["run", &format!("http://{}/v1/openapi.json", serve.http)])
        .args(["--header", &format!("Authorization: {auth}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "40", "--seed", "1"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "schemathesis:\n{text}\n(the service's log: {})",
        serve.log.display()
    );
    // Nothing vacuous: the run made many cases, and every one passed.
    let cases = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no case count in:\n{text}"));
    let counts: Vec<u64> = cases
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(counts[0] >= 500, "{cases}");
    assert_eq!(counts[0], counts[1], "{cases}");
    let (code, log) = serve.terminate().await;
    assert_eq!(code, 0);
    assert!(!log.contains("panicked"), "{log}");
}
