//! Compression is told by the first bytes of the stream, never by the file
//! name: a `.csv.gz` that is plain text, or a `.csv` that is gzip, is read
//! as what it is.

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// Peeks at the stream and wraps it in the matching decoder. Concatenated
/// gzip members (as `cat a.gz b.gz` makes) are read as one stream.
pub async fn decompress<R>(
    mut reader: R,
) -> std::io::Result<(Compression, Box<dyn AsyncRead + Send + Unpin>)>
where
    R: AsyncBufRead + Send + Unpin + 'static,
{
    let kind = Compression::sniff(reader.fill_buf().await?);
    let stream: Box<dyn AsyncRead + Send + Unpin> = match kind {
        Compression::None => Box::new(reader),
        Compression::Gzip => {
            let mut d = GzipDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
        Compression::Zstd => {
            let mut d = ZstdDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
    };
    Ok((kind, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"id,name"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }
}
