//! Ranked query latency on a large corpus: imports a directory's text files into a
//! scratch bare git repository as one commit, builds the ranked index, then times
//! natural-language queries (with snippets, as `search_repo` answers them) and an
//! incremental update of a few files. It also stores the built index as a server does,
//! drops it, and times opening it (mapped) and the first answer (what a restarted
//! server pays before its first ranked answer); the queries then run on the index
//! opened. Its resident memory then counts the pages of the file it has read.
//!
//! The build is also told in CPU time (every thread of the process, which a loaded
//! machine does not inflate as it does wall time) and in peak resident memory: the
//! corpus goes into the repository file by file as it is read, not held, and the peak
//! is restarted just before the build, so the peak printed is the build's own. The
//! build is the store's (`RankedIndex::build_stored`): a large corpus's spills its
//! documents, writes the stored file as it goes and is opened from it, so its time and
//! peak include storing; a small one's is stored after, as before.
//!
//! Under `/usr/bin/time -v` the maximum resident size is the whole run's: import,
//! build, store, load and queries.
//!
//! Run: `cargo run --release --example ranked_latency -- DIR [QUERIES]`
//! (`QUERIES` defaults to 500; the queries are doc-comment sentences sampled from the
//! corpus itself, so they have answers.)

use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature};
use scoped_repo_mcp::model::RankedQuery;
use scoped_repo_mcp::ranked::{RankedIndex, Weights};

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A commit of `files` (path, blob, size) on `parent`.
fn commit(repo: &Repository, files: &[(String, Oid, usize)], parent: Option<Oid>) -> Oid {
    let mut index = git2::Index::new().unwrap();
    if let Some(p) = parent {
        index
            .read_tree(&repo.find_commit(p).unwrap().tree().unwrap())
            .unwrap();
    }
    for (path, id, size) in files {
        let mut e = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: *size as u32,
            id: *id,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        e.flags = path.len().min(0xfff) as u16;
        index.add(&e).unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let sig = Signature::now("bench", "bench@localhost").unwrap();
    let parents: Vec<git2::Commit<'_>> = parent
        .map(|p| repo.find_commit(p).unwrap())
        .into_iter()
        .collect();
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, &sig, &sig, "Import the corpus", &tree, &refs)
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().expect("usage: ranked_latency DIR [QUERIES]"));
    let n_queries: usize = args.get(1).map_or(500, |s| s.parse().unwrap());
    // Each file goes into the repository as it is read, so that the corpus is not held
    // in memory: the process's peak is the build's.
    let scratch = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(scratch.path()).unwrap();
    let mut walked = Vec::new();
    for entry in ignore::WalkBuilder::new(&dir)
        .hidden(false)
        .build()
        .flatten()
    {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        walked.push(entry.into_path());
    }
    walked.sort();
    let mut files = Vec::new();
    let mut bytes_total = 0usize;
    // Queries: doc-comment sentences of five or more words, every k-th one.
    let mut sentences = Vec::new();
    for path in walked {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.len() > 1024 * 1024 || scoped_repo_mcp::text::is_binary(&bytes) {
            continue;
        }
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        bytes_total += bytes.len();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let t = line.trim_start();
            if let Some(s) = t.strip_prefix("/// ").or_else(|| t.strip_prefix("//! "))
                && s.split_whitespace().count() >= 5
                && !s.contains('`')
            {
                sentences.push(s.to_string());
            }
        }
        files.push((rel, repo.blob(&bytes).unwrap(), bytes.len()));
    }
    files.sort();
    let step = (sentences.len() / n_queries.max(1)).max(1);
    let queries: Vec<String> = sentences
        .into_iter()
        .step_by(step)
        .take(n_queries)
        // Asked as questions, so that every field counts (the terms are the same).
        .map(|s| format!("{s}?"))
        .collect();

    let head = commit(&repo, &files, None);
    // Hand the import's freed memory back and restart the peak, so that the peak read
    // after the build is the build's own.
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_start = rss_mib();
    let cpu_start = process_cpu();
    let t = Instant::now();
    // Built as the store builds it: a large corpus's build writes its stored copy as
    // it goes and is opened from it; a small one's is stored after.
    let stored = scratch.path().join("ranked.bin");
    let (mut built, stored_by_build) =
        RankedIndex::build_stored(&repo, head, &|_| {}, &stored).unwrap();
    let build = t.elapsed();
    let build_cpu = process_cpu() - cpu_start;
    let build_peak = peak_mib();

    // Stored as the store stores it (a new file, synced, checked and mapped); read back
    // as a restarted server reads it (mapped).
    let t = Instant::now();
    if !stored_by_build {
        assert!(built.store_at(&stored).unwrap());
    }
    let store = t.elapsed();
    let stored_bytes = std::fs::metadata(&stored).unwrap().len();
    let (terms, term_bytes) = dictionary_size(&stored);
    drop(built);
    // Hand the freed build back to the system, so that the index read back is measured
    // on its own rather than in reused memory.
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    let rss_before = rss_mib();
    let t = Instant::now();
    let cpu = thread_cpu();
    let mut index = RankedIndex::open(&std::fs::File::open(&stored).unwrap()).unwrap();
    let load = t.elapsed();
    let load_cpu = thread_cpu() - cpu;
    let first_query = RankedQuery {
        text: queries.first().cloned().unwrap_or_default(),
        path_glob: None,
        visible: None,
        max_results: 50,
        token_limit: 8000,
    };
    std::hint::black_box(
        index
            .answer(&repo, &first_query, &Weights::default(), &|_| true, &|_| {
                None
            })
            .unwrap(),
    );
    let first_answer = t.elapsed();
    let first_answer_cpu = thread_cpu() - cpu;
    let rss_after = rss_mib();

    let weights = Weights::default();
    // The weights before proximity counted: timed on the same index, query by query in
    // turn with the defaults, so both see the same load. The queries are asked as
    // questions ("What …?"), so that the comments field and proximity count.
    let before = Weights {
        proximity: 0.0,
        ..Weights::default()
    };
    let mut times = Vec::new();
    let mut times_before = Vec::new();
    for q in &queries {
        let rq = RankedQuery {
            text: q.clone(),
            path_glob: None,
            visible: None,
            max_results: 50,
            token_limit: 8000,
        };
        let t = Instant::now();
        let (hits, _) = index
            .answer(&repo, &rq, &before, &|_| true, &|_| None)
            .unwrap();
        times_before.push(t.elapsed());
        std::hint::black_box(hits);
        let t = Instant::now();
        let (hits, _) = index
            .answer(&repo, &rq, &weights, &|_| true, &|_| None)
            .unwrap();
        times.push(t.elapsed());
        std::hint::black_box(hits);
    }
    times.sort();
    times_before.sort();

    // An incremental update: ten files rewritten in one commit.
    let changed: Vec<(String, Oid, usize)> = files
        .iter()
        .step_by((files.len() / 10).max(1))
        .take(10)
        .map(|(p, id, _)| {
            let b = repo.find_blob(*id).unwrap();
            let bytes = [b.content(), b"\n// edited\n"].concat();
            (p.clone(), repo.blob(&bytes).unwrap(), bytes.len())
        })
        .collect();
    let next = commit(&repo, &changed, Some(head));
    let t = Instant::now();
    index.advance(&repo, next).unwrap();
    let advance = t.elapsed();

    println!("| corpus | files | MiB | build | queries | p50 | p99 | advance (10 files) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {:.0} | {:.1?} | {} | {:.2?} | {:.2?} | {:.1?} |",
        dir.display(),
        index.len(),
        bytes_total as f64 / (1024.0 * 1024.0),
        build,
        times.len(),
        pct(&times, 0.5),
        pct(&times, 0.99),
        advance
    );
    println!(
        "\nsame queries, without proximity: p50 {:.2?}, p99 {:.2?}\n",
        pct(&times_before, 0.5),
        pct(&times_before, 0.99)
    );
    println!(
        "build{}: {:.1?} wall, {:.1?} CPU (all threads), peak resident {:.1} MiB ({:.2}x the text; {:.1} MiB before it)\n",
        if stored_by_build {
            " (stored as it went, then opened)"
        } else {
            ""
        },
        build,
        build_cpu,
        build_peak,
        build_peak / (bytes_total as f64 / (1024.0 * 1024.0)),
        rss_start
    );
    println!(
        "dictionary: {terms} terms, {:.1} MiB of term bytes; stored with their offsets and ids, {:.1} MiB (what a build holds in memory throughout, with its hash table)\n",
        term_bytes as f64 / (1024.0 * 1024.0),
        (term_bytes + 8 * terms) as f64 / (1024.0 * 1024.0)
    );
    // CPU time beside wall time: on a shared machine the wall time also counts the
    // time other processes held the cores.
    println!(
        "| stored MiB | store (write, fsync, check, map) | open and check (CPU) | first answer after opening (CPU) | RSS of the index opened (MiB) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {:.2} | {:.2?} | {:.2?} ({:.2?}) | {:.2?} ({:.2?}) | {:.0} |",
        stored_bytes as f64 / (1024.0 * 1024.0),
        store,
        load,
        load_cpu,
        first_answer,
        first_answer_cpu,
        rss_after - rss_before
    );
}

/// How many terms the stored index at `path` holds, and their bytes: its first
/// section's length and its second's (one offset a term, and one more), from the table
/// of sections at the file's end (see `ranked::disk`).
fn dictionary_size(path: &std::path::Path) -> (u64, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    let mut table = [0u8; 25 * 16];
    f.seek(SeekFrom::End(-(table.len() as i64))).unwrap();
    f.read_exact(&mut table).unwrap();
    let len = |i: usize| u64::from_le_bytes(table[i * 16 + 8..i * 16 + 16].try_into().unwrap());
    ((len(1) / 4).saturating_sub(1), len(0))
}

/// CPU time of the calling thread (zero where it cannot be read).
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

/// CPU time of the whole process, every thread (zero where it cannot be read).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// This process's peak resident memory since it started or since the peak was last
/// restarted (`/proc/self/clear_refs`), in MiB (0 where `/proc` is missing).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// This process's resident memory, in MiB (0 where `/proc` is missing).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}
