//! A binary COPY encoder that fills large buffers and hands them to
//! `CopyInSink` whole.
//!
//! tokio-postgres's own binary copy writer flushes every ~4 KiB through a
//! channel of capacity 1 (rust-postgres issue 1114), which makes the client
//! the bottleneck; here one frame is ~1 MiB, and encoding a row is a few
//! `extend_from_slice` calls.

use std::pin::pin;

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::{CopyInSink, Error};
use uuid::Uuid;

/// Bytes a frame grows to before it is sent.
pub const FRAME_BYTES: usize = 1 << 20;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// PostgreSQL's epoch for timestamps: 2000-01-01, in Unix microseconds.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

pub struct CopyEncoder {
    buf: BytesMut,
}

impl Default for CopyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyEncoder {
    pub fn new() -> Self {
        let mut buf = BytesMut::with_capacity(FRAME_BYTES + (64 << 10));
        buf.put_slice(SIGNATURE);
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        Self { buf }
    }

    pub fn row(&mut self, fields: i16) {
        self.buf.put_i16(fields);
    }

    pub fn int4(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    pub fn float8(&mut self, v: f64) {
        self.buf.put_i32(8);
        self.buf.put_f64(v);
    }

    pub fn int8(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.buf.put_i32(16);
        self.buf.put_slice(v.as_bytes());
    }

    pub fn text(&mut self, s: &str) {
        self.buf.put_i32(s.len() as i32);
        self.buf.put_slice(s.as_bytes());
    }

    /// jsonb's binary form is a version byte (1) and the JSON text.
    pub fn jsonb(&mut self, json: &str) {
        self.buf.put_i32(json.len() as i32 + 1);
        self.buf.put_u8(1);
        self.buf.put_slice(json.as_bytes());
    }

    pub fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// The encoded bytes so far, once they make a full frame.
    pub fn take_frame(&mut self) -> Option<Bytes> {
        (self.buf.len() >= FRAME_BYTES).then(|| self.buf.split().freeze())
    }

    /// The last frame, with the end-of-data trailer.
    pub fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

/// Streams rows into a started `COPY … FROM STDIN (FORMAT binary)`:
/// `encode_row` writes one row per call, and frames go out as they fill.
/// Returns the row count PostgreSQL reports.
pub async fn copy_rows<T>(
    sink: CopyInSink<Bytes>,
    rows: impl IntoIterator<Item = T>,
    mut encode_row: impl FnMut(&mut CopyEncoder, T),
) -> Result<u64, Error> {
    let mut sink = pin!(sink);
    let mut enc = CopyEncoder::new();
    for row in rows {
        encode_row(&mut enc, row);
        if let Some(frame) = enc.take_frame() {
            sink.send(frame).await?;
        }
    }
    sink.send(enc.finish()).await?;
    sink.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_binary_copy_layout() {
        let mut e = CopyEncoder::new();
        e.row(3);
        e.int8(7);
        e.text("ab");
        e.jsonb("{}");
        let bytes = e.finish();
        let mut want = Vec::new();
        want.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(&bytes[..], &want[..]);
    }

    #[test]
    fn frames_are_cut_when_full() {
        let mut e = CopyEncoder::new();
        let big = "x".repeat(FRAME_BYTES / 4);
        let mut frames = 0;
        for _ in 0..8 {
            e.row(1);
            e.text(&big);
            if e.take_frame().is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 2);
    }
}
