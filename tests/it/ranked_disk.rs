//! The ranked index stored on disk: a restarted process loads it instead of building,
//! carries it over commits made meanwhile by any process, never trusts a damaged or
//! half-written copy, and a build tells a client that asked how it goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, NumberOrString, ProgressToken, RequestMetaObject};
use scoped_repo_mcp::model::{Change, FileOp, RankedHit, RankedQuery, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::ranked::AdvanceStats;
use scoped_repo_mcp::store::{Limits, RankedOrigin, SAVE_AFTER_COMMITS, Store};
use serde_json::{Value, json};

use crate::common::{Harness, call, ok};
use crate::progress::ProgressSink;

use crate::ranked::FILES;

const HOOK: &str = "SCOPED_REPO_MCP_TEST_PAUSE_RANKED_SAVE";

fn query(text: &str) -> RankedQuery {
    RankedQuery {
        text: text.into(),
        path_glob: None,
        visible: None,
        max_results: 10,
        token_limit: 8000,
    }
}

const QUESTIONS: &[&str] = &[
    "where is the retry backoff computed",
    "verify api tokens against the hash",
    "throttle the request rate",
    "small demo server",
];

/// What `store` answers to every question.
fn answers(store: &Store, id: &RepoId) -> Vec<Vec<RankedHit>> {
    QUESTIONS
        .iter()
        .map(|q| {
            let r = store.search_ranked(id, &query(q)).unwrap();
            assert_eq!(r.head, store.head(id).unwrap());
            r.hits
        })
        .collect()
}

/// The same files, line ranges and snippets; the same scores to within rounding (a
/// loaded index may sum a query's terms in another order).
fn assert_same_answers(a: &[Vec<RankedHit>], b: &[Vec<RankedHit>]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len(), "{x:?} vs {y:?}");
        for (p, q) in x.iter().zip(y) {
            assert_eq!(
                (&p.path, p.start_line, p.end_line, &p.snippet),
                (&q.path, q.start_line, q.end_line, &q.snippet)
            );
            assert!(
                (p.score - q.score).abs() <= 1e-4 * p.score.abs().max(1.0),
                "{p:?} vs {q:?}"
            );
        }
    }
}

fn reopen(h: &Harness) -> Store {
    Store::open(h.data_dir(), Limits::default()).unwrap()
}

/// Wait until the stored copy of `id`'s index describes `head` (it is written on a
/// thread of its own).
fn wait_stored(path: &Path, head: &str) -> Vec<u8> {
    for _ in 0..600 {
        if let Ok(bytes) = std::fs::read(path)
            && scoped_repo_mcp::ranked::disk::stored_head(&bytes).map(|o| o.to_string())
                == Some(head.to_string())
        {
            return bytes;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no stored ranked index at {head} in {}", path.display());
}

/// Wait until the stored copy is exactly `bytes`.
fn wait_bytes(path: &Path, bytes: &[u8]) {
    for _ in 0..600 {
        if std::fs::read(path).is_ok_and(|b| b == bytes) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the stored ranked index was not written again");
}

fn write(path: &str, content: &str, message: &str) -> UpdateSpec {
    UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse(path).unwrap(),
            content: content.into(),
        }]),
        expected_head: None,
        message: Some(message.into()),
        control: Default::default(),
        visible: None,
    }
}

