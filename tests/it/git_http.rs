//! git's smart HTTP at `/v1/repo/{id}.git` on `scoped-repo-mcp api`, driven by the real
//! `git` CLI: clone (protocol v2 and v0), shallow clone, fetch and pull; pushes the MCP
//! tools see at once; every kind of refused push, each leaving `main` where it was; and
//! the credential rules (none, revoked, another repo's, read-only, path-limited).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use reqwest::StatusCode;
use scoped_repo_mcp::model::{MintSpec, RepoId};
use serde_json::json;
use tempfile::TempDir;

use crate::api::{ApiChild, start_api_with};
use crate::common::{Harness, call, ok};

/// A git user with a home of its own: no credential helper, no prompt, no system or
/// global settings but a name and an address.
pub(crate) struct GitUser {
    pub(crate) home: TempDir,
}

impl GitUser {
    pub(crate) fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = Tester\n\temail = tester@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        Self { home }
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// `git -c credential.helper= ARGS` in `cwd`, as this user, not yet started.
    pub(crate) fn command(&self, cwd: &Path, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("git");
        c.args(["-c", "credential.helper="])
            .args(args)
            .current_dir(cwd)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_PROTOCOL")
            .stdin(Stdio::null());
        c
    }

    /// `git -c credential.helper= ARGS` in `cwd`.
    pub(crate) fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args).output().unwrap()
    }

    /// `git ARGS` that must succeed; its stdout.
    pub(crate) fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `git ARGS` that must fail; its stderr.
    pub(crate) fn fails(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "git {args:?} succeeded: {err}");
        err
    }
}

/// The repo's URL with `credential` as the Basic password.
pub(crate) fn url(api: &ApiChild, id: &RepoId, credential: &str) -> String {
    let base = api
        .base
        .replacen("http://", &format!("http://token:{credential}@"), 1);
    format!("{base}/repo/{id}.git")
}

pub(crate) fn token(h: &Harness, id: RepoId) -> String {
    h.store
        .create_token("git", &[id], Some(3600))
        .unwrap()
        .token
}

