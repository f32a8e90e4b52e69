//! One data directory, many processes: what any process answered is seen by every
//! other one at its next call, after short-lived commands open and close the store in
//! between, and after `kill -9`.

use std::process::Stdio;

use reqwest::{Method, StatusCode};
use serde_json::json;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use scoped_repo_mcp::model::RepoId;

use crate::api::{ApiBuilder, ApiChild, send};
use crate::common::{BIN, Client, call, ok, refused};

/// A data directory that only child processes open: no connection of this test
/// process keeps the store's files locked, as none does for users. (A connection
/// held here hid the lost WAL: the process that deleted it needs every other
/// process's lock gone.)
pub(crate) struct SharedDir {
    dir: tempfile::TempDir,
}

impl SharedDir {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `scoped-repo-mcp --data-dir DIR ARGS…`, with no credential from the environment.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        c.arg("--data-dir")
            .arg(self.path())
            .args(args)
            .env_remove("RELACE_API_KEY")
            .env_remove("SCOPED_REPO_IDS")
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        c
    }

    /// Run a short-lived CLI command; its stdout, which must succeed.
    pub(crate) async fn cli(&self, args: &[&str]) -> String {
        let out = self.command(args).output().await.unwrap();
        assert!(
            out.status.success(),
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A repo made by `repo create --from-dir` with these files.
    pub(crate) async fn repo(&self, files: &[(&str, &str)]) -> RepoId {
        let src = tempfile::tempdir().unwrap();
        for (p, c) in files {
            std::fs::write(src.path().join(p), c).unwrap();
        }
        let src = src.path().to_str().unwrap().to_string();
        self.cli(&["repo", "create", "--from-dir", &src])
            .await
            .parse()
            .unwrap()
    }

    /// A token for `repo` minted by `token create`.
    pub(crate) async fn token(&self, repo: &RepoId) -> String {
        let repo = repo.to_string();
        self.cli(&["token", "create", "--repo", &repo, "--ttl", "12h"])
            .await
    }

    /// `api` on this directory, with an account key made by `key create`.
    pub(crate) async fn api(&self) -> ApiChild {
        let key = self.cli(&["key", "create", "--name", "ops"]).await;
        ApiBuilder::on(self.path(), key).start().await
    }

    /// A stdio MCP client of `serve` with these arguments and environment.
    pub(crate) async fn client(&self, args: &[&str], env: &[(&str, &str)]) -> Client {
        self.serve(args, env).await.0
    }

    /// A stdio `serve` with these arguments and environment: a client of it, and its
    /// process id (to kill it by).
    pub(crate) async fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> (Client, u32) {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (transport, _stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        let pid = transport.id().expect("a running server");
        (().serve(transport).await.expect("initialize"), pid)
    }

    /// `serve --transport http` on this directory.
    pub(crate) fn http(&self) -> crate::common::HttpServer {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.path())
            .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"])
            .env_remove("RELACE_API_KEY");
        crate::common::start_http(cmd)
    }

    /// Whether a fresh `serve --backend local` on `token` starts and lists `repo`.
    pub(crate) async fn fresh_serve_sees(&self, token: &str, repo: &RepoId) -> Result<(), String> {
        let out = self
            .command(&["serve", "--backend", "local"])
            .env("RELACE_API_KEY", token)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        // With stdin closed at once, a server that admitted its credential says it is
        // serving before it ends; one that refused it says why and never serves.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !stderr.contains("serving MCP over stdio") {
            assert!(!out.status.success(), "{stderr}");
            return Err(stderr);
        }
        let c = self
            .client(&["--backend", "local"], &[("RELACE_API_KEY", token)])
            .await;
        let listed = ok(&call(&c, "list_repos", json!({})).await);
        let ids: Vec<&str> = listed["repos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["repo_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [repo.to_string()]);
        Ok(())
    }
}

