//! Where an import reads from: a local path or a `file://` URL, or a list
//! of reference ids given inline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::ImportError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    /// Reference ids from the job row (a Kafka payload, `--refs`).
    Inline(Arc<Vec<String>>),
}

impl Source {
    pub fn parse(uri: &str) -> Result<Self, ImportError> {
        let refuse = |reason: &str| ImportError::Source {
            uri: uri.to_string(),
            reason: reason.to_string(),
            retriable: false,
        };
        if let Some(rest) = uri.strip_prefix("file://") {
            // file:///abs/path; a host part other than localhost is refused.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(refuse("a file:// URL needs an absolute path"));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(refuse(&format!("unsupported scheme `{scheme}`")));
        }
        if uri.is_empty() {
            return Err(refuse("empty path"));
        }
        Ok(Self::Local(PathBuf::from(uri)))
    }

    /// Where rejects go: `dir/JOBID.csv`; with no folder configured, a
    /// `rejects/` folder beside a file source, or the system's temp folder
    /// (`ferry-rejects/`) for inline ids.
    pub fn rejects_path(&self, job_id: Uuid, rejects_dir: &str) -> PathBuf {
        let dir = match self {
            _ if !rejects_dir.is_empty() => PathBuf::from(rejects_dir),
            Self::Local(path) => path.parent().unwrap_or(Path::new(".")).join("rejects"),
            Self::Inline(_) => std::env::temp_dir().join("ferry-rejects"),
        };
        dir.join(format!("{job_id}.csv"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(
            Source::parse("file:///data/u.csv.gz").unwrap(),
            Source::Local("/data/u.csv.gz".into())
        );
        assert_eq!(
            Source::parse("file://localhost/data/u.csv").unwrap(),
            Source::Local("/data/u.csv".into())
        );
        assert_eq!(
            Source::parse("u.csv").unwrap(),
            Source::Local("u.csv".into())
        );
        assert!(Source::parse("file://host/x").is_err());
        assert!(Source::parse("ftp://x/y").is_err());
    }

    #[test]
    fn rejects_go_beside_the_source() {
        let id = Uuid::nil();
        let s = Source::parse("/data/in/u.csv").unwrap();
        assert_eq!(
            s.rejects_path(id, ""),
            PathBuf::from(format!("/data/in/rejects/{id}.csv"))
        );
        assert_eq!(
            s.rejects_path(id, "/r"),
            PathBuf::from(format!("/r/{id}.csv"))
        );
    }
}
