//! A soak: a mixed load of 16 streamable-HTTP sessions and 2 stdio sessions on two
//! repos — reading, searching both ways, updating, minting and revoking, and a share of
//! calls the scope refuses on purpose — for `SOAK_SECS` seconds (default 1800). Every
//! minute it samples each server's RSS, open file descriptors and threads, and the p50
//! and p99 of each tool over that minute.
//!
//! Run: `SOAK_SECS=1800 cargo bench --bench soak` (prints Markdown tables and a verdict
//! for each server process: RSS growth after the first 5 minutes at most 10%, file
//! descriptors and threads flat, and no error other than the refusals the load
//! provokes). "Flat" is a trend, not a span: sockets of calls in flight and tokio's
//! blocking threads (which exit after 10 s idle) come and go with the load, so the
//! counts wander by a few; a leak climbs. The highest count of the last third of the
//! minutes from minute 5 on may exceed that of the first third by at most 2.
//!
//! `SOAK_SERVER_LOG=FILTER` (a `RUST_LOG` filter, such as
//! `scoped_repo_mcp::store=debug`) keeps the stdio servers' logs, in
//! `$TMPDIR/soak-PID-stdio-N.log`: the ranked index logs its size each time it is
//! stored.

use std::collections::BTreeMap;

/// One minute's sample: (minute, calls so far, per server process (RSS KiB, open file
/// descriptors, threads)).
type Sample = (u64, u64, Vec<(u64, u64, u64)>);
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use scoped_repo_mcp::model::RepoId;
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};

mod support;
use support::{pct, proc_status, spawn_http_server};

const BIN: &str = env!("CARGO_BIN_EXE_scoped-repo-mcp");
const QUERIES: [&str; 4] = ["retry", "backoff", "fn f1", "scope ="];
type Client = RunningService<RoleClient, ()>;

/// Latencies per tool for the current minute, and the counters of the whole run.
#[derive(Default)]
struct Books {
    minute: Mutex<BTreeMap<&'static str, Vec<Duration>>>,
    calls: AtomicU64,
    refused_on_purpose: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

impl Books {
    fn record(&self, tool: &'static str, took: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.minute
            .lock()
            .unwrap()
            .entry(tool)
            .or_default()
            .push(took);
    }

