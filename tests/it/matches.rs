//! Match suggestions from Parquet (seed 003): from S3 (by `s3://` and by
//! the seed's `http://endpoint/bucket/key`) and from local files; schema
//! checks, lossless coercion, rejected rows, broken files and limits.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use ferry::locals3::LocalS3;
use ferry::sample;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::harness::{domain, TestDb};

const SEED: u64 = 7;

fn reason(r: &Value) -> &str {
    r["failureReason"].as_str().unwrap_or_default()
}

/// Writes one record batch of `columns` as a snappy Parquet file.
pub(crate) fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, props: WriterProperties) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

pub(crate) fn snappy() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build()
}

/// Loads the sample's rows into `group` with a plain INSERT, generated
/// straight from the sample generator: what an import must end up with.
async fn load_expected(db: &TestDb, group: &str, rows: u64) {
    let mut rng = sample::Rng::new(SEED);
    let (mut p, mut m, mut s, mut k) = (vec![], vec![], vec![], vec![]);
    for i in 0..rows {
        let r = sample::match_row(i, &mut rng);
        p.push(r.participant);
        m.push(r.matched);
        s.push(r.score);
        k.push(r.rank);
    }
    db.client()
        .await
        .execute(
            "INSERT INTO match_suggestions (group_id, domain_id, participant_id,
                 matched_participant_id, compatibility_score, rank)
             SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::float8[], $6::int4[])",
            &[
                &ferry_actors::job::group_uuid(group),
                &domain(),
                &p,
                &m,
                &s,
                &k,
            ],
        )
        .await
        .unwrap();
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn parquet_from_s3_by_url_and_from_a_file_loads_exactly_its_rows() {
    const ROWS: u64 = 50_000;
    let db = TestDb::new().await;
    let s3 = LocalS3::start().unwrap();
    let file = db.path("matches.parquet");
    // Seven row groups, the last one partial.
    sample::write_matches_parquet(&file, ROWS, 8_000, SEED).unwrap();
    s3.put_file("engine", "daily/matches.parquet", &file)
        .await
        .unwrap();
    // Migrations first, so the expected rows have a table to go to.
    assert!(db.ferry(&["migrate"], &[]).await.status.success());
    load_expected(&db, "expected", ROWS).await;
    let want = db.match_digest("expected").await;
    let env = s3.env();
    let env = env_refs(&env);

    let (r, code) = db
        .import_matches("s3://engine/daily/matches.parquet", "by-s3", &[], &env)
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["target"], "matches");
    assert_eq!(r["rowsRead"], ROWS);
    assert_eq!(r["inserted"], ROWS);
    assert_eq!(db.match_digest("by-s3").await, want);

    // Seed 003/004's filePath style.
    let url = format!("{}/engine/daily/matches.parquet", s3.endpoint());
    let (r, code) = db.import_matches(&url, "by-http", &[], &env).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(db.match_digest("by-http").await, want);

    let (r, code) = db
        .import_matches(file.to_str().unwrap(), "by-file", &[], &[])
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(db.match_digest("by-file").await, want);

    // The same file again: every row is there already, the same, and none
    // is written.
    let (r, code) = db
        .import_matches("s3://engine/daily/matches.parquet", "by-s3", &[], &env)
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (
            r["inserted"].as_i64(),
            r["updated"].as_i64(),
            r["unchanged"].as_i64()
        ),
        (Some(0), Some(0), Some(ROWS as i64)),
        "{r}"
    );
    assert_eq!(db.match_count("by-s3").await, ROWS as i64);
}

#[tokio::test]
async fn a_wrong_schema_fails_before_any_row_naming_the_columns() {
    let db = TestDb::new().await;
    let missing = db.path("missing.parquet");
    write_parquet(
        &missing,
        vec![
            (
                "participant_id",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            ("score", Arc::new(Float64Array::from(vec![0.5]))),
        ],
        snappy(),
    );
    let (r, code) = db
        .import_matches(missing.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "FAILED");
    assert_eq!(
        reason(&r),
        "missing required columns: matched_participant_id, compatibility_score, rank \
         (the file has: participant_id, score)"
    );
    assert_eq!(r["rowsRead"], 0);

    let wrong_type = db.path("wrong-type.parquet");
    write_parquet(
        &wrong_type,
        vec![
            (
                "participantId",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            (
                "matchedParticipantId",
                Arc::new(StringArray::from(vec!["b"])),
            ),
            (
                "compatibilityScore",
                Arc::new(StringArray::from(vec!["high"])),
            ),
            ("rank", Arc::new(Int64Array::from(vec![1]))),
        ],
        snappy(),
    );
    let (r, code) = db
        .import_matches(wrong_type.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).contains("`compatibilityScore` is Utf8, expected a number"),
        "{r}"
    );
    assert_eq!(db.match_count("g").await, 0);
}

#[tokio::test]
async fn truncated_corrupt_and_foreign_files_fail_clearly() {
    let db = TestDb::new().await;
    let good = db.path("good.parquet");
    sample::write_matches_parquet(&good, 20_000, 5_000, SEED).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = db.path("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (r, code) = db
        .import_matches(truncated.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).starts_with("unreadable Parquet footer: "), "{r}");

    let csv = db.path("not-parquet.parquet");
    std::fs::write(&csv, "participant_id,matched_participant_id\na,b\n").unwrap();
    let (r, code) = db
        .import_matches(csv.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).starts_with("unreadable Parquet footer: "), "{r}");

    // Garbage over the data of the second row group: the first one loads,
    // then the job fails with where it stopped.
    let footer = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&std::fs::File::open(&good).unwrap())
        .unwrap();
    let chunk = footer.row_group(1).column(0);
    let (start, len) = chunk.byte_range();
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[start as usize..(start + len) as usize] {
        *b = 0xa5;
    }
    let corrupt_path = db.path("corrupt.parquet");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    let (r, code) = db
        .import_matches(corrupt_path.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).starts_with("corrupt Parquet data in row group 1 (after row 5000): "),
        "{r}"
    );
    assert_eq!(db.match_count("g").await, 5_000);
}

