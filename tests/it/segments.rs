//! The line index's stored segments: a damaged or truncated segment, or a writer killed
//! in the middle of one, costs a rebuild and never a wrong answer; two servers on one
//! data directory share the segments while one commits; a tiny `--index-memory` drops
//! indexes from memory and every answer stays right; an idle server lets go of the
//! index pages its searches read. Every answer is compared with a plain scan of the
//! head's files by the same matcher.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scoped_repo_mcp::model::{Change, FileOp, LineQuery, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::search::LineSearcher;
use scoped_repo_mcp::search::index::FileEntry;
use scoped_repo_mcp::search::plan::trigram;
use scoped_repo_mcp::search::segment::{self, SegmentData};
use scoped_repo_mcp::store::{IndexKind, Limits, Store};
use serde_json::{Value, json};

use crate::common::{BIN, Client, Harness, call, ok};

/// (pattern, regex)
const QUERIES: &[(&str, bool)] = &[
    ("needle_7", false),
    (r"needle_\d+", true),
    ("fn helper_", false),
    (r"struct [A-Z]\w+Marker", true),
    ("tail of the big file", false),
    ("absent_everywhere_zq", false),
    (r"[a-z]+_[0-9]{3}\b", true),
];

fn query(pattern: &str, regex: bool) -> LineQuery {
    LineQuery {
        pattern: pattern.to_string(),
        regex,
        case_sensitive: true,
        path_glob: None,
        visible: None,
        max_results: 100_000,
        context_lines: 0,
    }
}

/// About 1 MB over 400 files (postings and contents each span many checksum blocks),
/// and one file of 300 KB.
fn corpus() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut word = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 26_000) as usize;
        format!(
            "{}{}{}_{:03}",
            (b'a' + (n % 26) as u8) as char,
            (b'a' + (n / 26 % 26) as u8) as char,
            (b'a' + (n / 676 % 26) as u8) as char,
            n % 1000
        )
    };
    for i in 0..400 {
        let mut text = format!("// file {i}\nfn helper_{i}() {{}}\n");
        if i % 9 == 0 {
            text.push_str(&format!("let x = needle_{i};\n"));
        }
        if i % 50 == 3 {
            text.push_str(&format!("struct Thing{i}Marker;\n"));
        }
        for _ in 0..40 {
            let line: Vec<String> = (0..8).map(|_| word()).collect();
            text.push_str(&line.join(" "));
            text.push('\n');
        }
        files.push((format!("src/m{}/f{i:03}.rs", i % 7), text));
    }
    let mut big = String::new();
    for i in 0..6000 {
        big.push_str(&format!("big line {i} of filler text for block spanning\n"));
    }
    big.push_str("tail of the big file: needle_7 again\n");
    files.push(("data/big.txt".into(), big));
    files
}

fn repo(h: &Harness, files: &[(String, String)]) -> RepoId {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    h.repo(&refs)
}

/// (path, line, text) of every hit.
type Hits = Vec<(String, u64, String)>;

/// The hits of a plain scan of the head's files.
fn scan(store: &Store, id: &RepoId, pattern: &str, regex: bool) -> Hits {
    let (_, files) = store.snapshot(id, None).unwrap();
    let files: Vec<Arc<FileEntry>> = files
        .into_iter()
        .map(|(p, t)| {
            Arc::new(FileEntry {
                path: p.into(),
                content: t.into_bytes().into(),
            })
        })
        .collect();
    let s = LineSearcher::new(&query(pattern, regex)).unwrap();
    let (hits, truncated, _) = s.search_files(&files, scoped_repo_mcp::search::TIME_BUDGET);
    assert!(!truncated);
    hits.into_iter().map(|h| (h.path, h.line, h.text)).collect()
}

/// Every query through `store`, checked against a scan; the head of the answers.
fn check_all(store: &Store, id: &RepoId) -> String {
    let mut head = None;
    for &(pattern, regex) in QUERIES {
        let got = store.search_lines(id, &query(pattern, regex)).unwrap();
        let hits: Hits = got
            .hits
            .into_iter()
            .map(|h| (h.path, h.line, h.text))
            .collect();
        same(&hits, &scan(store, id, pattern, regex), pattern);
        assert_eq!(got.head, store.head(id).unwrap());
        head = Some(got.head);
    }
    head.unwrap()
}

