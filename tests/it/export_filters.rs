//! A fuzz test of the export filter compiler against a real PostgreSQL:
//! random filter trees, with SQL metacharacters in values and in field
//! names, never reach the server as SQL text, never panic, never return
//! another domain's rows; and for every filter that compiles, the rows
//! PostgreSQL returns are exactly those an independent evaluation of the
//! same filter picks from the table's rows, held here in memory.

use std::collections::BTreeSet;

use ferry_actors::export::object::Catalog;
use ferry_actors::export::plan::Plan;
use ferry_actors::export::{Compression, Destination, ExportSpec, Format};
use ferry_actors::pg::migrations;
use ferry_actors::settings::{ExportObjectSettings, ExportSettings};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::harness::{domain, TestDb};

const TEXTS: &[&str] = &[
    "a",
    "O'Brien",
    "x'; DROP TABLE fuzz; --",
    "100%",
    "_",
    "back\\slash",
    "quote\"d",
    "",
    "ünï",
    "a%b",
    "Pune, IN",
    "$1",
];
const TIMES: &[&str] = &[
    "2026-01-01T00:00:00Z",
    "2026-01-02T00:00:00Z",
    "2026-01-03T00:00:00Z",
    "2026-01-04T00:00:00Z",
];
const NUMBERS: &[&str] = &["3", "10.5", "-2", "7"];

/// One row of the table, as the evaluator sees it.
#[derive(Debug, Clone)]
struct Row {
    id: Uuid,
    mine: bool,
    name: Option<String>,
    n: Option<i32>,
    score: f64,
    active: Option<bool>,
    at: String,
    /// `metadata->>'k'` and `metadata->>'d'`.
    k: Option<String>,
    d: Option<String>,
}

fn rows(rng: &mut fastrand::Rng) -> Vec<Row> {
    (0..160)
        .map(|i| Row {
            id: Uuid::from_u128(i as u128 + 1),
            mine: i % 4 != 0,
            name: (i % 9 != 0).then(|| TEXTS[rng.usize(..TEXTS.len())].to_string()),
            n: (i % 7 != 0).then(|| rng.i32(-5..15)),
            score: rng.i32(-20..20) as f64 / 4.0,
            active: (i % 5 != 0).then(|| rng.bool()),
            at: TIMES[rng.usize(..TIMES.len())].to_string(),
            k: match i % 3 {
                0 => None,
                1 => Some(TEXTS[rng.usize(..TEXTS.len())].to_string()),
                _ => Some(NUMBERS[rng.usize(..NUMBERS.len())].to_string()),
            },
            d: (i % 2 == 0).then(|| TIMES[rng.usize(..TIMES.len())][..10].to_string()),
        })
        .collect()
}

async fn load(db: &TestDb, rows: &[Row]) -> tokio_postgres::Client {
    let mut c = db.client().await;
    migrations::migrate(&mut c).await.unwrap();
    c.batch_execute(
        "CREATE TABLE fuzz (id uuid PRIMARY KEY, domain_id uuid NOT NULL, name text, n integer,
             score double precision NOT NULL, active boolean, at timestamptz NOT NULL,
             metadata jsonb NOT NULL)",
    )
    .await
    .unwrap();
    let other = Uuid::from_u128(99);
    for r in rows {
        let mut metadata = Map::new();
        if let Some(k) = &r.k {
            // Numbers go in as JSON numbers, the rest as strings.
            let v = match k.parse::<f64>() {
                Ok(_) if NUMBERS.contains(&k.as_str()) => serde_json::from_str(k).unwrap(),
                _ => Value::String(k.clone()),
            };
            metadata.insert("k".into(), v);
        }
        if let Some(d) = &r.d {
            metadata.insert("d".into(), Value::String(d.clone()));
        }
        let owner = if r.mine { domain() } else { other };
        c.execute(
            "INSERT INTO fuzz VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8)",
            &[
                &r.id,
                &owner,
                &r.name,
                &r.n,
                &r.score,
                &r.active,
                &r.at,
                &Value::Object(metadata),
            ],
        )
        .await
        .unwrap();
    }
    c
}

