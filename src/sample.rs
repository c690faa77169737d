//! Deterministic sample files: users with a reference id and nine metadata
//! columns, as gzip CSV. The demo, the tests and the benchmarks share them,
//! so every run sees the same bytes for the same arguments.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::fast()));
    let mut rng = Rng::new(seed);
    writeln!(out, "{USER_HEADER}")?;
    for n in 1..=rows {
        user_row(&mut out, n, &mut rng)?;
        out.write_all(b"\n")?;
    }
    out.into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_normalises_to_the_metadata_keys() {
        let raw: Vec<&str> = USER_HEADER.split(',').collect();
        let keys = ferry_actors::formats::csv::normalize_headers(&raw);
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
