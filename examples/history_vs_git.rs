//! The store's history calls side by side with the `git` program on a real history:
//! list_commits by path against `git log -- PATH`, blame against `git blame
//! --porcelain`, search_history against `git log -S`, get_commit's patch against `git
//! show`. Each figure is the median of several runs, ours and git's alternating round by
//! round; the ratio is ours over git's.
//!
//! The corpus is a bare git repository (tokio's by default); its objects are cloned into
//! a store repo's git directory, so the store reads exactly that history, with no
//! import's checks or index builds in the way.
//!
//! `cargo run --release --example history_vs_git -- [REPO] [PATH] [FILE] [NEEDLE]`
//! (defaults: `tokio.git`, a bare clone of tokio-rs/tokio, `tokio/src/runtime`,
//! `tokio/src/net/windows/named_pipe.rs`, `spawn_blocking`; `HISTORY_ROUNDS`, default 5).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scoped_repo_mcp::model::{
    BlameQuery, CommitQuery, DiffDetail, DiffQuery, HistoryMatch, HistoryMode, RevSpec,
};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    out.stdout
}

/// The commits in `git log --format=commit %H...` output.
fn commits_in(out: &[u8]) -> usize {
    out.split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"commit "))
        .count()
}

/// One side's median time and the items it counted.
type Side = (Duration, usize);

