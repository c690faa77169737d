//! What can be exported: a table or view of one tenant column, with its
//! columns and their types read from PostgreSQL's catalog at start.
//!
//! Two objects are built in (`node`: the view `nodes_export`, `nodes` as
//! exports read it; `match_suggestion`: `match_suggestions`); an operator
//! declares more in `[[exports.objects]]` with no code (seed 002's
//! vouchers, orders, … from a user's own tables).
//! Identifiers in export SQL come only from here: every request names
//! fields, and a name that is not one of these columns is refused.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use crate::settings::{ExportObjectSettings, ExportSettings};

/// How a column's values are read and written. Types ferry has no codec
/// for are selected as `::text` and written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`; `None` when unconstrained.
    Numeric(Option<(u8, i8)>),
    Bool,
    Text,
    Uuid,
    Timestamptz,
    Timestamp,
    Date,
    Jsonb,
    Json,
    /// Any other type, read as its text form.
    Other,
}

impl ColType {
    /// From `pg_type.typname` and `pg_attribute.atttypmod`.
    pub fn of(typname: &str, typmod: i32) -> Self {
        match typname {
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "numeric" => Self::Numeric(numeric_typmod(typmod)),
            "bool" => Self::Bool,
            "text" | "varchar" | "bpchar" | "name" | "citext" => Self::Text,
            "uuid" => Self::Uuid,
            "timestamptz" => Self::Timestamptz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "jsonb" => Self::Jsonb,
            "json" => Self::Json,
            _ => Self::Other,
        }
    }

    /// The SQL type a filter value is cast to, for this column.
    pub fn sql_cast(self) -> &'static str {
        match self {
            Self::Int2 => "int2",
            Self::Int4 => "int4",
            Self::Int8 => "int8",
            Self::Float4 => "float4",
            Self::Float8 => "float8",
            Self::Numeric(_) => "numeric",
            Self::Bool => "bool",
            Self::Text | Self::Other => "text",
            Self::Uuid => "uuid",
            Self::Timestamptz => "timestamptz",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
            Self::Jsonb => "jsonb",
            Self::Json => "json",
        }
    }

    pub fn is_number(self) -> bool {
        matches!(
            self,
            Self::Int2 | Self::Int4 | Self::Int8 | Self::Float4 | Self::Float8 | Self::Numeric(_)
        )
    }

    pub fn is_time(self) -> bool {
        matches!(self, Self::Timestamptz | Self::Timestamp | Self::Date)
    }
}

/// `numeric(p, s)`: the typmod is `((p << 16) | s) + 4`; -1 when none.
fn numeric_typmod(typmod: i32) -> Option<(u8, i8)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = (t & 0x7ff) as i16;
    let scale = if scale > 1024 { scale - 2048 } else { scale };
    (precision <= 38 && (0..=precision as i16).contains(&scale))
        .then_some((precision as u8, scale as i8))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    /// The type as PostgreSQL spells it (`numeric(10,2)`, `inet`).
    pub sql_type: String,
}

/// One exportable object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDef {
    /// What requests call it (`node`).
    pub name: String,
    /// The table or view, as a quoted (maybe schema-qualified) identifier.
    pub relation: String,
    /// The column that names each row's domain.
    pub tenant_column: String,
    /// A unique key: the tie-breaker of every order, so an order is total
    /// and an export can continue where it stopped.
    pub key: Vec<String>,
    pub columns: Vec<Column>,
    pub default_fields: Vec<String>,
    pub default_order: Option<String>,
}

impl ObjectDef {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The `metadata` column, when the object has one of type jsonb:
    /// `metadata.KEY` fields and filters read it.
    pub fn metadata(&self) -> Option<&Column> {
        self.column("metadata").filter(|c| c.ty == ColType::Jsonb)
    }

    /// Every field a request may name, in column order.
    pub fn field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        if self.metadata().is_some() {
            names.push("metadata.KEY".into());
        }
        names
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database: {}", crate::error::chain(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("export object `{object}`: {reason}")]
    Invalid { object: String, reason: String },
}

/// Every exportable object, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    objects: BTreeMap<String, ObjectDef>,
}

/// The built-in objects, declared as an operator would.
fn built_in() -> Vec<ExportObjectSettings> {
    let strings = |s: &[&str]| s.iter().map(|f| f.to_string()).collect();
    let object = |name: &str, table: &str, key: &[&str], fields: &[&str], order: &str| {
        ExportObjectSettings {
            name: name.into(),
            table: table.into(),
            tenant_column: "domain_id".into(),
            key: strings(key),
            default_fields: strings(fields),
            default_order: order.into(),
        }
    };
    vec![
        // A view over `node_rows` (`nodes` as ferry reads it): its key is
        // said.
        object(
            "node",
            "nodes_export",
            &["id"],
            &[
                "id",
                "reference_id",
                "group_id",
                "type",
                "processed",
                "metadata",
                "created_at",
                "updated_at",
            ],
            "created_at",
        ),
        object(
            "match_suggestion",
            "match_suggestions",
            &[],
            &[
                "group_id",
                "participant_id",
                "matched_participant_id",
                "compatibility_score",
                "rank",
            ],
            "",
        ),
    ]
}

