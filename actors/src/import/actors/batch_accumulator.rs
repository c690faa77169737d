//! BatchAccumulator: gathers the reader's pieces into batches, sealed on row
//! count, on bytes, or on a linger timer, whichever comes first. A sealed
//! batch is deduplicated (last row of a key wins) and split by key hash, one
//! shard per CopyWriter, so two writers never touch the same key and a key's
//! rows reach the table in file order.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr};

use super::copy_writer::{self, Shard};
use crate::flow::{Credit, Credits};
use crate::import::batch::Batch;
use crate::import::tracker::{ReadPosition, Sealed};
use crate::telemetry::{Depth, Mailbox};

pub const NAME: &str = "batch_accumulator";

/// One reader step's rows, and where the reader stood after them.
pub struct Piece<B> {
    pub rows: B,
    pub upto: ReadPosition,
}

/// What a reader holds to feed the accumulator: its mailbox, and the
/// credits that bound the pieces in flight to it.
pub struct Feed<B: Batch> {
    pub accumulator: Mailbox<Msg<B>>,
    pub credits: Credits,
}

/// What ended a reader's step.
pub enum Step {
    More,
    /// The input ended, cleanly or with an error.
    End(Option<String>),
}

impl<B: Batch> Clone for Feed<B> {
    fn clone(&self) -> Self {
        Self {
            accumulator: self.accumulator.clone(),
            credits: self.credits.clone(),
        }
    }
}

impl<B: Batch> Feed<B> {
    /// Hands one reader step's rows on, waiting for a credit first (this
    /// wait is the reader's backpressure), then the end of the input if
    /// the step reached it. Returns whether the reader should go on.
    pub async fn step(&self, rows: B, upto: ReadPosition, step: Step) -> bool {
        let credit = self.credits.take().await;
        self.accumulator
            .send(Msg::Rows(Piece { rows, upto }, credit));
        match step {
            Step::More => true,
            Step::End(error) => {
                self.accumulator.send(Msg::End { upto, error });
                false
            }
        }
    }
}

pub enum Msg<B> {
    Rows(Piece<B>, Credit),
    /// The input ended, cleanly or with `error`.
    End {
        upto: ReadPosition,
        error: Option<String>,
    },
    /// The linger timer of the batch started in `epoch` fired.
    Linger(u64),
}

/// What the accumulator tells its pipeline.
pub enum Sealing {
    /// A batch went to the writers, in `parts` shards.
    Sealed(Sealed),
    /// No batch after `last_seq` will come: the input ended at `upto`,
    /// cleanly or with `error`.
    InputEnded {
        last_seq: u64,
        upto: ReadPosition,
        error: Option<String>,
    },
}

pub struct Args<B: Batch> {
    pub writers: Vec<Mailbox<copy_writer::Msg<B>>>,
    pub pipeline: Mailbox<Sealing>,
    /// Batches in flight to the writers.
    pub credits: Credits,
    pub batch_rows: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub depth: Depth,
}

pub struct State<B: Batch> {
    args: Args<B>,
    current: B,
    upto: ReadPosition,
    /// Pieces received since the last seal (a piece may carry only rejects).
    dirty: bool,
    seq: u64,
    epoch: u64,
}

pub type BatchAccumulatorRef<B> = ActorRef<Msg<B>>;

pub async fn spawn_linked<B: Batch>(
    pipeline: ActorCell,
    args: Args<B>,
) -> Result<BatchAccumulatorRef<B>, SpawnErr> {
    let accumulator = BatchAccumulator::<B>::default();
    let (r, _) = Actor::spawn_linked(None, accumulator, args, pipeline).await?;
    Ok(r)
}

/// The accumulator of one kind of [`Batch`].
pub struct BatchAccumulator<B>(PhantomData<fn() -> B>);

impl<B> Default for BatchAccumulator<B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<B: Batch> Actor for BatchAccumulator<B> {
    type Msg = Msg<B>;
    type State = State<B>;
    type Arguments = Args<B>;

