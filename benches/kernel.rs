//! Memory, restarts and search latency at the scale of the Linux kernel's source: the
//! import, one `serve` process warmed by line and ranked searches, a second process on
//! the same data directory, restarts, line search side by side with `rg`, and (when
//! `serve` has `--index-memory`) twenty repos served under a 1 GiB index budget.
//!
//! Every figure comes from the release binary driven by a real MCP client over stdio.
//! Run through `scripts/bench-kernel.sh`, which fetches and prepares the corpus; by hand:
//! `KERNEL_CORPUS=DIR KERNEL_WORK=SCRATCH cargo bench --bench kernel`.
//!
//! Environment: `KERNEL_CORPUS` (the source tree, required), `KERNEL_WORK` (scratch
//! directory for the data directories and the twenty repos' trees, required; emptied of
//! what the run made before), `KERNEL_ROUNDS` (timed runs per side-by-side query,
//! default 7), `KERNEL_RANKED_QUERIES` (default 100), `KERNEL_MULTI` (`auto`: the
//! twenty-repo part runs when `serve --help` lists `--index-memory`; `never`; `always`:
//! also without the flag, to try the part out; `only`: the twenty-repo part alone).

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};
use support::{pct, proc_status};

const BIN: &str = env!("CARGO_BIN_EXE_scoped-repo-mcp");

/// The no-literal pattern and how many of its hits are asked for.
const NO_LITERAL: &str = "[A-Z]{4}_[A-Z]{4}_[A-Z]{4}_[A-Z]{4}";
const NO_LITERAL_FIRST: usize = 200;
/// Side-by-side queries with `rg`: (label, pattern, regex).
const SIDE_BY_SIDE: &[(&str, &str, bool)] = &[
    ("rare literal", "ieee80211_tdls_oper_request", false),
    (
        "alternation",
        "spin_lock_irqsave|mutex_lock_interruptible|rcu_read_lock_bh",
        true,
    ),
];
/// The twenty-repo part: how many repos, and the index budget they are served under.
const MULTI_REPOS: usize = 20;
const INDEX_MEMORY: &str = "1GiB";
/// Line queries asked of each of the twenty repos in a round.
const MULTI_LINE_QUERIES: &[(&str, bool)] = &[
    ("EXPORT_SYMBOL_GPL", false),
    ("static int [a-z_]+_probe\\(", true),
    ("kfree|kmalloc_array", true),
];

type Client = RunningService<RoleClient, ()>;

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
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What `repo create --from-dir` reported.
struct Imported {
    id: String,
    files: u64,
    bytes: u64,
    took: Duration,
}

/// `repo create --from-dir dir` into `data`, timed.
fn import(data: &Path, dir: &Path, extra: &[&str]) -> Imported {
    let t = Instant::now();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["repo", "create", "--from-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run repo create");
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "repo create failed: {err}");
    // "imported N file(s) (K binary), B bytes; …": the number before "bytes".
    let report = err
        .lines()
        .find_map(|l| l.split("imported ").nth(1))
        .unwrap_or_else(|| panic!("no import report in: {err}"));
    let words: Vec<&str> = report.split_whitespace().collect();
    let files = words.first().and_then(|w| w.parse().ok()).unwrap_or(0);
    let bytes = words
        .windows(2)
        .find(|w| w[1].trim_end_matches([',', ';']) == "bytes")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no byte count in: {report}"));
    Imported {
        id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        files,
        bytes,
        took,
    }
}

/// A `serve` child over stdio, its pid and when it was spawned.
struct Server {
    client: Client,
    pid: u32,
    started: Instant,
}

