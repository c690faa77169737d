//! Rows into file bytes: one [`FileEncoder`] per format. The exporter feeds
//! it rows and, whenever enough output is ready, cuts a part there: a
//! part always ends on a row, so a restarted export can continue a file
//! after its last stored part.
//!
//! Text formats are compressed in members: each part is whole gzip
//! members or a whole zstd frame. Concatenated members are one valid `.gz` / `.zst`
//! file (RFC 1952, the zstd frame format), so a file continued after a
//! restart needs no state from the attempt that began it.

use std::io::Write;

use tokio_postgres::Row;

use super::object::ColType;
use super::plan::OutField;
use super::value::{json_string, write_json, write_text, DecodeError, Raw};
use super::{Compression, Format};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("compressing: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Value(String),
    #[error("parquet: {0}")]
    Parquet(String),
}

/// Turns rows into a file's bytes, part by part.
pub trait FileEncoder: Send + 'static {
    /// Starts a file. `rows_before` rows of it are in parts already stored
    /// (a file continued after a restart): no header then, and JSON goes on
    /// after a comma.
    fn begin(&mut self, rows_before: u64) -> Result<(), EncodeError>;

    /// Encodes rows (the fields are the row's first columns).
    fn rows(&mut self, rows: &[Row]) -> Result<(), EncodeError>;

    /// Output bytes ready since the last cut.
    fn ready(&self) -> usize;

    /// Ends the current part after the last row given: its bytes.
    fn cut(&mut self) -> Result<Vec<u8>, EncodeError>;

    /// Ends the file: its last bytes.
    fn finish(&mut self) -> Result<Vec<u8>, EncodeError>;

    /// Takes `rows` rows that a [`TextEncoder`] of the same fields encoded
    /// and compressed as a run ([`TextEncoder::run`]), as if it had
    /// encoded them itself. Only text formats can.
    fn append(&mut self, _run: &[u8], _rows: u64) -> Result<(), EncodeError> {
        Err(EncodeError::Value(
            "this format cannot take rows encoded elsewhere".into(),
        ))
    }
}

/// Where an export's output is cut: a part whenever `part_bytes` are
/// ready, a file at `file_rows` rows or `file_bytes` bytes (0: no limit).
/// A cut always falls on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutter {
    pub part_bytes: usize,
    pub file_bytes: u64,
    pub file_rows: u64,
}

/// What to cut after some rows were encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Nothing,
    /// End the part: enough bytes are ready.
    Part,
    /// End the file: it is full.
    File,
}

impl Cutter {
    /// How many of `rows` more rows fit in a file that holds `in_file`.
    pub fn room(&self, in_file: u64, rows: usize) -> usize {
        match self.file_rows {
            0 => rows,
            n => n.saturating_sub(in_file).min(rows as u64) as usize,
        }
    }

    /// What to cut in a file of `in_file` rows whose cut parts hold
    /// `offset` bytes, with `ready` more bytes encoded.
    pub fn cut(&self, in_file: u64, offset: u64, ready: usize) -> Cut {
        let full_rows = self.file_rows > 0 && in_file >= self.file_rows;
        let full_bytes = self.file_bytes > 0 && offset + ready as u64 >= self.file_bytes;
        if full_rows || full_bytes {
            Cut::File
        } else if ready >= self.part_bytes {
            Cut::Part
        } else {
            Cut::Nothing
        }
    }
}

/// A part's compressed bytes: gzip members or one zstd frame, or plain
/// bytes.
pub struct Member {
    zstd_level: i32,
    inner: Inner,
    /// Input bytes written since the part began.
    written: usize,
}

enum Inner {
    Gzip(Blocks),
    /// The frame being written, after the part's finished frames; and
    /// whether it was given any input.
    Zstd {
        frame: zstd::stream::write::Encoder<'static, Vec<u8>>,
        input: bool,
    },
    Plain(Vec<u8>),
}

/// Input bytes per gzip member. Each is compressed whole by libdeflate,
/// which is faster than a streaming deflate at a given level and, at
/// level 1, makes a smaller file than `gzip -1`; a member starts without
/// the previous one's 32 KiB window, which costs well under 1% at this
/// size.
const BLOCK_BYTES: usize = 1 << 20;

/// gzip as a run of members, one per [`BLOCK_BYTES`] of input.
struct Blocks {
    compressor: libdeflater::Compressor,
    /// Input not compressed yet.
    pending: Vec<u8>,
    /// Whole members.
    out: Vec<u8>,
}

