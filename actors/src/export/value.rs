//! PostgreSQL's binary values, written as text or JSON without a detour
//! through Rust types: an export reads rows in binary (cheaper for the
//! server than text) and writes each value straight into its output.
//!
//! Times are written in ISO 8601 / RFC 3339 (`2026-11-30T21:32:03.5Z`,
//! UTC), numbers as their shortest exact text, `numeric` digit for digit,
//! booleans as `true` / `false`. JSON has no NaN or infinities: those are
//! written as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.

use std::fmt;

use tokio_postgres::types::{FromSql, Type};

use super::object::ColType;
use crate::calendar::parse_date;

/// A value's bytes as PostgreSQL sent them, whatever its type.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A value whose bytes do not fit its type: a broken invariant (ferry
/// asked for the type), reported with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {ty:?} value of {len} bytes cannot be read")]
pub struct DecodeError {
    pub ty: ColType,
    pub len: usize,
}

fn fixed<const N: usize>(ty: ColType, raw: &[u8]) -> Result<[u8; N], DecodeError> {
    raw.try_into()
        .map_err(|_| DecodeError { ty, len: raw.len() })
}

/// Microseconds and days are counted from 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Appends the value's text form.
pub fn write_text(ty: ColType, raw: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    write_text_with(ty, raw, Years::Iso, out)
}

/// Appends the value's text as PostgreSQL reads it back, to the same value
/// (a row's position, bound again to read on after it): the text form,
/// but a year before 1 is written the way PostgreSQL writes it, `0045-03-15
/// BC`, not as ISO 8601's `-0044-03-15`, which PostgreSQL cannot read.
pub fn write_sql_text(ty: ColType, raw: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    write_text_with(ty, raw, Years::Era, out)
}

/// How a year before 1 is written.
#[derive(Clone, Copy)]
enum Years {
    /// ISO 8601's astronomical years: 1 BC is `0000`, 45 BC `-0044`.
    Iso,
    /// PostgreSQL's: `0045-03-15 BC`.
    Era,
}

fn write_text_with(
    ty: ColType,
    raw: &[u8],
    years: Years,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    match ty {
        ColType::Int2 => out.extend_from_slice(
            itoa::Buffer::new()
                .format(i16::from_be_bytes(fixed(ty, raw)?))
                .as_bytes(),
        ),
        ColType::Int4 => out.extend_from_slice(
            itoa::Buffer::new()
                .format(i32::from_be_bytes(fixed(ty, raw)?))
                .as_bytes(),
        ),
        ColType::Int8 => out.extend_from_slice(
            itoa::Buffer::new()
                .format(i64::from_be_bytes(fixed(ty, raw)?))
                .as_bytes(),
        ),
        ColType::Float4 => float(f32::from_be_bytes(fixed(ty, raw)?) as f64, true, out),
        ColType::Float8 => float(f64::from_be_bytes(fixed(ty, raw)?), false, out),
        ColType::Numeric(_) => {
            numeric(raw, out).map_err(|()| DecodeError { ty, len: raw.len() })?
        }
        ColType::Bool => out.extend_from_slice(if fixed::<1>(ty, raw)?[0] != 0 {
            b"true"
        } else {
            b"false"
        }),
        ColType::Uuid => {
            let u = uuid::Uuid::from_bytes(fixed(ty, raw)?);
            out.extend_from_slice(
                u.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .as_bytes(),
            );
        }
        ColType::Timestamptz => timestamp(i64::from_be_bytes(fixed(ty, raw)?), true, years, out),
        ColType::Timestamp => timestamp(i64::from_be_bytes(fixed(ty, raw)?), false, years, out),
        ColType::Date => date(i32::from_be_bytes(fixed(ty, raw)?), years, out),
        // jsonb: a version byte, then the document's text.
        ColType::Jsonb => match raw.split_first() {
            Some((1, text)) => out.extend_from_slice(text),
            _ => return Err(DecodeError { ty, len: raw.len() }),
        },
        ColType::Json | ColType::Text | ColType::Other => out.extend_from_slice(raw),
    }
    Ok(())
}

/// Appends the value as JSON.
pub fn write_json(ty: ColType, raw: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match ty {
        ColType::Int2 | ColType::Int4 | ColType::Int8 | ColType::Bool | ColType::Json => {
            write_text(ty, raw, out)
        }
        ColType::Jsonb => write_text(ty, raw, out),
        ColType::Float4 | ColType::Float8 | ColType::Numeric(_) => {
            let start = out.len();
            write_text(ty, raw, out)?;
            // NaN and the infinities are no JSON numbers: quote them.
            if matches!(&out[start..], b"NaN" | b"Infinity" | b"-Infinity") {
                out.insert(start, b'"');
                out.push(b'"');
            }
            Ok(())
        }
        ColType::Text | ColType::Other => {
            json_string(raw, out);
            Ok(())
        }
        ColType::Uuid | ColType::Timestamptz | ColType::Timestamp | ColType::Date => {
            out.push(b'"');
            write_text(ty, raw, out)?;
            out.push(b'"');
            Ok(())
        }
    }
}