/// The process id a paused writer wrote to `marker` (the test hooks' way of saying
/// they hold), waiting up to 30 s for it; empty if none came.
fn pid_written_to(marker: &Path) -> String {
    for _ in 0..600 {
        let pid = std::fs::read_to_string(marker).unwrap_or_default();
        if !pid.is_empty() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    String::new()
}

/// Temporary files a writer left in the repo's index directory.
fn temps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(".ranked.bin.")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_store_loads_the_ranked_index_and_applies_commits_made_since() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let first = answers(&h.store, &r);
    assert_eq!(h.store.ranked_origin(&r), Some(RankedOrigin::Built));
    let path = h.store.ranked_index_path(&r);
    wait_stored(&path, &h.store.head(&r).unwrap());

    // Another process commits after the copy was stored.
    let other = reopen(&h);
    let spec = UpdateSpec {
        change: Change::Operations(vec![
            FileOp::Write {
                path: RepoPath::parse("src/limits/throttle.rs").unwrap(),
                content: "/// Throttle the request rate with a token bucket.\npub fn throttle(rate: u32) {}\n".into(),
            },
            FileOp::Delete {
                path: RepoPath::parse("README.md").unwrap(),
            },
        ]),
        expected_head: None,
        message: Some("Introduce the kaleidoscope limiter".into()),
        control: Default::default(),
        visible: None,
    };
    let head = other.update(&r, &spec, "other").unwrap().head;
    drop(other);

    // A restart loads the stored copy and carries it over that commit.
    let restarted = reopen(&h);
    let loaded = answers(&restarted, &r);
    assert_eq!(
        restarted.ranked_origin(&r),
        Some(RankedOrigin::Loaded(AdvanceStats {
            files: 2,
            commits: 1
        }))
    );
    assert_ne!(loaded, first);
    assert_eq!(loaded[2][0].path, "src/limits/throttle.rs");
    assert!(
        loaded[3].iter().all(|h| h.path != "README.md"),
        "{loaded:?}"
    );
    let by_message = restarted.search_ranked(&r, &query("kaleidoscope")).unwrap();
    assert_eq!(by_message.head, head);
    assert_eq!(by_message.hits[0].path, "src/limits/throttle.rs");

    // The same answers as an index built afresh at that head.
    std::fs::remove_file(&path).unwrap();
    let rebuilt = reopen(&h);
    assert_same_answers(&answers(&rebuilt, &r), &loaded);
    assert_eq!(rebuilt.ranked_origin(&r), Some(RankedOrigin::Built));
}

/// Snippets are cut from the text the line index holds at the head, not from inflated
/// blobs: with the line index stored, the answers stay whole after the files' blobs
/// are gone from git (which no store does: here it shows where the text comes from).
#[tokio::test(flavor = "multi_thread")]
async fn ranked_snippets_read_the_line_index_text_at_the_head() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let first = answers(&h.store, &r);
    let head = h.store.head(&r).unwrap();
    wait_stored(&h.store.ranked_index_path(&r), &head);
    assert_eq!(h.store.line_index(&r).unwrap().head(), head);

    remove_blobs(&h.store, &r);
    let other = reopen(&h);
    assert_same_answers(&answers(&other, &r), &first);
}

/// Remove the loose objects of `FILES`' blobs from `id`'s git directory.
fn remove_blobs(store: &Store, id: &RepoId) {
    let git_dir = store.git_dir(id);
    for (path, _) in FILES {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&git_dir)
            .args(["rev-parse", &format!("HEAD:{path}")])
            .output()
            .unwrap();
        let blob = String::from_utf8(out.stdout).unwrap();
        let (dir, file) = blob.trim().split_at(2);
        std::fs::remove_file(git_dir.join("objects").join(dir).join(file))
            .unwrap_or_else(|e| panic!("{path}'s blob {blob} is not a loose object: {e}"));
    }
}

/// A ranked build takes the files' text from the line index at its head (an import
/// has just stored it) instead of inflating their blobs: with the blobs gone from git
/// it builds, and answers as a build that read them.
#[tokio::test(flavor = "multi_thread")]
async fn a_ranked_build_reads_the_line_index_text_at_the_head() {
    let h = Harness::new();
    let from_git = h.repo(FILES);
    let expected = answers(&h.store, &from_git);
    let r = h.repo(FILES);
    assert_eq!(
        h.store.line_index(&r).unwrap().head(),
        h.store.head(&r).unwrap()
    );
    remove_blobs(&h.store, &r);
    assert_eq!(
        h.store.build_ranked_index(&r, &|_| {}).unwrap(),
        scoped_repo_mcp::store::RankedBuild::Built
    );
    assert_same_answers(&answers(&h.store, &r), &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_foreign_stored_ranked_index_is_rebuilt_never_trusted() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let expected = answers(&h.store, &r);
    let path = h.store.ranked_index_path(&r);
    let good = wait_stored(&path, &h.store.head(&r).unwrap());
    let other = h.repo(&[("elsewhere.rs", "fn unrelated_retry_token() {}\n")]);
    let _ = h.store.search_ranked(&other, &query("retry")).unwrap();
    let foreign = wait_stored(
        &h.store.ranked_index_path(&other),
        &h.store.head(&other).unwrap(),
    );

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("cut to its header", good[..40].to_vec()),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("another repo's", foreign),
    ];
    for at in [50, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[at] ^= 0x04;
        cases.push(("a byte flipped", b));
    }
    let mut version = good.clone();
    version[8] = version[8].wrapping_add(1);
    cases.push(("another format version", version));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let store = reopen(&h);
        assert_same_answers(&answers(&store, &r), &expected);
        assert_eq!(
            store.ranked_origin(&r),
            Some(RankedOrigin::Built),
            "{what}: rebuilt"
        );
        // The rebuilt index is stored again, whole (a build is deterministic).
        wait_bytes(&path, &good);
    }
    let store = reopen(&h);
    assert_same_answers(&answers(&store, &r), &expected);
    assert!(matches!(
        store.ranked_origin(&r),
        Some(RankedOrigin::Loaded(_))
    ));
}

