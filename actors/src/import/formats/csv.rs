//! CSV rows to nodes: header normalisation (seed 004 BR-5), the choice of
//! the reference-id column, and the per-row checks that reject a bad row
//! with its reason instead of failing the file.

use std::fmt::Write as _;

use csv_async::ByteRecord;

use crate::import::batch::NodeBatch;
use crate::import::contract::{Checks, ObjectRules, Value};
use crate::settings::ImportSettings;

/// The seed's `reference_id VARCHAR(255)`.
pub const MAX_REFERENCE_CHARS: usize = 255;

/// Normalises one header: trimmed, camelCase split, lower snake_case, every
/// run of other characters folded into one `_`.
pub fn normalize_header(raw: &str) -> String {
    let raw = raw.trim().trim_start_matches('\u{feff}');
    let mut out = String::with_capacity(raw.len() + 4);
    let mut prev: Option<char> = None;
    for c in raw.chars() {
        if c.is_alphanumeric() {
            let camel_break =
                c.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit());
            if camel_break && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        prev = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Normalises a header row: empty names become `column_N`, and a repeated
/// name gets `_2`, `_3`, … so every metadata key is unique.
pub fn normalize_headers<S: AsRef<str>>(raw: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let mut name = normalize_header(h.as_ref());
        if name.is_empty() {
            name = format!("column_{}", i + 1);
        }
        if out.contains(&name) {
            let base = name.clone();
            let mut n = 2;
            while out.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
        }
        out.push(name);
    }
    out
}

/// Why a file cannot be read as CSV at all (as opposed to one bad row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is empty: no header row")]
    Empty,
    #[error("not a CSV file: the header row is not valid UTF-8")]
    NotUtf8,
    #[error("not a CSV file: the header row contains NUL bytes (binary data?)")]
    Binary,
    #[error("reference column `{0}` (import.reference_column) is not in the header")]
    MissingReference(String),
    #[error("the header has {0} columns, over import.max_columns ({1})")]
    TooManyColumns(usize, usize),
    /// The header breaks the group's contract (a required column missing,
    /// a column a closed contract does not name).
    #[error("{0}")]
    Contract(String),
}

/// A parsed header: column names and which one holds the reference id.
#[derive(Debug, Clone)]
pub struct Header {
    pub columns: Vec<String>,
    pub reference: usize,
    /// `"name":` for each column, JSON-escaped once here rather than per row.
    json_keys: Vec<String>,
    /// The group's contract, bound to these columns.
    checks: Option<Checks>,
}

impl Header {
    pub fn parse(record: &ByteRecord, settings: &ImportSettings) -> Result<Self, HeaderError> {
        if record.is_empty() || (record.len() == 1 && record[0].is_empty()) {
            return Err(HeaderError::Empty);
        }
        if record.len() > settings.max_columns {
            return Err(HeaderError::TooManyColumns(
                record.len(),
                settings.max_columns,
            ));
        }
        let mut raw = Vec::with_capacity(record.len());
        for field in record {
            if field.contains(&0) {
                return Err(HeaderError::Binary);
            }
            raw.push(std::str::from_utf8(field).map_err(|_| HeaderError::NotUtf8)?);
        }
        let columns = normalize_headers(&raw);
        let reference = if settings.reference_column.is_empty() {
            settings
                .reference_candidates
                .iter()
                .find_map(|c| columns.iter().position(|h| h == c))
                .unwrap_or(0)
        } else {
            let wanted = normalize_header(&settings.reference_column);
            columns
                .iter()
                .position(|h| *h == wanted)
                .ok_or(HeaderError::MissingReference(wanted))?
        };
        let json_keys = columns
            .iter()
            .map(|c| {
                let mut k = String::with_capacity(c.len() + 3);
                push_json_string(&mut k, c);
                k.push(':');
                k
            })
            .collect();
        Ok(Self {
            columns,
            reference,
            json_keys,
            checks: None,
        })
    }

    /// The header with the group's contract bound to its columns: each row
    /// is checked against it. `Err`: the file as a whole breaks it.
    pub fn held_to(self, rules: Option<&ObjectRules>) -> Result<Self, HeaderError> {
        let Some(rules) = rules else {
            return Ok(self);
        };
        let checks = rules
            .bind(&self.columns, Some(self.reference))
            .map_err(HeaderError::Contract)?;
        Ok(Self {
            checks: Some(checks),
            ..self
        })
    }

    /// The header of a reference list: one column, the id, no metadata.
    pub fn reference_list() -> Self {
        Self {
            columns: vec!["reference_id".into()],
            reference: 0,
            json_keys: vec!["\"reference_id\":".into()],
            checks: None,
        }
    }

    pub fn reference_name(&self) -> &str {
        &self.columns[self.reference]
    }

