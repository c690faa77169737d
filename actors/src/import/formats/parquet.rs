//! Parquet match suggestions (seed 003): the schema check that runs before
//! a row is read, the limits read off the footer, and the per-row
//! conversion that rejects a bad row with its reason.
//!
//! Column names are normalised as CSV headers are (`participantId` →
//! `participant_id`). Numbers are coerced only where no value can change:
//! an `int64` score is taken if it fits a double exactly, a `double` rank
//! if it is a whole number in `integer` range; anything else rejects its
//! row, never rounds it.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    AnyDictionaryArray, Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::{DataType, Schema};
use parquet::file::metadata::ParquetMetaData;

use super::csv::{normalize_header, MAX_REFERENCE_CHARS};
use crate::import::batch::MatchBatch;
use crate::import::contract::{self, Checks, ObjectRules};

/// The columns a match suggestions file must have (normalised names).
pub const MATCH_COLUMNS: [&str; 4] = [
    "participant_id",
    "matched_participant_id",
    "compatibility_score",
    "rank",
];

const PARTICIPANT: usize = 0;
const MATCHED: usize = 1;
const SCORE: usize = 2;
const RANK: usize = 3;

/// The largest decimal precision a double holds exactly (DBL_DIG).
const MAX_EXACT_DECIMAL_DIGITS: u8 = 15;

/// The largest integer magnitude a double holds exactly.
const MAX_EXACT_DOUBLE_INT: u64 = 1 << 53;

/// Why a file cannot be read as match suggestions at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the file has {0} columns, over import.max_columns ({1})")]
    TooManyColumns(usize, usize),
    #[error("missing required columns: {} (the file has: {})", .missing.join(", "), .found.join(", "))]
    Missing {
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("columns of the wrong type: {}", .0.join("; "))]
    WrongTypes(Vec<String>),
}

/// Where the required columns are in a file, checked against its schema.
#[derive(Debug, Clone)]
pub struct MatchSchema {
    /// The file's own name of each required column, in [`MATCH_COLUMNS`] order.
    names: [String; 4],
    /// Their root column indexes: the projection to read.
    roots: [usize; 4],
    /// Every column's name, normalised.
    columns: Vec<String>,
}

impl MatchSchema {
    /// Finds and type-checks the required columns; other columns are
    /// ignored (and never read).
    pub fn new(schema: &Schema, max_columns: usize) -> Result<Self, SchemaError> {
        let fields = schema.fields();
        if fields.len() > max_columns {
            return Err(SchemaError::TooManyColumns(fields.len(), max_columns));
        }
        let normalised: Vec<String> = fields.iter().map(|f| normalize_header(f.name())).collect();
        let found = MATCH_COLUMNS.map(|want| normalised.iter().position(|n| n == want));
        let missing: Vec<String> = MATCH_COLUMNS
            .iter()
            .zip(&found)
            .filter(|(_, at)| at.is_none())
            .map(|(name, _)| name.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(SchemaError::Missing {
                missing,
                found: fields.iter().map(|f| f.name().clone()).collect(),
            });
        }
        let roots = found.map(|at| at.expect("none missing"));
        let wrong: Vec<String> = (0..4)
            .filter_map(|c| {
                let field = &fields[roots[c]];
                let (ok, expected) = match c {
                    PARTICIPANT | MATCHED => (
                        is_text(field.data_type()) || is_integer(field.data_type()),
                        "a string or an integer",
                    ),
                    SCORE => (
                        is_exact_double(field.data_type()),
                        "a number a double holds exactly (an integer, a float, a decimal of at most 15 digits)",
                    ),
                    _ => (
                        num_reader(field.data_type()).is_some(),
                        "an integer (or a whole float or decimal)",
                    ),
                };
                (!ok).then(|| format!("`{}` is {}, expected {expected}", field.name(), field.data_type()))
            })
            .collect();
        if !wrong.is_empty() {
            return Err(SchemaError::WrongTypes(wrong));
        }
        Ok(Self {
            names: roots.map(|r| fields[r].name().clone()),
            roots,
            columns: normalised,
        })
    }

    /// Every column the file has, its name normalised.
    pub fn all_columns(&self) -> &[String] {
        &self.columns
    }

