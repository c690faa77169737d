//! Batches: rows on their way to PostgreSQL, one type per target table.
//!
//! The accumulator and the writers handle any [`Batch`]: they only need to
//! append pieces, measure a batch, and split it between writers by key.
//!
//! Both kinds are [`Packed`]: all the text of a batch lives in one `String`
//! arena, and a row holds ranges into it. Reading a file of millions of
//! rows therefore allocates per batch, not per row, and a batch can be split
//! between writers by index without copying any text.

mod matches;
mod nodes;

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::ops::Range;

pub use matches::{MatchBatch, MatchRow};
pub use nodes::{NodeBatch, NodeRow};

pub trait Batch: Send + Sync + 'static {
    fn with_capacity(rows: usize) -> Self;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of variable-length data held; a batch is sealed on this too.
    fn bytes(&self) -> usize;

    /// Moves `other`'s rows to the end of this batch.
    fn append(&mut self, other: &Self);

    /// Splits the batch into `shards` lists of row indexes by key hash,
    /// keeping only the last row of each key (PostgreSQL refuses to touch a
    /// row twice in one statement). Returns the shards, each in file order,
    /// and how many duplicate rows were dropped.
    fn dedup_and_route(&self, shards: usize) -> (Vec<Vec<u32>>, u64);
}

/// A row of a [`Packed`] batch.
pub trait PackedRow: Clone + Send + Sync + 'static {
    /// What deduplication and routing go by.
    type Key<'a>: Hash + Eq;

    /// The same row with its text ranges moved `by` bytes on.
    fn shifted(&self, by: usize) -> Self;

    /// The row's key, read from its batch's `text`.
    fn key<'a>(&self, text: &'a str) -> Self::Key<'a>;
}

/// Rows whose text is packed in one arena.
#[derive(Debug)]
pub struct Packed<R> {
    text: String,
    rows: Vec<R>,
}

impl<R> Default for Packed<R> {
    fn default() -> Self {
        Self {
            text: String::new(),
            rows: Vec::new(),
        }
    }
}

impl<R> Packed<R> {
    pub fn rows(&self) -> &[R] {
        &self.rows
    }

    fn text(&self, range: &Range<usize>) -> &str {
        &self.text[range.clone()]
    }
}

/// `range` moved `by` bytes on.
fn shift(range: &Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

impl<R: PackedRow> Batch for Packed<R> {
    fn with_capacity(rows: usize) -> Self {
        Self {
            text: String::new(),
            rows: Vec::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn bytes(&self) -> usize {
        self.text.len()
    }

    fn append(&mut self, other: &Self) {
        let by = self.text.len();
        self.text.push_str(&other.text);
        self.rows.extend(other.rows.iter().map(|r| r.shifted(by)));
    }

    fn dedup_and_route(&self, shards: usize) -> (Vec<Vec<u32>>, u64) {
        route_last_wins(self.rows.iter().map(|r| r.key(&self.text)), shards)
    }
}

/// A deterministic hasher: routing must not depend on the process, so the
/// same key goes to the same writer after a restart too.
type StableHasher = BuildHasherDefault<DefaultHasher>;

/// [`Batch::dedup_and_route`] over the rows' keys, in row order.
pub fn route_last_wins<K: Hash + Eq>(
    keys: impl DoubleEndedIterator<Item = K> + ExactSizeIterator,
    shards: usize,
) -> (Vec<Vec<u32>>, u64) {
    let shards = shards.max(1);
    let len = keys.len();
    let hasher = StableHasher::default();
    let mut seen: HashSet<K, StableHasher> =
        HashSet::with_capacity_and_hasher(len, StableHasher::default());
    let mut routed: Vec<Vec<u32>> = (0..shards)
        .map(|_| Vec::with_capacity(len / shards + 1))
        .collect();
    let mut duplicates = 0;
    for (i, key) in keys.enumerate().rev() {
        let shard = (hasher.hash_one(&key) % shards as u64) as usize;
        if !seen.insert(key) {
            duplicates += 1;
            continue;
        }
        routed[shard].push(i as u32);
    }
    for shard in &mut routed {
        shard.reverse();
    }
    (routed, duplicates)
}
