//! Scores ranked search on questions in words (a developer's "how / where / why does
//! X happen", a bug report, a concept) with known answer files, beside a BM25 baseline
//! over source files computed in the same run.
//!
//! Run: `cargo run --release --example eval_questions -- QUESTIONS.jsonl [options]`
//!
//! Each question (one JSON object a line: `repo` as `owner/name`, `commit`, `query`,
//! `gold` paths, `kind`) is asked against its repository's tree at `commit`, indexed as
//! the store indexes it (files and the commit's ancestry). The ranking is collapsed to
//! one entry per file and the paths compared exactly: recall@10 (share of gold files in
//! the top 10), hit@5 (any gold file in the top 5) and MRR (1 / rank of the first gold
//! file in the top 100), averaged over questions, overall, per repository and per kind.
//!
//! Files are ranked as an answer ranks them, their text read from the repository
//! ([`RankedIndex::rank_reading`]), so that proximity counts.
//!
//! The baseline is BM25 (k1 1.2, b 0.75) over path + whole file, identifiers split,
//! ranking source files only (what [`role::role`] calls source): the bar a ranking over
//! every file has to clear.
//!
//! Options:
//! - `--mirrors DIR`: where the bare repositories are, as `DIR/owner+name/repo`
//!   (default `mirrors`, e.g. made by `git clone --bare URL mirrors/owner+name/repo`), or `--repo-dir owner/name=PATH` for one;
//! - `--only owner/name`: ask only that repository's questions (repeatable);
//! - `--weights b,p,d,m,c[/t,d,b,e,g,o,a[/body_b,feedback[,comments][/scope=X]]]`: an extra
//!   configuration to score (repeatable): field weights `body,path,defs,msgs,cochange`,
//!   then optionally the role priors `test,docs,bench,example,generated,other,asked`
//!   (empty for none), then the body field's BM25 `b` and the pseudo-relevance feedback
//!   weight (empty for the defaults), then `key=value` settings (`scope`, the lift of
//!   the files a commit message's `word:` prefix names, `prox`, `pdepth`, `pall` the
//!   proximity weight, depth and whether it counts for every query);
//! - `--misses`: print, for the default configuration, each question whose first gold
//!   file is not in the top 5, with the top 5.

#[path = "support/weights.rs"]
mod weights;

use std::collections::{BTreeMap, HashMap};

use git2::{Oid, Repository};
use scoped_repo_mcp::ranked::field::{Bm25, Field, count};
use scoped_repo_mcp::ranked::role::{self, Role};
use scoped_repo_mcp::ranked::{RankedIndex, Weights, terms};

struct Question {
    repo: String,
    commit: Oid,
    query: String,
    gold: Vec<String>,
    kind: String,
}

/// BM25 over path + whole file, identifiers split, one field.
struct Baseline {
    dict: HashMap<String, u32>,
    paths: Vec<String>,
    field: Field,
}

impl Baseline {
    fn build(repo: &Repository, commit: Oid) -> Self {
        let tree = repo.find_commit(commit).unwrap().tree().unwrap();
        let mut b = Baseline {
            dict: HashMap::new(),
            paths: Vec::new(),
            field: Field::default(),
        };
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
            if !matches!(e.filemode(), 0o100644 | 0o100755) {
                return git2::TreeWalkResult::Ok;
            }
            let path = format!("{dir}{}", e.name().unwrap_or(""));
            let blob = repo.find_blob(e.id()).unwrap();
            if scoped_repo_mcp::text::is_binary(blob.content()) {
                return git2::TreeWalkResult::Ok;
            }
            let text = format!("{path}\n{}", String::from_utf8_lossy(blob.content()));
            let mut ids = Vec::new();
            for w in terms::split_words(&text) {
                let n = b.dict.len() as u32;
                ids.push(*b.dict.entry(w).or_insert(n));
            }
            b.field.set(b.paths.len() as u32, count(ids));
            b.paths.push(path);
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        b
    }

    fn rank(&self, query: &str, limit: usize, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut qt: HashMap<u32, f32> = HashMap::new();
        for w in terms::split_words(query) {
            if let Some(&id) = self.dict.get(&w) {
                *qt.entry(id).or_default() += 1.0;
            }
        }
        let mut acc = vec![0.0; self.paths.len()];
        for (&t, &c) in &qt {
            self.field
                .accumulate(t, c, Bm25::default(), self.paths.len(), &mut acc);
        }
        let mut v: Vec<(usize, f32)> = acc.into_iter().enumerate().filter(|x| x.1 > 0.0).collect();
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .map(|(s, _)| self.paths[s].clone())
            .filter(|p| keep(p))
            .take(limit)
            .collect()
    }
}

#[derive(Default, Clone)]
struct Score {
    n: usize,
    r10: f64,
    h5: f64,
    rr: f64,
    /// Non-source files in the top 10, summed.
    other10: f64,
}

