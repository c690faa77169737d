//! A request checked against its object, and the one query an export runs.
//!
//! ```sql
//! SELECT <fields>, <order key>, <primary key>
//! FROM <relation> t
//! WHERE t.<tenant> = $1 AND (<filters>) AND (<after the last row written>)
//! ORDER BY <order> NULLS LAST, <primary key>
//! ```
//!
//! The primary key always ends the order, so the order is total and a
//! restarted export continues after the last row it made durable (keyset
//! continuation), whatever the order. The tenant predicate comes from the
//! job, never from the request; values are bind parameters; identifiers
//! are the object's known columns, quoted.

use tokio_postgres::Row;
use uuid::Uuid;

use super::object::{ColType, Column, ObjectDef};
use super::split::{self, Span};
pub use super::sql::{quote_ident, Field, Invalid, Param, Sql};
use super::sql::{unsent, valid_metadata_key};
use super::value::{write_sql_text, Raw};
use super::{filter, ExportSpec, Format, Position};
use crate::settings::ExportSettings;

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutField {
    pub name: String,
    pub ty: ColType,
    /// The column's declared type, for Parquet's decimals.
    pub column: Option<Column>,
}

/// Fields named by the rows: `metadata.*` is every metadata key the
/// exported rows have, in key order, read when the export starts.
pub const EVERY_METADATA_KEY: &str = "metadata.*";

/// An export's query, ready to run from any position.
#[derive(Debug, Clone)]
pub struct Plan {
    pub fields: Vec<OutField>,
    /// What each field selects: a column, or one key of it.
    selected: Vec<(Column, Option<String>)>,
    /// Where `metadata.*` stands among the fields, and its column, until
    /// the keys are known ([`Plan::expand`]).
    every_key: Option<(usize, Column)>,
    /// A metadata key's column is named by the key alone.
    bare_names: bool,
    /// The order the first rows are read in for their keys: the changes
    /// since a watermark by their index, not a scan that meets them last.
    first_rows_order: &'static str,
    json: bool,
    /// `FROM … WHERE tenant AND filters`, with its parameters.
    from_where: String,
    base: Sql,
    order_column: Option<(Column, bool)>,
    key: Vec<Column>,
}

