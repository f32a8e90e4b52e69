//! Time one `search_repo` call through a real `serve` process over MCP stdio, repeated:
//! the round trip a client sees, for comparing with the same search in process
//! (`line_search_stages`). Prints the median and the spread, then the server's resident
//! memory; and the server's pid first, so that a profiler can attach.
//!
//! Run: `cargo run --release --example serve_calls -- DATA_DIR REPO_ID ARGUMENTS_JSON
//! [RUNS [PAUSE_MS]]` (PAUSE_MS: a pause before each call, as between an agent's calls), e.g. `'{"query":"[A-Z]{4}_[A-Z]{4}","mode":"regex","max_results":200}'`
//! (`repo_id` is added). `@FILE` for ARGUMENTS_JSON takes one JSON object a line from
//! FILE, the calls going through them in turn (many questions, one p50). The server is
//! `target/release/scoped-repo-mcp`, or the binary `SERVE_BIN` names (to compare two
//! builds on one data directory).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, repo, arguments, rest @ ..] = args.as_slice() else {
        eprintln!("usage: serve_calls DATA_DIR REPO_ID ARGUMENTS_JSON [RUNS [PAUSE_MS]]");
        std::process::exit(2)
    };
    let runs: usize = rest.first().and_then(|s| s.parse().ok()).unwrap_or(51);
    let pause = Duration::from_millis(rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(0));
    let lines = match arguments.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).expect("read the arguments file"),
        None => arguments.clone(),
    };
    let calls: Vec<serde_json::Map<String, Value>> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut a: serde_json::Map<String, Value> =
                serde_json::from_str(l).expect("each ARGUMENTS_JSON line is a JSON object");
            a.insert("repo_id".into(), Value::String(repo.clone()));
            a
        })
        .collect();
    assert!(!calls.is_empty(), "no arguments given");
    let bin = std::env::var("SERVE_BIN").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/release/scoped-repo-mcp"
        )
        .to_string()
    });
    let cmd = tokio::process::Command::new(&bin).configure(|c| {
        c.arg("--data-dir")
            .arg(data)
            .args(["serve", "--repo", repo])
            .env("RUST_LOG", "warn");
    });
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let pid = transport.id().expect("a pid");
    println!("serve pid {pid}");
    let client = ().serve(transport).await.expect("MCP handshake");
    let cpu_before = cpu_seconds(pid);
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut size = 0;
    for run in 0..runs {
        tokio::time::sleep(pause).await;
        let call = CallToolRequestParams::new("search_repo")
            .with_arguments(calls[run % calls.len()].clone());
        let t = Instant::now();
        let r = client.call_tool(call).await.expect("search_repo");
        times.push(t.elapsed());
        assert_ne!(r.is_error, Some(true), "{:?}", r.content);
        size = serde_json::to_string(&r).map_or(0, |s| s.len());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // The server's processor time over the calls (user and system, every thread), which
    // other work on the machine disturbs less than the calls' wall time.
    if let Some(cpu) = cpu_seconds(pid).zip(cpu_before) {
        println!(
            "serve processor time: {:.2} ms a call",
            (cpu.0 - cpu.1) * 1e3 / runs as f64
        );
    }
    println!(
        "{runs} calls: p50 {:.2} ms, min {:.2} ms, p90 {:.2} ms; answer {size} bytes of JSON",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs * 9 / 10])
    );
    // The server's resident memory right after the calls, and once it has been idle
    // for a second (mapped pages are let go then): whole, heap, mapped files.
    for when in ["right after the calls", "after a second idle"] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or("?".into(), |v| v.trim().to_string())
        };
        println!(
            "serve resident {when}: {} (heap {}, files {}; peak so far {})",
            field("VmRSS:"),
            field("RssAnon:"),
            field("RssFile:"),
            field("VmHWM:")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = client.cancel().await;
}

/// User and system time a process has used, in seconds (`/proc/PID/stat`, fields 14 and
/// 15, in clock ticks of 1/100 s as on every Linux this runs on).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
