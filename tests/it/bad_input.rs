//! Bad files, each with a clear outcome: a FAILED job with a reason that
//! says what is wrong, or rejected rows with their line and reason while
//! the rest loads. Never a panic, never a silent drop.

use serde_json::Value;

use crate::harness::{gzip, TestDb};

async fn import_bytes(db: &TestDb, name: &str, bytes: &[u8], extra: &[&str]) -> (Value, i32) {
    let file = db.path(name);
    std::fs::write(&file, bytes).unwrap();
    db.import(&file, name, extra, &[]).await
}

fn reason(report: &Value) -> String {
    report["failureReason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn unreadable_files_fail_with_a_reason() {
    let db = TestDb::new().await;

    // A gzip stream cut in half: the rows before the cut load, the job fails.
    let mut rows = String::from("id,city\n");
    for i in 0..20_000 {
        rows.push_str(&format!("r{i},city{i}\n"));
    }
    let gz = gzip(rows.as_bytes());
    let (r, code) = import_bytes(&db, "truncated.csv.gz", &gz[..gz.len() / 2], &[]).await;
    assert_eq!((code, r["status"].as_str()), (1, Some("FAILED")), "{r}");
    assert!(reason(&r).contains("unreadable input after line"), "{r}");
    assert_eq!(
        db.count("truncated.csv.gz").await,
        r["inserted"].as_i64().unwrap()
    );

    // Binary garbage with NUL bytes is not CSV.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (r, code) = import_bytes(&db, "garbage.bin", &garbage, &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).starts_with("not a CSV file"), "{r}");

    // Corrupt gzip header.
    let (r, code) = import_bytes(
        &db,
        "corrupt.gz",
        b"\x1f\x8b\x08\x00garbage-not-deflate",
        &[],
    )
    .await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).contains("unreadable input"), "{r}");

    // An empty file has no header.
    let (r, code) = import_bytes(&db, "empty.csv", b"", &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(reason(&r), "the file is empty: no header row");
    let (r, code) = import_bytes(&db, "empty.csv.gz", &gzip(b""), &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(reason(&r), "the file is empty: no header row");

    // A missing file is a FAILED job that names it.
    let (r, code) = db.import(&db.path("nope.csv"), "missing", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).contains("nope.csv") && reason(&r).contains("No such file"),
        "{r}"
    );

    // A reference column that is not in the header.
    let (r, code) = import_bytes(
        &db,
        "noref.csv",
        b"a,b\n1,2\n",
        &["--reference-column", "member id"],
    )
    .await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).contains("`member_id`"), "{r}");
}

#[tokio::test]
async fn header_only_completes_with_no_rows() {
    let db = TestDb::new().await;
    let (r, code) = import_bytes(&db, "header.csv", b"id,name\n", &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["rowsRead"].as_i64()),
        (Some("COMPLETED"), Some(0))
    );
}

#[tokio::test]
async fn bad_rows_are_rejected_one_by_one_and_the_rest_loads() {
    let db = TestDb::new().await;
    let big = "x".repeat(1 << 20);
    let mut csv = Vec::new();
    csv.extend_from_slice(b"Member ID,City,Note\n"); // line 1
    csv.extend_from_slice(b"m1,Pune,ok\n"); // 2
    csv.extend_from_slice(b"m2,Pune\n"); // 3: ragged (short)
    csv.extend_from_slice(b"m3,Pune,ok,extra\n"); // 4: ragged (long)
    csv.extend_from_slice(b" ,Pune,ok\n"); // 5: empty reference id
    csv.extend_from_slice(b"m6,\xff\xfe,ok\n"); // 6: invalid UTF-8
    csv.extend_from_slice(format!("m7,Pune,{big}\n").as_bytes()); // 7: 1 MB field
    csv.extend_from_slice(b"m8,\"Quoted, with comma\",\"two\nlines\"\n"); // 8-9: fine
    csv.extend_from_slice(b"m10,Delhi,ok\n"); // 10
    let (r, code) =
        import_bytes(&db, "mixed.csv", &csv, &["--reference-column", "Member ID"]).await;
    assert_eq!(code, 1, "some rows were rejected: {r}");
    assert_eq!(r["status"], "FAILED");
    assert_eq!(r["rowsRead"], 8);
    assert_eq!(r["inserted"], 3);
    assert_eq!(r["rejected"], 5);
    assert!(reason(&r).starts_with("5 of 8 rows rejected; see "), "{r}");
    assert_eq!(db.count("mixed.csv").await, 3);

    let quoted: String = db
        .client()
        .await
        .query_one(
            "SELECT metadata->>'note' FROM nodes WHERE reference_id = 'm8'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(quoted, "two\nlines");

    let rejects_path = r["rejectsPath"].as_str().expect("a rejects file");
    assert!(rejects_path.ends_with(&format!("rejects/{}.csv", r["jobId"].as_str().unwrap())));
    let rejects = std::fs::read(rejects_path).unwrap();
    let rejects = String::from_utf8_lossy(&rejects);
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "line,reason,member_id,city,note");
    assert_eq!(lines[1], "3,\"has 2 fields, expected 3\",m2,Pune");
    assert_eq!(lines[2], "4,\"has 4 fields, expected 3\",m3,Pune,ok,extra");
    assert_eq!(lines[3], "5,reference id (`member_id`) is empty, ,Pune,ok");
    assert!(
        lines[4].starts_with("6,field `city` is not valid UTF-8,m6,"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].starts_with("7,\"field `note` is 1048576 bytes, over import.max_field_bytes"),
        "{}",
        lines[5]
    );
    assert_eq!(lines.len(), 6);
}

#[tokio::test]
async fn bom_crlf_zstd_and_misnamed_files_read_as_what_they_are() {
    let db = TestDb::new().await;
    let csv = b"\xef\xbb\xbf\"User Id\",Full Name\r\nu1,\"Ann\r\nLee\"\r\nu2,Bob\r\n";

    let (r, code) = import_bytes(&db, "bom.csv", csv, &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["inserted"], 2);
    let meta: Value = db
        .client()
        .await
        .query_one("SELECT metadata FROM nodes WHERE reference_id = 'u1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(meta, serde_json::json!({"full_name": "Ann\r\nLee"}));

    // Plain text named .gz, and gzip named .csv: magic bytes decide.
    let (r, code) = import_bytes(&db, "plain.csv.gz", csv, &[]).await;
    assert_eq!((code, r["inserted"].as_i64()), (0, Some(2)), "{r}");
    let (r, code) = import_bytes(&db, "gzip.csv", &gzip(csv), &[]).await;
    assert_eq!((code, r["inserted"].as_i64()), (0, Some(2)), "{r}");

    // zstd.
    let zst = {
        use tokio::io::AsyncWriteExt;
        let mut e = async_compression::tokio::write::ZstdEncoder::new(Vec::new());
        e.write_all(csv).await.unwrap();
        e.shutdown().await.unwrap();
        e.into_inner()
    };
    let (r, code) = import_bytes(&db, "data.zst", &zst, &[]).await;
    assert_eq!((code, r["inserted"].as_i64()), (0, Some(2)), "{r}");
}