impl Plan {
    /// Checks `spec` against `def` and plans its query, for `domain` only.
    pub fn new(
        def: &ObjectDef,
        spec: &ExportSpec,
        domain: Uuid,
        limits: &ExportSettings,
    ) -> Result<Self, Invalid> {
        let json = matches!(spec.format, Format::Json | Format::Jsonl);
        let mut sql = Sql::default();
        let domain_param = sql.bind_uuid(domain);
        let tenant = format!("t.{} = {domain_param}", quote_ident(&def.tenant_column));
        let names = if spec.fields.is_empty() {
            default_fields(def)
        } else {
            spec.fields.clone()
        };
        // PostgreSQL's own limit is 1664 result columns; past it, the
        // export would be made and then fail.
        let max_fields = limits.max_fields.min(1600);
        if names.len() > max_fields {
            return Err(Invalid::new(
                "too_many_fields",
                format!(
                    "{} fields; an export takes at most {max_fields} (exports.max_fields)",
                    names.len()
                ),
            ));
        }
        let mut fields = Vec::with_capacity(names.len());
        let mut selected = Vec::with_capacity(names.len());
        let mut every_key = None;
        for name in &names {
            if names.iter().filter(|n| *n == name).count() > 1 {
                return Err(Invalid::new(
                    "duplicate_field",
                    format!("field `{name}` is named twice"),
                ));
            }
            if name == EVERY_METADATA_KEY {
                let column = def.metadata().ok_or_else(|| {
                    Invalid::new(
                        "invalid_export_fields",
                        format!("{} has no metadata", def.name),
                    )
                    .allowing(def.field_names())
                })?;
                every_key = Some((fields.len(), column.clone()));
                continue;
            }
            let field = Field::resolve(def, name)?;
            selected.push(match &field {
                Field::Column(c) => ((*c).clone(), None),
                Field::MetadataKey { column, key } => ((*column).clone(), Some(key.clone())),
            });
            let out_name = match &field {
                Field::MetadataKey { key, .. } if spec.bare_metadata_names => key.clone(),
                _ => name.clone(),
            };
            fields.push(OutField {
                name: out_name,
                ty: field.value_type(json),
                column: match field {
                    Field::Column(c) => Some(c.clone()),
                    Field::MetadataKey { .. } => None,
                },
            });
        }
        if fields.is_empty() && every_key.is_none() {
            return Err(Invalid::new("invalid_export_fields", "no fields to export")
                .allowing(def.field_names()));
        }
        let mut filters = match &spec.filters {
            None | Some(serde_json::Value::Null) => "true".to_string(),
            Some(f) => filter::compile(f, def, limits, &mut sql)?,
        };
        if let Some(group) = spec.unsent_of {
            if def.column("group_id").is_none() || def.column("changed_xid").is_none() {
                return Err(Invalid::new(
                    "unsent_not_tracked",
                    format!("{} does not track what was sent", def.name),
                ));
            }
            let group = sql.bind_uuid(group);
            filters = format!("({filters}) AND {}", unsent(&domain_param, &group));
        }
        let order = spec.order.clone().or_else(|| def.default_order.clone());
        let order_column = match order.as_deref() {
            None | Some("") => None,
            Some(o) => {
                let (name, desc) = match o.strip_prefix('-') {
                    Some(name) => (name, true),
                    None => (o.strip_prefix('+').unwrap_or(o), false),
                };
                let column = def.column(name).ok_or_else(|| {
                    Invalid::new("invalid_order", format!("cannot order by `{o}`")).allowing(
                        def.columns
                            .iter()
                            .filter(|c| !matches!(c.ty, ColType::Jsonb | ColType::Json))
                            .map(|c| c.name.clone())
                            .collect(),
                    )
                })?;
                if matches!(column.ty, ColType::Jsonb | ColType::Json) {
                    return Err(Invalid::new(
                        "invalid_order",
                        format!("cannot order by JSON `{name}`"),
                    ));
                }
                Some((column.clone(), desc))
            }
        };
        let key = def
            .key
            .iter()
            .map(|k| def.column(k).expect("the catalog checked the key").clone())
            .collect();
        Ok(Self {
            fields,
            selected,
            every_key,
            bare_names: spec.bare_metadata_names,
            first_rows_order: match spec.unsent_of {
                Some(_) => " ORDER BY t.changed_xid",
                None => "",
            },
            json,
            from_where: format!("FROM {} t WHERE {tenant} AND {filters}", def.relation),
            base: sql,
            order_column,
            key,
        })
    }