    async fn pre_start(
        &self,
        _: ActorRef<Msg<B>>,
        args: Args<B>,
    ) -> Result<State<B>, ActorProcessingErr> {
        Ok(State {
            current: B::with_capacity(args.batch_rows),
            args,
            upto: ReadPosition::default(),
            dirty: false,
            seq: 0,
            epoch: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg<B>>,
        msg: Msg<B>,
        state: &mut State<B>,
    ) -> Result<(), ActorProcessingErr> {
        // Only data counts as queued work; the linger timer is our own.
        if !matches!(msg, Msg::Linger(_)) {
            state.args.depth.received();
        }
        match msg {
            Msg::Rows(piece, _credit) => {
                if !state.dirty {
                    state.epoch += 1;
                    let epoch = state.epoch;
                    myself.send_after(state.args.linger, move || Msg::Linger(epoch));
                }
                state.current.append(&piece.rows);
                state.upto = piece.upto;
                state.dirty = true;
                if state.current.len() >= state.args.batch_rows
                    || state.current.bytes() >= state.args.batch_bytes
                {
                    seal(state).await;
                }
            }
            Msg::Linger(epoch) => {
                if epoch == state.epoch && state.dirty {
                    seal(state).await;
                }
            }
            Msg::End { upto, error } => {
                state.upto = upto;
                state.dirty = true;
                seal(state).await;
                state.args.pipeline.send(Sealing::InputEnded {
                    last_seq: state.seq,
                    upto,
                    error,
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<Msg<B>>,
        state: &mut State<B>,
    ) -> Result<(), ActorProcessingErr> {
        state.args.depth.drain();
        Ok(())
    }
}

/// Seals the current batch and sends its shards, waiting for a credit
/// first: this wait is what slows the reader down when writers lag.
async fn seal<B: Batch>(state: &mut State<B>) {
    let credit = Arc::new(state.args.credits.take().await);
    let batch = Arc::new(std::mem::replace(
        &mut state.current,
        B::with_capacity(state.args.batch_rows),
    ));
    state.seq += 1;
    state.dirty = false;
    let (shards, duplicates) = batch.dedup_and_route(state.args.writers.len());
    let parts = shards.iter().filter(|s| !s.is_empty()).count();
    state.args.pipeline.send(Sealing::Sealed(Sealed {
        seq: state.seq,
        parts,
        rows: batch.len() as u64 - duplicates,
        duplicates,
        upto: state.upto,
    }));
    for (writer, rows) in state.args.writers.iter().zip(shards) {
        if !rows.is_empty() {
            writer.send(copy_writer::Msg::Write(Shard {
                seq: state.seq,
                batch: batch.clone(),
                rows,
                credit: credit.clone(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::batch::NodeBatch;
    use tokio::sync::mpsc;

    fn rows(keys: &[&str]) -> NodeBatch {
        let mut b = NodeBatch::default();
        for (i, k) in keys.iter().enumerate() {
            b.push_with::<()>(i as u64 + 1, k, |t| {
                t.push_str("{}");
                Ok(())
            })
            .unwrap();
        }
        b
    }

    /// What the pipeline hears, and the rows each writer gets.
    type Heard = (
        mpsc::UnboundedReceiver<Sealing>,
        mpsc::UnboundedReceiver<usize>,
    );

    async fn accumulator(linger: Duration) -> (Feed<NodeBatch>, Heard) {
        let (sealed, heard) = mpsc::unbounded_channel();
        let (written, writes) = mpsc::unbounded_channel();
        let writer = Mailbox::from_fn(
            move |copy_writer::Msg::Write(shard): copy_writer::Msg<NodeBatch>| {
                written.send(shard.rows.len()).is_ok()
            },
            Depth::new("test_writer"),
        );
        let args = Args {
            writers: vec![writer],
            pipeline: Mailbox::from_fn(move |s| sealed.send(s).is_ok(), Depth::new("test")),
            credits: Credits::new(4),
            batch_rows: 100,
            batch_bytes: 1 << 20,
            linger,
            depth: Depth::new(NAME),
        };
        let (acc, _) = Actor::spawn(None, BatchAccumulator::<NodeBatch>::default(), args)
            .await
            .unwrap();
        let feed = Feed {
            accumulator: Mailbox::new(acc, Depth::new(NAME)),
            credits: Credits::new(4),
        };
        (feed, (heard, writes))
    }

    fn at(records: u64) -> ReadPosition {
        ReadPosition {
            records,
            ..ReadPosition::default()
        }
    }

    /// A batch short of its size is sealed when its linger runs out, and
    /// not before: time here is the test's, not the clock's.
    #[tokio::test(start_paused = true)]
    async fn a_short_batch_is_sealed_when_its_linger_runs_out() {
        let linger = Duration::from_secs(5);
        let (feed, (mut heard, mut writes)) = accumulator(linger).await;
        assert!(feed.step(rows(&["a", "b"]), at(2), Step::More).await);
        tokio::time::sleep(linger - Duration::from_millis(10)).await;
        assert!(heard.try_recv().is_err(), "sealed before its linger");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(Sealing::Sealed(s)) = heard.recv().await else {
            panic!("no batch sealed")
        };
        assert_eq!((s.seq, s.rows, s.upto.records), (1, 2, 2));
        assert_eq!(writes.recv().await, Some(2));
        // Rows that come later start a linger of their own.
        assert!(!feed.step(rows(&["c"]), at(3), Step::End(None)).await);
        let Some(Sealing::Sealed(s)) = heard.recv().await else {
            panic!("the end seals what is left")
        };
        assert_eq!((s.seq, s.rows), (2, 1));
        assert!(matches!(
            heard.recv().await,
            Some(Sealing::InputEnded { last_seq: 2, .. })
        ));
    }

    /// A full batch goes at once, whatever its linger.
    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_sealed_at_once() {
        let (feed, (mut heard, _writes)) = accumulator(Duration::from_secs(3600)).await;
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert!(feed.step(rows(&keys), at(100), Step::More).await);
        let sealed = tokio::time::timeout(Duration::from_secs(1), heard.recv()).await;
        assert!(matches!(sealed, Ok(Some(Sealing::Sealed(_)))));
    }
}
