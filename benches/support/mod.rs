//! What the HTTP benchmarks share: a `serve --transport http` child on a free loopback
//! port, a process's `/proc` figures, and percentiles.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Start `serve --transport http --listen 127.0.0.1:0` on `data_dir` (plus `args`); the
/// child and the address it listens on. Its stderr is drained in the background.
pub fn spawn_http_server(data_dir: &Path, args: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scoped-repo-mcp"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// A number field of `/proc/PID/status` (`VmRSS:` in KiB, `Threads:`), 0 if unreadable.
pub fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `p` quantile of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `rg` with the flags that make it walk the files an import took (hidden files, ignore
/// files honoured outside a git work tree, as the import does) and print one line a
/// match, searching as `search_repo` does; `pattern` is the last argument, so callers
/// add their own flags first.
#[allow(dead_code)] // the line-search benchmarks only
pub fn rg_command(corpus: &Path, regex: bool, insensitive: bool) -> Command {
    let mut cmd = Command::new("rg");
    cmd.current_dir(corpus)
        .args([
            "--no-config",
            "--hidden",
            "--no-require-git",
            "--no-messages",
        ])
        .args([
            "--line-number",
            "--no-heading",
            "--with-filename",
            "--color",
            "never",
        ])
        .stdin(Stdio::null());
    if !regex {
        cmd.arg("--fixed-strings");
    }
    if insensitive {
        cmd.arg("--ignore-case");
    }
    cmd
}
