//! The command line: configuration errors, migrations, the jobs table.

use crate::harness::TestDb;

#[tokio::test]
async fn unknown_config_keys_are_named() {
    let db = TestDb::new().await;
    let out = db
        .ferry(&["migrate"], &[("FERRY__IMPORT__BATCH_ROWZ", "5")])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`import`") && err.contains("batch_rowz"),
        "{err}"
    );

    let cfg = db.path("bad.toml");
    std::fs::write(&cfg, "[import]\nwriters = \"many\"\n").unwrap();
    let out = db
        .ferry(&["--config", cfg.to_str().unwrap(), "migrate"], &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("import.writers"), "{err}");
}

#[tokio::test]
async fn migrate_is_idempotent_and_jobs_are_listed() {
    let db = TestDb::new().await;
    for _ in 0..2 {
        let out = db.ferry(&["migrate"], &[]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let versions: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM ferry_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        versions,
        ferry_actors::pg::migrations::MIGRATIONS.len() as i64
    );

    let file = db.path("u.csv");
    std::fs::write(&file, "id\na\nb\n").unwrap();
    let (report, code) = db.import(&file, "g", &[], &[]).await;
    assert_eq!(code, 0);
    let id = report["jobId"].as_str().unwrap();

    let out = db.ferry(&["jobs", "list", "--json"], &[]).await;
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["status"], "COMPLETED");

    let out = db.ferry(&["jobs", "show", id], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("COMPLETED") && text.contains("2 read, 2 inserted"),
        "{text}"
    );

    let out = db
        .ferry(
            &["jobs", "show", "00000000-0000-0000-0000-000000000000"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let db = TestDb::new().await;
    let file = db.path("u.csv");
    std::fs::write(&file, "id\na\n").unwrap();
    let args = [
        "import",
        file.to_str().unwrap(),
        "--domain",
        crate::harness::DOMAIN,
        "--group",
        "g",
    ];
    let out = db
        .ferry(
            &args,
            &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL") && err.contains("Connection refused"),
        "{err}"
    );
}
