//! The export's actors, one per file: ExportPipeline (the root of an
//! attempt) → ExportReader (or several RangeReaders) → Exporter →
//! ObjectWriter; and the service's WebhookSender. Each file exports `NAME` (its `actor` label), `Msg`,
//! `Args`, `State`, a `…Ref` alias and `spawn_linked`.

pub mod export_pipeline;
pub mod export_reader;
pub mod exporter;
pub mod object_writer;
pub mod range_reader;
pub mod webhook_sender;