fn index_dir(data: &Path, id: &RepoId) -> PathBuf {
    data.join("index").join(id.to_string())
}

/// The segment names the manifest lists, base first.
fn manifest(data: &Path, id: &RepoId) -> Vec<String> {
    let text = std::fs::read_to_string(index_dir(data, id).join("manifest")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("segment "))
        .map(str::to_string)
        .collect()
}

fn fresh_store(data: &Path) -> Store {
    Store::open(data, Limits::default()).unwrap()
}

/// Damage the stored base segment with `damage` (given its path), then check that a
/// fresh process's answers are right and that the set was rebuilt.
fn survives(h: &Harness, id: &RepoId, damage: impl Fn(&Path)) {
    {
        let store = fresh_store(h.data_dir());
        check_all(&store, id);
    }
    let before = manifest(h.data_dir(), id);
    damage(&index_dir(h.data_dir(), id).join(&before[0]));
    let store = fresh_store(h.data_dir());
    check_all(&store, id);
    let after = manifest(h.data_dir(), id);
    assert_ne!(after, before, "the damaged set was not rebuilt");
    // And the rebuilt set opens cleanly in yet another process.
    drop(store);
    let store = fresh_store(h.data_dir());
    check_all(&store, id);
    assert_eq!(manifest(h.data_dir(), id), after);
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    // A new file in place of the old, as a careless tool would leave it.
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_truncated_segment_is_rebuilt_and_answers_stay_right() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    survives(&h, &id, |seg| {
        let len = std::fs::metadata(seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(len / 2).unwrap();
    });
    survives(&h, &id, |seg| {
        let len = std::fs::metadata(seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(len - 1).unwrap();
    });
}

#[test]
fn a_flipped_byte_in_the_contents_is_caught_before_it_is_searched() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    // Inside a line a query finds: searched unchecked, the answer would lose it.
    survives(&h, &id, |seg| {
        let layout = segment::inspect(seg).unwrap();
        let bytes = std::fs::read(seg).unwrap();
        let contents = &bytes[layout.contents.clone()];
        let at = contents
            .windows(b"needle_7".len())
            .position(|w| w == b"needle_7")
            .unwrap();
        flip(seg, layout.contents.start + at + 2);
    });
    // Far into the big file, in a block no other file shares.
    survives(&h, &id, |seg| {
        let layout = segment::inspect(seg).unwrap();
        let bytes = std::fs::read(seg).unwrap();
        let contents = &bytes[layout.contents.clone()];
        let at = contents
            .windows(b"tail of the big".len())
            .position(|w| w == b"tail of the big")
            .unwrap();
        flip(seg, layout.contents.start + at);
    });
}

#[test]
fn a_flipped_byte_in_the_postings_is_caught_before_it_narrows_a_search() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    // Inside the list of a trigram of `needle_`: read unchecked, it would drop or add
    // files; the list's block must fail its check and the search fall back to a scan.
    survives(&h, &id, |seg| {
        let layout = segment::inspect(seg).unwrap();
        let data = SegmentData::open(seg).unwrap();
        let list = data.list_range(trigram(b'e', b'd', b'l'));
        assert!(list.len() > 4, "the list is too short to damage");
        assert!(list.start >= layout.postings.start && list.end <= layout.postings.end);
        drop(data);
        flip(seg, list.start + list.len() / 2);
    });
    // In a list every file is on (`helper_`), at its last byte.
    survives(&h, &id, |seg| {
        let data = SegmentData::open(seg).unwrap();
        let list = data.list_range(trigram(b'e', b'l', b'p'));
        assert!(list.len() >= 400);
        drop(data);
        flip(seg, list.end - 1);
    });
}

