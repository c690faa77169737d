//! Reference-list imports (seed 004 UC-2): ids become nodes through the
//! same pipeline and writers as files.

use serde_json::{json, Value};

use crate::harness::{gzip, TestDb, DOMAIN};

async fn metadata(db: &TestDb, group: &str, reference: &str) -> Value {
    db.client()
        .await
        .query_one(
            "SELECT metadata FROM nodes WHERE group_id = $1 AND reference_id = $2",
            &[&ferry_actors::job::group_uuid(group), &reference],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn inline_ids_become_nodes_and_keep_existing_metadata() {
    let db = TestDb::new().await;
    let csv = db.path("u.csv");
    std::fs::write(&csv, "id,city\na,Pune\nb,Delhi\n").unwrap();
    let (r, code) = db.import(&csv, "g", &[], &[]).await;
    assert_eq!(code, 0, "{r}");

    // `db.import` passes a file; inline ids go through the command directly.
    let args = [
        "import", "--refs", "b,c,d,c", "--domain", DOMAIN, "--group", "g", "--type", "MENTEE",
        "--json",
    ];
    let out = db.ferry(&args, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rowsRead"], 4);
    assert_eq!(
        (
            r["inserted"].as_i64(),
            r["updated"].as_i64(),
            r["duplicates"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(r["source"], "inline");

    assert_eq!(db.count("g").await, 4);
    assert_eq!(
        metadata(&db, "g", "b").await,
        json!({"city": "Delhi"}),
        "a list does not wipe metadata"
    );
    assert_eq!(metadata(&db, "g", "c").await, json!({}));
    let types: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT type FROM nodes WHERE reference_id IN ('b', 'c') ORDER BY reference_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["MENTEE", "MENTEE"]);
}

#[tokio::test]
async fn a_10k_reference_file_loads_and_bad_ids_are_rejected() {
    let db = TestDb::new().await;
    let mut ids = String::new();
    for i in 0..10_000 {
        ids.push_str(&format!("ref-{i}\n"));
    }
    ids.push_str("ref-42\n\n   \n"); // a repeat, an empty line (skipped), a blank id
    ids.push_str(&format!("{}\n", "x".repeat(300)));
    let file = db.path("refs.txt.gz");
    std::fs::write(&file, gzip(ids.as_bytes())).unwrap();

    let args = [
        "import",
        "--refs-file",
        file.to_str().unwrap(),
        "--domain",
        DOMAIN,
        "--group",
        "refs",
        "--json",
    ];
    let out = db.ferry(&args, &[]).await;
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "two ids are bad: {r}");
    assert_eq!(r["rowsRead"], 10_003);
    assert_eq!(r["inserted"], 10_000);
    assert_eq!(r["duplicates"], 1);
    assert_eq!(r["rejected"], 2);
    assert_eq!(db.count("refs").await, 10_000);
    let rejects = std::fs::read_to_string(r["rejectsPath"].as_str().unwrap()).unwrap();
    let lines: Vec<&str> = rejects.lines().map(|l| l.get(..60).unwrap_or(l)).collect();
    assert_eq!(lines[0], "line,reason,reference_id");
    // csv-core counts a skipped blank line into the next record's line, so
    // the blank id (line 10003) is reported at 10002.
    let blank = "10002,reference id (`reference_id`) is empty";
    assert!(lines[1].starts_with(blank), "{rejects:.300}");
    let long = "10004,\"reference id is 300 characters, over 255\",xxx";
    assert!(lines[2].starts_with(long), "{rejects:.300}");
}

#[tokio::test]
async fn exactly_one_input_is_required() {
    let db = TestDb::new().await;
    let base = ["import", "--domain", DOMAIN, "--group", "g"];
    let out = db.ferry(&base, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let mut both = base.to_vec();
    both.extend(["x.csv", "--refs", "a"]);
    let out = db.ferry(&both, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
