//! Configuration, layered: the built-in `config/default.toml` < a file
//! (`--config`) < `FERRY__SECTION__KEY` environment variables (and
//! `DATABASE_URL`) < command-line flags, which `main` applies last.

use std::path::Path;

use ferry_actors::settings::{
    DatabaseSettings, ExportSettings, ImportSettings, JobSettings, KafkaSettings, RetrySettings,
    StorageSettings,
};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub import: ImportSettings,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub jobs: JobSettings,
    #[serde(default)]
    pub kafka: KafkaSettings,
    #[serde(default)]
    pub exports: ExportSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub log: LogSettings,
}

/// `[http]`: the API, health and metrics endpoints of `ferry serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `host:port` to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where clients reach this service (`https://ferry.example.com`): the
    /// base of the links it hands out (an export's `download_url`). Empty:
    /// the address it listens on. Never the request's `Host` header, which
    /// the client chooses.
    #[serde(default)]
    pub public_url: String,
    /// Most jobs one `GET /v1/imports` page returns.
    #[serde(default = "default_max_page")]
    pub max_page: i64,
    /// A request body must have arrived this long after its headers; a
    /// slow client gets 408, and never holds a database connection: bodies
    /// are read before the database is touched.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: std::time::Duration,
    /// A connection must send a whole request head this long after it
    /// opens or after its last answer; else it is closed. This bounds both
    /// a client that sends its headers slowly and a keep-alive connection
    /// left idle, each of which holds a descriptor.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: std::time::Duration,
    /// Requests one API key may have in flight; more get 429.
    #[serde(default = "default_max_requests_per_key")]
    pub max_requests_per_key: usize,
    /// Event streams (`GET /v1/…/{id}/events`) one API key may have open;
    /// more get 429.
    #[serde(default = "default_max_streams_per_key")]
    pub max_streams_per_key: usize,
    /// The API's own database connections. Ingestion, the job queue and
    /// `/health/ready` have theirs, which the API cannot take.
    #[serde(default = "default_api_pool_size")]
    pub pool_size: usize,
    /// Secrets that sign download links (`/v1/exports/{id}/download?token=`):
    /// the first signs, every one verifies, so a key can be rotated while
    /// links signed with the old one live. Empty: a random key per process
    /// (its links work on that process only, until it restarts).
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// JWT bearer tokens (seed 001), beside API keys.
    #[serde(default)]
    pub jwt: JwtSettings,
}

/// `[http.jwt]`: bearer tokens signed with RS256 or ES256 by an identity
/// provider; off unless a key is given. `alg: none` and HMAC algorithms are
/// refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// A PEM public key (RSA or EC P-256).
    #[serde(default)]
    pub public_key_file: String,
    /// A JWKS file (`{"keys": [...]}`); a token's `kid` picks the key.
    #[serde(default)]
    pub jwks_file: String,
    /// `iss` a token must carry. Empty: any.
    #[serde(default)]
    pub issuer: String,
    /// `aud` a token must carry. Empty: any.
    #[serde(default)]
    pub audience: String,
    /// The claim that names the caller's domain (a UUID).
    #[serde(default = "default_domain_claim")]
    pub domain_claim: String,
}

fn default_domain_claim() -> String {
    "domain_id".into()
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            public_key_file: String::new(),
            jwks_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            domain_claim: default_domain_claim(),
        }
    }
}

impl JwtSettings {
    pub fn enabled(&self) -> bool {
        !self.public_key_file.is_empty() || !self.jwks_file.is_empty()
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_page() -> i64 {
    100
}
fn default_body_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}
fn default_header_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}
fn default_max_requests_per_key() -> usize {
    8
}
fn default_max_streams_per_key() -> usize {
    8
}
fn default_api_pool_size() -> usize {
    8
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: String::new(),
            max_page: default_max_page(),
            body_timeout: default_body_timeout(),
            header_timeout: default_header_timeout(),
            max_requests_per_key: default_max_requests_per_key(),
            max_streams_per_key: default_max_streams_per_key(),
            pool_size: default_api_pool_size(),
            signing_keys: Vec::new(),
            jwt: JwtSettings::default(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Level or tracing filter; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "default_format")]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn default_level() -> String {
    "info".into()
}
fn default_format() -> LogFormat {
    LogFormat::Text
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: default_format(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid configuration at `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// Loads the layers below the command line.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table = parse(DEFAULT_TOML, "built-in defaults")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        merge(&mut table, parse(&text, &path.display().to_string())?);
    }
    for (key, value) in env {
        if key == "DATABASE_URL" {
            set(&mut table, &["database", "url"], Value::String(value));
        } else if let Some(path) = key.strip_prefix("FERRY__") {
            let path: Vec<String> = path.split("__").map(str::to_lowercase).collect();
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            set(&mut table, &path, env_value(&value));
        }
    }
    from_table(table)
}

fn from_table(table: Table) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| ConfigError::Invalid {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn parse(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// An environment value is read as TOML (`4`, `true`, `["a","b"]`) when it
/// parses as such, and as a plain string otherwise (`2s`, a URL).
fn env_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set(table: &mut Table, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("made a table above");
    }
    t.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_toml_matches_the_structs_defaults() {
        let from_file = serde_json::to_value(load(None, vec![]).unwrap()).unwrap();
        let from_code = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(
            from_file, from_code,
            "config/default.toml and settings.rs disagree"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[import]\nwriters = 3\nbatch_rows = 10\n[database]\nurl = \"file-url\""
        )
        .unwrap();
        let c = load(
            Some(f.path()),
            env(&[
                ("FERRY__IMPORT__WRITERS", "5"),
                ("FERRY__IMPORT__LINGER", "250ms"),
                ("DATABASE_URL", "postgres://env/db"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.import.writers, 5);
        assert_eq!(c.import.batch_rows, 10);
        assert_eq!(c.import.linger, std::time::Duration::from_millis(250));
        assert_eq!(c.database.url, "postgres://env/db");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(None, env(&[("FERRY__IMPORT__BATCH_ROWZ", "1")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("import") && msg.contains("batch_rowz"),
            "{msg}"
        );
        let err = load(None, env(&[("FERRY__NOPE__X", "1")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(None, env(&[("FERRY__IMPORT__WRITERS", "many")])).unwrap_err();
        assert!(err.to_string().contains("import.writers"), "{err}");
    }
}
