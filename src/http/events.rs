//! `GET /v1/imports/{id}/events` and `GET /v1/exports/{id}/events`: a
//! job's progress as Server-Sent Events. A `progress` event carries the
//! job's view (as `GET …/{id}` shows it) each time it changes while the
//! job runs; an `end` event carries its final state, and the stream ends.
//! `curl -N` follows one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ferry_actors::job::store;
use ferry_actors::job::Family;
use ferry_actors::kinds::Job;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::answers::{JobId, Missing, Refusals};
use super::{exports, imports, Api, ApiError, Path, Tenant};

/// How often a running job is looked at.
const EVERY: Duration = Duration::from_millis(500);

/// One event of a job's stream.
#[derive(Serialize, ToSchema)]
pub struct JobEvent {
    event: EventKind,
    /// `progress` and `end`: the job's view, as JSON; `error`: why the job
    /// could not be read.
    data: String,
}

#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The job's view changed while it runs.
    Progress,
    /// The job's final state; the stream ends.
    End,
    /// The job could not be read; the stream ends.
    Error,
}

impl From<JobEvent> for Event {
    fn from(e: JobEvent) -> Self {
        // Named as serde names it: the name the API document shows.
        let name = serde_json::to_value(e.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Event::default().event(name).data(e.data)
    }
}

#[utoipa::path(get, path = "/v1/imports/{id}/events", operation_id = "followImport", tag = "imports", params(JobId),
    responses((status = 200, description = "`progress` events with the import's view while it runs, \
        then `end` with its final state; the stream then ends", content_type = "text/event-stream", body = JobEvent),
        Refusals, Missing))]
pub async fn import_events(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (domain, caller) = (tenant.domain, tenant.caller.clone());
    let uuid = Uuid::parse_str(&id).map_err(|_| imports::not_found(&id))?;
    let view = move |api: Arc<Api>| async move {
        let client = api.pool.get().await?;
        let job = store::get_in_domain(&**client, Family::Imports, domain, uuid)
            .await?
            .ok_or_else(|| imports::not_found(&uuid.to_string()))?;
        let view =
            imports::ImportView::of(&job).map(|v| serde_json::to_value(v).unwrap_or_default());
        Ok::<_, ApiError>((job.status.is_terminal(), view.unwrap_or_default()))
    };
    events(api, &caller, view).await
}

#[utoipa::path(get, path = "/v1/exports/{id}/events", operation_id = "followExport", tag = "exports", params(JobId),
    responses((status = 200, description = "`progress` events with the export's view while it runs, \
        then `end` with its final state; the stream then ends", content_type = "text/event-stream", body = JobEvent),
        Refusals, Missing))]
pub async fn export_events(
    State(api): State<Arc<Api>>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (domain, caller) = (tenant.domain, tenant.caller.clone());
    let view = move |api: Arc<Api>| {
        let id = id.clone();
        async move {
            let client = api.pool.get().await?;
            let job: Job = exports::owned(&**client, domain, &id).await?;
            let view = exports::linked(&api, &job, &**client).await?;
            Ok::<_, ApiError>((
                job.status.is_terminal(),
                serde_json::to_value(view).unwrap_or_default(),
            ))
        }
    };
    events(api, &caller, view).await
}

/// The stream of a job's views: the first read answers 404 for a job that
/// is not the caller's; then an event per change, and `end`. The stream
/// holds one of the caller's `http.max_streams_per_key` until it ends or
/// the client goes.
async fn events<F, Fut>(api: Arc<Api>, caller: &str, view: F) -> Result<Response, ApiError>
where
    F: Fn(Arc<Api>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(bool, Value), ApiError>> + Send + 'static,
{
    let permit = api.streams.take(caller).await?;
    let first = view(api.clone()).await?;
    let stream = follow(api, view, first).map(move |event| {
        let _held = &permit;
        event
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn follow<F, Fut>(
    api: Arc<Api>,
    view: F,
    first: (bool, Value),
) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(Arc<Api>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(bool, Value), ApiError>> + Send + 'static,
{
    // (the next view to send, the last one sent, whether the stream ended)
    let start = (Some(first), Value::Null, false);
    let view = Arc::new(view);
    futures::stream::unfold(start, move |(next, last, ended)| {
        let (api, view) = (api.clone(), view.clone());
        async move {
            if ended {
                return None;
            }
            let mut next = next;
            loop {
                let (terminal, current) = match next.take() {
                    Some(v) => v,
                    None => {
                        tokio::time::sleep(EVERY).await;
                        match view(api.clone()).await {
                            Ok(v) => v,
                            Err(e) => {
                                let event = JobEvent {
                                    event: EventKind::Error,
                                    data: e.message,
                                };
                                return Some((Ok(event.into()), (None, last, true)));
                            }
                        }
                    }
                };
                let event = |event| {
                    Ok(JobEvent {
                        event,
                        data: current.to_string(),
                    }
                    .into())
                };
                if terminal {
                    return Some((event(EventKind::End), (None, current, true)));
                }
                if current != last {
                    return Some((event(EventKind::Progress), (None, current, false)));
                }
            }
        }
    })
}
