//! Where a ranked index's memory goes on a large corpus: built, stored, and loaded
//! back as a restarted server loads it.
//!
//! Run: `cargo run --release --example ranked_heap -- DIR SCRATCH [QUERIES]`. `DIR`'s
//! text files (up to 1 MiB) are imported as one commit into a bare repository at
//! `SCRATCH/repo.git` (made once, reused by later runs); the index is built, its heap
//! measured by part ([`RankedIndex::heap_bytes`]) and by the process's anonymous
//! resident memory, stored at `SCRATCH/ranked.bin`, dropped, loaded back, measured
//! again, and queried (doc-comment sentences sampled from the corpus). With
//! `--load-only`, the build is skipped and the index an earlier run stored is loaded.

use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature};
use scoped_repo_mcp::model::RankedQuery;
use scoped_repo_mcp::ranked::{RankedIndex, Weights};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(&args[0]);
    let scratch = std::path::PathBuf::from(&args[1]);
    let n_queries: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let repo_dir = scratch.join("repo.git");
    let (repo, head) = if repo_dir.exists() {
        let repo = Repository::open_bare(&repo_dir).unwrap();
        let head = repo.refname_to_id("refs/heads/main").unwrap();
        (repo, head)
    } else {
        let repo = Repository::init_bare(&repo_dir).unwrap();
        let head = import(&repo, &dir);
        repo.reference("refs/heads/main", head, true, "import")
            .unwrap();
        (repo, head)
    };
    let queries = sample_queries(&repo, head, n_queries);
    let text = text_bytes(&repo, head);
    println!("text: {:.1} MiB", text as f64 / MIB);
    report("before building", None, text);

    let stored = scratch.join("ranked.bin");
    // `--load-only`: skip the build, and load what an earlier run stored.
    if !(args.iter().any(|a| a == "--load-only") && stored.exists()) {
        let t = Instant::now();
        let mut built = RankedIndex::build(&repo, head).unwrap();
        println!("build: {:.1?}", t.elapsed());
        report("built", Some(&built), text);
        let t = Instant::now();
        store(&mut built, &stored);
        println!(
            "store: {:.2?}, {:.1} MiB",
            t.elapsed(),
            std::fs::metadata(&stored).unwrap().len() as f64 / MIB
        );
        report("built, after storing", Some(&built), text);
        drop(built);
        trim();
        report("dropped", None, text);
    }

    let t = Instant::now();
    let cpu = thread_cpu();
    let index = load(&stored);
    let first = RankedQuery {
        text: queries.first().cloned().unwrap_or_default(),
        path_glob: None,
        visible: None,
        max_results: 50,
        token_limit: 8000,
    };
    std::hint::black_box(
        index
            .answer(&repo, &first, &Weights::default(), &|_| true, &|_| None)
            .unwrap(),
    );
    println!(
        "load + first answer: {:.2?} (CPU {:.2?})",
        t.elapsed(),
        thread_cpu() - cpu
    );
    report("loaded", Some(&index), text);

    // Ranking alone (no snippets), to see where a query's time goes.
    let mut rank_times = Vec::new();
    for q in &queries {
        let t = Instant::now();
        std::hint::black_box(index.rank(q, 50, &Weights::default(), &|_| true));
        rank_times.push(t.elapsed());
    }
    rank_times.sort();
    if !rank_times.is_empty() {
        println!(
            "ranking alone: p50 {:.1?}, p99 {:.1?}",
            rank_times[rank_times.len() / 2],
            rank_times[((rank_times.len() - 1) as f64 * 0.99) as usize]
        );
    }
    let mut times = Vec::new();
    for q in &queries {
        let rq = RankedQuery {
            text: q.clone(),
            path_glob: None,
            visible: None,
            max_results: 50,
            token_limit: 8000,
        };
        let t = Instant::now();
        std::hint::black_box(
            index
                .answer(&repo, &rq, &Weights::default(), &|_| true, &|_| None)
                .unwrap(),
        );
        times.push(t.elapsed());
    }
    times.sort();
    if !times.is_empty() {
        println!(
            "queries: {}, p50 {:.1?}, p99 {:.1?}",
            times.len(),
            times[times.len() / 2],
            times[((times.len() - 1) as f64 * 0.99) as usize]
        );
    }
    report("loaded, after the queries", Some(&index), text);
    snippet_stages(&index, &repo, &queries);

    // An incremental update on the mapped index: ten files rewritten in one commit.
    let mut index = index;
    let next = edit_ten(&repo, head);
    let t = Instant::now();
    index.advance(&repo, next).unwrap();
    println!("advance (10 files): {:.1?}", t.elapsed());
    report("loaded, advanced", Some(&index), text);
    let t = Instant::now();
    store(&mut index, &stored);
    println!("store again: {:.2?}", t.elapsed());
    report("advanced, stored again", Some(&index), text);
}