impl Catalog {
    /// Reads each object's columns, types and key from the catalog. An
    /// object whose table is missing, whose tenant column or key is not a
    /// column, or which has no key, is an error naming it.
    pub async fn load(
        c: &impl GenericClient,
        settings: &ExportSettings,
    ) -> Result<Self, CatalogError> {
        let mut objects = BTreeMap::new();
        for declared in built_in().iter().chain(&settings.objects) {
            let def = load_object(c, declared).await?;
            if objects.insert(def.name.clone(), def).is_some() {
                return Err(CatalogError::Invalid {
                    object: declared.name.clone(),
                    reason: "declared twice".into(),
                });
            }
        }
        Ok(Self { objects })
    }

    pub fn get(&self, name: &str) -> Option<&ObjectDef> {
        self.objects.get(name)
    }

    /// A catalog of `defs` as they are (for tests of what uses one).
    #[cfg(test)]
    pub fn of(defs: impl IntoIterator<Item = ObjectDef>) -> Self {
        Self {
            objects: defs.into_iter().map(|d| (d.name.clone(), d)).collect(),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.objects.keys().map(String::as_str).collect()
    }
}

async fn load_object(
    c: &impl GenericClient,
    declared: &ExportObjectSettings,
) -> Result<ObjectDef, CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        object: declared.name.clone(),
        reason,
    };
    if declared.name.is_empty()
        || !declared
            .name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
    {
        return Err(invalid("a name is lower-case letters, digits and _".into()));
    }
    let relation = c
        .query_opt("SELECT to_regclass($1)::oid", &[&declared.table])
        .await?
        .and_then(|r| r.get::<_, Option<u32>>(0))
        .ok_or_else(|| invalid(format!("no table or view `{}`", declared.table)))?;
    let rows = c
        .query(
            "SELECT a.attname::text, t.typname::text, a.atttypmod,
                    format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&relation],
        )
        .await?;
    let columns: Vec<Column> = rows
        .iter()
        .map(|r| Column {
            name: r.get(0),
            ty: ColType::of(r.get(1), r.get(2)),
            sql_type: r.get(3),
        })
        .collect();
    let qualified: String = c
        .query_one(
            "SELECT format('%I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[&relation],
        )
        .await?
        .get(0);
    let key = if declared.key.is_empty() {
        c.query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = $1 AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&relation],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        declared.key.clone()
    };
    let def = ObjectDef {
        name: declared.name.clone(),
        relation: qualified,
        tenant_column: declared.tenant_column.clone(),
        key,
        columns,
        default_fields: declared.default_fields.clone(),
        default_order: Some(declared.default_order.clone()).filter(|o| !o.is_empty()),
    };
    check(&def).map_err(invalid)?;
    Ok(def)
}

/// What must hold of an object before any request uses it.
fn check(def: &ObjectDef) -> Result<(), String> {
    let tenant = def
        .column(&def.tenant_column)
        .ok_or_else(|| format!("no tenant column `{}`", def.tenant_column))?;
    if tenant.ty != ColType::Uuid {
        return Err(format!(
            "tenant column `{}` is {}, not uuid",
            tenant.name, tenant.sql_type
        ));
    }
    if def.key.is_empty() {
        return Err("no primary key: give `key` (columns that identify a row)".into());
    }
    for k in &def.key {
        if def.column(k).is_none() {
            return Err(format!("key column `{k}` is not a column"));
        }
    }
    let fields = if def.default_fields.is_empty() {
        &def.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        &def.default_fields
    };
    for f in fields {
        if def.column(f).is_none() && !(f.starts_with("metadata.") && def.metadata().is_some()) {
            return Err(format!("default field `{f}` is not a column"));
        }
    }
    if let Some(order) = &def.default_order {
        let name = order.strip_prefix('-').unwrap_or(order);
        if def.column(name).is_none() {
            return Err(format!("default order `{order}` is not a column"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_type_modifiers() {
        assert_eq!(numeric_typmod(-1), None);
        assert_eq!(numeric_typmod(((10 << 16) | 2) + 4), Some((10, 2)));
        assert_eq!(numeric_typmod((12 << 16) + 4), Some((12, 0)));
        assert_eq!(
            numeric_typmod(((60 << 16) | 2) + 4),
            None,
            "wider than decimal128"
        );
        assert_eq!(ColType::of("varchar", 259), ColType::Text);
        assert_eq!(ColType::of("inet", -1), ColType::Other);
    }
}
