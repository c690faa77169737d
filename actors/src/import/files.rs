//! Multi-file imports (seed 003's "sharded outputs"): a request may name a
//! prefix (`…/daily/`), a glob in the last segment (`…/part-*.parquet`),
//! or a list (`filePaths`) instead of one file. The set is listed once,
//! when the job first starts, and kept in its checkpoint with each file's
//! size and ETag, so a resumed job reads the same files, and fails, naming
//! it, on one that changed or vanished since. Files are read one after
//! another, in name order (a list: in its order), as one job.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::import::source::{self, Folder, Source};
use crate::settings::{ImportSettings, StorageSettings};
use crate::storage::Store;
use crate::vocab::Target;

/// Whether a `filePath` names many files: a prefix, or a glob (a `*` in
/// its last segment; `?` is left to URLs' queries).
pub fn is_many(path: &str) -> bool {
    path.ends_with('/') || split_glob(path).1.contains('*')
}

/// How an explicit list is kept in the job's `source`: a JSON array.
pub fn list_source(paths: &[String]) -> String {
    serde_json::to_string(paths).unwrap_or_default()
}

/// The files of a `source` that is a list (see [`list_source`]).
fn listed_paths(source: &str) -> Option<Vec<String>> {
    source
        .starts_with('[')
        .then(|| serde_json::from_str(source).ok())
        .flatten()
}

/// Whether a job's `source` names many files.
pub fn is_file_set(source: &str) -> bool {
    listed_paths(source).is_some() || is_many(source)
}

/// A prefix or glob as its folder (up to its last `/`) and its pattern
/// (after it; empty for a prefix).
pub fn split_glob(path: &str) -> (&str, &str) {
    path.split_at(path.rfind('/').map_or(0, |i| i + 1))
}

/// One file of the set, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedFile {
    /// `s3://bucket/key` or a local path.
    pub uri: String,
    pub size: u64,
    /// The store's ETag; for a local file, its size and modification time.
    pub etag: String,
    /// Records read from it, once it was read to its end.
    #[serde(default)]
    pub records: u64,
    /// Whether it was read to its end (so `records` is all of it).
    #[serde(default)]
    pub read: bool,
}

impl ListedFile {
    /// A file as listed, not read yet.
    pub fn new(uri: String, size: u64, etag: String) -> Self {
        Self {
            uri,
            size,
            etag,
            records: 0,
            read: false,
        }
    }
}

/// A job's files and how far it got through them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSet {
    pub files: Vec<ListedFile>,
    /// Names under the prefix that are not the target's format, skipped.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// The file the job's committed position is in: a restart reads on
    /// from there. The files before it are committed whole.
    #[serde(default)]
    pub current: usize,
    /// Records of the files before `current`.
    #[serde(default)]
    pub records_before: u64,
    /// Bytes (as stored) of the files before `current`.
    #[serde(default)]
    pub bytes_before: u64,
}

impl FileSet {
    pub fn current(&self) -> Option<&ListedFile> {
        self.files.get(self.current)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// File `index` was read to its end, `records` records in all.
    pub fn read_to_end(&mut self, index: usize, records: u64) {
        if let Some(file) = self.files.get_mut(index) {
            file.records = records;
            file.read = true;
        }
    }

    /// Sets `current` to the file the job's `committed` records end in:
    /// past every file read to its end and committed whole (the last file
    /// stays current, so a restart after it finds it read to its end).
    pub fn locate(&mut self, committed: u64) {
        let (mut index, mut records, mut bytes) = (0, 0, 0);
        while let Some(file) = self.files.get(index) {
            let whole = file.read && committed >= records + file.records;
            if !whole || index + 1 == self.files.len() {
                break;
            }
            records += file.records;
            bytes += file.size;
            index += 1;
        }
        self.current = index;
        self.records_before = records;
        self.bytes_before = bytes;
    }
}

/// Whether a file's name is one a target reads.
fn readable(name: &str, target: Target) -> bool {
    let name = name.to_ascii_lowercase();
    match target {
        Target::Matches => name.ends_with(".parquet") || name.ends_with(".parq"),
        Target::Nodes => [".csv", ".csv.gz", ".csv.zst"]
            .iter()
            .any(|ext| name.ends_with(ext)),
    }
}

/// `*` any run of characters; every other character itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn refuse(uri: &str, reason: impl Into<String>) -> JobError {
    JobError::Source {
        uri: uri.to_string(),
        reason: reason.into(),
        retriable: false,
    }
}