/// Mint a token for `repo` through the REST API.
async fn mint(api: &ApiChild, repo: &RepoId, name: &str) -> String {
    let (s, body) = send(
        Method::POST,
        format!("{}/repo_token", api.base),
        Some(&api.key),
        Some(json!({"name": name, "repo_ids": [repo.to_string()], "ttl_seconds": 3600})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// What `GET /repo/{id}` answers to `credential`.
async fn repo_status(api: &ApiChild, repo: &RepoId, credential: &str) -> StatusCode {
    send(
        Method::GET,
        format!("{}/repo/{repo}", api.base),
        Some(credential),
        None,
    )
    .await
    .0
}

// The permission fix opened and closed `store.db` outside SQLite after the process's
// connection held its locks, which dropped them; the next process to close its
// connection then deleted the WAL under the live `api`, whose later mints and
// revocations no other process saw.
#[tokio::test(flavor = "multi_thread")]
async fn mints_and_revocations_answered_by_api_survive_other_processes_closing_the_store() {
    let h = SharedDir::new();
    let repo = h.repo(&[("a.txt", "alpha\n")]).await;
    let api = h.api().await;
    // A long-lived stdio server on the operator's credential, as an orchestrator runs.
    let operator = h.client(&["--repo", &repo.to_string()], &[]).await;

    let first = mint(&api, &repo, "first").await;
    h.cli(&["token", "list"]).await;
    let second = mint(&api, &repo, "second").await;
    h.cli(&["repo", "list"]).await;
    h.fresh_serve_sees(&first, &repo).await.unwrap();
    h.fresh_serve_sees(&second, &repo).await.unwrap();

    // A token minted by the long-lived server's tool works in a process of its own.
    let minted = ok(&call(
        &operator,
        "create_scoped_token",
        json!({"name": "sub-agent", "repo_ids": [repo.to_string()], "ttl_seconds": 600}),
    )
    .await);
    h.cli(&["token", "list"]).await;
    let third = minted["token"].as_str().unwrap().to_string();
    h.fresh_serve_sees(&third, &repo).await.unwrap();
    assert_eq!(repo_status(&api, &repo, &third).await, StatusCode::OK);

    // A revocation from the CLI reaches the running `api` at its next call.
    h.cli(&["token", "revoke", &first]).await;
    assert_eq!(
        repo_status(&api, &repo, &first).await,
        StatusCode::UNAUTHORIZED
    );
    // One answered by `api` reaches a fresh process.
    let (s, _) = send(
        Method::DELETE,
        format!("{}/repo_token/{second}", api.base),
        Some(&api.key),
        None,
    )
    .await;
    assert!(s.is_success(), "{s}");
    h.cli(&["repo", "list"]).await;
    let refusal = h.fresh_serve_sees(&second, &repo).await.unwrap_err();
    assert!(refusal.contains("revoked"), "{refusal}");
    // One answered by the stdio server's tool reaches `api`.
    let revoked = call(&operator, "revoke_token", json!({"token": third})).await;
    ok(&revoked);
    assert_eq!(
        repo_status(&api, &repo, &third).await,
        StatusCode::UNAUTHORIZED
    );
}

// After `kill -9` of `api`, the mints, revocations and repos it had answered were gone,
// so a revoked token was live again.
#[tokio::test(flavor = "multi_thread")]
async fn writes_answered_by_api_survive_its_kill_9() {
    let h = SharedDir::new();
    let repo = h.repo(&[("a.txt", "alpha\n")]).await;
    let early = h.token(&repo).await;
    let mut api = h.api().await;
    h.cli(&["token", "list"]).await;

    let minted = mint(&api, &repo, "late").await;
    let (s, _) = send(
        Method::DELETE,
        format!("{}/repo_token/{early}", api.base),
        Some(&api.key),
        None,
    )
    .await;
    assert!(s.is_success(), "{s}");
    let (s, made) = send(
        Method::POST,
        format!("{}/repo", api.base),
        Some(&api.key),
        Some(json!({"source": {"type": "files", "files": [{"filename": "b.txt", "content": "beta\n"}]}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{made}");
    let made: RepoId = made["repo_id"].as_str().unwrap().parse().unwrap();
    h.cli(&["repo", "list"]).await;

    api.child.start_kill().unwrap();
    api.child.wait().await.unwrap();

    h.fresh_serve_sees(&minted, &repo).await.unwrap();
    let refusal = h.fresh_serve_sees(&early, &repo).await.unwrap_err();
    assert!(refusal.contains("revoked"), "{refusal}");
    let listed = h.cli(&["repo", "list"]).await;
    assert!(listed.contains(&made.to_string()), "{listed}");
    let c = h.client(&["--repo", &made.to_string()], &[]).await;
    let read = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": made.to_string(), "path": "b.txt"}),
    )
    .await);
    assert_eq!(read["content"], "beta\n");
}

// Stopping a server gracefully wrote its stale view over a revocation made by the CLI
// while it ran.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_by_the_cli_holds_after_api_stops_gracefully() {
    let h = SharedDir::new();
    let repo = h.repo(&[("a.txt", "alpha\n")]).await;
    let token = h.token(&repo).await;
    let mut api = h.api().await;
    assert_eq!(repo_status(&api, &repo, &token).await, StatusCode::OK);
    h.cli(&["token", "revoke", &token]).await;
    assert_eq!(
        repo_status(&api, &repo, &token).await,
        StatusCode::UNAUTHORIZED
    );
    // SAFETY: signalling a child process this test started and still owns.
    unsafe { libc::kill(api.pid() as i32, libc::SIGTERM) };
    api.child.wait().await.unwrap();
    let refusal = h.fresh_serve_sees(&token, &repo).await.unwrap_err();
    assert!(refusal.contains("revoked"), "{refusal}");
    let c = h.client(&["--repo", &repo.to_string()], &[]).await;
    let r = refused(&call(&c, "revoke_token", json!({"token": token})).await);
    assert!(r.contains("nothing to revoke"), "{r}");
}

// Start-up said "repo … is not in the store" for any failure to look the repo up, so a
// locked or damaged database sent the user looking for a repo that was there.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_database_was_reported_as_a_missing_repo() {
    let h = SharedDir::new();
    let repo = h.repo(&[("a.txt", "alpha\n")]).await;
    {
        // No process has the store open now; a view over a missing table makes every
        // read of the repos fail while the database still opens.
        let conn = rusqlite::Connection::open(h.path().join("store.db")).unwrap();
        conn.execute_batch(
            "ALTER TABLE repos RENAME TO repos_kept; CREATE VIEW repos AS SELECT * FROM missing_table;",
        )
        .unwrap();
    }
    let out = h
        .command(&["serve", "--repo", &repo.to_string()])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not be read") && err.contains("missing_table"),
        "{err}"
    );
    assert!(!err.contains("not in the store"), "{err}");
}

/// The entries of `repos/` that are not finished repos.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("repos"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

// Ctrl-C or a kill during an import left its `.new-<id>` scratch directory for ever: six
// of them took a store from 11 MB to 779 MB.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_import_left_its_scratch_directory_for_ever() {
    let h = SharedDir::new();
    h.cli(&["repo", "list"]).await;
    let src = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        std::fs::write(
            src.path().join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(50),
        )
        .unwrap();
    }
    let src = src.path().to_str().unwrap().to_string();
    let mut interrupted = 0;
    for delay_ms in [30, 60, 120, 250, 500] {
        let mut child = h
            .command(&["repo", "create", "--from-dir", &src])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        // SAFETY: signalling a child process this test started and still owns.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGKILL) };
        if !child.wait().await.unwrap().success() {
            interrupted += 1;
        }
    }
    assert!(
        interrupted > 0,
        "no import was interrupted; make the source larger"
    );
    // The next process to open the store removes what the killed ones left.
    let listed = h.cli(&["repo", "list"]).await;
    assert_eq!(leftovers(h.path()), Vec::<String>::new());
    // Every repo directory has its row.
    for e in std::fs::read_dir(h.path().join("repos")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix(".git").unwrap();
        assert!(listed.contains(id), "{name} has no row: {listed}");
    }
}