async fn serve(data: &Path, repos: &[&str], extra: &[&str]) -> Server {
    let data = data.to_path_buf();
    let mut argv: Vec<String> = vec!["serve".into()];
    for r in repos {
        argv.push("--repo".into());
        argv.push(r.to_string());
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cmd = tokio::process::Command::new(BIN).configure(move |c| {
        c.arg("--data-dir")
            .arg(&data)
            .args(&argv)
            .env("RUST_LOG", "warn");
    });
    let started = Instant::now();
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let pid = transport.id().expect("serve has a pid");
    let client = ().serve(transport).await.expect("MCP handshake");
    Server {
        client,
        pid,
        started,
    }
}

impl Server {
    async fn call(&self, arguments: Value) -> Value {
        let call = CallToolRequestParams::new("search_repo").with_arguments(args(arguments));
        let r = self.client.call_tool(call).await.expect("search_repo");
        assert_ne!(r.is_error, Some(true), "{:?}", r.content);
        r.structured_content.expect("a structured answer")
    }

    async fn line(&self, repo: &str, pattern: &str, regex: bool, max: usize) -> Value {
        self.call(json!({
            "repo_id": repo,
            "query": pattern,
            "mode": if regex { "regex" } else { "literal" },
            "case_sensitive": true,
            "max_results": max,
        }))
        .await
    }

    async fn ranked(&self, repo: &str, question: &str) -> Value {
        self.call(json!({"repo_id": repo, "query": question, "mode": "ranked"}))
            .await
    }

    /// Resident memory, whole and anonymous (heap) only, in bytes.
    fn rss(&self) -> (u64, u64) {
        (
            proc_status(self.pid, "VmRSS:") * 1024,
            proc_status(self.pid, "RssAnon:") * 1024,
        )
    }

    /// [`Server::rss`] now and once the process has been idle for a second (it lets go
    /// of the mapped pages its searches read half a second after the last one ends).
    async fn rss_and_idle(&self) -> ((u64, u64), (u64, u64)) {
        let now = self.rss();
        tokio::time::sleep(Duration::from_secs(1)).await;
        (now, self.rss())
    }

    /// Close the connection and wait for the process to be gone.
    async fn stop(self) {
        let _ = self.client.cancel().await;
        let gone = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn rss_cell(rss: (u64, u64), text: u64) -> String {
    format!(
        "{} (**{:.2}x** the text; heap {}, {:.2}x)",
        gib(rss.0),
        rss.0 as f64 / text as f64,
        gib(rss.1),
        rss.1 as f64 / text as f64
    )
}

fn rss_idle_cell((now, idle): ((u64, u64), (u64, u64)), text: u64) -> String {
    format!(
        "{}; idle 1 s: {}",
        rss_cell(now, text),
        rss_cell(idle, text)
    )
}

fn rg_command(corpus: &Path, pattern: &str, regex: bool) -> Command {
    let mut cmd = support::rg_command(corpus, regex, false);
    cmd.args(["--regexp", pattern, "."]);
    cmd
}

/// `rg` with its output read whole; the lines it printed.
fn rg_all(corpus: &Path, pattern: &str, regex: bool) -> usize {
    let out = rg_command(corpus, pattern, regex)
        .output()
        .expect("rg runs (apt-get install ripgrep)");
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

/// `rg … | head -N`: the first `n` lines read, then the pipe closed and `rg` waited for.
fn rg_head(corpus: &Path, pattern: &str, n: usize) -> usize {
    let mut child = rg_command(corpus, pattern, true)
        .stdout(Stdio::piped())
        .spawn()
        .expect("rg runs");
    let mut lines = 0;
    {
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = Vec::new();
        while lines < n {
            line.clear();
            if out.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                break;
            }
            lines += 1;
        }
    }
    let _ = child.wait();
    lines
}

/// The files `rg` (and so the import, which honours the same ignore files) takes, with
/// their sizes, in path order.
fn corpus_files(corpus: &Path) -> Vec<(String, u64)> {
    let out = Command::new("rg")
        .current_dir(corpus)
        .args(["--no-config", "--files", "--hidden", "--no-require-git"])
        .output()
        .expect("rg --files");
    let mut files: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|p| p.trim_start_matches("./").to_string())
        .filter_map(|p| {
            let len = std::fs::metadata(corpus.join(&p)).ok()?.len();
            Some((p, len))
        })
        .collect();
    files.sort();
    files
}

/// Questions in words for ranked search: comment sentences of five or more words from
/// the corpus's C files, every k-th one, so each has an answer.
fn ranked_questions(corpus: &Path, files: &[(String, u64)], n: usize) -> Vec<String> {
    let mut sentences = Vec::new();
    for (path, _) in files.iter().filter(|(p, _)| p.ends_with(".c")).step_by(25) {
        let Ok(text) = std::fs::read_to_string(corpus.join(path)) else {
            continue;
        };
        for line in text.lines() {
            let Some(s) = line.trim_start().strip_prefix("* ") else {
                continue;
            };
            let s = s.trim();
            if s.split_whitespace().count() >= 5
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " ,.'-".contains(c))
            {
                sentences.push(s.to_string());
            }
        }
    }
    let step = (sentences.len() / n.max(1)).max(1);
    sentences.into_iter().step_by(step).take(n).collect()
}

/// Whether this build's `serve` takes `--index-memory`.
fn has_index_memory() -> bool {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("serve --help");
    String::from_utf8_lossy(&out.stdout).contains("--index-memory")
}

/// One row of the table.
struct Rows(Vec<(String, String, String)>);

impl Rows {
    fn add(&mut self, measure: impl Into<String>, value: impl Into<String>, goal: &str) {
        let row = (measure.into(), value.into(), goal.to_string());
        eprintln!("  {}: {}", row.0, row.1);
        self.0.push(row);
    }
}

/// The side-by-side timing of our line search and an `rg` run, alternating.
async fn side_by_side(
    server: &Server,
    rounds: usize,
    ours: impl AsyncFn(&Server) -> Value,
    theirs: impl Fn() -> usize,
) -> (Duration, Duration, Value, usize) {
    // Warm both: the page cache for rg, the index for ours.
    let answer = ours(server).await;
    let lines = theirs();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        ours(server).await;
        a.push(t.elapsed());
        let t = Instant::now();
        theirs();
        b.push(t.elapsed());
    }
    (median(a), median(b), answer, lines)
}

