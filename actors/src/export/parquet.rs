//! Rows into Parquet, typed from PostgreSQL's types: integers and floats
//! as such, `numeric(p,s)` as decimal (an unconstrained `numeric` as text:
//! no decimal type holds every value of it), `boolean`, `timestamptz` as a
//! UTC timestamp in microseconds (`timestamp` without a zone), `date`,
//! `uuid` as 16 bytes with the UUID logical type, text, and `jsonb` as a
//! string with the JSON logical type. Row groups are bounded in rows and in
//! bytes; the file is compressed inside (zstd by default).
//!
//! A value Parquet cannot hold (an infinite timestamp, a NaN decimal) fails
//! the export, naming the field: nothing is silently dropped.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio_postgres::Row;

use super::encode::{EncodeError, FileEncoder};
use super::object::ColType;
use super::plan::OutField;
use super::value::{write_text, Raw};
use super::Compression;
use crate::settings::ExportSettings;

/// Microseconds and days from 2000-01-01 (PostgreSQL) to 1970-01-01 (Arrow).
const EPOCH_MICROS: i64 = 946_684_800_000_000;
const EPOCH_DAYS: i32 = 10_957;
/// Rows per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 8192;

enum Col {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Bool(BooleanBuilder),
    Text(StringBuilder, ColType),
    Uuid(FixedSizeBinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

/// The Arrow field and builder for an output field.
fn column(f: &OutField) -> (Field, Col) {
    let field = |ty| Field::new(&f.name, ty, true);
    match f.ty {
        ColType::Int2 => (field(DataType::Int16), Col::I16(Int16Builder::new())),
        ColType::Int4 => (field(DataType::Int32), Col::I32(Int32Builder::new())),
        ColType::Int8 => (field(DataType::Int64), Col::I64(Int64Builder::new())),
        ColType::Float4 => (field(DataType::Float32), Col::F32(Float32Builder::new())),
        ColType::Float8 => (field(DataType::Float64), Col::F64(Float64Builder::new())),
        ColType::Numeric(Some((p, s))) => (
            field(DataType::Decimal128(p, s)),
            Col::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(p, s)
                    .expect("the catalog checked precision and scale"),
                s,
            ),
        ),
        ColType::Bool => (field(DataType::Boolean), Col::Bool(BooleanBuilder::new())),
        ColType::Uuid => (
            field(DataType::FixedSizeBinary(16)).with_extension_type(arrow_schema::extension::Uuid),
            Col::Uuid(FixedSizeBinaryBuilder::new(16)),
        ),
        ColType::Timestamptz => (
            field(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            )),
            Col::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        ),
        ColType::Timestamp => (
            field(DataType::Timestamp(TimeUnit::Microsecond, None)),
            Col::Timestamp(TimestampMicrosecondBuilder::new()),
        ),
        ColType::Date => (field(DataType::Date32), Col::Date(Date32Builder::new())),
        ColType::Jsonb | ColType::Json => (
            field(DataType::Utf8).with_extension_type(arrow_schema::extension::Json::default()),
            Col::Text(StringBuilder::new(), f.ty),
        ),
        ty => (field(DataType::Utf8), Col::Text(StringBuilder::new(), ty)),
    }
}

