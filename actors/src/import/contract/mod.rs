//! Data contracts (seed 004's "Data Quality Checks", seed 003's "Schema
//! Validation"): what a group's files must hold, set per group
//! (`ferry groups set --contract FILE`, `PUT /v1/groups/{key}`) in a subset
//! of JSON Schema, one object schema for its nodes' metadata and one for
//! its match suggestions:
//!
//! ```json
//! {"nodes": {"required": ["email"], "additionalProperties": false,
//!            "properties": {"email": {"format": "email"},
//!                           "age": {"type": "integer", "minimum": 0, "maximum": 130}}},
//!  "matches": {"properties": {"compatibility_score": {"minimum": 0, "maximum": 1}}},
//!  "onDrift": "fail"}
//! ```
//!
//! A contract is read once per attempt and bound to each file's columns
//! ([`ObjectRules::bind`]): a required column the file lacks, or a column
//! a closed contract does not name, fails the file before a row is read;
//! then each row is checked ([`Checks::check`]) and one that breaks a rule
//! is rejected with the column and the rule in its reason
//! (`age: 212 is over maximum 130`). `onDrift` says what a change of the
//! file's columns since the group's last import does (`report` it, or
//! `fail` the job): see [`crate::import::drift`].
//!
//! - `rules`: one property's rules and the check of one value.
//! - `formats`: the `format`s (`email`, `date`, `date-time`, `uri`).

pub mod formats;
mod rules;

use std::sync::Arc;

use serde_json::{Map, Value as Json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub use self::rules::{Rules, Value};
use crate::import::formats::csv::normalize_header;
use crate::import::formats::parquet::MATCH_COLUMNS;
use crate::vocab::Target;

/// The most properties one object schema may name.
pub const MAX_PROPERTIES: usize = 1024;

/// Keywords of an object schema, or of the contract, that describe and do
/// not constrain.
const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "$comment", "title", "description"];

/// What a change of a file's columns does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDrift {
    /// Listed in the status event and the job view, counted by a metric.
    #[default]
    Report,
    /// Also fails the job before a row is written.
    Fail,
}

/// A group's contract, as bound to an import.
#[derive(Debug, Clone, Default)]
pub struct Contract {
    pub nodes: Option<Arc<ObjectRules>>,
    pub matches: Option<Arc<ObjectRules>>,
    pub on_drift: OnDrift,
}

impl Contract {
    /// Reads a contract; `Err` says what is wrong and where
    /// (`nodes.properties.age: unknown keyword ...`).
    pub fn parse(json: &Json) -> Result<Self, String> {
        let Json::Object(keys) = json else {
            return Err(
                "a contract is an object: {\"nodes\": …, \"matches\": …, \"onDrift\": …}".into(),
            );
        };
        known(keys, &["nodes", "matches", "onDrift"], "")?;
        let object = |key: &str, target: Target| {
            keys.get(key)
                .map(|schema| {
                    ObjectRules::parse(schema, target)
                        .map(Arc::new)
                        .map_err(|e| format!("{key}{e}"))
                })
                .transpose()
        };
        let on_drift = match keys.get("onDrift") {
            None => OnDrift::Report,
            Some(Json::String(s)) if s == "report" => OnDrift::Report,
            Some(Json::String(s)) if s == "fail" => OnDrift::Fail,
            Some(v) => return Err(format!("onDrift: must be \"report\" or \"fail\", not {v}")),
        };
        Ok(Self {
            nodes: object("nodes", Target::Nodes)?,
            matches: object("matches", Target::Matches)?,
            on_drift,
        })
    }

    /// The contract of a domain's group (none when the group has no
    /// config, or its config no contract). `Ok(Err)`: one is stored that
    /// ferry cannot read (written by another tool, or an older ferry).
    pub async fn load(
        c: &impl GenericClient,
        domain: Uuid,
        group_key: &str,
    ) -> Result<Result<Self, String>, tokio_postgres::Error> {
        let row = c
            .query_opt(
                "SELECT contract FROM matching_groups WHERE domain_id = $1 AND group_key = $2",
                &[&domain, &group_key],
            )
            .await?;
        let stored: Option<Json> = row.and_then(|r| r.get(0));
        Ok(stored.map_or(Ok(Self::default()), |json| Self::parse(&json)))
    }

    /// The rules for `target`'s rows, if the contract has any.
    pub fn rules(&self, target: Target) -> Option<Arc<ObjectRules>> {
        match target {
            Target::Nodes => self.nodes.clone(),
            Target::Matches => self.matches.clone(),
        }
    }
}

