//! The users export's actor: the ExportScheduler (`NAME`, `Msg`, `Args`,
//! `State`, a `…Ref` alias and `spawn_linked`). Each group's export runs
//! on the export pipeline (`crate::export::actors`).

pub mod export_scheduler;