fn ranked_call(repo: &RepoId, text: &str, token: Option<&str>) -> CallToolRequestParams {
    let Value::Object(map) = json!({"repo_id": repo.to_string(), "query": text, "mode": "ranked"})
    else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("search_repo").with_arguments(map);
    if let Some(token) = token {
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::String(token.into()),
        )));
    }
    params
}

#[tokio::test(flavor = "multi_thread")]
async fn building_the_ranked_index_reports_progress_when_asked() {
    let h = Harness::new();
    let files: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("src/m{i:04}.rs"),
                format!("/// Module number {i}.\npub fn handler_{i}() {{}}\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let r = h.repo(&refs);
    let sink = ProgressSink::default();
    let client = h
        .client_with(sink.clone(), &["--repo", &r.to_string()])
        .await;
    let answer = client
        .call_tool(ranked_call(&r, "module number 42 handler", Some("rk")))
        .await
        .unwrap();
    assert_eq!(answer.is_error, Some(false));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sink.0.lock().unwrap().clone();
    let messages: Vec<String> = seen.iter().filter_map(|p| p.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("512 of 1500 files") && m.contains("ranked index")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.contains("1500 of 1500 files")));
    assert!(messages.iter().any(|m| m.contains("commits of history")));
    // Numbered one after another (the client may hand them over in another order), all
    // for the call that asked.
    let mut numbers: Vec<f64> = seen.iter().map(|p| p.progress).collect();
    numbers.sort_by(f64::total_cmp);
    assert_eq!(
        numbers,
        (1..=seen.len()).map(|n| n as f64).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .all(|p| p.progress_token == seen[0].progress_token)
    );

    // With the index built, a query has nothing to report.
    let before = seen.len();
    let again = client
        .call_tool(ranked_call(&r, "module number 7", Some("rk2")))
        .await
        .unwrap();
    assert_eq!(again.is_error, Some(false));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.0.lock().unwrap().len(), before);
}

/// Start a server whose writer of the stored copy pauses halfway, ask it a ranked
/// question, and kill it (`kill -9`) once it has paused. Returns its answer's head.
async fn kill_while_storing(h: &Harness, r: &RepoId) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("paused");
    let marker_s = marker.to_str().unwrap();
    let c = h
        .client_env(&["--repo", &r.to_string()], &[(HOOK, marker_s)])
        .await;
    let out = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "where is the retry backoff computed", "mode": "ranked"}),
    )
    .await);
    assert_eq!(out["ranked"][0]["path"], "src/retry/backoff.rs");
    let pid = pid_written_to(&marker);
    assert!(!pid.is_empty(), "the writer never paused");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(c);
    out["head"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_while_storing_the_ranked_index_leaves_nothing_trusted_half_written() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let path = h.store.ranked_index_path(&r);
    let dir = path.parent().unwrap().to_path_buf();

    // No stored copy yet: the server builds, and dies halfway through storing it.
    let head = kill_while_storing(&h, &r).await;
    assert!(!path.exists(), "a half-written copy took the stored name");
    let half = temps(&dir);
    assert_eq!(half.len(), 1, "{half:?}");
    assert!(std::fs::metadata(&half[0]).unwrap().len() > 0);
    // The next start builds afresh (the half-written file is never read).
    let next = reopen(&h);
    let built = answers(&next, &r);
    assert_eq!(next.ranked_origin(&r), Some(RankedOrigin::Built));
    let good = wait_stored(&path, &head);
    drop(next);

    // With a good copy stored, enough commits land for a loading server to store a
    // newer copy; it dies halfway through that.
    for i in 0..=SAVE_AFTER_COMMITS {
        h.store
            .update(
                &r,
                &write(
                    "src/limits/throttle.rs",
                    &format!("/// Throttle the request rate, step {i}.\npub fn throttle() {{}}\n"),
                    &format!("Tune the throttle, step {i}"),
                ),
                "test",
            )
            .unwrap();
    }
    let head = kill_while_storing(&h, &r).await;
    assert_eq!(head, h.store.head(&r).unwrap());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the old copy stands until a new one is whole"
    );
    // The next start loads the old copy and carries it over every commit since.
    let next = reopen(&h);
    let loaded = answers(&next, &r);
    match next.ranked_origin(&r) {
        Some(RankedOrigin::Loaded(stats)) => assert!(stats.commits > SAVE_AFTER_COMMITS),
        other => panic!("expected a load, got {other:?}"),
    }
    assert_eq!(loaded[2][0].path, "src/limits/throttle.rs");
    assert_eq!(loaded[0][0].path, built[0][0].path);
    std::fs::remove_file(&path).unwrap();
    assert_same_answers(&answers(&reopen(&h), &r), &loaded);

    // And a server on that data directory answers at the head.
    let c = h.client_for(&[r]).await;
    let out = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "throttle the request rate", "mode": "ranked"}),
    )
    .await);
    assert_eq!(out["head"], head);
    assert_eq!(out["ranked"][0]["path"], "src/limits/throttle.rs");
}

