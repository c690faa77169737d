//! An export's rows cut into ranges of its split column (the order column,
//! or the primary key's first), for several readers to read at once in one
//! snapshot. The ranges follow the export's order, so reading them one
//! after another gives the rows a single reader gives, in its order.
//!
//! The cut points are spread evenly between the column's least and
//! greatest value, which an index on the order key gives at once: times
//! and integers from an import's batches, and random or time-ordered
//! UUIDs, are spread about evenly, and a range that turns out bigger than
//! the others only makes the readers behind it wait, never a wrong row.
//! Types with no such spread (text, whose order is a collation's, and
//! `numeric`) are read by one reader.

use tokio_postgres::Client;

use super::object::ColType;
use super::plan::{Plan, Sql};
use super::value::{write_sql_text, Raw};
use super::Position;

/// Ranges one export is cut into, at most.
const MAX_RANGES: usize = 10_000;

/// How an export's rows are cut, and about how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    pub spans: Vec<Span>,
    /// The planner's estimate of the rows (0 when not asked).
    pub estimate: u64,
}

impl Survey {
    /// One range: every row.
    pub fn every_row() -> Self {
        Self {
            spans: vec![Span::All],
            estimate: 0,
        }
    }
}

/// The ranges of the rows still to go (after `after`): about `range_rows`
/// rows each as the planner estimates them, and at least `readers`. One
/// range (every row) when the order cannot be split, or when finding the
/// split column's bounds would cost a scan of its own (no index on it).
/// Run in the export's snapshot, so the ranges hold exactly its rows.
pub async fn survey(
    client: &Client,
    plan: &Plan,
    after: Option<&Position>,
    readers: usize,
    range_rows: u64,
) -> Result<Survey, tokio_postgres::Error> {
    let every_row = Survey::every_row();
    let (Some((column, desc)), Some((bounds, params))) = (plan.split_column(), plan.bounds(after))
    else {
        return Ok(every_row);
    };
    let (read, read_params) = plan.query(after);
    let (estimate, read_cost) = explain(client, &read, &read_params).await?;
    let (_, bounds_cost) = explain(client, &bounds, &params).await?;
    if bounds_cost > 1_000.0 && bounds_cost * 4.0 > read_cost {
        return Ok(every_row);
    }
    let row = client.query_one(&bounds, &params.refs()).await?;
    let (Some(Raw(least)), Some(Raw(greatest))) = (row.get(0), row.get(1)) else {
        return Ok(every_row); // no rows, or only NULLs
    };
    let n = ((estimate / range_rows.max(1) as f64).ceil() as usize).clamp(readers, MAX_RANGES);
    Ok(match spans(column.ty, least, greatest, n, desc) {
        Some(spans) => Survey {
            spans,
            estimate: estimate as u64,
        },
        None => every_row,
    })
}

/// The planner's rows and total cost for `sql`.
async fn explain(
    client: &Client,
    sql: &str,
    params: &Sql,
) -> Result<(f64, f64), tokio_postgres::Error> {
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &params.refs())
        .await?;
    let plan: serde_json::Value = row.get(0);
    let top = &plan[0]["Plan"];
    // Unread, the rows are none (one range per reader) and the cost is
    // too high (one reader).
    let rows = top["Plan Rows"].as_f64().unwrap_or(0.0);
    Ok((rows, top["Total Cost"].as_f64().unwrap_or(f64::MAX)))
}

/// A range of the split column, in the export's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// Every row.
    All,
    /// Values after `from` (not included) up to `to` (included), each as
    /// PostgreSQL reads the value back (for a descending order, below
    /// `from` down to `to`); an open end is open.
    Values {
        from: Option<String>,
        to: Option<String>,
    },
    /// The rows whose value is NULL: the order puts them last. A range of
    /// their own, so that every range is one scan of the column's index.
    Nulls,
}

/// Whether rows can be split on a column of type `ty`.
pub fn splits(ty: ColType) -> bool {
    // The types [`ordinal`] places on a line: any value of the right
    // length has a place.
    ordinal(ty, &[0; 16]).is_some()
}

/// `n` ranges (fewer where cut points meet) from the least value `least`
/// to the greatest `greatest` (PostgreSQL's binary values), in the
/// export's order (`desc`: greatest first). `None`: the type cannot be
/// split, or a value does not fit it.
pub fn spans(
    ty: ColType,
    least: &[u8],
    greatest: &[u8],
    n: usize,
    desc: bool,
) -> Option<Vec<Span>> {
    let (lo, hi) = (ordinal(ty, least)?, ordinal(ty, greatest)?);
    if hi < lo {
        return None;
    }
    let n = n.max(1) as u128;
    let (step, rest) = ((hi - lo) / n, (hi - lo) % n);
    let mut cuts: Vec<String> = Vec::new();
    for i in 1..n {
        let at = lo + step * i + rest * i / n;
        let text = text_of(ty, at)?;
        if cuts.last() != Some(&text) {
            cuts.push(text);
        }
    }
    if desc {
        // Greatest first: up to (down to) the greatest cut, and on.
        cuts.reverse();
    }
    Some(ranges(cuts))
}

