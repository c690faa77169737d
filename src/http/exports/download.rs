//! `GET /v1/exports/{id}/download`: a file of an export through a signed
//! link, as its bytes (with `Range`) or a redirect to a presigned URL.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_actors::export::{Compression, Destination, Format};
use ferry_actors::job::store;
use ferry_actors::kinds::Work;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::http::answers::ErrorBody;
use crate::http::{Api, ApiError, Path, Query};

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
        ("Range" = Option<String>, Header, description = "`bytes=A-B`, `bytes=A-` or `bytes=-N`; another unit, bad syntax or several ranges are ignored (200, the whole file)")),
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
    let file = export
        .result
        .as_ref()
        .and_then(|r| r.files.get(file))
        .ok_or_else(|| unauthorized("no such file"))?;
    let range = match headers.get(header::RANGE).and_then(ByteRange::parse) {
        None => None,
        Some(r) => Some(r.within(file.bytes).ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "the range is not in the file",
            )
        })?),
    };
    let location = &file.location;
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
    let body = match (location, &api.store) {
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
            let spec = range.map(|(a, b)| format!("bytes={a}-{b}"));
            let body = store
                .get(bucket, key, spec.as_deref())
                .await
                .map_err(ApiError::unavailable)?;
            HttpBody::from_stream(tokio_util::io::ReaderStream::new(body.into_async_read()))
        }
        (Destination::Local { path }, _) => local_file(path, range).await?,
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
    let (status, len) = match range {
        None => (StatusCode::OK, file.bytes),
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, len.into());
    if let Some((a, b)) = range {
        let content_range = format!("bytes {a}-{b}/{}", file.bytes);
        h.insert(
            header::CONTENT_RANGE,
            content_range.parse().map_err(ApiError::internal)?,
        );
    }
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

/// One byte range of a `Range` header (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=A-B`
    Between(u64, u64),
    /// `bytes=A-`
    From(u64),
    /// `bytes=-N`: the last N bytes.
    Last(u64),
}

impl ByteRange {
    /// The range a header asks for; `None` for a header to ignore (and send
    /// the whole file, as RFC 9110 lets a server do): another unit, bad
    /// syntax, or more than one range. A number past 2^64 is taken as
    /// 2^64 - 1, so an end past the file clamps to it.
    fn parse(header: &axum::http::HeaderValue) -> Option<ByteRange> {
        let spec = header.to_str().ok()?.trim();
        let (unit, spec) = spec.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (a, b) = spec.trim().split_once('-')?;
        match (number(a.trim()), number(b.trim())) {
            (None, Some(n)) if a.trim().is_empty() => Some(ByteRange::Last(n)),
            (Some(a), None) if b.trim().is_empty() => Some(ByteRange::From(a)),
            (Some(a), Some(b)) if a <= b => Some(ByteRange::Between(a, b)),
            _ => None,
        }
    }

    /// The first and last byte in a file of `size` bytes; `None` when no
    /// byte of the file is in the range (416).
    fn within(self, size: u64) -> Option<(u64, u64)> {
        let last = size.checked_sub(1)?;
        let (start, end) = match self {
            ByteRange::Between(a, b) => (a, b.min(last)),
            ByteRange::From(a) => (a, last),
            ByteRange::Last(0) => return None,
            ByteRange::Last(n) => (size.saturating_sub(n), last),
        };
        (start <= end).then_some((start, end))
    }
}

/// Digits as a number, saturating at `u64::MAX`; `None` unless all digits.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

async fn local_file(path: &str, range: Option<(u64, u64)>) -> Result<HttpBody, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(ApiError::internal)?;
    let (start, len) = match range {
        None => (0, u64::MAX),
        Some((a, b)) => (a, b - a + 1),
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpBody::from_stream(tokio_util::io::ReaderStream::new(
        file.take(len),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(header: &str, size: u64) -> Option<Option<(u64, u64)>> {
        let header = axum::http::HeaderValue::from_str(header).unwrap();
        ByteRange::parse(&header).map(|r| r.within(size))
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(range("bytes=0-9", 100), Some(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Some(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Some(Some((90, 99))));
        assert_eq!(range("bytes=-1000", 100), Some(Some((0, 99))));
        assert_eq!(range("bytes=95-200", 100), Some(Some((95, 99))));
        assert_eq!(
            range("bytes=95-99999999999999999999999", 100),
            Some(Some((95, 99)))
        );
        // Not in the file: 416.
        assert_eq!(range("bytes=100-", 100), Some(None));
        assert_eq!(range("bytes=-0", 100), Some(None));
        assert_eq!(range("bytes=0-0", 0), Some(None));
        // Ignored: the whole file.
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=abc",
            "bytes=+1-2",
            "bytes=-",
            "bytes",
        ] {
            assert_eq!(range(ignored, 100), None, "{ignored}");
        }
    }
}