    /// The query for the keys `metadata.*` stands for, when the plan has
    /// it: the distinct keys of the rows the export reads (keys that are
    /// not `a-z0-9_`, which no import writes, are left out), in order.
    ///
    /// Calling `jsonb_object_keys` on every row and making the keys
    /// distinct took about 2 s over a million users (26 s when each key
    /// was checked per row). Rows mostly share their keys, so the keys of
    /// the first rows are taken out of every row (`metadata - keys`, no
    /// function per key), and only what is left, usually nothing, is
    /// listed: about a tenth of the time, and as exact.
    pub fn keys_query(&self) -> Option<(String, Sql)> {
        let (_, column) = self.every_key.as_ref()?;
        let m = format!("t.{}", quote_ident(&column.name));
        let (from_where, order) = (&self.from_where, self.first_rows_order);
        let sql = format!(
            "WITH first AS (
                 SELECT coalesce(array_agg(DISTINCT k), '{{}}') AS keys
                 FROM (SELECT jsonb_object_keys(m) AS k
                       FROM (SELECT {m} AS m {from_where}{order} LIMIT 1000) rows) ks)
             SELECT k FROM (
                 SELECT unnest(keys) AS k FROM first
                 UNION
                 SELECT jsonb_object_keys({m} - (SELECT keys FROM first)) {from_where}
                   AND {m} - (SELECT keys FROM first) <> '{{}}') keys
             WHERE k ~ '^[a-z0-9_]{{1,128}}$' ORDER BY k"
        );
        Some((sql, self.base.clone()))
    }

    /// `metadata.*` made the fields `keys` name, in place (a key whose
    /// column would take an existing field's name is left out).
    pub fn expand(&mut self, keys: Vec<String>) {
        let Some((at, column)) = self.every_key.take() else {
            return;
        };
        let mut fields = Vec::new();
        let mut selected = Vec::new();
        for key in keys {
            let name = match self.bare_names {
                true => key.clone(),
                false => format!("metadata.{key}"),
            };
            if self.fields.iter().any(|f| f.name == name) || !valid_metadata_key(&key) {
                continue;
            }
            fields.push(OutField {
                name,
                ty: Field::MetadataKey {
                    column: &column,
                    key: key.clone(),
                }
                .value_type(self.json),
                column: None,
            });
            selected.push((column.clone(), Some(key)));
        }
        self.fields.splice(at..at, fields);
        self.selected.splice(at..at, selected);
    }

    /// How a row's position arrives (its values after the fields): the
    /// order column's, then the primary key's.
    pub fn position_types(&self) -> Vec<ColType> {
        self.position_columns()
            .map(|c| Field::Column(c).value_type(false))
            .collect()
    }

    fn position_columns(&self) -> impl Iterator<Item = &Column> {
        self.order_column.iter().map(|(c, _)| c).chain(&self.key)
    }

    /// The rows after `after` (all of them when `None`), in the export's
    /// order; each row holds the fields, then its position, in binary like
    /// the fields (a cast to text per row cost the server a third of its
    /// time, measured on 1M rows).
    pub fn query(&self, after: Option<&Position>) -> (String, Sql) {
        self.query_in(after, &Span::All)
    }

    /// The query, for the rows of one range of the split column.
    pub fn query_in(&self, after: Option<&Position>, span: &Span) -> (String, Sql) {
        let mut sql = self.base.clone();
        let keyset = self.after(after, &mut sql);
        let keyset = match self.within(span, &mut sql) {
            Some(within) => format!("{keyset} AND {within}"),
            None => keyset,
        };
        // The fields' values are bound last: the count, which selects none
        // of them, binds exactly the parameters before.
        let select: Vec<String> = self
            .selected
            .iter()
            .map(|(column, key)| {
                let field = match key {
                    None => Field::Column(column),
                    Some(key) => Field::MetadataKey {
                        column,
                        key: key.clone(),
                    },
                };
                field.sql(&mut sql, self.json)
            })
            .collect();
        let position: Vec<String> = self
            .position_columns()
            .map(|c| Field::Column(c).sql(&mut sql, false))
            .collect();
        let mut order: Vec<String> = Vec::new();
        if let Some((c, desc)) = &self.order_column {
            let dir = if *desc { "DESC" } else { "ASC" };
            order.push(format!("t.{} {dir} NULLS LAST", quote_ident(&c.name)));
        }
        for k in &self.key {
            order.push(format!("t.{}", quote_ident(&k.name)));
        }
        let text = format!(
            "SELECT {}, {} {} AND {keyset} ORDER BY {}",
            select.join(", "),
            position.join(", "),
            self.from_where,
            order.join(", ")
        );
        (text, sql)
    }

    /// How many rows [`Self::query`] returns.
    pub fn count(&self, after: Option<&Position>) -> (String, Sql) {
        let mut sql = self.base.clone();
        let keyset = self.after(after, &mut sql);
        (
            format!("SELECT count(*) {} AND {keyset}", self.from_where),
            sql,
        )
    }

    /// "After this position" in the order `ORDER BY o NULLS LAST, key`.
    /// The column the rows split on into ranges, and whether the order is
    /// descending: the order column, or the primary key's first, when its
    /// values can be spread ([`split::splits`]).
    pub fn split_column(&self) -> Option<(&Column, bool)> {
        let (column, desc) = match &self.order_column {
            Some((c, desc)) => (c, *desc),
            None => (self.key.first()?, false),
        };
        split::splits(column.ty).then_some((column, desc))
    }

    /// The least and greatest value of the split column among the rows
    /// still to go (PostgreSQL's binary values: read them as [`Raw`]): the
    /// first row each way, which an index on the column finds at once
    /// (`min`/`max` through a view with a join would scan).
    pub fn bounds(&self, after: Option<&Position>) -> Option<(String, Sql)> {
        let (column, _) = self.split_column()?;
        let mut sql = self.base.clone();
        let keyset = self.after(after, &mut sql);
        let c = format!("t.{}", quote_ident(&column.name));
        let end = |dir: &str| {
            format!(
                "(SELECT {c} {} AND {keyset} AND {c} IS NOT NULL ORDER BY {c} {dir} LIMIT 1)",
                self.from_where
            )
        };
        Some((format!("SELECT {}, {}", end("ASC"), end("DESC")), sql))
    }

    /// `span` as a predicate on the split column: `None` for every row.
    fn within(&self, span: &Span, sql: &mut Sql) -> Option<String> {
        let (column, desc) = self.split_column()?;
        let c = format!("t.{}", quote_ident(&column.name));
        let (from, to) = match span {
            Span::All => return None,
            Span::Nulls => return Some(format!("{c} IS NULL")),
            Span::Values { from, to } => (from, to),
        };
        let (beyond, up_to) = if desc { ("<", ">=") } else { (">", "<=") };
        let mut bound =
            |op: &str, v: &str| format!("{c} {op} {}", sql.bind_text(v, column.ty.sql_cast()));
        Some(match (from, to) {
            (None, None) => format!("{c} IS NOT NULL"),
            (None, Some(to)) => bound(up_to, to),
            (Some(from), None) => bound(beyond, from),
            (Some(from), Some(to)) => {
                let from = bound(beyond, from);
                format!("({from} AND {})", bound(up_to, to))
            }
        })
    }

    fn after(&self, position: Option<&Position>, sql: &mut Sql) -> String {
        let Some(position) = position else {
            return "true".into();
        };
        let (order_value, key_values) = match &self.order_column {
            Some(_) => (position.first().cloned().flatten(), &position[1..]),
            None => (None, &position[..]),
        };
        let mut columns = Vec::new();
        let mut values = Vec::new();
        for (k, v) in self.key.iter().zip(key_values) {
            columns.push(format!("t.{}", quote_ident(&k.name)));
            values.push(sql.bind_text(v.as_deref().unwrap_or_default(), k.ty.sql_cast()));
        }
        let key_after = format!("({}) > ({})", columns.join(", "), values.join(", "));
        let Some((c, desc)) = &self.order_column else {
            return key_after;
        };
        let o = format!("t.{}", quote_ident(&c.name));
        match order_value {
            // In the NULLs, which come last: only the key moves on.
            None => format!("({o} IS NULL AND {key_after})"),
            Some(v) => {
                let v = sql.bind_text(&v, c.ty.sql_cast());
                let beyond = if *desc { "<" } else { ">" };
                format!("({o} {beyond} {v} OR {o} IS NULL OR ({o} = {v} AND {key_after}))")
            }
        }
    }
}