    /// Checks a data record and appends it to `batch` as a node: the
    /// reference column becomes the key, every other column a metadata entry.
    /// On a bad record nothing is appended and the reason is returned.
    pub fn push_row(
        &self,
        record: &ByteRecord,
        row_no: u64,
        max_field_bytes: usize,
        batch: &mut NodeBatch,
    ) -> Result<(), String> {
        if record.len() != self.columns.len() {
            return Err(format!(
                "has {} fields, expected {}",
                record.len(),
                self.columns.len()
            ));
        }
        for (i, field) in record.iter().enumerate() {
            if field.len() > max_field_bytes {
                return Err(format!(
                    "field `{}` is {} bytes, over import.max_field_bytes ({max_field_bytes})",
                    self.columns[i],
                    field.len()
                ));
            }
            if field.contains(&0) {
                return Err(format!("field `{}` contains a NUL byte", self.columns[i]));
            }
        }
        let as_str = |i: usize| {
            std::str::from_utf8(&record[i])
                .map_err(|_| format!("field `{}` is not valid UTF-8", self.columns[i]))
        };
        let reference = as_str(self.reference)?.trim();
        if reference.is_empty() {
            return Err(format!(
                "reference id (`{}`) is empty",
                self.reference_name()
            ));
        }
        let chars = reference.chars().count();
        if chars > MAX_REFERENCE_CHARS {
            return Err(format!(
                "reference id is {chars} characters, over {MAX_REFERENCE_CHARS}"
            ));
        }
        if let Some(checks) = &self.checks {
            let mut not_text = None;
            let checked = checks.check(|i| match std::str::from_utf8(&record[i]) {
                Ok(s) if s.trim().is_empty() => Value::Missing,
                Ok(s) => Value::Text(s),
                Err(_) => {
                    not_text = Some(i);
                    Value::Missing
                }
            });
            if let Some(i) = not_text {
                return Err(format!("field `{}` is not valid UTF-8", self.columns[i]));
            }
            checked?;
        }
        batch.push_with(row_no, reference, |out| {
            out.push('{');
            let mut first = true;
            for i in (0..record.len()).filter(|&i| i != self.reference) {
                let value = as_str(i)?;
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&self.json_keys[i]);
                push_json_string(out, value);
            }
            out.push('}');
            Ok(())
        })
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::batch::Batch;

    fn rec(fields: &[&[u8]]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn headers_are_normalised() {
        let cases = [
            (" First Name ", "first_name"),
            ("firstName", "first_name"),
            ("E-Mail Address", "e_mail_address"),
            ("\u{feff}UserId", "user_id"),
            ("__Weird__!!Name??", "weird_name"),
            ("HTTPServer", "httpserver"),
            ("age2Years", "age2_years"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_header(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn duplicate_and_empty_headers_become_unique() {
        assert_eq!(
            normalize_headers(&["City", "city", " CITY", "", "city_2"]),
            ["city", "city_2", "city_3", "column_4", "city_2_2"]
        );
    }

    #[test]
    fn reference_column_is_found_by_candidates_then_first() {
        let s = ImportSettings::default();
        let h = Header::parse(&rec(&[b"Name", b"User Name", b"City"]), &s).unwrap();
        assert_eq!(
            h.reference_name(),
            "name",
            "user_name is no candidate: first column"
        );
        let h = Header::parse(&rec(&[b"Name", b"Username"]), &s).unwrap();
        assert_eq!(h.reference, 1);
        let s = ImportSettings {
            reference_column: "Name".into(),
            ..ImportSettings::default()
        };
        let h = Header::parse(&rec(&[b"id", b"name"]), &s).unwrap();
        assert_eq!(h.reference, 1);
        let s = ImportSettings {
            reference_column: "missing".into(),
            ..ImportSettings::default()
        };
        assert!(matches!(
            Header::parse(&rec(&[b"id"]), &s),
            Err(HeaderError::MissingReference(_))
        ));
    }

    #[test]
    fn binary_header_is_not_csv() {
        let s = ImportSettings::default();
        assert_eq!(
            Header::parse(&rec(&[b"\xff\xfe\x00garbage"]), &s).unwrap_err(),
            HeaderError::Binary
        );
        assert_eq!(
            Header::parse(&rec(&[b"\xff\xfe"]), &s).unwrap_err(),
            HeaderError::NotUtf8
        );
        assert_eq!(
            Header::parse(&rec(&[b""]), &s).unwrap_err(),
            HeaderError::Empty
        );
    }

    #[test]
    fn rows_become_metadata_json() {
        let s = ImportSettings::default();
        let h = Header::parse(&rec(&[b"id", b"City", b"Note"]), &s).unwrap();
        let mut b = NodeBatch::default();
        h.push_row(&rec(&[b" u1 ", b"Pune", b"say \"hi\"\n"]), 1, 1024, &mut b)
            .unwrap();
        let row = &b.rows()[0];
        assert_eq!(b.reference(row), "u1");
        let v: serde_json::Value = serde_json::from_str(b.metadata(row)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"city": "Pune", "note": "say \"hi\"\n"})
        );
    }

    #[test]
    fn a_reference_list_has_ids_and_no_metadata() {
        let h = Header::reference_list();
        let mut b = NodeBatch::default();
        h.push_row(&rec(&[b" r1 "]), 1, 1024, &mut b).unwrap();
        assert_eq!(
            (b.reference(&b.rows()[0]), b.metadata(&b.rows()[0])),
            ("r1", "{}")
        );
        assert!(h.push_row(&rec(&[b"a", b"b"]), 2, 1024, &mut b).is_err());
    }

    #[test]
    fn bad_rows_are_rejected_with_a_reason() {
        let s = ImportSettings::default();
        let h = Header::parse(&rec(&[b"id", b"city"]), &s).unwrap();
        let mut b = NodeBatch::default();
        let long = vec![b'x'; 2000];
        let long_ref = "r".repeat(256);
        let cases: Vec<(ByteRecord, &str)> = vec![
            (rec(&[b"a"]), "has 1 fields, expected 2"),
            (rec(&[b"  ", b"x"]), "reference id (`id`) is empty"),
            (rec(&[b"a", b"\xc3\x28"]), "field `city` is not valid UTF-8"),
            (rec(&[b"a", b"x\0y"]), "field `city` contains a NUL byte"),
            (rec(&[b"a", &long]), "field `city` is 2000 bytes"),
            (
                rec(&[long_ref.as_bytes(), b"x"]),
                "reference id is 256 characters",
            ),
        ];
        for (r, want) in cases {
            let err = h.push_row(&r, 1, 1024, &mut b).unwrap_err();
            assert!(err.starts_with(want), "{err} / {want}");
        }
        assert!(b.is_empty());
    }
}
