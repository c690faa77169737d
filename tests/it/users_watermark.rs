//! The users export's watermark (seed 000): what a group has been sent is
//! the snapshot of its last delivered export, one row whatever the group's
//! size. A run writes no user's row; a change through SQL by another tool
//! is seen; a reset sends the group whole again, and an export that began
//! before the reset does not undo it; the migration from the `processed`
//! flag keeps sent users sent without rewriting them.

use std::collections::BTreeSet;
use std::path::Path;

use ferry_actors::job::group_uuid;
use serde_json::Value;

use crate::harness::{self, TestDb, DOMAIN};
use crate::users_export::{
    env, files, load_users, outbox, read_csv_gz, reference_ids, run_now, set_group, unsent,
    while_held,
};

/// Every row's id and `xmin`: a row written again has a new `xmin`.
async fn row_versions(db: &TestDb) -> String {
    db.client()
        .await
        .query_one(
            "SELECT coalesce(string_agg(id::text || ':' || xmin::text, ',' ORDER BY id), '')
             FROM node_rows",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// `ferry groups ARGS`: its stdout, or its stderr when it failed.
async fn groups(db: &TestDb, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["groups"];
    all.extend_from_slice(args);
    let out = db.ferry(&all, &[]).await;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The last message's file: its header and rows.
async fn last_file(db: &TestDb) -> (Vec<String>, Vec<Vec<String>>) {
    let messages = outbox(db).await;
    let last = messages.last().expect("a message");
    read_csv_gz(Path::new(last["filePath"].as_str().unwrap()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_writes_no_users_row_and_another_tools_change_goes_next() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(&dir, &[]);
    load_users(&db, "mentors", 2_000).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    // A key only the last user has (past the first rows, whose keys the
    // export takes first) is a column of the file.
    let c = db.client().await;
    let last = reference_ids(&db, "mentors").await.pop_last().unwrap();
    c.execute(
        "UPDATE nodes SET metadata = metadata || '{\"nickname\": \"Neo\"}' WHERE reference_id = $1",
        &[&last],
    )
    .await
    .unwrap();
    let versions = row_versions(&db).await;
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    let (header, rows) = last_file(&db).await;
    assert_eq!(rows.len(), 2_000);
    let nickname = header.iter().position(|h| h == "nickname");
    let nickname = nickname.unwrap_or_else(|| panic!("no nickname column: {header:?}"));
    let with: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| !r[nickname].is_empty())
        .map(|r| (r[0].as_str(), r[nickname].as_str()))
        .collect();
    assert_eq!(with, [(last.as_str(), "Neo")]);
    assert_eq!(
        row_versions(&db).await,
        versions,
        "the run wrote no user's row"
    );
    assert!(unsent(&db, "mentors").await.is_empty());
    let watermarks: i64 = c
        .query_one(
            "SELECT count(*) FROM group_watermarks WHERE snapshot IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(watermarks, 1, "one row for the group");

    // Another tool writes through SQL: a new city is a change, a touched
    // `updated_at` or the same metadata again is not; a new row is unsent.
    let ids: Vec<String> = reference_ids(&db, "mentors").await.into_iter().collect();
    let one = |sql: &'static str, id: &str| {
        let (c, id) = (&c, id.to_string());
        async move { assert_eq!(c.execute(sql, &[&id]).await.unwrap(), 1, "{sql}") }
    };
    one(
        "UPDATE nodes SET metadata = metadata || '{\"city\": \"Oslo\"}' WHERE reference_id = $1",
        &ids[7],
    )
    .await;
    one(
        "UPDATE nodes SET updated_at = now() WHERE reference_id = $1",
        &ids[8],
    )
    .await;
    one(
        "UPDATE nodes SET metadata = metadata WHERE reference_id = $1",
        &ids[9],
    )
    .await;
    c.execute(
        "INSERT INTO nodes (reference_id, group_id, domain_id, type, metadata)
         VALUES ('zz-new', $1, $2, 'USER', '{\"city\": \"Bergen\"}')",
        &[&group_uuid("mentors"), &harness::domain()],
    )
    .await
    .unwrap();
    let expected: BTreeSet<String> = [ids[7].clone(), "zz-new".to_string()].into();
    assert_eq!(unsent(&db, "mentors").await, expected);
    let listed = groups(&db, &["list", "--domain", DOMAIN]).await.unwrap();
    let line = listed.lines().find(|l| l.contains("mentors")).unwrap();
    assert!(line.trim_end().ends_with(" 2"), "2 unsent: {listed}");
    assert!(!line.contains("never"), "sent before: {listed}");

    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    let (header, rows) = last_file(&db).await;
    let city = header.iter().position(|h| h == "city").unwrap();
    let sent: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[city].clone()))
        .collect();
    assert_eq!(
        sent,
        vec![
            (ids[7].clone(), "Oslo".to_string()),
            ("zz-new".to_string(), "Bergen".to_string())
        ]
    );
    assert!(unsent(&db, "mentors").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_sends_the_group_whole_again_and_an_export_begun_before_it_does_not_undo_it() {
    let db = TestDb::new().await;
    let dir = files(&db);
    let env = env(
        &dir,
        &[
            ("FERRY__EXPORTS__FETCH_ROWS", "100"),
            ("FERRY__EXPORTS__MAX_IN_FLIGHT", "1"),
        ],
    );
    load_users(&db, "mentors", 50_000).await;
    set_group(&db, DOMAIN, "mentors", "cost-based").await;
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(unsent(&db, "mentors").await.is_empty());

    let err = groups(&db, &["reset", "nobody", "--domain", DOMAIN])
        .await
        .unwrap_err();
    assert!(err.contains("no group `nobody`"), "{err}");
    let reset: Value = serde_json::from_str(
        &groups(&db, &["reset", "mentors", "--domain", DOMAIN])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reset["unsent"], 50_000, "{reset}");
    assert_eq!(reset["sentAt"], Value::Null, "{reset}");
    assert_eq!(unsent(&db, "mentors").await.len(), 50_000);

    // An export that took its snapshot before a reset sends what it read,
    // and leaves the group reset.
    let reset = groups(&db, &["reset", "mentors", "--domain", DOMAIN]);
    let (still, reset, out) = while_held(&db, &env, reset).await;
    reset.unwrap();
    assert!(still, "the export had not ended when the reset ran");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last_file(&db).await.1.len(), 50_000);
    assert_eq!(
        unsent(&db, "mentors").await.len(),
        50_000,
        "the reset stands"
    );
    let (out, code) = run_now(&db, &[], &env).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(last_file(&db).await.1.len(), 50_000);
    assert!(unsent(&db, "mentors").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_keeps_sent_users_sent_without_rewriting_them() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    ferry_actors::pg::migrations::migrate_until(&mut c, 13)
        .await
        .unwrap();
    // Group `a`: three users sent, two not; group `b`: never sent.
    for (group, reference, processed) in [
        ("a", "a1", true),
        ("a", "a2", false),
        ("a", "a3", true),
        ("a", "a4", true),
        ("a", "a5", false),
        ("b", "b1", false),
        ("b", "b2", false),
    ] {
        c.execute(
            "INSERT INTO nodes (reference_id, group_id, domain_id, type, processed, metadata)
             VALUES ($1, $2, $3, 'USER', $4, '{\"city\": \"Tromsø\"}')",
            &[
                &reference,
                &group_uuid(group),
                &harness::domain(),
                &processed,
            ],
        )
        .await
        .unwrap();
    }
    let flags = "SELECT reference_id, processed, xmin::text FROM nodes ORDER BY reference_id";
    let before: Vec<(String, bool, String)> = c
        .query(flags, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let applied = ferry_actors::pg::migrations::migrate(&mut c).await.unwrap();
    assert!(applied.contains(&14), "{applied:?}");
    // `nodes` is a view now: the row versions are `node_rows`'.
    let after: Vec<(String, bool, String)> = c
        .query(
            "SELECT n.reference_id, n.processed, r.xmin::text
             FROM nodes n JOIN node_rows r USING (id) ORDER BY n.reference_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let processed = |rows: &[(String, bool, String)]| -> Vec<(String, bool)> {
        rows.iter().map(|(r, p, _)| (r.clone(), *p)).collect()
    };
    assert_eq!(
        processed(&after),
        processed(&before),
        "processed reads as it was"
    );
    for ((reference, sent, xmin), (_, _, now)) in before.iter().zip(&after) {
        if *sent {
            assert_eq!(xmin, now, "{reference} was sent: not written again");
        }
    }

    set_group(&db, DOMAIN, "a", "cost-based").await;
    let dir = files(&db);
    let (out, code) = run_now(&db, &[], &env(&dir, &[])).await;
    assert_eq!(code, 0, "{out}");
    let (_, rows) = last_file(&db).await;
    let sent: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(sent, ["a2", "a5"], "only the unsent users of `a`");
    assert!(unsent(&db, "a").await.is_empty());
    assert_eq!(unsent(&db, "b").await.len(), 2);
}
