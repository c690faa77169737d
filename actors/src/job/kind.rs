//! What a kind of job adds to the life every job shares: [`Kind`]. A kind
//! is one folder that implements it (its row, its terminal write, its
//! pipeline, what happens after its end); `crate::kinds` lists them.

use std::future::Future;
use std::sync::Arc;

use ractor::ActorCell;

use super::fence::Fence;
use super::store::Columns;
use super::terminal::{End, Writes};
use super::{Job, JobStatus};
use crate::error::{JobError, StoreError};
use crate::progress::Progress;

/// Kinds of jobs as the API and the CLI list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Imports,
    Exports,
}

impl Family {
    /// An SQL condition on `kind` for the family's kinds among `K`'s.
    pub fn sql<K: Kind>(self) -> String {
        let names: Vec<String> = K::names()
            .into_iter()
            .filter(|(_, family)| *family == self)
            .map(|(name, _)| format!("'{name}'"))
            .collect();
        match names.is_empty() {
            true => "false".into(),
            false => format!("kind IN ({})", names.join(", ")),
        }
    }
}

/// One kind of job.
///
/// The kind's type is its part of a job row ([`Job::work`]): what it was
/// asked, how far it got, what it made. Its trait says how that part is
/// read, how its end is written, and how an attempt runs.
pub trait Kind: std::fmt::Debug + Clone + Send + Sync + Sized + 'static {
    /// How an attempt ended, as its pipeline reports it (or as a job given
    /// up on or cancelled says it).
    type Outcome: Send + 'static;
    /// What its pipelines are spawned with (one for the whole process).
    type Ctx: Send + Sync + 'static;

    /// Every `kind` column value of the kind's rows, and the family each
    /// is listed in.
    fn names() -> Vec<(&'static str, Family)>;

    /// This row's `kind`: the metric label and the log's `kind` field.
    fn name(&self) -> &'static str;

    /// Its part of a row whose kind is `kind` (one of [`Self::names`]).
    fn read(kind: &str, row: &Columns<'_>) -> Result<Self, StoreError>;

    /// Rows done so far, as the row says (for the end's log line).
    fn rows(&self) -> u64;

    /// A job given up on (or cancelled): what its last checkpoint says was
    /// done, and why it ended.
    fn given_up(job: &Job<Self>, reason: &str) -> Self::Outcome;

    /// `None`: the outcome is a success.
    fn failure_reason(outcome: &Self::Outcome) -> Option<&str>;

    /// Its part of the terminal statement: the columns it ends with, its
    /// status event, any statement it adds (see [`End`]).
    fn end(job: &Job<Self>, status: JobStatus, outcome: &Self::Outcome, end: &mut End);

    /// What the committed end announces, read from the statement's row
    /// (the outputs `end` added): run once the commit is durable.
    fn ended(
        job: &Job<Self>,
        status: JobStatus,
        outcome: &Self::Outcome,
        row: &tokio_postgres::Row,
    ) -> Result<Announce, StoreError> {
        let _ = (job, status, outcome, row);
        Ok(Announce::default())
    }

    /// Spawns the pipeline of one attempt, linked to `run`'s supervisor; it
    /// reports through `run.report` before it stops.
    fn spawn(
        run: Run<Self>,
        supervisor: ActorCell,
        ctx: &Self::Ctx,
    ) -> impl Future<Output = Result<Spawned, JobError>> + Send;

    /// Whether ending as `status` leaves work outside the database, for
    /// [`Self::on_end`] to do (a failed export's files to delete).
    fn leaves_work(job: &Job<Self>, status: JobStatus) -> bool {
        let _ = (job, status);
        false
    }

    /// What an end that [`Self::leaves_work`] leaves to do, after the end
    /// is committed, and again from the sweeper until it is done. `Ok(true)`:
    /// done.
    fn on_end(
        job: &Job<Self>,
        ctx: &Self::Ctx,
    ) -> impl Future<Output = Result<bool, String>> + Send {
        let _ = (job, ctx);
        async { Ok(true) }
    }
}

/// An attempt's pipeline, spawned: its root, and the root's `NAME` (what
/// a failure that names no stage is counted as).
pub struct Spawned {
    pub root: ActorCell,
    pub name: &'static str,
}

/// What a new job of a kind was asked: its `kind` and its own columns of
/// the new row.
pub trait Spec {
    fn kind(&self) -> &'static str;
    fn columns(&self, row: &mut NewRow);
}

/// The kind's columns of a new job row.
pub type NewRow = Writes;

/// One attempt of a job, as its pipeline is handed it.
pub struct Run<K: Kind> {
    /// The job as its attempt started it, with its latest checkpoint.
    pub job: Job<K>,
    /// Every write the pipeline makes to the job row goes through it.
    pub fence: Fence,
    /// Where the pipeline sends how the job ended.
    pub report: Report<K::Outcome>,
    pub progress: Arc<Progress>,
}

impl<K: Kind> Run<K> {
    /// The same attempt as one of kind `V` (a kind's own, out of the list
    /// of kinds): its work turned by `work`, its outcome back by `outcome`.
    pub fn map<V: Kind>(
        self,
        work: impl FnOnce(K) -> V,
        outcome: impl FnOnce(V::Outcome) -> K::Outcome + Send + Sync + 'static,
    ) -> Run<V> {
        Run {
            job: self.job.map(work),
            fence: self.fence,
            report: self.report.map(outcome),
            progress: self.progress,
        }
    }
}

/// Where an attempt's pipeline sends how its job ended, once: the
/// JobCoordinator makes the terminal write with it. A pipeline that stops
/// without sending failed.
pub struct Report<O>(Box<dyn FnOnce(O) + Send + Sync>);

impl<O: 'static> Report<O> {
    pub fn new(send: impl FnOnce(O) + Send + Sync + 'static) -> Self {
        Self(Box::new(send))
    }

    pub fn send(self, outcome: O) {
        (self.0)(outcome)
    }

    /// A report of `P`s, sent on as `O`s.
    pub fn map<P: 'static>(self, f: impl FnOnce(P) -> O + Send + Sync + 'static) -> Report<P> {
        Report::new(move |p| self.send(f(p)))
    }
}

/// What a committed end announces (its log lines and metrics): run after
/// the commit, so that nothing is announced that a failed commit undid.
#[derive(Default)]
pub struct Announce(Vec<Box<dyn FnOnce() + Send>>);

impl Announce {
    pub fn then(mut self, announce: impl FnOnce() + Send + 'static) -> Self {
        self.0.push(Box::new(announce));
        self
    }

    pub fn run(self) {
        for announce in self.0 {
            announce();
        }
    }
}
