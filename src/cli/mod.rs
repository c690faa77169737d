//! One module per subcommand.

pub mod apikey;
pub mod demo;
pub mod dlq;
pub mod import;
pub mod jobs;
pub mod migrate;
pub mod serve;

use crate::config::{Config, LogSettings};

/// With a progress bar or a demo on screen, only warnings are logged unless
/// a level was asked for.
pub fn quiet_logs(config: &mut Config) {
    if config.log.level == LogSettings::default().level && std::env::var_os("RUST_LOG").is_none() {
        config.log.level = "warn".into();
    }
}