/// Appends `s` as a JSON string.
pub fn json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

fn float(v: f64, single: bool, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else if single {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v as f32).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// `numeric` in binary: digit count, weight (of the first base-10000 digit),
/// sign, display scale, then the base-10000 digits.
fn numeric(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let word = |i: usize| -> Result<u16, ()> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    if raw.len() != 8 + 2 * ndigits {
        return Err(());
    }
    let digit = |i: i64| -> u16 {
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            word(4 + i as usize).unwrap_or(0)
        }
    };
    let special: &[u8] = match sign {
        0xC000 => b"NaN",
        0xD000 => b"Infinity",
        0xF000 => b"-Infinity",
        0x4000 => b"-",
        _ => b"",
    };
    out.extend_from_slice(special);
    if sign >= 0xC000 {
        return Ok(());
    }
    if weight < 0 {
        out.push(b'0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 {
                out.extend_from_slice(itoa::Buffer::new().format(d).as_bytes());
            } else {
                out.extend_from_slice(format!("{d:04}").as_bytes());
            }
        }
    }
    if dscale > 0 {
        out.push(b'.');
        let mut written = 0;
        let mut j = 1;
        while written < dscale {
            let group = format!("{:04}", digit(weight + j));
            let take = (dscale - written).min(4);
            out.extend_from_slice(&group.as_bytes()[..take]);
            written += take;
            j += 1;
        }
    }
    Ok(())
}

/// The date `days` after 1970-01-01: year, month, day.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    civil(days)
}

/// A date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Ymd(i64, u32, u32, Years);

impl Ymd {
    /// A year before 1 in PostgreSQL's words: ` BC` after the value.
    fn bc(&self) -> bool {
        matches!(self.3, Years::Era) && self.0 < 1
    }
}

impl fmt::Display for Ymd {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let Self(year, m, d, _) = *self;
        if self.bc() {
            write!(f, "{:04}-{m:02}-{d:02}", 1 - year)
        } else if year < 0 {
            write!(f, "-{:04}-{m:02}-{d:02}", -year)
        } else {
            write!(f, "{year:04}-{m:02}-{d:02}")
        }
    }
}

fn date(days: i32, years: Years, out: &mut Vec<u8>) {
    use std::io::Write;
    match days {
        i32::MAX => out.extend_from_slice(b"infinity"),
        i32::MIN => out.extend_from_slice(b"-infinity"),
        d => {
            let (y, m, d) = civil(i64::from(d) + PG_EPOCH_DAYS);
            let ymd = Ymd(y, m, d, years);
            let _ = write!(out, "{ymd}");
            if ymd.bc() {
                out.extend_from_slice(b" BC");
            }
        }
    }
}

