//! What every pipeline root does the same way, as one actor over a
//! [`Pipeline`]: it starts on its own first message (so that a job waiting
//! for a lock never blocks the coordinator that spawned it), hands every
//! later message to the pipeline, fails with the stage a failure names (or
//! as itself), turns a stage's failure or unexpected stop into its own,
//! and drains its mailbox's depth when it stops.

use std::future::Future;
use std::marker::PhantomData;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, SpawnErr, SupervisionEvent};

use super::stages::{failed_in, Stages};
use crate::error::JobError;

/// A pipeline root: how it starts, and what it does with each message.
pub trait Pipeline: Send + Sync + 'static {
    /// Its `actor` label.
    const NAME: &'static str;
    type Msg: Message;
    type Args: Send + 'static;
    /// A started pipeline's state.
    type Running: Send + 'static;

    /// The message it sends itself to start.
    fn start_msg() -> Self::Msg;

    /// Sets the attempt up and spawns the stages.
    fn start(
        myself: &ActorRef<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Running, JobError>> + Send;

    fn handle(
        msg: Self::Msg,
        run: &mut Self::Running,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    fn stages(run: &Self::Running) -> &Stages;

    /// The root stopped: what is still counted as queued is forgotten.
    fn stopped(run: &Self::Running);
}

/// The actor of a pipeline root.
pub struct Root<P>(PhantomData<fn() -> P>);

/// A root's state: its arguments until it starts, then the pipeline's.
pub struct RootState<P: Pipeline> {
    args: Option<P::Args>,
    run: Option<P::Running>,
}

/// Spawns the root of pipeline `P`, linked to `supervisor`.
pub async fn spawn_linked<P: Pipeline>(
    supervisor: ActorCell,
    args: P::Args,
) -> Result<ActorRef<P::Msg>, SpawnErr> {
    let (root, _) = Actor::spawn_linked(None, Root::<P>(PhantomData), args, supervisor).await?;
    Ok(root)
}

impl<P: Pipeline> Actor for Root<P> {
    type Msg = P::Msg;
    type State = RootState<P>;
    type Arguments = P::Args;

    async fn pre_start(
        &self,
        myself: ActorRef<P::Msg>,
        args: P::Args,
    ) -> Result<RootState<P>, ActorProcessingErr> {
        myself.cast(P::start_msg())?;
        Ok(RootState {
            args: Some(args),
            run: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<P::Msg>,
        msg: P::Msg,
        state: &mut RootState<P>,
    ) -> Result<(), ActorProcessingErr> {
        // The start is the first message; nothing else can come before it.
        let handled = if let Some(args) = state.args.take() {
            P::start(&myself, args)
                .await
                .map(|run| state.run = Some(run))
        } else if let Some(run) = &mut state.run {
            P::handle(msg, run).await
        } else {
            Ok(())
        };
        handled.map_err(|e| failed_in(P::NAME, e.into()))
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<P::Msg>,
        event: SupervisionEvent,
        state: &mut RootState<P>,
    ) -> Result<(), ActorProcessingErr> {
        match state
            .run
            .as_ref()
            .and_then(|run| P::stages(run).on_event(&event))
        {
            Some(failure) => Err(failure.into()),
            None => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<P::Msg>,
        state: &mut RootState<P>,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(run) = &state.run {
            P::stopped(run);
        }
        Ok(())
    }
}
