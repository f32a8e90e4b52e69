//! Replays a history of retrieval cases against ranked search and prints recall@1/5/10
//! and MRR beside two BM25 baselines computed in the same run.
//!
//! Run: `cargo run --release --example eval_ranked -- REPO.git CASES.jsonl [options]`
//!
//! Each case (one JSON object a line: `query`, `gold` paths, `parent` commit, `date`) is
//! asked against the tree at its parent. Cases are replayed in date order: the index is
//! built at the first case's parent, then moved from one parent to the next with
//! [`RankedIndex::advance`], exactly as the store updates it when commits land; the
//! history fields only ever hold the queried parent's own ancestry.
//!
//! Files are ranked as an answer ranks them, their text read from the repository
//! ([`RankedIndex::rank_reading`]), so that proximity counts where it applies.
//!
//! Options:
//! - `--recent N`: size of the "most recent" slice reported separately (default 300);
//! - `--only-recent`: replay only that slice (faster, for tuning);
//! - `--weights body,path,defs,msgs,cochange[/test,docs,bench,example,generated,other,asked[/body_b,feedback[,comments]]]`:
//!   an extra configuration to score (repeatable), optionally with role priors and
//!   then the body's BM25 `b` and the pseudo-relevance feedback weight (as
//!   `eval_questions` takes them);
//! - `--glob GLOB`: rank only paths matching GLOB (as `search_repo`'s `path_glob`), for
//!   every method alike — e.g. `*.py` when the cases' gold files are all Python sources;
//! - `--dump FILE`: write one JSON object a case to FILE (`query`, `gold`, `ranks`: for
//!   each method in the order of the table, each gold file's 0-based rank in its top
//!   100 or null, and `top`: the default ranking's first 10 paths), to study the misses
//!   in aggregate;
//! - `--via-disk N`: after the build and then every N cases, store the index as the
//!   store does (a new file, mapped, the index moved onto it) and, every other time,
//!   carry on with the index loaded from that file instead (mapped, as a restarted
//!   server would), to check that a stored and loaded index answers as well as one
//!   kept in memory.

#[path = "support/weights.rs"]
mod weights;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};
use scoped_repo_mcp::ranked::field::{Bm25, Field, count};
use scoped_repo_mcp::ranked::{RankedIndex, Weights, terms};

struct Case {
    query: String,
    gold: Vec<String>,
    commit: Oid,
    parent: Oid,
    when: i64,
}

/// Unix seconds of an RFC 3339 timestamp with an offset (`2024-01-02T03:04:05+02:00`).
fn parse_date(s: &str) -> i64 {
    let num = |a: usize, b: usize| s[a..b].parse::<i64>().expect("a date field");
    let (y, m, d) = (num(0, 4), num(5, 7), num(8, 10));
    let (hh, mm, ss) = (num(11, 13), num(14, 16), num(17, 19));
    let tz = &s[19..];
    let off = if tz.starts_with('Z') || tz.is_empty() {
        0
    } else {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        sign * (tz[1..3].parse::<i64>().unwrap() * 3600 + tz[4..6].parse::<i64>().unwrap() * 60)
    };
    // Days from the civil calendar (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss - off
}

/// A single-field BM25 index over path + whole file, as the published baselines are.
struct Baseline {
    split: fn(&str) -> Vec<String>,
    dict: HashMap<String, u32>,
    slot_of: HashMap<String, u32>,
    paths: Vec<Option<String>>,
    free: Vec<u32>,
    field: Field,
}

impl Baseline {
    fn new(split: fn(&str) -> Vec<String>) -> Self {
        Self {
            split,
            dict: HashMap::new(),
            slot_of: HashMap::new(),
            paths: Vec::new(),
            free: Vec::new(),
            field: Field::default(),
        }
    }

    fn advance(&mut self, repo: &Repository, old: Option<Oid>, new: Oid) {
        let nt = repo.find_commit(new).unwrap().tree().unwrap();
        let ot = old.map(|o| repo.find_commit(o).unwrap().tree().unwrap());
        let diff = repo
            .diff_tree_to_tree(ot.as_ref(), Some(&nt), None)
            .unwrap();
        for d in diff.deltas() {
            if let Some(p) = d.old_file().path().and_then(|p| p.to_str())
                && !d.old_file().id().is_zero()
                && let Some(slot) = self.slot_of.remove(p)
            {
                self.field.clear(slot);
                self.paths[slot as usize] = None;
                self.free.push(slot);
            }
            let nf = d.new_file();
            let Some(p) = nf.path().and_then(|p| p.to_str()) else {
                continue;
            };
            if nf.id().is_zero()
                || !matches!(
                    nf.mode(),
                    git2::FileMode::Blob | git2::FileMode::BlobExecutable
                )
            {
                continue;
            }
            let blob = repo.find_blob(nf.id()).unwrap();
            if scoped_repo_mcp::text::is_binary(blob.content()) {
                continue;
            }
            let text = format!("{p}\n{}", String::from_utf8_lossy(blob.content()));
            let slot = self.free.pop().unwrap_or(self.paths.len() as u32);
            if slot as usize == self.paths.len() {
                self.paths.push(None);
            }
            self.paths[slot as usize] = Some(p.to_string());
            self.slot_of.insert(p.to_string(), slot);
            let mut ids = Vec::new();
            for w in (self.split)(&text) {
                let n = self.dict.len() as u32;
                ids.push(*self.dict.entry(w).or_insert(n));
            }
            self.field.set(slot, count(ids));
        }
    }

