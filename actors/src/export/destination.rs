//! Where an export's files go: a key of the configured store, a local
//! path confined to `storage.local_root`, or (a users export's ids) a
//! topic; and seed 002's default layout.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::format::{Compression, Format};
use super::value;
use crate::settings::{ExportSettings, StorageSettings};

/// Where an export's files go: the first file at `base`, the n-th (from 2)
/// beside it as `stem-n.ext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// An object store: `s3://bucket/key`.
    Store { bucket: String, key: String },
    /// A local file.
    Local { path: String },
    /// No file: the rows go as messages on a topic (a NON_COST_BASED
    /// group's reference ids).
    Topic { topic: String },
}

impl Destination {
    /// Where file `index` (from 0) goes: the base itself, then `stem-2.ext`,
    /// `stem-3.ext`, … (the extension is everything from the first dot of
    /// the last path segment, so `users.csv.gz` → `users-2.csv.gz`).
    pub fn file(&self, index: usize) -> Self {
        let numbered = |base: &str| {
            if index == 0 {
                return base.to_string();
            }
            let cut = base.rfind('/').map_or(0, |i| i + 1);
            let dot = base[cut..].find('.').map_or(base.len(), |i| cut + i);
            format!("{}-{}{}", &base[..dot], index + 1, &base[dot..])
        };
        match self {
            Self::Store { bucket, key } => Self::Store {
                bucket: bucket.clone(),
                key: numbered(key),
            },
            Self::Local { path } => Self::Local {
                path: numbered(path),
            },
            Self::Topic { .. } => self.clone(),
        }
    }

    /// `s3://bucket/key`, the path, or `kafka://topic`.
    pub fn uri(&self) -> String {
        match self {
            Self::Store { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::Local { path } => path.clone(),
            Self::Topic { topic } => format!("kafka://{topic}"),
        }
    }
}

impl Destination {
    /// Where `--out` points: `s3://bucket/key` (a bucket of the configured
    /// store, allowed by `storage.allowed_buckets`), or a local path, which
    /// must lie under `storage.local_root` when one is set.
    pub fn output(out: &str, storage: &StorageSettings) -> Result<Self, String> {
        if let Some(rest) = out.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty() && !k.ends_with('/'))
                .ok_or("expected s3://bucket/key")?;
            if !storage.configured() {
                return Err("no object store is configured (storage.endpoint, AWS_*)".into());
            }
            if !storage.allowed_buckets.is_empty()
                && !storage.allowed_buckets.iter().any(|b| b == bucket)
            {
                return Err(format!(
                    "bucket `{bucket}` is not in storage.allowed_buckets"
                ));
            }
            return Ok(Self::Store {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        if out.contains("://") {
            return Err("an output is a local path or s3://bucket/key".into());
        }
        let path = confined(Path::new(out), &storage.local_root)?;
        Ok(Self::Local {
            path: path.display().to_string(),
        })
    }

    /// Seed 002's layout, `{prefix}/{domain}/exports/{yyyy}/{mm}/
    /// {object}-{id}.{ext}`, in `exports.bucket` of the configured store,
    /// else under `exports.local_dir`.
    pub fn default_for(
        exports: &ExportSettings,
        storage: &StorageSettings,
        domain: Uuid,
        object: &str,
        id: Uuid,
        format: Format,
        compression: Compression,
    ) -> Self {
        let (year, month) = year_month_now();
        let ext = match format {
            Format::Parquet => ".parquet".to_string(),
            f => format!(".{}{}", f.as_str(), compression.extension()),
        };
        let key = format!("{domain}/exports/{year:04}/{month:02}/{object}-{id}{ext}");
        let key = match exports.prefix.trim_matches('/') {
            "" => key,
            prefix => format!("{prefix}/{key}"),
        };
        if storage.configured() {
            Self::Store {
                bucket: exports.bucket.clone(),
                key,
            }
        } else {
            Self::Local {
                path: exports.local_dir().join(key).display().to_string(),
            }
        }
    }
}

/// The current UTC year and month.
fn year_month_now() -> (i64, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, _) = value::civil(secs.div_euclid(86_400));
    (y, m)
}

/// `path` made absolute, with `..` refused and its existing part's symlinks
/// resolved, so it cannot lead out of `root` (when a root is set).
fn confined(path: &Path, root: &str) -> Result<PathBuf, String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("an output path may not contain `..`".into());
    }
    let absolute = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join(path);
    if path.file_name().is_none() {
        return Err("an output path names a file".into());
    }
    // The deepest folder that exists, resolved; the rest is created.
    let mut existing = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut rest = vec![absolute.file_name().expect("checked above").to_owned()];
    while !existing.exists() {
        let Some(name) = existing.file_name() else {
            break;
        };
        rest.push(name.to_owned());
        existing.pop();
    }
    let mut real =
        std::fs::canonicalize(&existing).map_err(|e| format!("{}: {e}", existing.display()))?;
    real.extend(rest.iter().rev());
    if !root.is_empty() {
        let root = std::fs::canonicalize(root).map_err(|e| format!("storage.local_root: {e}"))?;
        if !real.starts_with(&root) {
            return Err("the output path is outside storage.local_root".into());
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_after_the_first_are_numbered_before_the_extension() {
        let d = Destination::Store {
            bucket: "b".into(),
            key: "acme/exports/2026/11/node-1.v2.csv.gz".into(),
        };
        assert_eq!(d.file(0), d);
        assert_eq!(
            d.file(1).uri(),
            "s3://b/acme/exports/2026/11/node-1-2.v2.csv.gz"
        );
        let local = Destination::Local {
            path: "/tmp/out.d/users".into(),
        };
        assert_eq!(local.file(2).uri(), "/tmp/out.d/users-3");
    }
}