// Two processes on one data directory: one has the stored copy mapped while the other,
// after enough commits, stores a newer copy over it. The first keeps its mapping of the
// old file (a rename never changes a file in place) and answers right at every head.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_stored_over_the_one_another_process_maps_leaves_its_answers_right() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let _ = answers(&h.store, &r);
    let path = h.store.ranked_index_path(&r);
    let old = wait_stored(&path, &h.store.head(&r).unwrap());

    let a = reopen(&h);
    let before = answers(&a, &r);
    assert!(matches!(a.ranked_origin(&r), Some(RankedOrigin::Loaded(_))));

    // The other process takes enough commits to store a newer copy.
    let b = reopen(&h);
    let _ = answers(&b, &r);
    for i in 0..=SAVE_AFTER_COMMITS {
        b.update(
            &r,
            &write(
                "src/limits/throttle.rs",
                &format!("/// Throttle the request rate, step {i}.\npub fn throttle() {{}}\n"),
                &format!("Tune the throttle, step {i}"),
            ),
            "b",
        )
        .unwrap();
    }
    // Stored once the commits reached the threshold (not necessarily at the last).
    let stored_head = |b: &[u8]| scoped_repo_mcp::ranked::disk::stored_head(b);
    let mut newer = None;
    for _ in 0..600 {
        if let Ok(bytes) = std::fs::read(&path)
            && stored_head(&bytes) != stored_head(&old)
        {
            newer = Some(bytes);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(newer.is_some(), "no newer copy was stored");

    // The first process, its old file replaced under its mapping, carries its index to
    // the head: the same answers as the other process, and as an index built afresh.
    let a_now = answers(&a, &r);
    assert_eq!(a_now[2][0].path, "src/limits/throttle.rs");
    assert_same_answers(&a_now, &answers(&b, &r));
    assert_ne!(a_now, before);
    drop((a, b));
    // A store either process began may still land, on its own thread, after the drop:
    // remove the stored copy once no write is under way and it stays gone.
    let dir = path.parent().unwrap().to_path_buf();
    let writing = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".ranked.bin."))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let _ = std::fs::remove_file(&path);
        std::thread::sleep(Duration::from_millis(500));
        if !path.exists() && !writing() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a stored copy kept coming back"
        );
    }
    let rebuilt = reopen(&h);
    assert_same_answers(&answers(&rebuilt, &r), &a_now);
    assert_eq!(rebuilt.ranked_origin(&r), Some(RankedOrigin::Built));
}

/// Start a stdio `serve` on `r` (raw JSON-RPC over pipes, so that closing its stdin is
/// all its client does), ask one ranked question, and answer the child with its stdin
/// still open.
fn ask_ranked_raw(
    h: &Harness,
    r: &RepoId,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    ask_ranked_raw_logging(h, r, args, env, std::process::Stdio::null())
}

/// [`ask_ranked_raw`], the server's log going to `stderr`.
fn ask_ranked_raw_logging(
    h: &Harness,
    r: &RepoId,
    args: &[&str],
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> std::process::Child {
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["serve", "--repo", &r.to_string()])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RELACE_API_KEY")
        .env_remove("SCOPED_REPO_IDS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "search_repo", "arguments": {"repo_id": r.to_string(),
        "query": "where is the retry backoff computed", "mode": "ranked"}}});
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#).unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(stdin, "{call}").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let answered = lines.any(|l| l.unwrap().contains(r#""id":2"#));
    assert!(answered, "the ranked question was not answered");
    child.stdin = Some(stdin);
    child
}

