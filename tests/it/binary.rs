//! Binary files in a repo: kept by pushes, git sources and imports within the per-file
//! cap and the per-repo quota; answered by `read_file` with their size, marked by
//! `list_files`, skipped by search, served raw by the REST API; deleted and renamed by
//! the tools, never written by them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::StatusCode;
use scoped_repo_mcp::model::{Change, FileOp, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};

use crate::api::{ApiChild, start_api_with};
use crate::common::{Harness, call, ok, refused, text};
use crate::git_http::{GitUser, api_on, token, url, working_copy};
use crate::on_both_backends;

/// A PNG's signature and first chunk, with a word the text file holds too: a search
/// for it must find the text file only.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10pixelmarker\x08\x06\0\0\0\x1f\xf3\xffa";

const LIB: &str = "// the logo is drawn where pixelmarker says\npub fn logo() {}\n";

/// A work tree whose history adds a text file, then a PNG, then changes the text.
fn project(git: &GitUser, name: &str) -> PathBuf {
    let dir = git.dir(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    git.ok(&dir, &["init", "--quiet", "-b", "main"]);
    std::fs::write(dir.join("src/lib.rs"), "pub fn logo() {}\n").unwrap();
    git.ok(&dir, &["add", "."]);
    git.ok(&dir, &["commit", "--quiet", "-m", "Add the library"]);
    std::fs::write(dir.join("assets/logo.png"), PNG).unwrap();
    git.ok(&dir, &["add", "."]);
    git.ok(&dir, &["commit", "--quiet", "-m", "Add the logo"]);
    std::fs::write(dir.join("src/lib.rs"), LIB).unwrap();
    git.ok(
        &dir,
        &["commit", "--quiet", "-am", "Say where the logo is drawn"],
    );
    dir
}

fn commit_count(git: &GitUser, git_dir: &Path) -> usize {
    git.ok(git_dir, &["rev-list", "--count", "main"])
        .parse()
        .unwrap()
}

/// The store in `h`'s data directory, opened afresh (as another process would).
fn reopened(h: &Harness) -> Store {
    Store::open(h.data_dir(), Limits::default()).unwrap()
}

/// Bytes no compressor shrinks: a repo holding them takes their size on disk.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_with_binary_files_imports_with_its_history() {
    let git = GitUser::new();
    let work = project(&git, "project");

    // `repo create --from-git` keeps the binary file, and the history.
    let h = Harness::new();
    let out = h
        .command(&["repo", "create", "--from-git", work.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id: RepoId = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let store = reopened(&h);
    assert_eq!(commit_count(&git, &store.git_dir(&id)), 3);
    let list = store.list_files(&id).unwrap();
    assert_eq!(list.paths, ["assets/logo.png", "src/lib.rs"]);
    assert_eq!(list.binary, ["assets/logo.png"]);
    let png = RepoPath::parse("assets/logo.png").unwrap();
    assert_eq!(store.read_bytes(&id, &png).unwrap(), PNG);

    // `serve --import` of the work tree takes its history too, binary file and all.
    let h = Harness::new();
    let c = h.client(&["--import", work.to_str().unwrap()]).await;
    let repos = crate::common::list_repos_imported(&c).await;
    let id = repos["repos"][0]["repo_id"].as_str().unwrap().to_string();
    let rid: RepoId = id.parse().unwrap();
    assert_eq!(commit_count(&git, &h.store.git_dir(&rid)), 3);
    assert_eq!(
        h.store.head(&rid).unwrap(),
        git.ok(&work, &["rev-parse", "HEAD"])
    );

    // read_file says binary, with its size, and no content.
    let read = call(
        &c,
        "read_file",
        json!({"repo_id": id, "path": "assets/logo.png"}),
    )
    .await;
    let answer = ok(&read);
    assert_eq!(answer["binary"], true);
    assert_eq!(answer["size"], PNG.len());
    assert_eq!(answer["content"], "");
    assert!(
        text(&read).contains(&format!("binary file of {} bytes", PNG.len())),
        "{}",
        text(&read)
    );
    let lib = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": id, "path": "src/lib.rs"}),
    )
    .await);
    assert_eq!(
        (lib["binary"].clone(), lib["size"].clone()),
        (json!(false), json!(LIB.len()))
    );

    // list_files lists it, marked.
    let listed = call(&c, "list_files", json!({"repo_id": id})).await;
    let answer = ok(&listed);
    assert_eq!(answer["paths"], json!(["assets/logo.png", "src/lib.rs"]));
    assert_eq!(answer["binary_paths"], json!(["assets/logo.png"]));
    assert!(text(&listed).contains("assets/logo.png (binary)\nsrc/lib.rs"));

    // Search skips it: line search and ranked retrieval find the text file alone.
    let found = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "pixelmarker", "mode": "literal"}),
    )
    .await);
    let hits: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert_eq!(hits, ["src/lib.rs"]);
    let ranked = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "pixelmarker", "mode": "ranked"}),
    )
    .await);
    let ranked: Vec<&str> = ranked["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert_eq!(ranked, ["src/lib.rs"]);

    // A tool cannot write binary content; nothing changes.
    let head = h.store.head(&rid).unwrap();
    let why = refused(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [
            {"type": "write", "path": "assets/copy.png", "content": "\u{89}PNG\r\n\u{1a}\n\u{0}\u{0}"}
        ]}),
    )
    .await);
    assert!(
        why.contains("`assets/copy.png`: content contains a NUL byte"),
        "{why}"
    );
    assert_eq!(reopened(&h).head(&rid).unwrap(), head);

    // It can rename it, and delete it; each checked from other processes.
    ok(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [
            {"type": "rename", "path": "assets/logo.png", "new_path": "img/logo.png"}
        ]}),
    )
    .await);
    let checked = h.command(&["repo", "check", &id]).output().await.unwrap();
    assert!(checked.status.success(), "{checked:?}");
    let store = reopened(&h);
    assert_eq!(store.list_files(&rid).unwrap().binary, ["img/logo.png"]);
    let moved = RepoPath::parse("img/logo.png").unwrap();
    assert_eq!(store.read_bytes(&rid, &moved).unwrap(), PNG);
    let other = h.client(&["--repo", &id]).await;
    let answer = ok(&call(
        &other,
        "read_file",
        json!({"repo_id": id, "path": "img/logo.png"}),
    )
    .await);
    assert_eq!(
        (answer["binary"].clone(), answer["size"].clone()),
        (json!(true), json!(PNG.len()))
    );

    ok(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [{"type": "delete", "path": "img/logo.png"}]}),
    )
    .await);
    let listed = ok(&call(&other, "list_files", json!({"repo_id": id})).await);
    assert_eq!(listed["paths"], json!(["src/lib.rs"]));
    assert_eq!(listed["binary_paths"], json!([]));
    assert!(reopened(&h).list_files(&rid).unwrap().binary.is_empty());
    c.cancel().await.unwrap();
    other.cancel().await.unwrap();
}