#[test]
fn a_writer_killed_mid_segment_leaves_a_store_that_answers_and_no_litter() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    let dir = index_dir(h.data_dir(), &id);
    // The server builds the index for its first search; the hook pauses its segment
    // writer once 64 KiB of the temporary file are written.
    let partial = kill_serve_mid_write(&h, &id, "60000", &|| true);
    assert!(partial.exists());
    assert!(!dir.join("manifest").exists(), "a set was published");

    let store = fresh_store(h.data_dir());
    check_all(&store, &id);
    assert!(litter(&h, &id).is_empty(), "{:?}", litter(&h, &id));
    assert_eq!(manifest(h.data_dir(), &id).len(), 1);
}

/// Start `serve` on repo `id` with the segment writer's test pause set to `pause`, ask
/// it one search over stdio (which carries its index to the head), and kill it (-9)
/// once `ready` holds and a segment's temporary file holds 64 KiB; the path of that file.
fn kill_serve_mid_write(
    h: &Harness,
    id: &RepoId,
    pause: &str,
    ready: &dyn Fn() -> bool,
) -> PathBuf {
    use std::io::Write;
    let dir = index_dir(h.data_dir(), id);
    let mut child = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["serve", "--repo", &id.to_string()])
        .env_remove("RELACE_API_KEY")
        .env_remove("SCOPED_REPO_IDS")
        .env("SCOPED_REPO_TEST_PAUSE_SEGMENT_WRITE_MS", pause)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "segments-test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "search_repo",
            "arguments": {"repo_id": id.to_string(), "query": "needle_7", "mode": "literal"}}}),
    ];
    for m in messages {
        writeln!(stdin, "{m}").unwrap();
    }
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let found = ready()
            .then(|| std::fs::read_dir(&dir).ok())
            .flatten()
            .and_then(|entries| {
                entries.flatten().find(|e| {
                    e.file_name().to_string_lossy().starts_with(".tmp-")
                        && e.metadata().is_ok_and(|m| m.len() >= 64 * 1024)
                })
            });
        if let Some(e) = found {
            break e.path();
        }
        assert!(Instant::now() < deadline, "no segment write began");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);
    partial
}

/// A merge writes its segment without the directory's lock, under a temporary name of
/// its process, and names it only once it holds the lock to publish it. Another
/// process's publication meanwhile must leave that file (its writer is alive) and clear
/// a segment that no set names. (Servers sharing a data directory once cleared each
/// other's fresh merges before they were opened, and the merged index fell back to the
/// heap.)
#[test]
fn a_publication_spares_a_live_writers_segment_and_clears_an_unnamed_one() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    check_all(&fresh_store(h.data_dir()), &id);
    let dir = index_dir(h.data_dir(), &id);
    let base = dir.join(&manifest(h.data_dir(), &id)[0]);
    // This test's own process stands for the live writer.
    let in_flight = dir.join(format!(".tmp-{}-0123456789abcdef", std::process::id()));
    let unnamed = dir.join("fedcba9876543210fedcba9876543210.seg");
    std::fs::copy(&base, &in_flight).unwrap();
    std::fs::copy(&base, &unnamed).unwrap();

    // Another process commits: it stores a delta and publishes the set.
    let before = manifest(h.data_dir(), &id);
    let other = fresh_store(h.data_dir());
    other.update(&id, &rewrite(3), "t").unwrap();
    check_all(&other, &id);
    assert_ne!(manifest(h.data_dir(), &id), before, "nothing was published");

    assert!(in_flight.exists(), "a live writer's segment was cleared");
    assert!(!unnamed.exists(), "a segment no set names was left");
    std::fs::remove_file(&in_flight).unwrap();
}

