//! The one list of job kinds. A kind is one folder whose type implements
//! [`Kind`]; adding one is that folder and one line in [`kinds!`] below.
//! Everything that handles jobs of any kind (the JobCoordinator, the
//! sweeper, the API and CLI listings) uses the [`Work`] this list makes.

use ractor::ActorCell;

use crate::error::{JobError, StoreError};
use crate::export::Export;
use crate::job::store::Columns;
use crate::job::terminal::End;
use crate::job::{self, lifecycle, Announce, Family, JobStatus, Kind, Run, Spawned};
use crate::pipeline::Ctx;

/// Makes, from the list of kinds, [`Work`] (a row's kind and its part of
/// the row: one of the kinds), [`Outcome`] (how an attempt of one of them
/// ended), and [`Kind`] for `Work`, each call handed to the row's kind.
macro_rules! kinds {
    ($($kind:ident($ty:ty)),+ $(,)?) => {
        /// A job's kind, and its part of the row.
        #[derive(Debug, Clone)]
        pub enum Work {
            $($kind($ty)),+
        }

        /// How an attempt of a job of any kind ended.
        #[derive(Debug)]
        pub enum Outcome {
            $($kind(<$ty as Kind>::Outcome)),+
        }

        impl Kind for Work {
            type Outcome = Outcome;
            type Ctx = Ctx;

            fn names() -> Vec<(&'static str, Family)> {
                [$(<$ty as Kind>::names()),+].concat()
            }

            fn name(&self) -> &'static str {
                match self {
                    $(Self::$kind(w) => w.name()),+
                }
            }

            fn read(kind: &str, row: &Columns<'_>) -> Result<Self, StoreError> {
                $(
                    if <$ty as Kind>::names().iter().any(|(name, _)| *name == kind) {
                        return <$ty as Kind>::read(kind, row).map(Self::$kind);
                    }
                )+
                Err(row.unreadable("kind", format!("unknown value {kind:?}")))
            }

            fn rows(&self) -> u64 {
                match self {
                    $(Self::$kind(w) => w.rows()),+
                }
            }

            fn given_up(job: &Job, reason: &str) -> Outcome {
                match &job.work {
                    $(Self::$kind(w) => Outcome::$kind(<$ty as Kind>::given_up(&view(job, w), reason))),+
                }
            }

            fn failure_reason(outcome: &Outcome) -> Option<&str> {
                match outcome {
                    $(Outcome::$kind(o) => <$ty as Kind>::failure_reason(o)),+
                }
            }

            fn end(job: &Job, status: JobStatus, outcome: &Outcome, end: &mut End) {
                match (&job.work, outcome) {
                    $((Self::$kind(w), Outcome::$kind(o)) => <$ty as Kind>::end(&view(job, w), status, o, end),)+
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("an outcome is reported through its own job's kind"),
                }
            }

            fn ended(
                job: &Job,
                status: JobStatus,
                outcome: &Outcome,
                row: &tokio_postgres::Row,
            ) -> Result<Announce, StoreError> {
                match (&job.work, outcome) {
                    $((Self::$kind(w), Outcome::$kind(o)) => <$ty as Kind>::ended(&view(job, w), status, o, row),)+
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("an outcome is reported through its own job's kind"),
                }
            }

            fn leaves_work(job: &Job, status: JobStatus) -> bool {
                match &job.work {
                    $(Self::$kind(w) => <$ty as Kind>::leaves_work(&view(job, w), status)),+
                }
            }

            async fn spawn(run: Run<Self>, supervisor: ActorCell, ctx: &Ctx) -> Result<Spawned, JobError> {
                match &run.job.work {
                    $(Self::$kind(_) => {
                        let run = run.map(
                            |w| match w {
                                Self::$kind(w) => w,
                                #[allow(unreachable_patterns)]
                                _ => unreachable!("matched above"),
                            },
                            Outcome::$kind,
                        );
                        <$ty as Kind>::spawn(run, supervisor, ctx).await
                    })+
                }
            }

            async fn on_end(job: &Job, ctx: &Ctx) -> Result<bool, String> {
                match &job.work {
                    $(Self::$kind(w) => <$ty as Kind>::on_end(&view(job, w), ctx).await),+
                }
            }
        }
    };
}

kinds! {
    Import(crate::import::Import),
    Export(crate::export::Export),
    Users(crate::users::Users),
}

/// A job of any kind.
pub type Job = job::Job<Work>;
/// A job of any kind held by this process.
pub type Held = lifecycle::Held<Work>;
/// An attempt of a job of any kind.
pub type Attempt = lifecycle::Attempt<Work>;

/// The job as one of its kind's own.
fn view<V: Clone>(job: &Job, work: &V) -> job::Job<V> {
    job.with(work.clone())
}

impl Work {
    /// The export this job makes, for the kinds that make one (an API
    /// export, a users export).
    pub fn export(&self) -> Option<&Export> {
        match self {
            Self::Export(export) => Some(export),
            Self::Users(users) => Some(&users.export),
            _ => None,
        }
    }
}

/// What a committed end left to do outside the database, done now; noted
/// done on the row when it is (else the sweeper tries again).
pub async fn after_end(
    job: &Job,
    ctx: &Ctx,
    c: &impl tokio_postgres::GenericClient,
) -> Result<(), String> {
    if !Work::leaves_work(job, job.status) {
        return Ok(());
    }
    if Work::on_end(job, ctx).await? {
        lifecycle::after_end_done(c, job.id)
            .await
            .map_err(|e| crate::error::chain(&e))?;
    }
    Ok(())
}