impl Col {
    fn append(&mut self, raw: Option<&[u8]>, text: &mut Vec<u8>) -> Result<(), String> {
        let Some(raw) = raw else {
            self.null();
            return Ok(());
        };
        let bad = || format!("a value of {} bytes", raw.len());
        match self {
            Col::I16(b) => b.append_value(i16::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
            Col::I32(b) => b.append_value(i32::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
            Col::I64(b) => b.append_value(i64::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
            Col::F32(b) => b.append_value(f32::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
            Col::F64(b) => b.append_value(f64::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
            Col::Decimal(b, scale) => b.append_value(decimal(raw, *scale)?),
            Col::Bool(b) => b.append_value(raw.first().ok_or_else(bad)? != &0),
            Col::Uuid(b) => b.append_value(raw).map_err(|e| e.to_string())?,
            Col::Timestamp(b) => {
                let micros = i64::from_be_bytes(raw.try_into().map_err(|_| bad())?);
                if micros == i64::MAX || micros == i64::MIN {
                    return Err("an infinite timestamp, which Parquet cannot hold".into());
                }
                b.append_value(micros + EPOCH_MICROS)
            }
            Col::Date(b) => {
                let days = i32::from_be_bytes(raw.try_into().map_err(|_| bad())?);
                if days == i32::MAX || days == i32::MIN {
                    return Err("an infinite date, which Parquet cannot hold".into());
                }
                b.append_value(days + EPOCH_DAYS)
            }
            Col::Text(b, ty) => {
                text.clear();
                write_text(*ty, raw, text).map_err(|e| e.to_string())?;
                b.append_value(std::str::from_utf8(text).map_err(|e| e.to_string())?)
            }
        }
        Ok(())
    }

    fn null(&mut self) {
        match self {
            Col::I16(b) => b.append_null(),
            Col::I32(b) => b.append_null(),
            Col::I64(b) => b.append_null(),
            Col::F32(b) => b.append_null(),
            Col::F64(b) => b.append_null(),
            Col::Decimal(b, _) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Uuid(b) => b.append_null(),
            Col::Timestamp(b) => b.append_null(),
            Col::Date(b) => b.append_null(),
            Col::Text(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::I16(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F32(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Decimal(b, _) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Uuid(b) => Arc::new(b.finish()),
            Col::Timestamp(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Text(b, _) => Arc::new(b.finish()),
        }
    }
}

/// A binary `numeric` as a decimal of `scale` digits after the point.
fn decimal(raw: &[u8], scale: i8) -> Result<i128, String> {
    let word = |i: usize| -> Option<u16> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(ndigits), Some(weight), Some(sign)) = (word(0), word(1), word(2)) else {
        return Err("a truncated numeric".into());
    };
    if sign >= 0xC000 {
        return Err("NaN or an infinity, which a decimal cannot hold".into());
    }
    let overflow = || "a numeric too large for its decimal".to_string();
    let mut n: i128 = 0;
    for i in 0..ndigits as usize {
        let d = word(4 + i).ok_or("a truncated numeric")?;
        n = n
            .checked_mul(10_000)
            .and_then(|n| n.checked_add(d.into()))
            .ok_or_else(overflow)?;
    }
    // n × 10000^(weight − ndigits + 1), times 10^scale.
    let exp = 4 * (i32::from(weight as i16) - i32::from(ndigits) + 1) + i32::from(scale);
    let pow = |e: i32| 10i128.checked_pow(e.unsigned_abs()).ok_or_else(overflow);
    let n = if exp >= 0 {
        n.checked_mul(pow(exp)?).ok_or_else(overflow)?
    } else {
        n / pow(exp)?
    };
    Ok(if sign == 0x4000 { -n } else { n })
}

/// A Parquet file, written as rows come; its bytes are taken out as they
/// are written, a part at a time.
pub struct ParquetEncoder {
    fields: Vec<OutField>,
    schema: SchemaRef,
    properties: WriterProperties,
    columns: Vec<Col>,
    pending: usize,
    writer: Option<ArrowWriter<Vec<u8>>>,
    text: Vec<u8>,
}

impl ParquetEncoder {
    pub fn new(fields: &[OutField], compression: Compression, settings: &ExportSettings) -> Self {
        let (arrow_fields, columns): (Vec<Field>, Vec<Col>) = fields.iter().map(column).unzip();
        let codec = match compression {
            Compression::Zstd => parquet::basic::Compression::ZSTD(
                ZstdLevel::try_new(settings.zstd_level.clamp(1, 19)).expect("a level in range"),
            ),
            Compression::Gzip => parquet::basic::Compression::GZIP(
                GzipLevel::try_new(settings.gzip_level.clamp(1, 9)).expect("a level in range"),
            ),
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
        };
        let properties = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(settings.row_group_rows.max(1)))
            .set_max_row_group_bytes(Some(settings.row_group_bytes.max(1 << 20)))
            .build();
        Self {
            fields: fields.to_vec(),
            schema: Arc::new(Schema::new(arrow_fields)),
            properties,
            columns,
            pending: 0,
            writer: None,
            text: Vec::new(),
        }
    }

    fn writer(&mut self) -> Result<&mut ArrowWriter<Vec<u8>>, EncodeError> {
        self.writer
            .as_mut()
            .ok_or_else(|| EncodeError::Parquet("rows before the file began".into()))
    }

    /// Hands the rows gathered so far to the writer, as one batch.
    fn write_batch(&mut self) -> Result<(), EncodeError> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Col::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| EncodeError::Parquet(e.to_string()))?;
        self.pending = 0;
        self.writer()?
            .write(&batch)
            .map_err(|e| EncodeError::Parquet(e.to_string()))
    }
}

impl FileEncoder for ParquetEncoder {
    fn begin(&mut self, rows_before: u64) -> Result<(), EncodeError> {
        if rows_before > 0 {
            return Err(EncodeError::Parquet(
                "a Parquet file cannot be continued; it is written again".into(),
            ));
        }
        let writer = ArrowWriter::try_new(
            Vec::new(),
            self.schema.clone(),
            Some(self.properties.clone()),
        )
        .map_err(|e| EncodeError::Parquet(e.to_string()))?;
        self.writer = Some(writer);
        Ok(())
    }

    fn rows(&mut self, rows: &[Row]) -> Result<(), EncodeError> {
        for row in rows {
            for (i, col) in self.columns.iter_mut().enumerate() {
                let raw = row
                    .try_get::<_, Option<Raw>>(i)
                    .map_err(|e| EncodeError::Value(e.to_string()))?;
                col.append(raw.map(|r| r.0), &mut self.text).map_err(|e| {
                    EncodeError::Value(format!("field `{}`: {e}", self.fields[i].name))
                })?;
            }
            self.pending += 1;
            if self.pending == BATCH_ROWS {
                self.write_batch()?;
            }
        }
        Ok(())
    }

    fn ready(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.inner().len())
    }

    fn cut(&mut self) -> Result<Vec<u8>, EncodeError> {
        // Bytes the writer has counted and passed on: taking them out of the
        // buffer changes no offset the footer will record.
        Ok(std::mem::take(self.writer()?.inner_mut()))
    }

    fn finish(&mut self) -> Result<Vec<u8>, EncodeError> {
        self.write_batch()?;
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| EncodeError::Parquet("no file was begun".into()))?;
        writer
            .finish()
            .map_err(|e| EncodeError::Parquet(e.to_string()))?;
        Ok(std::mem::take(writer.inner_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_become_scaled_decimals() {
        // 12.34 at scale 2 → 1234; at scale 4 → 123400.
        let n = numeric(&[12, 3400], 0, 0, 2);
        assert_eq!(decimal(&n, 2), Ok(1234));
        assert_eq!(decimal(&n, 4), Ok(123_400));
        assert_eq!(decimal(&numeric(&[12, 3400], 0, 0x4000, 2), 2), Ok(-1234));
        assert_eq!(decimal(&numeric(&[1], 2, 0, 0), 0), Ok(100_000_000));
        assert_eq!(decimal(&numeric(&[5], -1, 0, 4), 4), Ok(5));
        assert_eq!(decimal(&numeric(&[], 0, 0, 0), 3), Ok(0));
        assert!(decimal(&numeric(&[], 0, 0xC000, 0), 2).is_err());
    }
}