/// The temporary files left in repo `id`'s index directory.
fn litter(h: &Harness, id: &RepoId) -> Vec<String> {
    // This process's own store may be writing a file at this moment (a merge it began
    // in the background after its first answer): only other processes' files are left
    // behind. Counting its own made the check fail on a loaded machine.
    let own = format!(".tmp-{}-", std::process::id());
    std::fs::read_dir(index_dir(h.data_dir(), id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-") && !n.starts_with(&own))
        .collect()
}

/// An update rewriting the first `n` files of the corpus with new lines.
fn rewrite(n: usize) -> UpdateSpec {
    let ops = corpus()
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, (path, text))| FileOp::Write {
            path: RepoPath::parse(&path).unwrap(),
            content: format!("{text}let fresh = needle_7_{i};\n"),
        })
        .collect();
    UpdateSpec {
        change: Change::Operations(ops),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    }
}

#[test]
fn a_writer_killed_mid_delta_leaves_the_stored_set_and_a_store_that_answers() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    check_all(&fresh_store(h.data_dir()), &id);
    let base = manifest(h.data_dir(), &id);
    assert_eq!(base.len(), 1);
    // A commit by a process that holds no index: the server carries the stored set
    // forward with a delta (about 100 KiB, under the merge's threshold).
    fresh_store(h.data_dir())
        .update(&id, &rewrite(40), "t")
        .unwrap();
    assert_eq!(manifest(h.data_dir(), &id), base);

    let partial = kill_serve_mid_write(&h, &id, "delta:60000", &|| true);
    assert!(partial.exists());
    assert_eq!(manifest(h.data_dir(), &id), base, "a set was published");

    let store = fresh_store(h.data_dir());
    let head = check_all(&store, &id);
    assert_eq!(head, store.head(&id).unwrap());
    assert!(litter(&h, &id).is_empty(), "{:?}", litter(&h, &id));
    // The base was kept and carried forward, not rebuilt.
    let now = manifest(h.data_dir(), &id);
    assert_eq!((now.len(), &now[0]), (2, &base[0]));
}

#[test]
fn a_writer_killed_mid_merge_leaves_the_stored_set_and_a_store_that_answers() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    check_all(&fresh_store(h.data_dir()), &id);
    let base = manifest(h.data_dir(), &id);
    // Churn past an eighth of the base: the server stores a delta, then merges the
    // set into a new base in the background.
    fresh_store(h.data_dir())
        .update(&id, &rewrite(300), "t")
        .unwrap();
    assert_eq!(manifest(h.data_dir(), &id), base);

    // The delta's own write is not paused: wait for its publication first.
    let partial = kill_serve_mid_write(&h, &id, "merge:60000", &|| {
        manifest(h.data_dir(), &id).len() == 2
    });
    assert!(partial.exists());
    // The delta was published before the merge began; the merge published nothing.
    let published = manifest(h.data_dir(), &id);
    assert_eq!((published.len(), &published[0]), (2, &base[0]));

    let store = fresh_store(h.data_dir());
    check_all(&store, &id);
    // The published set served the answers; this process merges it in turn, and the
    // merged base serves the next process. The killed writer's file is cleared when
    // that merge is published (a process that opens a stored set at its head publishes
    // nothing until then), so it is looked for only after.
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifest(h.data_dir(), &id).len() != 1 {
        assert!(Instant::now() < deadline, "the set was never merged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(litter(&h, &id).is_empty(), "{:?}", litter(&h, &id));
    let merged = manifest(h.data_dir(), &id);
    assert_ne!(merged[0], base[0]);
    drop(store);
    check_all(&fresh_store(h.data_dir()), &id);
    assert_eq!(manifest(h.data_dir(), &id), merged);
}

async fn search(c: &Client, id: &RepoId, pattern: &str, regex: bool) -> Value {
    ok(&call(
        c,
        "search_repo",
        json!({"repo_id": id.to_string(), "query": pattern, "mode": if regex { "regex" } else { "literal" }, "max_results": 1000}),
    )
    .await)
}

/// A scan's hits as a server answers them: the first 1000.
fn scan_capped(store: &Store, id: &RepoId, pattern: &str, regex: bool) -> Hits {
    let mut hits = scan(store, id, pattern, regex);
    hits.truncate(1000);
    hits
}

/// `got` equals `want`, or a short account of where they part.
fn same(got: &Hits, want: &Hits, what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} hits, a scan finds {}; first difference at {at:?}: {:?} vs {:?}",
            got.len(),
            want.len(),
            at.map(|i| &got[i]),
            at.map(|i| &want[i])
        );
    }
}

