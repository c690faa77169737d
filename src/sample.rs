//! Deterministic sample files: users with a reference id and nine metadata
//! columns as gzip CSV, and match suggestions as Parquet (or CSV, for the
//! psql baseline). The demo, the tests and the benchmarks share them, so
//! every run sees the same bytes for the same arguments.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use flate2::write::GzEncoder;
use flate2::Compression;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression as ParquetCompression;
use parquet::file::properties::WriterProperties;

pub const USER_HEADER: &str =
    "user_id,First Name,Last Name,Email,City,Country,Age,Signup Date,Plan,Score";

/// The metadata keys `USER_HEADER` normalises to, in order (`user_id` is
/// the reference id).
pub const USER_METADATA_KEYS: [&str; 9] = [
    "first_name",
    "last_name",
    "email",
    "city",
    "country",
    "age",
    "signup_date",
    "plan",
    "score",
];

const FIRST: &[&str] = &[
    "Asha", "Ravi", "Meera", "John", "Li", "Sara", "Omar", "Ana", "Kenji", "Zoe",
];
const LAST: &[&str] = &[
    "Iyer", "Shah", "Smith", "Chen", "Garcia", "Khan", "Sato", "Okafor", "Novak",
];
const CITY: &[&str] = &[
    "Pune", "Mumbai", "Delhi", "Austin", "Berlin", "Lagos", "Osaka", "Lima", "Kochi",
];
const COUNTRY: &[&str] = &["IN", "US", "DE", "NG", "JP", "PE"];
const PLAN: &[&str] = &["free", "pro", "team", "enterprise"];

/// splitmix64: small, fast, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next_u64() % from.len() as u64) as usize]
    }
}

/// Writes one user row (no newline) for reference `u{n}`.
pub fn user_row(out: &mut impl Write, n: u64, rng: &mut Rng) -> io::Result<()> {
    let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
    write!(
        out,
        "u{n:08},{first},{last},{}.{}{n}@example.com,{},{},{},2024-{:02}-{:02},{},{}.{:02}",
        first.to_lowercase(),
        last.to_lowercase(),
        rng.pick(CITY),
        rng.pick(COUNTRY),
        18 + rng.next_u64() % 60,
        1 + rng.next_u64() % 12,
        1 + rng.next_u64() % 28,
        rng.pick(PLAN),
        rng.next_u64() % 100,
        rng.next_u64() % 100,
    )
}