    fn unexpected(&self, what: String) {
        let mut u = self.unexpected.lock().unwrap();
        if u.len() < 20 {
            u.push(what);
        }
    }
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// A small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn call(c: &Client, tool: &str, args: Value) -> Result<CallToolResult, String> {
    let Value::Object(map) = args else {
        unreachable!()
    };
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await
        .map_err(|e| e.to_string())
}

fn corpus(seed: u64) -> Vec<(RepoPath, String)> {
    let mut rng = Rng(seed);
    let words = [
        "retry", "backoff", "token", "scope", "index", "commit", "search", "parse",
    ];
    (0..300)
        .map(|i| {
            let body: String = (0..60)
                .map(|l| {
                    format!(
                        "fn f{l}_{}() {{ let {} = {}; }}\n",
                        words[rng.below(8) as usize],
                        words[rng.below(8) as usize],
                        rng.below(1000)
                    )
                })
                .collect();
            (
                RepoPath::parse(&format!("src/m{}/f{i}.rs", i % 12)).unwrap(),
                body,
            )
        })
        .collect()
}

/// One session of the load.
struct Session {
    client: Client,
    /// Its number, which seeds its choices and names its file.
    n: u64,
    /// The repo it works on.
    mine: RepoId,
    /// The other repo, which it reads now and then.
    other: RepoId,
    /// Whether its credential reaches `other` (else those reads are refused on purpose).
    can_reach_other: bool,
    /// Whether it also mints and revokes.
    minter: bool,
}

/// One session's loop until `deadline`.
async fn run_session(session: Session, deadline: Instant, books: Arc<Books>) {
    let Session {
        client: c,
        n,
        mine,
        other,
        can_reach_other,
        minter,
    } = session;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n + 1));
    let id = mine.to_string();
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let started = Instant::now();
        let (tool, args, refusal_expected): (&'static str, Value, bool) = match roll {
            0..=34 => {
                let i = rng.below(300);
                (
                    "read_file",
                    json!({"repo_id": id, "path": format!("src/m{}/f{i}.rs", i % 12)}),
                    false,
                )
            }
            35..=54 => (
                "search_repo",
                json!({"repo_id": id, "query": QUERIES[rng.below(4) as usize], "mode": "literal"}),
                false,
            ),
            55..=64 => (
                "search_repo",
                json!({"repo_id": id, "query": "where is the retry backoff computed", "mode": "ranked"}),
                false,
            ),
            65..=74 => ("list_files", json!({"repo_id": id, "prefix": "src"}), false),
            75..=91 => (
                "update_repo_files",
                json!({"repo_id": id, "operations": [{"type": "write", "path": format!("soak/s{n}.txt"), "content": format!("round {}\n", rng.next())}]}),
                false,
            ),
            92..=95 if minter => ("create_scoped_token", Value::Null, false),
            _ => (
                "read_file",
                json!({"repo_id": other.to_string(), "path": "src/m0/f0.rs"}),
                !can_reach_other,
            ),
        };
        if tool == "create_scoped_token" {
            let minted = call(
                &c,
                "create_scoped_token",
                json!({"name": format!("soak-{n}"), "repo_ids": [id], "ttl_seconds": 300}),
            )
            .await;
            match minted.as_ref().map(|r| r.structured_content.clone()) {
                Ok(Some(v)) => {
                    let token = v["token"].as_str().unwrap_or_default().to_string();
                    match call(&c, "revoke_token", json!({"token": token})).await {
                        Ok(r) if r.is_error != Some(true) => {}
                        other => books.unexpected(format!("revoke_token: {other:?}")),
                    }
                }
                other => books.unexpected(format!("create_scoped_token: {other:?}")),
            }
            books.record("create+revoke", started.elapsed());
            continue;
        }
        match call(&c, tool, args).await {
            Ok(r) if r.is_error == Some(true) && refusal_expected => {
                books.refused_on_purpose.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.is_error == Some(true) => books.unexpected(format!(
                "{tool}: {:?}",
                r.content.first().and_then(|c| c.as_text()).map(|t| &t.text)
            )),
            Ok(_) if refusal_expected => books.unexpected(format!("{tool}: not refused")),
            Ok(_) => {}
            Err(e) => books.unexpected(format!("{tool}: {e}")),
        }
        let name = match (tool, roll) {
            ("search_repo", 55..=64) => "search ranked",
            ("search_repo", _) => "search literal",
            (t, _) => t,
        };
        books.record(name, started.elapsed());
    }
    let _ = c.cancel().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Limits::default()).unwrap();
    let a = store
        .create_repo(Default::default(), &corpus(1))
        .unwrap()
        .0
        .id;
    let b = store
        .create_repo(Default::default(), &corpus(2))
        .unwrap()
        .0
        .id;
    let key = store.create_account_key("soak").unwrap();

    let (mut http, addr) = spawn_http_server(dir.path(), &[]);
    let url = format!("http://{addr}/mcp");
    let books = Arc::new(Books::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for n in 0..16u64 {
        let (mine, other) = if n % 2 == 0 { (a, b) } else { (b, a) };
        // Two sessions hold the account key (every repo, may mint); the rest hold a
        // repo token for one repo, so their calls to the other are refused on purpose.
        let (credential, reaches_other, minter) = if n < 2 {
            (key.clone(), true, true)
        } else {
            let t = store
                .create_token(&format!("agent-{n}"), &[mine], Some(secs + 600))
                .unwrap()
                .token;
            (t, false, false)
        };
        let config =
            StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(credential);
        let c = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
        let session = Session {
            client: c,
            n,
            mine,
            other,
            can_reach_other: reaches_other,
            minter,
        };
        tasks.push(tokio::spawn(run_session(session, deadline, books.clone())));
    }
    let mut stdio_pids = Vec::new();
    for n in 16..18u64 {
        let (mine, other) = if n % 2 == 0 { (a, b) } else { (b, a) };
        let data = dir.path().to_path_buf();
        let repo = mine.to_string();
        let log = std::env::var("SOAK_SERVER_LOG").ok();
        let filter = log.clone().unwrap_or_else(|| "warn".into());
        let cmd = tokio::process::Command::new(BIN).configure(move |c| {
            c.arg("--data-dir")
                .arg(&data)
                .args(["serve", "--repo", &repo])
                .env("RUST_LOG", &filter);
        });
        let stderr = match log {
            Some(_) => {
                let path =
                    std::env::temp_dir().join(format!("soak-{}-stdio-{n}.log", std::process::id()));
                eprintln!("stdio server {n} logs to {}", path.display());
                Stdio::from(std::fs::File::create(path).unwrap())
            }
            None => Stdio::null(),
        };
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(stderr)
            .spawn()
            .unwrap();
        stdio_pids.push(transport.id().unwrap());
        let c = ().serve(transport).await.unwrap();
        let session = Session {
            client: c,
            n,
            mine,
            other,
            can_reach_other: false,
            minter: true,
        };
        tasks.push(tokio::spawn(run_session(session, deadline, books.clone())));
    }

    let http_pid = http.id();
    // (name, pid) of every server process.
    let servers: Vec<(String, u32)> = std::iter::once(("HTTP server".to_string(), http_pid))
        .chain(
            stdio_pids
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("stdio server {}", i + 16), *p)),
        )
        .collect();
    let mut samples: Vec<Sample> = Vec::new();
    // Resident memory split into anonymous (heap, stacks) and file-backed pages (the
    // binary, mapped segments and ranked files), per minute and server.
    let mut split: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut per_minute: Vec<BTreeMap<&'static str, (Duration, Duration, usize)>> = Vec::new();
    let started = Instant::now();
    let mut minute = 0;
    while Instant::now() < deadline {
        let wait = Duration::from_secs(60).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
        minute += 1;
        let mut lat = std::mem::take(&mut *books.minute.lock().unwrap());
        let mut row = BTreeMap::new();
        for (tool, v) in lat.iter_mut() {
            v.sort();
            row.insert(*tool, (pct(v, 0.5), pct(v, 0.99), v.len()));
        }
        per_minute.push(row);
        let per: Vec<(u64, u64, u64)> = servers
            .iter()
            .map(|(_, p)| {
                (
                    proc_status(*p, "VmRSS:"),
                    fds(*p),
                    proc_status(*p, "Threads:"),
                )
            })
            .collect();
        let parts: Vec<(u64, u64)> = servers
            .iter()
            .map(|(_, p)| (proc_status(*p, "RssAnon:"), proc_status(*p, "RssFile:")))
            .collect();
        let calls = books.calls.load(Ordering::Relaxed);
        let line: Vec<String> = servers
            .iter()
            .zip(&per)
            .zip(&parts)
            .map(|(((name, _), (rss, fd, th)), (anon, file))| {
                format!("{name} {rss} KiB (anon {anon}, file {file}), {fd} fds, {th} threads")
            })
            .collect();
        eprintln!("minute {minute}: {calls} calls; {}", line.join("; "));
        samples.push((minute, calls, per));
        split.push(parts);
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = http.kill();
    let _ = http.wait();

    println!(
        "Soak: {secs} s, 16 HTTP + 2 stdio sessions on two repos; {} calls, {} refused on purpose\n",
        books.calls.load(Ordering::Relaxed),
        books.refused_on_purpose.load(Ordering::Relaxed)
    );
    let heads: Vec<String> = servers
        .iter()
        .map(|(name, _)| format!("{name} RSS (MiB) / fds / threads"))
        .collect();
    println!("| minute | calls so far | {} |", heads.join(" | "));
    println!("| --- | --- |{}", " --- |".repeat(servers.len()));
    for (m, calls, per) in &samples {
        let cells: Vec<String> = per
            .iter()
            .map(|(rss, fd, th)| format!("{:.1} / {fd} / {th}", *rss as f64 / 1024.0))
            .collect();
        println!("| {m} | {calls} | {} |", cells.join(" | "));
    }
    let heads: Vec<String> = servers
        .iter()
        .map(|(name, _)| format!("{name} anon / file (MiB)"))
        .collect();
    println!("\n| minute | {} |", heads.join(" | "));
    println!("| --- |{}", " --- |".repeat(servers.len()));
    for ((m, _, _), parts) in samples.iter().zip(&split) {
        let cells: Vec<String> = parts
            .iter()
            .map(|(anon, file)| {
                format!(
                    "{:.1} / {:.1}",
                    *anon as f64 / 1024.0,
                    *file as f64 / 1024.0
                )
            })
            .collect();
        println!("| {m} | {} |", cells.join(" | "));
    }
    let tools: Vec<&'static str> = per_minute
        .iter()
        .flat_map(|r| r.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    println!(
        "\n| minute | {} |",
        tools.join(" p50/p99 (ms) | ") + " p50/p99 (ms)"
    );
    println!("| --- |{}", " --- |".repeat(tools.len()));
    for (i, row) in per_minute.iter().enumerate() {
        let cells: Vec<String> = tools
            .iter()
            .map(|t| match row.get(t) {
                Some((p50, p99, _)) => format!(
                    "{:.1}/{:.1}",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                ),
                None => "-".into(),
            })
            .collect();
        println!("| {} | {} |", i + 1, cells.join(" | "));
    }
    let warm: Vec<&Sample> = samples.iter().filter(|s| s.0 >= 5).collect();
    let mut verdicts = Vec::new();
    let mut pass = true;
    if warm.len() >= 3 {
        for (i, (name, _)) in servers.iter().enumerate() {
            let col: Vec<(u64, u64, u64)> = warm.iter().map(|s| s.2[i]).collect();
            let base = col[0].0;
            let rss_max = col.iter().map(|c| c.0).max().unwrap();
            let growth = rss_max as f64 / base as f64 - 1.0;
            let third = col.len().div_ceil(3);
            // How much higher the last third's highest count is than the first third's.
            let climb = |f: fn(&(u64, u64, u64)) -> u64| {
                let first = col[..third].iter().map(f).max().unwrap();
                let last = col[col.len() - third..].iter().map(f).max().unwrap();
                last as i64 - first as i64
            };
            let span = |f: fn(&(u64, u64, u64)) -> u64| {
                col.iter().map(f).max().unwrap() - col.iter().map(f).min().unwrap()
            };
            let (fd_climb, th_climb) = (climb(|c| c.1), climb(|c| c.2));
            let ok = growth <= 0.10 && fd_climb <= 2 && th_climb <= 2;
            pass &= ok;
            verdicts.push(format!(
                "{name}: RSS growth after minute 5 {:.1}% (limit 10%); fds {}..{} (span {}, climb {fd_climb}); threads {}..{} (span {}, climb {th_climb}); {}",
                growth * 100.0,
                col.iter().map(|c| c.1).min().unwrap(),
                col.iter().map(|c| c.1).max().unwrap(),
                span(|c| c.1),
                col.iter().map(|c| c.2).min().unwrap(),
                col.iter().map(|c| c.2).max().unwrap(),
                span(|c| c.2),
                if ok { "PASS" } else { "FAIL" }
            ));
        }
    } else {
        pass = false;
        verdicts.push("too short for a verdict (it needs samples from minute 5 on)".to_string());
    }
    println!();
    for v in &verdicts {
        println!("- {v}");
    }
    let verdict = if pass { "PASS" } else { "FAIL" };
    let unexpected = books.unexpected.lock().unwrap();
    println!(
        "\n{verdict}; unexpected errors: {}{}",
        unexpected.len(),
        if unexpected.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", unexpected[0])
        }
    );
    let _ = started;
}
