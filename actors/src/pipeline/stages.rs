//! The stages of one pipeline: each spawned by its own file's
//! `spawn_linked`, linked to the root and named, so that a failure names
//! the stage that failed (its actor's `NAME`, the `actor` label of
//! `ferry_actor_restarts_total`), and a pipeline that fails to start stops
//! what it had started.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use ractor::{ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use crate::error::{is_retriable, JobError};
use crate::job::Report;

/// How long a finished pipeline waits for its stages to stop. They hold no
/// work by then; this only bounds a stage stuck in a network call.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A pipeline's running stages, by actor, with their names.
pub struct Stages {
    root: ActorCell,
    names: HashMap<ActorId, &'static str>,
    /// Set once the pipeline reported: its stages' stops are expected.
    finishing: bool,
}

impl Stages {
    pub fn new(root: ActorCell) -> Self {
        Self {
            root,
            names: HashMap::new(),
            finishing: false,
        }
    }

    /// The root the stages are linked to, for their `spawn_linked`.
    pub fn root(&self) -> ActorCell {
        self.root.clone()
    }

    /// A stage being spawned (by its file's `spawn_linked`), named `name`.
    /// If it fails to start, every stage started before it is stopped and
    /// the error (its `pre_start`'s, as retriable as it was) names it.
    pub async fn add<M: ractor::Message>(
        &mut self,
        name: &'static str,
        spawning: impl Future<Output = Result<ActorRef<M>, SpawnErr>>,
    ) -> Result<ActorRef<M>, JobError> {
        match spawning.await {
            Ok(stage) => {
                self.names.insert(stage.get_id(), name);
                Ok(stage)
            }
            Err(e) => {
                self.root.stop_children(None);
                let err = match e {
                    SpawnErr::StartupFailed(inner) => inner,
                    other => Box::new(other),
                };
                Err(JobError::of_actor(err, name))
            }
        }
    }

    /// Stops a stage whose work is done (a file read to its end): its
    /// stop, whenever it is reported, is not a failure.
    pub fn retire(&mut self, stage: &ActorCell) {
        self.names.remove(&stage.get_id());
        stage.stop(None);
    }

    /// A supervision event from a stage, as the pipeline's failure: a
    /// stage that failed (with its reason) or stopped on its own before
    /// the pipeline finished. `None`: not a failure (a retired stage, or
    /// the pipeline is finishing).
    pub fn on_event(&self, event: &SupervisionEvent) -> Option<JobError> {
        if self.finishing {
            return None;
        }
        let (who, failure) = match event {
            SupervisionEvent::ActorFailed(who, err) => (who, Failure::Failed(err)),
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                (who, Failure::Stopped(reason.as_deref()))
            }
            _ => return None,
        };
        let stage = *self.names.get(&who.get_id())?;
        let error = match failure {
            Failure::Failed(err) => match err.downcast_ref::<JobError>() {
                Some(JobError::Lost(job)) => JobError::Lost(*job),
                Some(JobError::Stage { reason, .. }) => JobError::Stage {
                    stage,
                    reason: reason.clone(),
                    retriable: is_retriable(err),
                },
                Some(other) => JobError::Stage {
                    stage,
                    reason: other.told(),
                    retriable: other.is_retriable(),
                },
                None => JobError::Stage {
                    stage,
                    reason: err.to_string(),
                    retriable: is_retriable(err),
                },
            },
            Failure::Stopped(reason) => JobError::Stage {
                stage,
                reason: format!("stopped unexpectedly ({})", reason.unwrap_or("no reason")),
                retriable: true,
            },
        };
        tracing::warn!(stage, reason = %error, "Pipeline stage failed.");
        self.root.stop_children(None);
        Some(error)
    }

    /// Ends the pipeline: `outcome` reported, every stage stopped (the
    /// subtree is gone before the coordinator hears the root stopped), and
    /// the root stopped.
    pub async fn finish<O: 'static>(&mut self, report: Option<Report<O>>, outcome: O) {
        self.finishing = true;
        if let Some(report) = report {
            report.send(outcome);
        }
        self.root
            .stop_children_and_wait(None, Some(STOP_TIMEOUT))
            .await;
        self.root.stop(None);
    }
}

enum Failure<'a> {
    Failed(&'a ActorProcessingErr),
    Stopped(Option<&'a str>),
}

/// A root's own failure, named as the root's unless it names a stage (or
/// is a lost lease): the one mapping every pipeline root uses.
pub fn failed_in(root: &'static str, err: ActorProcessingErr) -> ActorProcessingErr {
    Box::new(JobError::of_actor(err, root))
}