impl Blocks {
    fn new(level: u32) -> Self {
        let level = libdeflater::CompressionLvl::new(level as i32)
            .unwrap_or_else(|_| libdeflater::CompressionLvl::fastest());
        Self {
            compressor: libdeflater::Compressor::new(level),
            pending: Vec::with_capacity(BLOCK_BYTES),
            out: Vec::new(),
        }
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = BLOCK_BYTES - self.pending.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            if self.pending.len() == BLOCK_BYTES {
                self.compress()?;
            }
            bytes = later;
        }
        Ok(())
    }

    /// The pending input as one more member (an empty one when there is
    /// none and nothing was written: a valid, empty `.gz`).
    fn compress(&mut self) -> std::io::Result<()> {
        let start = self.out.len();
        let bound = self.compressor.gzip_compress_bound(self.pending.len());
        self.out.resize(start + bound, 0);
        let written = self
            .compressor
            .gzip_compress(&self.pending, &mut self.out[start..])
            .map_err(|e| std::io::Error::other(format!("gzip: {e:?}")))?;
        self.out.truncate(start + written);
        self.pending.clear();
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        if !self.pending.is_empty() || self.out.is_empty() {
            self.compress()?;
        }
        Ok(std::mem::take(&mut self.out))
    }
}

impl Member {
    pub fn new(compression: Compression, settings: &crate::settings::ExportSettings) -> Self {
        let zstd_level = settings.zstd_level.clamp(1, 19);
        let inner = match compression {
            Compression::Gzip => Inner::Gzip(Blocks::new(settings.gzip_level.clamp(1, 9))),
            Compression::Zstd => Inner::Zstd {
                frame: zstd_frame(zstd_level),
                input: false,
            },
            Compression::None => Inner::Plain(Vec::new()),
        };
        Self {
            zstd_level,
            inner,
            written: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.written += bytes.len();
        match &mut self.inner {
            Inner::Gzip(b) => b.write(bytes),
            Inner::Zstd { frame, input } => {
                *input |= !bytes.is_empty();
                frame.write_all(bytes)
            }
            Inner::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Compressed bytes so far (the compressor holds back a little).
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Gzip(b) => b.out.len(),
            Inner::Zstd { frame, .. } => frame.get_ref().len(),
            Inner::Plain(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes that are whole members (frames) already, after what
    /// was written so far, which becomes a member of its own.
    pub fn append_compressed(&mut self, compressed: &[u8]) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(b) => {
                if !b.pending.is_empty() {
                    b.compress()?;
                }
                b.out.extend_from_slice(compressed);
            }
            Inner::Zstd { frame, input } => {
                let mut bytes = match std::mem::take(input) {
                    true => std::mem::replace(frame, zstd_frame(self.zstd_level)).finish()?,
                    // No input: the encoder has written nothing of its own.
                    false => std::mem::take(frame.get_mut()),
                };
                bytes.extend_from_slice(compressed);
                *frame = zstd_frame_after(bytes, self.zstd_level);
            }
            Inner::Plain(v) => v.extend_from_slice(compressed),
        }
        Ok(())
    }

    /// Input bytes written since the part began.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Ends the part: its bytes; the next writes start a new one.
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        self.written = 0;
        match &mut self.inner {
            Inner::Gzip(b) => b.finish(),
            Inner::Zstd { frame, input } => {
                if !std::mem::take(input) && !frame.get_ref().is_empty() {
                    // Only appended frames: no empty frame after them.
                    return Ok(std::mem::take(frame.get_mut()));
                }
                std::mem::replace(frame, zstd_frame(self.zstd_level)).finish()
            }
            Inner::Plain(v) => Ok(std::mem::take(v)),
        }
    }
}

fn zstd_frame(level: i32) -> zstd::stream::write::Encoder<'static, Vec<u8>> {
    zstd_frame_after(Vec::new(), level)
}

/// A new frame, written after `done`.
fn zstd_frame_after(done: Vec<u8>, level: i32) -> zstd::stream::write::Encoder<'static, Vec<u8>> {
    zstd::stream::write::Encoder::new(done, level).expect("a zstd encoder with a level in range")
}

/// CSV (RFC 4180, a header row), JSON (an array) or JSONL.
pub struct TextEncoder {
    format: Format,
    types: Vec<ColType>,
    names: Vec<String>,
    /// `"name":` for each field, escaped once.
    keys: Vec<Vec<u8>>,
    member: Member,
    /// Rows of this file so far (JSON puts a comma before all but the first).
    rows_in_file: u64,
    scratch: Vec<u8>,
    value: Vec<u8>,
}