fn storage_error(uri: &str, e: crate::storage::StorageError) -> JobError {
    JobError::Source {
        uri: uri.to_string(),
        reason: e.message,
        retriable: e.retriable,
    }
}

/// Lists the files a job's `source` names, checked against the limits:
/// none is a failure naming the prefix, as are too many files or bytes.
pub async fn list(
    source: &str,
    target: Target,
    storage: &StorageSettings,
    import: &ImportSettings,
) -> Result<FileSet, JobError> {
    let set = match listed_paths(source) {
        Some(paths) => list_paths(&paths, storage, import).await?,
        None => list_folder(source, target, storage, import).await?,
    };
    if set.files.is_empty() {
        let what = match target {
            Target::Matches => ".parquet",
            Target::Nodes => ".csv, .csv.gz or .csv.zst",
        };
        return Err(refuse(source, format!("no {what} file matches")));
    }
    at_most_max_files(source, set.files.len(), import)?;
    // Each file's own bound, known from the listing: before any is read.
    if let Some(big) = set.files.iter().find(|f| f.size > import.max_object_bytes) {
        return Err(refuse(
            &big.uri,
            format!(
                "{} bytes, over import.max_object_bytes ({})",
                big.size, import.max_object_bytes
            ),
        ));
    }
    let bytes = set.total_bytes();
    if bytes > import.max_job_bytes {
        return Err(refuse(
            source,
            format!(
                "{bytes} bytes in {} files, over import.max_job_bytes ({})",
                set.files.len(),
                import.max_job_bytes
            ),
        ));
    }
    Ok(set)
}

/// A prefix or a glob: the folder's files, in name order, those of the
/// target's format (or the glob's) kept, the others listed as skipped.
async fn list_folder(
    source: &str,
    target: Target,
    storage: &StorageSettings,
    import: &ImportSettings,
) -> Result<FileSet, JobError> {
    let (dir, pattern) = split_glob(source);
    let folder = Folder::parse(dir, storage)?;
    // Enough to tell "too many" from a full set; a folder holding more
    // fails, rather than being read in part.
    let most = import.max_files.saturating_mul(4).saturating_add(100);
    let store = Store::new(storage);
    let mut found: Vec<(String, ListedFile)> = match &folder {
        Folder::S3 { bucket, prefix } => {
            // Only keys starting with the glob's literal part are listed.
            let start = pattern.split('*').next().unwrap_or_default();
            store
                .list(bucket, &format!("{prefix}{start}"), most.saturating_add(1))
                .await
                .map_err(|e| storage_error(source, e))?
                .into_iter()
                .filter_map(|o| {
                    let name = o.key.strip_prefix(prefix.as_str())?.to_string();
                    Some((
                        name,
                        ListedFile::new(source::s3_url(bucket, &o.key), o.size, o.etag),
                    ))
                })
                .collect()
        }
        Folder::Local(dir) => {
            list_local(dir, most.saturating_add(1)).map_err(|e| refuse(source, e))?
        }
    };
    if found.len() > most {
        return Err(refuse(
            source,
            format!("more than {most} entries; name fewer files (a narrower prefix or glob)"),
        ));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut set = FileSet::default();
    for (name, mut file) in found {
        if !pattern.is_empty() && !glob_match(pattern, &name) {
            continue;
        }
        if name.contains('/') || !readable(&name, target) {
            set.skipped.push(name);
            continue;
        }
        // Some stores list no ETags; each file kept is looked up instead.
        if let (Folder::S3 { bucket, prefix }, true) = (&folder, file.etag.is_empty()) {
            file.etag = store
                .head(bucket, &format!("{prefix}{name}"))
                .await
                .map_err(|e| storage_error(&file.uri, e))?
                .etag;
        }
        set.files.push(file);
    }
    Ok(set)
}

/// A local folder's regular files (not its subfolders').
fn list_local(dir: &Path, most: usize) -> Result<Vec<(String, ListedFile)>, String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if found.len() == most {
            break;
        }
        let path = entry.path();
        found.push((
            entry.file_name().to_string_lossy().into_owned(),
            ListedFile::new(path.display().to_string(), meta.len(), local_etag(&meta)),
        ));
    }
    Ok(found)
}