    /// The group's contract, bound to the file's columns, numbered as
    /// [`MATCH_COLUMNS`] (the only ones a contract names). `Err`: the file
    /// as a whole breaks it.
    pub fn bind(&self, rules: &ObjectRules) -> Result<Checks, String> {
        let checks = rules.bind(&self.columns, None)?;
        Ok(checks.renumbered(|column| {
            self.roots
                .iter()
                .position(|&r| r == column)
                .expect("a contract names only the match suggestion columns")
        }))
    }

    /// Root column indexes to project, ascending.
    pub fn roots(&self) -> Vec<usize> {
        let mut r = self.roots.to_vec();
        r.sort_unstable();
        r
    }

    /// The required columns of one record batch, ready to read row by row.
    pub fn columns<'a>(&self, batch: &'a RecordBatch) -> Result<MatchColumns<'a>, String> {
        let column = |c: usize| {
            batch
                .column_by_name(&self.names[c])
                .map(|a| a.as_ref())
                .ok_or_else(|| format!("column `{}` is missing from a row group", self.names[c]))
        };
        let changed = |c: usize, a: &dyn Array| {
            format!(
                "column `{}` changed type to {}",
                self.names[c],
                a.data_type()
            )
        };
        let text = |c: usize| {
            let a = column(c)?;
            Text::new(a).ok_or_else(|| changed(c, a))
        };
        let num = |c: usize| {
            let a = column(c)?;
            Num::new(a).ok_or_else(|| changed(c, a))
        };
        Ok(MatchColumns {
            participant: text(PARTICIPANT)?,
            matched: text(MATCHED)?,
            score: num(SCORE)?,
            rank: num(RANK)?,
            rows: batch.num_rows(),
        })
    }
}

/// One record batch's required columns.
pub struct MatchColumns<'a> {
    participant: Text<'a>,
    matched: Text<'a>,
    score: Num<'a>,
    rank: Num<'a>,
    rows: usize,
}

impl MatchColumns<'_> {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Checks row `i` and appends it to `out` as row `row_no` of the file.
    /// On a bad row nothing is appended and the reason is returned.
    pub fn push_row(
        &self,
        i: usize,
        row_no: u64,
        bufs: &mut [String; 2],
        checks: Option<&Checks>,
        out: &mut MatchBatch,
    ) -> Result<(), String> {
        let [pbuf, mbuf] = bufs;
        let participant = id(&self.participant, i, pbuf, MATCH_COLUMNS[PARTICIPANT])?;
        let matched = id(&self.matched, i, mbuf, MATCH_COLUMNS[MATCHED])?;
        if participant == matched {
            return Err("participant_id and matched_participant_id are the same".into());
        }
        let score = self
            .score
            .get(i)
            .map(|v| to_score(v, self.score.scale))
            .transpose()?;
        let rank = self
            .rank
            .get(i)
            .map(|v| to_rank(v, self.rank.scale))
            .transpose()?;
        if let Some(checks) = checks {
            checks.check(|column| match column {
                PARTICIPANT => contract::Value::Text(participant),
                MATCHED => contract::Value::Text(matched),
                SCORE => score.map_or(contract::Value::Missing, contract::Value::Number),
                _ => rank.map_or(contract::Value::Missing, |r| {
                    contract::Value::Number(r.into())
                }),
            })?;
        }
        out.push(row_no, participant, matched, score, rank);
        Ok(())
    }

    /// Row `i`'s four values as text (empty for null), for the rejects file.
    pub fn fields(&self, i: usize) -> [String; 4] {
        let mut texts = [String::new(), String::new()];
        for (t, col) in texts.iter_mut().zip([&self.participant, &self.matched]) {
            let mut buf = String::new();
            if let Some(s) = col.get(i, &mut buf) {
                *t = s.to_string();
            }
        }
        let [p, m] = texts;
        [
            p,
            m,
            self.score.display(i).unwrap_or_default(),
            self.rank.display(i).unwrap_or_default(),
        ]
    }
}