#[tokio::test]
async fn bad_rows_are_rejected_with_their_row_and_reason() {
    let db = TestDb::new().await;
    let file = db.path("in/bad.parquet");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let participant: ArrayRef = Arc::new(StringArray::from(vec![
        Some("a"),
        None,
        Some("b"),
        Some("c"),
        Some("d"),
        Some("e"),
        Some("5"),
    ]));
    let matched: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(1),
        Some(2),
        None,
        Some(3),
        Some(4),
        Some(5),
        Some(5),
    ]));
    // Integers for scores, floats for ranks: taken only when exact.
    let score: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(1),
        Some(1),
        Some(1),
        Some(1 << 60),
        Some(1),
        None,
        Some(1),
    ]));
    let rank: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(1.0),
        Some(1.0),
        Some(1.0),
        Some(2.0),
        Some(2.5),
        None,
        Some(1.0),
    ]));
    write_parquet(
        &file,
        vec![
            ("participant_id", participant),
            ("matched_participant_id", matched),
            ("compatibility_score", score),
            ("rank", rank),
        ],
        snappy(),
    );
    let (r, code) = db
        .import_matches(file.to_str().unwrap(), "g", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["rowsRead"], 7);
    assert_eq!(r["inserted"], 2);
    assert_eq!(r["rejected"], 5);
    assert!(reason(&r).starts_with("5 of 7 rows rejected; see "), "{r}");
    let rejects = std::fs::read_to_string(r["rejectsPath"].as_str().unwrap()).unwrap();
    assert_eq!(
        rejects,
        "row,reason,participant_id,matched_participant_id,compatibility_score,rank\n\
         2,participant_id is null,,2,1,1\n\
         3,matched_participant_id is null,b,,1,1\n\
         4,compatibility_score 1152921504606846976 does not fit a double exactly,c,3,1152921504606846976,2\n\
         5,rank 2.5 is not a whole number in integer range,d,4,1,2.5\n\
         7,participant_id and matched_participant_id are the same,5,5,1,1\n"
    );
    let rows: Vec<(String, String, Option<f64>, Option<i32>)> = db
        .client()
        .await
        .query(
            "SELECT participant_id, matched_participant_id, compatibility_score, rank
             FROM match_suggestions ORDER BY participant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a".into(), "1".into(), Some(1.0), Some(1)),
            ("e".into(), "5".into(), None, None),
        ]
    );
}

#[tokio::test]
async fn footer_limits_fail_the_job_naming_the_limit() {
    let db = TestDb::new().await;
    let file = db.path("m.parquet");
    sample::write_matches_parquet(&file, 10_000, 5_000, SEED).unwrap();
    let path = file.to_str().unwrap();
    let (r, code) = db
        .import_matches(
            path,
            "g",
            &[],
            &[("FERRY__IMPORT__MAX_ROW_GROUP_BYTES", "4096")],
        )
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(reason(&r).starts_with("row group 0 stores "), "{r}");
    assert!(
        reason(&r).ends_with("over import.max_row_group_bytes (4096)"),
        "{r}"
    );
    let (r, _) = db
        .import_matches(path, "g", &[], &[("FERRY__IMPORT__MAX_COLUMNS", "3")])
        .await;
    assert_eq!(
        reason(&r),
        "the file has 5 columns, over import.max_columns (3)"
    );

    // A bomb: 24 MB of one repeated id, no dictionary, squeezed by snappy.
    let bomb = db.path("bomb.parquet");
    let n = 200_000;
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|_| "x".repeat(120)),
    ));
    write_parquet(
        &bomb,
        vec![
            ("participant_id", ids.clone()),
            ("matched_participant_id", ids),
            (
                "compatibility_score",
                Arc::new(Float64Array::from(vec![0.5; n])),
            ),
            ("rank", Arc::new(Int64Array::from(vec![1; n]))),
        ],
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .build(),
    );
    let (r, code) = db
        .import_matches(
            bomb.to_str().unwrap(),
            "g",
            &[],
            &[("FERRY__IMPORT__MAX_COMPRESSION_RATIO", "5")],
        )
        .await;
    assert_eq!(code, 1, "{r}");
    assert!(
        reason(&r).contains("over import.max_compression_ratio (5)"),
        "{r}"
    );
    assert_eq!(db.match_count("g").await, 0);
}

#[tokio::test]
async fn targets_and_formats_must_match() {
    let db = TestDb::new().await;
    let file = db.path("m.parquet");
    sample::write_matches_parquet(&file, 10, 10, SEED).unwrap();
    let out = db
        .ferry(
            &[
                "import",
                file.to_str().unwrap(),
                "--domain",
                crate::harness::DOMAIN,
                "--group",
                "g",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--target matches"),
        "{out:?}"
    );
}