const FIELDS: &[&str] = &[
    "name",
    "n",
    "score",
    "active",
    "at",
    "metadata.k",
    "metadata.d",
    "metadata",
    "nope",
    "name; DROP TABLE fuzz",
    "metadata.A'b",
];
const OPS: &[&str] = &[
    "$in",
    "$not_in",
    "$is",
    "$is_not",
    "$has_value",
    "$is_unknown",
    "$contains",
    "$not_contain",
    "$starts_with",
    "$ends_with",
    "$more_than",
    "$less_than",
    "$more_than_equal",
    "$less_than_equal",
    "$after",
    "$before",
    "$like",
];

fn value(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..6) {
        0 => json!(TEXTS[rng.usize(..TEXTS.len())]),
        1 => json!(rng.i32(-5..15)),
        2 => json!(rng.i32(-20..20) as f64 / 4.0),
        3 => json!(rng.bool()),
        4 => json!(TIMES[rng.usize(..TIMES.len())]),
        _ => json!(NUMBERS[rng.usize(..NUMBERS.len())]),
    }
}

/// Mostly a value of the field's own type, sometimes anything.
fn value_for(rng: &mut fastrand::Rng, field: &str) -> Value {
    if rng.u8(..5) == 0 {
        return value(rng);
    }
    match field {
        "n" => json!(rng.i32(-5..15)),
        "score" => json!(rng.i32(-20..20) as f64 / 4.0),
        "active" => json!(rng.bool()),
        "at" => json!(TIMES[rng.usize(..TIMES.len())]),
        "metadata.d" => json!(&TIMES[rng.usize(..TIMES.len())][..10]),
        "metadata.k" if rng.bool() => json!(NUMBERS[rng.usize(..NUMBERS.len())]),
        _ => json!(TEXTS[rng.usize(..TEXTS.len())]),
    }
}

/// Operators that apply to the field (mostly), or any.
fn op_for(rng: &mut fastrand::Rng, field: &str) -> &'static str {
    if rng.u8(..8) == 0 {
        return OPS[rng.usize(..OPS.len())];
    }
    let fits: &[&str] = match field {
        "n" | "score" => &[
            "$in",
            "$not_in",
            "$is",
            "$is_not",
            "$has_value",
            "$is_unknown",
            "$more_than",
            "$less_than",
            "$more_than_equal",
            "$less_than_equal",
        ],
        "active" => &[
            "$in",
            "$not_in",
            "$is",
            "$is_not",
            "$has_value",
            "$is_unknown",
        ],
        "at" => &[
            "$in",
            "$is",
            "$is_not",
            "$has_value",
            "$more_than",
            "$less_than_equal",
            "$after",
            "$before",
        ],
        "metadata" => &["$has_value", "$is_unknown"],
        "name" => &[
            "$in",
            "$not_in",
            "$is",
            "$is_not",
            "$has_value",
            "$is_unknown",
            "$contains",
            "$not_contain",
            "$starts_with",
            "$ends_with",
        ],
        _ => &OPS[..16],
    };
    fits[rng.usize(..fits.len())]
}

fn filter(rng: &mut fastrand::Rng, depth: usize) -> Value {
    let mut obj = Map::new();
    if rng.bool() {
        obj.insert(
            "junction".into(),
            json!(if rng.bool() { "and" } else { "or" }),
        );
    }
    for _ in 0..rng.usize(1..4) {
        let field = match rng.u8(..10) {
            0 => FIELDS[rng.usize(..FIELDS.len())],
            _ => FIELDS[rng.usize(..8)],
        };
        let mut conditions = Map::new();
        for _ in 0..rng.usize(1..3) {
            let op = op_for(rng, field);
            let n = match op {
                "$in" | "$not_in" => rng.usize(1..4),
                "$has_value" | "$is_unknown" => 0,
                _ if rng.u8(..20) == 0 => 2,
                _ => 1,
            };
            let values = (0..n).map(|_| value_for(rng, field)).collect();
            conditions.insert(op.into(), Value::Array(values));
        }
        obj.insert(field.into(), json!({ "conditions": conditions }));
    }
    if depth < 4 && rng.u8(..4) == 0 {
        obj.insert("filters".into(), json!([filter(rng, depth + 1)]));
    }
    Value::Object(obj)
}

