//! A local S3 server for the tests, the benchmarks and the demo: s3s-fs on
//! 127.0.0.1 over a folder, with keys, so every request is SigV4-signed and
//! verified like a real store. The binary comes from `FERRY_S3S_FS`, the
//! cache `scripts/test.sh` installs into (`~/.cache/ferry/tools`), or PATH.
//! Like the local PostgreSQL, a watchdog ends it if its owner dies.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_actors::settings::StorageSettings;
use ferry_actors::storage::Store;

pub const ACCESS_KEY: &str = "ferry-local-key";
pub const SECRET_KEY: &str = "ferry-local-secret-0123456789";

pub struct LocalS3 {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

/// The s3s-fs binary to run.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("FERRY_S3S_FS") {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/ferry/tools/bin/s3s-fs");
    if cached.exists() {
        return cached;
    }
    "s3s-fs".into()
}

impl LocalS3 {
    pub fn start() -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("ferry-s3-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            child: None,
            watchdog: None,
        };
        server.restart()?;
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// ferry's `[storage]` for this server.
    pub fn settings(&self) -> StorageSettings {
        StorageSettings {
            endpoint: self.endpoint(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            ..StorageSettings::default()
        }
    }

    /// The same, as `FERRY__STORAGE__…` variables for a `ferry` process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("FERRY__STORAGE__ENDPOINT".into(), self.endpoint()),
            ("FERRY__STORAGE__ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            (
                "FERRY__STORAGE__SECRET_ACCESS_KEY".into(),
                SECRET_KEY.into(),
            ),
        ]
    }

    pub fn store(&self) -> Store {
        Store::new(&self.settings())
    }

    /// Uploads a local file, creating the bucket if needed.
    pub async fn put_file(&self, bucket: &str, key: &str, path: &std::path::Path) -> Result<()> {
        let store = self.store();
        store.create_bucket(bucket).await?;
        store.put_file(bucket, key, path).await?;
        Ok(())
    }

    /// Where the server keeps an object's bytes (s3s-fs stores each object
    /// as a file under `bucket/key`).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.join(bucket).join(key)
    }

    /// Kills the server, as a crash would.
    pub fn kill(&mut self) {
        for mut c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same port and folder.
    pub fn restart(&mut self) -> Result<()> {
        let bin = binary();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (scripts/test.sh installs it)", bin.display()))?;
        let script = format!(
            "trap '' HUP INT; while kill -0 {me} 2>/dev/null && kill -0 {s3} 2>/dev/null; do sleep 0.5; done; kill {s3} 2>/dev/null",
            me = std::process::id(),
            s3 = child.id(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.watchdog = Some(watchdog);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("s3s-fs did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
