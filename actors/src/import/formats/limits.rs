//! Hard limits on what an input may cost, enforced on the decompressed
//! stream as it is read, so a hostile file fails fast instead of filling
//! memory or disk: the total decompressed size, the decompression ratio
//! (a gzip or zstd bomb), and the bytes of one record (csv-async buffers a
//! whole record before the row checks see it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Below this many decompressed bytes the ratio is not judged: small,
/// repetitive files compress very well and are harmless.
pub const RATIO_GRACE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_decompressed_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_record_bytes: u64,
}

/// A limit was broken; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the input decompresses to more than import.max_decompressed_bytes ({0} bytes)")]
    Decompressed(u64),
    #[error(
        "the input decompresses more than import.max_compression_ratio ({0}:1): a compression bomb?"
    )]
    Ratio(u64),
    #[error("a record is longer than import.max_record_bytes ({0} bytes)")]
    Record(u64),
}

/// Counts what flows through it and fails the read that breaks a limit.
pub struct LimitedReader<R> {
    inner: R,
    limits: Limits,
    read: u64,
    /// Compressed bytes read from the source so far.
    compressed: Arc<AtomicU64>,
    /// Bytes read since the consumer last finished a record.
    since_record: Arc<AtomicU64>,
}

impl<R> LimitedReader<R> {
    pub fn new(inner: R, limits: Limits, compressed: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            limits,
            read: 0,
            compressed,
            since_record: Arc::default(),
        }
    }

    /// The consumer resets this after each record. Buffers between here and
    /// the parser make the record limit approximate, by their size.
    pub fn record_counter(&self) -> Arc<AtomicU64> {
        self.since_record.clone()
    }

    fn check(&self) -> Result<(), LimitError> {
        let l = &self.limits;
        if self.read > l.max_decompressed_bytes {
            return Err(LimitError::Decompressed(l.max_decompressed_bytes));
        }
        let compressed = self.compressed.load(Ordering::Relaxed).max(1);
        if self.read > RATIO_GRACE_BYTES && self.read / compressed > l.max_compression_ratio {
            return Err(LimitError::Ratio(l.max_compression_ratio));
        }
        if self.since_record.load(Ordering::Relaxed) > l.max_record_bytes {
            return Err(LimitError::Record(l.max_record_bytes));
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LimitedReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            self.read += n;
            self.since_record.fetch_add(n, Ordering::Relaxed);
            if let Err(e) = self.check() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
        polled
    }
}

/// The limit an I/O error reports, if it is one.
pub fn limit_error(e: &io::Error) -> Option<&LimitError> {
    e.get_ref()?.downcast_ref::<LimitError>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits() -> Limits {
        Limits {
            max_decompressed_bytes: u64::MAX,
            max_compression_ratio: u64::MAX,
            max_record_bytes: u64::MAX,
        }
    }

    async fn drain(mut r: LimitedReader<&[u8]>) -> Result<u64, LimitError> {
        let mut buf = vec![0; 4096];
        let mut total = 0;
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) => return Err(limit_error(&e).expect("a limit").clone()),
            }
        }
    }

    #[tokio::test]
    async fn each_limit_names_itself() {
        let data = vec![b'a'; 1 << 20];
        let compressed = Arc::new(AtomicU64::new(1 << 20));
        let ok = LimitedReader::new(&data[..], limits(), compressed.clone());
        assert_eq!(drain(ok).await, Ok(1 << 20));

        let l = Limits {
            max_decompressed_bytes: 1000,
            ..limits()
        };
        let r = LimitedReader::new(&data[..], l, compressed.clone());
        assert_eq!(drain(r).await, Err(LimitError::Decompressed(1000)));

        let l = Limits {
            max_record_bytes: 5000,
            ..limits()
        };
        let r = LimitedReader::new(&data[..], l, compressed.clone());
        assert_eq!(drain(r).await, Err(LimitError::Record(5000)));
    }

    #[tokio::test]
    async fn the_ratio_is_judged_past_the_grace() {
        let data = vec![0u8; (RATIO_GRACE_BYTES + (1 << 20)) as usize];
        let l = Limits {
            max_compression_ratio: 100,
            ..limits()
        };
        // 17 MiB from 16 KiB: 1088:1.
        let r = LimitedReader::new(&data[..], l, Arc::new(AtomicU64::new(16 << 10)));
        assert_eq!(drain(r).await, Err(LimitError::Ratio(100)));
        // The same ratio under the grace is fine.
        let small = vec![0u8; 1 << 20];
        let r = LimitedReader::new(&small[..], l, Arc::new(AtomicU64::new(1 << 10)));
        assert_eq!(drain(r).await, Ok(1 << 20));
    }
}
