//! `MatchBatch`: match suggestions on their way to PostgreSQL. The two
//! participant ids of every row live in one `String` arena, as in
//! [`NodeBatch`](super::NodeBatch); the numbers sit in the row.

use std::ops::Range;

use super::{route_last_wins, Batch};

#[derive(Debug, Clone)]
pub struct MatchRow {
    /// 1-based row number in the file: the checkpoint unit.
    pub row_no: u64,
    participant: Range<usize>,
    matched: Range<usize>,
    pub score: Option<f64>,
    pub rank: Option<i32>,
}

#[derive(Debug, Default)]
pub struct MatchBatch {
    text: String,
    rows: Vec<MatchRow>,
}

impl MatchBatch {
    pub fn rows(&self) -> &[MatchRow] {
        &self.rows
    }

    pub fn participant(&self, row: &MatchRow) -> &str {
        &self.text[row.participant.clone()]
    }

    pub fn matched(&self, row: &MatchRow) -> &str {
        &self.text[row.matched.clone()]
    }

    pub fn push(
        &mut self,
        row_no: u64,
        participant: &str,
        matched: &str,
        score: Option<f64>,
        rank: Option<i32>,
    ) {
        let start = self.text.len();
        self.text.push_str(participant);
        let mid = self.text.len();
        self.text.push_str(matched);
        self.rows.push(MatchRow {
            row_no,
            participant: start..mid,
            matched: mid..self.text.len(),
            score,
            rank,
        });
    }
}

impl Batch for MatchBatch {
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

    fn append(&mut self, other: &MatchBatch) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.rows.extend(other.rows.iter().map(|r| MatchRow {
            participant: r.participant.start + shift..r.participant.end + shift,
            matched: r.matched.start + shift..r.matched.end + shift,
            ..r.clone()
        }));
    }

    fn dedup_and_route(&self, shards: usize) -> (Vec<Vec<u32>>, u64) {
        let keys = self
            .rows
            .iter()
            .map(|r| (self.participant(r), self.matched(r)));
        route_last_wins(keys, shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_the_key_and_its_last_row_wins() {
        let mut b = MatchBatch::default();
        b.push(1, "ann", "bob", Some(0.5), Some(1));
        b.push(2, "bob", "ann", Some(0.7), Some(1));
        b.push(3, "ann", "bob", Some(0.9), Some(2));
        let (shards, dups) = b.dedup_and_route(2);
        assert_eq!(dups, 1);
        let kept: Vec<u64> = shards
            .concat()
            .iter()
            .map(|&i| b.rows()[i as usize].row_no)
            .collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains(&2) && kept.contains(&3));
    }

    #[test]
    fn append_shifts_both_ids() {
        let mut a = MatchBatch::default();
        a.push(1, "a1", "a2", None, None);
        let mut b = MatchBatch::default();
        b.push(2, "b1", "b2", Some(1.0), Some(3));
        a.append(&b);
        let r = &a.rows()[1];
        assert_eq!((a.participant(r), a.matched(r)), ("b1", "b2"));
        assert_eq!((r.score, r.rank), (Some(1.0), Some(3)));
        assert_eq!(a.bytes(), 8);
    }
}
