//! The pieces export SQL is built of: values always bound as parameters
//! ([`Sql`], [`Param`]), identifiers quoted and only the object's known
//! columns ([`Field`]), and [`Invalid`], what a request that cannot run
//! gets.

use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use uuid::Uuid;

use super::object::{ColType, Column, ObjectDef};

/// A request the export cannot run, with a machine-readable code and what
/// is allowed instead (Voucherify's `invalid_export_fields` and kin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", allowed_list(.allowed))]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
    pub allowed: Vec<String>,
}

fn allowed_list(allowed: &[String]) -> String {
    match allowed {
        [] => String::new(),
        _ => format!(" (allowed: {})", allowed.join(", ")),
    }
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            allowed: Vec::new(),
        }
    }

    pub fn allowing(self, allowed: Vec<String>) -> Self {
        Self { allowed, ..self }
    }
}

/// A bind parameter: every value of an export's query is one.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Uuid(Uuid),
    Text(String),
    Texts(Vec<String>),
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Uuid(v) => v.to_sql(ty, out),
            Self::Text(v) => v.to_sql(ty, out),
            Self::Texts(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::UUID | Type::TEXT | Type::TEXT_ARRAY)
    }

    to_sql_checked!();
}

/// SQL being built: each value bound gets the next `$n`, cast explicitly so
/// that PostgreSQL never has to guess a parameter's type.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub params: Vec<Param>,
}

impl Sql {
    fn push(&mut self, p: Param) -> usize {
        self.params.push(p);
        self.params.len()
    }

    pub fn bind_uuid(&mut self, v: Uuid) -> String {
        format!("${}::uuid", self.push(Param::Uuid(v)))
    }

    /// A value given as text, read as `cast`.
    pub fn bind_text(&mut self, v: &str, cast: &str) -> String {
        format!("${}::text::{cast}", self.push(Param::Text(v.to_string())))
    }

    /// Values given as text, read as an array of `cast`.
    pub fn bind_texts(&mut self, vs: &[String], cast: &str) -> String {
        format!(
            "${}::text[]::{cast}[]",
            self.push(Param::Texts(vs.to_vec()))
        )
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The rows over the alias `t` of group `group` (of domain `domain`: both
/// SQL expressions) that its watermark has not seen: changed by a
/// transaction that the snapshot of the group's last delivered export does
/// not see. Rows changed before that snapshot's `xmin` are left out by the
/// range on `changed_xid` (an index range, `node_rows_changed_idx`) before
/// any is looked at; a group with no watermark, or one reset, has every
/// row unsent.
pub fn unsent(domain: &str, group: &str) -> String {
    let watermark = format!(
        "(SELECT w.snapshot FROM group_watermarks w WHERE w.domain_id = {domain} AND w.group_id = {group})"
    );
    format!(
        "t.group_id = {group}
         AND t.changed_xid >= coalesce(pg_snapshot_xmin({watermark}), '0'::xid8)
         AND NOT coalesce(pg_visible_in_snapshot(t.changed_xid, {watermark}), false)"
    )
}

/// `"name"`, with any `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A field a request names: a column, or one key of the `metadata` column.
#[derive(Debug, Clone)]
pub enum Field<'a> {
    Column(&'a Column),
    MetadataKey { column: &'a Column, key: String },
}

/// Metadata keys are stored normalised (seed 004 BR-5: lower snake case).
pub(super) fn valid_metadata_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl<'a> Field<'a> {
    pub fn resolve(def: &'a ObjectDef, name: &str) -> Result<Self, Invalid> {
        if let Some(c) = def.column(name) {
            return Ok(Self::Column(c));
        }
        if let (Some(key), Some(column)) = (name.strip_prefix("metadata."), def.metadata()) {
            if !valid_metadata_key(key) {
                return Err(Invalid::new(
                    "invalid_metadata_key",
                    format!("`{name}`: a metadata key is 1 to 128 of a-z, 0-9 and _"),
                ));
            }
            return Ok(Self::MetadataKey {
                column,
                key: key.to_string(),
            });
        }
        Err(Invalid::new(
            "invalid_export_fields",
            format!("unknown field `{name}` for {}", def.name),
        )
        .allowing(def.field_names()))
    }

    /// The field as an SQL expression over the alias `t`; a metadata key
    /// is its JSON value when `json`, else its text.
    pub fn sql(&self, sql: &mut Sql, json: bool) -> String {
        match self {
            Self::Column(c) if c.ty == ColType::Other => {
                format!("t.{}::text", quote_ident(&c.name))
            }
            Self::Column(c) => format!("t.{}", quote_ident(&c.name)),
            Self::MetadataKey { column, key } => format!(
                "(t.{} {} {})",
                quote_ident(&column.name),
                if json { "->" } else { "->>" },
                sql.bind_text(key, "text")
            ),
        }
    }

    /// How its values arrive: `Other` columns and metadata text as text.
    pub fn value_type(&self, json: bool) -> ColType {
        match self {
            Self::Column(c) if c.ty == ColType::Other => ColType::Text,
            Self::Column(c) => c.ty,
            Self::MetadataKey { .. } if json => ColType::Jsonb,
            Self::MetadataKey { .. } => ColType::Text,
        }
    }
}
