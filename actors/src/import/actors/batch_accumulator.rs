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