fn timestamp(micros: i64, utc: bool, years: Years, out: &mut Vec<u8>) {
    use std::io::Write;
    match micros {
        i64::MAX => return out.extend_from_slice(b"infinity"),
        i64::MIN => return out.extend_from_slice(b"-infinity"),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil(days + PG_EPOCH_DAYS);
    let ymd = Ymd(y, m, d, years);
    let secs = in_day / 1_000_000;
    let frac = in_day % 1_000_000;
    let _ = write!(
        out,
        "{ymd}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac > 0 {
        let digits = format!("{frac:06}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    if utc {
        out.push(b'Z');
    }
    if ymd.bc() {
        out.extend_from_slice(b" BC");
    }
}

/// A date, or a date and time in ISO 8601: `YYYY-MM-DD[(T| )HH:MM[:SS[.f]]]
/// [Z|±HH[:MM]]`, every part in range.
pub fn parse_timestamp(s: &str) -> Option<()> {
    let date = s.get(..10)?;
    parse_date(date)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(());
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut parts = time.splitn(3, ':');
    let field = |p: Option<&str>, max: u32| -> Option<()> {
        let p = p?;
        (p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u32>().ok()? <= max)
            .then_some(())
    };
    field(parts.next(), 23)?;
    field(parts.next(), 59)?;
    if let Some(sec) = parts.next() {
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, "0"));
        field(Some(whole), 59)?;
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    match zone {
        "" | "Z" | "z" => Some(()),
        z => {
            let z = &z[1..];
            let (h, m) = z.split_once(':').unwrap_or((z, "00"));
            field(Some(h), 15)?;
            field(Some(m), 59)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ty: ColType, raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_text(ty, raw, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(ty: ColType, raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_json(ty, raw, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// `numeric` as PostgreSQL sends it.
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
    fn numerics_digit_for_digit() {
        let n = ColType::Numeric(None);
        assert_eq!(text(n, &numeric(&[1234, 5678], 1, 0, 0)), "12345678");
        assert_eq!(text(n, &numeric(&[12, 3400], 0, 0x4000, 2)), "-12.34");
        assert_eq!(text(n, &numeric(&[5], -1, 0, 4)), "0.0005");
        assert_eq!(text(n, &numeric(&[], 0, 0, 3)), "0.000");
        assert_eq!(text(n, &numeric(&[1], 2, 0, 0)), "100000000");
        assert_eq!(text(n, &numeric(&[], 0, 0xC000, 0)), "NaN");
        assert_eq!(json(n, &numeric(&[], 0, 0xC000, 0)), "\"NaN\"");
        assert_eq!(json(n, &numeric(&[], 0, 0xF000, 0)), "\"-Infinity\"");
        assert_eq!(json(n, &numeric(&[12, 3400], 0, 0x4000, 2)), "-12.34");
    }

    #[test]
    fn times_in_rfc3339() {
        let ts = ColType::Timestamptz;
        assert_eq!(text(ts, &0i64.to_be_bytes()), "2000-01-01T00:00:00Z");
        let t = ((9_101i64 * 86_400) + 3_723) * 1_000_000 + 500_000;
        assert_eq!(text(ts, &t.to_be_bytes()), "2024-12-01T01:02:03.5Z");
        assert_eq!(
            text(ColType::Timestamp, &(-1i64).to_be_bytes()),
            "1999-12-31T23:59:59.999999"
        );
        assert_eq!(text(ts, &i64::MAX.to_be_bytes()), "infinity");
        assert_eq!(text(ColType::Date, &60i32.to_be_bytes()), "2000-03-01");
        assert_eq!(
            text(ColType::Date, &(-730_485i32).to_be_bytes()),
            "0000-01-01"
        );
        assert_eq!(json(ColType::Date, &0i32.to_be_bytes()), "\"2000-01-01\"");
    }

    #[test]
    fn years_before_1_are_written_for_postgresql_to_read_back() {
        let sql_text = |ty, raw: &[u8]| {
            let mut out = Vec::new();
            write_sql_text(ty, raw, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        // 0000-01-01 is 1 BC; -0044-03-15 is 45 BC.
        let one_bc = -730_485i32;
        assert_eq!(
            sql_text(ColType::Date, &one_bc.to_be_bytes()),
            "0001-01-01 BC"
        );
        let days_45_bc = -746_482i64;
        assert_eq!(
            text(ColType::Date, &(days_45_bc as i32).to_be_bytes()),
            "-0044-03-15"
        );
        let micros = (days_45_bc * 86_400 + 36_000) * 1_000_000 + 500_000;
        assert_eq!(
            sql_text(ColType::Timestamptz, &micros.to_be_bytes()),
            "0045-03-15T10:00:00.5Z BC"
        );
        assert_eq!(
            sql_text(ColType::Timestamptz, &0i64.to_be_bytes()),
            "2000-01-01T00:00:00Z"
        );
        assert_eq!(sql_text(ColType::Int4, &7i32.to_be_bytes()), "7");
    }

    #[test]
    fn scalars_and_strings() {
        assert_eq!(text(ColType::Int8, &(-42i64).to_be_bytes()), "-42");
        assert_eq!(text(ColType::Float8, &0.1f64.to_be_bytes()), "0.1");
        assert_eq!(text(ColType::Float4, &1.1f32.to_be_bytes()), "1.1");
        assert_eq!(
            json(ColType::Float8, &f64::INFINITY.to_be_bytes()),
            "\"Infinity\""
        );
        assert_eq!(text(ColType::Bool, &[1]), "true");
        assert_eq!(text(ColType::Jsonb, b"\x01{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(
            json(ColType::Text, "a\"b\\c\n\u{1}é".as_bytes()),
            r#""a\"b\\c\n\u0001é""#
        );
        let mut out = Vec::new();
        assert!(write_text(ColType::Int4, &[1, 2], &mut out).is_err());
    }

    #[test]
    fn dates_and_timestamps_are_checked() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2024-13-01").is_none());
        for ok in [
            "2026-01-01",
            "2026-01-01T10:00",
            "2026-01-01 10:00:59.123Z",
            "2026-01-01T10:00:00+05:30",
        ] {
            assert!(parse_timestamp(ok).is_some(), "{ok}");
        }
        for bad in [
            "yesterday",
            "2026-01-01T25:00",
            "2026-01-01T10",
            "2026-01-01T10:00:00+99:00",
            "2026-1-1",
        ] {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
    }
}
