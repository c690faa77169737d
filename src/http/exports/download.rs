//! `GET /v1/exports/{id}/download`: a file of an export through a signed
//! link, as its bytes (with `Range`) or a redirect to a presigned URL.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_actors::export::{Compression, Destination, Format};
use ferry_actors::job::store;
use ferry_actors::kinds::Work;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::answers::ErrorBody;
use crate::http::{Api, ApiError, Query};

use super::view::now_secs;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The signed token of the export's `download_url`.
    token: Option<String>,
    /// `1`: a 303 to a fresh presigned URL instead of the bytes.
    redirect: Option<String>,
}

fn unauthorized(why: impl std::fmt::Display) -> ApiError {
    tracing::info!(reason = %why, "A download token was refused.");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the download link is not valid",
    )
}

/// A file of a finished export, through a signed link (no API key): the
/// whole file or a `Range` of it, or with `redirect=1` a 303 to a fresh
/// presigned URL (seed 002: "will later return a 303").
#[utoipa::path(get, path = "/v1/exports/{id}/download", operation_id = "downloadExport", tag = "exports", security(()),
    params(("id" = String, Path, description = "The export's id"), DownloadQuery,
        ("Range" = Option<String>, Header, description = "`bytes=A-B`, `bytes=A-` or `bytes=-N`")),
    responses(
        (status = 200, description = "The file", content(
            (Vec<u8> = "application/gzip"), (Vec<u8> = "application/zstd"),
            (Vec<u8> = "text/csv"), (Vec<u8> = "application/json"),
            (Vec<u8> = "application/x-ndjson"), (Vec<u8> = "application/vnd.apache.parquet"))),
        (status = 206, description = "The range asked for"),
        (status = 303, description = "With `redirect=1`: a presigned URL",
            headers(("Location" = String, description = "The presigned URL"))),
        (status = 401, description = "The link's token is missing, forged, expired or not this export's", body = ErrorBody),
        (status = 404, description = "The export sent messages, not a file", body = ErrorBody),
        (status = 410, description = "The export's files have expired", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 503, description = "The store or the database is away; try again later", body = ErrorBody)))]
pub async fn download(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let export_id = Uuid::parse_str(&id).map_err(unauthorized)?;
    let token = q.token.ok_or_else(|| unauthorized("no token"))?;
    let file = api
        .signer
        .verify(&token, export_id, now_secs())
        .map_err(unauthorized)?;
    let client = api.pool.get().await?;
    let job = store::get::<Work>(&**client, export_id)
        .await?
        .ok_or_else(|| unauthorized("no such export"))?;
    drop(client);
    let Some(export) = job.work.export() else {
        return Err(unauthorized("not an export"));
    };
    if export.expired_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "the export's files have expired",
        ));
    }
    let location = export
        .result
        .as_ref()
        .and_then(|r| r.files.get(file))
        .map(|f| f.location.clone())
        .ok_or_else(|| unauthorized("no such file"))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .map(String::from);
    let name = location
        .uri()
        .rsplit('/')
        .next()
        .unwrap_or("export")
        .to_string();
    let content_type = match export.spec.format {
        Format::Parquet => export.spec.format.content_type(),
        f => match export.spec.compression {
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
            Compression::None => f.content_type(),
        },
    };
    let mut response = match (&location, &api.store) {
        (Destination::Store { bucket, key }, Some(store)) => {
            if q.redirect.as_deref() == Some("1") {
                let ttl = api
                    .config
                    .exports
                    .url_ttl
                    .min(Duration::from_secs(7 * 24 * 3600));
                let url = store
                    .presign_get(bucket, key, ttl)
                    .await
                    .map_err(ApiError::unavailable)?;
                return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response());
            }
            let (body, len, content_range) = store
                .get(bucket, key, range.as_deref())
                .await
                .map_err(|e| match e.message.contains("416") {
                    true => ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "bad_range",
                        "the range is not in the file",
                    ),
                    false => ApiError::unavailable(e),
                })?;
            let stream = tokio_util::io::ReaderStream::new(body.into_async_read());
            let status = if content_range.is_some() {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            let mut r = (status, HttpBody::from_stream(stream)).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            if let Some(cr) = content_range {
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    cr.parse().map_err(ApiError::internal)?,
                );
            }
            r
        }
        (Destination::Local { path }, _) => local_file(path, range.as_deref()).await?,
        (Destination::Store { .. }, None) => {
            return Err(ApiError::unavailable("no object store is configured"))
        }
        (Destination::Topic { .. }, _) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this export sent messages, not a file",
            ))
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.parse().map_err(ApiError::internal)?,
    );
    h.insert(
        header::ACCEPT_RANGES,
        "bytes".parse().map_err(ApiError::internal)?,
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}\"", name.replace('"', ""))
            .parse()
            .map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `bytes=A-B`, `bytes=A-`, `bytes=-N` of a file of `size` bytes: the
/// first and last byte; `None` when unsatisfiable.
fn byte_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let spec = spec.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

async fn local_file(path: &str, range: Option<&str>) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(spec) => {
            let (a, b) = byte_range(spec, size).ok_or_else(|| {
                ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    "the range is not in the file",
                )
            })?;
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::new(file.take(len));
    let mut r = (status, HttpBody::from_stream(stream)).into_response();
    r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{size}", start + len - 1);
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            cr.parse().map_err(ApiError::internal)?,
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
