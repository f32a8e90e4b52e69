//! Imports that talk: a first `serve --import` answers at once while the import runs in
//! the background (calls on its repo wait, with progress, for a bounded time), every
//! import ends with a summary of what it left out and why, and an interrupted import
//! leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, NumberOrString, ProgressToken, RequestMetaObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::common::{BIN, Harness, ok, refused};
use crate::progress::ProgressSink;

/// A project of `files` small text files, 200 to a directory.
fn project(files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..files {
        let sub = dir.path().join(format!("d{}", i / 200));
        if i % 200 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(
            sub.join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(20),
        )
        .unwrap();
    }
    dir
}

/// What a server wrote on stderr so far, line by line.
#[derive(Clone, Default)]
struct Stderr(Arc<Mutex<Vec<String>>>);

impl Stderr {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (up to a minute) for a line containing `needle`.
    async fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with {needle:?}: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `serve` with `args`, through a client that keeps progress notifications, with its
/// stderr collected.
async fn serve(
    h: &Harness,
    sink: ProgressSink,
    args: &[&str],
) -> (RunningService<RoleClient, ProgressSink>, Stderr) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let (transport, stderr) = TokioChildProcess::builder(h.command(&all))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let lines = Stderr::default();
    let sink_lines = lines.clone();
    let mut reader = tokio::io::BufReader::new(stderr.expect("piped stderr")).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink_lines.0.lock().unwrap().push(line);
        }
    });
    (sink.serve(transport).await.expect("initialize"), lines)
}

async fn call<S: rmcp::service::Service<RoleClient>>(
    c: &RunningService<RoleClient, S>,
    tool: &str,
    args: Value,
    progress: bool,
) -> rmcp::model::CallToolResult {
    let Value::Object(map) = args else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(map);
    if progress {
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::String("import".into()),
        )));
    }
    c.call_tool(params).await.expect("an answer")
}

