//! The import's actors, one per file: ImportPipeline (the root of an
//! attempt) → FileFetcher → CsvReader | ParquetReader → BatchAccumulator →
//! CopyWriter × N. Each file exports `NAME` (its `actor` label), `Msg`,
//! `Args`, `State`, a `…Ref` alias and `spawn_linked`.

pub mod batch_accumulator;
pub mod copy_writer;
pub mod csv_reader;
pub mod file_fetcher;
pub mod import_pipeline;
pub mod parquet_reader;