/// A participant id: present, trimmed, non-empty, text PostgreSQL takes.
fn id<'b>(col: &'b Text<'_>, i: usize, buf: &'b mut String, name: &str) -> Result<&'b str, String> {
    let Some(s) = col.get(i, buf) else {
        return Err(format!("{name} is null"));
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if s.len() > MAX_REFERENCE_CHARS {
        let chars = s.chars().count();
        if chars > MAX_REFERENCE_CHARS {
            return Err(format!(
                "{name} is {chars} characters, over {MAX_REFERENCE_CHARS}"
            ));
        }
    }
    if s.contains('\0') {
        return Err(format!("{name} contains a NUL character"));
    }
    Ok(s)
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn is_exact_double(t: &DataType) -> bool {
    match t {
        DataType::Decimal128(precision, _) => *precision <= MAX_EXACT_DECIMAL_DIGITS,
        t => num_reader(t).is_some(),
    }
}

/// A text column, or an integer one read as text.
enum Text<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    View(&'a StringViewArray),
    Integer(Num<'a>),
    Dictionary {
        array: &'a dyn AnyDictionaryArray,
        keys: Vec<usize>,
        values: Box<Text<'a>>,
    },
}

impl<'a> Text<'a> {
    fn new(a: &'a dyn Array) -> Option<Self> {
        Some(match a.data_type() {
            DataType::Utf8 => Self::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Self::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => Self::View(a.as_string_view()),
            DataType::Dictionary(..) => {
                let array = a.as_any_dictionary_opt()?;
                Self::Dictionary {
                    array,
                    keys: array.normalized_keys(),
                    values: Box::new(Text::new(array.values().as_ref())?),
                }
            }
            t if t.is_integer() => Self::Integer(Num::new(a)?),
            _ => return None,
        })
    }

    /// Row `i`'s text (an integer is written into `buf`), or `None` if null.
    fn get<'b>(&'b self, i: usize, buf: &'b mut String) -> Option<&'b str> {
        match self {
            Self::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Self::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            Self::View(a) => a.is_valid(i).then(|| a.value(i)),
            Self::Integer(n) => {
                let v = n.get(i)?;
                buf.clear();
                let _ = match v {
                    Value::Int(v) => write!(buf, "{v}"),
                    Value::UInt(v) => write!(buf, "{v}"),
                    Value::Float(_) | Value::Decimal(_) => return None,
                };
                Some(buf.as_str())
            }
            Self::Dictionary {
                array,
                keys,
                values,
            } => {
                if array.is_null(i) {
                    return None;
                }
                values.get(keys[i], buf)
            }
        }
    }
}

/// A number as stored, before coercion.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Unscaled; the column holds the scale.
    Decimal(i128),
}

type ReadFn = fn(&dyn Array, usize) -> Value;

/// A numeric column of any supported type.
struct Num<'a> {
    array: &'a dyn Array,
    read: ReadFn,
    scale: i8,
}

impl<'a> Num<'a> {
    fn new(array: &'a dyn Array) -> Option<Self> {
        let scale = match array.data_type() {
            DataType::Decimal128(_, s) => *s,
            _ => 0,
        };
        Some(Self {
            array,
            read: num_reader(array.data_type())?,
            scale,
        })
    }

    fn get(&self, i: usize) -> Option<Value> {
        self.array.is_valid(i).then(|| (self.read)(self.array, i))
    }

    fn display(&self, i: usize) -> Option<String> {
        Some(display(self.get(i)?, self.scale))
    }
}

fn num_reader(t: &DataType) -> Option<ReadFn> {
    macro_rules! read {
        ($ty:ty, $variant:ident, $as:ty) => {
            |a: &dyn Array, i: usize| Value::$variant(a.as_primitive::<$ty>().value(i) as $as)
        };
    }
    Some(match t {
        DataType::Int8 => read!(Int8Type, Int, i64),
        DataType::Int16 => read!(Int16Type, Int, i64),
        DataType::Int32 => read!(Int32Type, Int, i64),
        DataType::Int64 => read!(Int64Type, Int, i64),
        DataType::UInt8 => read!(UInt8Type, UInt, u64),
        DataType::UInt16 => read!(UInt16Type, UInt, u64),
        DataType::UInt32 => read!(UInt32Type, UInt, u64),
        DataType::UInt64 => read!(UInt64Type, UInt, u64),
        DataType::Float32 => read!(Float32Type, Float, f64),
        DataType::Float64 => read!(Float64Type, Float, f64),
        DataType::Decimal128(..) => read!(Decimal128Type, Decimal, i128),
        _ => return None,
    })
}

