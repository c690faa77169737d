//! Out-of-order completions turned into one contiguous mark: parallel
//! writers commit batches, and an object store stores parts, in any order,
//! but a checkpoint may only claim what has nothing missing before it.

use std::collections::BTreeMap;

/// Items numbered in sequence, each taken only when it is complete and
/// every item before it was taken.
#[derive(Debug)]
pub struct Watermark<T> {
    next: u64,
    pending: BTreeMap<u64, T>,
}

impl<T> Watermark<T> {
    /// The first item to come is numbered `next`.
    pub fn starting_at(next: u64) -> Self {
        Self {
            next,
            pending: BTreeMap::new(),
        }
    }

    /// The number of the item the mark waits for.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn insert(&mut self, seq: u64, item: T) {
        self.pending.insert(seq, item);
    }

    /// An item not taken yet.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        self.pending.get_mut(&seq)
    }

    /// The next item in order, when it is here and `complete` says so; the
    /// mark moves past it.
    pub fn pop_ready(&mut self, complete: impl Fn(&T) -> bool) -> Option<T> {
        let entry = self.pending.first_entry()?;
        if *entry.key() != self.next || !complete(entry.get()) {
            return None;
        }
        self.next += 1;
        Some(entry.remove())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_taken_in_order_once_complete() {
        let mut w = Watermark::starting_at(3);
        w.insert(4, (4, true));
        w.insert(3, (3, false));
        assert!(w.pop_ready(|i| i.1).is_none(), "3 is not complete");
        w.get_mut(3).unwrap().1 = true;
        w.insert(6, (6, true));
        let taken: Vec<u64> = std::iter::from_fn(|| w.pop_ready(|i| i.1))
            .map(|i| i.0)
            .collect();
        assert_eq!(taken, [3, 4], "6 waits for 5");
        assert_eq!(w.next(), 5);
        w.insert(5, (5, true));
        assert_eq!(w.pop_ready(|i| i.1).map(|i| i.0), Some(5));
        assert_eq!(w.pop_ready(|i| i.1).map(|i| i.0), Some(6));
        assert!(w.get_mut(6).is_none());
    }
}
