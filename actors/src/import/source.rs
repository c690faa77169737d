//! Where an import reads from, and what it may not read: an object of the
//! configured store (`s3://bucket/key`, or the seed's
//! `http://minio:9000/bucket/key`), a local file under `storage.local_root`,
//! or reference ids given inline. Every other URL is refused, so a payload
//! cannot make ferry fetch an arbitrary host (SSRF) or read outside its
//! folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::JobError;
use crate::settings::StorageSettings;

/// Whether a path or URL names a Parquet file (by its extension).
pub fn is_parquet(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    name.ends_with(".parquet") || name.ends_with(".parq")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
    /// Reference ids from the job row (a Kafka payload, `--refs`).
    Inline(Arc<Vec<String>>),
}

/// Where a multi-file import lists its files: a folder under
/// `storage.local_root`, or a prefix of a bucket of the configured store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// What a path names: a file, or a folder (a prefix).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Folder,
}

impl Source {
    pub fn parse(uri: &str, storage: &StorageSettings) -> Result<Self, JobError> {
        match parse(uri, storage, Kind::File)? {
            Parsed::Local(path) => Ok(Self::Local(path)),
            Parsed::S3 { bucket, key } => Ok(Self::S3 { bucket, key }),
        }
    }
}

impl Folder {
    /// A folder or prefix, under the same rules as a file: the configured
    /// store's hosts and buckets, or under `storage.local_root`.
    pub fn parse(uri: &str, storage: &StorageSettings) -> Result<Self, JobError> {
        match parse(uri, storage, Kind::Folder)? {
            Parsed::Local(path) => Ok(Self::Local(path)),
            Parsed::S3 { bucket, key } => Ok(Self::S3 {
                bucket,
                prefix: key,
            }),
        }
    }
}

enum Parsed {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

fn parse(uri: &str, storage: &StorageSettings, kind: Kind) -> Result<Parsed, JobError> {
    let refuse = |reason: String| JobError::Source {
        uri: uri.to_string(),
        reason,
        retriable: false,
    };
    let (scheme, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if uri.is_empty() => return Err(refuse("empty path".into())),
        None => return local(Path::new(uri), storage, kind).map_err(refuse),
    };
    match scheme.as_str() {
        "file" => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(refuse(
                    "a file:// URL needs an absolute path on this host".into(),
                ));
            }
            local(Path::new(&percent_decode(path)), storage, kind).map_err(refuse)
        }
        // As the AWS CLI, boto3 and Spark read it: the key as written
        // (Hive's partition folders hold a literal `%3A`).
        "s3" => object(rest, storage, kind, Key::Literal).map_err(refuse),
        "http" | "https" => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = with_port(authority, &scheme);
            if !allowed_hosts(storage).contains(&host) {
                return Err(refuse(format!(
                    "host `{host}` is not the storage endpoint nor in storage.allowed_hosts"
                )));
            }
            object(path, storage, kind, Key::UrlEncoded).map_err(refuse)
        }
        other => Err(refuse(format!("unsupported scheme `{other}`"))),
    }
}

impl Source {
    /// Where rejects are written while the job runs: `dir/JOBID.csv`; with
    /// no folder configured, a `rejects/` folder beside a local source, or
    /// the system's temp folder (`ferry-rejects/`) otherwise.
    pub fn rejects_path(&self, job_id: Uuid, rejects_dir: &str) -> PathBuf {
        let dir = match self {
            _ if !rejects_dir.is_empty() => PathBuf::from(rejects_dir),
            Self::Local(path) => path.parent().unwrap_or(Path::new(".")).join("rejects"),
            Self::S3 { .. } | Self::Inline(_) => std::env::temp_dir().join("ferry-rejects"),
        };
        dir.join(format!("{job_id}.csv"))
    }

    /// Where the rejects file goes in the store at the end, for an object
    /// source: `…/rejects/JOBID.csv` beside the object.
    pub fn rejects_object(&self, job_id: Uuid) -> Option<(String, String)> {
        let Self::S3 { bucket, key } = self else {
            return None;
        };
        let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
        let key = if dir.is_empty() {
            format!("rejects/{job_id}.csv")
        } else {
            format!("{dir}/rejects/{job_id}.csv")
        };
        Some((bucket.clone(), key))
    }
}

/// How a URL writes an object's key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `s3://`: the key itself.
    Literal,
    /// `http(s)://`: percent-encoded, ending at a query or fragment.
    UrlEncoded,
}