/// Where a query's snippet time goes: for the files an answer cuts snippets from (the
/// 50 best, until 8,000 tokens of snippet are spent), the blob reads, the definitions
/// (chunk boundaries) and the whole choice of the best chunk, summed per query; the
/// medians over the queries are printed.
fn snippet_stages(index: &RankedIndex, repo: &Repository, queries: &[String]) {
    use scoped_repo_mcp::ranked::{chunks, symbols};
    let (mut blobs, mut defs, mut best, mut files, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for q in queries {
        let weights = chunks::QueryTerms::new(&index.term_weights(q));
        let (mut tb, mut td, mut tc, mut n, mut read) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0, 0);
        let mut budget = 8000usize;
        for f in index.rank(q, 50, &Weights::default(), &|_| true) {
            let Some(id) = index.blob_of(&f.path) else {
                continue;
            };
            let t = Instant::now();
            let blob = repo.find_blob(id).unwrap();
            let text = String::from_utf8_lossy(blob.content()).into_owned();
            tb += t.elapsed();
            let t = Instant::now();
            std::hint::black_box(symbols::definitions(&f.path, &text));
            td += t.elapsed();
            let t = Instant::now();
            let (s, e) = chunks::best_chunk(&f.path, &text, &weights);
            tc += t.elapsed();
            n += 1;
            read += text.len();
            let cut: usize = text.lines().skip(s).take(e - s).map(|l| l.len() + 1).sum();
            if cut.div_ceil(4) >= budget {
                break;
            }
            budget -= cut.div_ceil(4);
        }
        blobs.push(tb);
        defs.push(td);
        best.push(tc);
        files.push(n);
        bytes.push(read);
    }
    fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
        v.sort();
        v[v.len() / 2]
    }
    if queries.is_empty() {
        return;
    }
    println!(
        "snippet stages, median per query: {} files, {:.0} KiB read; blob reads {:.1?}, definitions {:.1?}, best chunk (definitions included) {:.1?}",
        median(files),
        median(bytes) as f64 / 1024.0,
        median(blobs),
        median(defs),
        median(best)
    );
}