// A first `serve --import` of a large directory held `initialize` until the whole import
// ended (~22 s for 60,000 files), and MCP clients gave up on the slow start.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_first_import_held_up_initialize() {
    let h = Harness::new();
    let other = h.repo(&[("other.txt", "not held up\n")]).to_string();
    let src = project(12_000);
    let dir = src.path().canonicalize().unwrap().display().to_string();
    let sink = ProgressSink::default();
    let (client, stderr) = serve(&h, sink.clone(), &["--repo", &other, "--import", &dir]).await;

    // `initialize` has been answered, and the import is still under way.
    let listed = ok(&call(&client, "list_repos", json!({}), false).await);
    let importing = listed["importing"].as_array().expect("an importing repo");
    assert_eq!(importing.len(), 1, "{listed}");
    assert_eq!(importing[0]["state"], "importing", "{listed}");
    let id = importing[0]["repo_id"].as_str().unwrap().to_string();
    let whole: Vec<&str> = listed["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo_id"].as_str().unwrap())
        .collect();
    assert_eq!(whole, vec![other.as_str()], "{listed}");
    stderr
        .line_with(&format!("importing {dir} into repo {id}"))
        .await;

    // A call on another repo in scope is answered while the import runs.
    let read = ok(&call(
        &client,
        "read_file",
        json!({"repo_id": other, "path": "other.txt"}),
        false,
    )
    .await);
    assert_eq!(read["content"], "not held up\n");
    let still = ok(&call(&client, "list_repos", json!({}), false).await);
    assert!(still.get("importing").is_some(), "{still}");

    // A call on the repo being imported waits for it, with progress, then answers.
    let read = ok(&call(
        &client,
        "read_file",
        json!({"repo_id": id, "path": "d3/f700.txt"}),
        true,
    )
    .await);
    assert_eq!(read["content"], "file 700\n".repeat(20));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let notes = sink.0.lock().unwrap().clone();
    assert!(!notes.is_empty(), "no progress while waiting");
    assert!(
        notes.iter().all(|n| n
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waiting for the import"))),
        "{notes:?}"
    );
    assert!(
        notes.windows(2).all(|w| w[0].progress < w[1].progress),
        "progress grows: {notes:?}"
    );

    // Progress on stderr a line a second (not a flood), then the summary.
    let summary = stderr.line_with("scoped-repo-mcp: imported ").await;
    assert!(
        summary.contains(&id) && summary.contains("imported 12000 file(s)"),
        "{summary}"
    );
    let ticks = stderr
        .lines()
        .iter()
        .filter(|l| l.starts_with(&format!("scoped-repo-mcp: importing {dir} (")))
        .count();
    assert!(ticks >= 1, "{:#?}", stderr.lines());
    let listed = ok(&call(&client, "list_repos", json!({}), false).await);
    assert!(listed.get("importing").is_none(), "{listed}");
    assert_eq!(listed["repos"].as_array().unwrap().len(), 2);
    client.cancel().await.unwrap();
    assert_eq!(h.store.imports_of(&dir).unwrap(), vec![id.parse().unwrap()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_the_import_wait_says_how_far_the_import_has_got() {
    let h = Harness::new();
    let src = project(3000);
    let dir = src.path().display().to_string();
    let (client, _stderr) = serve(
        &h,
        ProgressSink::default(),
        &["--import", &dir, "--import-wait", "0s"],
    )
    .await;
    let listed = ok(&call(&client, "list_repos", json!({}), false).await);
    let id = listed["importing"][0]["repo_id"]
        .as_str()
        .expect("importing")
        .to_string();
    let held = refused(&call(&client, "list_files", json!({"repo_id": id}), false).await);
    assert!(
        held.contains(&format!("repo {id} is still being imported")) && held.contains("try again"),
        "{held}"
    );
    crate::common::list_repos_imported(&client).await;
    let files = ok(&call(&client, "list_files", json!({"repo_id": id}), false).await);
    assert_eq!(files["total_matching"], 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_background_import_is_reported_with_its_cause() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join(".gitignore"), "*\n").unwrap();
    std::fs::write(src.path().join("a.txt"), "a\n").unwrap();
    let dir = src.path().canonicalize().unwrap().display().to_string();
    let (client, stderr) = serve(&h, ProgressSink::default(), &["--import", &dir]).await;
    let failed = stderr.line_with("failed").await;
    assert!(
        failed.contains(&format!("the import of {dir} failed")) && failed.contains("ignore"),
        "{failed}"
    );
    let listed = ok(&call(&client, "list_repos", json!({}), false).await);
    assert_eq!(listed["importing"][0]["state"], "failed", "{listed}");
    let id = listed["importing"][0]["repo_id"].as_str().unwrap();
    let said = refused(
        &call(
            &client,
            "read_file",
            json!({"repo_id": id, "path": "a.txt"}),
            false,
        )
        .await,
    );
    assert!(
        said.contains("could not be imported") && said.contains("ignore files"),
        "{said}"
    );
    assert!(h.store.repo_rows().unwrap().is_empty());
}

#[test]
fn an_import_summary_counts_what_it_left_out_by_reason() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "kept\n").unwrap();
    std::fs::write(src.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(src.join("build.log"), "ignored, not skipped\n").unwrap();
    std::fs::write(src.join("big.txt"), "x".repeat(11 * 1024 * 1024)).unwrap();
    std::fs::write(src.join("bad\\name.txt"), "backslash\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("link")).unwrap();
    // The store's own data directory, inside the imported one.
    let data = src.join(".store");
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["repo", "create", "--from-dir"])
        .arg(&src)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "imported 2 file(s) (0 binary), 11 bytes; skipped 4: 1 over the size limit, 1 unsafe or unstorable path, 1 symbolic link (not followed), 1 the store's own data directory"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`scoped-repo-mcp repo skipped {id}`")),
        "{stderr}"
    );
    let listed = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["repo", "skipped", &id])
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    let paths: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    for p in ["big.txt", "bad\\name.txt", "link", ".store"] {
        assert!(paths.contains(&p), "{p} in {listed}");
    }
    assert!(!listed.contains("build.log"), "{listed}");
}

/// Scratch and quarantine directories (and their locks) under `data`'s `repos/`.
fn leftovers(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("repos"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".new-") || n.starts_with(".fetch-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The store at `data` is sound: the database passes `integrity_check`, and every repo
/// it lists is whole (all `files` of the project), with no git directory unlisted.
fn check_whole(data: &Path, files: usize, what: &str) {
    let conn = rusqlite::Connection::open(data.join("store.db")).unwrap();
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verdict, "ok", "{what}");
    drop(conn);
    let store =
        scoped_repo_mcp::store::Store::open(data, scoped_repo_mcp::store::Limits::default())
            .unwrap();
    let rows = store.repo_rows().unwrap();
    for row in &rows {
        let listed = store.list_files(&row.id).unwrap();
        assert_eq!(
            listed.paths.len(),
            files,
            "{what}: repo {} is half made",
            row.id
        );
    }
    let dirs = std::fs::read_dir(data.join("repos"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".git"))
        .count();
    assert_eq!(dirs, rows.len(), "{what}: a git directory without its repo");
}

/// A small seeded generator, so a failing run can be repeated.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn admin(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RELACE_API_KEY")
        .env_remove("SCOPED_REPO_IDS")
        .output()
        .unwrap()
}