/// `bucket/key` (`bucket/prefix/` for a folder, the prefix possibly
/// empty), checked against `storage.allowed_buckets`.
fn object(path: &str, storage: &StorageSettings, kind: Kind, form: Key) -> Result<Parsed, String> {
    let (bucket, key) = path
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && (kind == Kind::Folder || !k.is_empty()))
        .ok_or("expected a path of the form bucket/key")?;
    let key = match form {
        Key::Literal => key.to_string(),
        Key::UrlEncoded => percent_decode(key.split(['?', '#']).next().unwrap_or(key)),
    };
    if !storage.allowed_buckets.is_empty() && !storage.allowed_buckets.iter().any(|b| b == bucket) {
        return Err(format!(
            "bucket `{bucket}` is not in storage.allowed_buckets"
        ));
    }
    Ok(Parsed::S3 {
        bucket: bucket.to_string(),
        key,
    })
}

/// A local path, confined to `storage.local_root` when one is set. A path
/// outside the root gets the same answer whether or not it exists, and no
/// answer names the root: a request must learn nothing of the files
/// around it.
fn local(path: &Path, storage: &StorageSettings, kind: Kind) -> Result<Parsed, String> {
    if storage.local_root.is_empty() {
        return Ok(Parsed::Local(path.to_path_buf()));
    }
    let root = std::fs::canonicalize(&storage.local_root)
        .map_err(|_| "storage.local_root is not a readable folder".to_string())?;
    let outside = || "outside storage.local_root".to_string();
    // Resolves `..` and symlinks, so neither can lead out of the root.
    match std::fs::canonicalize(path) {
        Ok(real) if real.starts_with(&root) => match (std::fs::metadata(&real), kind) {
            (Ok(m), Kind::File) if m.is_file() => Ok(Parsed::Local(real)),
            (Ok(m), Kind::Folder) if m.is_dir() => Ok(Parsed::Local(real)),
            // A FIFO, a device or a socket would block or never end.
            (Ok(_), Kind::File) => Err("not a regular file".into()),
            (Ok(_), Kind::Folder) => Err("not a folder".into()),
            (Err(e), _) => Err(e.to_string()),
        },
        Ok(_) => Err(outside()),
        Err(_) => match lexically_within(path, &root) {
            true => Err("no such file under storage.local_root".into()),
            false => Err(outside()),
        },
    }
}

/// Whether `path`, made absolute and its `.` and `..` applied as text,
/// lies under `root` (for a path that does not exist, so cannot be
/// resolved).
fn lexically_within(path: &Path, root: &Path) -> bool {
    use std::path::Component;
    let absolute = match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) => return false,
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in absolute.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let normal: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts)
        .collect();
    normal.starts_with(root)
}

/// `host:port` of the endpoint and the allowed hosts, ports made explicit.
fn allowed_hosts(storage: &StorageSettings) -> Vec<String> {
    let endpoint = if storage.endpoint.is_empty() {
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default()
    } else {
        storage.endpoint.clone()
    };
    let mut hosts: Vec<String> = storage
        .allowed_hosts
        .iter()
        .map(|h| with_port(h, "http"))
        .collect();
    if let Some((scheme, rest)) = endpoint.split_once("://") {
        let authority = rest.split('/').next().unwrap_or(rest);
        hosts.push(with_port(authority, &scheme.to_ascii_lowercase()));
    }
    hosts
}

/// `host` → `host:80` (or 443), lower-cased; `host:port` as is.
fn with_port(authority: &str, scheme: &str) -> String {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let authority = authority.to_ascii_lowercase();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        authority
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{authority}:{port}")
    }
}