fn ratio_cell(ours: Duration, rg: Duration, answer: &Value, rg_lines: usize) -> String {
    format!(
        "{} vs rg {} = **{:.2}x** ({} hits{}; rg {} lines)",
        ms(ours),
        ms(rg),
        ours.as_secs_f64() / rg.as_secs_f64(),
        answer["hits"].as_array().map_or(0, Vec::len),
        if answer["truncated"] == json!(true) {
            ", truncated"
        } else {
            ""
        },
        rg_lines
    )
}

/// Cut `files` into `n` runs of about equal bytes; repo `i` gets runs `i` and `i + 1`
/// (hard links under `root/i`), so twenty repos hold twice the corpus between them and
/// no two are alike.
fn slice_corpus(corpus: &Path, files: &[(String, u64)], root: &Path, n: usize) -> Vec<PathBuf> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut runs: Vec<Vec<&str>> = vec![Vec::new(); n];
    let (mut acc, mut i) = (0, 0);
    for (path, len) in files {
        // At most one run further per file, so no run stays empty on a small corpus.
        if i + 1 < n && !runs[i].is_empty() && acc * n as u64 >= total * (i as u64 + 1) {
            i += 1;
        }
        runs[i].push(path);
        acc += len;
    }
    let _ = std::fs::remove_dir_all(root);
    (0..n)
        .map(|i| {
            let dir = root.join(format!("{i:02}"));
            for path in runs[i].iter().chain(&runs[(i + 1) % n]) {
                let to = dir.join(path);
                std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
                std::fs::hard_link(corpus.join(path), &to)
                    .or_else(|_| std::fs::copy(corpus.join(path), &to).map(|_| ()))
                    .expect("link a file");
            }
            dir
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let need = |key: &str| {
        PathBuf::from(std::env::var(key).unwrap_or_else(|_| {
            eprintln!("set {key} (scripts/bench-kernel.sh sets it up)");
            std::process::exit(2)
        }))
    };
    let corpus = need("KERNEL_CORPUS")
        .canonicalize()
        .expect("KERNEL_CORPUS exists");
    let work = need("KERNEL_WORK");
    let rounds: usize = env_or("KERNEL_ROUNDS", 7);
    let n_ranked: usize = env_or("KERNEL_RANKED_QUERIES", 100);
    let multi_mode: String = env_or("KERNEL_MULTI", "auto".to_string());
    let flag = has_index_memory();
    let data = work.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("make the data directory");
    let mut rows = Rows(Vec::new());
    let files = corpus_files(&corpus);
    let questions = ranked_questions(&corpus, &files, n_ranked);
    assert!(!questions.is_empty(), "no ranked questions in the corpus");
    // (files, bytes of text) of the whole corpus's import, when the run made one.
    let mut imported = None;

    // `only`: the twenty repos alone.
    if multi_mode != "only" {
        eprintln!("importing {} …", corpus.display());
        let imp = import(&data, &corpus, &[]);
        let (id, text) = (imp.id.as_str(), imp.bytes);
        rows.add(
            "import (`repo create --from-dir`)",
            format!("{} ({} files, {})", secs(imp.took), imp.files, gib(text)),
            "",
        );

        // First process: started after the import, warmed by both kinds of search.
        eprintln!("first serve process …");
        let a = serve(&data, &[id], &[]).await;
        a.line(id, "warm-up", false, 10).await;
        let a_first_line = a.started.elapsed();
        let t = Instant::now();
        a.ranked(id, &questions[0]).await;
        let a_ranked_build = t.elapsed();
        let rss_a = a.rss_and_idle().await;
        rows.add(
            "resident memory, line and ranked search warm",
            rss_idle_cell(rss_a, text),
            "≤ 0.3x the text",
        );
        rows.add(
            "first process after the import: first line answer / first ranked answer",
            format!(
                "{} from its start / {} for the ranked call",
                secs(a_first_line),
                secs(a_ranked_build)
            ),
            "",
        );
        let mut ranked_times = Vec::new();
        for q in &questions {
            let t = Instant::now();
            a.ranked(id, q).await;
            ranked_times.push(t.elapsed());
        }
        ranked_times.sort();
        // By now the ranked index the first call built has been stored, and the process
        // has moved onto the stored file.
        rows.add(
            "resident memory, after the ranked queries",
            rss_idle_cell(a.rss_and_idle().await, text),
            "≤ 0.3x the text",
        );
        rows.add(
            "ranked query p50",
            format!(
                "{} (p99 {}, {} queries)",
                ms(pct(&ranked_times, 0.5)),
                ms(pct(&ranked_times, 0.99)),
                ranked_times.len()
            ),
            "≤ 20 ms, kept",
        );
        // The same sentences asked as questions: a question's best files are also read
        // for how much of it one chunk holds (proximity), which statements skip.
        let mut asked_times = Vec::new();
        for q in &questions {
            let q = format!("{}?", q.trim_end_matches('.'));
            let t = Instant::now();
            a.ranked(id, &q).await;
            asked_times.push(t.elapsed());
        }
        asked_times.sort();
        rows.add(
            "ranked query p50, the same sentences asked as questions",
            format!(
                "{} (p99 {}, {} queries)",
                ms(pct(&asked_times, 0.5)),
                ms(pct(&asked_times, 0.99)),
                asked_times.len()
            ),
            "≤ 20 ms",
        );
        for &(label, pattern, regex) in SIDE_BY_SIDE {
            let (o, r, answer, lines) = side_by_side(
                &a,
                rounds,
                async |s: &Server| s.line(id, pattern, regex, 1000).await,
                || rg_all(&corpus, pattern, regex),
            )
            .await;
            rows.add(
                format!("{label} `{}` vs `rg`", pattern.replace('|', "\\|")),
                ratio_cell(o, r, &answer, lines),
                "≤ 0.25x, kept",
            );
        }
        let (o, r, answer, lines) = side_by_side(
            &a,
            rounds,
            async |s: &Server| s.line(id, NO_LITERAL, true, NO_LITERAL_FIRST).await,
            || rg_head(&corpus, NO_LITERAL, NO_LITERAL_FIRST),
        )
        .await;
        rows.add(
        format!("no-literal regex `{NO_LITERAL}`, first {NO_LITERAL_FIRST} hits, vs `rg … \\| head -{NO_LITERAL_FIRST}`"),
        format!(
            "{} (files searched: {})",
            ratio_cell(o, r, &answer, lines),
            answer["files_searched"]
        ),
        "≤ 1.2x",
    );

        // A second process on the same data directory while the first one runs.
        eprintln!("second serve process on the same data directory …");
        let b = serve(&data, &[id], &[]).await;
        b.line(id, "warm-up", false, 10).await;
        let b_line = b.started.elapsed();
        b.ranked(id, &questions[0]).await;
        let b_ranked = b.started.elapsed();
        let rss_b = b.rss_and_idle().await;
        rows.add(
        "second process, same data directory: first line answer / first ranked answer (from its start)",
        format!("{} / {}", secs(b_line), secs(b_ranked)),
        "",
    );
        rows.add(
            "second process: resident memory, both warm",
            rss_idle_cell(rss_b, text),
            "",
        );
        rows.add(
            "first process meanwhile",
            rss_idle_cell(a.rss_and_idle().await, text),
            "",
        );
        b.stop().await;
        a.stop().await;

        // Restarts: the first answer of a fresh process, line search first, then ranked first.
        eprintln!("restarts …");
        let c = serve(&data, &[id], &[]).await;
        c.line(id, "warm-up", false, 10).await;
        rows.add(
            "first line-search answer after a restart",
            format!("{} (from the process's start)", secs(c.started.elapsed())),
            "≤ 1 s",
        );
        c.stop().await;
        let d = serve(&data, &[id], &[]).await;
        d.ranked(id, &questions[0]).await;
        rows.add(
            "first ranked answer after a restart",
            format!("{} (from the process's start)", secs(d.started.elapsed())),
            "≤ 2 s",
        );
        d.stop().await;
        imported = Some((imp.files, text));
    }

    // Twenty repos under an index budget.
    let run_multi = match multi_mode.as_str() {
        "always" | "only" => true,
        "never" => false,
        _ => flag,
    };
    let mut per_repo = Vec::new();
    if run_multi {
        eprintln!("{MULTI_REPOS} repos …");
        let dirs = slice_corpus(&corpus, &files, &work.join("slices"), MULTI_REPOS);
        let mdata = work.join("multi-data");
        let _ = std::fs::remove_dir_all(&mdata);
        std::fs::create_dir_all(&mdata).expect("make the data directory");
        let t = Instant::now();
        let repos: Vec<Imported> = dirs
            .iter()
            .map(|d| import(&mdata, d, &["--no-ignore"]))
            .collect();
        let took = t.elapsed();
        let total: u64 = repos.iter().map(|r| r.bytes).sum();
        let ids: Vec<&str> = repos.iter().map(|r| r.id.as_str()).collect();
        let extra: Vec<&str> = if flag {
            vec!["--index-memory", INDEX_MEMORY]
        } else {
            Vec::new()
        };
        let m = serve(&mdata, &ids, &extra).await;
        let mut times: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
        let mut ranked: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
        let mut peak = (0, 0);
        let mut rss_after: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        for round in 0..3 {
            for (i, r) in repos.iter().enumerate() {
                for &(pattern, regex) in MULTI_LINE_QUERIES {
                    let t = Instant::now();
                    m.line(&r.id, pattern, regex, 1000).await;
                    times.entry(i).or_default().push(t.elapsed());
                }
                let q = &questions[(round * MULTI_REPOS + i) % questions.len()];
                let t = Instant::now();
                m.ranked(&r.id, q).await;
                ranked.entry(i).or_default().push(t.elapsed());
                let rss = m.rss();
                peak = (peak.0.max(rss.0), peak.1.max(rss.1));
                rss_after.insert(i, rss);
            }
        }
        let last = m.rss();
        m.stop().await;
        rows.add(
            format!(
                "{MULTI_REPOS} repos, {} of text, under `--index-memory {INDEX_MEMORY}`: import / peak RSS / RSS at the end",
                gib(total)
            ),
            format!(
                "{}{} / {} (heap {}) / {} (heap {})",
                secs(took),
                if flag { "" } else { " (no --index-memory: flag missing)" },
                gib(peak.0),
                gib(peak.1),
                gib(last.0),
                gib(last.1)
            ),
            "bounded by the budget",
        );
        for (i, r) in repos.iter().enumerate() {
            per_repo.push(format!(
                "| {i:02} | {:.0} | {} | {} | {} |",
                r.bytes as f64 / (1u64 << 20) as f64,
                ms(median(times.remove(&i).unwrap_or_default())),
                ms(median(ranked.remove(&i).unwrap_or_default())),
                gib(rss_after.get(&i).map_or(0, |x| x.0)),
            ));
        }
        let _ = std::fs::remove_dir_all(work.join("slices"));
    } else {
        let why = if flag {
            "n/a (skipped)"
        } else {
            "n/a (flag missing)"
        };
        rows.add(
            format!(
                "{MULTI_REPOS} repos, ≥ 2 GiB of text, under `--index-memory {INDEX_MEMORY}`: RSS"
            ),
            why,
            "bounded by the budget",
        );
        rows.add(
            format!("{MULTI_REPOS} repos under `--index-memory {INDEX_MEMORY}`: p50 per repo"),
            why,
            "",
        );
    }

    match imported {
        Some((files, text)) => println!(
            "Corpus: `{}`: {files} files, {} of text imported. Rounds per side-by-side query: {rounds}.",
            corpus.display(),
            gib(text)
        ),
        None => println!("Corpus: `{}` (the twenty repos only).", corpus.display()),
    }
    println!();
    println!("| measure | measured | goal |");
    println!("| --- | --- | --- |");
    for (m, v, g) in &rows.0 {
        println!("| {m} | {v} | {g} |");
    }
    if !per_repo.is_empty() {
        println!();
        println!(
            "| repo | text MiB | line search p50 ({} queries × 3 rounds) | ranked p50 (3) | RSS after its turn (last round) |",
            MULTI_LINE_QUERIES.len()
        );
        println!("| --- | --- | --- | --- | --- |");
        for row in per_repo {
            println!("{row}");
        }
    }
}
