//! Time one `search_repo` call through a real `serve` process over MCP stdio, repeated:
//! the round trip a client sees, for comparing with the same search in process
//! (`line_search_stages`). Prints the median and the spread, then the server's resident
//! memory; and the server's pid first, so that a profiler can attach.
//!
//! Run: `cargo run --release --example serve_calls -- DATA_DIR REPO_ID ARGUMENTS_JSON
//! [RUNS [PAUSE_MS]]` (PAUSE_MS: a pause before each call, as between an agent's calls), e.g. `'{"query":"[A-Z]{4}_[A-Z]{4}","mode":"regex","max_results":200}'`
//! (`repo_id` is added). The server is `target/release/scoped-repo-mcp`.

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
    let mut arguments: serde_json::Map<String, Value> =
        serde_json::from_str(arguments).expect("ARGUMENTS_JSON is a JSON object");
    arguments.insert("repo_id".into(), Value::String(repo.clone()));
    let bin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/scoped-repo-mcp"
    );
    let cmd = tokio::process::Command::new(bin).configure(|c| {
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
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        tokio::time::sleep(pause).await;
        let call = CallToolRequestParams::new("search_repo").with_arguments(arguments.clone());
        let t = Instant::now();
        let r = client.call_tool(call).await.expect("search_repo");
        times.push(t.elapsed());
        assert_ne!(r.is_error, Some(true), "{:?}", r.content);
        size = serde_json::to_string(&r).map_or(0, |s| s.len());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
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
