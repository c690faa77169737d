//! Filters in the shape of Voucherify's export filters, compiled to SQL.
//!
//! ```json
//! {"junction": "and",
//!  "created_at": {"conditions": {"$after": ["2026-01-01"]}},
//!  "metadata.city": {"conditions": {"$in": ["Pune", "Goa"]}},
//!  "filters": [{"junction": "or", "type": {"conditions": {"$is": ["USER"]}}, …}]}
//! ```
//!
//! A key is a field (a column, or `metadata.KEY`) with its conditions, or
//! `junction` (`and`, the default, or `or`: how the entries combine), or
//! `filters`: nested groups of the same shape. A field's conditions combine
//! with its own `junction` (default `and`).
//!
//! Every value becomes a bind parameter, checked against the field's type
//! first (a non-date for `$after` is an error before any query runs); the
//! only identifiers are the object's known columns, quoted. Negative
//! operators (`$not_in`, `$is_not`, `$not_contain`) also match rows where
//! the value is unknown (NULL).
//!
//! Its size: a third of it is its tests, one per operator and refusal.

use serde_json::{Map, Value};

use super::object::{ColType, ObjectDef};
use super::sql::{Field, Invalid, Sql};
use super::value::parse_timestamp;
use crate::calendar::parse_date;
use crate::settings::ExportSettings;

/// The operators, as requests spell them.
pub const OPERATORS: [&str; 16] = [
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
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Is,
    IsNot,
    HasValue,
    IsUnknown,
    Contains,
    NotContain,
    StartsWith,
    EndsWith,
    MoreThan,
    LessThan,
    MoreThanEqual,
    LessThanEqual,
    After,
    Before,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        use Op::*;
        let all = [
            In,
            NotIn,
            Is,
            IsNot,
            HasValue,
            IsUnknown,
            Contains,
            NotContain,
            StartsWith,
            EndsWith,
            MoreThan,
            LessThan,
            MoreThanEqual,
            LessThanEqual,
            After,
            Before,
        ];
        OPERATORS.iter().position(|o| *o == s).map(|i| all[i])
    }

    /// How many values it takes: `(at least, at most)`.
    fn arity(self) -> (usize, usize) {
        match self {
            Op::In | Op::NotIn => (1, usize::MAX),
            Op::HasValue | Op::IsUnknown => (0, 0),
            _ => (1, 1),
        }
    }

    fn is_text(self) -> bool {
        matches!(
            self,
            Op::Contains | Op::NotContain | Op::StartsWith | Op::EndsWith
        )
    }

    fn is_order(self) -> bool {
        matches!(
            self,
            Op::MoreThan | Op::LessThan | Op::MoreThanEqual | Op::LessThanEqual
        )
    }

    fn is_time(self) -> bool {
        matches!(self, Op::After | Op::Before)
    }

    fn comparison(self) -> &'static str {
        match self {
            Op::MoreThan | Op::After => ">",
            Op::LessThan | Op::Before => "<",
            Op::MoreThanEqual => ">=",
            Op::LessThanEqual => "<=",
            _ => "=",
        }
    }
}

/// What kind of value a field holds, as far as filters care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Bool,
    Uuid,
    Time,
    /// A whole JSON document (`metadata`): only known or unknown.
    Document,
    /// One metadata value: text, compared as a number or an ISO time when
    /// the operator asks for one.
    MetadataValue,
}

fn kind(field: &Field) -> Kind {
    match field {
        Field::MetadataKey { .. } => Kind::MetadataValue,
        Field::Column(c) => match c.ty {
            ColType::Bool => Kind::Bool,
            ColType::Uuid => Kind::Uuid,
            ColType::Jsonb | ColType::Json => Kind::Document,
            t if t.is_number() => Kind::Number,
            t if t.is_time() => Kind::Time,
            _ => Kind::Text,
        },
    }
}

/// Whether `op` applies to a field of `kind`; the ones that do, for the
/// error that says which.
fn applies(op: Op, kind: Kind) -> bool {
    match kind {
        Kind::Document => matches!(op, Op::HasValue | Op::IsUnknown),
        Kind::Bool | Kind::Uuid => matches!(
            op,
            Op::In | Op::NotIn | Op::Is | Op::IsNot | Op::HasValue | Op::IsUnknown
        ),
        Kind::Number => !op.is_text() && !op.is_time(),
        Kind::Time => !op.is_text(),
        Kind::Text => !op.is_order() && !op.is_time(),
        Kind::MetadataValue => true,
    }
}

/// Counts what a request's filters hold, against the limits.
struct Budget<'a> {
    limits: &'a ExportSettings,
    conditions: usize,
}

