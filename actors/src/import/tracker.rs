//! Turning batch commits, which arrive out of order from parallel writers,
//! into a checkpoint: the point in the file before which every row is
//! committed. A restart resumes there; batches committed past it are
//! replayed, which is safe because every write is an upsert.

use super::event::IdLists;
use super::{Checkpoint, ImportOutcome, SourceRead};
use crate::pipeline::Watermark;
use crate::vocab::{Counts, Written};

/// How far the reader got: the reader's part of a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPosition {
    pub records: u64,
    pub rejected: u64,
    /// Bytes of the source (as stored) behind this position, to show
    /// progress by; for Parquet, the records' share of the file's size.
    pub bytes: u64,
}

/// A batch the accumulator sealed: `parts` shards went to writers.
#[derive(Debug)]
pub struct Sealed {
    pub seq: u64,
    pub parts: usize,
    /// Rows sent to writers (after in-batch deduplication).
    pub rows: u64,
    pub duplicates: u64,
    pub upto: ReadPosition,
}

struct Pending {
    sealed: Sealed,
    parts_left: usize,
    written: Written,
}

struct Ended {
    last_seq: u64,
    upto: ReadPosition,
    error: Option<String>,
}

pub struct CommitTracker {
    checkpoint: Checkpoint,
    /// Sealed batches, in order (they count from 1).
    pending: Watermark<Pending>,
    ended: Option<Ended>,
    /// Source bytes behind the checkpoint.
    bytes: u64,
}

