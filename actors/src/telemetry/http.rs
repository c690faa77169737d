//! Events of the HTTP API.

use std::time::Duration;

use metrics::{counter, histogram};

/// The HTTP API answered a request: by route (the template, so ids do not
/// multiply series), method and status.
pub struct HttpServed<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpServed<'_> {
    pub fn emit(self) {
        counter!(
            "ferry_http_requests_total",
            "route" => self.route.to_string(),
            "method" => self.method.to_string(),
            "status" => self.status.to_string()
        )
        .increment(1);
        histogram!("ferry_http_request_seconds", "route" => self.route.to_string())
            .record(self.elapsed.as_secs_f64());
    }
}