/// A decimal's exact text: `12345` at scale 2 is `123.45`.
fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return format!("{v}{}", "0".repeat(scale.unsigned_abs() as usize));
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

/// A compatibility score as a double, if it is one exactly and finite.
fn to_score(v: Value, scale: i8) -> Result<f64, String> {
    let f = match v {
        Value::Int(i) if i.unsigned_abs() <= MAX_EXACT_DOUBLE_INT => i as f64,
        Value::UInt(u) if u <= MAX_EXACT_DOUBLE_INT => u as f64,
        Value::Int(_) | Value::UInt(_) => {
            return Err(format!(
                "compatibility_score {} does not fit a double exactly",
                display(v, scale)
            ))
        }
        Value::Float(f) => f,
        // The schema check allows at most 15 digits: the nearest double
        // reads back as the same decimal.
        Value::Decimal(d) => decimal_text(d, scale)
            .parse()
            .map_err(|e| format!("compatibility_score: {e}"))?,
    };
    if !f.is_finite() {
        return Err(format!("compatibility_score is {f}"));
    }
    Ok(f)
}

/// A rank as an `integer`, if it is a whole number in range.
fn to_rank(v: Value, scale: i8) -> Result<i32, String> {
    let whole: Option<i128> = match v {
        Value::Int(i) => Some(i.into()),
        Value::UInt(u) => Some(u.into()),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e18 => Some(f as i128),
        Value::Float(_) => None,
        Value::Decimal(d) if scale <= 0 => 10i128
            .checked_pow(scale.unsigned_abs().into())
            .and_then(|unit| d.checked_mul(unit)),
        Value::Decimal(d) => {
            let unit = 10i128.checked_pow(scale as u32);
            unit.filter(|u| d % u == 0).map(|u| d / u)
        }
    };
    whole.and_then(|w| i32::try_from(w).ok()).ok_or_else(|| {
        format!(
            "rank {} is not a whole number in integer range",
            display(v, scale)
        )
    })
}

/// A value as text, exactly (a decimal at its scale).
fn display(v: Value, scale: i8) -> String {
    match v {
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        Value::Float(v) => v.to_string(),
        Value::Decimal(v) => decimal_text(v, scale),
    }
}

/// Row counts of the row groups, from the footer.
pub fn row_group_rows(meta: &ParquetMetaData) -> Result<Vec<u64>, String> {
    meta.row_groups()
        .iter()
        .enumerate()
        .map(|(g, rg)| {
            u64::try_from(rg.num_rows())
                .map_err(|_| format!("corrupt footer: row group {g} has {} rows", rg.num_rows()))
        })
        .collect()
}

/// Where a resumed read starts: the row group holding row `records + 1`,
/// and how many of its rows to skip.
pub fn resume_at(row_groups: &[u64], records: u64) -> (usize, u64) {
    let mut before = 0;
    for (g, &rows) in row_groups.iter().enumerate() {
        if records < before + rows {
            return (g, records - before);
        }
        before += rows;
    }
    (row_groups.len(), 0)
}

/// The limits a footer can be judged by before any data is read.
#[derive(Debug, Clone, Copy)]
pub struct FooterLimits {
    /// Stored bytes of the projected columns of one row group.
    pub max_row_group_bytes: u64,
    pub max_decompressed_bytes: u64,
    pub max_compression_ratio: u64,
}

/// Compressed data under this size is not judged by its ratio.
const RATIO_FLOOR_BYTES: u64 = 16 << 20;