/// Compiles `filters` for `def` into a boolean SQL expression over the
/// alias `t`, appending its values to `sql`'s parameters.
pub fn compile(
    filters: &Value,
    def: &ObjectDef,
    limits: &ExportSettings,
    sql: &mut Sql,
) -> Result<String, Invalid> {
    let mut budget = Budget {
        limits,
        conditions: 0,
    };
    group(filters, def, &mut budget, sql, 1)
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid::new("invalid_filter", message)
}

fn junction(obj: &Map<String, Value>, at: &str) -> Result<&'static str, Invalid> {
    match obj.get("junction") {
        None => Ok(" AND "),
        Some(Value::String(j)) if j.eq_ignore_ascii_case("and") => Ok(" AND "),
        Some(Value::String(j)) if j.eq_ignore_ascii_case("or") => Ok(" OR "),
        Some(other) => Err(invalid(format!(
            "{at}junction is `and` or `or`, not {other}"
        ))),
    }
}

fn group(
    value: &Value,
    def: &ObjectDef,
    budget: &mut Budget,
    sql: &mut Sql,
    depth: usize,
) -> Result<String, Invalid> {
    if depth > budget.limits.max_depth {
        return Err(Invalid::new(
            "too_deep",
            format!(
                "filter groups nest at most {} deep",
                budget.limits.max_depth
            ),
        ));
    }
    let Value::Object(obj) = value else {
        return Err(invalid("filters are a JSON object"));
    };
    let glue = junction(obj, "")?;
    let mut parts = Vec::new();
    for (key, entry) in obj {
        match key.as_str() {
            "junction" => {}
            "filters" => {
                let Value::Array(groups) = entry else {
                    return Err(invalid("`filters` is a list of filter groups"));
                };
                for g in groups {
                    parts.push(group(g, def, budget, sql, depth + 1)?);
                }
            }
            name => {
                let field = Field::resolve(def, name)?;
                parts.push(field_conditions(&field, name, entry, budget, sql)?);
            }
        }
    }
    Ok(match parts.len() {
        0 => "true".into(),
        _ => format!("({})", parts.join(glue)),
    })
}

fn field_conditions(
    field: &Field,
    name: &str,
    entry: &Value,
    budget: &mut Budget,
    sql: &mut Sql,
) -> Result<String, Invalid> {
    let Value::Object(obj) = entry else {
        return Err(invalid(format!(
            "{name}: give {{\"conditions\": {{\"$op\": [values]}}}}"
        )));
    };
    if let Some(unknown) = obj.keys().find(|k| *k != "conditions" && *k != "junction") {
        return Err(invalid(format!(
            "{name}: unknown key `{unknown}` (conditions, junction)"
        )));
    }
    let glue = junction(obj, &format!("{name}: "))?;
    let Some(Value::Object(conditions)) = obj.get("conditions") else {
        return Err(invalid(format!(
            "{name}: `conditions` is an object of operators"
        )));
    };
    if conditions.is_empty() {
        return Err(invalid(format!("{name}: no conditions")));
    }
    let mut parts = Vec::new();
    for (op_name, values) in conditions {
        budget.conditions += 1;
        if budget.conditions > budget.limits.max_conditions {
            return Err(Invalid::new(
                "too_many_conditions",
                format!(
                    "filters hold at most {} conditions",
                    budget.limits.max_conditions
                ),
            ));
        }
        let op = Op::parse(op_name).ok_or_else(|| {
            Invalid::new(
                "unknown_operator",
                format!("{name}: unknown operator `{op_name}`"),
            )
            .allowing(OPERATORS.iter().map(|o| o.to_string()).collect())
        })?;
        parts.push(condition(field, name, op, op_name, values, budget, sql)?);
    }
    Ok(format!("({})", parts.join(glue)))
}

