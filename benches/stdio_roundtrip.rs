//! Round trips through the real binary over stdio, side by side with rmcp's own floor
//! (a `ping` on the same connection) and with what a user would otherwise run (`git`).
//!
//! Run: `cargo bench --bench stdio_roundtrip` (prints a Markdown table).
//! `BENCH_CALLS` sets the number of small calls (default 5000).
//!
//! The audit trail's cost: a second server on the same store runs with
//! `--audit-retention 0` (no trail), and small reads alternate between the two in
//! blocks, so both see the same machine.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientRequest, PingRequest, ServerResult};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { samples }
    }
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }
    fn per_sec(&self) -> f64 {
        let total: Duration = self.samples.iter().sum();
        self.samples.len() as f64 / total.as_secs_f64()
    }
}

fn row(name: &str, s: &Stats) {
    println!(
        "| {name} | {} | {:.0} | {:.1} | {:.1} |",
        s.samples.len(),
        s.per_sec(),
        s.pct(0.5).as_secs_f64() * 1e6,
        s.pct(0.99).as_secs_f64() * 1e6
    );
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let small = vec![(
        RepoPath::parse("src/small.rs").unwrap(),
        "pub fn answer() -> u32 { 42 }\n".to_string(),
    )];
    let (row_, _) = store.create_repo(Default::default(), &small).unwrap();
    let id = row_.id.to_string();
    drop(store);

    let bin = env!("CARGO_BIN_EXE_scoped-repo-mcp");
    let start = |extra: &'static [&'static str]| {
        let data_dir = dir.path().to_path_buf();
        let repo = id.clone();
        let cmd = tokio::process::Command::new(bin).configure(move |c| {
            c.arg("--data-dir")
                .arg(&data_dir)
                .args(["serve", "--repo", &repo])
                .args(extra)
                .env("RUST_LOG", "warn");
        });
        TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
            .0
    };
    let client = ().serve(start(&[])).await.unwrap();
    let untraced = ().serve(start(&["--audit-retention", "0"])).await.unwrap();
    let read_once = |c: &rmcp::service::RunningService<rmcp::RoleClient, ()>| {
        let request = CallToolRequestParams::new("read_file")
            .with_arguments(args(json!({"repo_id": id, "path": "src/small.rs"})));
        let peer = c.peer().clone();
        async move {
            let t = Instant::now();
            let r = peer.call_tool(request).await.unwrap();
            assert_eq!(r.is_error, Some(false));
            t.elapsed()
        }
    };
    for _ in 0..200 {
        read_once(&client).await;
        read_once(&untraced).await;
    }
    let (mut traced_reads, mut untraced_reads) = (Vec::new(), Vec::new());
    for block in 0..10 {
        for _ in 0..calls / 10 {
            // Alternate which server goes first, so neither always follows the other.
            if block % 2 == 0 {
                traced_reads.push(read_once(&client).await);
                untraced_reads.push(read_once(&untraced).await);
            } else {
                untraced_reads.push(read_once(&untraced).await);
                traced_reads.push(read_once(&client).await);
            }
        }
    }
    untraced.cancel().await.ok();

    // Warm up both paths.
    for _ in 0..200 {
        client
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .unwrap();
        client
            .call_tool(
                CallToolRequestParams::new("read_file")
                    .with_arguments(args(json!({"repo_id": id, "path": "src/small.rs"}))),
            )
            .await
            .unwrap();
    }

    let mut ping = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let r = client
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .unwrap();
        ping.push(t.elapsed());
        assert!(matches!(r, ServerResult::EmptyResult(_)));
    }
    let mut read = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let r = client
            .call_tool(
                CallToolRequestParams::new("read_file")
                    .with_arguments(args(json!({"repo_id": id, "path": "src/small.rs"}))),
            )
            .await
            .unwrap();
        read.push(t.elapsed());
        assert_eq!(r.is_error, Some(false));
    }

    // update_repo_files with 1,000 files of ~1 KiB, each run writing new content.
    let body = "x".repeat(1000);
    let mut update = Vec::new();
    for run in 0..10 {
        let ops: Vec<Value> = (0..1000)
            .map(|i| json!({"type": "write", "path": format!("gen/d{}/f{i}.txt", i % 20), "content": format!("{run} {body}\n")}))
            .collect();
        let t = Instant::now();
        let r = client
            .call_tool(
                CallToolRequestParams::new("update_repo_files")
                    .with_arguments(args(json!({"repo_id": id, "operations": ops}))),
            )
            .await
            .unwrap();
        update.push(t.elapsed());
        assert_eq!(r.is_error, Some(false));
    }
    client.cancel().await.ok();

    // The same 1,000-file change by hand with git in a work tree: write, add, commit.
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let s = std::process::Command::new("git")
            .current_dir(work.path())
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success());
    };
    git(&["init", "-q"]);
    let mut git_update = Vec::new();
    for run in 0..10 {
        let t = Instant::now();
        for i in 0..1000 {
            let d = work.path().join(format!("gen/d{}", i % 20));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}.txt")), format!("{run} {body}\n")).unwrap();
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "update"]);
        git_update.push(t.elapsed());
    }
    let mut git_show = Vec::new();
    std::fs::write(
        work.path().join("small.rs"),
        "pub fn answer() -> u32 { 42 }\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "small"]);
    for _ in 0..200 {
        let t = Instant::now();
        let out = std::process::Command::new("git")
            .current_dir(work.path())
            .args(["show", "HEAD:small.rs"])
            .output()
            .unwrap();
        git_show.push(t.elapsed());
        assert!(out.status.success());
    }

    let (ping, read, update, git_update, git_show) = (
        Stats::new(ping),
        Stats::new(read),
        Stats::new(update),
        Stats::new(git_update),
        Stats::new(git_show),
    );
    println!("| measurement | n | calls/s | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");
    row("rmcp floor: ping over the same stdio connection", &ping);
    row("read_file, one small file", &read);
    row("`git show HEAD:small.rs` (a process per read)", &git_show);
    row("update_repo_files, 1,000 files of 1 KiB", &update);
    row(
        "git: write 1,000 files, `git add -A`, `git commit`",
        &git_update,
    );
    println!();
    println!(
        "read_file throughput is {:.2}x the rmcp floor; read_file p50 is {:.2}x ping p50; \
         update p50 is {:.2}x the git CLI's",
        read.per_sec() / ping.per_sec(),
        read.pct(0.5).as_secs_f64() / ping.pct(0.5).as_secs_f64(),
        update.pct(0.5).as_secs_f64() / git_update.pct(0.5).as_secs_f64()
    );
    let (traced, untraced) = (Stats::new(traced_reads), Stats::new(untraced_reads));
    println!();
    println!("| audit trail | n | calls/s | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");
    row("read_file, trail on (default)", &traced);
    row("read_file, `--audit-retention 0` (no trail)", &untraced);
    println!();
    println!(
        "read_file p50 with the trail is {:.3}x without it (p99 {:.3}x)",
        traced.pct(0.5).as_secs_f64() / untraced.pct(0.5).as_secs_f64(),
        traced.pct(0.99).as_secs_f64() / untraced.pct(0.99).as_secs_f64()
    );
}
