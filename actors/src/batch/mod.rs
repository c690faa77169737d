//! Batches: rows on their way to PostgreSQL, one type per target table.
//!
//! The accumulator and the writers handle any [`Batch`]: they only need to
//! append pieces, measure a batch, and split it between writers by key.

mod matches;
mod nodes;

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};

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