/// Wait for `child` to exit, at most `within`.
fn exits_within(child: &mut std::process::Child, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Ask a `serve` with `--stop-timeout` `stop_timeout` a ranked question, and return once
/// its writer of the stored copy is held halfway by the test hook (until `marker` is
/// removed).
fn ask_with_the_writer_held(
    h: &Harness,
    r: &RepoId,
    marker: &Path,
    stop_timeout: &str,
) -> std::process::Child {
    let child = ask_ranked_raw(
        h,
        r,
        &[],
        &[
            (HOOK, marker.to_str().unwrap()),
            ("SCOPED_REPO_STOP_TIMEOUT", stop_timeout),
        ],
    );
    for _ in 0..600 {
        if std::fs::metadata(marker).is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = h.store.ranked_index_path(r).parent().unwrap().to_path_buf();
    assert!(!temps(&dir).is_empty(), "the writer is under way");
    child
}

// A server whose client closed stdin while it stored the ranked index it had just built
// exited at once, leaving a half-written file (on the Linux kernel, 239 MB and 77 MB)
// and the next process to build it all again.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_client_left_mid_store_left_a_half_written_index() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let path = h.store.ranked_index_path(&r);
    let dir = path.parent().unwrap().to_path_buf();
    // The writer never finishes: the server waits its --stop-timeout, then removes what
    // it wrote.
    let marker = h.dir.path().join("paused");
    let mut child = ask_with_the_writer_held(&h, &r, &marker, "1s");
    drop(child.stdin.take());
    assert!(
        exits_within(&mut child, Duration::from_secs(20)),
        "the server did not stop"
    );
    assert!(temps(&dir).is_empty(), "left behind: {:?}", temps(&dir));
    assert!(!path.exists());

    // A writer that can finish: the server stops once the stored copy is whole.
    let mut child = ask_ranked_raw(&h, &r, &[], &[]);
    drop(child.stdin.take());
    assert!(
        exits_within(&mut child, Duration::from_secs(60)),
        "the server did not stop"
    );
    let head = h.store.head(&r).unwrap();
    assert_eq!(
        std::fs::read(&path)
            .ok()
            .and_then(|b| scoped_repo_mcp::ranked::disk::stored_head(&b))
            .map(|o| o.to_string()),
        Some(head),
        "the index built was stored before the process ended"
    );
    assert!(temps(&dir).is_empty());
}

// A stdio server sent SIGTERM while it stored the ranked index it had just built (as an
// MCP client does a moment after closing stdin) died at once: the index was lost and the
// next process built it all again. Its stdin stays open here: the signal alone stops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_sent_sigterm_mid_store_lost_the_index_it_had_built() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let path = h.store.ranked_index_path(&r);
    let dir = path.parent().unwrap().to_path_buf();
    let marker = h.dir.path().join("paused");
    let stop_within = |timeout: &str| {
        let child = ask_with_the_writer_held(&h, &r, &marker, timeout);
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child
    };

    // The writer goes on once the test lets it: the server waits for it, then exits.
    let mut child = stop_within("60s");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits for the store"
    );
    std::fs::remove_file(&marker).unwrap();
    assert!(
        exits_within(&mut child, Duration::from_secs(30)),
        "the server did not stop"
    );
    assert!(child.wait().unwrap().success());
    let head = h.store.head(&r).unwrap();
    let stored = std::fs::read(&path).expect("stored before the process ended");
    assert_eq!(
        scoped_repo_mcp::ranked::disk::stored_head(&stored).map(|o| o.to_string()),
        Some(head)
    );
    assert!(temps(&dir).is_empty(), "left behind: {:?}", temps(&dir));

    // A writer that never goes on: past --stop-timeout its partial file goes, the
    // stored copy before it stays.
    std::fs::remove_file(&path).unwrap();
    let mut child = stop_within("1s");
    assert!(
        exits_within(&mut child, Duration::from_secs(20)),
        "the server did not stop"
    );
    assert!(temps(&dir).is_empty(), "left behind: {:?}", temps(&dir));
    assert!(!path.exists());
    std::fs::remove_file(&marker).unwrap();
}