/// An object's `s3://bucket/key` URL, which [`Source::parse`] reads back
/// as that very key (an `s3://` key is literal).
pub fn s3_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// `%20` → ` `, for keys and paths in URLs. Invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> StorageSettings {
        StorageSettings {
            endpoint: "http://minio:9000".into(),
            allowed_hosts: vec!["files.internal".into()],
            ..StorageSettings::default()
        }
    }

    fn s3(bucket: &str, key: &str) -> Source {
        Source::S3 {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn object_urls() {
        let st = storage();
        assert_eq!(
            Source::parse("s3://b/dir/u.csv.gz", &st).unwrap(),
            s3("b", "dir/u.csv.gz")
        );
        assert_eq!(
            Source::parse("http://minio:9000/bucket/file%20one.csv.gz", &st).unwrap(),
            s3("bucket", "file one.csv.gz")
        );
        // An s3:// key is read as written, as the AWS CLI reads it.
        let hive = "daily/dt=2026-12-01T00%253A00/part-0.csv";
        assert_eq!(
            Source::parse(&format!("s3://engine/{hive}"), &st).unwrap(),
            s3("engine", hive)
        );
        assert_eq!(
            Source::parse("s3://b/a b?c#d%3A.csv", &st).unwrap(),
            s3("b", "a b?c#d%3A.csv")
        );
        for key in ["odd/a#1.parquet", "dt=2026-11-30T00%3A00.parquet", "q?x"] {
            assert_eq!(Source::parse(&s3_url("b", key), &st).unwrap(), s3("b", key));
        }
        assert_eq!(
            Source::parse("HTTP://MINIO:9000/b/k", &st).unwrap(),
            s3("b", "k")
        );
        assert_eq!(
            Source::parse("http://files.internal/b/k", &st).unwrap(),
            s3("b", "k")
        );
    }

    /// Only the host decides: ferry never fetches the URL itself, it reads
    /// bucket/key through the configured client, so `https://minio:9000`
    /// is the same store as `http://minio:9000`.
    #[test]
    fn other_hosts_and_schemes_are_refused() {
        let st = storage();
        for uri in [
            "http://169.254.169.254/latest/meta-data",
            "http://minio:9001/b/k",
            "http://evil.com@minio.evil/b/k",
            "ftp://minio:9000/b/k",
            "s3://bucket-only",
            "file://host/etc/passwd",
        ] {
            assert!(Source::parse(uri, &st).is_err(), "{uri} must be refused");
        }
        let st = StorageSettings {
            allowed_buckets: vec!["imports".into()],
            ..storage()
        };
        assert!(Source::parse("s3://imports/a.csv", &st).is_ok());
        assert!(Source::parse("s3://secrets/a.csv", &st).is_err());
    }

    #[test]
    fn local_paths_are_confined_to_the_root() {
        let root = tempfile_dir();
        let inside = root.join("in.csv");
        std::fs::write(&inside, "id\n").unwrap();
        let outside = root.parent().unwrap().join(format!(
            "{}-out.csv",
            root.file_name().unwrap().to_str().unwrap()
        ));
        std::fs::write(&outside, "id\n").unwrap();
        let link = root.join("link.csv");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let st = StorageSettings {
            local_root: root.display().to_string(),
            ..StorageSettings::default()
        };
        assert!(Source::parse(inside.to_str().unwrap(), &st).is_ok());
        assert!(Source::parse(&format!("file://{}", inside.display()), &st).is_ok());
        let dotdot = format!(
            "{}/../{}",
            root.display(),
            outside.file_name().unwrap().to_str().unwrap()
        );
        let missing_outside = root.parent().unwrap().join("no-such-file.csv");
        for bad in [
            outside.to_str().unwrap(),
            &dotdot,
            link.to_str().unwrap(),
            missing_outside.to_str().unwrap(),
            "/etc/passwd",
            "/etc/no-such-file",
        ] {
            // The same answer whether or not it exists; only the path given.
            let err = Source::parse(bad, &st).unwrap_err().to_string();
            assert_eq!(err, format!("source {bad}: outside storage.local_root"));
        }
        let missing = root.join("missing.csv");
        let err = Source::parse(missing.to_str().unwrap(), &st)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such file under storage.local_root"),
            "{err}"
        );
        // A FIFO would block its reader forever.
        let fifo = root.join("pipe.csv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = Source::parse(fifo.to_str().unwrap(), &st)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(&outside).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-src-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rejects_go_beside_the_source() {
        let id = Uuid::nil();
        let s = Source::parse("/data/in/u.csv", &StorageSettings::default()).unwrap();
        assert_eq!(
            s.rejects_path(id, ""),
            PathBuf::from(format!("/data/in/rejects/{id}.csv"))
        );
        assert_eq!(
            s.rejects_path(id, "/r"),
            PathBuf::from(format!("/r/{id}.csv"))
        );
        assert_eq!(
            s3("b", "in/u.csv").rejects_object(id),
            Some(("b".into(), format!("in/rejects/{id}.csv")))
        );
        assert_eq!(
            s3("b", "u.csv").rejects_object(id),
            Some(("b".into(), format!("rejects/{id}.csv")))
        );
    }
}
