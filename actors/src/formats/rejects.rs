//! The rejects file: one CSV line per rejected row, its position (`line`
//! of a CSV file, `row` of a Parquet file), `reason`, then the row's
//! original fields, so an operator can fix the rows and load them
//! again (like pgloader's reject file). It is created on the first reject
//! only, and it can be cut back to a checkpoint's length on resume so that a
//! restarted job does not list a row twice.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::error::ImportError;

/// Appends `field` to `out` as one CSV field, quoted when it must be.
pub fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs_quotes = field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends one record (fields joined by commas, CRLF-free `\n` end).
pub fn push_csv_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a [u8]>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_csv_field(out, f);
    }
    out.push(b'\n');
}

pub struct RejectsFile {
    path: PathBuf,
    header: Vec<u8>,
    file: Option<File>,
    buf: Vec<u8>,
    /// Bytes in the file once `buf` is flushed: the checkpoint value.
    len: u64,
}

impl RejectsFile {
    /// A rejects file at `path` whose first `resume_len` bytes are kept from
    /// an earlier attempt (0: start afresh). `position` names the first
    /// column; `columns` are the source's normalised headers.
    pub fn new(path: PathBuf, position: &str, columns: &[String], resume_len: u64) -> Self {
        let mut header = Vec::new();
        push_csv_record(
            &mut header,
            [position, "reason"]
                .into_iter()
                .chain(columns.iter().map(String::as_str))
                .map(str::as_bytes),
        );
        Self {
            path,
            header,
            file: None,
            buf: Vec::new(),
            len: resume_len,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far, counting what is still buffered.
    pub fn len(&self) -> u64 {
        self.len + self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push<'a>(
        &mut self,
        position: u64,
        reason: &str,
        fields: impl IntoIterator<Item = &'a [u8]>,
    ) {
        if self.is_empty() {
            self.buf.extend_from_slice(&self.header);
        }
        self.buf.extend_from_slice(position.to_string().as_bytes());
        self.buf.push(b',');
        push_csv_field(&mut self.buf, reason.as_bytes());
        self.buf.push(b',');
        push_csv_record(&mut self.buf, fields);
    }

    /// Writes what is buffered and returns the length a checkpoint
    /// records; a failure is `actor`'s, worth a restart.
    pub async fn checkpoint(&mut self, actor: &'static str) -> Result<u64, ImportError> {
        self.flush().await.map_err(|e| ImportError::Stage {
            actor,
            reason: format!("writing {}: {e}", self.path.display()),
            retriable: true,
        })?;
        Ok(self.len)
    }

    /// Writes what is buffered, so that `len()` is on disk.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(self.open().await?);
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&self.buf).await?;
        file.flush().await?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    async fn open(&self) -> io::Result<File> {
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .await?;
        // Cut back to the checkpoint: lines past it are written again.
        file.set_len(self.len).await?;
        file.seek(io::SeekFrom::Start(self.len)).await?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        push_csv_record(
            &mut out,
            [&b"plain"[..], b"a,b", b"say \"hi\"", b"two\nlines"],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n"
        );
    }

    #[tokio::test]
    async fn resume_cuts_back_to_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("ferry-rejects-{}", uuid::Uuid::new_v4()));
        let path = dir.join("job.csv");
        let cols = vec!["id".to_string()];
        let mut r = RejectsFile::new(path.clone(), "line", &cols, 0);
        r.push(2, "bad", [&b"a"[..]]);
        r.flush().await.unwrap();
        let checkpoint = r.len();
        r.push(5, "bad", [&b"b"[..]]);
        r.flush().await.unwrap();

        let mut again = RejectsFile::new(path.clone(), "line", &cols, checkpoint);
        again.push(5, "bad", [&b"b"[..]]);
        again.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "line,reason,id\n2,bad,a\n5,bad,b\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