    fn rank(&self, query: &str, limit: usize, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut qt: HashMap<u32, f32> = HashMap::new();
        for w in (self.split)(query) {
            if let Some(&id) = self.dict.get(&w) {
                *qt.entry(id).or_default() += 1.0;
            }
        }
        let n = self.slot_of.len();
        let mut acc = vec![0.0; self.paths.len()];
        for (&t, &c) in &qt {
            self.field.accumulate(t, c, Bm25::default(), n, &mut acc);
        }
        let mut v: Vec<(usize, f32)> = acc.into_iter().enumerate().filter(|x| x.1 > 0.0).collect();
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .filter_map(|(s, _)| self.paths[s].clone())
            .filter(|p| keep(p))
            .take(limit)
            .collect()
    }
}

#[derive(Default, Clone)]
struct Score {
    n: usize,
    r1: f64,
    r5: f64,
    r10: f64,
    rr: f64,
}

impl Score {
    fn add(&mut self, ranked: &[String], gold: &[String]) {
        let hit = |k: usize| {
            gold.iter()
                .filter(|g| ranked.iter().take(k).any(|r| r == *g))
                .count() as f64
                / gold.len() as f64
        };
        self.n += 1;
        self.r1 += hit(1);
        self.r5 += hit(5);
        self.r10 += hit(10);
        if let Some(i) = ranked.iter().position(|r| gold.contains(r)) {
            self.rr += 1.0 / (i + 1) as f64;
        }
    }
    fn row(&self, name: &str) -> String {
        let n = self.n.max(1) as f64;
        format!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            self.n,
            self.r1 / n,
            self.r5 / n,
            self.r10 / n,
            self.rr / n
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: eval_ranked REPO.git CASES.jsonl [--recent N] [--only-recent] [--weights b,p,d,m,c]..."
        );
        std::process::exit(2);
    }
    let repo = Repository::open(&args[0]).expect("open the repository");
    let mut recent = 300usize;
    let mut only_recent = false;
    let mut via_disk: Option<usize> = None;
    let mut dump: Option<std::fs::File> = None;
    let mut glob: Option<scoped_repo_mcp::rules::PathGlob> = None;
    let mut configs: Vec<(String, Weights)> =
        vec![("ranked (default weights)".into(), Weights::default())];
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--recent" => {
                recent = args[i + 1].parse().expect("--recent N");
                i += 1;
            }
            "--only-recent" => only_recent = true,
            "--dump" => {
                dump = Some(std::fs::File::create(&args[i + 1]).expect("create the dump"));
                i += 1;
            }
            "--via-disk" => {
                via_disk = Some(args[i + 1].parse::<usize>().expect("--via-disk N").max(1));
                i += 1;
            }
            "--glob" => {
                glob = Some(
                    scoped_repo_mcp::search::compile_glob(&args[i + 1]).expect("a valid glob"),
                );
                i += 1;
            }
            "--weights" => {
                configs.push((
                    format!("ranked {}", args[i + 1]),
                    weights::parse_weights(&args[i + 1]),
                ));
                i += 1;
            }
            other => panic!("unknown option {other}"),
        }
        i += 1;
    }
    let mut cases: Vec<Case> = std::fs::read_to_string(&args[1])
        .expect("read the cases")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON case");
            Case {
                query: v["query"].as_str().unwrap().to_string(),
                gold: v["gold"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_string())
                    .collect(),
                commit: Oid::from_str(v["commit"].as_str().unwrap()).unwrap(),
                parent: Oid::from_str(v["parent"].as_str().unwrap()).unwrap(),
                when: parse_date(v["date"].as_str().unwrap()),
            }
        })
        .collect();
    cases.sort_by_key(|c| c.when);
    let first_recent = cases.len().saturating_sub(recent);
    if only_recent {
        cases.drain(..first_recent);
    }
    let first_recent = cases.len().saturating_sub(recent);

    let t0 = Instant::now();
    let mut index = RankedIndex::build(&repo, cases[0].parent).expect("build the index");
    let build_time = t0.elapsed();
    let mut reloads = 0usize;
    let mut reload_time = Duration::ZERO;
    let disk_dir = tempfile::tempdir().expect("a scratch directory");
    let first_files = index.len();
    let mut b_plain = Baseline::new(terms::plain_words);
    let mut b_split = Baseline::new(terms::split_words);
    b_plain.advance(&repo, None, cases[0].parent);
    b_split.advance(&repo, None, cases[0].parent);
    let mut prev = cases[0].parent;

    let names: Vec<String> = [
        "BM25, words split on whitespace and punctuation",
        "BM25, identifiers also split",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(configs.iter().map(|c| c.0.clone()))
    .collect();
    let mut all = vec![Score::default(); names.len()];
    let mut last = vec![Score::default(); names.len()];
    let mut advance_time = Duration::ZERO;
    let mut query_times = Vec::new();
    // Each configuration's query times, to compare what a scoring rule costs.
    let mut config_times: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    for (ci, case) in cases.iter().enumerate() {
        if case.parent != prev {
            let t = Instant::now();
            index
                .advance(&repo, case.parent)
                .expect("advance the index");
            advance_time += t.elapsed();
            b_plain.advance(&repo, Some(prev), case.parent);
            b_split.advance(&repo, Some(prev), case.parent);
            prev = case.parent;
        }
        if via_disk.is_some_and(|n| ci % n == 0) {
            let t = Instant::now();
            let stored = disk_dir.path().join("ranked.bin");
            assert!(index.store_at(&stored).expect("store the index"));
            if reloads % 2 == 1 {
                index = RankedIndex::open(&std::fs::File::open(&stored).unwrap())
                    .expect("read the index back");
            }
            reload_time += t.elapsed();
            reloads += 1;
        }
        // The answer must not be in the index: the tree is the parent's, and the case's
        // own commit (a child of the parent) is never among the history fields.
        assert_eq!(index.head(), case.parent);
        assert!(!index.includes_commit(case.commit), "leak: {}", case.commit);
        let keep = |p: &str| glob.as_ref().is_none_or(|g| g.is_match(p));
        let mut rankings = vec![
            b_plain.rank(&case.query, 100, &keep),
            b_split.rank(&case.query, 100, &keep),
        ];
        for (k, (_, w)) in configs.iter().enumerate() {
            let t = Instant::now();
            let mut text = |path: &str| -> Option<String> {
                let blob = repo.find_blob(index.blob_of(path)?).ok()?;
                Some(String::from_utf8_lossy(blob.content()).into_owned())
            };
            let r = index.rank_reading(&case.query, 100, w, &keep, &mut text);
            config_times[k].push(t.elapsed());
            if k == 0 {
                query_times.push(t.elapsed());
            }
            rankings.push(r.into_iter().map(|f| f.path).collect());
        }
        if let Some(f) = dump.as_mut() {
            use std::io::Write;
            let ranks: Vec<Vec<Option<usize>>> = rankings
                .iter()
                .map(|r| {
                    case.gold
                        .iter()
                        .map(|g| r.iter().position(|x| x == g))
                        .collect()
                })
                .collect();
            let line = serde_json::json!({
                "query": case.query,
                "gold": case.gold,
                "ranks": ranks,
                "top": rankings[2].iter().take(10).collect::<Vec<_>>(),
            });
            writeln!(f, "{line}").unwrap();
        }
        for (k, r) in rankings.iter().enumerate() {
            all[k].add(r, &case.gold);
            if ci >= first_recent {
                last[k].add(r, &case.gold);
            }
        }
        if (ci + 1) % 500 == 0 {
            eprintln!("{} cases, {:.0?}", ci + 1, t0.elapsed());
        }
    }
    query_times.sort();
    let pct = |p: f64| query_times[((query_times.len() - 1) as f64 * p).round() as usize];
    println!("| method | cases | R@1 | R@5 | R@10 | MRR |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (k, name) in names.iter().enumerate() {
        println!("{}", last[k].row(&format!("{name} — {recent} most recent")));
    }
    if !only_recent {
        for (k, name) in names.iter().enumerate() {
            println!("{}", all[k].row(&format!("{name} — all")));
        }
    }
    println!();
    println!(
        "index: built in {:.1?} at the first parent ({} files); {} advances in {:.1?} total; ranked query p50 {:.2?}, p99 {:.2?} ({} files at the end)",
        build_time,
        first_files,
        cases.len(),
        advance_time,
        pct(0.5),
        pct(0.99),
        index.len()
    );
    for ((name, _), times) in configs.iter().zip(&mut config_times).skip(1) {
        times.sort();
        println!("{name}: query p50 {:.2?}", times[(times.len() - 1) / 2]);
    }
    if reloads > 0 {
        println!(
            "stored {reloads} times (and loaded back every other time), {:.1?} in all ({} bytes at the end; heap {} bytes, mapped {} bytes)",
            reload_time,
            index.to_bytes().len(),
            index.heap_bytes().total(),
            index.heap_bytes().mapped
        );
    }
}
