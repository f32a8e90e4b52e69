//! Repos made from git, with the real `git` CLI: `POST /v1/repo` and `/update` from a
//! git source (a second `api` serving a repo over smart HTTP on loopback is the remote),
//! fast-forward, merge commit and conflict; refused histories, hosts and schemes, each
//! changing nothing; credentials in a source URL kept out of answers and logs;
//! `repo create --from-git` of a local path; and `serve --import` of a work tree, twice.

use std::path::Path;
use std::process::Stdio;

use reqwest::{Method, StatusCode};
use scoped_repo_mcp::model::{Change, FileOp, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use serde_json::{Value, json};

use crate::api::{ApiChild, send, start_api_with};
use crate::common::{BIN, Harness};
use crate::git_http::GitUser;

/// Commit `content` at `path` to repo `id` through the store, as any update does.
fn commit(h: &Harness, id: &RepoId, path: &str, content: &str, message: &str) -> String {
    let spec = UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse(path).unwrap(),
            content: content.into(),
        }]),
        expected_head: None,
        message: Some(message.into()),
        control: Default::default(),
        visible: None,
    };
    h.store.update(id, &spec, "upstream").unwrap().head
}

/// The upstream: a store with one repo of three commits, served by its own `api`.
struct Upstream {
    h: Harness,
    api: ApiChild,
    id: RepoId,
}

impl Upstream {
    async fn new() -> Self {
        let h = Harness::new();
        let id = h.repo(&[
            ("README.md", "# upstream\n"),
            ("src/a.txt", "one\ntwo\nthree\n"),
        ]);
        commit(&h, &id, "src/b.txt", "bee\n", "Add b");
        commit(&h, &id, "docs/guide.md", "# guide\n", "Add the guide");
        let api = start_api_with(&h, Stdio::null(), &[]).await;
        Self { h, api, id }
    }

    /// The repo's URL, with the account key as the password.
    fn url(&self) -> String {
        let base = self
            .api
            .base
            .replacen("http://", &format!("http://token:{}@", self.api.key), 1);
        format!("{base}/repo/{}.git", self.id)
    }

    fn head(&self) -> String {
        self.h.store.head(&self.id).unwrap()
    }

    /// `127.0.0.1:PORT`, as `--allowed-git-host` allows it.
    fn authority(&self) -> String {
        self.api
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }
}

/// The downstream `api`, allowed to fetch from `up`'s loopback port, logging at debug
/// to `log`.
async fn downstream(h: &Harness, log: &Path, up: &Upstream) -> ApiChild {
    start_api_with(
        h,
        std::fs::File::create(log).unwrap().into(),
        &["--allowed-git-host", &up.authority()],
    )
    .await
}