/// Both sides, run alternately round by round, so that a change in the machine's load
/// falls on both.
fn alternate(
    rounds: usize,
    mut ours: impl FnMut() -> usize,
    mut theirs: impl FnMut() -> usize,
) -> (Side, Side) {
    let mut times = (Vec::new(), Vec::new());
    let mut n = (0, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        n.0 = ours();
        times.0.push(t.elapsed());
        let t = Instant::now();
        n.1 = theirs();
        times.1.push(t.elapsed());
    }
    times.0.sort();
    times.1.sort();
    (
        (times.0[times.0.len() / 2], n.0),
        (times.1[times.1.len() / 2], n.1),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let corpus = arg(0, "tokio.git");
    let dir_path = arg(1, "tokio/src/runtime");
    let file = arg(2, "tokio/src/net/windows/named_pipe.rs");
    let needle = arg(3, "spawn_blocking");
    let rounds: usize = std::env::var("HISTORY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);

    let scratch = tempfile::tempdir().unwrap();
    let (id, git_dir) = {
        let store = Store::open(scratch.path(), Limits::default()).unwrap();
        let files = vec![(RepoPath::parse("seed.txt").unwrap(), "seed\n".to_string())];
        let id = store.create_repo(BTreeMap::new(), &files).unwrap().0.id;
        (id, store.git_dir(&id))
    };
    std::fs::remove_dir_all(&git_dir).unwrap();
    let cloned = Command::new("git")
        .args(["clone", "-q", "--bare", &corpus])
        .arg(&git_dir)
        .status()
        .unwrap();
    assert!(cloned.success());
    let head = String::from_utf8(git(&git_dir, &["rev-parse", "HEAD"])).unwrap();
    git(&git_dir, &["update-ref", "refs/heads/main", head.trim()]);
    git(&git_dir, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let store = Store::open(scratch.path(), Limits::default()).unwrap();
    let commits = String::from_utf8(git(&git_dir, &["rev-list", "--count", "main"])).unwrap();
    println!(
        "corpus {corpus} at {}, {} commits; median of {rounds} runs\n",
        &head.trim()[..12],
        commits.trim()
    );
    println!("| measurement | ours ms | git ms | ratio (ours / git) | items (ours / git) |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |what: &str, ours: (Duration, usize), theirs: (Duration, usize)| {
        println!(
            "| {what} | {:.1} | {:.1} | {:.2}x | {} / {} |",
            ours.0.as_secs_f64() * 1e3,
            theirs.0.as_secs_f64() * 1e3,
            ours.0.as_secs_f64() / theirs.0.as_secs_f64(),
            ours.1,
            theirs.1
        );
    };

    // list_commits by path, every page of 200, against one `git log -- PATH`.
    let (ours, theirs) = alternate(
        rounds,
        || {
            let mut q = CommitQuery {
                path: Some(dir_path.clone()),
                max_results: 200,
                ..CommitQuery::default()
            };
            let mut n = 0;
            loop {
                let page = store.list_commits(&id, &q).unwrap();
                n += page.commits.len();
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break n,
                }
            }
        },
        || {
            commits_in(&git(
                &git_dir,
                &[
                    "log",
                    "--name-status",
                    "--format=commit %H%n%P%n%an%n%at%n%B",
                    "--",
                    &dir_path,
                ],
            ))
        },
    );
    row(
        &format!("list_commits path=`{dir_path}` (all pages) vs `git log --name-status -- PATH`"),
        ours,
        theirs,
    );

    let q = CommitQuery {
        max_results: 200,
        ..CommitQuery::default()
    };
    let (ours, theirs) = alternate(
        rounds,
        || store.list_commits(&id, &q).unwrap().commits.len(),
        || {
            commits_in(&git(
                &git_dir,
                &[
                    "log",
                    "-n",
                    "200",
                    "--name-status",
                    "--format=commit %H%n%P%n%an%n%at%n%B",
                ],
            ))
        },
    );
    row(
        "list_commits, first 200 (no filter) vs `git log -n 200 --name-status`",
        ours,
        theirs,
    );

    let bq = BlameQuery {
        path: RepoPath::parse(&file).unwrap(),
        start_line: 0,
        end_line: 0,
        at: None,
    };
    let (ours, theirs) = alternate(
        rounds,
        || {
            scoped_repo_mcp::backend::blame_in_store(&store, &id, &bq)
                .unwrap()
                .ranges
                .iter()
                .map(|r| (r.end_line - r.start_line + 1) as usize)
                .sum()
        },
        || {
            git(&git_dir, &["blame", "--porcelain", "main", "--", &file])
                .split(|b| *b == b'\n')
                .filter(|l| l.first() == Some(&b'\t'))
                .count()
        },
    );
    row(
        &format!("blame_file `{file}` vs `git blame --porcelain`"),
        ours,
        theirs,
    );

    let sq = CommitQuery {
        max_results: 30,
        matching: Some(HistoryMatch {
            text: needle.clone(),
            mode: HistoryMode::Added,
            path_glob: None,
        }),
        ..CommitQuery::default()
    };
    let (ours, theirs) = alternate(
        rounds.min(3),
        || store.list_commits(&id, &sq).unwrap().commits.len(),
        || {
            // -S finds commits that add or remove the text; `added` only those that add
            // it, so ours walks further back for the same 30 commits.
            commits_in(&git(
                &git_dir,
                &[
                    "log",
                    "-n",
                    "30",
                    &format!("-S{needle}"),
                    "--format=commit %H",
                ],
            ))
        },
    );
    row(
        &format!("search_history added `{needle}`, 30 commits vs `git log -n 30 -S`"),
        ours,
        theirs,
    );

    // The largest commit of the last 200 by changed files, as a patch.
    let big = String::from_utf8(git(
        &git_dir,
        &["log", "-n", "200", "--format=%H", "--shortstat"],
    ))
    .unwrap();
    let mut best = (0usize, String::new());
    let mut current = String::new();
    for l in big.lines() {
        if l.len() == 40 {
            current = l.to_string();
        } else if let Some(n) = l.split_whitespace().next().and_then(|n| n.parse().ok())
            && n > best.0
        {
            best = (n, current.clone());
        }
    }
    let dq = DiffQuery {
        detail: DiffDetail::Patch,
        path_glob: None,
        context_lines: 3,
        first_file: 0,
        visible: None,
    };
    let rev = RevSpec::Commit(best.1.clone());
    let (ours, theirs) = alternate(
        rounds,
        || {
            let mut q = dq.clone();
            let mut bytes = 0;
            loop {
                let (_, d) = store.commit_diff(&id, &rev, &q).unwrap();
                bytes += d
                    .files
                    .iter()
                    .filter_map(|f| f.patch.as_ref())
                    .map(String::len)
                    .sum::<usize>();
                match d.next_file {
                    Some(n) => q.first_file = n,
                    None => break bytes,
                }
            }
        },
        || git(&git_dir, &["show", "--format=", "-M", &best.1]).len(),
    );
    row(
        &format!(
            "get_commit patch of {} ({} files; every page) vs `git show`",
            &best.1[..12],
            best.0
        ),
        ours,
        theirs,
    );
}
