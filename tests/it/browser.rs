//! The jobs page, as a user sees it, in a real headless Chromium driven by
//! selenium (`tests/browser/jobs_page.py`): the key entered, an import of
//! 200k rows followed until COMPLETED with its bar moving, an export made
//! with the page's form and its link followed, no error in the console.
//! Screenshots go to the test's output folder (`CARGO_TARGET_TMPDIR`).

use std::path::PathBuf;

use crate::harness::{TestDb, DOMAIN};
use crate::service::{api_key, broker, file_request, Serve};

#[tokio::test(flavor = "multi_thread")]
async fn the_jobs_page_follows_an_import_and_makes_an_export_in_a_real_browser() {
    let db = TestDb::new().await;
    let kafka = broker();
    // Small batches, one at a time: 200k rows commit in 100 steps, so the
    // page has a running job to watch.
    let serve = Serve::start(
        &db,
        kafka.bootstrap_servers(),
        &[
            ("FERRY__IMPORT__BATCH_ROWS", "2000"),
            ("FERRY__IMPORT__MAX_IN_FLIGHT_BATCHES", "1"),
        ],
    )
    .await;

    // The page and its assets come from the binary, under a strict policy.
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = reqwest::get(format!("http://{}{path}", serve.http))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name| response.headers()[name].to_str().unwrap().to_string();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").starts_with("default-src 'none'"),
            "{path}"
        );
    }

    let key = api_key(&db, DOMAIN).await;
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, 200_000, 5).unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    // The import's writes wait on this lock until the page shows the job,
    // whatever the machine's speed, so the page has a run to follow.
    let lock = db.client().await;
    lock.batch_execute("BEGIN; LOCK TABLE node_rows IN SHARE MODE")
        .await
        .unwrap();
    let signal = db.path("page-shows-the-import");
    let python = crate::contract::python_tool("python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/jobs_page.py");
    let browser = tokio::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{}/", serve.http))
        .arg(&key)
        .arg(file_request("browser", &file))
        .arg(&out)
        .arg(&signal)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !signal.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lock.batch_execute("COMMIT").await.unwrap();
    let run = browser.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{stdout}{stderr}\n(the service's log: {})",
        serve.log.display()
    );
    println!("{stdout}");
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the script's summary");
    assert_eq!(seen["export_rows"], 200_000, "{seen}");
    assert_eq!(
        seen["rows_read"].as_array().unwrap().last().unwrap(),
        "200,000",
        "{seen}"
    );
    for shot in ["jobs-page.png", "jobs-page-running.png"] {
        let png = std::fs::read(out.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
    println!("screenshots in {}", out.display());
    serve.terminate().await;
}