impl Score {
    fn add(&mut self, ranked: &[String], gold: &[String]) {
        self.n += 1;
        let top10 = &ranked[..ranked.len().min(10)];
        self.r10 += gold.iter().filter(|g| top10.contains(g)).count() as f64 / gold.len() as f64;
        if ranked.iter().take(5).any(|r| gold.contains(r)) {
            self.h5 += 1.0;
        }
        if let Some(i) = ranked.iter().take(100).position(|r| gold.contains(r)) {
            self.rr += 1.0 / (i + 1) as f64;
        }
        self.other10 += top10
            .iter()
            .filter(|p| role::role(p) != Role::Source)
            .count() as f64;
    }
    fn cells(&self) -> String {
        let n = self.n.max(1) as f64;
        format!(
            "{:.3} | {:.3} | {:.3} | {:.1}",
            self.r10 / n,
            self.h5 / n,
            self.rr / n,
            self.other10 / n
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!(
            "usage: eval_questions QUESTIONS.jsonl [--mirrors DIR] [--only owner/name] [--weights ...] [--misses]"
        );
        std::process::exit(2);
    }
    let mut mirrors = "mirrors".to_string();
    let mut repo_dirs: HashMap<String, String> = HashMap::new();
    let mut only: Vec<String> = Vec::new();
    let mut misses = false;
    let mut configs: Vec<(String, Weights)> = vec![("ranked (default)".into(), Weights::default())];
    let mut rest = args[1..].iter();
    while let Some(opt) = rest.next() {
        let mut next = || rest.next().cloned().expect("an option's value");
        match opt.as_str() {
            "--mirrors" => mirrors = next(),
            "--repo-dir" => {
                let v = next();
                let (k, p) = v.split_once('=').expect("--repo-dir owner/name=PATH");
                repo_dirs.insert(k.to_string(), p.to_string());
            }
            "--only" => only.push(next()),
            "--misses" => misses = true,
            "--weights" => {
                let v = next();
                configs.push((format!("ranked {v}"), weights::parse_weights(&v)));
            }
            other => panic!("unknown option {other}"),
        }
    }
    let questions: Vec<Question> = std::fs::read_to_string(&args[0])
        .expect("read the questions")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON question");
            Question {
                repo: v["repo"].as_str().unwrap().to_string(),
                commit: Oid::from_str(v["commit"].as_str().unwrap()).unwrap(),
                query: v["query"].as_str().unwrap().to_string(),
                gold: v["gold"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_string())
                    .collect(),
                kind: v["kind"].as_str().unwrap_or("").to_string(),
            }
        })
        .filter(|q| only.is_empty() || only.contains(&q.repo))
        .collect();

    let names: Vec<String> = std::iter::once("BM25 over source files".to_string())
        .chain(configs.iter().map(|c| c.0.clone()))
        .collect();
    // (method, group) → score; groups are "all", "repo:…", "kind:…".
    let mut scores: BTreeMap<(usize, String), Score> = BTreeMap::new();
    let mut times = Vec::new();
    let mut by_target: BTreeMap<(String, Oid), Vec<&Question>> = BTreeMap::new();
    for q in &questions {
        by_target
            .entry((q.repo.clone(), q.commit))
            .or_default()
            .push(q);
    }
    for ((name, commit), qs) in &by_target {
        let dir = repo_dirs
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("{mirrors}/{}/repo", name.replace('/', "+")));
        let repo = Repository::open(&dir).unwrap_or_else(|e| panic!("open {dir}: {e}"));
        let t = std::time::Instant::now();
        let index = RankedIndex::build(&repo, *commit).expect("build the index");
        eprintln!(
            "{name}: {} files indexed in {:.1?}",
            index.len(),
            t.elapsed()
        );
        let base = Baseline::build(&repo, *commit);
        // The files' text at the commit, as an answer reads it for proximity.
        let mut text = |path: &str| -> Option<String> {
            let blob = repo.find_blob(index.blob_of(path)?).ok()?;
            Some(String::from_utf8_lossy(blob.content()).into_owned())
        };
        for q in qs {
            let mut rankings = vec![base.rank(&q.query, 100, &|p| role::role(p) == Role::Source)];
            for (k, (_, w)) in configs.iter().enumerate() {
                let t = std::time::Instant::now();
                let r: Vec<String> = index
                    .rank_reading(&q.query, 100, w, &|_| true, &mut text)
                    .into_iter()
                    .map(|f| f.path)
                    .collect();
                if k == 0 {
                    times.push(t.elapsed());
                }
                rankings.push(r);
            }
            if misses && !rankings[1].iter().take(5).any(|r| q.gold.contains(r)) {
                println!("MISS [{}] {}\n  gold {:?}", q.kind, q.query, q.gold);
                for p in rankings[1].iter().take(5) {
                    println!("  - {p}");
                }
            }
            for (k, r) in rankings.iter().enumerate() {
                for group in [
                    "all".to_string(),
                    format!("repo:{}", q.repo),
                    format!("kind:{}", q.kind),
                ] {
                    scores.entry((k, group)).or_default().add(r, &q.gold);
                }
            }
        }
    }
    times.sort();
    let mut groups: Vec<String> = scores.keys().map(|(_, g)| g.clone()).collect();
    groups.sort();
    groups.dedup();
    groups.retain(|g| g != "all");
    groups.insert(0, "all".into());
    println!("| method | set | n | R@10 | Hit@5 | MRR | non-source in top 10 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for g in &groups {
        for (k, name) in names.iter().enumerate() {
            if let Some(s) = scores.get(&(k, g.clone())) {
                println!("| {name} | {g} | {} | {} |", s.n, s.cells());
            }
        }
    }
    if !times.is_empty() {
        println!(
            "\nranked query p50 {:.2?}, p99 {:.2?} ({} questions)",
            times[(times.len() - 1) / 2],
            times[((times.len() - 1) as f64 * 0.99).round() as usize],
            times.len()
        );
    }
}
