//! One module per subcommand.

pub mod apikey;
pub mod demo;
pub mod dlq;
pub mod import;
pub mod jobs;
pub mod migrate;
pub mod serve;
