//! An export as asked (by the API's body, the CLI's flags, the users
//! export's scheduler), checked whole against its object and made the spec
//! its job stores: one way for every channel, so that they cannot differ.

use uuid::Uuid;

use super::object::Catalog;
use super::plan::{Invalid, Plan};
use super::{Compression, Destination, ExportSpec, Format};
use crate::settings::{ExportSettings, StorageSettings};

/// Who asked for an export (the spec's `channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    Cli,
    Schedule,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "API",
            Self::Cli => "CLI",
            Self::Schedule => "SCHEDULE",
        }
    }
}

/// An export as asked, before it is checked. What is left out gets its
/// default: the object's fields and order, CSV, gzip for a text format and
/// zstd for Parquet, seed 002's file layout.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub object: String,
    pub fields: Vec<String>,
    pub order: Option<String>,
    pub filters: Option<serde_json::Value>,
    pub format: Option<Format>,
    pub compression: Option<Compression>,
    pub destination: Option<Destination>,
    pub user_id: Option<String>,
    pub webhook_url: Option<String>,
    pub bare_metadata_names: bool,
    /// Only the group's rows not yet sent (the users export's).
    pub unsent_of: Option<Uuid>,
    pub channel: Channel,
}

impl ExportRequest {
    /// A request of `channel` for `object`, everything else its default.
    pub fn of(object: &str, channel: Channel) -> Self {
        Self {
            object: object.to_string(),
            fields: Vec::new(),
            order: None,
            filters: None,
            format: None,
            compression: None,
            destination: None,
            user_id: None,
            webhook_url: None,
            bare_metadata_names: false,
            unsent_of: None,
            channel,
        }
    }

    /// The spec of export `id` of `domain`: the object must be one the
    /// catalog has, and the request one its plan takes (known fields,
    /// operators and order), or nothing is made.
    pub fn into_spec(
        self,
        catalog: &Catalog,
        exports: &ExportSettings,
        storage: &StorageSettings,
        domain: Uuid,
        id: Uuid,
    ) -> Result<ExportSpec, Invalid> {
        let def = catalog.get(&self.object).ok_or_else(|| {
            Invalid::new(
                "invalid_exported_object",
                format!("unknown object `{}`", self.object),
            )
            .allowing(catalog.names().into_iter().map(String::from).collect())
        })?;
        let format = self.format.unwrap_or(Format::Csv);
        let compression = self.compression.unwrap_or(match format {
            // Parquet's own default.
            Format::Parquet => Compression::Zstd,
            _ => Compression::Gzip,
        });
        let destination = self.destination.unwrap_or_else(|| {
            Destination::default_for(
                exports,
                storage,
                domain,
                &self.object,
                id,
                format,
                compression,
            )
        });
        let spec = ExportSpec {
            object: self.object,
            fields: self.fields,
            order: self.order,
            filters: self.filters,
            format,
            compression,
            destination,
            user_id: self.user_id,
            webhook_url: self.webhook_url,
            channel: self.channel.as_str().into(),
            bare_metadata_names: self.bare_metadata_names,
            unsent_of: self.unsent_of,
        };
        Plan::new(def, &spec, domain, exports)?;
        Ok(spec)
    }
}

/// A format by name; an unknown one is refused with the names allowed.
pub fn format(name: &str) -> Result<Format, Invalid> {
    Format::parse(name).ok_or_else(|| {
        Invalid::new("invalid_format", format!("unknown format `{name}`"))
            .allowing(Format::ALL.map(|f| f.as_str().to_string()).to_vec())
    })
}

/// A compression by name; an unknown one is refused with the names allowed.
pub fn compression(name: &str) -> Result<Compression, Invalid> {
    Compression::parse(name).ok_or_else(|| {
        Invalid::new(
            "invalid_compression",
            format!("unknown compression `{name}`"),
        )
        .allowing(Compression::ALL.map(|c| c.as_str().to_string()).to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::object::{ColType, Column, ObjectDef};

    fn catalog() -> Catalog {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            sql_type: String::new(),
        };
        Catalog::of([ObjectDef {
            name: "node".into(),
            relation: "public.nodes".into(),
            tenant_column: "domain_id".into(),
            key: vec!["id".into()],
            columns: vec![
                col("id", ColType::Uuid),
                col("domain_id", ColType::Uuid),
                col("reference_id", ColType::Text),
            ],
            default_fields: Vec::new(),
            default_order: None,
        }])
    }

    fn spec(request: ExportRequest) -> Result<ExportSpec, Invalid> {
        let storage = StorageSettings::default();
        let exports = ExportSettings::default();
        request.into_spec(&catalog(), &exports, &storage, Uuid::nil(), Uuid::nil())
    }

    #[test]
    fn what_a_request_leaves_out_gets_its_default_and_what_it_says_is_kept() {
        let text = spec(ExportRequest::of("node", Channel::Cli)).unwrap();
        assert_eq!(
            (text.format, text.compression),
            (Format::Csv, Compression::Gzip)
        );
        assert_eq!(text.channel, "CLI");
        let parquet = ExportRequest {
            format: Some(Format::Parquet),
            ..ExportRequest::of("node", Channel::Api)
        };
        assert_eq!(
            spec(parquet.clone()).unwrap().compression,
            Compression::Zstd
        );
        let gzip = ExportRequest {
            compression: Some(Compression::Gzip),
            ..parquet
        };
        assert_eq!(
            spec(gzip).unwrap().compression,
            Compression::Gzip,
            "an explicit choice is not a default"
        );
        let unknown = spec(ExportRequest::of("voucher", Channel::Api)).unwrap_err();
        assert_eq!(unknown.code, "invalid_exported_object");
        assert_eq!(unknown.allowed, ["node"]);
        let bad_field = ExportRequest {
            fields: vec!["nope".into()],
            ..ExportRequest::of("node", Channel::Api)
        };
        assert_eq!(spec(bad_field).unwrap_err().code, "invalid_export_fields");
    }

    #[test]
    fn formats_and_compressions_are_named_or_refused_with_what_is_allowed() {
        assert_eq!(format("jsonl").unwrap(), Format::Jsonl);
        let e = format("xml").unwrap_err();
        assert_eq!(e.code, "invalid_format");
        assert!(e.allowed.contains(&"parquet".to_string()));
        assert_eq!(compression("none").unwrap(), Compression::None);
        assert_eq!(compression("lz4").unwrap_err().code, "invalid_compression");
    }
}