fn condition(
    field: &Field,
    name: &str,
    op: Op,
    op_name: &str,
    values: &Value,
    budget: &Budget,
    sql: &mut Sql,
) -> Result<String, Invalid> {
    let kind = kind(field);
    if !applies(op, kind) {
        let allowed: Vec<String> = OPERATORS
            .iter()
            .filter(|o| Op::parse(o).is_some_and(|o| applies(o, kind)))
            .map(|o| o.to_string())
            .collect();
        return Err(Invalid::new(
            "unknown_operator",
            format!("{op_name} does not apply to {name}"),
        )
        .allowing(allowed));
    }
    let values: Vec<&Value> = match values {
        Value::Array(vs) => vs.iter().collect(),
        Value::Null | Value::Bool(true) if op.arity().1 == 0 => Vec::new(),
        v => vec![v],
    };
    let (least, most) = op.arity();
    if values.len() > budget.limits.max_values {
        return Err(Invalid::new(
            "too_many_values",
            format!(
                "{name} {op_name}: at most {} values",
                budget.limits.max_values
            ),
        ));
    }
    if values.len() < least || values.len() > most {
        let wanted = match (least, most) {
            (0, 0) => "no values".to_string(),
            (1, 1) => "one value".to_string(),
            _ => "one value or more".to_string(),
        };
        return Err(Invalid::new(
            "invalid_value",
            format!("{name} {op_name} takes {wanted}"),
        ));
    }
    let expr = field.sql(sql, false);
    // Metadata values are text; an order compares them as numbers, and a
    // time as ISO-8601 text.
    let (texts, cast) = match (kind, op) {
        (Kind::MetadataValue, o) if o.is_order() => (
            checked(&values, ColType::Numeric(None), name, op_name)?,
            "numeric",
        ),
        (Kind::MetadataValue, o) if o.is_time() => (
            checked(&values, ColType::Timestamptz, name, op_name)?,
            "text",
        ),
        (Kind::MetadataValue, _) => (checked(&values, ColType::Text, name, op_name)?, "text"),
        (_, o) if o.is_text() => (checked(&values, ColType::Text, name, op_name)?, "text"),
        _ => {
            let Field::Column(c) = field else {
                unreachable!("metadata values are handled above")
            };
            (checked(&values, c.ty, name, op_name)?, c.ty.sql_cast())
        }
    };
    let lhs = match (kind, op) {
        // ISO-8601 text compares in byte order, whatever the database's
        // collation.
        (Kind::MetadataValue, o) if o.is_time() => format!("({expr}) COLLATE \"C\""),
        (Kind::MetadataValue, o) if o.is_order() => format!(
            "(CASE WHEN {expr} ~ '^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$' THEN ({expr})::numeric END)"
        ),
        (_, o) if o.is_text() => format!("({expr})::text"),
        _ => expr.clone(),
    };
    let one = |sql: &mut Sql| sql.bind_text(&texts[0], cast);
    Ok(match op {
        Op::In => format!("{lhs} = ANY({})", sql.bind_texts(&texts, cast)),
        Op::NotIn => format!(
            "({lhs} IS NULL OR {lhs} <> ALL({}))",
            sql.bind_texts(&texts, cast)
        ),
        Op::Is => format!("{lhs} = {}", one(sql)),
        Op::IsNot => format!("({lhs} IS NULL OR {lhs} <> {})", one(sql)),
        Op::HasValue => format!("{lhs} IS NOT NULL"),
        Op::IsUnknown => format!("{lhs} IS NULL"),
        Op::Contains => format!("strpos({lhs}, {}) > 0", one(sql)),
        Op::NotContain => format!("({lhs} IS NULL OR strpos({lhs}, {}) = 0)", one(sql)),
        Op::StartsWith => format!("starts_with({lhs}, {})", one(sql)),
        Op::EndsWith => {
            let p = one(sql);
            format!("right({lhs}, length({p})) = {p}")
        }
        _ => format!("{lhs} {} {}", op.comparison(), one(sql)),
    })
}

/// Each value as the text PostgreSQL will read as `ty`, refused here when
/// it is not one.
fn checked(values: &[&Value], ty: ColType, name: &str, op: &str) -> Result<Vec<String>, Invalid> {
    values
        .iter()
        .map(|v| {
            as_text(v, ty).ok_or_else(|| {
                Invalid::new(
                    "invalid_value",
                    format!("{name} {op}: {v} is not a {}", describe(ty)),
                )
            })
        })
        .collect()
}

fn describe(ty: ColType) -> &'static str {
    match ty {
        ColType::Int2 | ColType::Int4 | ColType::Int8 => "whole number in range",
        ColType::Float4 | ColType::Float8 | ColType::Numeric(_) => "number",
        ColType::Bool => "boolean",
        ColType::Uuid => "UUID",
        ColType::Timestamptz | ColType::Timestamp => "date or timestamp (ISO 8601)",
        ColType::Date => "date (YYYY-MM-DD)",
        _ => "string",
    }
}

fn as_text(v: &Value, ty: ColType) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    // PostgreSQL's text cannot hold NUL.
    if text.contains('\0') || text.len() > 65536 {
        return None;
    }
    let ok = match ty {
        ColType::Int2 => text.trim().parse::<i16>().is_ok(),
        ColType::Int4 => text.trim().parse::<i32>().is_ok(),
        ColType::Int8 => text.trim().parse::<i64>().is_ok(),
        ColType::Float4 => text.trim().parse::<f32>().is_ok_and(f32::is_finite),
        ColType::Float8 => text.trim().parse::<f64>().is_ok_and(f64::is_finite),
        ColType::Numeric(_) => is_decimal(text.trim()),
        ColType::Bool => matches!(text.as_str(), "true" | "false"),
        // Hyphenated or 32 hex digits: the forms PostgreSQL reads too (not
        // `urn:uuid:`, which the uuid crate also takes).
        ColType::Uuid => matches!(text.len(), 32 | 36) && uuid::Uuid::parse_str(&text).is_ok(),
        ColType::Timestamptz | ColType::Timestamp => parse_timestamp(&text).is_some(),
        ColType::Date => parse_date(&text).is_some(),
        _ => true,
    };
    ok.then_some(text)
}

