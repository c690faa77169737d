//! `ferry export` end to end: real PostgreSQL, the real binary, files read
//! back and compared with the table they came from.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::harness::{gunzip, TestDb, DOMAIN};

/// `ferry export ARGS --json`: the report and the exit code.
pub async fn export(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (Value, i32) {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = db.ferry(&all, env).await;
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        Value::String(format!(
            "exit {code}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    (report, code)
}

/// A file's bytes, decompressed by its extension.
pub fn read_back(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        gunzip(&raw)
    } else if name.ends_with(".zst") {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&raw[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    }
}

/// A timestamptz as the export writes it (RFC 3339, UTC, fraction trimmed).
const RFC3339: &str = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')
    || CASE WHEN extract(microseconds FROM created_at)::bigint % 1000000 = 0 THEN ''
            ELSE '.' || rtrim(to_char(created_at AT TIME ZONE 'UTC', 'US'), '0') END || 'Z'";

/// The domain's nodes as the export's fields `id, reference_id,
/// metadata.city, created_at, processed` should show them, in the export's
/// default order.
async fn expected_nodes(db: &TestDb) -> Vec<Vec<String>> {
    let sql = format!(
        "SELECT id::text, reference_id, coalesce(metadata->>'city', ''), {RFC3339}, processed::text
         FROM nodes WHERE domain_id = $1 ORDER BY created_at, id"
    );
    db.client()
        .await
        .query(&sql, &[&crate::harness::domain()])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..5).map(|i| r.get::<_, String>(i)).collect())
        .collect()
}

const FIELDS: &str = "id,reference_id,metadata.city,created_at,processed";

/// Loads `rows` sample users into the test domain (and 50 into another
/// domain, which no export may show).
async fn loaded(db: &TestDb, rows: u64) {
    let file = db.path("users.csv.gz");
    ferry::sample::write_users_csv_gz(&file, rows, 11).unwrap();
    let (r, code) = db.import(&file, "export-src", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    let other = db.path("other.csv.gz");
    ferry::sample::write_users_csv_gz(&other, 50, 12).unwrap();
    let out = db
        .ferry(
            &[
                "import",
                other.to_str().unwrap(),
                "--domain",
                "11111111-2222-4333-8444-555555555555",
                "--group",
                "export-src",
            ],
            &[],
        )
        .await;
    assert!(out.status.success());
}

fn csv_rows(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn json_rows(objects: &[Value]) -> Vec<Vec<String>> {
    objects
        .iter()
        .map(|o| {
            FIELDS
                .split(',')
                .map(|f| match &o[f] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn each_format_and_compression_reads_back_as_the_table() {
    let db = TestDb::new().await;
    loaded(&db, 3_000).await;
    let want = expected_nodes(&db).await;
    assert_eq!(want.len(), 3_000);
    for (format, compression, name) in [
        ("csv", "gzip", "n.csv.gz"),
        ("csv", "zstd", "n.csv.zst"),
        ("csv", "none", "n.csv"),
        ("json", "none", "n.json"),
        ("jsonl", "gzip", "n.jsonl.gz"),
    ] {
        let out = db.path(name);
        let (r, code) = export(
            &db,
            &[
                "node",
                "--domain",
                DOMAIN,
                "--fields",
                FIELDS,
                "--format",
                format,
                "--compression",
                compression,
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{format}/{compression}: {r}");
        assert_eq!(r["rows"], 3_000, "{r}");
        assert_eq!(r["files"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["bytes"], std::fs::metadata(&out).unwrap().len(), "{r}");
        assert!(
            r["dataAsOf"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{r}"
        );
        let bytes = read_back(&out);
        let got = match format {
            "csv" => {
                let (header, rows) = csv_rows(&bytes);
                assert_eq!(header.join(","), FIELDS);
                rows
            }
            "json" => json_rows(
                serde_json::from_slice::<Vec<Value>>(&bytes)
                    .unwrap()
                    .as_slice(),
            ),
            _ => {
                let lines: Vec<Value> = bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect();
                json_rows(&lines)
            }
        };
        assert_eq!(got.len(), want.len(), "{format}/{compression}");
        assert_eq!(got, want, "{format}/{compression}: rows and their order");
    }
}