/// A commit on `head` rewriting ten files spread over the tree.
fn edit_ten(repo: &Repository, head: Oid) -> Oid {
    let parent = repo.find_commit(head).unwrap();
    let tree = parent.tree().unwrap();
    let mut paths = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            paths.push(format!("{root}{}", e.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&tree).unwrap();
    for p in paths.iter().step_by((paths.len() / 10).max(1)).take(10) {
        let blob = tree
            .get_path(std::path::Path::new(p))
            .unwrap()
            .to_object(repo)
            .unwrap()
            .peel_to_blob()
            .unwrap();
        let bytes = [blob.content(), b"\n// edited: quetzalcoatl\n"].concat();
        let id = repo.blob(&bytes).unwrap();
        let mut e = index.get_path(std::path::Path::new(p), 0).unwrap();
        e.id = id;
        e.file_size = bytes.len() as u32;
        index.add(&e).unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let sig = Signature::now("bench", "bench@localhost").unwrap();
    repo.commit(None, &sig, &sig, "Edit ten files", &tree, &[&parent])
        .unwrap()
}

const MIB: f64 = 1024.0 * 1024.0;

/// As the store stores an index: a snapshot written to a new file, synced, checked and
/// mapped, renamed into place, and the index moved onto it.
fn store(ix: &mut RankedIndex, path: &std::path::Path) {
    let snap = ix.snapshot();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .unwrap();
    snap.write(&mut std::io::BufWriter::with_capacity(1 << 20, &mut f))
        .unwrap();
    f.sync_all().unwrap();
    let base = scoped_repo_mcp::ranked::disk::StoredBase::open(&f, &snap).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    drop(snap);
    assert!(ix.rebase(base));
    trim();
}

/// As a restarted server loads it: mapped, checked.
fn load(path: &std::path::Path) -> RankedIndex {
    RankedIndex::open(&std::fs::File::open(path).unwrap()).unwrap()
}

fn report(what: &str, ix: Option<&RankedIndex>, text: u64) {
    let anon = proc_status("RssAnon:");
    let file = proc_status("RssFile:");
    print!(
        "{what}: RssAnon {:.0} MiB ({:.3}x the text), RssFile {:.0} MiB",
        anon as f64 / MIB,
        anon as f64 / text as f64,
        file as f64 / MIB
    );
    if let Some(ix) = ix {
        let h = ix.heap_bytes();
        print!(
            "; heap_bytes {:.0} MiB ({:.3}x): terms {:.0}, files {:.0}, fields {:.0}, history {:.0}; mapped {:.0} MiB",
            h.total() as f64 / MIB,
            h.total() as f64 / text as f64,
            h.terms as f64 / MIB,
            h.files as f64 / MIB,
            h.fields as f64 / MIB,
            h.history as f64 / MIB,
            h.mapped as f64 / MIB
        );
    }
    println!();
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn trim() {
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Every text file up to 1 MiB under `dir`, as one commit (blobs written one by one,
/// so the corpus is never held whole).
fn import(repo: &Repository, dir: &std::path::Path) -> Oid {
    let mut index = git2::Index::new().unwrap();
    for entry in ignore::WalkBuilder::new(dir)
        .hidden(false)
        .build()
        .flatten()
    {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if bytes.len() > 1024 * 1024 || scoped_repo_mcp::text::is_binary(&bytes) {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let id = repo.blob(&bytes).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: bytes.len() as u32,
                id,
                flags: rel.len().min(0xfff) as u16,
                flags_extended: 0,
                path: rel.into_bytes(),
            })
            .unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let sig = Signature::now("bench", "bench@localhost").unwrap();
    repo.commit(None, &sig, &sig, "Import the corpus", &tree, &[])
        .unwrap()
}

fn text_bytes(repo: &Repository, head: Oid) -> u64 {
    let tree = repo.find_commit(head).unwrap().tree().unwrap();
    let mut n = 0u64;
    tree.walk(git2::TreeWalkMode::PreOrder, |_, e| {
        if let Ok(b) = e.to_object(repo).and_then(|o| o.peel_to_blob()) {
            n += b.size() as u64;
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    n
}

/// Comment sentences of five or more words (`///`, `//!` or ` * ` lines) of the `.c` and
/// `.rs` files under top-level directories starting with `d` or `k`, or under `src`
/// (on the kernel: `drivers/`, `kernel/`), every k-th one.
fn sample_queries(repo: &Repository, head: Oid, n: usize) -> Vec<String> {
    let tree = repo.find_commit(head).unwrap().tree().unwrap();
    let mut sentences = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        let name = e.name().unwrap_or("");
        if !(name.ends_with(".c") || name.ends_with(".rs"))
            || !root.starts_with('d') && !root.starts_with("src") && !root.starts_with("k")
        {
            return git2::TreeWalkResult::Ok;
        }
        if let Ok(b) = e.to_object(repo).and_then(|o| o.peel_to_blob()) {
            for line in String::from_utf8_lossy(b.content()).lines() {
                let t = line.trim_start();
                if let Some(s) = t
                    .strip_prefix("/// ")
                    .or_else(|| t.strip_prefix("//! "))
                    .or_else(|| t.strip_prefix("* "))
                    && s.split_whitespace().count() >= 5
                    && !s.contains('`')
                {
                    sentences.push(s.to_string());
                }
            }
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    let step = (sentences.len() / n.max(1)).max(1);
    sentences.into_iter().step_by(step).take(n).collect()
}