/// Refuses a key of `keys` that is neither `allowed` nor an annotation.
fn known(keys: &Map<String, Json>, allowed: &[&str], at: &str) -> Result<(), String> {
    match keys
        .keys()
        .find(|k| !allowed.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()))
    {
        Some(k) => Err(format!(
            "{at}unknown keyword `{k}` (known here: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// An object schema: the rules of each named column, which columns must
/// be there, and whether others may.
#[derive(Debug, Clone)]
pub struct ObjectRules {
    properties: Vec<(String, Rules)>,
    required: Vec<String>,
    /// `additionalProperties: false`.
    closed: bool,
}

impl ObjectRules {
    /// `Err` starts with where in the schema the fault is (`.properties.age:`).
    fn parse(schema: &Json, target: Target) -> Result<Self, String> {
        let Json::Object(keys) = schema else {
            return Err(": must be an object schema".into());
        };
        known(
            keys,
            &["type", "properties", "required", "additionalProperties"],
            ": ",
        )?;
        match keys.get("type") {
            None => {}
            Some(Json::String(t)) if t == "object" => {}
            Some(v) => return Err(format!(".type: a row is an object, not {v}")),
        }
        let name_ok = |name: &str| -> Result<(), String> {
            if target == Target::Matches && !MATCH_COLUMNS.contains(&name) {
                return Err(format!(
                    "`{name}` is not a match suggestion column ({})",
                    MATCH_COLUMNS.join(", ")
                ));
            }
            let normal = normalize_header(name);
            if normal != name {
                return Err(format!(
                    "`{name}` is not a column name as ferry writes them: a file's `{name}` column is `{normal}`"
                ));
            }
            Ok(())
        };
        let properties: Vec<(String, Rules)> = match keys.get("properties") {
            None => Vec::new(),
            Some(Json::Object(props)) if props.len() <= MAX_PROPERTIES => props
                .iter()
                .map(|(name, rules)| {
                    name_ok(name).map_err(|e| format!(".properties: {e}"))?;
                    Rules::parse(rules)
                        .map(|r| (name.clone(), r))
                        .map_err(|e| format!(".properties.{name}: {e}"))
                })
                .collect::<Result<_, _>>()?,
            Some(Json::Object(_)) => {
                return Err(format!(".properties: more than {MAX_PROPERTIES} columns"))
            }
            Some(_) => return Err(".properties: must be an object of columns".into()),
        };
        let required: Vec<String> = match keys.get("required") {
            None => Vec::new(),
            Some(Json::Array(names)) if names.len() <= MAX_PROPERTIES => names
                .iter()
                .map(|n| {
                    let name = n.as_str().ok_or(".required: must list column names")?;
                    name_ok(name).map_err(|e| format!(".required: {e}"))?;
                    Ok(name.to_string())
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err(".required: must be a list of column names".into()),
        };
        let closed = match keys.get("additionalProperties") {
            None | Some(Json::Bool(true)) => false,
            Some(Json::Bool(false)) => true,
            Some(_) => return Err(".additionalProperties: only true or false".into()),
        };
        Ok(Self {
            properties,
            required,
            closed,
        })
    }

    /// Binds the rules to a file's (normalised) `columns`; `key`, the
    /// reference id's column, is not metadata, so a closed contract need
    /// not name it. `Err`: the file breaks the contract as a whole.
    pub fn bind(&self, columns: &[String], key: Option<usize>) -> Result<Checks, String> {
        let at = |name: &str| columns.iter().position(|c| c == name);
        let mut checks: Vec<Check> = Vec::new();
        for (name, rules) in &self.properties {
            if let Some(column) = at(name) {
                checks.push(Check {
                    column,
                    name: name.clone(),
                    required: false,
                    rules: Some(rules.clone()),
                });
            }
        }
        let mut missing = Vec::new();
        for name in &self.required {
            match at(name) {
                Some(column) => match checks.iter_mut().find(|c| c.column == column) {
                    Some(check) => check.required = true,
                    None => checks.push(Check {
                        column,
                        name: name.clone(),
                        required: true,
                        rules: None,
                    }),
                },
                None => missing.push(format!("`{name}`")),
            }
        }
        // Reasons name the columns in the file's order.
        checks.sort_by_key(|c| c.column);
        let mut faults = Vec::new();
        if !missing.is_empty() {
            faults.push(format!(
                "the group's contract requires {}, which the file does not have",
                missing.join(", ")
            ));
        }
        if self.closed {
            let extra: Vec<String> = columns
                .iter()
                .enumerate()
                .filter(|&(i, c)| Some(i) != key && !self.properties.iter().any(|(n, _)| n == c))
                .map(|(_, c)| format!("`{c}`"))
                .collect();
            if !extra.is_empty() {
                faults.push(format!(
                    "the group's contract allows no other columns (additionalProperties: false), and the file has {}",
                    extra.join(", ")
                ));
            }
        }
        match faults.is_empty() {
            true => Ok(Checks(checks)),
            false => Err(faults.join("; ")),
        }
    }
}

/// One column's rules, bound to where the file has it.
#[derive(Debug, Clone)]
struct Check {
    column: usize,
    name: String,
    required: bool,
    rules: Option<Rules>,
}

/// A contract bound to one file's columns: the check of each row.
#[derive(Debug, Clone, Default)]
pub struct Checks(Vec<Check>);

impl Checks {
    /// Checks one row, `value(column)` giving its value in each column;
    /// `Err` names every column it breaks a rule of, and the rule.
    pub fn check<'a>(&self, mut value: impl FnMut(usize) -> Value<'a>) -> Result<(), String> {
        let mut reason = String::new();
        for check in &self.0 {
            let broken = match (value(check.column), &check.rules) {
                (Value::Missing, _) if check.required => Err("is required".to_string()),
                (Value::Missing, _) | (_, None) => Ok(()),
                (v, Some(rules)) => rules.check(v),
            };
            if let Err(e) = broken {
                if !reason.is_empty() {
                    reason.push_str("; ");
                }
                reason.push_str(&check.name);
                reason.push_str(": ");
                reason.push_str(&e);
            }
        }
        match reason.is_empty() {
            true => Ok(()),
            false => Err(reason),
        }
    }

    /// The same checks over another numbering of the columns.
    pub fn renumbered(mut self, to: impl Fn(usize) -> usize) -> Self {
        for check in &mut self.0 {
            check.column = to(check.column);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_contract_binds_to_a_header_and_checks_rows() {
        let contract = Contract::parse(&json!({
            "nodes": {
                "required": ["email", "plan"],
                "properties": {
                    "email": {"format": "email"},
                    "age": {"type": "integer", "maximum": 130}
                }
            }
        }))
        .unwrap();
        let rules = contract.rules(Target::Nodes).unwrap();
        let header = columns(&["id", "email", "age", "plan"]);
        let checks = rules.bind(&header, Some(0)).unwrap();
        let row = |fields: [&'static str; 4]| {
            checks.check(|i| match fields[i] {
                "" => Value::Missing,
                s => Value::Text(s),
            })
        };
        assert_eq!(row(["u1", "a@b.co", "", "pro"]), Ok(()));
        assert_eq!(
            row(["u1", "", "212", ""]).unwrap_err(),
            "email: is required; age: 212 is over maximum 130; plan: is required"
        );
        assert!(rules
            .bind(&columns(&["id", "age"]), Some(0))
            .unwrap_err()
            .contains("requires `email`, `plan`"));
        assert!(contract.rules(Target::Matches).is_none());
    }

    #[test]
    fn a_closed_contract_refuses_other_columns_but_the_key() {
        let rules = ObjectRules::parse(
            &json!({"properties": {"city": {}}, "additionalProperties": false}),
            Target::Nodes,
        )
        .unwrap();
        assert!(rules.bind(&columns(&["id", "city"]), Some(0)).is_ok());
        assert!(rules
            .bind(&columns(&["id", "city", "zip"]), Some(0))
            .unwrap_err()
            .ends_with("the file has `zip`"));
    }

    #[test]
    fn bad_contracts_say_where() {
        let refused = |j: Json| Contract::parse(&j).unwrap_err();
        assert_eq!(
            refused(json!({"nodes": {"properties": {"age": {"minimum": "x"}}}})),
            "nodes.properties.age: `minimum` must be a number"
        );
        assert!(refused(json!({"node": {}})).contains("unknown keyword `node`"));
        assert!(refused(json!({"nodes": {"properties": {"firstName": {}}}}))
            .contains("is `first_name`"));
        assert!(refused(json!({"matches": {"required": ["score"]}}))
            .contains("not a match suggestion column"));
        assert!(refused(json!({"onDrift": "ignore"})).contains("\"report\" or \"fail\""));
        assert!(
            refused(json!({"nodes": {"additionalProperties": {}}})).contains("only true or false")
        );
        assert!(refused(json!([])).contains("is an object"));
    }
}
