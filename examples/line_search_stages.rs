//! Where the time of one line search goes, stage by stage, on a repo already in a store:
//! compiling and planning the pattern, listing the candidate files, searching them, and
//! rendering the answer as JSON. Plus two reference points: the regex alone over the
//! files the answer needed (one thread, no hand-over), and how many bytes those were.
//!
//! Run: `cargo run --release --example line_search_stages -- DATA_DIR REPO_ID PATTERN
//! [MAX_RESULTS] [RUNS]` (the pattern as a regex, case-sensitive; defaults 200 and 21).

use std::time::{Duration, Instant};

use grep_regex::RegexMatcherBuilder;
use grep_searcher::SearcherBuilder;
use grep_searcher::sinks::UTF8;
use scoped_repo_mcp::model::{LineQuery, RepoId};
use scoped_repo_mcp::search::LineSearcher;
use scoped_repo_mcp::store::{Limits, Store};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, repo, pattern, rest @ ..] = args.as_slice() else {
        eprintln!("usage: line_search_stages DATA_DIR REPO_ID PATTERN [MAX_RESULTS] [RUNS]");
        std::process::exit(2)
    };
    let max_results: usize = rest.first().and_then(|s| s.parse().ok()).unwrap_or(200);
    let runs: usize = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(21);
    let store = Store::open(std::path::Path::new(data), Limits::default()).expect("open");
    let id: RepoId = repo.parse().expect("a repo id");
    let t = Instant::now();
    let index = store.line_index(&id).expect("the line index");
    println!("index load: {}", ms(t.elapsed()));
    let query = LineQuery {
        pattern: pattern.clone(),
        regex: true,
        case_sensitive: true,
        path_glob: None,
        visible: None,
        max_results,
        context_lines: 0,
    };
    let (mut compile, mut list, mut search, mut render) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let searcher = LineSearcher::new(&query).expect("the pattern compiles");
        compile.push(t.elapsed());
        let t = Instant::now();
        let candidates = index.candidates(searcher.plan(), |p| searcher.wants_path(p));
        list.push(t.elapsed());
        let t = Instant::now();
        let (hits, truncated, searched) =
            searcher.search_files(&candidates, scoped_repo_mcp::search::TIME_BUDGET);
        search.push(t.elapsed());
        let t = Instant::now();
        let json = serde_json::to_string(&hits).expect("hits serialize");
        render.push(t.elapsed());
        last = Some((candidates, hits, truncated, searched, json.len()));
    }
    let (candidates, answer, truncated, searched, json) = last.expect("one run");
    let hits = answer.len();
    println!(
        "plan: {:?}",
        LineSearcher::new(&query).expect("compiles").plan()
    );
    println!(
        "candidates {}, hits {hits}, truncated {truncated}, files searched {searched}, json {json} bytes",
        candidates.len()
    );
    println!("compile + plan:    {}", ms(median(compile)));
    println!("candidate listing: {}", ms(median(list)));
    println!("search_files:      {}", ms(median(search)));
    println!("render (JSON):     {}", ms(median(render)));

    // The same search with every file handed to the regex, and the stencil alone.
    let searcher = LineSearcher::new(&query).expect("compiles");
    if let Some(stencil) = searcher.stencil() {
        println!("stencil: {stencil:?}");
        let plain = LineSearcher::new(&query)
            .expect("compiles")
            .without_stencil();
        let mut times = Vec::new();
        let mut same = true;
        for _ in 0..runs {
            let t = Instant::now();
            let (h, _, _) = plain.search_files(&candidates, scoped_repo_mcp::search::TIME_BUDGET);
            times.push(t.elapsed());
            same &= h == answer;
        }
        println!(
            "search_files, no stencil: {} (same hits: {same})",
            ms(median(times))
        );
        let needed = &candidates[..searched.min(candidates.len())];
        let mut times = Vec::new();
        let mut passed = 0;
        for _ in 0..runs.min(7) {
            let t = Instant::now();
            passed = needed
                .iter()
                .filter(|f| stencil.may_match(&f.content))
                .count();
            times.push(t.elapsed());
        }
        println!(
            "stencil alone over the {} files needed, one thread: {} ({passed} pass)",
            needed.len(),
            ms(median(times))
        );
    }

    // The regex alone, one thread, over exactly the files the answer needed.
    let needed = &candidates[..searched.min(candidates.len())];
    let bytes: usize = needed.iter().map(|f| f.content.len()).sum();
    let matcher = RegexMatcherBuilder::new()
        .multi_line(true)
        .unicode(true)
        .octal(false)
        .line_terminator(Some(b'\n'))
        .build(pattern)
        .expect("compiles");
    let mut searcher = SearcherBuilder::new().line_number(true).build();
    let mut alone = Vec::new();
    for _ in 0..runs.min(7) {
        let mut n = 0u64;
        let t = Instant::now();
        for f in needed {
            let _ = searcher.search_slice(
                &matcher,
                &f.content,
                UTF8(|_, _| {
                    n += 1;
                    Ok(true)
                }),
            );
        }
        alone.push(t.elapsed());
    }
    println!(
        "regex alone over the {} files needed ({:.1} MB), one thread, every match: {}",
        needed.len(),
        bytes as f64 / 1e6,
        ms(median(alone))
    );
    let t = Instant::now();
    let sizes: usize = candidates.iter().map(|f| f.content.len()).sum();
    println!(
        "one pass over every candidate's length ({:.0} MB): {}",
        sizes as f64 / 1e6,
        ms(t.elapsed())
    );
}
