//! `MatchBatch`: match suggestions; the two participant ids of a row live
//! in the batch's arena, the numbers in the row.

use std::ops::Range;

use super::{shift, Packed, PackedRow};

#[derive(Debug, Clone)]
pub struct MatchRow {
    /// 1-based row number in the file: the checkpoint unit.
    pub row_no: u64,
    participant: Range<usize>,
    matched: Range<usize>,
    pub score: Option<f64>,
    pub rank: Option<i32>,
}

impl PackedRow for MatchRow {
    /// (participant, matched): a pair is suggested once per group.
    type Key<'a> = (&'a str, &'a str);

    fn shifted(&self, by: usize) -> Self {
        Self {
            participant: shift(&self.participant, by),
            matched: shift(&self.matched, by),
            ..self.clone()
        }
    }

    fn key<'a>(&self, text: &'a str) -> (&'a str, &'a str) {
        (&text[self.participant.clone()], &text[self.matched.clone()])
    }
}

pub type MatchBatch = Packed<MatchRow>;

impl MatchBatch {
    pub fn participant(&self, row: &MatchRow) -> &str {
        self.text(&row.participant)
    }

    pub fn matched(&self, row: &MatchRow) -> &str {
        self.text(&row.matched)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::batch::Batch;

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