/// Ranges between cut points: up to the first, …, after the last; then
/// the NULLs.
fn ranges(cuts: Vec<String>) -> Vec<Span> {
    let mut spans = Vec::with_capacity(cuts.len() + 2);
    let mut from = None;
    for cut in cuts {
        spans.push(Span::Values {
            from: from.take(),
            to: Some(cut.clone()),
        });
        from = Some(cut);
    }
    spans.push(Span::Values { from, to: None });
    spans.push(Span::Nulls);
    spans
}

/// A value as a point on a line that keeps its order: integers and times
/// moved up by 2⁶³, UUIDs as their 128 bits.
fn ordinal(ty: ColType, raw: &[u8]) -> Option<u128> {
    let signed = |v: i64| (v as i128 + (1i128 << 63)) as u128;
    Some(match ty {
        ColType::Int2 => signed(i16::from_be_bytes(raw.get(..2)?.try_into().ok()?) as i64),
        ColType::Int4 | ColType::Date => {
            signed(i32::from_be_bytes(raw.get(..4)?.try_into().ok()?) as i64)
        }
        ColType::Int8 | ColType::Timestamp | ColType::Timestamptz => {
            signed(i64::from_be_bytes(raw.get(..8)?.try_into().ok()?))
        }
        ColType::Uuid => u128::from_be_bytes(raw.get(..16)?.try_into().ok()?),
        _ => return None,
    })
}

/// The text PostgreSQL reads back as the value at `at`.
fn text_of(ty: ColType, at: u128) -> Option<String> {
    let signed = (at as i128 - (1i128 << 63)) as i64;
    let raw: Vec<u8> = match ty {
        ColType::Int2 => (i16::try_from(signed).ok()?).to_be_bytes().to_vec(),
        ColType::Int4 | ColType::Date => (i32::try_from(signed).ok()?).to_be_bytes().to_vec(),
        ColType::Int8 | ColType::Timestamp | ColType::Timestamptz => signed.to_be_bytes().to_vec(),
        ColType::Uuid => at.to_be_bytes().to_vec(),
        _ => return None,
    };
    let mut text = Vec::new();
    write_sql_text(ty, &raw, &mut text).ok()?;
    String::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8(v: i64) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    fn cut(s: &Span) -> (Option<&str>, Option<&str>) {
        match s {
            Span::Values { from, to } => (from.as_deref(), to.as_deref()),
            other => panic!("not a range of values: {other:?}"),
        }
    }

    /// The ranges of values, and that the NULLs come last.
    fn values(spans: Vec<Span>) -> Vec<Span> {
        let mut spans = spans;
        assert_eq!(spans.pop(), Some(Span::Nulls));
        spans
    }

    #[test]
    fn ranges_cover_the_values_evenly_in_the_exports_order() {
        let up = values(spans(ColType::Int8, &int8(0), &int8(100), 4, false).unwrap());
        let up: Vec<_> = up.iter().map(cut).collect();
        assert_eq!(
            up,
            [
                (None, Some("25")),
                (Some("25"), Some("50")),
                (Some("50"), Some("75")),
                (Some("75"), None)
            ]
        );
        let down = values(spans(ColType::Int8, &int8(0), &int8(100), 4, true).unwrap());
        let down: Vec<_> = down.iter().map(cut).collect();
        assert_eq!(down[0], (None, Some("75")));
        assert_eq!(down[3], (Some("25"), None));
    }

    #[test]
    fn few_values_make_fewer_ranges_and_one_value_one_cut() {
        let few = values(
            spans(
                ColType::Int4,
                &3i32.to_be_bytes(),
                &4i32.to_be_bytes(),
                8,
                false,
            )
            .unwrap(),
        );
        assert_eq!(few.len(), 2, "{few:?}");
        let one = values(spans(ColType::Int8, &int8(7), &int8(7), 8, false).unwrap());
        assert_eq!(
            one.iter().map(cut).collect::<Vec<_>>(),
            [(None, Some("7")), (Some("7"), None)]
        );
        assert!(spans(ColType::Int8, &int8(9), &int8(7), 2, false).is_none());
    }

    #[test]
    fn times_and_uuids_are_cut_as_postgresql_reads_them() {
        let day = 86_400_000_000i64;
        let t = spans(ColType::Timestamptz, &int8(0), &int8(2 * day), 2, false).unwrap();
        assert_eq!(cut(&t[0]).1, Some("2000-01-02T00:00:00Z"));
        let lo = [0u8; 16];
        let hi = [0xffu8; 16];
        let u = spans(ColType::Uuid, &lo, &hi, 2, false).unwrap();
        assert_eq!(cut(&u[0]).1, Some("7fffffff-ffff-ffff-ffff-ffffffffffff"));
        assert!(!splits(ColType::Text));
        assert!(!splits(ColType::Numeric(None)));
        assert!(splits(ColType::Date));
        assert!(
            spans(ColType::Int8, &[1, 2], &int8(3), 2, false).is_none(),
            "a short value"
        );
    }
}
