//! The happy paths of a file import: rows, metadata, re-import, duplicates.

use std::collections::HashMap;

use ferry::sample;
use serde_json::{json, Value};

use crate::harness::{gunzip, gzip, metric, TestDb};

/// Rows of the sample file, by reference id, as the header's normalised
/// keys would store them.
fn expected_rows(file: &std::path::Path, wanted: &[&str]) -> HashMap<String, Value> {
    let text = String::from_utf8(gunzip(&std::fs::read(file).unwrap())).unwrap();
    let mut lines = text.lines();
    let keys = sample::USER_METADATA_KEYS;
    assert_eq!(lines.next(), Some(sample::USER_HEADER));
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            wanted.contains(&f[0]).then(|| {
                let meta: serde_json::Map<String, Value> = keys
                    .iter()
                    .zip(&f[1..])
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                (f[0].to_string(), Value::Object(meta))
            })
        })
        .collect()
}

#[tokio::test]
async fn a_100k_gzip_file_becomes_nodes_and_a_reimport_writes_only_what_changed() {
    let db = TestDb::new().await;
    let file = db.path("users.csv.gz");
    sample::write_users_csv_gz(&file, 100_000, 7).unwrap();

    let metrics = db.path("ferry.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let (report, code) = db
        .import(&file, "group-a", &["--metrics-textfile", metrics_arg], &[])
        .await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "COMPLETED");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&prom, r#"ferry_rows_written_total{target="nodes"}"#),
        Some(100_000.0),
        "{prom}"
    );
    assert_eq!(
        metric(
            &prom,
            r#"ferry_jobs_total{kind="nodes",status="COMPLETED"}"#
        ),
        Some(1.0)
    );
    for actor in [
        "import_pipeline",
        "batch_accumulator",
        "csv_reader",
        "copy_writer",
    ] {
        let series = format!(r#"ferry_actor_mailbox_depth{{actor="{actor}"}}"#);
        assert_eq!(
            metric(&prom, &series),
            Some(0.0),
            "{actor}: every mailbox drained"
        );
    }
    assert_eq!(report["rowsRead"], 100_000);
    assert_eq!(report["inserted"], 100_000);
    assert_eq!(report["updated"], 0);
    assert_eq!(report["rejected"], 0);
    assert_eq!(db.count("group-a").await, 100_000);

    let sampled = ["u00000001", "u00050000", "u00100000"];
    let want = expected_rows(&file, &sampled);
    let client = db.client().await;
    for r in sampled {
        let row = client
            .query_one(
                "SELECT metadata, type, (substr(id::text, 15, 1) = '7') AS v7 FROM nodes WHERE reference_id = $1",
                &[&r],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Value>(0), want[r], "metadata of {r}");
        assert_eq!(row.get::<_, String>(1), "USER");
        assert!(row.get::<_, bool>(2), "ids are UUIDv7");
    }
    // The seed's node_metadata readers see one row per key.
    let city: String = client
        .query_one(
            "SELECT m.metadata_value FROM node_metadata m JOIN nodes n ON n.id = m.node_id
             WHERE n.reference_id = 'u00050000' AND m.metadata_key = 'city'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(json!(city), want["u00050000"]["city"]);

    // The same file again: nothing to write, and nothing is written.
    let versions =
        "SELECT string_agg(reference_id || '@' || xmin::text, ',' ORDER BY reference_id),
                           pg_relation_size('node_rows') FROM node_rows";
    let before = client.query_one(versions, &[]).await.unwrap();
    let metrics = db.path("again.prom");
    let (again, code) = db
        .import(
            &file,
            "group-a",
            &["--metrics-textfile", metrics.to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["inserted"], &again["updated"], &again["unchanged"]),
        (&json!(0), &json!(0), &json!(100_000)),
        "{again}"
    );
    assert_eq!(db.count("group-a").await, 100_000);
    let after = client.query_one(versions, &[]).await.unwrap();
    assert_eq!(
        before.get::<_, String>(0),
        after.get::<_, String>(0),
        "every row keeps its version"
    );
    assert_eq!(
        before.get::<_, i64>(1),
        after.get::<_, i64>(1),
        "the table did not grow"
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(&prom, r#"ferry_rows_unchanged_total{target="nodes"}"#),
        Some(100_000.0),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, r#"ferry_rows_written_total{target="nodes"}"#),
        Some(0.0),
        "{prom}"
    );

    // Two rows changed and one new: those three are written, no other.
    let text = String::from_utf8(gunzip(&std::fs::read(&file).unwrap())).unwrap();
    let mut changed = String::new();
    for line in text.lines() {
        let line = match line.split_once(',') {
            Some(("u00000002", rest)) => {
                format!("u00000002,{}", rest.replacen("Austin", "Lagos", 1))
            }
            Some(("u00050000", rest)) => format!("u00050000,X{rest}"),
            _ => line.to_string(),
        };
        changed.push_str(&line);
        changed.push('\n');
    }
    changed.push_str("u09999999,New,User,new@example.com,Oslo,NO,30,2024-01-01,team,1.5\n");
    let file2 = db.path("users-changed.csv.gz");
    std::fs::write(&file2, gzip(changed.as_bytes())).unwrap();
    let (third, code) = db.import(&file2, "group-a", &[], &[]).await;
    assert_eq!(code, 0, "{third}");
    assert_eq!(
        (&third["inserted"], &third["updated"], &third["unchanged"]),
        (&json!(1), &json!(2), &json!(99_998)),
        "{third}"
    );
    let moved: Vec<String> = client
        .query(
            "WITH before AS (SELECT split_part(v, '@', 1) AS r, split_part(v, '@', 2) AS x
                             FROM unnest(string_to_array($1, ',')) v)
             SELECT n.reference_id FROM node_rows n LEFT JOIN before b ON b.r = n.reference_id
             WHERE b.x IS DISTINCT FROM n.xmin::text ORDER BY 1",
            &[&after.get::<_, String>(0)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(moved, ["u00000002", "u00050000", "u09999999"]);

    let job = client
        .query_one(
            "SELECT status, total_rows, processed_rows, attempts, unchanged_rows FROM jobs WHERE id = $1",
            &[&again["jobId"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(job.get::<_, String>(0), "COMPLETED");
    assert_eq!(job.get::<_, i64>(1), 100_000);
    assert_eq!(job.get::<_, i64>(2), 100_000);
    assert_eq!(job.get::<_, i32>(3), 1);
    assert_eq!(
        job.get::<_, i64>(4),
        100_000,
        "the job row counts the unchanged"
    );
}

/// Keys repeat inside a batch and across batches; the last row of a key
/// wins, in both write modes.
#[tokio::test]
async fn duplicate_keys_keep_the_last_row() {
    let db = TestDb::new().await;
    let csv = "id,city\na,1\nb,1\na,2\nc,1\nb,2\na,3\nd,1\n";
    let file = db.path("dups.csv.gz");
    std::fs::write(&file, gzip(csv.as_bytes())).unwrap();

    for (group, extra) in [("fast", vec![]), ("upsert", vec!["--no-fast-path"])] {
        for batch_rows in ["2", "100"] {
            let group = format!("{group}-{batch_rows}");
            let mut args = extra.clone();
            args.extend(["--batch-rows", batch_rows]);
            let (report, code) = db.import(&file, &group, &args, &[]).await;
            assert_eq!(code, 0, "{report}");
            assert_eq!(report["rowsRead"], 7);
            assert_eq!(db.count(&group).await, 4, "{group}");
            let loaded = report["inserted"].as_i64().unwrap()
                + report["updated"].as_i64().unwrap()
                + report["unchanged"].as_i64().unwrap()
                + report["duplicates"].as_i64().unwrap();
            assert_eq!(loaded, 7, "every row is accounted for: {report}");
            let rows = db
                .client()
                .await
                .query(
                    "SELECT reference_id, metadata->>'city' FROM nodes WHERE group_id = $1 ORDER BY 1",
                    &[&ferry_actors::job::group_uuid(&group)],
                )
                .await
                .unwrap();
            let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let want = [("a", "3"), ("b", "2"), ("c", "1"), ("d", "1")];
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got, want, "{group}");
        }
    }
}

/// The same keys in two groups are two sets of rows; a non-UUID group maps
/// to a stable UUIDv5.
#[tokio::test]
async fn groups_are_isolated_and_named_groups_map_to_uuidv5() {
    let db = TestDb::new().await;
    let file = db.path("u.csv");
    std::fs::write(&file, "username,team\nx,red\ny,blue\n").unwrap();
    let uuid_group = "3f1d2c4b-5a6e-4f70-8192-a3b4c5d6e7f8";
    for g in ["named group", uuid_group] {
        let (r, code) = db.import(&file, g, &["--type", "MENTOR"], &[]).await;
        assert_eq!(code, 0, "{r}");
    }
    let client = db.client().await;
    let groups: Vec<(uuid::Uuid, String)> = client
        .query("SELECT DISTINCT group_id, type FROM nodes ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let named = ferry_actors::job::group_uuid("named group");
    assert_eq!(named.get_version_num(), 5);
    let mut want = vec![
        (named, "MENTOR".to_string()),
        (uuid_group.parse().unwrap(), "MENTOR".into()),
    ];
    want.sort();
    assert_eq!(groups, want);
}

/// Two jobs load the same empty group at once: one takes the fast path and
/// holds the group's lock; the other waits for it, then upserts. The rows
/// end up loaded once, whoever came first.
#[tokio::test]
async fn concurrent_jobs_on_one_group_take_turns() {
    let db = TestDb::new().await;
    let file = db.path("users.csv.gz");
    sample::write_users_csv_gz(&file, 20_000, 5).unwrap();
    let (a, b) = tokio::join!(
        db.import(&file, "shared", &[], &[]),
        db.import(&file, "shared", &[], &[])
    );
    for (r, code) in [&a, &b] {
        assert_eq!(*code, 0, "{r}");
    }
    let inserted: Vec<i64> = [&a.0, &b.0]
        .iter()
        .map(|r| r["inserted"].as_i64().unwrap())
        .collect();
    let unchanged: Vec<i64> = [&a.0, &b.0]
        .iter()
        .map(|r| r["unchanged"].as_i64().unwrap())
        .collect();
    assert_eq!(inserted.iter().sum::<i64>(), 20_000, "{a:?} {b:?}");
    // The second finds every row as the first left it.
    assert_eq!(unchanged.iter().sum::<i64>(), 20_000, "{a:?} {b:?}");
    assert_eq!(db.count("shared").await, 20_000);
}