impl CommitTracker {
    /// Starts from a resumed (or fresh) checkpoint.
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            pending: Watermark::starting_at(1),
            ended: None,
            bytes: 0,
        }
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// What the readers saw of the input's columns, saved with the next
    /// checkpoint.
    pub fn note_drift(&mut self, drift: Option<super::drift::Drift>) {
        if drift.is_some() {
            self.checkpoint.drift = drift;
        }
    }

    /// The checkpoint a sync's delete saved.
    pub fn synced(&mut self, checkpoint: Checkpoint) {
        self.checkpoint = checkpoint;
    }

    /// Whether the whole input loaded, once [`Self::is_done`]: it ended
    /// without an error, and no row was rejected.
    pub fn loaded_whole(&self) -> bool {
        self.ended
            .as_ref()
            .is_some_and(|e| e.error.is_none() && e.upto.rejected == 0)
    }

    /// A multi-file job's files, to mark how far through them it is.
    pub fn files_mut(&mut self) -> Option<&mut super::files::FileSet> {
        self.checkpoint.files.as_mut()
    }

    /// Puts how far through its `size` bytes the source is committed into
    /// the checkpoint (an unknown size, 0, shows nothing).
    pub fn source_size(&mut self, size: u64) {
        self.checkpoint.source = (size > 0).then_some(SourceRead {
            bytes_read: self.bytes.min(size),
            bytes_total: size,
        });
    }

    pub fn sealed(&mut self, sealed: Sealed) {
        let parts_left = sealed.parts;
        self.pending.insert(
            sealed.seq,
            Pending {
                sealed,
                parts_left,
                written: Written::default(),
            },
        );
    }

    /// A writer committed its shard of batch `seq`. `Err` means a commit of
    /// a batch never sealed, or one too many: a broken invariant.
    pub fn committed(&mut self, seq: u64, written: Written) -> Result<(), String> {
        let p = self
            .pending
            .get_mut(seq)
            .filter(|p| p.parts_left > 0)
            .ok_or_else(|| format!("unexpected commit of batch {seq}"))?;
        p.parts_left -= 1;
        p.written += written;
        Ok(())
    }

    /// No batch after `last_seq` will come.
    pub fn ended(&mut self, last_seq: u64, upto: ReadPosition, error: Option<String>) {
        self.ended = Some(Ended {
            last_seq,
            upto,
            error,
        });
    }

    /// Moves the checkpoint over every fully committed batch that has no
    /// uncommitted batch before it. Returns whether it moved.
    pub fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(p) = self.pending.pop_ready(|p| p.parts_left == 0) {
            let counts = &mut self.checkpoint.counts;
            counts.records = p.sealed.upto.records;
            counts.rejected = p.sealed.upto.rejected;
            counts.add(p.written);
            counts.duplicates += p.sealed.duplicates;
            self.bytes = p.sealed.upto.bytes;
            moved = true;
        }
        moved
    }

    /// Whether the input ended and every batch is committed.
    pub fn is_done(&self) -> bool {
        self.ended
            .as_ref()
            .is_some_and(|e| self.pending.next() > e.last_seq)
    }

    /// Rows rejected so far (all of them, once the input ended).
    pub fn rejected(&self) -> u64 {
        self.ended
            .as_ref()
            .map_or(self.checkpoint.counts.rejected, |e| e.upto.rejected)
    }

    /// The job's counts, once [`Self::is_done`]: every record read and
    /// rejected, and what the commits made of the rest.
    pub fn final_counts(&self) -> Counts {
        let ended = self.ended.as_ref().expect("counts after the input ended");
        Counts {
            records: ended.upto.records,
            rejected: ended.upto.rejected,
            ..self.checkpoint.counts
        }
    }

    /// The job's end, once [`Self::is_done`]: COMPLETED only when every row
    /// loaded (seed 004), FAILED with the reason otherwise. `rejects` is
    /// where the rejects file can be found; `lists` what the event lists.
    pub fn outcome(&self, rejects: &str, lists: IdLists) -> ImportOutcome {
        let ended = self.ended.as_ref().expect("outcome after the input ended");
        let counts = self.final_counts();
        let failure_reason = match &ended.error {
            Some(error) => Some(error.clone()),
            None if counts.rejected > 0 => Some(format!(
                "{} of {} rows rejected; see {rejects}",
                counts.rejected, counts.records,
            )),
            None => None,
        };
        ImportOutcome {
            counts,
            rejects_path: (counts.rejected > 0).then(|| rejects.to_string()),
            failure_reason,
            lists,
            drift: self.checkpoint.drift.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(seq: u64, parts: usize, records: u64) -> Sealed {
        Sealed {
            seq,
            parts,
            rows: records,
            duplicates: 0,
            upto: ReadPosition {
                records: seq * 10,
                ..ReadPosition::default()
            },
        }
    }

    fn written(inserted: u64, updated: u64) -> Written {
        Written {
            inserted,
            updated,
            unchanged: 1,
        }
    }

    #[test]
    fn the_checkpoint_waits_for_earlier_batches() {
        let mut t = CommitTracker::new(Checkpoint::default());
        t.sealed(sealed(1, 2, 10));
        t.sealed(sealed(2, 1, 10));
        t.committed(2, written(10, 0)).unwrap();
        assert!(!t.advance(), "batch 1 is not committed yet");
        t.committed(1, written(4, 0)).unwrap();
        assert!(!t.advance(), "batch 1 has a shard left");
        t.committed(1, written(3, 3)).unwrap();
        assert!(t.advance());
        let counts = t.checkpoint().counts;
        assert_eq!(counts.records, 20);
        assert_eq!(
            (counts.inserted, counts.updated, counts.unchanged),
            (17, 3, 3)
        );
    }

    #[test]
    fn empty_batches_and_the_end() {
        let mut t = CommitTracker::new(Checkpoint::default());
        t.sealed(sealed(1, 0, 0));
        t.ended(
            1,
            ReadPosition {
                records: 10,
                rejected: 2,
                bytes: 0,
            },
            None,
        );
        assert!(t.advance());
        assert!(t.is_done());
        let o = t.outcome("/r/j.csv", IdLists::default());
        assert!(o.failure_reason.is_some());
        assert_eq!(
            o.failure_reason.as_deref(),
            Some("2 of 10 rows rejected; see /r/j.csv")
        );
    }

    #[test]
    fn unexpected_commits_are_refused() {
        let mut t = CommitTracker::new(Checkpoint::default());
        assert!(t.committed(1, written(1, 0)).is_err());
        t.sealed(sealed(1, 1, 1));
        t.committed(1, written(1, 0)).unwrap();
        assert!(
            t.committed(1, written(1, 0)).is_err(),
            "one commit per shard"
        );
    }
}
