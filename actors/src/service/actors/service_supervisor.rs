//! ServiceSupervisor: the root of a `ferry serve` process. It supervises
//! the long-lived actors (KafkaIngress, DlqActor, StatusPublisher, the
//! JobSweeper, the WebhookSender and the ExportScheduler): one that fails
//! is started again after a backoff, with the same arguments, under the
//! same registered name (others find it by name, so a restart needs no
//! rewiring). One that fails too often within the retry window stops the
//! service, so the process exits non-zero and its own supervisor (systemd,
//! Kubernetes) takes over.

use std::collections::HashMap;
use tokio::time::Instant;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use super::{dlq, job_sweeper, kafka_ingress, status_publisher};
use crate::export::actors::webhook_sender;
use crate::settings::RetrySettings;
use crate::supervision::{Decision, RestartPolicy};
use crate::telemetry::ChildRestarted;
use crate::users::actors::export_scheduler;

pub const NAME: &str = "service_supervisor";

/// The stop reason of an orderly shutdown: a child stopped with it is not
/// restarted.
pub const SHUTDOWN: &str = "shutdown";

/// A supervised child: how to start it again.
#[derive(Clone)]
pub enum Child {
    Dlq(dlq::Args),
    Publisher(status_publisher::Args),
    Ingress(Box<kafka_ingress::Args>),
    Sweeper(Box<job_sweeper::Args>),
    Webhooks(Box<webhook_sender::Args>),
    Scheduler(Box<export_scheduler::Args>),
}

impl Child {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dlq(_) => dlq::NAME,
            Self::Publisher(_) => status_publisher::NAME,
            Self::Ingress(_) => kafka_ingress::NAME,
            Self::Sweeper(_) => job_sweeper::NAME,
            Self::Webhooks(_) => webhook_sender::NAME,
            Self::Scheduler(_) => export_scheduler::NAME,
        }
    }

    /// Spawns it under its name, linked to `supervisor`.
    async fn spawn(&self, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
        Ok(match self.clone() {
            Self::Dlq(args) => dlq::spawn_linked(supervisor, args).await?.get_cell(),
            Self::Publisher(args) => status_publisher::spawn_linked(supervisor, args)
                .await?
                .get_cell(),
            Self::Ingress(args) => kafka_ingress::spawn_linked(supervisor, *args)
                .await?
                .get_cell(),
            Self::Sweeper(args) => job_sweeper::spawn_linked(supervisor, *args)
                .await?
                .get_cell(),
            Self::Webhooks(args) => webhook_sender::spawn_linked(supervisor, *args)
                .await?
                .get_cell(),
            Self::Scheduler(args) => export_scheduler::spawn_linked(supervisor, *args)
                .await?
                .get_cell(),
        })
    }
}

pub enum Msg {
    Restart(Child),
}

pub struct Args {
    /// Started in this order (the ingress needs the DLQ).
    pub children: Vec<Child>,
    pub retry: RetrySettings,
}

pub struct State {
    children: HashMap<ActorId, Child>,
    policies: HashMap<&'static str, RestartPolicy>,
    retry: RetrySettings,
}

pub type ServiceSupervisorRef = ActorRef<Msg>;

pub async fn spawn(args: Args) -> Result<ServiceSupervisorRef, SpawnErr> {
    let (supervisor, _) = Actor::spawn(Some(NAME.into()), ServiceSupervisor, args).await?;
    Ok(supervisor)
}

pub struct ServiceSupervisor;

impl Actor for ServiceSupervisor {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let mut state = State {
            children: HashMap::new(),
            policies: HashMap::new(),
            retry: args.retry,
        };
        for child in args.children {
            let cell = child.spawn(myself.get_cell()).await?;
            state.children.insert(cell.get_id(), child);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let Msg::Restart(child) = msg;
        match child.spawn(myself.get_cell()).await {
            Ok(cell) => {
                state.children.insert(cell.get_id(), child);
            }
            Err(e) => on_failure(&myself, state, child, &e.to_string())?,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (who, reason) = match &event {
            SupervisionEvent::ActorFailed(who, err) => (who.get_id(), err.to_string()),
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                if reason.as_deref() == Some(SHUTDOWN) {
                    state.children.remove(&who.get_id());
                    return Ok(());
                }
                (
                    who.get_id(),
                    format!("stopped ({})", reason.as_deref().unwrap_or("no reason")),
                )
            }
            _ => return Ok(()),
        };
        if let Some(child) = state.children.remove(&who) {
            on_failure(&myself, state, child, &reason)?;
        }
        Ok(())
    }
}

fn on_failure(
    myself: &ActorRef<Msg>,
    state: &mut State,
    child: Child,
    reason: &str,
) -> Result<(), ActorProcessingErr> {
    let name = child.name();
    let policy = state
        .policies
        .entry(name)
        .or_insert_with(|| RestartPolicy::new(state.retry.clone()));
    match policy.on_failure(Instant::now()) {
        Decision::Restart { after } => {
            ChildRestarted {
                actor: name,
                backoff: after,
                reason,
            }
            .emit();
            myself.send_after(after, move || Msg::Restart(child));
            Ok(())
        }
        Decision::GiveUp => Err(format!("{name} failed too often, last: {reason}").into()),
    }
}
