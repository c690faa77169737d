//! Input limits: each breach is a FAILED job whose reason names the limit.

use serde_json::Value;

use crate::harness::TestDb;

fn reason(r: &Value) -> &str {
    r["failureReason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_gzip_bomb_fails_fast() {
    let db = TestDb::new().await;
    // 64 MiB of near-identical rows gzip to well under 1 MiB (> 100:1).
    let row = format!("r,{}\n", "a".repeat(1022));
    let mut csv = String::from("id,pad\n");
    for _ in 0..65_536 {
        csv.push_str(&row);
    }
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(csv.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    assert!(
        csv.len() / gz.len() > 100,
        "the file is a bomb: {}:1",
        csv.len() / gz.len()
    );
    let file = db.path("bomb.csv.gz");
    std::fs::write(&file, gz).unwrap();
    let (r, code) = db.import(&file, "bomb", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).contains("import.max_compression_ratio (100:1)"),
        "{r}"
    );
    assert!(
        r["rowsRead"].as_i64().unwrap() < 65_536,
        "it stopped early: {r}"
    );
}

#[tokio::test]
async fn each_limit_is_named_when_broken() {
    let db = TestDb::new().await;
    let mut csv = String::from("id,a,b,c,d\n");
    for i in 0..200 {
        csv.push_str(&format!("r{i},1,2,3,4\n"));
    }
    let file = db.path("wide.csv");
    std::fs::write(&file, &csv).unwrap();

    let cases = [
        (
            "FERRY__IMPORT__MAX_OBJECT_BYTES",
            "100",
            "over import.max_object_bytes (100)",
        ),
        (
            "FERRY__IMPORT__MAX_DECOMPRESSED_BYTES",
            "1000",
            "import.max_decompressed_bytes (1000 bytes)",
        ),
        (
            "FERRY__IMPORT__MAX_COLUMNS",
            "3",
            "the header has 5 columns, over import.max_columns (3)",
        ),
    ];
    for (i, (key, value, want)) in cases.into_iter().enumerate() {
        let group = format!("g{i}");
        let (r, code) = db.import(&file, &group, &[], &[(key, value)]).await;
        assert_eq!(code, 1, "{key}: {r}");
        assert_eq!(r["status"], "FAILED");
        assert!(reason(&r).contains(want), "{key}: {r}");
    }
    // The object size is checked before anything is read.
    let (r, _) = db
        .import(
            &file,
            "g-size",
            &[],
            &[("FERRY__IMPORT__MAX_OBJECT_BYTES", "100")],
        )
        .await;
    assert_eq!(r["rowsRead"], 0);
}

#[tokio::test]
async fn a_record_over_max_record_bytes_fails_the_job() {
    let db = TestDb::new().await;
    // One quoted field of 20 MiB: over the default 16 MiB.
    let mut csv = b"id,blob\nr1,\"".to_vec();
    csv.resize(csv.len() + (20 << 20), b'z');
    csv.extend_from_slice(b"\"\nr2,small\n");
    let file = db.path("huge-field.csv");
    std::fs::write(&file, &csv).unwrap();
    let (r, code) = db.import(&file, "huge", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).contains("import.max_record_bytes (16777216 bytes)"),
        "{r}"
    );
}