/// `-12.5`, `3`, `1e6`: what `numeric` reads, without NaN or infinities.
fn is_decimal(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::object::Column;
    use serde_json::json;

    fn node() -> ObjectDef {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            sql_type: String::new(),
        };
        ObjectDef {
            name: "node".into(),
            relation: "public.nodes".into(),
            tenant_column: "domain_id".into(),
            key: vec!["id".into()],
            columns: vec![
                col("id", ColType::Uuid),
                col("reference_id", ColType::Text),
                col("domain_id", ColType::Uuid),
                col("processed", ColType::Bool),
                col("metadata", ColType::Jsonb),
                col("created_at", ColType::Timestamptz),
                col("score", ColType::Float8),
            ],
            default_fields: vec![],
            default_order: None,
        }
    }

    fn compiled(filters: Value) -> Result<(String, Sql), Invalid> {
        let mut sql = Sql::default();
        let text = compile(&filters, &node(), &ExportSettings::default(), &mut sql)?;
        Ok((text, sql))
    }

    #[test]
    fn values_are_parameters_and_identifiers_are_quoted_columns() {
        let (text, sql) = compiled(json!({
            "junction": "or",
            "reference_id": {"conditions": {"$in": ["a'); DROP TABLE nodes; --", "b"]}},
            "metadata.city": {"conditions": {"$starts_with": ["Pu"]}},
            "created_at": {"conditions": {"$after": ["2026-01-01"]}}
        }))
        .unwrap();
        assert!(!text.contains("DROP"), "{text}");
        assert!(
            text.contains(r#"t."reference_id" = ANY($4::text[]::text[])"#),
            "{text}"
        );
        assert_eq!(
            sql.params[3],
            crate::export::sql::Param::Texts(vec!["a'); DROP TABLE nodes; --".into(), "b".into()])
        );
        assert!(text.contains(" OR "), "{text}");
        assert_eq!(sql.params.len(), 4, "three values and the metadata key");
    }

    #[test]
    fn bad_filters_are_refused_with_a_code() {
        let code = |f: Value| compiled(f).unwrap_err().code;
        assert_eq!(
            code(json!({"nope": {"conditions": {"$is": ["x"]}}})),
            "invalid_export_fields"
        );
        assert_eq!(
            code(json!({"\"; DROP": {"conditions": {"$is": ["x"]}}})),
            "invalid_export_fields"
        );
        assert_eq!(
            code(json!({"reference_id": {"conditions": {"$like": ["x"]}}})),
            "unknown_operator"
        );
        assert_eq!(
            code(json!({"created_at": {"conditions": {"$after": ["yesterday"]}}})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"created_at": {"conditions": {"$contains": ["1"]}}})),
            "unknown_operator"
        );
        assert_eq!(
            code(json!({"score": {"conditions": {"$more_than": ["NaN"]}}})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"id": {"conditions": {"$is": ["not-a-uuid"]}}})),
            "invalid_value"
        );
        // Values PostgreSQL would refuse only once the export ran.
        assert_eq!(
            code(json!({"created_at": {"conditions": {"$after": ["0000-01-01T00:00:00Z"]}}})),
            "invalid_value"
        );
        assert_eq!(
            code(
                json!({"id": {"conditions": {"$is": ["urn:uuid:0193a8c4-0000-7000-8000-000000000000"]}}})
            ),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"reference_id": {"conditions": {"$is": ["a", "b"]}}})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"reference_id": {"conditions": {"$is": ["a\u{0}"]}}})),
            "invalid_value"
        );
        assert_eq!(
            code(json!({"metadata.Bad Key": {"conditions": {"$is": ["x"]}}})),
            "invalid_metadata_key"
        );
        assert_eq!(code(json!({"junction": "xor"})), "invalid_filter");
        assert_eq!(
            code(json!({"filters": [{"filters": [{"filters": [{}]}]}]})),
            "too_deep"
        );
        let many: Map<String, Value> = (0..60)
            .map(|i| {
                (
                    format!("metadata.k{i}"),
                    json!({"conditions": {"$has_value": []}}),
                )
            })
            .collect();
        assert_eq!(code(Value::Object(many)), "too_many_conditions");
        let values: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        assert_eq!(
            code(json!({"reference_id": {"conditions": {"$in": values}}})),
            "too_many_values"
        );
    }

    #[test]
    fn negative_operators_keep_unknown_values() {
        let (text, _) =
            compiled(json!({"reference_id": {"conditions": {"$not_in": ["a"]}}})).unwrap();
        assert!(text.contains(r#"t."reference_id" IS NULL OR"#), "{text}");
    }
}
