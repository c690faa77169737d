//! Data contracts and schema drift: a group's contract rejects each row
//! that breaks a rule, naming the column and the rule; a file that breaks
//! it as a whole fails before a row is written; a contract ferry cannot
//! hold files to is refused where it is set (CLI and API); a change of a
//! file's columns since the group's last import is reported, and enforced
//! when the contract says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use serde_json::{json, Value};

use crate::harness::{metric, TestDb, DOMAIN};
use crate::matches::{snappy, write_parquet};
use crate::service::{api_key, broker, post_import, request, status_events, Serve};

/// `ferry groups set GROUP … ARGS`: the exit code, stdout and stderr.
async fn set_group(db: &TestDb, group: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![
        "groups",
        "set",
        group,
        "--domain",
        DOMAIN,
        "--type",
        "COST_BASED",
    ];
    all.extend_from_slice(args);
    let out = db.ferry(&all, &[]).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `contract` to a file and sets it as `group`'s; must succeed.
async fn set_contract(db: &TestDb, group: &str, contract: &Value) {
    let (code, out, err) = set_contract_file(db, group, &contract.to_string()).await;
    assert_eq!(code, 0, "{out}{err}");
}

async fn set_contract_file(db: &TestDb, group: &str, text: &str) -> (i32, String, String) {
    let file = db.path(&format!("contract-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, text).unwrap();
    set_group(db, group, &["--contract", file.to_str().unwrap()]).await
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The rejects file's rows: (line or row, reason, first field: the
/// reference id, or the participant).
fn rejects(report: &Value) -> Vec<(u64, String, String)> {
    let path = report["rejectsPath"].as_str().expect("a rejects file");
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[1].to_string(), r[2].to_string())
        })
        .collect()
}

async fn ids(db: &TestDb, group: &str) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT reference_id FROM nodes WHERE group_id = $1 ORDER BY reference_id",
            &[&ferry_actors::job::group_uuid(group)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn users_contract() -> Value {
    json!({
        "nodes": {
            "type": "object",
            "required": ["email", "plan"],
            "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 64},
                "age": {"type": "integer", "minimum": 18, "maximum": 130},
                "plan": {"enum": ["free", "pro"]},
                // Catastrophic for a backtracking engine on "AAAA…!".
                "code": {"pattern": "^([A-Z]+)+$"},
                "nick": {"minLength": 2, "maxLength": 8},
                "since": {"format": "date"},
                "seen_at": {"format": "date-time"},
                "site": {"format": "uri"},
                "score": {"type": "number"},
                "active": {"type": "boolean", "description": "an annotation, ignored"}
            }
        }
    })
}

#[tokio::test]
async fn a_contract_rejects_each_row_that_breaks_a_rule_naming_the_rule() {
    let db = TestDb::new().await;
    set_contract(&db, "users", &users_contract()).await;
    let hostile = format!("{}!", "A".repeat(60_000));
    let file = db.path("users.csv");
    let rows = [
        "id,email,age,plan,code,nick,since,seen_at,site,score,active".to_string(),
        "u01,a@b.co,30,pro,ABC,ann,2024-02-29,2024-05-01T10:00:00Z,https://x.org,1.5,true".into(),
        // An optional column may be empty; a required one may not.
        "u02,c@d.co,,free,,,,,,,".into(),
        "u03,,30,pro,ABC,ann,,,,,".into(),
        "u04,not-an-email,212,gold,abc,a,2023-02-29,2024-05-01,x.org,1.5.1,yes".into(),
        "u05,a@b.co,40,free,XYZ,annabel,2000-02-29,2024-05-01 10:00:00+05:30,mailto:a@b.co,-2e3,false".into(),
        "u06,a@b.co,17,pro,ABC,annabelle1,,,,,".into(),
        "u07,a@b.co,thirty,pro,ABC,ann,,,,,".into(),
        format!("u08,a@b.co,30,pro,{hostile},ann,,,,,"),
        "u09,a@b.co,30,   ,ABC,ann,,,,,".into(),
    ];
    write(&file, &(rows.join("\n") + "\n"));
    let (r, code) = db.import(&file, "users", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        (&r["rowsRead"], &r["inserted"], &r["rejected"]),
        (&json!(9), &json!(3), &json!(6)),
        "{r}"
    );
    assert_eq!(ids(&db, "users").await, ["u01", "u02", "u05"]);
    let cut = format!("\"{}…\"", "A".repeat(40));
    let want: Vec<(u64, String, String)> = vec![
        (4, "email: is required".into(), "u03".into()),
        (
            5,
            "email: \"not-an-email\" is not an email address; age: 212 is over maximum 130; \
             plan: \"gold\" is not one of \"free\", \"pro\"; code: \"abc\" does not match pattern ^([A-Z]+)+$; \
             nick: \"a\" is 1 characters, under minLength 2; since: \"2023-02-29\" is not a date (YYYY-MM-DD); \
             seen_at: \"2024-05-01\" is not a date-time (RFC 3339); site: \"x.org\" is not an absolute URI; \
             score: \"1.5.1\" is not a number; active: \"yes\" is not a boolean (true or false)"
                .into(),
            "u04".into(),
        ),
        (
            7,
            "age: 17 is under minimum 18; nick: \"annabelle1\" is 10 characters, over maxLength 8".into(),
            "u06".into(),
        ),
        (8, "age: \"thirty\" is not an integer".into(), "u07".into()),
        (9, format!("code: {cut} does not match pattern ^([A-Z]+)+$"), "u08".into()),
        (10, "plan: is required".into(), "u09".into()),
    ];
    assert_eq!(rejects(&r), want);
}

#[tokio::test]
async fn a_file_that_breaks_the_contract_as_a_whole_fails_before_a_row() {
    let db = TestDb::new().await;
    let closed = json!({"nodes": {
        "required": ["email"],
        "properties": {"email": {}, "city": {}},
        "additionalProperties": false
    }});
    set_contract(&db, "closed", &closed).await;
    let no_email = db.path("no-email.csv");
    write(&no_email, "id,city\nu1,Pune\n");
    let (r, code) = db.import(&no_email, "closed", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        r["failureReason"], "the group's contract requires `email`, which the file does not have",
        "{r}"
    );
    let extra = db.path("extra.csv");
    write(&extra, "id,email,city,Zip Code\nu1,a@b.co,Pune,411001\n");
    let (r, code) = db.import(&extra, "closed", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        r["failureReason"],
        "the group's contract allows no other columns (additionalProperties: false), and the file has `zip_code`",
        "{r}"
    );
    assert_eq!(r["rowsRead"], 0, "{r}");
    assert!(ids(&db, "closed").await.is_empty());
    // The reference column is not metadata: a closed contract need not name it.
    let ok = db.path("ok.csv");
    write(&ok, "id,email,city\nu1,a@b.co,Pune\n");
    let (r, code) = db.import(&ok, "closed", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    // Another group holds no contract.
    let (r, code) = db.import(&extra, "open", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
}

#[tokio::test]
async fn a_contract_ferry_cannot_hold_files_to_is_refused_and_the_old_one_kept() {
    let db = TestDb::new().await;
    set_contract(&db, "g", &users_contract()).await;
    let cases = [
        (
            json!({"nodes": {"properties": {"age": {"minimum": 10, "maximum": 1}}}}).to_string(),
            "nodes.properties.age: `minimum` 10 is over `maximum` 1",
        ),
        (
            json!({"nodes": {"properties": {"code": {"pattern": "((a{1,100}){1,100}){1,5}"}}}})
                .to_string(),
            "nodes.properties.code: `pattern` compiles to more than 256 KiB",
        ),
        (
            json!({"nodes": {"properties": {"code": {"pattern": "^(?!x)"}}}}).to_string(),
            "nodes.properties.code: `pattern` is not a regular expression ferry runs",
        ),
        (
            json!({"nodes": {"properties": {"age": {"exclusiveMaximum": 3}}}}).to_string(),
            "nodes.properties.age: unknown keyword `exclusiveMaximum`",
        ),
        (
            json!({"nodes": {"properties": {"firstName": {}}}}).to_string(),
            "a file's `firstName` column is `first_name`",
        ),
        (
            json!({"matches": {"properties": {"rank": {"type": "date"}}}}).to_string(),
            "matches.properties.rank: unknown type `date`",
        ),
        ("{\"nodes\": {".to_string(), "is not JSON"),
    ];
    for (contract, want) in cases {
        let (code, out, err) = set_contract_file(&db, "g", &contract).await;
        assert_ne!(code, 0, "{contract}: {out}");
        assert!(err.contains(want), "{contract}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let stored: Value = db
        .client()
        .await
        .query_one(
            "SELECT contract FROM matching_groups WHERE group_key = 'g'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        users_contract(),
        "a refused contract changes nothing"
    );
    // Set without --contract, the group keeps it; --no-contract removes it.
    let (code, out, _) = set_group(&db, "g", &["--disabled"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["contract"],
        users_contract()
    );
    let (code, out, _) = set_group(&db, "g", &["--no-contract"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["contract"],
        Value::Null
    );
}

/// Writes one record batch of match suggestions, named as an engine
/// might (camelCase).
fn write_matches(path: &Path, p: &[&str], m: &[&str], score: &[Option<f64>], rank: &[Option<i64>]) {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("participantId", Arc::new(StringArray::from(p.to_vec()))),
        (
            "matchedParticipantId",
            Arc::new(StringArray::from(m.to_vec())),
        ),
        (
            "compatibilityScore",
            Arc::new(Float64Array::from(score.to_vec())),
        ),
        ("rank", Arc::new(Int64Array::from(rank.to_vec()))),
    ];
    write_parquet(path, columns, snappy());
}

#[tokio::test]
async fn a_match_contract_rejects_scores_and_ranks_out_of_range() {
    let db = TestDb::new().await;
    let contract = json!({"matches": {
        "required": ["rank"],
        "properties": {
            "compatibility_score": {"minimum": 0, "maximum": 1},
            "rank": {"type": "integer", "minimum": 1},
            "participant_id": {"pattern": "^p[0-9]+$"}
        }
    }});
    set_contract(&db, "daily", &contract).await;
    let file = db.path("matches.parquet");
    write_matches(
        &file,
        &["p1", "p2", "p3", "p4", "x5"],
        &["m1", "m2", "m3", "m4", "m5"],
        &[Some(0.5), Some(1.5), Some(0.2), None, Some(0.0)],
        &[Some(1), Some(2), Some(0), None, Some(1)],
    );
    let (r, code) = db
        .import_matches(file.to_str().unwrap(), "daily", &[], &[])
        .await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        (&r["inserted"], &r["rejected"]),
        (&json!(1), &json!(4)),
        "{r}"
    );
    let reasons: Vec<String> = rejects(&r)
        .into_iter()
        .map(|(_, reason, _)| reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "compatibility_score: 1.5 is over maximum 1",
            "rank: 0 is under minimum 1",
            "rank: is required",
            "participant_id: \"x5\" does not match pattern ^p[0-9]+$",
        ]
    );
    assert_eq!(db.match_count("daily").await, 1);
}

#[tokio::test]
async fn schema_drift_is_reported_and_enforced() {
    let db = TestDb::new().await;
    let first = db.path("first.csv");
    write(&first, "id,email,city\nu1,a@b.co,Pune\nu2,c@d.co,Goa\n");
    let (r, code) = db.import(&first, "crm", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (&r["columnsAdded"], &r["columnsRemoved"]),
        (&json!([]), &json!([])),
        "a first import has nothing to differ from"
    );

    let second = db.path("second.csv");
    write(
        &second,
        "id,Email,Zip Code\nu1,a@b.co,411001\nu2,c@d.co,403001\n",
    );
    let prom = db.path("second.prom");
    let (r, code) = db
        .import(
            &second,
            "crm",
            &["--metrics-textfile", prom.to_str().unwrap()],
            &[],
        )
        .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        (&r["columnsAdded"], &r["columnsRemoved"]),
        (&json!(["zip_code"]), &json!(["city"])),
        "{r}"
    );
    let prom = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&prom, r#"ferry_schema_drift_total{target="nodes"}"#),
        Some(1.0),
        "{prom}"
    );
    let job = r["jobId"].as_str().unwrap().to_string();
    let view = db.ferry(&["imports", "show", &job, "--json"], &[]).await;
    let view: Value = serde_json::from_slice(&view.stdout).unwrap_or_default();
    assert_eq!(view["columnsAdded"], json!(["zip_code"]), "{view}");
    // The second import's columns are the group's now: the same again has
    // no drift.
    let (r, code) = db.import(&second, "crm", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["columnsRemoved"], json!([]), "{r}");

    // A contract that fails on drift: the first file now fails before a row.
    set_contract(&db, "crm", &json!({"onDrift": "fail"})).await;
    let before = db.digest("crm").await;
    let (r, code) = db.import(&first, "crm", &[], &[]).await;
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        r["failureReason"],
        "the file's columns changed since the group's last import (added city; removed zip_code), and the group's contract says onDrift: fail",
        "{r}"
    );
    assert_eq!(
        (&r["inserted"], &r["updated"], &r["unchanged"]),
        (&json!(0), &json!(0), &json!(0)),
        "{r}"
    );
    assert_eq!(db.digest("crm").await, before, "nothing was written");
    let recorded: Vec<String> = db
        .client()
        .await
        .query_one(
            "SELECT columns FROM group_columns WHERE target = 'nodes'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        recorded,
        ["id", "email", "zip_code"],
        "a failed import records nothing"
    );
}

/// The API: PUT sets a contract (and refuses one it cannot hold files to,
/// with the reason), GET shows it; an import through the API is held to
/// it, and its status event lists the rejected ids and the drift.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_sets_a_contract_and_the_status_event_reports_it() {
    let db = TestDb::new().await;
    let kafka = broker();
    let serve = Serve::start(&db, kafka.bootstrap_servers(), &[]).await;
    let key = api_key(&db, DOMAIN).await;
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let put = |body: Value| {
        let http = serve.http.clone();
        async move {
            let (status, body) = request(
                &http,
                "PUT",
                "/v1/groups/members",
                &headers,
                &body.to_string(),
            )
            .await
            .unwrap();
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = put(json!({"groupType": "COST_BASED",
        "contract": {"nodes": {"properties": {"age": {"maximum": "old"}}}}}))
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_contract", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nodes.properties.age: `maximum` must be a number"),
        "{body}"
    );
    let contract = json!({"nodes": {"properties": {"age": {"type": "integer", "maximum": 130}}}});
    let (status, body) = put(json!({"groupType": "COST_BASED", "contract": contract})).await;
    assert_eq!(status, 200, "{body}");
    let (status, got) = request(&serve.http, "GET", "/v1/groups/members", &headers, "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&got).unwrap()["contract"],
        contract
    );

    let first = db.path("first.csv");
    write(&first, "id,age\nu1,40\n");
    let (r, code) = db.import(&first, "members", &[], &[]).await;
    assert_eq!(code, 0, "{r}");
    let file = db.path("members.csv");
    write(&file, "id,age,city\nu1,40,Pune\nu2,212,Goa\nu3,x,Goa\n");
    let body = json!({"domainId": DOMAIN, "groupId": "members",
        "filePath": file.to_str().unwrap(), "fileName": "members.csv"});
    let job = post_import(&serve, &headers, &body.to_string()).await;
    let events = status_events(kafka.bootstrap_servers(), 1, Duration::from_secs(60));
    let event = events
        .iter()
        .find(|e| e["jobId"] == job.as_str())
        .unwrap_or_else(|| panic!("no event of {job}: {events:?}"));
    assert_eq!(event["status"], "FAILED", "{event}");
    assert_eq!(event["failedList"], json!(["u2", "u3"]), "{event}");
    assert_eq!(
        (&event["columnsAdded"], &event["columnsRemoved"]),
        (&json!(["city"]), &json!([])),
        "{event}"
    );
    serve.terminate().await;
}