// A large repo's build spills its documents to files and stores itself as it goes:
// the copy must be in place once the first answer comes (no second write), another
// process must load it and answer as an index built in memory does, byte for byte the
// same file, and no temporary may be left.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_that_spills_stores_the_copy_another_process_loads() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let path = h.store.ranked_index_path(&r);
    let dir = path.parent().unwrap().to_path_buf();
    let head = h.store.head(&r).unwrap();
    let spill = [("SCOPED_REPO_MCP_TEST_RANKED_SPILL_AFTER", "0")];
    let mut child = ask_ranked_raw(&h, &r, &[], &spill);
    let bytes = std::fs::read(&path).expect("stored before the answer");
    assert_eq!(
        scoped_repo_mcp::ranked::disk::stored_head(&bytes).map(|o| o.to_string()),
        Some(head.clone())
    );
    drop(child.stdin.take());
    assert!(
        exits_within(&mut child, Duration::from_secs(60)),
        "the server did not stop"
    );
    assert!(temps(&dir).is_empty(), "left behind: {:?}", temps(&dir));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "written once");

    let loaded = reopen(&h);
    let from_spilled = answers(&loaded, &r);
    assert_eq!(
        loaded.ranked_origin(&r),
        Some(RankedOrigin::Loaded(AdvanceStats::default()))
    );
    drop(loaded);
    std::fs::remove_file(&path).unwrap();
    let rebuilt = reopen(&h);
    assert_same_answers(&answers(&rebuilt, &r), &from_spilled);
    assert_eq!(rebuilt.ranked_origin(&r), Some(RankedOrigin::Built));
    assert_eq!(
        wait_stored(&path, &head),
        bytes,
        "the same file as a build in memory stores"
    );
}

/// Set a file's modification time `secs` seconds back.
fn age_file(path: &Path, secs: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(secs);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(when).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_writers_half_stored_copy_goes_at_the_next_build_not_an_hour_later() {
    // A process killed while storing the index left its temporary (hundreds of MB on a
    // large repo) for an hour; a writer now holds a lock on it, and a temporary nobody
    // holds is removed by the next build at once. One still held stays.
    let h = Harness::new();
    let r = h.repo(FILES);
    let path = h.store.ranked_index_path(&r);
    let dir = path.parent().unwrap().to_path_buf();
    kill_while_storing(&h, &r).await;
    let half = temps(&dir);
    assert_eq!(half.len(), 1, "{half:?}");
    age_file(&half[0], 60);
    // A writer still under way: its temporary is locked (as a live writer's is).
    let live = dir.join(".ranked.bin.1.live");
    let held = std::fs::File::create(&live).unwrap();
    held.lock().unwrap();
    age_file(&live, 60);

    let next = reopen(&h);
    let _ = answers(&next, &r);
    assert_eq!(next.ranked_origin(&r), Some(RankedOrigin::Built));
    assert!(!half[0].exists(), "the dead writer's temporary is left");
    assert!(live.exists(), "a temporary still being written was removed");
    drop(held);
}

/// More files than a reading thread takes at a time (16): a build with checkpoints
/// between its chunks.
fn many_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = FILES
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    for i in 0..60 {
        files.push((
            format!("src/part{}/unit{i}.rs", i % 7),
            format!(
                "//! Unit {i} of the demo.\n\n/// Compute the checksum of window {i}.\npub fn window_{i}_checksum(x: u64) -> u64 {{\n    x.rotate_left({}) ^ 0x{i:x}\n}}\n",
                i % 13
            ),
        ));
    }
    files
}

/// Where a build keeps its checkpoint.
fn resume_dir(h: &Harness, r: &RepoId) -> PathBuf {
    h.store
        .ranked_index_path(r)
        .parent()
        .unwrap()
        .join("ranked.resume")
}

/// The hooks of a build that spills at once and writes a checkpoint every 8 files.
const CHECKPOINTED: [(&str, &str); 3] = [
    ("SCOPED_REPO_MCP_TEST_RANKED_SPILL_AFTER", "0"),
    ("SCOPED_REPO_MCP_TEST_RANKED_CHECKPOINT_FILES", "8"),
    ("RUST_LOG", "scoped_repo_mcp=info"),
];
const HOLD_CHECKPOINT: &str = "SCOPED_REPO_MCP_TEST_HOLD_RANKED_CHECKPOINT";

/// Serve `r`, ask it one ranked question (waiting `wait` for a build), and return once
/// answered; its log goes to `log`.
fn serve_logged(
    h: &Harness,
    r: &RepoId,
    wait: &str,
    env: &[(&str, &str)],
    log: &Path,
) -> std::process::Child {
    let env: Vec<(&str, &str)> = CHECKPOINTED.iter().chain(env).copied().collect();
    let log = std::fs::File::create(log).unwrap();
    ask_ranked_raw_logging(h, r, &["--ranked-wait", wait], &env, log.into())
}