/// A `git` that writes each command line it is run with to `argv.log`, then runs the
/// real git: put first on the PATH of a server, it shows what the process list shows.
fn recording_git(dir: &Path) -> std::path::PathBuf {
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("argv.log");
    let script = bin.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

/// `git rev-list --count main` of a bare repo.
fn commit_count(git: &GitUser, dir: &Path) -> usize {
    git.ok(dir, &["rev-list", "--count", "main"])
        .parse()
        .unwrap()
}

fn parents(git: &GitUser, dir: &Path, rev: &str) -> usize {
    git.ok(dir, &["rev-list", "--parents", "-n", "1", rev])
        .split_whitespace()
        .count()
        - 1
}

/// Every file of the data directory and the log holding `secret`, by name.
fn files_holding(dir: &Path, secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap_or_default()
                .windows(secret.len())
                .any(|w| w == secret.as_bytes())
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

fn quarantines(h: &Harness) -> Vec<String> {
    std::fs::read_dir(h.data_dir().join("repos"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn object_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("objects")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn create_from_git_keeps_the_history_then_updates_fast_forward_and_merge() {
    let up = Upstream::new().await;
    let h = Harness::new();
    let log = h.data_dir().join("api.log");
    let tools = tempfile::tempdir().unwrap();
    let argv = recording_git(tools.path());
    let path = format!(
        "{}:{}",
        tools.path().join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let api = start_api_env(&h, &log, &path, &up.authority()).await;
    let key = Some(api.key.as_str());
    let git = GitUser::new();

    let (s, created) = send(
        Method::POST,
        format!("{}/repo", api.base),
        key,
        Some(json!({"source": {"type": "git", "url": up.url()}, "metadata": {"name": "from-git"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let id: RepoId = created["repo_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        created["repo_head"],
        up.head(),
        "main is the upstream's head"
    );
    let dir = h.store.git_dir(&id);
    assert_eq!(
        commit_count(&git, &dir),
        3,
        "every commit came, not a snapshot"
    );
    assert_eq!(
        git.ok(&dir, &["log", "--format=%s", "main"]),
        git.ok(&up.h.store.git_dir(&up.id), &["log", "--format=%s", "main"])
    );
    assert_eq!(h.store.repo_row(&id).unwrap().metadata["name"], "from-git");
    let mut answers = vec![created.clone()];
    // The ranked index is built and stored in the background after the answer, so the
    // first ranked question loads it.
    let ranked = h.store.ranked_index_path(&id);
    for _ in 0..600 {
        if ranked.is_file() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ranked.is_file(),
        "no ranked index stored after creation from git"
    );

    // Upstream moves on: the update fast-forwards, and search sees the new file.
    let ff = commit(&up.h, &up.id, "src/c.txt", "PANGOLIN_MARKER\n", "Add c");
    let update = |body: Value| {
        let url = format!("{}/repo/{id}/update", api.base);
        async move { send(Method::POST, url, key, Some(body)).await }
    };
    let (s, answer) =
        update(json!({"source": {"type": "git", "url": up.url(), "branch": "main"}})).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    answers.push(answer.clone());
    assert_eq!(answer["repo_head"], ff);
    assert_eq!(answer["changed_files"], json!(["src/c.txt"]));
    let (s, found) = send(
        Method::POST,
        format!("{}/repo/{id}/search", api.base),
        key,
        Some(json!({"query": "PANGOLIN_MARKER"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(found["results"][0]["filename"], "src/c.txt", "{found}");

    // Both sides change different files: a merge commit joins them.
    let local = commit(&h, &id, "notes.md", "agent notes\n", "Agent notes");
    let theirs = commit(
        &up.h,
        &up.id,
        "src/a.txt",
        "one\ntwo\nthree\nfour\n",
        "Four",
    );
    let (s, answer) = update(json!({"source": {"type": "git", "url": up.url()}})).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    answers.push(answer.clone());
    let merge = answer["repo_head"].as_str().unwrap().to_string();
    assert_eq!(parents(&git, &dir, &merge), 2);
    assert_eq!(
        git.ok(
            &dir,
            &["rev-parse", &format!("{merge}^1"), &format!("{merge}^2")]
        ),
        format!("{local}\n{theirs}")
    );
    assert_eq!(
        h.store
            .read_file(&id, &RepoPath::parse("src/a.txt").unwrap(), None)
            .unwrap()
            .content,
        "one\ntwo\nthree\nfour\n"
    );
    assert!(
        h.store
            .read_file(&id, &RepoPath::parse("notes.md").unwrap(), None)
            .is_ok()
    );
    // Nothing new upstream: up to date, no commit.
    let (s, answer) = update(json!({"source": {"type": "git", "url": up.url()}})).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert_eq!(answer["repo_head"], merge);
    assert_eq!(answer["changed_files"], json!([]));
    assert!(quarantines(&h).is_empty(), "{:?}", quarantines(&h));

    // The credential in the URL was used, and is nowhere: not in answers, the log, the
    // repo's configuration or any file of the store.
    drop(api);
    let secret = up.api.key.clone();
    for answer in &answers {
        assert!(!answer.to_string().contains(&secret), "{answer}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("git source"),
        "the log was written: {logged}"
    );
    assert!(!logged.contains(&secret), "the log holds the credential");
    assert_eq!(files_holding(h.data_dir(), &secret), Vec::<String>::new());
    // Every fetch ran through the recording git, and no command line held the secret.
    let argv = std::fs::read_to_string(&argv).unwrap();
    assert!(
        argv.lines().filter(|l| l.contains(" fetch ")).count() >= 4,
        "{argv}"
    );
    assert!(
        !argv.contains(&secret),
        "a command line held the credential: {argv}"
    );
}

/// A repo made by `POST /v1/repo` from the upstream's git URL, which must succeed.
async fn made_from(api: &ApiChild, up: &Upstream) -> RepoId {
    let (s, created) = send(
        Method::POST,
        format!("{}/repo", api.base),
        Some(&api.key),
        Some(json!({"source": {"type": "git", "url": up.url()}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    created["repo_id"].as_str().unwrap().parse().unwrap()
}

/// `POST /v1/repo/{id}/update` from the upstream's git URL: its status and body.
async fn pull(api: &ApiChild, id: &RepoId, up: &Upstream) -> (StatusCode, Value) {
    send(
        Method::POST,
        format!("{}/repo/{id}/update", api.base),
        Some(&api.key),
        Some(json!({"source": {"type": "git", "url": up.url()}})),
    )
    .await
}

/// The downstream `api` with `path` as its PATH (to run a recording git).
async fn start_api_env(h: &Harness, log: &Path, path: &str, allowed: &str) -> ApiChild {
    let key = h.store.create_account_key("api tests").unwrap();
    crate::api::ApiBuilder::on(h.data_dir(), key)
        .flags(&["--allowed-git-host", allowed])
        .env("PATH", path)
        .stderr(std::fs::File::create(log).unwrap())
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_update_answers_409_with_the_paths_and_changes_nothing() {
    let up = Upstream::new().await;
    let h = Harness::new();
    let api = downstream(&h, &h.data_dir().join("api.log"), &up).await;
    let id = made_from(&api, &up).await;
    commit(
        &h,
        &id,
        "src/a.txt",
        "one\nTWO (agent)\nthree\n",
        "Agent edit",
    );
    commit(
        &up.h,
        &up.id,
        "src/a.txt",
        "one\nTWO (upstream)\nthree\n",
        "Upstream edit",
    );
    let before = h.store.head(&id).unwrap();
    let objects = object_files(&h.store.git_dir(&id));

    let (s, body) = pull(&api, &id, &up).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["conflicts"], json!(["src/a.txt"]));
    assert!(
        body["detail"].as_str().unwrap().contains("`src/a.txt`"),
        "{body}"
    );
    assert_eq!(h.store.head(&id).unwrap(), before, "main did not move");
    assert_eq!(
        object_files(&h.store.git_dir(&id)),
        objects,
        "no object joined the repo"
    );
    assert!(quarantines(&h).is_empty(), "{:?}", quarantines(&h));
}

/// Put a commit the store would refuse (a symbolic link) on the upstream's `main`,
/// bypassing its checks, as a hostile or careless remote would serve it.
fn push_symlink_behind_the_stores_back(up: &Upstream) -> String {
    let repo = git2::Repository::open_bare(up.h.store.git_dir(&up.id)).unwrap();
    let head = repo.refname_to_id("refs/heads/main").unwrap();
    let parent = repo.find_commit(head).unwrap();
    let target = repo.blob(b"/etc/passwd").unwrap();
    let mut tree = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    tree.insert("passwd-link", target, 0o120000).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("mallory", "m@example.com").unwrap();
    let c = repo
        .commit(None, &sig, &sig, "Add a link", &tree, &[&parent])
        .unwrap();
    repo.reference("refs/heads/main", c, true, "test").unwrap();
    c.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetched_commit_breaking_the_rules_is_refused_and_changes_nothing() {
    let up = Upstream::new().await;
    let h = Harness::new();
    let api = downstream(&h, &h.data_dir().join("api.log"), &up).await;
    let key = Some(api.key.as_str());
    let id = made_from(&api, &up).await;
    let before = h.store.head(&id).unwrap();
    let objects = object_files(&h.store.git_dir(&id));
    let bad = push_symlink_behind_the_stores_back(&up);

    let (s, body) = pull(&api, &id, &up).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&bad[..12])
            && detail.contains("`passwd-link`")
            && detail.contains("symbolic links"),
        "{detail}"
    );
    assert_eq!(h.store.head(&id).unwrap(), before);
    assert_eq!(object_files(&h.store.git_dir(&id)), objects);
    assert!(quarantines(&h).is_empty(), "{:?}", quarantines(&h));

    // A new repo from that history is refused whole: no repo is made.
    let (s, body) = send(
        Method::POST,
        format!("{}/repo", api.base),
        key,
        Some(json!({"source": {"type": "git", "url": up.url()}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(h.store.repo_rows().unwrap().len(), 1);
    assert!(quarantines(&h).is_empty(), "{:?}", quarantines(&h));
}

#[tokio::test(flavor = "multi_thread")]
async fn git_sources_need_an_allowed_host_and_an_http_url() {
    let up = Upstream::new().await;
    let h = Harness::new();
    // No --allowed-git-host: every git source is refused, naming the flag.
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let key = Some(api.key.as_str());
    let (s, body) = send(
        Method::POST,
        format!("{}/repo", api.base),
        key,
        Some(json!({"source": {"type": "git", "url": up.url()}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--allowed-git-host"),
        "{body}"
    );
    drop(api);

    let api = downstream(&h, &h.data_dir().join("api.log"), &up).await;
    let key = Some(api.key.as_str());
    let id = h.repo(&[("a.txt", "a\n")]);
    let head = h.store.head(&id).unwrap();
    let port = up
        .api
        .base
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let upstream_dir = up.h.store.git_dir(&up.id).display().to_string();
    for (url, says) in [
        (format!("file://{upstream_dir}"), "scheme"),
        (upstream_dir.clone(), "not a URL"),
        (format!("ssh://127.0.0.1:{port}/r.git"), "scheme"),
        ("ext::sh -c id".to_string(), "space"),
        (format!("-u{}", up.url()), "starts with `-`"),
        (
            up.url().replace("127.0.0.1", "localhost"),
            "--allowed-git-host",
        ),
    ] {
        for (route, body) in [
            (
                format!("{}/repo", api.base),
                json!({"source": {"type": "git", "url": url}}),
            ),
            (
                format!("{}/repo/{id}/update", api.base),
                json!({"source": {"type": "git", "url": url}}),
            ),
        ] {
            let (s, answer) = send(Method::POST, route, key, Some(body)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
            let detail = answer["detail"].as_str().unwrap();
            assert!(detail.contains(says), "{url}: {detail}");
            assert!(!detail.contains(&up.api.key), "{detail}");
        }
    }
    assert_eq!(h.store.repo_rows().unwrap().len(), 1, "no repo was made");
    assert_eq!(h.store.head(&id).unwrap(), head, "no update landed");

    // A credential the remote refuses: the fetch fails, and the answer does not echo it.
    let wrong = up.url().replace(&up.api.key, "rlc-WRONGSECRETWRONGSECRET");
    let (s, body) = send(
        Method::POST,
        format!("{}/repo", api.base),
        key,
        Some(json!({"source": {"type": "git", "url": wrong}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.to_string().contains("WRONGSECRET"), "{body}");
    drop(api);
    let logged = std::fs::read_to_string(h.data_dir().join("api.log")).unwrap();
    assert!(
        !logged.contains("WRONGSECRET"),
        "the log holds the credential"
    );
}

/// Make a work tree with `files` committed one commit each.
fn work_tree(git: &GitUser, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = git.dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    git.ok(&dir, &["init", "--quiet", "-b", "main"]);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        git.ok(&dir, &["add", "."]);
        git.ok(&dir, &["commit", "--quiet", "-m", &format!("Add {path}")]);
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn repo_create_from_git_imports_a_local_repository_with_its_history() {
    let h = Harness::new();
    let git = GitUser::new();
    let work = work_tree(
        &git,
        "work",
        &[("a.txt", "a\n"), ("b.txt", "b\n"), ("c/d.txt", "d\n")],
    );
    git.ok(&work, &["checkout", "--quiet", "-b", "side"]);
    std::fs::write(work.join("side.txt"), "side\n").unwrap();
    git.ok(&work, &["add", "."]);
    git.ok(&work, &["commit", "--quiet", "-m", "Side"]);
    // Uncommitted work is not imported.
    std::fs::write(work.join("dirty.txt"), "not committed\n").unwrap();

    let out = h
        .command(&[
            "repo",
            "create",
            "--from-git",
            work.to_str().unwrap(),
            "--branch",
            "main",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: RepoId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let dir = h.store.git_dir(&id);
    assert_eq!(commit_count(&git, &dir), 3);
    assert_eq!(
        git.ok(&dir, &["rev-parse", "main"]),
        git.ok(&work, &["rev-parse", "main"])
    );
    // Without --branch: the branch checked out (HEAD), and only what is committed.
    let out = h
        .command(&["repo", "create", "--from-git", work.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let side: RepoId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let files = h.store.list_files(&side).unwrap().paths;
    assert_eq!(files, ["a.txt", "b.txt", "c/d.txt", "side.txt"]);

    // A remote over http, from the command line: no allow list needed.
    let up = Upstream::new().await;
    let out = h
        .command(&["repo", "create", "--from-git", &up.url()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remote: RepoId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(h.store.head(&remote).unwrap(), up.head());
    assert_eq!(commit_count(&git, &h.store.git_dir(&remote)), 3);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&up.api.key));

    // A shallow clone's history is incomplete: refused, saying how to complete it.
    let shallow = git.dir("shallow");
    git.ok(
        &git.dir(""),
        &[
            "clone",
            "--quiet",
            "--depth",
            "1",
            &format!("file://{}", work.display()),
            shallow.to_str().unwrap(),
        ],
    );
    let out = h
        .command(&["repo", "create", "--from-git", shallow.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--unshallow"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Sources the command refuses, with nothing made.
    for bad in [
        "ssh://example.com/r.git",
        "git://example.com/r.git",
        "ext::sh -c id",
    ] {
        let out = h
            .command(&["repo", "create", "--from-git", bad])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not accepted"),
            "{bad}"
        );
    }
    assert_eq!(h.store.repo_rows().unwrap().len(), 3);
}

/// Run `serve --import DIR` through its start-up (its stdin closed at once), and
/// return what it wrote on stderr.
async fn start_up_once(h: &Harness, dir: &Path) -> String {
    let out = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["serve", "--import"])
        .arg(dir)
        .env_remove("RELACE_API_KEY")
        .env_remove("SCOPED_REPO_IDS")
        .env("RUST_LOG", "scoped_repo_mcp=info,warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_import_of_a_work_tree_follows_its_history_across_start_ups() {
    let h = Harness::new();
    let git = GitUser::new();
    let work = work_tree(
        &git,
        "project",
        &[("src/lib.rs", "fn a() {}\n"), ("README.md", "# p\n")],
    );

    let said = start_up_once(&h, &work).await;
    let rows = h.store.repo_rows().unwrap();
    assert_eq!(rows.len(), 1, "{said}");
    let id = rows[0].id;
    let store_dir = h.store.git_dir(&id);
    assert_eq!(commit_count(&git, &store_dir), 2, "{said}");
    assert_eq!(
        h.store.head(&id).unwrap(),
        git.ok(&work, &["rev-parse", "HEAD"])
    );

    // The agent commits in the store; the user commits in the work tree. The next
    // start-up merges the user's commit into the store's main.
    let agent = commit(&h, &id, "NOTES.md", "agent was here\n", "Agent notes");
    std::fs::write(work.join("src/lib.rs"), "fn a() {}\nfn b() {}\n").unwrap();
    git.ok(&work, &["commit", "--quiet", "-am", "Add b"]);
    let user = git.ok(&work, &["rev-parse", "HEAD"]);
    let said = start_up_once(&h, &work).await;
    let merged = h.store.head(&id).unwrap();
    assert_eq!(parents(&git, &store_dir, &merged), 2, "{said}");
    assert_eq!(
        git.ok(
            &store_dir,
            &["rev-parse", &format!("{merged}^1"), &format!("{merged}^2")]
        ),
        format!("{agent}\n{user}")
    );
    assert_eq!(
        h.store.repo_rows().unwrap().len(),
        1,
        "the same repo is served"
    );

    // Two clones of one history: `git pull` from the store brings the agent's work home.
    git.ok(
        &work,
        &[
            "pull",
            "--quiet",
            "--no-rebase",
            store_dir.to_str().unwrap(),
            "main",
        ],
    );
    assert_eq!(git.ok(&work, &["rev-parse", "HEAD"]), merged);
    assert_eq!(
        std::fs::read_to_string(work.join("NOTES.md")).unwrap(),
        "agent was here\n"
    );
    let said = start_up_once(&h, &work).await;
    assert_eq!(h.store.head(&id).unwrap(), merged, "nothing new: {said}");

    // A conflicting edit on both sides: the store is left as it was, with a warning
    // naming the path, and the server still starts.
    commit(&h, &id, "README.md", "# p (agent)\n", "Agent title");
    std::fs::write(work.join("README.md"), "# p (user)\n").unwrap();
    git.ok(&work, &["commit", "--quiet", "-am", "User title"]);
    let before = h.store.head(&id).unwrap();
    let said = start_up_once(&h, &work).await;
    assert_eq!(h.store.head(&id).unwrap(), before, "{said}");
    let warning = said
        .lines()
        .find(|l| l.contains("WARN") && l.contains("conflict"))
        .unwrap_or_else(|| panic!("no warning: {said}"));
    assert!(warning.contains("README.md"), "{warning}");
    assert!(
        said.contains("serving MCP over stdio"),
        "the server started: {said}"
    );
    assert!(quarantines(&h).is_empty(), "{:?}", quarantines(&h));
}

/// A loopback server answering every connection with `answer` (a whole HTTP response),
/// on a free port.
fn canned_server(answer: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            use std::io::{Read as _, Write as _};
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer.as_bytes());
        }
    });
    port
}

// An allowed git host allowed every port, and the answer told a closed port, a server
// that is not git, a redirect and a credential prompt apart: a token that may create
// repos could port-scan an allowed internal host.
#[tokio::test(flavor = "multi_thread")]
async fn git_source_failures_told_ports_apart() {
    let h = Harness::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let not_git = canned_server(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    );
    let redirect = canned_server(
        "HTTP/1.1 301 Moved Permanently\r\nlocation: http://127.0.0.1:9/elsewhere.git\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    let prompt = canned_server(
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"x\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    let unlisted = canned_server("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    let allowed: Vec<String> = [closed, not_git, redirect, prompt]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let api = start_api_with(
        &h,
        Stdio::null(),
        &["--allowed-git-host", &allowed.join(",")],
    )
    .await;
    let key = Some(api.key.as_str());
    let mut details = Vec::new();
    for port in [closed, not_git, redirect, prompt] {
        let url = format!("http://127.0.0.1:{port}/r.git");
        let (s, body) = send(
            Method::POST,
            format!("{}/repo", api.base),
            key,
            Some(json!({"source": {"type": "git", "url": url}})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{url}: {body}");
        details.push(body["detail"].as_str().unwrap().to_string());
    }
    for d in &details {
        assert_eq!(d, &details[0], "the answers differ: {details:#?}");
    }
    assert!(
        details[0].starts_with("the git source could not be fetched:"),
        "{}",
        details[0]
    );
    // A port the operator did not name is refused before any connection.
    let (s, body) = send(
        Method::POST,
        format!("{}/repo", api.base),
        key,
        Some(
            json!({"source": {"type": "git", "url": format!("http://127.0.0.1:{unlisted}/r.git")}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains(&format!(
            "`127.0.0.1:{unlisted}` are not ones this server may fetch from"
        )),
        "{body}"
    );
    assert_eq!(h.store.repo_rows().unwrap().len(), 0, "no repo was made");
}