/// The field's value in a row, as SQL would see it: `None` is NULL.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Text(String),
    Num(f64),
    Bool(bool),
    /// A time in this file's one RFC 3339 spelling (orders as text).
    Time(String),
}

fn field_value(row: &Row, field: &str) -> Option<V> {
    match field {
        "name" => row.name.clone().map(V::Text),
        "n" => row.n.map(|n| V::Num(n.into())),
        "score" => Some(V::Num(row.score)),
        "active" => row.active.map(V::Bool),
        "at" => Some(V::Time(row.at.clone())),
        "metadata.k" => row.k.clone().map(V::Text),
        "metadata.d" => row.d.clone().map(V::Text),
        // The whole document is never NULL here (only known or unknown apply).
        "metadata" => Some(V::Text("{}".into())),
        _ => unreachable!("{field}"),
    }
}

/// A filter value read as the field's type.
fn typed(field: &str, v: &Value) -> Option<V> {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match field {
        "name" | "metadata.k" | "metadata.d" => Some(V::Text(text)),
        "n" | "score" => text.trim().parse::<f64>().ok().map(V::Num),
        "active" => text.parse::<bool>().ok().map(V::Bool),
        "at" => TIMES
            .iter()
            .find(|t| **t == text)
            .map(|t| V::Time(t.to_string())),
        _ => None,
    }
}

fn numeric(s: &str) -> Option<f64> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && t.trim_start_matches(['-', '+'])
            .chars()
            .filter(|c| *c == '.')
            .count()
            <= 1
        && t.trim_start_matches(['-', '+']) != ".";
    ok.then(|| t.parse().ok()).flatten()
}