fn hits_of(answer: &Value) -> Hits {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_string(),
                h["line"].as_u64().unwrap(),
                h["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_the_segments_while_one_commits() {
    let h = Harness::new();
    let id = repo(&h, &corpus());
    let a = h.client_for(&[id]).await;
    let first = search(&a, &id, "needle_7", false).await;
    same(
        &hits_of(&first),
        &scan_capped(&h.store, &id, "needle_7", false),
        "first",
    );
    let stored = manifest(h.data_dir(), &id);
    assert_eq!(stored.len(), 1);

    // The second server opens the stored segments rather than building its own.
    let b = h.client_for(&[id]).await;
    let from_b = search(&b, &id, r"needle_\d+", true).await;
    same(
        &hits_of(&from_b),
        &scan_capped(&h.store, &id, r"needle_\d+", true),
        "from B",
    );
    assert_eq!(manifest(h.data_dir(), &id), stored);

    for round in 0..3 {
        let out = ok(&call(
            &b,
            "update_repo_files",
            json!({"repo_id": id.to_string(), "operations": [
                {"type": "write", "path": format!("src/new{round}.rs"), "content": format!("let y = needle_7_{round};\n")},
                {"type": "delete", "path": format!("src/m{}/f{:03}.rs", round * 9 % 7, round * 9)},
                {"type": "write", "path": "src/m1/f001.rs", "content": format!("round {round}\n")},
            ]}),
        )
        .await);
        let head = out["head"].as_str().unwrap();
        // B stored a delta on top of the base.
        let now = manifest(h.data_dir(), &id);
        assert_eq!(now[0], stored[0]);
        assert_eq!(now.len(), round + 2);
        for &(pattern, regex) in QUERIES {
            let from_a = search(&a, &id, pattern, regex).await;
            assert_eq!(
                from_a["head"], head,
                "A answered `{pattern}` from an old head"
            );
            same(
                &hits_of(&from_a),
                &scan_capped(&h.store, &id, pattern, regex),
                &format!("`{pattern}` after commit {round}"),
            );
        }
        // A followed B's set; it stored nothing of its own.
        assert_eq!(manifest(h.data_dir(), &id), now);
    }
    a.cancel().await.ok();
    b.cancel().await.ok();
}

fn write_op(path: &str, content: &str) -> UpdateSpec {
    UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse(path).unwrap(),
            content: content.into(),
        }]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    }
}