#[test]
fn interrupted_imports_leave_nothing_behind() {
    const FILES: usize = 2000;
    let src = project(FILES);
    let root = tempfile::tempdir().unwrap();
    let data: PathBuf = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let dir = src.path().display().to_string();

    // How long a whole import takes here, to interrupt anywhere in it.
    let started = Instant::now();
    let out = admin(&data, &["repo", "create", "--from-dir", &dir]);
    assert!(out.status.success(), "{out:?}");
    let whole_ms = started.elapsed().as_millis() as u64;
    check_whole(&data, FILES, "a whole import");

    // A failing run is repeated with its seed (printed in every message).
    let seed = std::env::var("IMPORT_KILL_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x5eed_1234);
    let mut rng = Seeded(seed);
    for round in 0..2 {
        for serve in [false, true] {
            for signal in [libc::SIGINT, libc::SIGKILL] {
                // Every `serve --import` is a first import: the previous link is dropped.
                for row in admin(&data, &["repo", "list"])
                    .stdout
                    .split(|b| *b == b'\n')
                {
                    if let Some(id) = std::str::from_utf8(row)
                        .ok()
                        .and_then(|r| r.split_whitespace().next())
                        && id.len() == 36
                    {
                        let _ = admin(&data, &["repo", "unlink", id]);
                    }
                }
                let mut cmd = std::process::Command::new(BIN);
                cmd.arg("--data-dir").arg(&data);
                if serve {
                    cmd.args(["serve", "--import", &dir]);
                } else {
                    cmd.args(["repo", "create", "--from-dir", &dir]);
                }
                let mut child = cmd
                    .env_remove("RUST_LOG")
                    .env_remove("RELACE_API_KEY")
                    .env_remove("SCOPED_REPO_IDS")
                    // A server's stdin stays open: its client has not left.
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let delay = rng.below(whole_ms * 5 / 4);
                let what = format!(
                    "seed {seed:#x} round {round}: {} killed by signal {signal} after {delay} ms",
                    if serve {
                        "serve --import"
                    } else {
                        "repo create --from-dir"
                    }
                );
                std::thread::sleep(Duration::from_millis(delay));
                // SAFETY: signalling our own child, which has not been reaped yet.
                unsafe { libc::kill(child.id() as i32, signal) };
                let status = child.wait().unwrap();
                if signal == libc::SIGINT {
                    // Cleaned up at once, before any other process opens the store.
                    assert_eq!(
                        leftovers(&data),
                        Vec::<String>::new(),
                        "{what} ({status:?})"
                    );
                }
                // The next start sweeps what a kill left.
                let listed = admin(&data, &["repo", "list"]);
                assert!(listed.status.success(), "{what}: {listed:?}");
                assert_eq!(leftovers(&data), Vec::<String>::new(), "{what}");
                check_whole(&data, FILES, &what);
            }
        }
    }
}

// A repo's maker killed between moving its git directory into place and recording it
// left a `repos/<ID>.git` that no row listed, for ever.
#[test]
fn a_repo_directory_its_maker_never_recorded_is_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(admin(data, &["repo", "list"]).status.success());
    let repos = data.join("repos");
    let make = |id: &str| {
        let git = repos.join(format!("{id}.git"));
        git2::Repository::init_bare(&git).unwrap();
        let lock = std::fs::File::create(repos.join(format!("{id}.git.lock"))).unwrap();
        (git, lock)
    };
    let (dead, dead_lock) = make("7c0d1f52-6a3e-4b43-9a53-2f8c1e0b9d11");
    drop(dead_lock);
    // One whose maker is still at work (this process holds its lock) stays.
    let (live, live_lock) = make("0e8a4b7c-52f1-4d2e-8c3b-9d6f1a2b3c44");
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; flock only takes an advisory lock.
        assert_eq!(
            unsafe { libc::flock(live_lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
    }
    let listed = admin(data, &["repo", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(!dead.exists(), "the unrecorded directory was left");
    assert!(
        !repos
            .join("7c0d1f52-6a3e-4b43-9a53-2f8c1e0b9d11.git.lock")
            .exists()
    );
    assert!(live.exists(), "a live maker's directory was removed");
    drop(live_lock);
}