fn cmp(a: &V, b: &V) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Num(x), V::Num(y)) => x.partial_cmp(y),
        (V::Time(x), V::Time(y)) | (V::Text(x), V::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn text_of(v: &V) -> String {
    match v {
        V::Text(s) | V::Time(s) => s.clone(),
        V::Num(n) => n.to_string(),
        V::Bool(b) => b.to_string(),
    }
}

/// The independent evaluation of one condition.
fn condition(row: &Row, field: &str, op: &str, values: &[Value]) -> bool {
    let v = field_value(row, field);
    let metadata = field.starts_with("metadata.");
    let vals: Vec<V> = values.iter().filter_map(|x| typed(field, x)).collect();
    let order = |want: fn(std::cmp::Ordering) -> bool| -> bool {
        let (Some(v), Some(x)) = (&v, vals.first()) else {
            return false;
        };
        if metadata {
            let (Some(a), Some(b)) = (numeric(&text_of(v)), numeric(&text_of(x))) else {
                return false;
            };
            return want(a.partial_cmp(&b).unwrap());
        }
        cmp(v, x).is_some_and(want)
    };
    let time = |want: fn(std::cmp::Ordering) -> bool| -> bool {
        let (Some(v), Some(x)) = (&v, vals.first()) else {
            return false;
        };
        cmp(&V::Text(text_of(v)), &V::Text(text_of(x))).is_some_and(want)
    };
    let text = |f: &dyn Fn(&str, &str) -> bool| -> Option<bool> {
        let v = v.as_ref()?;
        Some(f(&text_of(v), &text_of(vals.first()?)))
    };
    use std::cmp::Ordering::*;
    match op {
        "$in" => v
            .as_ref()
            .is_some_and(|v| vals.iter().any(|x| cmp(v, x) == Some(Equal))),
        "$not_in" => v
            .as_ref()
            .is_none_or(|v| vals.iter().all(|x| cmp(v, x) != Some(Equal))),
        "$is" => v.as_ref().is_some_and(|v| cmp(v, &vals[0]) == Some(Equal)),
        "$is_not" => v.as_ref().is_none_or(|v| cmp(v, &vals[0]) != Some(Equal)),
        "$has_value" => v.is_some(),
        "$is_unknown" => v.is_none(),
        "$contains" => text(&|a, b| a.contains(b)) == Some(true),
        "$not_contain" => text(&|a, b| a.contains(b)) != Some(true),
        "$starts_with" => text(&|a, b| a.starts_with(b)) == Some(true),
        "$ends_with" => text(&|a, b| a.ends_with(b)) == Some(true),
        "$more_than" => order(|o| o == Greater),
        "$less_than" => order(|o| o == Less),
        "$more_than_equal" => order(|o| o != Less),
        "$less_than_equal" => order(|o| o != Greater),
        "$after" if metadata => time(|o| o == Greater),
        "$before" if metadata => time(|o| o == Less),
        "$after" => order(|o| o == Greater),
        "$before" => order(|o| o == Less),
        _ => unreachable!("{op}"),
    }
}

fn matches(row: &Row, filter: &Value) -> bool {
    let obj = filter.as_object().unwrap();
    let any = obj.get("junction").and_then(Value::as_str) == Some("or");
    let mut results = Vec::new();
    for (key, entry) in obj {
        match key.as_str() {
            "junction" => {}
            "filters" => {
                for g in entry.as_array().unwrap() {
                    results.push(matches(row, g));
                }
            }
            field => {
                let conditions = entry["conditions"].as_object().unwrap();
                results.push(
                    conditions
                        .iter()
                        .all(|(op, vs)| condition(row, field, op, vs.as_array().unwrap())),
                );
            }
        }
    }
    if results.is_empty() {
        return true;
    }
    if any {
        results.into_iter().any(|r| r)
    } else {
        results.into_iter().all(|r| r)
    }
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn random_filters_compile_to_parameters_and_pick_exactly_the_right_rows() {
    let db = TestDb::new().await;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let table = rows(&mut rng);
    let c = load(&db, &table).await;
    let settings = ExportSettings {
        objects: vec![ExportObjectSettings {
            name: "fuzz".into(),
            table: "fuzz".into(),
            tenant_column: "domain_id".into(),
            key: Vec::new(),
            default_fields: Vec::new(),
            default_order: String::new(),
        }],
        ..ExportSettings::default()
    };
    let catalog = Catalog::load(&c, &settings).await.unwrap();
    let def = catalog.get("fuzz").unwrap();
    let (mut compiled, mut refused) = (0, 0);
    for case in 0..600 {
        let filters = filter(&mut rng, 1);
        let spec = ExportSpec {
            object: "fuzz".into(),
            fields: vec!["id".into()],
            order: None,
            filters: Some(filters.clone()),
            format: Format::Csv,
            compression: Compression::None,
            destination: Destination::Local {
                path: "/dev/null".into(),
            },
            user_id: None,
            webhook_url: None,
            channel: "API".into(),
            bare_metadata_names: false,
            unsent_of: None,
        };
        let plan = match Plan::new(def, &spec, domain(), &settings) {
            Ok(plan) => plan,
            Err(e) => {
                assert!(!e.code.is_empty() && !e.message.is_empty());
                refused += 1;
                continue;
            }
        };
        compiled += 1;
        let (sql, params) = plan.query(None);
        let mut values = Vec::new();
        strings(&filters, &mut values);
        for v in values
            .iter()
            .filter(|v| v.len() > 1 && v.contains(['\'', ';', '"', '\\', '%']))
        {
            assert!(
                !sql.contains(v.as_str()),
                "case {case}: `{v}` reached the SQL text: {sql}"
            );
        }
        let got: BTreeSet<Uuid> = c
            .query(&sql, &params.refs())
            .await
            .unwrap_or_else(|e| panic!("case {case}: {filters}\n{sql}\n{e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let want: BTreeSet<Uuid> = table
            .iter()
            .filter(|r| r.mine && matches(r, &filters))
            .map(|r| r.id)
            .collect();
        assert!(
            got.iter()
                .all(|id| table.iter().any(|r| r.id == *id && r.mine)),
            "case {case}: another domain's row"
        );
        assert_eq!(got, want, "case {case}: {filters}\n{sql}");
    }
    assert!(
        compiled > 200 && refused > 50,
        "{compiled} compiled, {refused} refused"
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM fuzz", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 160);
}
