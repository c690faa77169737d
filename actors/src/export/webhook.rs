//! Webhooks: where an export's completion may be POSTed, and one delivery.
//!
//! A `webhook_url` must be https to a public address; plain http, and
//! private, loopback, link-local or otherwise special addresses, only for
//! a host in `exports.webhook_allowed_hosts`. The check resolves the host,
//! and a delivery connects only to the addresses the check saw (a name that
//! resolves elsewhere the second time cannot reach an internal service),
//! and follows no redirect.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::token::webhook_signature;

/// A webhook URL that passed the check, with the addresses it may reach.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: reqwest::Url,
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

/// Whether an address is a public one: not loopback, private, link-local,
/// unspecified, multicast, shared (CGNAT), benchmarking, documentation,
/// protocol-assignment or reserved. An IPv6 form that carries an IPv4
/// address (mapped, compatible, NAT64, 6to4) is judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local, link-local, site-local (deprecated, still
                // routed inside sites).
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // IETF protocol assignments (Teredo, benchmarking, ORCHID),
                // documentation, NAT64 for local use, discard-only.
                || (s[0] == 0x2001 && s[1] < 0x0200)
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0]))
        }
    }
}

/// The IPv4 address an IPv6 form carries: `::ffff:a.b.c.d` (mapped),
/// `::a.b.c.d` (compatible), `64:ff9b::a.b.c.d` (NAT64), `2002:AABB:CCDD::`
/// (6to4).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| (u32::from(hi) << 16 | u32::from(lo)).into();
    match s {
        [0, 0, 0, 0, 0, 0 | 0xffff, hi, lo] if !(hi == 0 && lo <= 1) => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// The host a webhook URL names, lowercased, as deliveries in flight are
/// bounded by (`exports.webhook_per_host`); None for a URL that has none.
pub fn host_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    Some(parsed.host_str()?.to_ascii_lowercase())
}

/// Checks a webhook URL and resolves it.
pub async fn check(url: &str, allowed_hosts: &[String]) -> Result<Endpoint, String> {
    // The URL parser would drop a CR or LF and encode a space; a URL that
    // has one is refused as it was given.
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a webhook URL has no spaces or control characters".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or("a webhook URL names a host")?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let port = parsed
        .port_or_known_default()
        .ok_or("a webhook URL is http or https")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a webhook URL carries no credentials".into());
    }
    let allowed = allowed_hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h == host || h == format!("{host}:{port}")
    });
    match parsed.scheme() {
        "https" => {}
        "http" if allowed => {}
        "http" => {
            return Err(
                "a webhook must be https (http only to exports.webhook_allowed_hosts)".into(),
            )
        }
        other => return Err(format!("scheme `{other}` is not http(s)")),
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !allowed {
        if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, not a public address (allow the host in exports.webhook_allowed_hosts)",
                private.ip()
            ));
        }
    }
    Ok(Endpoint {
        url: parsed,
        host,
        addrs,
    })
}

/// How one delivery went.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The answer's status, when one came.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub took: Duration,
}

impl Delivery {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// Worth another try: no answer (a timeout, a refused connection), a
    /// 5xx, a 429, a 408. Any other 4xx will not change.
    pub fn retriable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s >= 500 || s == 429 || s == 408,
        }
    }
}

/// POSTs `body` to `url` (checked again: the URL was stored when the
/// export was asked for), signed with `secret`, all within `timeout`.
pub async fn deliver(
    url: &str,
    allowed_hosts: &[String],
    body: &str,
    secret: &[u8],
    delivery_id: i64,
    timeout: Duration,
) -> Delivery {
    let started = Instant::now();
    // The whole attempt, the name's lookup among it, is bounded: a
    // delivery's lease outlives it, so no other instance sends it meanwhile.
    let attempt = attempt(url, allowed_hosts, body, secret, delivery_id, timeout);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(delivery) => delivery,
        Err(_) => Delivery {
            status: None,
            error: Some(format!("no answer within {timeout:?}")),
            took: started.elapsed(),
        },
    }
}

async fn attempt(
    url: &str,
    allowed_hosts: &[String],
    body: &str,
    secret: &[u8],
    delivery_id: i64,
    timeout: Duration,
) -> Delivery {
    let started = Instant::now();
    let failed = |error: String| Delivery {
        status: None,
        error: Some(error),
        took: started.elapsed(),
    };
    let endpoint = match check(url, allowed_hosts).await {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let client = match reqwest::Client::builder()
        .resolve_to_addrs(&endpoint.host, &endpoint.addrs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sent = client
        .post(endpoint.url)
        .header("content-type", "application/json")
        .header("ferry-event", "export.completed")
        .header("ferry-delivery", delivery_id.to_string())
        .header(
            "ferry-signature",
            webhook_signature(secret, now, body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            Delivery {
                status: Some(status),
                error: (!response.status().is_success()).then(|| format!("HTTP {status}")),
                took: started.elapsed(),
            }
        }
        Err(e) => failed(crate::error::chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            // Loopback and private in disguise.
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:c0a8:1::1",
            "fec0::1",
            "198.18.0.1",
            "198.19.255.1",
            "192.0.0.8",
            "2001::1",
            "2001:db8::1",
            "64:ff9b:1::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "198.20.0.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_webhook_url_must_be_https_to_a_public_address() {
        for bad in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://169.254.169.254/latest",
            "https://[::1]:8443/x",
            "ftp://example.com/x",
            "https://user:pw@example.com/x",
            "not a url",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::7f00:1]/",
            "https://[2002:7f00:1::1]/",
            "https://[fec0::1]/",
            "https://198.18.0.1/",
            "https://192.0.0.8/",
        ] {
            assert!(check(bad, &[]).await.is_err(), "{bad}");
        }
        let allowed = vec!["127.0.0.1".to_string()];
        assert!(check("http://127.0.0.1:9000/hook", &allowed).await.is_ok());
        assert!(check("http://127.0.0.2:9000/hook", &allowed).await.is_err());
        // An allowed host, with what a header injection needs.
        for injected in [
            "http://127.0.0.1:9000/ok\r\nX-Injected: 1",
            "http://127.0.0.1:9000/a b",
            "http://127.0.0.1:9000/\tx",
        ] {
            let refused = check(injected, &allowed).await.unwrap_err();
            assert!(
                refused.contains("control characters"),
                "{injected:?}: {refused}"
            );
        }
    }
}
