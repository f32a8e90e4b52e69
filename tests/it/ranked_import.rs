//! The ranked index is ready when a question comes: `repo create` builds and stores it
//! with the import, so a server loads it instead of building; a question asked while a
//! build runs (in this process or another) is answered at once, partially, from line
//! search; one process builds while the others wait for its stored copy, and a builder
//! killed mid-build leaves the build to the next question.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rmcp::transport::TokioChildProcess;
use scoped_repo_mcp::model::{Change, FileOp, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::common::{Harness, call, ok, text};
use crate::git_http::GitUser;
use crate::ranked::FILES;

const HOLD: &str = "SCOPED_REPO_MCP_TEST_HOLD_RANKED_BUILD";
const QUESTION: &str = "where is the retry backoff computed";

/// A `serve` whose stderr (its log) is kept for the test to read once it has stopped.
struct Served {
    client: rmcp::service::RunningService<rmcp::RoleClient, ()>,
    stderr: tokio::process::ChildStderr,
}

impl Served {
    async fn start(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> Self {
        let (transport, stderr) = TokioChildProcess::builder(h.serve_command(args, env))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let client = rmcp::ServiceExt::serve((), transport)
            .await
            .expect("initialize");
        Self {
            client,
            stderr: stderr.unwrap(),
        }
    }

    async fn ask(&self, r: &RepoId) -> (Value, String) {
        let res = call(
            &self.client,
            "search_repo",
            json!({"repo_id": r.to_string(), "query": QUESTION, "mode": "ranked"}),
        )
        .await;
        (ok(&res), text(&res))
    }

    /// Stop it (its client leaves) and return its log.
    async fn stop(mut self) -> String {
        let _ = self.client.cancel().await;
        let mut log = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            self.stderr.read_to_string(&mut log),
        )
        .await
        .expect("the server stopped")
        .unwrap();
        log
    }
}

fn write_files(dir: &Path) {
    for (p, c) in FILES {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
}

fn ranked_paths(out: &Value) -> Vec<&str> {
    out["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect()
}

/// The stored copy's identity and modification time: unchanged means not written again.
fn stamp(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), m.modified().unwrap())
}

/// Whether some process holds the repo's build lock (tried from this process).
fn build_locked(h: &Harness, r: &RepoId) -> bool {
    use std::os::fd::AsRawFd;
    let path = h
        .data_dir()
        .join("index")
        .join(r.to_string())
        .join("ranked.build");
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: a valid open descriptor; flock only takes an advisory lock.
    let taken = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    // Closing the file lets go of a lock taken here.
    !taken
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The process id a build held by [`HOLD`] wrote into `marker`.
async fn held_builder(marker: &Path) -> String {
    let mut pid = String::new();
    wait_for("the build to pause", || {
        pid = std::fs::read_to_string(marker).unwrap_or_default();
        !pid.is_empty()
    })
    .await;
    pid
}

// The first ranked question after an import built the whole index (101 s on the Linux
// kernel's source): the import now builds and stores it.
#[tokio::test(flavor = "multi_thread")]
async fn a_repo_created_by_import_is_served_ranked_without_a_build() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    write_files(src.path());
    let git = GitUser::new();
    let work = git.dir("work");
    std::fs::create_dir_all(&work).unwrap();
    write_files(&work);
    git.ok(&work, &["init", "--quiet", "-b", "main"]);
    git.ok(&work, &["add", "."]);
    git.ok(
        &work,
        &["commit", "--quiet", "-m", "Compute the retry backoff"],
    );

    for source in [
        ["--from-dir", src.path().to_str().unwrap()],
        ["--from-git", work.to_str().unwrap()],
    ] {
        let out = h
            .command(&["repo", "create", source[0], source[1]])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let r: RepoId = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let path = Store::open(h.data_dir(), Limits::default())
            .unwrap()
            .ranked_index_path(&r);
        assert!(path.is_file(), "{source:?}: no stored ranked index");
        let before = stamp(&path);

        let served = Served::start(&h, &["--repo", &r.to_string()], &[]).await;
        let (out, said) = served.ask(&r).await;
        assert_eq!(out["partial"], false, "{said}");
        assert_eq!(ranked_paths(&out)[0], "src/retry/backoff.rs");
        assert!(!said.contains("PARTIAL"), "{said}");
        let log = served.stop().await;
        assert!(log.contains("ranked index loaded"), "{source:?}: {log}");
        assert!(!log.contains("ranked index built"), "{source:?}: {log}");
        assert_eq!(
            stamp(&path),
            before,
            "{source:?}: the stored copy was written again"
        );
    }
}

// A ranked question asked during a build waited for the whole build; now it is
// answered at once from line search, marked partial, in the building process and in
// another one, which later loads the copy the builder stored instead of building.
#[tokio::test(flavor = "multi_thread")]
async fn a_ranked_question_during_a_build_is_answered_partially_then_ranked() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let repo = r.to_string();
    let quick = ["--repo", &repo, "--ranked-wait", "0s"];

    let builder = Served::start(&h, &quick, &[(HOLD, marker.to_str().unwrap())]).await;
    let (out, said) = builder.ask(&r).await;
    held_builder(&marker).await;
    assert_eq!(out["partial"], true, "{said}");
    assert!(said.starts_with("PARTIAL ANSWER, NOT RANKED"), "{said}");
    assert!(said.contains("ask again for ranked results"), "{said}");
    // Line search still finds the file holding every word of the question first.
    assert_eq!(ranked_paths(&out)[0], "src/retry/backoff.rs", "{said}");
    assert!(
        out["ranked"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("compute_backoff")
    );
    assert!(build_locked(&h, &r), "the builder holds no build lock");

    // Another process does not build too: it answers partially, saying who builds and
    // how far the build is (from the lock file).
    let other = Served::start(&h, &quick, &[]).await;
    let (out, said) = other.ask(&r).await;
    assert_eq!(out["partial"], true, "{said}");
    assert!(said.contains("by another process"), "{said}");
    assert!(out["index_built_percent"].as_u64().is_some(), "{out}");
    let (again, _) = builder.ask(&r).await;
    assert_eq!(again["partial"], true);

    // A commit lands (from this process) while the build is held at the old head.
    let throttle = UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse("src/limits/throttle.rs").unwrap(),
            content: "/// Throttle the request rate with a token bucket.\npub fn throttle(rate: u32) {}\n"
                .into(),
        }]),
        expected_head: None,
        message: Some("Throttle requests".into()),
        control: Default::default(),
        visible: None,
    };
    let head = h.store.update(&r, &throttle, "test").unwrap().head;

    // Let the build go on: the builder stores the copy, and the other process loads it;
    // both carry it to the new head. A CLI process in between finds the repo whole.
    std::fs::remove_file(&marker).unwrap();
    let path = h.store.ranked_index_path(&r);
    wait_for("the stored copy", || {
        path.is_file() && !build_locked(&h, &r)
    })
    .await;
    let checked = h.command(&["repo", "check", &repo]).output().await.unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let (out, said) = builder.ask(&r).await;
    assert_eq!(out["partial"], false, "{said}");
    assert_eq!(out["head"], head);
    let (out, said) = other.ask(&r).await;
    assert_eq!(out["partial"], false, "{said}");
    assert_eq!(out["head"], head);
    assert_eq!(ranked_paths(&out)[0], "src/retry/backoff.rs");
    let res = call(
        &other.client,
        "search_repo",
        json!({"repo_id": repo, "query": "throttle the request rate", "mode": "ranked"}),
    )
    .await;
    assert_eq!(ranked_paths(&ok(&res))[0], "src/limits/throttle.rs");
    let log = other.stop().await;
    assert!(log.contains("ranked index loaded"), "{log}");
    assert!(!log.contains("ranked index built"), "{log}");
    let log = builder.stop().await;
    assert_eq!(log.matches("ranked index built").count(), 1, "{log}");
}

