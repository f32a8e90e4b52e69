//! A small `read_file` through the whole relace path (MCP over stdio → `serve --backend
//! relace` → HTTP → `scoped-repo-mcp api` → store), beside the same call on the local
//! backend and a bare HTTP GET of the same file from the API.
//!
//! Run: `cargo bench --bench relace_roundtrip` (prints a Markdown table).
//! `BENCH_CALLS` sets the number of calls per row (default 3000).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientRequest, PingRequest};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Stats(Vec<Duration>);

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }
    fn pct(&self, p: f64) -> Duration {
        self.0[((self.0.len() as f64 - 1.0) * p).round() as usize]
    }
    fn per_sec(&self) -> f64 {
        self.0.len() as f64 / self.0.iter().sum::<Duration>().as_secs_f64()
    }
    fn row(&self, name: &str) {
        println!(
            "| {name} | {} | {:.0} | {:.1} | {:.1} |",
            self.0.len(),
            self.per_sec(),
            self.pct(0.5).as_secs_f64() * 1e6,
            self.pct(0.99).as_secs_f64() * 1e6
        );
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_scoped-repo-mcp");

async fn client(
    data_dir: &std::path::Path,
    args: &[String],
    key: Option<&str>,
) -> RunningService<RoleClient, ()> {
    let (data_dir, args, key) = (
        data_dir.to_path_buf(),
        args.to_vec(),
        key.map(str::to_string),
    );
    let cmd = tokio::process::Command::new(BIN).configure(move |c| {
        c.arg("--data-dir")
            .arg(&data_dir)
            .arg("serve")
            .args(&args)
            .env("RUST_LOG", "warn")
            .env_remove("RELACE_API_KEY");
        if let Some(k) = &key {
            c.env("RELACE_API_KEY", k);
        }
    });
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
}

async fn read_file(c: &RunningService<RoleClient, ()>, id: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let args = json!({"repo_id": id, "path": "src/small.rs"});
        let serde_json::Value::Object(map) = args else {
            unreachable!()
        };
        let t = Instant::now();
        let r = c
            .call_tool(CallToolRequestParams::new("read_file").with_arguments(map))
            .await
            .unwrap();
        out.push(t.elapsed());
        assert_eq!(r.is_error, Some(false));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let small = vec![(
        RepoPath::parse("src/small.rs").unwrap(),
        "pub fn answer() -> u32 { 42 }\n".to_string(),
    )];
    let id = store
        .create_repo(Default::default(), &small)
        .unwrap()
        .0
        .id
        .to_string();
    let key = store.create_account_key("bench").unwrap();
    drop(store);

    let mut api = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["api", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(api.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();

    let local = client(dir.path(), &["--repo".into(), id.clone()], None).await;
    let relace = client(
        dir.path(),
        &[
            "--repo".into(),
            id.clone(),
            "--backend".into(),
            "relace".into(),
            "--base-url".into(),
            base.clone(),
        ],
        Some(&key),
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/repo/{id}/file/src/small.rs");

    // Warm up every path.
    for _ in 0..200 {
        local
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .unwrap();
        http.get(&url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    read_file(&local, &id, 200).await;
    read_file(&relace, &id, 200).await;

    let mut ping = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        local
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .unwrap();
        ping.push(t.elapsed());
    }
    let mut get = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(&key).send().await.unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        get.push(t.elapsed());
    }
    let local_read = Stats::new(read_file(&local, &id, calls).await);
    let relace_read = Stats::new(read_file(&relace, &id, calls).await);
    let (ping, get) = (Stats::new(ping), Stats::new(get));
    local.cancel().await.ok();
    relace.cancel().await.ok();

    println!("| measurement | n | calls/s | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");
    ping.row("rmcp floor: ping over stdio (local serve)");
    local_read.row("read_file, local backend (MCP → store)");
    relace_read.row("read_file, relace backend (MCP → client → api → store)");
    get.row("HTTP GET /repo/{id}/file/… straight to the api (reqwest, keep-alive)");
    println!();
    println!(
        "relace read_file p50 is {:.2}x the local one (+{:.0} µs); the API hop alone (HTTP GET p50) is {:.0} µs",
        relace_read.pct(0.5).as_secs_f64() / local_read.pct(0.5).as_secs_f64(),
        (relace_read.pct(0.5).as_secs_f64() - local_read.pct(0.5).as_secs_f64()) * 1e6,
        get.pct(0.5).as_secs_f64() * 1e6
    );
}
