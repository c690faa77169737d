//! Service: the root of a `ferry serve` process. It supervises the
//! long-lived actors (KafkaIngress, DlqActor, StatusPublisher, the
//! JobSweeper, the WebhookSender and the ExportScheduler): one that fails is started again after a backoff, with
//! the same arguments, under the same registered name (others find it by
//! name, so a restart needs no rewiring). One that fails too often within
//! the retry window stops the service, so the process exits non-zero and
//! its own supervisor (systemd, Kubernetes) takes over.

use std::collections::HashMap;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};

use super::{dlq, export_scheduler, job_sweeper, kafka_ingress, status_publisher, webhook_sender};
use crate::settings::RetrySettings;
use crate::supervision::{Decision, RestartPolicy};
use crate::telemetry::ActorRestarted;

pub const NAME: &str = "service";

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

    async fn spawn(&self, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
        let name = self.name();
        match self.clone() {
            Self::Dlq(args) => linked(name, dlq::DlqActor, args, supervisor).await,
            Self::Publisher(args) => {
                linked(name, status_publisher::StatusPublisher, args, supervisor).await
            }
            Self::Ingress(args) => {
                linked(name, kafka_ingress::KafkaIngress, *args, supervisor).await
            }
            Self::Sweeper(args) => linked(name, job_sweeper::JobSweeper, *args, supervisor).await,
            Self::Webhooks(args) => {
                linked(name, webhook_sender::WebhookSender, *args, supervisor).await
            }
            Self::Scheduler(args) => {
                linked(name, export_scheduler::ExportScheduler, *args, supervisor).await
            }
        }
    }
}

/// Spawns `actor` under `name`, linked to `supervisor`.
async fn linked<A: Actor>(
    name: &str,
    actor: A,
    args: A::Arguments,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let (actor, _) = Actor::spawn_linked(Some(name.to_string()), actor, args, supervisor).await?;
    Ok(actor.get_cell())
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

pub struct Service;

impl Actor for Service {
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
                if reason.as_deref() == Some("shutdown") {
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
            ActorRestarted {
                actor: name,
                job_id: uuid::Uuid::nil(),
                attempt: 0,
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