/// Build `r`'s ranked index in a server of its own, to the end, and return its stored
/// copy and the server's log.
fn build_to_the_end(h: &Harness, r: &RepoId) -> (Vec<u8>, String) {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log");
    let mut child = serve_logged(h, r, "60s", &[], &log);
    drop(child.stdin.take());
    assert!(
        exits_within(&mut child, Duration::from_secs(60)),
        "the server did not stop"
    );
    let bytes = std::fs::read(h.store.ranked_index_path(r)).expect("stored");
    (bytes, std::fs::read_to_string(&log).unwrap())
}

/// Start a build of `r`'s ranked index in a server, hold it after its first
/// checkpoint, and kill it (SIGKILL) there.
fn kill_after_a_checkpoint(h: &Harness, r: &RepoId) {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let log = scratch.path().join("log");
    let mut child = serve_logged(
        h,
        r,
        "0s",
        &[(HOLD_CHECKPOINT, marker.to_str().unwrap())],
        &log,
    );
    let pid = pid_written_to(&marker);
    assert_eq!(pid, child.id().to_string(), "the build never checkpointed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        resume_dir(h, r).join("checkpoint").is_file(),
        "no checkpoint left"
    );
    assert!(!h.store.ranked_index_path(r).exists());
}

/// The files a resumed build took from its checkpoint, and all it had, from its log.
fn resumed_from(log: &str) -> Option<(usize, usize)> {
    let line = log
        .lines()
        .find(|l| l.contains("ranked build resumed from a checkpoint"))?;
    let field = |name: &str| -> usize {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    Some((field("from"), field("total")))
}

/// The files a resumed build took from its checkpoint, and all it had, from its log,
/// checking that it went on part-way: past the first checkpoint, before the end.
fn resumed_part_way(log: &str) -> (usize, usize) {
    let (from, total) = resumed_from(log).unwrap_or_else(|| panic!("not resumed: {log}"));
    assert!(
        from >= 8 && from < total,
        "resumed from file {from} of {total}"
    );
    (from, total)
}

/// Remove repo `r`'s stored ranked file and build it again from the start: it must be
/// byte for byte the `resumed` build's file.
fn a_fresh_build_stores(h: &Harness, r: &RepoId, resumed: &[u8]) {
    std::fs::remove_file(h.store.ranked_index_path(r)).unwrap();
    let (fresh, log) = build_to_the_end(h, r);
    assert_eq!(resumed_from(&log), None);
    assert!(fresh == resumed, "the resumed build stored another file");
}

// A large build killed midway (SIGKILL: nothing runs on the way out) read every file
// again. Now the next process goes on from its last checkpoint, reads only the files
// after it, and stores the very file an uninterrupted build stores; the checkpoint goes
// once the copy is in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_killed_after_a_checkpoint_resumes_and_stores_the_same_file() {
    let h = Harness::new();
    let files = many_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
    let r = h.repo(&refs);

    kill_after_a_checkpoint(&h, &r);
    let (resumed, log) = build_to_the_end(&h, &r);
    let (_, total) = resumed_part_way(&log);
    assert_eq!(total, files.len());
    assert!(
        !resume_dir(&h, &r).exists(),
        "the checkpoint was left behind"
    );

    a_fresh_build_stores(&h, &r, &resumed);
    assert!(
        !resume_dir(&h, &r).exists(),
        "the checkpoint was left behind"
    );
    let loaded = reopen(&h);
    let _ = answers(&loaded, &r);
    assert_eq!(
        loaded.ranked_origin(&r),
        Some(RankedOrigin::Loaded(AdvanceStats::default()))
    );
}