// What a live process is making is never removed, whatever its process id says (a
// container sharing the volume sees other ids): only directories whose lock no process
// holds, and lockless ones (an older version's) once they are an hour old.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_of_interrupted_imports_spares_live_work() {
    let h = SharedDir::new();
    h.cli(&["repo", "list"]).await;
    let repos = h.path().join("repos");
    let id = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69";
    let lock_of = |name: &str| repos.join(format!("{name}.lock"));
    // Left by processes that are gone: their lock files are there, held by no one.
    for name in [format!(".new-1-{id}"), ".fetch-1-0123abcd".to_string()] {
        std::fs::create_dir(repos.join(&name)).unwrap();
        std::fs::write(lock_of(&name), "").unwrap();
    }
    // A lock file whose directory was never made.
    std::fs::write(repos.join(".new-2-gone.lock"), "").unwrap();
    // Live work: its lock is held (here, by this process).
    let live = format!(".new-{}-{id}", std::process::id());
    std::fs::create_dir(repos.join(&live)).unwrap();
    let held = std::fs::File::create(lock_of(&live)).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a descriptor this test owns; an advisory lock only.
        assert_eq!(
            unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
    }
    // An older version's scratch directories, without lock files: one two hours old,
    // one fresh.
    let old = format!(".new-{id}");
    std::fs::create_dir(repos.join(&old)).unwrap();
    let status = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(repos.join(&old))
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = ".new-5b1c7a3e-0d2f-4e8a-9c6b-7a8d9e0f1a2b".to_string();
    std::fs::create_dir(repos.join(&fresh)).unwrap();

    h.cli(&["repo", "list"]).await;
    let mut left = leftovers(h.path());
    left.sort();
    let mut want = vec![fresh, live.clone(), format!("{live}.lock")];
    want.sort();
    assert_eq!(left, want);
    drop(held);
}

