//! `search_repo` through the real binary over MCP stdio, side by side with `rg` over the
//! same files, on a large corpus; plus index build time and size, the server's resident
//! memory with line and ranked search warm, its first answer after a restart, and how
//! long a one-file commit takes to become searchable.
//!
//! Run: `scripts/bench-corpus.sh` once (builds the corpus), then
//! `BENCH_CORPUS=target/bench-corpus cargo bench --bench line_search`.
//! `BENCH_RUNS` sets the timed runs per query (default 7; the median is reported);
//! `BENCH_INDEX_MEMORY` is passed to the server as `--index-memory` when set.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

/// A benchmark query: (label, pattern, regex, case-insensitive).
const QUERIES: &[(&str, &str, bool, bool)] = &[
    ("rare literal", "sqlite3_wal_checkpoint_v2", false, false),
    ("common literal", "unwrap()", false, false),
    ("case-insensitive word", r"\bmutex\b", true, true),
    (
        "alternation",
        "skip_serializing_if|deserialize_with|rename_all",
        true,
        false,
    ),
    (
        "no literal, many hits",
        r"[A-Z]{3,}_[A-Z]{3,}\d",
        true,
        false,
    ),
    (
        "no literal, full scan",
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z",
        true,
        false,
    ),
];

fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// `rg` with the flags that make it walk the files the import took, searching as
/// `search_repo` does; returns the matching lines it printed.
fn rg(corpus: &Path, pattern: &str, regex: bool, insensitive: bool) -> usize {
    let mut cmd = support::rg_command(corpus, regex, insensitive);
    let out = cmd
        .args(["--regexp", pattern, "."])
        .output()
        .expect("rg runs (apt-get install ripgrep)");
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += dir_size(&e.path()),
            Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
            _ => {}
        }
    }
    total
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let corpus = PathBuf::from(std::env::var("BENCH_CORPUS").unwrap_or_else(|_| {
        eprintln!("set BENCH_CORPUS to a directory (scripts/bench-corpus.sh builds one)");
        std::process::exit(2)
    }));
    let corpus = corpus.canonicalize().expect("BENCH_CORPUS exists");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);

    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path(), Limits::default()).unwrap();
    // The import writes the git objects and builds and stores the index.
    let t = Instant::now();
    let report = store
        .import_dir(&corpus, Default::default(), &|_| {})
        .unwrap();
    let import_time = t.elapsed();
    let id = report.repo_id;
    let git_bytes = dir_size(&store.git_dir(&id));
    let stored_dir = data.path().join("index").join(id.to_string());
    drop(store);
    // A fresh process's view: open the stored segments, then build from scratch.
    let store = Store::open(data.path(), Limits::default()).unwrap();
    let t = Instant::now();
    store.line_index_stats(&id).unwrap();
    let load_time = t.elapsed();
    drop(store);
    std::fs::remove_dir_all(&stored_dir).unwrap();
    let store = Store::open(data.path(), Limits::default()).unwrap();
    let t = Instant::now();
    let stats = store.line_index_stats(&id).unwrap();
    let index_time = t.elapsed();
    drop(store);
    let stored_bytes = dir_size(&stored_dir);

    let bin = env!("CARGO_BIN_EXE_scoped-repo-mcp");
    let data_dir = data.path().to_path_buf();
    let repo = id.to_string();
    let memory = std::env::var("BENCH_INDEX_MEMORY").ok();
    let server = || {
        let (data_dir, repo, memory) = (data_dir.clone(), repo.clone(), memory.clone());
        let cmd = tokio::process::Command::new(bin).configure(move |c| {
            c.arg("--data-dir")
                .arg(&data_dir)
                .args(["serve", "--repo", &repo])
                .env("RUST_LOG", "warn");
            if let Some(m) = &memory {
                c.args(["--index-memory", m]);
            }
        });
        TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
            .0
    };
    let rid = id.to_string();
    let first_call = |pattern: &str| {
        CallToolRequestParams::new("search_repo").with_arguments(args(json!({
            "repo_id": rid,
            "query": pattern,
            "mode": "literal",
            "max_results": 1000,
        })))
    };

    // A restart: a fresh server on the stored segments, timed from its spawn to its
    // first answer (start-up, MCP handshake and the index's open included).
    let mut restarts = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let client = ().serve(server()).await.unwrap();
        let r = client
            .call_tool(first_call("sqlite3_wal_checkpoint_v2"))
            .await
            .unwrap();
        restarts.push(t.elapsed());
        assert_ne!(r.is_error, Some(true));
        client.cancel().await.ok();
    }
    let restart = median(restarts);

    let transport = server();
    let pid = transport.id().unwrap_or(0);
    let client = ().serve(transport).await.unwrap();
    let search = |pattern: &str, regex: bool, insensitive: bool| {
        let call = CallToolRequestParams::new("search_repo").with_arguments(args(json!({
            "repo_id": rid,
            "query": pattern,
            "mode": if regex { "regex" } else { "literal" },
            "case_sensitive": !insensitive,
            "max_results": 1000,
        })));
        let client = &client;
        async move {
            let r = client.call_tool(call).await.unwrap();
            assert_ne!(r.is_error, Some(true), "{:?}", r.content);
            r.structured_content.unwrap()
        }
    };

    // The server builds its own index on its first search.
    let t = Instant::now();
    search("warm-up", false, false).await;
    let first_search = t.elapsed();

    println!(
        "Corpus: `{}`: {} files, {:.0} MB imported (skipped {} binary or non-UTF-8, {} over 10 MiB, {} unusable paths).",
        corpus.display(),
        report.files,
        report.bytes as f64 / 1e6,
        report.skipped_binary,
        report.skipped_large,
        report.skipped_path
    );
    println!();
    println!(
        "| query | pattern | flags | ours ms (median) | rg ms (median) | ours / rg | our hits (cap 1000) | truncated | files searched | rg lines |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for &(label, pattern, regex, insensitive) in QUERIES {
        // Warm both: the page cache for rg, the index for ours.
        let answer = search(pattern, regex, insensitive).await;
        let rg_lines = rg(&corpus, pattern, regex, insensitive);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            search(pattern, regex, insensitive).await;
            ours.push(t.elapsed());
            let t = Instant::now();
            rg(&corpus, pattern, regex, insensitive);
            theirs.push(t.elapsed());
        }
        let (o, r) = (median(ours), median(theirs));
        let flags = match (regex, insensitive) {
            (false, false) => "-F",
            (false, true) => "-F -i",
            (true, false) => "",
            (true, true) => "-i",
        };
        println!(
            "| {label} | `{}` | `{flags}` | {} | {} | **{:.2}x** | {} | {} | {} | {} |",
            pattern.replace('|', "\\|"),
            ms(o),
            ms(r),
            o.as_secs_f64() / r.as_secs_f64(),
            answer["hits"].as_array().map_or(0, Vec::len),
            answer["truncated"],
            answer["files_searched"],
            rg_lines
        );
    }

    // Ranked search warm too, then the server's resident memory.
    let t = Instant::now();
    let ranked = client
        .call_tool(
            CallToolRequestParams::new("search_repo").with_arguments(args(json!({
                "repo_id": rid,
                "query": "where are write-ahead log checkpoints handled",
                "mode": "ranked",
            }))),
        )
        .await
        .unwrap();
    assert_ne!(ranked.is_error, Some(true));
    let ranked_build = t.elapsed();
    let rss_kib = support::proc_status(pid, "VmRSS:");
    let anon_kib = support::proc_status(pid, "RssAnon:");
    let file_kib = support::proc_status(pid, "RssFile:");
    let rss_line = |what: &str, kib: u64| {
        format!(
            "| {what} | {:.0} MB = **{:.2}x** the corpus |",
            kib as f64 * 1024.0 / 1e6,
            kib as f64 * 1024.0 / report.bytes as f64
        )
    };

    // A one-file commit, then the search that must see it.
    let mut commit = Vec::new();
    for i in 0..runs {
        let token = format!("freshly_committed_token_{i}_{}", std::process::id());
        let t = Instant::now();
        let r = client
            .call_tool(
                CallToolRequestParams::new("update_repo_files").with_arguments(args(json!({
                    "repo_id": rid,
                    "operations": [{"type": "write", "path": "bench/fresh.rs", "content": format!("const X: &str = \"{token}\";\n")}],
                }))),
            )
            .await
            .unwrap();
        assert_ne!(r.is_error, Some(true));
        let found = search(&token, false, false).await;
        commit.push(t.elapsed());
        assert_eq!(found["hits"].as_array().map_or(0, Vec::len), 1);
    }
    client.cancel().await.ok();

    println!();
    println!("| index measurement | value |");
    println!("| --- | --- |");
    println!(
        "| import: git objects, one commit, then the index built and stored | {:.1} s |",
        import_time.as_secs_f64()
    );
    println!(
        "| index build from git, from scratch (all cores) | {:.1} s |",
        index_time.as_secs_f64()
    );
    println!(
        "| index open in a fresh process (stored segments, mapped and checked) | {:.3} s |",
        load_time.as_secs_f64()
    );
    println!(
        "| restart: spawn of a fresh server to its first answer (median of 3) | {:.3} s |",
        restart.as_secs_f64()
    );
    println!(
        "| first search of the measured server (warm-up included) | {:.3} s |",
        first_search.as_secs_f64()
    );
    println!(
        "| first ranked search (ranked index built) | {:.1} s |",
        ranked_build.as_secs_f64()
    );
    println!(
        "{}",
        rss_line("server RSS, line and ranked search warm", rss_kib)
    );
    println!("{}", rss_line("  of which anonymous (heap)", anon_kib));
    println!(
        "{}",
        rss_line(
            "  of which file-backed (mapped segments, shared page cache)",
            file_kib
        )
    );
    println!(
        "| line index heap / corpus | {:.1} MB = **{:.3}x** |",
        stats.heap_bytes as f64 / 1e6,
        stats.heap_bytes as f64 / report.bytes as f64
    );
    println!(
        "| stored index on disk / corpus | {:.1} MB / {:.1} MB = **{:.2}x** |",
        stored_bytes as f64 / 1e6,
        report.bytes as f64 / 1e6,
        stored_bytes as f64 / report.bytes as f64
    );
    println!(
        "| trigram postings / corpus | {:.1} MB / {:.1} MB = **{:.2}x** |",
        stats.postings_bytes as f64 / 1e6,
        stats.content_bytes as f64 / 1e6,
        stats.postings_bytes as f64 / stats.content_bytes as f64
    );
    println!(
        "| contents mapped from segments / corpus | {:.2}x |",
        stats.content_bytes as f64 / report.bytes as f64
    );
    println!(
        "| git store on disk / corpus | {:.2}x |",
        git_bytes as f64 / report.bytes as f64
    );
    println!(
        "| one-file commit until searchable (update + search, median) | {} ms |",
        ms(median(commit))
    );
}
