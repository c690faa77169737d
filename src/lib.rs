//! # ferry: the application shell
//!
//! The `ferry` binary's pieces, kept in a library so that the tests and the
//! benchmarks drive exactly the code users run. The engine (actors and
//! domain code) is the `ferry-actors` crate; dependencies point one way,
//! from here to there.
//!
//! # Layout
//!
//! - `config`: layered configuration (built-in `config/default.toml`, file,
//!   `FERRY__…` env vars; flags are applied by `main`).
//! - `telemetry`: tracing setup (text or JSON logs).
//! - `cli`: one module per subcommand (`import`, `imports` (also `jobs`),
//!   `export` (and `export users`), `exports`, `groups`, `schedules`,
//!   `serve`, `apikey`, `dlq`, `migrate`, `demo`), each with its clap
//!   arguments beside its handler.
//! - `report`: the end-of-job report of an import or an export, as text or
//!   JSON.
//! - `service`: `ferry serve` assembled (database, broker or an embedded
//!   one, the supervised actors, HTTP), and its shutdown.
//! - `http`: the API: `/v1/imports`, `/v1/exports` (views, create,
//!   download), `/v1/groups`, event streams, the OpenAPI document, the jobs
//!   page, API keys and JWTs, limits; health and metrics endpoints.
//! - `topics`: reading a Kafka topic from its start (DLQ, status events).
//! - `localpg`: a throwaway PostgreSQL cluster for the demo, tests, benches.
//! - `locals3`: a local S3 server (s3s-fs) for the same.
//! - `sample`: deterministic sample files.

pub mod cli;
pub mod config;
pub mod http;
pub mod localpg;
pub mod locals3;
pub mod report;
pub mod sample;
pub mod service;
pub mod telemetry;
pub mod topics;

#[cfg(test)]
mod tests {
    /// Every `pub mod` of a crate root is named in its `# Layout` map, and
    /// the map names no module that is gone.
    fn check_layout(lib: &str) {
        let (doc, code): (Vec<&str>, Vec<&str>) = lib.lines().partition(|l| l.starts_with("//!"));
        let layout: String = doc
            .iter()
            .skip_while(|l| !l.contains("# Layout"))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let declared: Vec<&str> = code
            .iter()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';'))
            .collect();
        assert!(!declared.is_empty(), "no modules found");
        for module in &declared {
            assert!(
                layout.contains(&format!("- `{module}`"))
                    || layout.contains(&format!(", `{module}`"))
                    || layout.contains(&format!("; `{module}`")),
                "`pub mod {module}` is not in the layout map"
            );
        }
        let named = layout
            .lines()
            .filter_map(|l| l.trim_start_matches("//!").trim().strip_prefix("- `"))
            .filter_map(|l| l.split('`').next());
        for module in named {
            assert!(
                declared.contains(&module),
                "the layout map names `{module}`, which is not a module"
            );
        }
    }

    #[test]
    fn the_layout_maps_name_every_module() {
        check_layout(include_str!("lib.rs"));
        check_layout(include_str!("../actors/src/lib.rs"));
    }
}
