//! A throwaway PostgreSQL cluster from the system's binaries, for the demo,
//! the tests and the benchmarks: `initdb` into a fresh folder, a free port
//! on 127.0.0.1, and a socket in the same folder.
//!
//! PostgreSQL refuses to run as root, so as root the cluster is made and run
//! as the `postgres` user. A small watchdog shell stops the server and
//! removes its folder once the owning process is gone, so a test run that
//! panics (or is killed) leaves nothing behind.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct LocalPostgres {
    pub dir: PathBuf,
    pub port: u16,
    bindir: PathBuf,
    as_postgres: bool,
}

/// Server settings for a local cluster.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// `fsync=off`: fine for tests, whose data is thrown away.
    pub durable: bool,
}

impl LocalPostgres {
    /// Creates and starts a cluster in a new folder under the system's temp
    /// folder (which the `postgres` user can reach, unlike `/root`).
    pub fn start(tuning: Tuning) -> Result<Self> {
        let parent = std::env::temp_dir().join("ferry-pg");
        let parent = parent.as_path();
        let bindir = bindir()?;
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        std::fs::create_dir_all(parent)?;
        let dir = parent.join(format!(
            "pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let me = Self {
            dir,
            port,
            bindir,
            as_postgres,
        };
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&me.dir))
            .context("chown the cluster folder to postgres")?;
            // The folder's parents must be traversable by postgres.
            let _ = Command::new("chmod").arg("o+x").arg(parent).status();
        }
        let data = me.dir.join("data");
        me.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        .context("initdb")?;
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 200\nshared_buffers = '512MB'\nmax_wal_size = '4GB'\n\
             checkpoint_timeout = '15min'\nlog_min_messages = warning\n",
            me.dir.display()
        );
        if !tuning.durable {
            conf.push_str("fsync = off\nfull_page_writes = off\n");
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)?;
        me.start_again()?;
        me.watchdog()?;
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are ended), as an outage.
    pub fn stop(&self) -> Result<()> {
        let data = self.dir.join("data");
        self.run_pg(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "fast", "-w", "stop"],
        )
    }

    /// Freezes the server and every backend (SIGSTOP), as a database that
    /// stopped answering without closing its connections; `false` thaws it.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))?;
        let main: i32 = pid_file.lines().next().unwrap_or_default().trim().parse()?;
        let mut pids = vec![main];
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`: the parent is after the command.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if parent == Some(main) {
                pids.push(pid);
            }
        }
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        for pid in pids {
            // SAFETY: kill only sends a signal to a process of this cluster.
            unsafe { libc::kill(pid, signal) };
        }
        Ok(())
    }

    /// Starts the server: at creation, and again after [`LocalPostgres::stop`].
    pub fn start_again(&self) -> Result<()> {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| format!("pg_ctl start (log: {})", log.display()))
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<()> {
        let bin = self.bindir.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd)
    }

    /// Stops the server and removes the folder when this process exits.
    fn watchdog(&self) -> Result<()> {
        let data = self.dir.join("data");
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = if self.as_postgres {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        };
        // Ctrl-C or a closed terminal must end the owner, not the watchdog:
        // it ignores HUP and INT and lives in its own process group.
        let script = format!(
            "trap '' HUP INT; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the cluster watchdog")?;
        Ok(())
    }
}

/// The folder of `initdb` and `pg_ctl`: `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn bindir() -> Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server binaries found (apt-get install postgresql)"),
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