/// The raw bytes `GET /repo/{id}/file/{path}` answers.
async fn get_raw(api: &ApiChild, id: &RepoId, path: &str) -> (StatusCode, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!("{}/repo/{id}/file/{path}", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

async fn put_raw(api: &ApiChild, id: &RepoId, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/repo/{id}/file/{path}", api.base))
        .bearer_auth(&api.key)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_push_keeps_a_binary_file_and_the_rest_api_serves_it_raw() {
    let h = Harness::new();
    let id = h.repo(&[("README.md", "# logo\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    std::fs::write(wc.join("logo.png"), PNG).unwrap();
    std::fs::write(wc.join("lib.rs"), LIB).unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "Add the logo"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    let pushed = git.ok(&wc, &["rev-parse", "HEAD"]);

    let store = reopened(&h);
    assert_eq!(store.head(&id).unwrap(), pushed);
    assert_eq!(store.list_files(&id).unwrap().binary, ["logo.png"]);
    assert_eq!(
        get_raw(&api, &id, "logo.png").await,
        (StatusCode::OK, PNG.to_vec())
    );
    // `/clone` answers the text files only.
    let (s, cloned) = crate::api::send(
        reqwest::Method::GET,
        format!("{}/repo/{id}/clone", api.base),
        Some(&api.key),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = cloned["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["README.md", "lib.rs"]);

    // A PUT of binary bytes is kept, as the hosted API keeps it.
    let icon = noise(3000);
    let (s, info) = put_raw(&api, &id, "icons/app.ico", icon.clone()).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let store = reopened(&h);
    assert_eq!(
        store.head(&id).unwrap(),
        info["repo_head"].as_str().unwrap()
    );
    assert_eq!(
        store.list_files(&id).unwrap().binary,
        ["icons/app.ico", "logo.png"]
    );
    assert_eq!(
        get_raw(&api, &id, "icons/app.ico").await,
        (StatusCode::OK, icon)
    );

    // A copy made through the API (`source: {type: "relace"}`) keeps them too.
    let (s, made) = crate::api::send(
        reqwest::Method::POST,
        format!("{}/repo", api.base),
        Some(&api.key),
        Some(json!({"source": {"type": "relace", "repo_id": id.to_string()}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{made}");
    let copy: RepoId = made["repo_id"].as_str().unwrap().parse().unwrap();
    let store = reopened(&h);
    assert_eq!(
        store.list_files(&copy).unwrap().binary,
        ["icons/app.ico", "logo.png"]
    );
    assert_eq!(
        store
            .read_bytes(&copy, &RepoPath::parse("logo.png").unwrap())
            .unwrap(),
        PNG
    );

    // And a clone of the store brings it home byte for byte.
    let t = token(&h, id);
    git.ok(
        git.home.path(),
        &["clone", "--quiet", &url(&api, &id, &t), "home"],
    );
    assert_eq!(
        std::fs::read(git.dir("home").join("logo.png")).unwrap(),
        PNG
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_over_the_file_cap_is_refused_on_push() {
    let h = Harness::new();
    let id = h.repo(&[("README.md", "# logo\n")]);
    let api = start_api_with(&h, Stdio::null(), &["--max-file-size", "1KiB"]).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    std::fs::write(wc.join("big.png"), noise(2048)).unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "A large image"]);
    let c = git.ok(&wc, &["rev-parse", "--short=12", "HEAD"]);
    let err = git.fails(&wc, &["push", "origin", "main"]);
    assert!(
        err.contains(&format!(
            "remote: push refused, nothing changed: commit {c} adds `big.png`: 2048 bytes, over the limit of 1024 bytes a file"
        )),
        "{err}"
    );
    assert_eq!(reopened(&h).head(&id).unwrap(), head);
    // The same cap holds for the REST API's PUT.
    let (s, body) = put_raw(&api, &id, "big.png", noise(2048)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(reopened(&h).head(&id).unwrap(), head);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_would_pass_the_repo_quota_is_refused() {
    let h = Harness::new();
    let id = h.repo(&[("README.md", "# quota\n")]);
    let api = start_api_with(&h, Stdio::null(), &["--max-repo-size", "64KiB"]).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    std::fs::write(wc.join("photo.jpg"), noise(100 * 1024)).unwrap();
    git.ok(&wc, &["add", "."]);
    git.ok(&wc, &["commit", "--quiet", "-m", "A photo"]);
    let err = git.fails(&wc, &["push", "origin", "main"]);
    assert!(
        err.contains("over its quota of 65536 bytes (--max-repo-size)"),
        "{err}"
    );
    assert_eq!(reopened(&h).head(&id).unwrap(), head);
    let (s, body) = put_raw(&api, &id, "photo.jpg", noise(100 * 1024)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("quota"), "{body}");
    // Within the quota, a small file still lands.
    let (s, body) = put_raw(&api, &id, "dot.png", noise(100)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_ne!(reopened(&h).head(&id).unwrap(), head);
    // An import past the quota makes no repo.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("photo.jpg"), noise(100 * 1024)).unwrap();
    let before = h.store.repo_rows().unwrap().len();
    let out = h
        .command(&[
            "--max-repo-size",
            "64KiB",
            "repo",
            "create",
            "--from-dir",
            src.path().to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over its quota of 65536 bytes"),
        "{out:?}"
    );
    assert_eq!(reopened(&h).repo_rows().unwrap().len(), before);
    // So does a git source's history past it.
    let work = git.dir("photos");
    std::fs::create_dir_all(&work).unwrap();
    git.ok(&work, &["init", "--quiet", "-b", "main"]);
    std::fs::write(work.join("photo.jpg"), noise(100 * 1024)).unwrap();
    git.ok(&work, &["add", "."]);
    git.ok(&work, &["commit", "--quiet", "-m", "A photo"]);
    let out = h
        .command(&[
            "--max-repo-size",
            "64KiB",
            "repo",
            "create",
            "--from-git",
            work.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over its quota of 65536 bytes"),
        "{out:?}"
    );
    assert_eq!(reopened(&h).repo_rows().unwrap().len(), before);
}

/// A repo holding `logo.png`, written as raw bytes.
fn repo_with_png(h: &Harness) -> RepoId {
    let id = h.repo(&[("README.md", "# logo\n")]);
    let spec = UpdateSpec {
        change: Change::Operations(vec![FileOp::WriteBytes {
            path: RepoPath::parse("logo.png").unwrap(),
            content: PNG.to_vec(),
        }]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    };
    h.store.update(&id, &spec, "tests").unwrap();
    id
}

// On the relace backend (the `api` server serves raw bytes), reading a binary file
// answered an obscure error; on both it answers its size.
async fn read_file_of_a_binary_file_says_binary_with_its_size(h: Harness) {
    let id = repo_with_png(&h);
    let c = h.client_for(&[id]).await;
    let read = call(
        &c,
        "read_file",
        json!({"repo_id": id.to_string(), "path": "logo.png"}),
    )
    .await;
    let answer = ok(&read);
    assert_eq!(answer["binary"], true);
    assert_eq!(answer["size"], PNG.len());
    assert_eq!(answer["content"], "");
    assert!(
        text(&read).contains("is a binary file of"),
        "{}",
        text(&read)
    );
    c.cancel().await.unwrap();
}

on_both_backends!(read_file_of_a_binary_file_says_binary_with_its_size);

#[tokio::test(flavor = "multi_thread")]
async fn repo_create_from_git_suggests_from_dir_for_what_a_snapshot_would_skip() {
    let h = Harness::new();
    let git = GitUser::new();
    let work = project(&git, "linked");
    std::os::unix::fs::symlink("src/lib.rs", work.join("lib.rs")).unwrap();
    git.ok(&work, &["add", "."]);
    git.ok(&work, &["commit", "--quiet", "-m", "A link"]);
    let out = h
        .command(&["repo", "create", "--from-git", work.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbolic links are not accepted"), "{err}");
    assert!(
        err.contains(&format!("repo create --from-dir {}", work.display())),
        "{err}"
    );
    assert!(h.store.repo_rows().unwrap().is_empty());
}
