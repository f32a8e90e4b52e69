//! Small `read_file` calls over streamable HTTP with 1, 8 and 64 concurrent sessions
//! (each on its own repo token), and the memory an idle session costs the server.
//!
//! Run: `cargo bench --bench http_sessions` (prints a Markdown table).
//! `BENCH_CALLS` sets the calls per session level (default 4000).

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::json;

mod support;
use support::{pct, proc_status, spawn_http_server};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let files = vec![(
        RepoPath::parse("src/small.rs").unwrap(),
        "pub fn answer() -> u32 { 42 }\n".to_string(),
    )];
    let (row, _) = store.create_repo(Default::default(), &files).unwrap();
    let repo = row.id;
    let tokens: Vec<String> = (0..264)
        .map(|i| {
            store
                .create_token(&format!("s{i}"), &[repo], Some(3600))
                .unwrap()
                .token
        })
        .collect();

    let (mut child, addr) = spawn_http_server(dir.path(), &[]);
    let url = format!("http://{addr}/mcp");
    let connect = |token: String| {
        let url = url.clone();
        async move {
            let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
            ().serve(StreamableHttpClientTransport::from_config(config))
                .await
                .unwrap()
        }
    };
    let args = json!({"repo_id": repo.to_string(), "path": "src/small.rs"})
        .as_object()
        .unwrap()
        .clone();

    println!("| concurrent sessions | calls | calls/s | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");
    for sessions in [1usize, 8, 64] {
        let mut clients = Vec::new();
        for t in tokens.iter().take(sessions) {
            clients.push(connect(t.clone()).await);
        }
        for c in &clients {
            for _ in 0..20 {
                c.call_tool(CallToolRequestParams::new("read_file").with_arguments(args.clone()))
                    .await
                    .unwrap();
            }
        }
        let per_session = (calls / sessions).max(20);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in &clients {
            let peer = c.peer().clone();
            let args = args.clone();
            tasks.spawn(async move {
                let mut samples = Vec::with_capacity(per_session);
                for _ in 0..per_session {
                    let t = Instant::now();
                    let r = peer
                        .call_tool(
                            CallToolRequestParams::new("read_file").with_arguments(args.clone()),
                        )
                        .await
                        .unwrap();
                    samples.push(t.elapsed());
                    assert_eq!(r.is_error, Some(false));
                }
                samples
            });
        }
        let mut all = Vec::new();
        while let Some(s) = tasks.join_next().await {
            all.extend(s.unwrap());
        }
        let wall = start.elapsed();
        all.sort();
        println!(
            "| {sessions} | {} | {:.0} | {:.0} | {:.0} |",
            all.len(),
            all.len() as f64 / wall.as_secs_f64(),
            pct(&all, 0.5).as_secs_f64() * 1e6,
            pct(&all, 0.99).as_secs_f64() * 1e6
        );
        for c in clients {
            c.cancel().await.ok();
        }
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc_status(child.id(), "VmRSS:");
    let mut idle = Vec::new();
    for t in tokens.iter().skip(64).take(200) {
        idle.push(connect(t.clone()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = proc_status(child.id(), "VmRSS:");
    println!();
    println!(
        "Server RSS {before} KiB before and {after} KiB with 200 idle sessions open: {:.1} KiB per idle session.",
        (after.saturating_sub(before)) as f64 / 200.0
    );
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}
