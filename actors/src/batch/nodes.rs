//! `NodeBatch`: node rows on their way to PostgreSQL, packed for speed.
//!
//! Every reference id and metadata JSON document of a batch lives in one
//! `String` arena; a row is a pair of ranges into it. Reading a file of
//! millions of rows therefore allocates per batch, not per row, and a batch
//! can be split between writers by index without copying any text.

use std::ops::Range;

use super::{route_last_wins, Batch};

/// One row: its position in the source (1-based data row number, the
/// checkpoint unit) and where its text is in the arena.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub row_no: u64,
    reference: Range<usize>,
    metadata: Range<usize>,
}

#[derive(Debug, Default)]
pub struct NodeBatch {
    text: String,
    rows: Vec<NodeRow>,
}

impl NodeBatch {
    pub fn rows(&self) -> &[NodeRow] {
        &self.rows
    }

    pub fn reference(&self, row: &NodeRow) -> &str {
        &self.text[row.reference.clone()]
    }

    pub fn metadata(&self, row: &NodeRow) -> &str {
        &self.text[row.metadata.clone()]
    }

    /// Adds a row. `write_metadata` appends the row's metadata JSON to the
    /// arena; on `Err` the row is rolled back and the error returned.
    pub fn push_with<E>(
        &mut self,
        row_no: u64,
        reference: &str,
        write_metadata: impl FnOnce(&mut String) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.text.len();
        self.text.push_str(reference);
        let meta_start = self.text.len();
        if let Err(e) = write_metadata(&mut self.text) {
            self.text.truncate(start);
            return Err(e);
        }
        self.rows.push(NodeRow {
            row_no,
            reference: start..meta_start,
            metadata: meta_start..self.text.len(),
        });
        Ok(())
    }
}

impl Batch for NodeBatch {
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

    fn append(&mut self, other: &NodeBatch) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.rows.extend(other.rows.iter().map(|r| NodeRow {
            row_no: r.row_no,
            reference: r.reference.start + shift..r.reference.end + shift,
            metadata: r.metadata.start + shift..r.metadata.end + shift,
        }));
    }

    fn dedup_and_route(&self, shards: usize) -> (Vec<Vec<u32>>, u64) {
        route_last_wins(self.rows.iter().map(|r| self.reference(r)), shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(keys: &[&str]) -> NodeBatch {
        let mut b = NodeBatch::default();
        for (i, k) in keys.iter().enumerate() {
            b.push_with::<()>(i as u64 + 1, k, |t| {
                t.push_str(&format!("{{\"n\":{i}}}"));
                Ok(())
            })
            .unwrap();
        }
        b
    }

    #[test]
    fn last_row_of_a_key_wins() {
        let b = batch(&["a", "b", "a", "c", "a"]);
        let (shards, dups) = b.dedup_and_route(1);
        assert_eq!(dups, 2);
        let kept: Vec<_> = shards[0]
            .iter()
            .map(|&i| {
                let r = &b.rows()[i as usize];
                (b.reference(r).to_string(), r.row_no)
            })
            .collect();
        assert_eq!(
            kept,
            vec![("b".into(), 2), ("c".into(), 4), ("a".into(), 5)]
        );
    }

    #[test]
    fn a_key_always_goes_to_the_same_shard() {
        let b = batch(&["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"]);
        let (first, _) = b.dedup_and_route(3);
        let (second, _) = b.dedup_and_route(3);
        assert_eq!(first, second);
        assert_eq!(first.iter().map(Vec::len).sum::<usize>(), 8);
    }

    #[test]
    fn failed_metadata_rolls_the_row_back() {
        let mut b = batch(&["a"]);
        let before = b.bytes();
        let r = b.push_with(2, "bad", |t| {
            t.push_str("{partial");
            Err("nope")
        });
        assert_eq!(r, Err("nope"));
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), before);
    }

    #[test]
    fn append_shifts_ranges() {
        let mut a = batch(&["x"]);
        let b = batch(&["y", "z"]);
        a.append(&b);
        let refs: Vec<_> = a.rows().iter().map(|r| a.reference(r)).collect();
        assert_eq!(refs, ["x", "y", "z"]);
        assert_eq!(a.metadata(&a.rows()[2]), "{\"n\":1}");
    }
}