/// A local file's stand-in for an ETag: its size and modification time.
pub fn local_etag(meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}-{modified}", meta.len())
}

fn at_most_max_files(source: &str, files: usize, import: &ImportSettings) -> Result<(), JobError> {
    match files > import.max_files {
        true => Err(refuse(
            source,
            format!(
                "{files} files, over import.max_files ({})",
                import.max_files
            ),
        )),
        false => Ok(()),
    }
}

/// An explicit list, in its order: each file looked up.
async fn list_paths(
    paths: &[String],
    storage: &StorageSettings,
    import: &ImportSettings,
) -> Result<FileSet, JobError> {
    // Before a file is looked up.
    at_most_max_files(&list_source(paths), paths.len(), import)?;
    let mut set = FileSet::default();
    for path in paths {
        let file = match Source::parse(path, storage)? {
            Source::S3 { bucket, key } => {
                let info = Store::new(storage)
                    .head(&bucket, &key)
                    .await
                    .map_err(|e| storage_error(path, e))?;
                ListedFile::new(source::s3_url(&bucket, &key), info.size, info.etag)
            }
            Source::Local(local) => {
                let meta = std::fs::metadata(&local).map_err(|e| refuse(path, e.to_string()))?;
                ListedFile::new(local.display().to_string(), meta.len(), local_etag(&meta))
            }
            Source::Inline(_) => return Err(refuse(path, "not a file")),
        };
        set.files.push(file);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(glob_match("part-*.parquet", "part-00001.parquet"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("part-*.parquet", "part-00001.parquet.tmp"));
        assert!(!glob_match("part-?.csv", "part-1.csv"), "? is itself");
        assert!(glob_match("*-*-*.csv", "a-b-c.csv"));
    }

    #[test]
    fn many_files_are_told_from_one() {
        assert!(is_many("s3://b/daily/2026-11-30/"));
        assert!(is_many("s3://b/daily/part-*.parquet"));
        assert!(!is_many("s3://b/daily/part-1.parquet"));
        assert!(!is_many("https://minio:9000/b/k.csv?versionId=3"));
        assert!(is_file_set(&list_source(&["a.csv".into()])));
        assert!(!is_file_set("a.csv"));
    }

    #[tokio::test]
    async fn a_folder_past_the_listing_bound_fails_rather_than_loads_in_part() {
        let dir = std::env::temp_dir().join(format!("ferry-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let import = ImportSettings {
            max_files: 1,
            ..ImportSettings::default()
        };
        let storage = StorageSettings {
            local_root: dir.display().to_string(),
            ..StorageSettings::default()
        };
        let folder = format!("{}/", dir.display());
        // The bound is 104 entries for one file: 104 are listed (and too
        // many files), 105 are refused as a folder too big to list.
        for i in 0..105 {
            if i == 104 {
                let err = list(&folder, Target::Nodes, &storage, &import)
                    .await
                    .unwrap_err();
                assert!(
                    err.to_string()
                        .contains("104 files, over import.max_files (1)"),
                    "{err}"
                );
            }
            std::fs::write(dir.join(format!("part-{i:03}.csv")), "reference_id\n1\n").unwrap();
        }
        let err = list(&folder, Target::Nodes, &storage, &import)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("more than 104 entries"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_committed_position_is_located_in_its_file() {
        let file = |size| ListedFile::new("f".into(), size, String::new());
        let mut set = FileSet {
            files: vec![file(10), file(20), file(30)],
            ..FileSet::default()
        };
        set.locate(50);
        assert_eq!(set.current, 0, "nothing read to its end yet");
        set.read_to_end(0, 100);
        set.locate(99);
        assert_eq!(set.current, 0);
        set.locate(100);
        assert_eq!(
            (set.current, set.records_before, set.bytes_before),
            (1, 100, 10)
        );
        // An empty file read to its end is passed over.
        set.read_to_end(1, 0);
        set.locate(100);
        assert_eq!(
            (set.current, set.records_before, set.bytes_before),
            (2, 100, 30)
        );
        set.read_to_end(2, 7);
        set.locate(107);
        assert_eq!(set.current, 2, "the last file stays current");
    }
}