/// Checks every row group's projected columns against the limits, from the
/// sizes the footer declares.
pub fn check_footer(
    meta: &ParquetMetaData,
    roots: &[usize],
    limits: FooterLimits,
) -> Result<(), String> {
    let schema = meta.file_metadata().schema_descr();
    let mut total_plain: u64 = 0;
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let (mut stored, mut plain) = (0u64, 0u64);
        for (leaf, chunk) in rg.columns().iter().enumerate() {
            if !roots.contains(&schema.get_column_root_idx(leaf)) {
                continue;
            }
            let (Ok(s), Ok(p)) = (
                u64::try_from(chunk.compressed_size()),
                u64::try_from(chunk.uncompressed_size()),
            ) else {
                return Err(format!(
                    "corrupt footer: row group {g} declares a negative size"
                ));
            };
            stored = stored.saturating_add(s);
            plain = plain.saturating_add(p);
        }
        if stored > limits.max_row_group_bytes {
            return Err(format!(
                "row group {g} stores {stored} bytes of the needed columns, over import.max_row_group_bytes ({})",
                limits.max_row_group_bytes
            ));
        }
        if plain > RATIO_FLOOR_BYTES && plain > stored.saturating_mul(limits.max_compression_ratio)
        {
            return Err(format!(
                "row group {g} decompresses from {stored} to {plain} bytes, over import.max_compression_ratio ({})",
                limits.max_compression_ratio
            ));
        }
        total_plain = total_plain.saturating_add(plain);
        if total_plain > limits.max_decompressed_bytes {
            return Err(format!(
                "the file decompresses to over {total_plain} bytes, over import.max_decompressed_bytes ({})",
                limits.max_decompressed_bytes
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Decimal128Array, DictionaryArray, Float32Array, Float64Array, Int32Array,
        Int64Array, UInt64Array,
    };
    use arrow_schema::Field;

    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn good() -> Vec<(&'static str, DataType)> {
        vec![
            ("participantId", DataType::Utf8),
            ("matched_participant_id", DataType::Int64),
            ("Compatibility Score", DataType::Float32),
            ("rank", DataType::Int16),
            ("engine_version", DataType::Utf8),
        ]
    }

    #[test]
    fn finds_columns_by_normalised_name_and_ignores_others() {
        let s = MatchSchema::new(&schema(&good()), 100).unwrap();
        assert_eq!(s.roots(), vec![0, 1, 2, 3]);
        assert_eq!(s.names[SCORE], "Compatibility Score");
    }

    #[test]
    fn names_every_missing_column() {
        let err = MatchSchema::new(
            &schema(&[
                ("participant_id", DataType::Utf8),
                ("score", DataType::Float64),
            ]),
            100,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required columns: matched_participant_id, compatibility_score, rank \
             (the file has: participant_id, score)"
        );
    }

    #[test]
    fn refuses_types_that_cannot_be_coerced_losslessly() {
        let mut f = good();
        f[2].1 = DataType::Utf8;
        f[0].1 = DataType::Float64;
        let err = MatchSchema::new(&schema(&f), 100).unwrap_err().to_string();
        assert!(err.contains("`participantId` is Float64"), "{err}");
        assert!(err.contains("`Compatibility Score` is Utf8"), "{err}");
        f[0].1 = DataType::Utf8;
        f[2].1 = DataType::Decimal128(18, 4);
        let err = MatchSchema::new(&schema(&f), 100).unwrap_err().to_string();
        assert!(err.contains("Decimal128(18, 4)"), "{err}");
        f[2].1 = DataType::Decimal128(9, 4);
        assert!(MatchSchema::new(&schema(&f), 100).is_ok());
    }

    #[test]
    fn too_many_columns_fail_the_file() {
        assert_eq!(
            MatchSchema::new(&schema(&good()), 3).unwrap_err(),
            SchemaError::TooManyColumns(5, 3)
        );
    }

    #[test]
    fn scores_are_taken_only_when_exact() {
        assert_eq!(to_score(Value::Int(3), 0), Ok(3.0));
        assert_eq!(to_score(Value::Float(0.25), 0), Ok(0.25));
        assert_eq!(to_score(Value::Decimal(12345), 4), Ok(1.2345));
        assert!(to_score(Value::Int(i64::MAX), 0).is_err());
        assert!(to_score(Value::UInt((1 << 53) + 1), 0).is_err());
        assert!(to_score(Value::Float(f64::NAN), 0).is_err());
        assert!(to_score(Value::Float(f64::INFINITY), 0).is_err());
    }

    #[test]
    fn ranks_must_be_whole_and_in_range() {
        assert_eq!(to_rank(Value::Int(7), 0), Ok(7));
        assert_eq!(to_rank(Value::Float(3.0), 0), Ok(3));
        assert_eq!(to_rank(Value::Decimal(500), 2), Ok(5));
        assert_eq!(to_rank(Value::Decimal(5), -2), Ok(500));
        assert!(to_rank(Value::Float(2.5), 0).is_err());
        assert!(to_rank(Value::Decimal(501), 2).is_err());
        assert!(to_rank(Value::Int(1 << 40), 0).is_err());
        assert!(to_rank(Value::UInt(u64::MAX), 0).is_err());
    }

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(7, -2), "700");
    }

    #[test]
    fn rows_are_converted_or_rejected_with_a_reason() {
        let fields = good();
        let s = MatchSchema::new(&schema(&fields), 100).unwrap();
        let keys = Int32Array::from(vec![Some(0), Some(1), None, Some(0), Some(1)]);
        let names: ArrayRef = Arc::new(StringArray::from(vec!["ann", " bob "]));
        let participant: ArrayRef = Arc::new(DictionaryArray::new(keys, names));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("ann"),
                Some(" bob "),
                Some("cy"),
                Some(""),
                Some("x"),
            ])),
            Arc::new(Int64Array::from(vec![
                Some(42),
                Some(43),
                Some(44),
                Some(45),
                None,
            ])),
            Arc::new(Float32Array::from(vec![
                Some(0.5),
                None,
                Some(0.1),
                Some(0.2),
                Some(0.3),
            ])),
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(2),
                None,
                Some(3),
                Some(4),
            ])),
            participant,
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("participantId", DataType::Utf8, true),
                Field::new("matched_participant_id", DataType::Int64, true),
                Field::new("Compatibility Score", DataType::Float32, true),
                Field::new("rank", DataType::Int32, true),
                Field::new("engine_version", columns[4].data_type().clone(), true),
            ])),
            columns,
        )
        .unwrap();
        let cols = s.columns(&batch).unwrap();
        let mut out = MatchBatch::default();
        let mut bufs = [String::new(), String::new()];
        let results: Vec<_> = (0..cols.len())
            .map(|i| cols.push_row(i, i as u64 + 1, &mut bufs, None, &mut out))
            .collect();
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Ok(()));
        assert_eq!(results[2], Ok(()));
        assert_eq!(results[3], Err("participant_id is empty".into()));
        assert_eq!(results[4], Err("matched_participant_id is null".into()));
        let rows = out.rows();
        assert_eq!(
            (out.participant(&rows[1]), out.matched(&rows[1])),
            ("bob", "43")
        );
        assert_eq!((rows[0].score, rows[0].rank), (Some(0.5), Some(1)));
        assert_eq!((rows[1].score, rows[2].rank), (None, None));
        assert_eq!(
            cols.fields(4),
            [
                "x".to_string(),
                String::new(),
                "0.30000001192092896".into(),
                "4".into()
            ]
        );
    }

    #[test]
    fn uint_ids_and_float64_columns_read() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("participant_id", DataType::UInt64, true),
                Field::new("matched_participant_id", DataType::UInt64, true),
                Field::new("compatibility_score", DataType::Float64, true),
                Field::new("rank", DataType::Decimal128(5, 0), true),
            ])),
            vec![
                Arc::new(UInt64Array::from(vec![u64::MAX])),
                Arc::new(UInt64Array::from(vec![1])),
                Arc::new(Float64Array::from(vec![0.75])),
                Arc::new(
                    Decimal128Array::from(vec![9])
                        .with_precision_and_scale(5, 0)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let s = MatchSchema::new(&batch.schema(), 10).unwrap();
        let cols = s.columns(&batch).unwrap();
        let mut out = MatchBatch::default();
        cols.push_row(0, 1, &mut [String::new(), String::new()], None, &mut out)
            .unwrap();
        let r = &out.rows()[0];
        assert_eq!(out.participant(r), u64::MAX.to_string());
        assert_eq!((r.score, r.rank), (Some(0.75), Some(9)));
    }

    #[test]
    fn resume_finds_the_row_group_and_offset() {
        let groups = [100, 100, 50];
        assert_eq!(resume_at(&groups, 0), (0, 0));
        assert_eq!(resume_at(&groups, 99), (0, 99));
        assert_eq!(resume_at(&groups, 100), (1, 0));
        assert_eq!(resume_at(&groups, 230), (2, 30));
        assert_eq!(resume_at(&groups, 250), (3, 0));
    }
}