// A checkpoint is used whole or not at all: one whose data was damaged or cut short
// after it was recorded, or of a tree the repo no longer has, is removed, and the build
// starts over and stores what an uninterrupted build stores.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_stale_checkpoint_is_discarded_and_the_build_starts_over() {
    let h = Harness::new();
    let files = many_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
    let r = h.repo(&refs);
    let path = h.store.ranked_index_path(&r);
    let (reference, _) = build_to_the_end(&h, &r);
    std::fs::remove_file(&path).unwrap();

    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("a flipped byte in the spilled documents", |dir| {
            let p = dir.join("body");
            let mut b = std::fs::read(&p).unwrap();
            b[3] ^= 0x40;
            std::fs::write(&p, b).unwrap();
        }),
        ("the terms cut short", |dir| {
            let p = dir.join("terms");
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("a damaged record", |dir| {
            let p = dir.join("checkpoint");
            let mut b = std::fs::read(&p).unwrap();
            b[20] ^= 0x01;
            std::fs::write(&p, b).unwrap();
        }),
    ];
    for (what, damage) in damages {
        kill_after_a_checkpoint(&h, &r);
        damage(&resume_dir(&h, &r));
        let (stored, log) = build_to_the_end(&h, &r);
        assert_eq!(resumed_from(&log), None, "{what}: resumed");
        assert!(
            log.contains("a ranked build checkpoint not used; starting over"),
            "{what}: {log}"
        );
        assert!(stored == reference, "{what}: another file stored");
        assert!(!resume_dir(&h, &r).exists(), "{what}: left behind");
        std::fs::remove_file(&path).unwrap();
    }

    // A commit since: the checkpoint is of a tree the head no longer has.
    kill_after_a_checkpoint(&h, &r);
    h.store
        .update(
            &r,
            &write("src/part1/unit1.rs", "pub fn changed() {}\n", "Change"),
            "test",
        )
        .unwrap();
    let (stored, log) = build_to_the_end(&h, &r);
    assert_eq!(resumed_from(&log), None, "resumed another tree");
    assert!(log.contains("a checkpoint of another tree"), "{log}");
    assert!(!resume_dir(&h, &r).exists());
    std::fs::remove_file(&path).unwrap();
    let (fresh, _) = build_to_the_end(&h, &r);
    assert!(
        stored == fresh,
        "another file than an uninterrupted build's"
    );
}

// A build keeps checkpoints as it goes; one that ends removes them with its stored copy
// in place, and leaves nothing else behind in the index directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_build_leaves_no_checkpoint_behind() {
    let h = Harness::new();
    let files = many_files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (&**p, &**c)).collect();
    let r = h.repo(&refs);
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let log = scratch.path().join("log");
    let mut child = serve_logged(
        &h,
        &r,
        "0s",
        &[(HOLD_CHECKPOINT, marker.to_str().unwrap())],
        &log,
    );
    for _ in 0..600 {
        if std::fs::metadata(&marker).is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        resume_dir(&h, &r).join("checkpoint").is_file(),
        "no checkpoint while building"
    );
    std::fs::remove_file(&marker).unwrap();
    let path = h.store.ranked_index_path(&r);
    wait_stored(&path, &h.store.head(&r).unwrap());
    drop(child.stdin.take());
    assert!(
        exits_within(&mut child, Duration::from_secs(60)),
        "the server did not stop"
    );
    assert!(
        !resume_dir(&h, &r).exists(),
        "the checkpoint was left behind"
    );
    let dir = path.parent().unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ranked"))
        .collect();
    left.sort();
    assert_eq!(left, ["ranked.bin", "ranked.build"]);
}

// `repo create --from-dir` killed while it built the ranked index left a whole repo
// and a checkpoint; run again, it makes a new repo of the same files, whose build goes
// on from the first one's checkpoint (moved over, not copied) and stores the file an
// uninterrupted build of the new repo stores.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_a_killed_import_goes_on_from_its_checkpoint() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    for (p, c) in many_files() {
        let path = src.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let import = |hold: bool| {
        let mut cmd = std::process::Command::new(crate::common::BIN);
        cmd.arg("--data-dir")
            .arg(h.data_dir())
            .args(["repo", "create", "--from-dir"])
            .arg(src.path())
            .envs(CHECKPOINTED.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if hold {
            cmd.env(HOLD_CHECKPOINT, &marker);
        }
        cmd
    };
    let mut first = import(true).spawn().unwrap();
    let pid = pid_written_to(&marker);
    assert_eq!(pid, first.id().to_string(), "the build never checkpointed");
    first.kill().unwrap();
    first.wait().unwrap();
    let index = h.data_dir().join("index");
    let left: Vec<PathBuf> = std::fs::read_dir(&index)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("ranked.resume"))
        .filter(|p| p.join("checkpoint").is_file())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    let out = import(false).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    resumed_part_way(&log);
    assert!(!left[0].exists(), "the checkpoint was copied, not moved");
    let r: RepoId = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let resumed = std::fs::read(h.store.ranked_index_path(&r)).unwrap();
    assert!(
        !resume_dir(&h, &r).exists(),
        "the checkpoint was left behind"
    );
    a_fresh_build_stores(&h, &r, &resumed);
}
