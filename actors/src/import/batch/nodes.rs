//! `NodeBatch`: node rows, each a reference id and a metadata JSON
//! document in the batch's arena.

use std::ops::Range;

use super::{shift, Packed, PackedRow};

/// One row: its position in the source (1-based data row number, the
/// checkpoint unit) and where its text is in the arena.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub row_no: u64,
    reference: Range<usize>,
    metadata: Range<usize>,
}

impl PackedRow for NodeRow {
    type Key<'a> = &'a str;

    fn shifted(&self, by: usize) -> Self {
        Self {
            row_no: self.row_no,
            reference: shift(&self.reference, by),
            metadata: shift(&self.metadata, by),
        }
    }

    fn key<'a>(&self, text: &'a str) -> &'a str {
        &text[self.reference.clone()]
    }
}

pub type NodeBatch = Packed<NodeRow>;

impl NodeBatch {
    pub fn reference(&self, row: &NodeRow) -> &str {
        self.text(&row.reference)
    }

    pub fn metadata(&self, row: &NodeRow) -> &str {
        self.text(&row.metadata)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::batch::Batch;

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
