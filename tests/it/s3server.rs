//! A real S3 server for the tests: s3s-fs on 127.0.0.1, with keys, so every
//! request is SigV4-signed and verified. The binary is installed by
//! `scripts/test.sh` (cached under `~/.cache/ferry/tools`), or named by
//! `FERRY_S3S_FS`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

pub const ACCESS_KEY: &str = "ferry-test-key";
pub const SECRET_KEY: &str = "ferry-test-secret-0123456789";

pub struct S3Server {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

fn binary() -> PathBuf {
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

impl S3Server {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ferry-s3-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
            watchdog: None,
        };
        server.restart();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// ferry's settings for this server.
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
    pub fn restart(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start s3s-fs ({}): {e}; scripts/test.sh installs it",
                    binary().display()
                )
            });
        // Ends the server if this test process dies first.
        let watchdog = format!(
            "trap '' HUP INT; while kill -0 {} 2>/dev/null && kill -0 {} 2>/dev/null; do sleep 0.5; done; kill {} 2>/dev/null",
            std::process::id(),
            child.id(),
            child.id()
        );
        self.watchdog = Some(
            Command::new("sh")
                .args(["-c", &watchdog])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .build();
        Client::from_conf(config)
    }

    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let client = self.client();
        let _ = client.create_bucket().bucket(bucket).send().await;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .expect("put object");
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
