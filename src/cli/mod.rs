//! One module per subcommand.

pub mod demo;
pub mod import;
pub mod jobs;
pub mod migrate;