// An import skipped a 20 MiB file without a word, and an agent reading it was then told
// it did not exist.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_the_import_skipped_was_said_never_to_have_existed() {
    let h = SharedDir::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "alpha\n").unwrap();
    std::fs::write(
        src.path().join("logo.png"),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    )
    .unwrap();
    std::fs::write(src.path().join("big.txt"), "x".repeat(11 * 1024 * 1024)).unwrap();
    let out = h
        .command(&["repo", "create", "--from-dir", src.path().to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("repo skipped {id}")), "{said}");
    let listed = h.cli(&["repo", "skipped", &id]).await;
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["big.txt\tover the limit of 10485760 bytes a file"]
    );
    let c = h.client(&["--repo", &id], &[]).await;
    let why = refused(&call(&c, "read_file", json!({"repo_id": id, "path": "big.txt"})).await);
    assert!(
        why.contains(
            "the import of this repo left it out (over the limit of 10485760 bytes a file)"
        ),
        "{why}"
    );
    let why = refused(&call(&c, "read_file", json!({"repo_id": id, "path": "never.txt"})).await);
    assert!(
        why.contains("does not exist") && !why.contains("left it out"),
        "{why}"
    );
}

// An import of a directory holding the store's own data directory read `store.db` and
// its journal through descriptors of its own, in a process holding a connection (which
// drops SQLite's locks), and took the store's files into the repo.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_of_the_directory_holding_the_store_read_the_store() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.txt"), "alpha\n").unwrap();
    let data = work.path().join(".store");
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::common::BIN);
        c.arg("--data-dir").arg(&data).args(args);
        c
    };
    let made = cli(&["key", "create", "--name", "k"]).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = cli(&[
        "repo",
        "create",
        "--from-dir",
        work.path().to_str().unwrap(),
        "--no-ignore",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let store = scoped_repo_mcp::store::Store::open(&data, Default::default()).unwrap();
    let files: Vec<String> = store
        .list_files(&id.parse().unwrap())
        .unwrap()
        .paths
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(files, ["a.txt"]);
}
