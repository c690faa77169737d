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
    expected_nodes_in(db, "created_at, id").await
}

/// The same, in the order `order` (SQL) says.
pub async fn expected_nodes_in(db: &TestDb, order: &str) -> Vec<Vec<String>> {
    let sql = format!(
        "SELECT id::text, reference_id, coalesce(metadata->>'city', ''), {RFC3339}, processed::text
         FROM nodes WHERE domain_id = $1 ORDER BY {order}"
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

pub const FIELDS: &str = "id,reference_id,metadata.city,created_at,processed";

/// Loads `rows` sample users into the test domain (and 50 into another
/// domain, which no export may show).
pub async fn loaded(db: &TestDb, rows: u64) {
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

/// The [`FIELDS`] of every row of a file in `format`, in file order (a
/// CSV's header checked).
pub fn rows_of(format: &str, bytes: &[u8]) -> Vec<Vec<String>> {
    match format {
        "csv" => {
            let (header, rows) = csv_rows(bytes);
            assert_eq!(header.join(","), FIELDS);
            rows
        }
        "json" => json_rows(
            serde_json::from_slice::<Vec<Value>>(bytes)
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
    }
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
        let got = rows_of(format, &read_back(&out));
        assert_eq!(got.len(), want.len(), "{format}/{compression}");
        assert_eq!(got, want, "{format}/{compression}: rows and their order");
    }
}

/// Seed 002's vouchers and orders, from a user's own tables: declared in
/// the config, typed from the catalog.
const DECLARED: &str = r#"
[[exports.objects]]
name = "voucher"
table = "public.vouchers"
default_fields = ["code", "voucher_type", "value", "discount_type"]
default_order = "-created_at"

[[exports.objects]]
name = "order"
table = "orders"
default_fields = ["id", "source_id", "status"]
"#;

const OTHER_DOMAIN: &str = "11111111-2222-4333-8444-555555555555";

async fn vouchers_and_orders(db: &TestDb) -> std::path::PathBuf {
    let c = db.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE vouchers (
             id uuid PRIMARY KEY, domain_id uuid NOT NULL, code text NOT NULL,
             campaign text, category text, voucher_type text, value numeric(12,2),
             discount_type text, gift_balance bigint, redemption_quantity integer,
             redemption_count smallint, start_date timestamptz, expiration_date date,
             active boolean, rating double precision, ip inet,
             metadata jsonb NOT NULL DEFAULT '{{}}', created_at timestamptz NOT NULL,
             updated_at timestamptz);
         CREATE TABLE orders (
             id uuid PRIMARY KEY, domain_id uuid NOT NULL, source_id text, status text,
             amount numeric(14,2), total_amount numeric, created_at timestamptz NOT NULL,
             customer_id text, metadata jsonb NOT NULL DEFAULT '{{}}');
         INSERT INTO vouchers
         SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN '{OTHER_DOMAIN}' ELSE '{DOMAIN}' END::uuid,
                CASE i % 7 WHEN 0 THEN 'CODE,' || i WHEN 1 THEN 'say \"' || i || '\"'
                           WHEN 2 THEN E'two\\nlines ' || i ELSE 'C' || i END,
                'camp-' || (i % 3), NULL, CASE WHEN i % 2 = 0 THEN 'GIFT' ELSE 'DISCOUNT' END,
                (i * 1.25 - 40)::numeric(12,2), CASE WHEN i % 4 = 0 THEN NULL ELSE 'AMOUNT' END,
                i * 1000000000::bigint, i % 5, (i % 3)::smallint,
                timestamptz '2026-01-01 00:00:00+00' + i * interval '1 hour 0.5 second',
                date '2026-06-01' + i, i % 3 <> 0, i / 3.0, ('10.0.0.' || (i % 200))::inet,
                jsonb_build_object('tier', CASE WHEN i % 3 = 0 THEN 'gold' ELSE 'basic' END,
                                   'n', i, 'city', 'Pune, IN'),
                timestamptz '2026-02-01 00:00:00+00' + i * interval '1 minute', NULL
         FROM generate_series(1, 500) i;
         INSERT INTO orders
         SELECT gen_random_uuid(), '{DOMAIN}', 'ord-' || i, CASE WHEN i % 2 = 0 THEN 'PAID' ELSE 'CREATED' END,
                i * 10.5, i * 10.5, now(), 'cust-' || (i % 7), jsonb_build_object('channel', 'web')
         FROM generate_series(1, 40) i;"
    ))
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    let config = db.path("declared.toml");
    std::fs::write(&config, DECLARED).unwrap();
    config
}

/// One SQL value per row and field, as text, for comparisons.
async fn column_text(db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    db.client()
        .await
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_declared_object_exports_its_own_table_typed_and_only_its_domain() {
    let db = TestDb::new().await;
    assert!(db.ferry(&["migrate"], &[]).await.status.success());
    let config = vouchers_and_orders(&db).await;
    let config = config.to_str().unwrap();

    // CSV, the declared default fields and order.
    let out = db.path("vouchers.csv");
    let (r, code) = export(
        &db,
        &[
            "--config",
            config,
            "voucher",
            "--domain",
            DOMAIN,
            "--compression",
            "none",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rows"], 450, "only the domain's rows: {r}");
    let (header, rows) = csv_rows(&read_back(&out));
    assert_eq!(header, ["code", "voucher_type", "value", "discount_type"]);
    let want: Vec<Vec<String>> = column_text(
        &db,
        &format!(
            "SELECT code, voucher_type, value::text, coalesce(discount_type, '') FROM vouchers
             WHERE domain_id = '{DOMAIN}' ORDER BY created_at DESC, id"
        ),
    )
    .await
    .into_iter()
    .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
    .collect();
    assert_eq!(rows, want, "quotes, commas and line breaks survive");

    // JSON: typed values, metadata as an object, NULL as null.
    let out = db.path("vouchers.json");
    let fields = "id,code,value,gift_balance,redemption_count,active,rating,start_date,expiration_date,metadata,metadata.tier,ip,category";
    let (r, code) = export(
        &db,
        &[
            "--config",
            config,
            "voucher",
            "--domain",
            DOMAIN,
            "--fields",
            fields,
            "--order",
            "code",
            "--format",
            "json",
            "--compression",
            "none",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    let text = String::from_utf8(read_back(&out)).unwrap();
    let got: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(got.len(), 450);
    let want = column_text(
        &db,
        &format!(
            "SELECT id::text, code, value::text, gift_balance::text, redemption_count::text, active::text,
                    rating::text, to_char(start_date AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'),
                    expiration_date::text, metadata->>'tier', ip::text
             FROM vouchers WHERE domain_id = '{DOMAIN}' ORDER BY code, id"
        ),
    )
    .await;
    for (g, w) in got.iter().zip(&want) {
        let w: Vec<&str> = w.iter().map(|v| v.as_deref().unwrap_or("")).collect();
        assert_eq!(g["id"], w[0]);
        assert_eq!(g["code"], w[1]);
        assert_eq!(
            g["value"].as_f64().unwrap(),
            w[2].parse::<f64>().unwrap(),
            "{g}"
        );
        assert_eq!(g["gift_balance"].as_i64().unwrap().to_string(), w[3]);
        assert_eq!(g["redemption_count"].as_i64().unwrap().to_string(), w[4]);
        assert_eq!(g["active"].as_bool().unwrap().to_string(), w[5]);
        // serde_json's float parsing may be an ulp off; the text is checked below.
        let rating = g["rating"].as_f64().unwrap();
        assert!((rating - w[6].parse::<f64>().unwrap()).abs() < 1e-9, "{g}");
        assert!(g["start_date"].as_str().unwrap().starts_with(w[7]), "{g}");
        assert!(g["start_date"].as_str().unwrap().ends_with('Z'), "{g}");
        assert_eq!(g["expiration_date"], w[8]);
        assert!(g["metadata"].is_object(), "{g}");
        assert_eq!(g["metadata.tier"], w[9]);
        assert_eq!(g["ip"], w[10], "a type without a codec comes as its text");
        assert_eq!(g["category"], Value::Null);
    }
    assert!(
        text.contains("\"value\":-38.75"),
        "numeric digits as written"
    );
    assert!(
        text.contains("\"rating\":90.33333333333333,"),
        "floats round-trip exactly"
    );

    // Parquet: the columns keep their types.
    let out = db.path("vouchers.parquet");
    let (r, code) = export(
        &db,
        &[
            "--config",
            config,
            "voucher",
            "--domain",
            DOMAIN,
            "--fields",
            fields,
            "--order",
            "code",
            "--format",
            "parquet",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    let file = std::fs::File::open(&out).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "FixedSizeBinary(16)",
            "Utf8",
            "Decimal128(12, 2)",
            "Int64",
            "Int16",
            "Boolean",
            "Float64",
            "Timestamp(µs, \"UTC\")",
            "Date32",
            "Utf8",
            "Utf8",
            "Utf8",
            "Utf8"
        ]
    );
    let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 450);
    let first = &batches[0];
    let values = first
        .column(2)
        .as_any()
        .downcast_ref::<arrow_array::Decimal128Array>()
        .unwrap();
    assert_eq!(values.value_as_string(0), want[0][2].clone().unwrap());
    let codes = first
        .column(1)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    assert_eq!(codes.value(0), want[0][1].clone().unwrap());

    // The other domain sees only its own.
    let out = db.path("theirs.jsonl");
    let (r, code) = export(
        &db,
        &[
            "--config",
            config,
            "voucher",
            "--domain",
            OTHER_DOMAIN,
            "--format",
            "jsonl",
            "--compression",
            "none",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rows"], 50, "{r}");

    // Orders: another declared table, a metadata key as a field.
    let out = db.path("orders.csv.gz");
    let (r, code) = export(
        &db,
        &[
            "--config",
            config,
            "order",
            "--domain",
            DOMAIN,
            "--fields",
            "source_id,amount,metadata.channel",
            "--order",
            "-amount",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    let (_, rows) = csv_rows(&read_back(&out));
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[0], ["ord-40", "420.00", "web"]);
}

#[tokio::test]
async fn filters_select_exactly_the_rows_they_say() {
    let db = TestDb::new().await;
    assert!(db.ferry(&["migrate"], &[]).await.status.success());
    let config = vouchers_and_orders(&db).await;
    let config = config.to_str().unwrap();
    let cases = [
        (
            r#"{"voucher_type": {"conditions": {"$in": ["GIFT"]}}, "metadata.tier": {"conditions": {"$is": ["gold"]}}}"#,
            "voucher_type = 'GIFT' AND metadata->>'tier' = 'gold'",
        ),
        (
            r#"{"junction": "or", "value": {"conditions": {"$less_than": [0]}}, "code": {"conditions": {"$starts_with": ["say"]}}}"#,
            "value < 0 OR code LIKE 'say%'",
        ),
        (
            r#"{"start_date": {"conditions": {"$after": ["2026-01-10T00:00:00Z"], "$before": ["2026-01-12"]}}}"#,
            "start_date > '2026-01-10T00:00:00Z' AND start_date < '2026-01-12'",
        ),
        (
            r#"{"discount_type": {"conditions": {"$is_unknown": []}}, "metadata.n": {"conditions": {"$more_than_equal": [400]}}}"#,
            "discount_type IS NULL AND (metadata->>'n')::int >= 400",
        ),
        (
            r#"{"code": {"conditions": {"$not_contain": [","]}}, "filters": [{"junction": "or", "active": {"conditions": {"$is": [false]}}, "redemption_quantity": {"conditions": {"$in": [1, 2]}}}]}"#,
            "strpos(code, ',') = 0 AND (NOT active OR redemption_quantity IN (1, 2))",
        ),
    ];
    for (i, (filter, sql)) in cases.iter().enumerate() {
        let out = db.path(&format!("f{i}.jsonl"));
        let (r, code) = export(
            &db,
            &[
                "--config",
                config,
                "voucher",
                "--domain",
                DOMAIN,
                "--fields",
                "code",
                "--order",
                "code",
                "--filter",
                filter,
                "--format",
                "jsonl",
                "--compression",
                "none",
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{filter}: {r}");
        let got: Vec<String> = String::from_utf8(read_back(&out))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["code"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let want: Vec<String> = column_text(
            &db,
            &format!("SELECT code FROM vouchers WHERE domain_id = '{DOMAIN}' AND ({sql}) ORDER BY code, id"),
        )
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
        assert!(!want.is_empty(), "case {i} selects something");
        assert_eq!(got, want, "{filter}");
    }
}

/// The rows of JSONL files, in file order, as (id, reference_id, city).
pub fn jsonl_rows(bytes: &[u8]) -> Vec<(String, String, String)> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["reference_id"].as_str().unwrap().to_string(),
                v["metadata"]["city"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub async fn expected_jsonl_rows(db: &TestDb) -> Vec<(String, String, String)> {
    column_text(
        db,
        &format!(
            "SELECT id::text, reference_id, metadata->>'city' FROM nodes
             WHERE domain_id = '{DOMAIN}' ORDER BY created_at, id"
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].clone().unwrap(),
        )
    })
    .collect()
}

/// To S3, in seed 002's layout (the bucket made on the way): several files,
/// each a multipart upload of several parts, together every row once.
#[tokio::test]
async fn an_export_to_s3_splits_into_files_of_several_parts() {
    let db = TestDb::new().await;
    loaded(&db, 50_000).await;
    let s3 = ferry::locals3::LocalS3::start().unwrap();
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("FERRY__EXPORTS__FILE_ROWS".into(), "20000".into()));
    env.push(("FERRY__EXPORTS__PART_BYTES".into(), "5242880".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (r, code) = export(
        &db,
        &[
            "node",
            "--domain",
            DOMAIN,
            "--fields",
            "id,reference_id,metadata",
            "--format",
            "jsonl",
            "--compression",
            "none",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rows"], 50_000, "{r}");
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{r}");
    let job = r["jobId"].as_str().unwrap();
    let month = {
        let now = db
            .client()
            .await
            .query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY/MM')", &[])
            .await
            .unwrap();
        now.get::<_, String>(0)
    };
    let base = format!("s3://ferry-exports/{DOMAIN}/exports/{month}/node-{job}");
    let mut all = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let suffix = if i == 0 {
            String::new()
        } else {
            format!("-{}", i + 1)
        };
        assert_eq!(f["location"], format!("{base}{suffix}.jsonl"), "{r}");
        assert_eq!(f["rows"], if i < 2 { 20_000 } else { 10_000 });
        let key = f["location"]
            .as_str()
            .unwrap()
            .strip_prefix("s3://ferry-exports/")
            .unwrap();
        let bytes = std::fs::read(s3.object_path("ferry-exports", key)).unwrap();
        assert_eq!(f["bytes"], bytes.len() as u64);
        if i < 2 {
            assert!(bytes.len() > 5 << 20, "more than one part: {}", bytes.len());
        }
        all.extend(jsonl_rows(&bytes));
    }
    assert_eq!(
        all,
        expected_jsonl_rows(&db).await,
        "every row once, in order"
    );
    // The job says the same.
    let show = db.ferry(&["exports", "show", job, "--json"], &[]).await;
    let view: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(view["status"], "DONE", "{view}");
    assert_eq!(
        view["progress"],
        serde_json::json!({"rows": 50000, "total": 50000})
    );
    assert_eq!(view["result"]["files"].as_array().unwrap().len(), 3);
}

/// Polls `sql` (one bigint) until it reaches `want`.
pub async fn reaches(db: &TestDb, sql: &str, want: i64, wait: std::time::Duration) -> i64 {
    let c = db.client().await;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let n: i64 = c.query_one(sql, &[]).await.map(|r| r.get(0)).unwrap_or(-1);
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `ferry export node --fields id,reference_id,metadata --format jsonl
/// --compression none --out OUT --json`, not started: the long export the
/// kill tests interrupt.
pub fn jsonl_export(db: &TestDb, out: &Path, env: &[(&str, &str)]) -> tokio::process::Command {
    let args = [
        "export",
        "node",
        "--domain",
        DOMAIN,
        "--fields",
        "id,reference_id,metadata",
        "--format",
        "jsonl",
        "--compression",
        "none",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    db.command(&args, env)
}

/// `ferry export` killed with `kill -9` once a part is stored: its lease
/// runs out, a `ferry serve` resumes the job after the last stored part,
/// and the file, written by two processes, holds every row once, in order.
/// Both read with three readers, in ranges.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_killed_mid_file_resumes_after_its_last_stored_part() {
    let db = TestDb::new().await;
    loaded(&db, 200_000).await;
    let out = db.path("resumed.jsonl");
    let env = [
        ("FERRY__JOBS__LEASE", "1s"),
        ("FERRY__EXPORTS__PART_BYTES", "5242880"),
        ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ("FERRY__EXPORTS__FETCH_ROWS", "500"),
        ("FERRY__EXPORTS__READERS", "3"),
        ("FERRY__EXPORTS__RANGE_ROWS", "5000"),
    ];
    let mut child = jsonl_export(&db, &out, &env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stored = reaches(
        &db,
        "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE kind = 'export'",
        1,
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(stored > 0, "no part was stored");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the export ended before the kill"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let c = db.client().await;
    let (status, rows): (String, i64) = {
        let r = c
            .query_one(
                "SELECT status, processed_rows FROM jobs WHERE kind = 'export'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "RUNNING");
    assert!(rows < 200_000, "killed before the end ({rows})");

    let kafka = crate::service::broker();
    let serve = crate::service::Serve::start(&db, kafka.bootstrap_servers(), &env).await;
    let done = reaches(
        &db,
        "SELECT count(*) FROM jobs WHERE kind = 'export' AND status = 'COMPLETED'",
        1,
        std::time::Duration::from_secs(90),
    )
    .await;
    let log = serve.terminate().await.1;
    assert_eq!(done, 1, "{log}");
    let attempts: i32 = c
        .query_one("SELECT attempts FROM jobs WHERE kind = 'export'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(attempts >= 2, "{attempts}");
    let resumed_at: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("Export pipeline starting."))
        .filter_map(|l| {
            l.split("resume_rows=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        resumed_at.iter().any(|r| *r > 0),
        "resumed mid-file: {resumed_at:?}\n{log}"
    );
    assert!(
        log.contains("Export reading in ranges."),
        "the resumed attempt read with several readers\n{log}"
    );
    assert_eq!(
        jsonl_rows(&read_back(&out)),
        expected_jsonl_rows(&db).await,
        "every row once, in order"
    );
    assert!(!db.path("resumed.jsonl.partial").exists());
}

/// The S3 server dies mid-upload and comes back: the part fails (one
/// attempt allowed), the pipeline restarts after the last stored part,
/// and the object holds every row once.
#[tokio::test(flavor = "multi_thread")]
async fn the_s3_server_killed_mid_upload_costs_no_row() {
    let db = TestDb::new().await;
    loaded(&db, 120_000).await;
    let mut s3 = ferry::locals3::LocalS3::start().unwrap();
    let mut env: Vec<(String, String)> = s3.env();
    for (k, v) in [
        ("FERRY__EXPORTS__PART_BYTES", "5242880"),
        ("FERRY__EXPORTS__FETCH_ROWS", "500"),
        ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ("FERRY__STORAGE__MAX_ATTEMPTS", "1"),
        ("FERRY__RETRY__INITIAL_BACKOFF", "1s"),
    ] {
        env.push((k.into(), v.into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = {
        let args: Vec<String> = [
            "node",
            "--domain",
            DOMAIN,
            "--fields",
            "id,reference_id,metadata",
            "--format",
            "jsonl",
            "--compression",
            "none",
            "--out",
            "s3://dumps/nodes.jsonl",
        ]
        .map(String::from)
        .to_vec();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let url = db.url.clone();
        tokio::spawn(async move {
            let mut all = vec!["export".to_string()];
            all.extend(args);
            all.push("--json".into());
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(&all)
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .envs(env)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let stored = reaches(
        &db,
        "SELECT coalesce(max(processed_rows), 0) FROM jobs WHERE kind = 'export'",
        1,
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(stored > 0);
    s3.kill();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    s3.restart().unwrap();
    let (code, stdout, stderr) = run.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(r["attempts"].as_i64().unwrap() >= 2, "the fault hit: {r}");
    assert_eq!(r["rows"], 120_000);
    let bytes = std::fs::read(s3.object_path("dumps", "nodes.jsonl")).unwrap();
    assert_eq!(jsonl_rows(&bytes), expected_jsonl_rows(&db).await);
}

/// Each bad request is refused before any job exists, naming what is wrong
/// (and what is allowed).
#[tokio::test]
async fn bad_requests_make_nothing() {
    let db = TestDb::new().await;
    loaded(&db, 10).await;
    let root = db.path("root");
    std::fs::create_dir_all(&root).unwrap();
    let inside = root.join("ok.csv");
    let inside = inside.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["nope"],
            "unknown object `nope` (allowed: match_suggestion, node)",
        ),
        (
            vec!["node", "--fields", "id,nope"],
            "unknown field `nope` for node (allowed: id, reference_id",
        ),
        (vec!["node", "--fields", "id,id"], "duplicate_field"),
        (
            vec!["node", "--fields", "metadata.First Name"],
            "invalid_metadata_key",
        ),
        (vec!["node", "--order", "-nope"], "invalid_order"),
        (
            vec![
                "node",
                "--filter",
                r#"{"reference_id": {"conditions": {"$regex": ["."]}}}"#,
            ],
            "unknown operator `$regex`",
        ),
        (
            vec![
                "node",
                "--filter",
                r#"{"created_at": {"conditions": {"$after": ["soon"]}}}"#,
            ],
            "is not a date or timestamp",
        ),
        (
            vec![
                "node",
                "--filter",
                r#"{"reference_id": {"conditions": {"$in": ["a"]}}, "'; DROP TABLE nodes; --": {"conditions": {"$is": ["x"]}}}"#,
            ],
            "unknown field",
        ),
        (
            vec!["node", "--filter", "{not json"],
            "--filter is not JSON",
        ),
        (
            vec!["node", "--out", "/etc/ferry-escape.csv"],
            "outside storage.local_root",
        ),
        (vec!["node", "--out", "../up.csv"], "may not contain `..`"),
        (
            vec!["node", "--out", "s3://dumps/x.csv"],
            "no object store is configured",
        ),
    ];
    let env = [("FERRY__STORAGE__LOCAL_ROOT", root.to_str().unwrap())];
    for (args, says) in cases {
        let mut all = args.clone();
        all.extend(["--domain", DOMAIN]);
        if !all.contains(&"--out") {
            all.extend(["--out", inside]);
        }
        let (r, code) = export(&db, &all, &env).await;
        assert_eq!(code, 2, "{args:?}: {r}");
        let text = r.as_str().unwrap_or_default();
        assert!(text.contains(says), "{args:?}: expected `{says}` in {text}");
    }
    let jobs: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM jobs WHERE kind = 'export'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0, "no bad request made a job");
    let tables: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM nodes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 60, "nothing was dropped");
}

/// `exports.read_url`: the rows come from the replica, the job lives on
/// the primary.
#[tokio::test]
async fn exports_read_from_the_read_replica_when_one_is_set() {
    let primary = TestDb::new().await;
    loaded(&primary, 100).await;
    let replica = TestDb::new().await;
    loaded(&replica, 300).await;
    let out = primary.path("from-replica.csv");
    let (r, code) = export(
        &primary,
        &[
            "node",
            "--domain",
            DOMAIN,
            "--fields",
            "reference_id",
            "--compression",
            "none",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("FERRY__EXPORTS__READ_URL", &replica.url)],
    )
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["rows"], 300, "the replica's rows: {r}");
    let (_, rows) = csv_rows(&read_back(&out));
    assert_eq!(rows.len(), 300);
    let sql = "SELECT count(*)::text FROM jobs WHERE kind = 'export'";
    assert_eq!(column_text(&primary, sql).await[0][0].as_deref(), Some("1"));
    assert_eq!(column_text(&replica, sql).await[0][0].as_deref(), Some("0"));
}
