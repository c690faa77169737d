//! What both import benchmarks share: timing the psql path and ferry,
//! ferry's peak RSS, and the table they print.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry::report::grouped;

pub const DOMAIN: &str = "5b0c7e4a-2f1d-4c3b-8a9e-6d7f1e2c3b4a";
pub const GROUP: &str = "bench-group";

pub struct Run {
    pub secs: f64,
    pub peak_rss_kib: Option<u64>,
}

/// One line of the table: the same case through both paths.
pub struct Row {
    pub case: &'static str,
    pub rows: u64,
    pub psql: Run,
    pub ferry: Run,
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!("| case | rows | psql path rows/s | ferry rows/s | ferry / psql | ferry peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let rate = |run: &Run| r.rows as f64 / run.secs;
        println!(
            "| {} | {} | {} ({:.1} s) | {} ({:.1} s) | {:.2}x | {} |",
            r.case,
            grouped(r.rows as i64),
            grouped(rate(&r.psql) as i64),
            r.psql.secs,
            grouped(rate(&r.ferry) as i64),
            r.ferry.secs,
            rate(&r.ferry) / rate(&r.psql),
            r.ferry
                .peak_rss_kib
                .map_or("-".into(), |k| format!("{} MiB", k / 1024)),
        );
    }
}

/// Runs a psql script (stopping at the first error), timed.
pub fn psql_timed(url: &str, script: &str) -> Result<Run> {
    let started = Instant::now();
    psql(url, script)?;
    Ok(Run {
        secs: started.elapsed().as_secs_f64(),
        peak_rss_kib: None,
    })
}

/// One value a query returns, as psql prints it.
#[allow(dead_code)] // not every bench reads one value
pub fn psql_value(url: &str, query: &str) -> Result<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", url, "-c", query])
        .output()?;
    if !out.status.success() {
        bail!("{query}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

pub fn psql(url: &str, script: &str) -> Result<()> {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("psql")?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("psql failed: {status}");
    }
    Ok(())
}

/// Runs `ferry import SOURCE`, sampling its peak RSS (VmHWM) until it exits.
pub fn ferry_run(
    ferry: &str,
    url: &str,
    source: &str,
    extra: &[&str],
    env: &[(String, String)],
) -> Result<Run> {
    let started = Instant::now();
    let mut child = Command::new(ferry)
        .args([
            "import", source, "--domain", DOMAIN, "--group", GROUP, "--json",
        ])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("ferry import failed: {status}");
            }
            break;
        }
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    let report: serde_json::Value = serde_json::from_str(out.trim())?;
    if report["status"] != "COMPLETED" {
        bail!("ferry import did not complete: {report}");
    }
    Ok(Run {
        secs,
        peak_rss_kib: Some(peak),
    })
}

pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub fn check(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