pub(crate) fn quarantines(h: &Harness, id: &RepoId) -> Vec<String> {
    std::fs::read_dir(h.store.git_dir(id).join("objects"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp_objdir"))
        .collect()
}

const LIB: &str = "pub fn greet() -> &'static str {\n    \"hello\"\n}\n";

pub(crate) async fn api_on(h: &Harness) -> ApiChild {
    start_api_with(h, Stdio::null(), &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn clone_fetch_push_and_pull_meet_the_tools_at_once() {
    let h = Harness::new();
    let id = h.repo(&[("src/lib.rs", LIB), ("README.md", "# demo\n")]);
    let api = api_on(&h).await;
    let t = token(&h, id);
    let git = GitUser::new();
    let home = git.home.path().to_path_buf();
    let head0 = h.store.head(&id).unwrap();

    // A full clone over protocol v2 (git's default) and one over v0.
    git.ok(&home, &["clone", "--quiet", &url(&api, &id, &t), "full"]);
    let full = git.dir("full");
    assert_eq!(
        std::fs::read_to_string(full.join("src/lib.rs")).unwrap(),
        LIB
    );
    assert_eq!(git.ok(&full, &["rev-parse", "HEAD"]), head0);
    assert_eq!(git.ok(&full, &["symbolic-ref", "--short", "HEAD"]), "main");
    git.ok(
        &home,
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "--quiet",
            &url(&api, &id, &t),
            "v0",
        ],
    );
    assert_eq!(git.ok(&git.dir("v0"), &["rev-parse", "HEAD"]), head0);

    // A shallow clone, as the SDKs make, commits and pushes.
    git.ok(
        &home,
        &[
            "clone",
            "--quiet",
            "--depth",
            "1",
            &url(&api, &id, &t),
            "shallow",
        ],
    );
    let shallow = git.dir("shallow");
    assert_eq!(
        git.ok(&shallow, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    std::fs::write(
        shallow.join("src/pushed.rs"),
        "pub const QUOKKA_MARKER: u8 = 7;\n",
    )
    .unwrap();
    git.ok(&shallow, &["add", "."]);
    git.ok(&shallow, &["commit", "--quiet", "-m", "Add pushed.rs"]);
    git.ok(&shallow, &["push", "--quiet", "origin", "main"]);
    let pushed = git.ok(&shallow, &["rev-parse", "HEAD"]);
    assert_eq!(
        h.store.head(&id).unwrap(),
        pushed,
        "main moved to the pushed commit"
    );

    // The MCP tools see the push on their next call.
    let client = h.client_for(&[id]).await;
    let read = ok(&call(
        &client,
        "read_file",
        json!({"repo_id": id.to_string(), "path": "src/pushed.rs"}),
    )
    .await);
    assert_eq!(read["content"], "pub const QUOKKA_MARKER: u8 = 7;\n");
    let found = ok(&call(
        &client,
        "search_repo",
        json!({"repo_id": id.to_string(), "query": "QUOKKA_MARKER", "mode": "literal"}),
    )
    .await);
    assert_eq!(found["hits"][0]["path"], "src/pushed.rs");
    let ranked = ok(&call(
        &client,
        "search_repo",
        json!({"repo_id": id.to_string(), "query": "quokka marker constant", "mode": "ranked"}),
    )
    .await);
    assert_eq!(ranked["ranked"][0]["path"], "src/pushed.rs", "{ranked}");

    // An MCP commit reaches the working copies: fetch in the full clone, pull in the
    // shallow one.
    let update = ok(&call(
        &client,
        "update_repo_files",
        json!({"repo_id": id.to_string(), "message": "Agent edit", "operations": [
            {"type": "write", "path": "src/agent.rs", "content": "// by the agent\n"}]}),
    )
    .await);
    let agent_head = update["head"].as_str().unwrap().to_string();
    git.ok(&full, &["fetch", "--quiet"]);
    assert_eq!(git.ok(&full, &["rev-parse", "origin/main"]), agent_head);
    git.ok(&shallow, &["pull", "--quiet", "--ff-only"]);
    assert_eq!(git.ok(&shallow, &["rev-parse", "HEAD"]), agent_head);
    assert_eq!(
        std::fs::read_to_string(shallow.join("src/agent.rs")).unwrap(),
        "// by the agent\n"
    );
    assert_eq!(
        git.ok(&shallow, &["log", "-1", "--format=%s"]),
        "Agent edit"
    );

    // Bearer through http.extraHeader works too, and an account key reaches the repo.
    let plain = format!("{}/repo/{id}.git", api.base);
    git.ok(
        &home,
        &[
            "-c",
            &format!("http.extraHeader=Authorization: Bearer {t}"),
            "clone",
            "--quiet",
            &plain,
            "bearer",
        ],
    );
    git.ok(
        &home,
        &["clone", "--quiet", &url(&api, &id, &api.key), "keyed"],
    );
    assert_eq!(
        git.ok(&git.dir("keyed"), &["rev-parse", "HEAD"]),
        agent_head
    );
    assert!(quarantines(&h, &id).is_empty());
}

/// A clone made with the repo token, ready to commit on.
pub(crate) fn working_copy(
    h: &Harness,
    git: &GitUser,
    api: &ApiChild,
    id: &RepoId,
    name: &str,
) -> PathBuf {
    let t = token(h, *id);
    git.ok(
        git.home.path(),
        &["clone", "--quiet", &url(api, id, &t), name],
    );
    git.dir(name)
}

/// A tree made with `git mktree` from `entries` (`mode type oid\tname` lines), which
/// takes names that `git add` refuses.
fn mktree(git: &GitUser, wc: &Path, entries: &[String]) -> String {
    let mut child = std::process::Command::new("git")
        .arg("mktree")
        .current_dir(wc)
        .env("HOME", git.home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for e in entries {
            writeln!(stdin, "{e}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Commit the tree of `entries` on top of HEAD and move `main` to it (without a
/// checkout, which git refuses for such names); the commit's id.
fn commit_tree(git: &GitUser, wc: &Path, entries: &[String], message: &str) -> String {
    let tree = mktree(git, wc, entries);
    let commit = git.ok(wc, &["commit-tree", &tree, "-p", "HEAD", "-m", message]);
    git.ok(wc, &["update-ref", "refs/heads/main", &commit]);
    commit
}

pub(crate) fn blob(git: &GitUser, wc: &Path, content: &[u8]) -> String {
    let path = wc.join(".scratch-blob");
    std::fs::write(&path, content).unwrap();
    let oid = git.ok(wc, &["hash-object", "-w", ".scratch-blob"]);
    std::fs::remove_file(path).unwrap();
    oid
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_push_leaves_main_where_it_was() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    let short = |c: &str| c[..12].to_string();
    let a_blob = git.ok(&wc, &["rev-parse", "HEAD:a.txt"]);
    let a_entry = format!("100644 blob {a_blob}\ta.txt");

    // Each case: set the working copy up, push, expect these words, and `main` unmoved.
    let refused = |args: &[&str], words: &[&str]| {
        let err = git.fails(&wc, args);
        for w in words {
            assert!(err.contains(w), "expected {w:?} in:\n{err}");
        }
        assert!(
            err.contains("remote: "),
            "the reason reaches the pusher: {err}"
        );
        assert_eq!(h.store.head(&id).unwrap(), head, "main moved: {err}");
        assert!(quarantines(&h, &id).is_empty());
        err
    };
    let reset = || git.ok(&wc, &["reset", "--quiet", "--hard", &head]);

    // Shapes of a push: other branches, tags, deletions, forced updates.
    std::fs::write(wc.join("b.txt"), "b\n").unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "b"]);
    refused(
        &["push", "origin", "HEAD:refs/heads/feature"],
        &["only `main` can be pushed"],
    );
    git.ok(&wc, &["tag", "v1"]);
    refused(&["push", "origin", "v1"], &["tags cannot be pushed"]);
    refused(
        &["push", "origin", ":main"],
        &["deleting `main` is not allowed"],
    );
    reset();
    git.ok(&wc, &["commit", "--quiet", "--amend", "-m", "rewritten"]);
    refused(
        &["push", "--force", "origin", "main"],
        &["non-fast-forward", "fast-forward of `main`"],
    );
    reset();

    // What a commit may hold: each names the offending commit and path.
    std::os::unix::fs::symlink("a.txt", wc.join("link")).unwrap();
    git.ok(&wc, &["add", "link"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "symlink"]);
    let c = git.ok(&wc, &["rev-parse", "HEAD"]);
    refused(
        &["push", "origin", "main"],
        &[&short(&c), "`link`", "symbolic links"],
    );
    reset();

    git.ok(
        &wc,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},sub"),
        ],
    );
    git.ok(&wc, &["commit", "--quiet", "-m", "submodule"]);
    let c = git.ok(&wc, &["rev-parse", "HEAD"]);
    refused(
        &["push", "origin", "main"],
        &[&short(&c), "`sub`", "submodules"],
    );
    reset();

    // Paths `git add` refuses but a hand-made tree can hold.
    let x = blob(&git, &wc, b"x\n");
    let inner = mktree(&git, &wc, &[format!("100644 blob {x}\tconfig")]);
    let long = "n".repeat(256);
    for (entry, path, words) in [
        (
            format!("040000 tree {inner}\t.GIT"),
            ".GIT/config",
            "`.git` component",
        ),
        (
            format!("100644 blob {x}\t{long}"),
            long.as_str(),
            "names may be at most 255 bytes",
        ),
        (
            format!("100644 blob {x}\tback\\slash"),
            "back\\slash",
            "backslash",
        ),
        (
            format!("100644 blob {x}\tbell\x07"),
            "bell",
            "control character",
        ),
        (
            format!("040000 tree {inner}\t.."),
            "../config",
            "`..` component",
        ),
    ] {
        let c = commit_tree(&git, &wc, &[a_entry.clone(), entry], "bad path");
        let err = refused(&["push", "origin", "main"], &[&short(&c), words]);
        assert!(err.contains(&path[..path.len().min(40)]), "{err}");
        reset();
    }

    // Sizes: a file over 10 MiB; over 50 MiB of new content in one push, spread over
    // two commits of files within the per-file limit.
    let big = "0123456789abcdef\n".repeat(10 * 1024 * 1024 / 17 + 1);
    std::fs::write(wc.join("big.txt"), &big).unwrap();
    git.ok(&wc, &["add", "big.txt"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "big"]);
    let c = git.ok(&wc, &["rev-parse", "HEAD"]);
    refused(
        &["push", "origin", "main"],
        &[&short(&c), "big.txt", "bytes a file"],
    );
    reset();
    let nine = 9 * 1024 * 1024;
    for commit in 0..2 {
        for i in 0..3 {
            let line = format!("commit {commit} file {i} ");
            let content = line.repeat(nine / line.len());
            std::fs::write(wc.join(format!("f{commit}{i}.txt")), content).unwrap();
        }
        git.ok(&wc, &["add", "."]);
        git.ok(&wc, &["commit", "--quiet", "-m", "part"]);
    }
    let c = git.ok(&wc, &["rev-parse", "HEAD"]);
    refused(
        &["push", "origin", "main"],
        &[&short(&c), "new content", "a push"],
    );
    reset();

    // A good commit followed by a bad one: neither lands, and the bad one is named.
    std::fs::write(wc.join("good.txt"), "good\n").unwrap();
    git.ok(&wc, &["add", "good.txt"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "good"]);
    std::os::unix::fs::symlink("good.txt", wc.join("bad.link")).unwrap();
    git.ok(&wc, &["add", "bad.link"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "bad"]);
    let bad = git.ok(&wc, &["rev-parse", "HEAD"]);
    let good = git.ok(&wc, &["rev-parse", "HEAD~1"]);
    let err = refused(&["push", "origin", "main"], &[&short(&bad), "bad.link"]);
    assert!(!err.contains(&short(&good)), "{err}");
    reset();

    // After all that, a good push still lands.
    std::fs::write(wc.join("fine.txt"), "fine\n").unwrap();
    git.ok(&wc, &["add", "fine.txt"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "fine"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    assert_eq!(
        h.store.head(&id).unwrap(),
        git.ok(&wc, &["rev-parse", "HEAD"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_behind_an_mcp_update_is_refused_until_pulled() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let client = h.client_for(&[id]).await;
    let after_mcp = ok(&call(
        &client,
        "update_repo_files",
        json!({"repo_id": id.to_string(), "operations": [
            {"type": "write", "path": "mcp.txt", "content": "from mcp\n"}]}),
    )
    .await)["head"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(wc.join("git.txt"), "from git\n").unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "git"]);
    let err = git.fails(&wc, &["push", "origin", "main"]);
    assert!(err.contains("rejected"), "{err}");
    assert_eq!(
        h.store.head(&id).unwrap(),
        after_mcp,
        "the MCP write is not lost"
    );
    git.ok(&wc, &["pull", "--quiet", "--rebase"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    let files = h.store.list_files(&id).unwrap().paths;
    assert!(files.contains(&"mcp.txt".to_string()) && files.contains(&"git.txt".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_decide_as_on_every_surface() {
    let h = Harness::new();
    let mine = h.repo(&[("a.txt", "a\n")]);
    let other = h.repo(&[("b.txt", "b\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let home = git.home.path().to_path_buf();
    let t = token(&h, mine);
    let info = |id: &RepoId| {
        format!(
            "{}/repo/{id}.git/info/refs?service=git-upload-pack",
            api.base
        )
    };

    // No credential: 401 with the Basic challenge git answers with its helper.
    let r = reqwest::get(info(&mine)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"scoped-repo-mcp\""
    );
    let plain = format!("{}/repo/{mine}.git", api.base);
    let err = git.fails(&home, &["clone", &plain, "none"]);
    assert!(
        err.contains("Authentication failed") || err.contains("could not read Username"),
        "{err}"
    );

    // Another repo's token: the same answer for a repo that exists and one that does not.
    let missing: RepoId = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
    let get = |id: RepoId, cred: String| async move {
        let r = reqwest::Client::new()
            .get(info(&id))
            .basic_auth("token", Some(cred))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let (s1, b1) = get(other, t.clone()).await;
    let (s2, b2) = get(missing, t.clone()).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(s1, StatusCode::NOT_FOUND);
    let err = git.fails(&home, &["clone", &url(&api, &other, &t), "other"]);
    assert!(err.contains("not found"), "{err}");
    // An account key asking for a missing repo gets that answer too.
    assert_eq!(get(missing, api.key.clone()).await, (s1, b1));

    // A revoked token stops at its next request.
    git.ok(&home, &["clone", "--quiet", &url(&api, &mine, &t), "wc"]);
    h.store.revoke_token(&t).unwrap();
    let err = git.fails(&git.dir("wc"), &["fetch"]);
    assert!(err.contains("revoked"), "{err}");
    let err = git.fails(&git.dir("wc"), &["push", "origin", "main"]);
    assert!(err.contains("revoked"), "{err}");
    let (s, _) = get(mine, "rlcr-0000000000000000000000000000000000000000".into()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_tokens_fetch_and_path_limited_tokens_are_refused() {
    let h = Harness::new();
    let id = h.repo(&[("src/a.rs", "a\n"), ("docs/b.md", "b\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let home = git.home.path().to_path_buf();
    let mint = |read_only: bool, paths: &[&str]| {
        h.store
            .mint(&MintSpec {
                name: "git".into(),
                repo_ids: vec![id],
                ttl_seconds: Some(600),
                read_only,
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..MintSpec::default()
            })
            .unwrap()
            .token
    };
    let head = h.store.head(&id).unwrap();

    let ro = mint(true, &[]);
    git.ok(&home, &["clone", "--quiet", &url(&api, &id, &ro), "ro"]);
    let wc = git.dir("ro");
    std::fs::write(wc.join("x.txt"), "x\n").unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "x"]);
    let err = git.fails(&wc, &["push", "origin", "main"]);
    assert!(err.contains("may clone and fetch but not push"), "{err}");
    assert_eq!(h.store.head(&id).unwrap(), head);

    let limited = mint(false, &["src/**"]);
    let err = git.fails(&home, &["clone", &url(&api, &id, &limited), "limited"]);
    assert!(err.contains("limited to some paths"), "{err}");
    let err = git.fails(&wc, &["push", &url(&api, &id, &limited), "main"]);
    assert!(err.contains("limited to some paths"), "{err}");
    assert_eq!(h.store.head(&id).unwrap(), head);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_cut_off_mid_upload_leaves_no_ref_moved_and_no_quarantine() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    // A commit worth a few MiB of pack, so the upload takes a while.
    let mut noise = String::new();
    let mut x: u64 = 1;
    for _ in 0..200_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        noise.push_str(&format!("{x:016x}\n"));
    }
    std::fs::write(wc.join("noise.txt"), noise).unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "noise"]);
    let new = git.ok(&wc, &["rev-parse", "HEAD"]);
    let pack = {
        let mut child = std::process::Command::new("git")
            .args(["pack-objects", "--stdout", "--revs", "-q"])
            .current_dir(&wc)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{new}\n^{head}").unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let command = format!("{head} {new} refs/heads/main\0report-status\n");
    let mut body = format!("{:04x}{command}0000", command.len() + 4).into_bytes();
    body.extend_from_slice(&pack);

    let addr = api
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("token:{t}"));
    let request = format!(
        "POST /v1/repo/{id}.git/git-receive-pack HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(&body[..body.len() / 2]).await.unwrap();
    socket.flush().await.unwrap();
    // git starts only once the push is whole: half of it starts nothing. Hang up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        quarantines(&h, &id).is_empty(),
        "git started on half a push"
    );
    drop(socket);

    let mut left = quarantines(&h, &id);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = quarantines(&h, &id);
    }
    assert!(left.is_empty(), "quarantine left behind: {left:?}");
    assert_eq!(h.store.head(&id).unwrap(), head);
    assert!(!h.store.git_dir(&id).join("refs/heads/main.lock").exists());
    // The repo's writer lock was released: the same push, whole, lands.
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    assert_eq!(h.store.head(&id).unwrap(), new);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_credential_never_reaches_the_log() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let log = h.data_dir().join("api.log");
    let file = std::fs::File::create(&log).unwrap();
    let api = start_api_with(&h, Stdio::from(file), &[]).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let wc = working_copy(&h, &git, &api, &id, "wc");
    std::fs::write(wc.join("b.txt"), "b\n").unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "b"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    git.fails(&wc, &["push", "origin", "main:refs/heads/other"]);
    git.fails(
        git.home.path(),
        &["clone", &url(&api, &id, "rlc-wrong-key"), "bad"],
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("git push request done"), "{logged}");
    assert!(
        !logged.contains(&t) && !logged.contains("rlc-wrong-key"),
        "{logged}"
    );
}

#[test]
fn api_without_git_on_path_says_it_needs_git() {
    let h = Harness::new();
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["api", "--listen", "127.0.0.1:0"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs `git`") && err.contains("on PATH"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fetches_and_pushes_land_in_the_audit_trail() {
    use scoped_repo_mcp::store::AuditQuery;
    let h = Harness::new();
    let id = h.repo(&[("src/lib.rs", LIB)]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    std::fs::write(wc.join("notes.md"), "from git\n").unwrap();
    git.ok(&wc, &["add", "notes.md"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "Add notes"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    let query = AuditQuery {
        repo: Some(id.to_string()),
        limit: 100,
        ..AuditQuery::default()
    };
    // The trail is written in batches, about every 100 ms.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = h.store.audit(&query).unwrap();
        // The push's record is written before its answer ends; the fetch's comes with
        // the next batch, which may land after it.
        if rows.iter().any(|r| r.action.ends_with("/git-receive-pack"))
            && rows.iter().any(|r| r.action.ends_with("/git-upload-pack"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let git_rows: Vec<_> = rows.iter().filter(|r| r.surface == "git").collect();
    assert!(
        git_rows
            .iter()
            .any(|r| r.action.ends_with("/git-upload-pack") && r.outcome == "ok"),
        "{rows:#?}"
    );
    let push = git_rows
        .iter()
        .find(|r| r.action.ends_with("/git-receive-pack"))
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(push.outcome, "ok");
    assert_eq!(push.credential, "token git");
    assert_eq!(push.repo.as_deref(), Some(id.to_string().as_str()));
    // git asks without a credential first; that probe is not a caller refused.
    assert!(
        !git_rows.iter().any(|r| r.credential == "anonymous"),
        "{git_rows:#?}"
    );
}

// Killed with SIGKILL in the middle of a push, `api` leaves main at its old commit or
// at the pushed one, git's objects whole, and the next server takes the same push.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_during_a_push_leaves_the_old_head_or_the_new_one() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    for f in 0..400 {
        let body: String = (0..200)
            .map(|l| format!("file {f} line {l} of text\n"))
            .collect();
        std::fs::write(wc.join(format!("f{f}.txt")), body).unwrap();
    }
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "many files"]);
    let new = git.ok(&wc, &["rev-parse", "HEAD"]);
    let mut push = git
        .command(&wc, &["push", "--quiet", "origin", "main"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the server once the push is under way (its quarantine exists), or at the
    // latest when the push has ended.
    for _ in 0..400 {
        if !quarantines(&h, &id).is_empty() || push.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mid_push = !quarantines(&h, &id).is_empty();
    let killed = std::process::Command::new("kill")
        .args(["-9", &api.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = push.wait();
    // An orphaned receive-pack may still finish or give up; let it.
    for _ in 0..100 {
        if quarantines(&h, &id).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = h.store.head(&id).unwrap();
    assert!(
        after == head || after == new,
        "main is {after}: neither {head} nor {new}"
    );
    eprintln!(
        "killed {} the push; main at the {} head",
        if mid_push {
            "in the middle of"
        } else {
            "after"
        },
        if after == head { "old" } else { "new" }
    );
    let fsck = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(&id))
        .args(["fsck", "--no-dangling"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
    // A new server takes the push (or has nothing left to take) and the tools see it.
    drop(api);
    let api = api_on(&h).await;
    let remote = url(&api, &id, &token(&h, id));
    // An orphaned receive-pack killed with its server may leave its quarantine; the
    // next writer removes it once it is an hour old (a younger one may be a live
    // push's). The new push leaves none of its own.
    let orphaned = quarantines(&h, &id);
    git.ok(&wc, &["push", "--quiet", &remote, "main"]);
    assert_eq!(h.store.head(&id).unwrap(), new);
    assert_eq!(quarantines(&h, &id), orphaned);
    let c = h.client_for(&[id]).await;
    crate::common::ok(
        &crate::common::call(
            &c,
            "read_file",
            serde_json::json!({"repo_id": id.to_string(), "path": "f399.txt"}),
        )
        .await,
    );
}