// A builder killed mid-build (kill -9) must not leave the others waiting for a copy that
// never comes: its lock goes with it, and the next question builds.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_killed_mid_build_leaves_the_build_to_the_next_question() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let repo = r.to_string();
    let quick = ["--repo", &repo, "--ranked-wait", "0s"];

    let builder = Served::start(&h, &quick, &[(HOLD, marker.to_str().unwrap())]).await;
    let (out, _) = builder.ask(&r).await;
    assert_eq!(out["partial"], true);
    let pid = held_builder(&marker).await;
    let other = Served::start(&h, &["--repo", &repo, "--ranked-wait", "60s"], &[]).await;
    let path = h.store.ranked_index_path(&r);

    // The other process, told to wait, is waiting on the builder's lock when the
    // builder dies: it takes the lock, builds, and answers ranked.
    let asked = other.ask(&r);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(build_locked(&h, &r), "the builder holds no build lock");
        let killed = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    let ((out, said), ()) = tokio::join!(asked, kill);
    assert_eq!(out["partial"], false, "{said}");
    assert_eq!(ranked_paths(&out)[0], "src/retry/backoff.rs");
    let _ = builder.stop().await;
    wait_for("the stored copy", || path.is_file()).await;
    let log = other.stop().await;
    assert!(log.contains("ranked index built"), "{log}");
}