/// A row's position: its values from column `at` on, of these types, as
/// text the plan binds again to read on after the row.
pub fn read_position(row: &Row, at: usize, types: &[ColType]) -> Result<Position, String> {
    let value = |i: usize, ty: ColType| {
        let raw: Option<Raw> = row
            .try_get(at + i)
            .map_err(|e| format!("row position: {e}"))?;
        let Some(Raw(raw)) = raw else {
            return Ok(None);
        };
        let mut text = Vec::new();
        write_sql_text(ty, raw, &mut text).map_err(|e| format!("row position: {e}"))?;
        String::from_utf8(text)
            .map(Some)
            .map_err(|e| format!("row position: {e}"))
    };
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| value(i, *ty))
        .collect()
}

/// The object's default fields: those declared, else every column.
fn default_fields(def: &ObjectDef) -> Vec<String> {
    if def.default_fields.is_empty() {
        def.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        def.default_fields.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{Compression, Destination};

    fn def() -> ObjectDef {
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
                col("metadata", ColType::Jsonb),
                col("created_at", ColType::Timestamptz),
                col("ip", ColType::Other),
            ],
            default_fields: vec!["reference_id".into(), "metadata".into()],
            default_order: Some("created_at".into()),
        }
    }

    fn spec(fields: &[&str], order: Option<&str>) -> ExportSpec {
        ExportSpec {
            object: "node".into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            order: order.map(String::from),
            filters: None,
            format: Format::Csv,
            compression: Compression::Gzip,
            destination: Destination::Local { path: "/x".into() },
            user_id: None,
            webhook_url: None,
            channel: "API".into(),
            bare_metadata_names: false,
            unsent_of: None,
        }
    }

    #[test]
    fn the_query_is_tenant_scoped_ordered_and_total() {
        let plan = Plan::new(
            &def(),
            &spec(
                &["reference_id", "metadata.city", "ip"],
                Some("-created_at"),
            ),
            Uuid::nil(),
            &ExportSettings::default(),
        )
        .unwrap();
        let (text, sql) = plan.query(None);
        assert_eq!(
            text,
            r#"SELECT t."reference_id", (t."metadata" ->> $2::text::text), t."ip"::text, t."created_at", t."id" FROM public.nodes t WHERE t."domain_id" = $1::uuid AND true AND true ORDER BY t."created_at" DESC NULLS LAST, t."id""#
        );
        assert_eq!(sql.params[1], Param::Text("city".into()));
        let (count, counted) = plan.count(None);
        assert!(!count.contains("$2"), "{count}");
        assert_eq!(counted.params.len(), 1);
        assert_eq!(plan.position_types(), [ColType::Timestamptz, ColType::Uuid]);
        let at = vec![
            Some("2026-01-01 00:00:00+00".to_string()),
            Some(Uuid::nil().to_string()),
        ];
        let (text, sql) = plan.query(Some(&at));
        assert!(text.contains(r#"(t."created_at" < $3::text::timestamptz OR t."created_at" IS NULL OR (t."created_at" = $3::text::timestamptz AND (t."id") > ($2::text::uuid)))"#), "{text}");
        assert!(
            text.contains(r#"(t."metadata" ->> $4::text::text)"#),
            "{text}"
        );
        assert_eq!(sql.params.len(), 4);
        let in_nulls = vec![None, Some(Uuid::nil().to_string())];
        let (text, _) = plan.query(Some(&in_nulls));
        assert!(
            text.contains(r#"(t."created_at" IS NULL AND (t."id") > ($2::text::uuid))"#),
            "{text}"
        );
    }

    #[test]
    fn defaults_and_refusals() {
        let plan = Plan::new(
            &def(),
            &spec(&[], None),
            Uuid::nil(),
            &ExportSettings::default(),
        )
        .unwrap();
        let names: Vec<&str> = plan.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["reference_id", "metadata"]);
        let err = |fields: &[&str], order| {
            Plan::new(
                &def(),
                &spec(fields, order),
                Uuid::nil(),
                &ExportSettings::default(),
            )
            .unwrap_err()
        };
        let unknown = err(&["nope"], None);
        assert_eq!(unknown.code, "invalid_export_fields");
        assert!(
            unknown.allowed.contains(&"metadata.KEY".to_string()),
            "{unknown}"
        );
        assert_eq!(err(&["id", "id"], None).code, "duplicate_field");
        assert_eq!(err(&["id"], Some("-nope")).code, "invalid_order");
        assert_eq!(err(&["id"], Some("metadata")).code, "invalid_order");
        assert_eq!(err(&["metadata.A"], None).code, "invalid_metadata_key");
    }

    #[test]
    fn a_groups_unsent_rows_are_read_from_its_watermark_by_an_index_range() {
        let mut tracked = def();
        for (name, ty) in [("group_id", ColType::Uuid), ("changed_xid", ColType::Other)] {
            tracked.columns.push(Column {
                name: name.into(),
                ty,
                sql_type: String::new(),
            });
        }
        let group = Uuid::from_u128(7);
        let unsent = ExportSpec {
            unsent_of: Some(group),
            ..spec(&["reference_id"], Some("reference_id"))
        };
        let plan = Plan::new(&tracked, &unsent, Uuid::nil(), &ExportSettings::default()).unwrap();
        let (text, sql) = plan.query(None);
        assert_eq!(sql.params[1], Param::Uuid(group));
        assert!(
            text.contains("t.group_id = $2::uuid")
                && text.contains("t.changed_xid >= coalesce(pg_snapshot_xmin((SELECT w.snapshot FROM group_watermarks w WHERE w.domain_id = $1::uuid AND w.group_id = $2::uuid)), '0'::xid8)")
                && text.contains("NOT coalesce(pg_visible_in_snapshot(t.changed_xid,"),
            "{text}"
        );
        let (count, _) = plan.count(None);
        assert!(
            count.contains("pg_visible_in_snapshot"),
            "the total counts the unsent only: {count}"
        );
        let every_key = ExportSpec {
            fields: vec!["metadata.*".into()],
            ..unsent.clone()
        };
        let plan = Plan::new(
            &tracked,
            &every_key,
            Uuid::nil(),
            &ExportSettings::default(),
        )
        .unwrap();
        let (keys, _) = plan.keys_query().unwrap();
        assert!(
            keys.contains("ORDER BY t.changed_xid LIMIT 1000"),
            "the first rows by the index, not a scan: {keys}"
        );
        let untracked = Plan::new(&def(), &unsent, Uuid::nil(), &ExportSettings::default());
        assert_eq!(untracked.unwrap_err().code, "unsent_not_tracked");
    }

    #[test]
    fn every_metadata_key_is_named_by_the_rows() {
        let mut named = spec(&["reference_id", "metadata.*", "created_at"], None);
        named.bare_metadata_names = true;
        let mut plan = Plan::new(&def(), &named, Uuid::nil(), &ExportSettings::default()).unwrap();
        let (keys, params) = plan.keys_query().expect("a wildcard needs its keys");
        assert!(
            keys.contains(r#"SELECT t."metadata" AS m FROM public.nodes t WHERE t."domain_id" = $1::uuid AND true LIMIT 1000"#),
            "the first rows' keys: {keys}"
        );
        assert!(
            keys.contains(r#"SELECT jsonb_object_keys(t."metadata" - (SELECT keys FROM first)) FROM public.nodes t WHERE t."domain_id" = $1::uuid AND true"#),
            "then what every row has beyond them: {keys}"
        );
        assert_eq!(params.params.len(), 1);
        plan.expand(vec!["age".into(), "city".into(), "reference_id".into()]);
        let names: Vec<&str> = plan.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["reference_id", "age", "city", "created_at"],
            "a key that is a column's name is left out"
        );
        assert!(plan.keys_query().is_none());
        let (text, _) = plan.query(None);
        assert!(text.contains(r#"(t."metadata" ->> $2::text::text), (t."metadata" ->> $3::text::text), t."created_at""#), "{text}");
        let mut qualified = Plan::new(
            &def(),
            &spec(&["metadata.*"], None),
            Uuid::nil(),
            &ExportSettings::default(),
        )
        .unwrap();
        qualified.expand(vec!["city".into()]);
        assert_eq!(qualified.fields[0].name, "metadata.city");
    }
}