impl TextEncoder {
    pub fn new(format: Format, fields: &[OutField], member: Member) -> Self {
        let keys = fields
            .iter()
            .map(|f| {
                let mut k = Vec::new();
                json_string(f.name.as_bytes(), &mut k);
                k.push(b':');
                k
            })
            .collect();
        Self {
            format,
            types: fields.iter().map(|f| f.ty).collect(),
            names: fields.iter().map(|f| f.name.clone()).collect(),
            keys,
            member,
            rows_in_file: 0,
            scratch: Vec::with_capacity(1 << 18),
            value: Vec::new(),
        }
    }

    /// Bytes encoded since the last cut, before compression.
    pub fn written(&self) -> usize {
        self.member.written()
    }

    /// Starts a run: rows that another encoder of these fields takes into
    /// its file ([`FileEncoder::append`]), so no header, and JSON's first
    /// row with no comma before it. [`FileEncoder::cut`] ends it.
    pub fn start_run(&mut self) {
        self.rows_in_file = 0;
    }

    fn csv_row(&mut self, row: &Row) -> Result<(), EncodeError> {
        for (i, ty) in self.types.iter().enumerate() {
            if i > 0 {
                self.scratch.push(b',');
            }
            let Some(Raw(raw)) = row.try_get::<_, Option<Raw>>(i).map_err(value_error)? else {
                continue; // NULL: an empty field
            };
            match ty {
                ColType::Text | ColType::Other | ColType::Json => csv_field(raw, &mut self.scratch),
                ColType::Jsonb => {
                    self.value.clear();
                    write_text(*ty, raw, &mut self.value)?;
                    csv_field(&self.value, &mut self.scratch);
                }
                // Numbers, times, uuids and booleans never need quotes.
                _ => write_text(*ty, raw, &mut self.scratch)?,
            }
        }
        self.scratch.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn json_row(&mut self, row: &Row) -> Result<(), EncodeError> {
        self.scratch.push(b'{');
        for (i, ty) in self.types.iter().enumerate() {
            if i > 0 {
                self.scratch.push(b',');
            }
            self.scratch.extend_from_slice(&self.keys[i]);
            match row.try_get::<_, Option<Raw>>(i).map_err(value_error)? {
                None => self.scratch.extend_from_slice(b"null"),
                Some(Raw(raw)) => write_json(*ty, raw, &mut self.scratch)?,
            }
        }
        self.scratch.push(b'}');
        Ok(())
    }
}

fn value_error(e: tokio_postgres::Error) -> EncodeError {
    EncodeError::Value(e.to_string())
}

/// A CSV field, quoted when it holds a comma, a quote, a line break, or
/// nothing (an empty string, told apart from NULL's empty field).
fn csv_field(v: &[u8], out: &mut Vec<u8>) {
    let quote = v.is_empty() || v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quote {
        return out.extend_from_slice(v);
    }
    out.push(b'"');
    for &b in v {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

impl FileEncoder for TextEncoder {
    fn begin(&mut self, rows_before: u64) -> Result<(), EncodeError> {
        self.rows_in_file = rows_before;
        if rows_before > 0 {
            return Ok(());
        }
        self.scratch.clear();
        match self.format {
            Format::Csv => {
                for (i, name) in self.names.iter().enumerate() {
                    if i > 0 {
                        self.scratch.push(b',');
                    }
                    csv_field(name.as_bytes(), &mut self.scratch);
                }
                self.scratch.extend_from_slice(b"\r\n");
            }
            Format::Json => self.scratch.extend_from_slice(b"[\n"),
            Format::Jsonl | Format::Parquet => {}
        }
        self.member.write(&self.scratch)?;
        Ok(())
    }

    fn rows(&mut self, rows: &[Row]) -> Result<(), EncodeError> {
        self.scratch.clear();
        for row in rows {
            match self.format {
                Format::Csv => self.csv_row(row)?,
                Format::Json => {
                    if self.rows_in_file > 0 {
                        self.scratch.extend_from_slice(b",\n");
                    }
                    self.json_row(row)?;
                }
                Format::Jsonl | Format::Parquet => {
                    self.json_row(row)?;
                    self.scratch.push(b'\n');
                }
            }
            self.rows_in_file += 1;
        }
        self.member.write(&self.scratch)?;
        Ok(())
    }

    fn ready(&self) -> usize {
        self.member.len()
    }

    fn cut(&mut self) -> Result<Vec<u8>, EncodeError> {
        Ok(self.member.finish()?)
    }

    fn append(&mut self, run: &[u8], rows: u64) -> Result<(), EncodeError> {
        if self.format == Format::Json && self.rows_in_file > 0 && rows > 0 {
            self.member.write(b",\n")?;
        }
        self.member.append_compressed(run)?;
        self.rows_in_file += rows;
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<u8>, EncodeError> {
        if self.format == Format::Json {
            self.member.write(b"\n]\n")?;
        }
        Ok(self.member.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_are_cut_on_rows_or_bytes_and_parts_on_bytes() {
        let c = Cutter {
            part_bytes: 100,
            file_bytes: 1000,
            file_rows: 10,
        };
        assert_eq!(c.room(0, 25), 10);
        assert_eq!(c.room(8, 25), 2);
        assert_eq!(c.room(10, 25), 0);
        assert_eq!(c.cut(10, 0, 5), Cut::File, "full by rows");
        assert_eq!(c.cut(3, 950, 60), Cut::File, "full by bytes");
        assert_eq!(c.cut(3, 0, 120), Cut::Part);
        assert_eq!(c.cut(3, 0, 99), Cut::Nothing);
        let unlimited = Cutter {
            file_bytes: 0,
            file_rows: 0,
            ..c
        };
        assert_eq!(unlimited.room(1 << 40, 7), 7);
        assert_eq!(unlimited.cut(1 << 40, 1 << 40, 50), Cut::Nothing);
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let mut out = Vec::new();
        for v in [&b"plain"[..], b"a,b", b"say \"hi\"", b"two\nlines", b""] {
            csv_field(v, &mut out);
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"\"|"
        );
    }

    #[test]
    fn members_concatenate_into_one_valid_file() {
        let settings = crate::settings::ExportSettings::default();
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut m = Member::new(compression, &settings);
            m.write(b"first part\n").unwrap();
            let mut file = m.finish().unwrap();
            m.write(b"second part\n").unwrap();
            file.extend(m.finish().unwrap());
            let mut text = String::new();
            match compression {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&file[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&file[..])
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::None => text = String::from_utf8(file).unwrap(),
            }
            assert_eq!(text, "first part\nsecond part\n", "{compression:?}");
        }
    }

    /// A file made of a header, runs encoded by other encoders, and a
    /// footer reads back as one encoder's file, in every compression.
    #[test]
    fn runs_encoded_elsewhere_make_the_same_file() {
        let settings = crate::settings::ExportSettings::default();
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut file = Member::new(compression, &settings);
            file.write(b"[\n").unwrap();
            let run = |text: &[u8]| {
                let mut other = Member::new(compression, &settings);
                other.write(text).unwrap();
                other.finish().unwrap()
            };
            file.append_compressed(&run(b"{\"a\":1},\n{\"a\":2}"))
                .unwrap();
            file.write(b",\n").unwrap();
            file.append_compressed(&run(b"{\"a\":3}")).unwrap();
            file.write(b"\n]\n").unwrap();
            let bytes = file.finish().unwrap();
            let mut text = String::new();
            match compression {
                Compression::Gzip => {
                    flate2::read::MultiGzDecoder::new(&bytes[..])
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&bytes[..])
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                }
                Compression::None => text = String::from_utf8(bytes).unwrap(),
            }
            assert_eq!(
                text, "[\n{\"a\":1},\n{\"a\":2},\n{\"a\":3}\n]\n",
                "{compression:?}"
            );
        }
    }

    #[test]
    fn gzip_parts_of_many_blocks_and_of_none_read_back() {
        let settings = crate::settings::ExportSettings::default();
        let mut m = Member::new(Compression::Gzip, &settings);
        let lines: String = (0..300_000)
            .map(|i| format!("row {i},city {}\n", i % 97))
            .collect();
        assert!(lines.len() > 2 * BLOCK_BYTES);
        for chunk in lines.as_bytes().chunks(10_000) {
            m.write(chunk).unwrap();
        }
        assert!(!m.is_empty(), "whole blocks are compressed as they fill");
        let mut file = m.finish().unwrap();
        let empty = m.finish().unwrap();
        assert!(!empty.is_empty(), "an empty part is still a gzip member");
        file.extend(empty);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&file[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, lines);
    }
}