#[test]
fn a_one_byte_index_memory_drops_every_other_index_and_answers_stay_right() {
    let h = Harness::new();
    let files = corpus();
    let repos: Vec<RepoId> = (0..4).map(|_| repo(&h, &files[..120])).collect();
    let store = fresh_store(h.data_dir());
    store.set_index_memory(1);
    for round in 0..2 {
        for id in &repos {
            check_all(&store, id);
            let (limit, held) = store.index_memory();
            assert_eq!(limit, 1);
            // Only the index just used is held.
            assert_eq!(held.len(), 1, "{held:?}");
            assert_eq!((held[0].repo, held[0].kind), (*id, IndexKind::Line));
            assert!(held[0].bytes > 0);
        }
        // A commit to a repo whose index was dropped.
        store
            .update(&repos[round], &write_op("new.rs", "needle_7 fresh\n"), "t")
            .unwrap();
    }
    for id in &repos {
        check_all(&store, id);
    }
    // The stored segments stayed: dropped indexes were opened, not rebuilt.
    for id in &repos {
        assert!(!manifest(h.data_dir(), id).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_under_a_tiny_index_memory_answers_right_across_repos() {
    let h = Harness::new();
    let files = corpus();
    let repos: Vec<RepoId> = (0..3).map(|_| repo(&h, &files[..80])).collect();
    let ids: Vec<String> = repos.iter().map(ToString::to_string).collect();
    let c = h
        .client(&["--repo", &ids.join(","), "--index-memory", "64KiB"])
        .await;
    for round in 0..2 {
        for id in &repos {
            for &(pattern, regex) in &QUERIES[..4] {
                let got = search(&c, id, pattern, regex).await;
                same(
                    &hits_of(&got),
                    &scan_capped(&h.store, id, pattern, regex),
                    pattern,
                );
            }
            let ranked = ok(&call(
                &c,
                "search_repo",
                json!({"repo_id": id.to_string(), "query": "helper function marker", "mode": "ranked"}),
            )
            .await);
            assert_eq!(ranked["mode"], "ranked");
            assert_eq!(ranked["head"], h.store.head(id).unwrap());
            let files = h.store.list_files(id).unwrap().paths.len();
            assert_eq!(ranked["files_searched"], files as u64);
        }
        h.store
            .update(&repos[round], &write_op("late.rs", "needle_7 late\n"), "t")
            .unwrap();
    }
    let last = search(&c, &repos[1], "needle_7", false).await;
    assert_eq!(last["head"], h.store.head(&repos[1]).unwrap());
    assert_eq!(hits_of(&last), scan(&h.store, &repos[1], "needle_7", false));
    c.cancel().await.ok();
}

/// KiB that process `pid` holds of its mappings of files under `dir` (its smaps).
fn mapped_kib_under(pid: u32, dir: &Path) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let dir = dir.to_str().unwrap();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range, perms, offset, device, inode, path.
            inside = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|p| p.starts_with(dir));
        } else if inside && let Some(v) = line.strip_prefix("Rss:") {
            kib += v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    kib
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_lets_go_of_the_index_pages_its_searches_read() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let h = Harness::new();
    let files = corpus();
    let id = repo(&h, &files);
    let dir = index_dir(h.data_dir(), &id);
    let cmd = h.command(&["serve", "--repo", &id.to_string()]);
    let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = transport.id().unwrap();
    let c: Client = rmcp::ServiceExt::serve((), transport).await.unwrap();
    // No trigram narrows this pattern: the search reads every file's text.
    let (pattern, regex) = (r"[a-z]+_[0-9]{3}\b", true);
    let want = scan_capped(&h.store, &id, pattern, regex);
    let idle = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = mapped_kib_under(pid, &dir);
            if held == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {held} KiB of index files held after 30 s idle"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // While and right after a search, its pages are held (they go a quarter second
    // after they were first held). A loaded machine may take longer than that between
    // the answer and a look, so the pages are sampled throughout the call, and the
    // most seen counts.
    let mut held = 0;
    for _ in 0..5 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (stop, dir) = (stop.clone(), dir.clone());
            std::thread::spawn(move || {
                let mut most = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    most = most.max(mapped_kib_under(pid, &dir));
                    std::thread::sleep(Duration::from_millis(2));
                }
                most.max(mapped_kib_under(pid, &dir))
            })
        };
        let got = search(&c, &id, pattern, regex).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        held = sampler.join().unwrap();
        same(&hits_of(&got), &want, "a full read");
        if held >= 256 {
            break;
        }
    }
    assert!(
        held >= 256,
        "a search over 1 MB of text held only {held} KiB"
    );
    idle("after line searches");
    // What was let go reads back the same.
    same(
        &hits_of(&search(&c, &id, pattern, regex).await),
        &want,
        "read back",
    );
    idle("after a line search again");
    // A ranked index is built, stored and moved onto its file (a check reads the whole
    // file); a restart loads it (the same check). Neither keeps the file's pages.
    let ranked =
        json!({"repo_id": id.to_string(), "query": "helper function marker", "mode": "ranked"});
    let first = ok(&call(&c, "search_repo", ranked.clone()).await);
    let stored = dir.join("ranked.bin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stored.exists() {
        assert!(
            Instant::now() < deadline,
            "the ranked index was never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    idle("after the ranked index was stored");
    assert_eq!(
        ok(&call(&c, "search_repo", ranked.clone()).await)["hits"],
        first["hits"]
    );
    idle("after a ranked search");
    c.cancel().await.ok();
}