// Through `api` too: its `retrieve` answers a question during a build at once, with the
// files not yet indexed as `pending_embeddings`, and a `serve --backend relace` over it
// marks that answer partial instead of passing line-search matches off as a ranking.
#[tokio::test(flavor = "multi_thread")]
async fn retrieve_and_the_relace_backend_mark_an_answer_given_during_a_build() {
    use crate::api::{ApiBuilder, send};
    let h = Harness::new();
    let r = h.repo(FILES);
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("held");
    let key = h.store.create_account_key("tests").unwrap();
    let api = ApiBuilder::on(h.data_dir(), key.clone())
        .flags(&["--ranked-wait", "0s"])
        .env(HOLD, marker.to_str().unwrap())
        .start()
        .await;
    let retrieve = || {
        send(
            reqwest::Method::POST,
            format!("{}/repo/{r}/retrieve", api.base),
            Some(&key),
            Some(json!({"query": QUESTION, "include_content": true})),
        )
    };
    let (status, answer) = retrieve().await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert!(
        answer["pending_embeddings"].as_u64().unwrap() >= 1,
        "{answer}"
    );
    assert_eq!(answer["results"][0]["filename"], "src/retry/backoff.rs");
    held_builder(&marker).await;

    let repo = r.to_string();
    let relace = Served::start(
        &h,
        &[
            "--backend",
            "relace",
            "--base-url",
            &api.base,
            "--repo",
            &repo,
        ],
        &[("RELACE_API_KEY", &key)],
    )
    .await;
    let (out, said) = relace.ask(&r).await;
    assert_eq!(out["partial"], true, "{said}");
    assert!(said.starts_with("PARTIAL ANSWER, NOT RANKED"), "{said}");

    std::fs::remove_file(&marker).unwrap();
    let path = h.store.ranked_index_path(&r);
    wait_for("the stored copy", || path.is_file()).await;
    let (_, answer) = retrieve().await;
    assert_eq!(answer["pending_embeddings"], 0, "{answer}");
    let (out, said) = relace.ask(&r).await;
    assert_eq!(out["partial"], false, "{said}");
    let _ = relace.stop().await;
}

// `serve --import DIR` builds the ranked index once the first import is served, and
// stores it for the next process.
#[tokio::test(flavor = "multi_thread")]
async fn serve_import_builds_and_stores_the_ranked_index_after_the_import() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    write_files(src.path());
    let served = Served::start(&h, &["--import", src.path().to_str().unwrap()], &[]).await;
    let repos = crate::common::list_repos_imported(&served.client).await;
    let id: RepoId = repos["repos"][0]["repo_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = h.store.ranked_index_path(&id);
    wait_for("the stored copy", || path.is_file()).await;
    let (out, said) = served.ask(&id).await;
    assert_eq!(out["partial"], false, "{said}");
    assert_eq!(ranked_paths(&out)[0], "src/retry/backoff.rs");
    let log = served.stop().await;
    assert!(
        log.contains(&format!("built and stored the ranked index of repo {id}")),
        "{log}"
    );
}