/// `rows` users `u00000001`…, gzip-compressed, seeded by `seed`.
pub fn write_users_csv_gz(path: &Path, rows: u64, seed: u64) -> io::Result<()> {
    write_csv_gz(path, |out| {
        let mut rng = Rng::new(seed);
        for n in 1..=rows {
            user_row(out, n, &mut rng)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// The next day's file of [`write_users_csv_gz`]'s users (the same `rows`
/// and `seed`): every 100th user has left, the one after each of them has
/// changed, and `rows / 100` new users follow; the rest are the same.
pub fn write_users_next_day_csv_gz(path: &Path, rows: u64, seed: u64) -> io::Result<()> {
    write_csv_gz(path, |out| {
        let (mut rng, mut other) = (Rng::new(seed), Rng::new(seed ^ 0x5eed));
        // A row that left is drawn, to keep the others the same, and dropped.
        let mut dropped = Vec::new();
        for n in 1..=rows {
            match n % 100 {
                0 => user_row(&mut dropped, n, &mut rng)?,
                1 => {
                    user_row(&mut dropped, n, &mut rng)?;
                    user_row(out, n, &mut other)?;
                }
                _ => user_row(out, n, &mut rng)?,
            }
            dropped.clear();
            if n % 100 != 0 {
                out.write_all(b"\n")?;
            }
        }
        for n in rows + 1..=rows + rows / 100 {
            user_row(out, n, &mut other)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// A CSV.gz file of users: the header, then what `rows` writes.
fn write_csv_gz(
    path: &Path,
    rows: impl FnOnce(&mut BufWriter<GzEncoder<std::fs::File>>) -> io::Result<()>,
) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::fast()));
    writeln!(out, "{USER_HEADER}")?;
    rows(&mut out)?;
    out.into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .sync_all()
}

/// Suggestions per participant in a sample match file, ranked 1 to 10.
pub const MATCHES_PER_PARTICIPANT: u64 = 10;

/// The sample match file's columns, as a matching engine names them: the
/// import normalises them, and ignores `engineVersion`.
pub const MATCH_FILE_COLUMNS: [&str; 5] = [
    "participantId",
    "matchedParticipantId",
    "compatibilityScore",
    "rank",
    "engineVersion",
];

/// Suggestion `i` (0-based): participant `u{i / 10 + 1}`, a distinct other
/// user for each rank, and a score with four decimals.
pub struct MatchRow {
    pub participant: String,
    pub matched: String,
    pub score: f64,
    pub rank: i32,
}

pub fn match_row(i: u64, rng: &mut Rng) -> MatchRow {
    let p = i / MATCHES_PER_PARTICIPANT + 1;
    let k = i % MATCHES_PER_PARTICIPANT;
    MatchRow {
        participant: format!("u{p:08}"),
        matched: format!("u{:08}", p + 1 + k * 7919),
        score: (rng.next_u64() % 10_000) as f64 / 10_000.0,
        rank: k as i32 + 1,
    }
}

/// `rows` match suggestions as Parquet, snappy-compressed, in row groups
/// of `row_group_rows`.
pub fn write_matches_parquet(
    path: &Path,
    rows: u64,
    row_group_rows: usize,
    seed: u64,
) -> anyhow::Result<()> {
    write_matches_parquet_from(path, 0, rows, row_group_rows, seed)
}

/// Suggestions `first..first + rows`, as Parquet: their ids are those rows
/// of the one-file sequence (the shards of a set are consecutive runs of
/// it); their scores and ranks are drawn from `seed` afresh.
pub fn write_matches_parquet_from(
    path: &Path,
    first: u64,
    rows: u64,
    row_group_rows: usize,
    seed: u64,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(MATCH_FILE_COLUMNS[0], DataType::Utf8, false),
        Field::new(MATCH_FILE_COLUMNS[1], DataType::Utf8, false),
        Field::new(MATCH_FILE_COLUMNS[2], DataType::Float64, false),
        Field::new(MATCH_FILE_COLUMNS[3], DataType::Int32, false),
        Field::new(MATCH_FILE_COLUMNS[4], DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_compression(ParquetCompression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut rng = Rng::new(seed);
    let (mut i, end) = (first, first + rows);
    while i < end {
        let n = (end - i).min(8192);
        let batch: Vec<MatchRow> = (i..i + n).map(|i| match_row(i, &mut rng)).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                batch.iter().map(|r| &r.participant),
            )),
            Arc::new(StringArray::from_iter_values(
                batch.iter().map(|r| &r.matched),
            )),
            Arc::new(Float64Array::from_iter_values(
                batch.iter().map(|r| r.score),
            )),
            Arc::new(Int32Array::from_iter_values(batch.iter().map(|r| r.rank))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| "flairbit-3.2"),
            )),
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        i += n;
    }
    writer.close()?;
    Ok(())
}

/// The same suggestions as [`write_matches_parquet`] with the same seed,
/// as plain CSV with a header (the psql baseline's input).
pub fn write_matches_csv(path: &Path, rows: u64, seed: u64) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Rng::new(seed);
    writeln!(
        out,
        "participant_id,matched_participant_id,compatibility_score,rank"
    )?;
    for i in 0..rows {
        let r = match_row(i, &mut rng);
        writeln!(
            out,
            "{},{},{},{}",
            r.participant, r.matched, r.score, r.rank
        )?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_normalises_to_the_metadata_keys() {
        let raw: Vec<&str> = USER_HEADER.split(',').collect();
        let keys = ferry_actors::import::formats::csv::normalize_headers(&raw);
        assert_eq!(keys[0], "user_id");
        assert_eq!(keys[1..], USER_METADATA_KEYS);
    }

    #[test]
    fn rows_are_deterministic() {
        let row = |seed| {
            let mut v = Vec::new();
            user_row(&mut v, 7, &mut Rng::new(seed)).unwrap();
            String::from_utf8(v).unwrap()
        };
        assert_eq!(row(1), row(1));
        assert_ne!(row(1), row(2));
        assert!(row(1).starts_with("u00000007,"));
        assert_eq!(row(1).split(',').count(), USER_HEADER.split(',').count());
    }
}
