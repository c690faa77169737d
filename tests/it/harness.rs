//! Test harness: one throwaway PostgreSQL cluster per test process (or
//! `DATABASE_URL` when set), a fresh database per test, and the real `ferry`
//! binary run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use ferry::localpg::{LocalPostgres, Tuning};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

static CLUSTER: OnceLock<String> = OnceLock::new();
static LOCAL: OnceLock<LocalPostgres> = OnceLock::new();

/// The server's admin URL: `DATABASE_URL`, or a cluster started for this run.
fn server_url() -> &'static str {
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        let local = LOCAL.get_or_init(|| {
            LocalPostgres::start(Tuning { durable: false })
                .expect("start a local PostgreSQL for the tests")
        });
        local.url()
    })
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// A database of its own for one test, and a folder for its files.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin_url = server_url().to_string();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("unexpected DATABASE_URL {admin_url}"),
        };
        Self {
            url,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `ferry ARGS` against this database and waits.
    pub async fn ferry(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().await.expect("run ferry")
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(args)
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .kill_on_drop(true);
        cmd
    }

    /// `ferry import FILE --json …` into `group`; returns the report and exit code.
    pub async fn import(
        &self,
        file: &Path,
        group: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Value, i32) {
        self.import_source(file.to_str().unwrap(), group, extra, env)
            .await
    }

    /// The same for any source: a path, `s3://…`, `http://…`.
    pub async fn import_source(
        &self,
        source: &str,
        group: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Value, i32) {
        self.import_into("nodes", source, group, extra, env).await
    }

    /// `ferry import SOURCE --target matches --json …` into `group`.
    pub async fn import_matches(
        &self,
        source: &str,
        group: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Value, i32) {
        self.import_into("matches", source, group, extra, env).await
    }

    async fn import_into(
        &self,
        target: &str,
        source: &str,
        group: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Value, i32) {
        let mut args = vec![
            "import", source, "--target", target, "--domain", DOMAIN, "--group", group, "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.ferry(&args, env).await;
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); exit {code}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (report, code)
    }

    pub async fn count(&self, group: &str) -> i64 {
        self.of_group(
            "SELECT count(*) FROM nodes WHERE group_id = $1 AND domain_id = $2",
            group,
        )
        .await
    }

    /// A digest of a group's (reference_id, type, metadata): equal digests
    /// mean equal row sets.
    pub async fn digest(&self, group: &str) -> String {
        self.of_group(
            "SELECT coalesce(md5(string_agg(reference_id || '|' || type || '|' || metadata::text, E'\\n'
                                    ORDER BY reference_id)), 'empty')
             FROM nodes WHERE group_id = $1 AND domain_id = $2",
            group,
        )
        .await
    }

    pub async fn match_count(&self, group: &str) -> i64 {
        self.of_group(
            "SELECT count(*) FROM match_suggestions WHERE group_id = $1 AND domain_id = $2",
            group,
        )
        .await
    }

    /// A digest of a group's match suggestions: equal digests mean equal
    /// row sets, scores and ranks included.
    pub async fn match_digest(&self, group: &str) -> String {
        self.of_group(
            "SELECT coalesce(md5(string_agg(
                 participant_id || '|' || matched_participant_id || '|' ||
                 coalesce(compatibility_score::text, '-') || '|' || coalesce(rank::text, '-'),
                 E'\n' ORDER BY participant_id, matched_participant_id)), 'empty')
             FROM match_suggestions WHERE group_id = $1 AND domain_id = $2",
            group,
        )
        .await
    }

    /// The one value `sql` selects, given `$1` the group and `$2` the domain.
    async fn of_group<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        group: &str,
    ) -> T {
        self.client()
            .await
            .query_one(sql, &[&ferry_actors::job::group_uuid(group), &domain()])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

pub const DOMAIN: &str = "7d3c5a2e-1b4f-4e8a-9c6d-0f2e8b7a1c3d";

pub fn domain() -> uuid::Uuid {
    DOMAIN.parse().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Each of `fields` (a JSON pointer) of an API view is a time in RFC 3339,
/// UTC, as the README shows it.
pub fn assert_rfc3339(view: &serde_json::Value, fields: &[&str]) {
    for field in fields {
        let time = view.pointer(field).and_then(|t| t.as_str());
        let time = time.unwrap_or_else(|| panic!("{field} is not a string: {view}"));
        assert!(
            time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{field} is not RFC 3339 in UTC: {time}"
        );
    }
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The value of one series (`name{labels}`) in a Prometheus text file.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
