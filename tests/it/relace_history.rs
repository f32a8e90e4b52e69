//! The history tools on `serve --backend relace`, against this product's own `api`:
//! the same answers as the local backend on the same store, a git cache per
//! credential that starts blobless and is completed when contents are needed, a
//! revert through the update route, path-limited and revoked tokens, and two
//! processes sharing one cache.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use scoped_repo_mcp::backend::{Backend, LocalBackend};
use scoped_repo_mcp::model::{CommitQuery, DiffDetail, DiffQuery, RepoId, RevSpec};
use scoped_repo_mcp::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use scoped_repo_mcp::rules::PathSet;
use serde_json::json;

use crate::api::{ApiChild, start_api_with};
use crate::common::{Api, Client, Harness, call, ok, refused};
use crate::history::{git, mint, monorepo, write};

/// A harness whose servers run on `--backend relace` against an `api` process on its
/// store (the in-process API of [`Harness::relace`] serves no git); the process lives
/// as long as the [`ApiChild`] returned.
async fn relace_with_git() -> (Harness, ApiChild) {
    let mut h = Harness::new();
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    h.api = Some(Api {
        base: api.base.clone(),
        key: api.key.clone(),
    });
    (h, api)
}

/// A client of `serve --backend local` on the harness's store.
async fn local_client(h: &Harness, r: &RepoId) -> Client {
    let cmd = h.command(&["serve", "--backend", "local", "--repo", &r.to_string()]);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
}

/// Every cache directory under the data directory (`relace-cache/<hash>/<repo>.git`).
fn caches(h: &Harness) -> Vec<PathBuf> {
    let root = h.data_dir().join("relace-cache");
    let mut out = Vec::new();
    for per_token in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(per_token.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "git") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn is_blobless(cache: &Path) -> bool {
    let promised = git(
        cache,
        &[
            "config",
            "--default",
            "false",
            "--get",
            "remote.origin.promisor",
        ],
    );
    let complete = cache.join("scoped-repo-mcp-complete").exists();
    assert_eq!(promised.trim() == "true", !complete, "{}", cache.display());
    !complete
}
/// Every file under `dir`, read as bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn history_on_relace_answers_as_the_local_store() {
    let (h, _api) = relace_with_git().await;
    let r = monorepo(&h);
    let id = r.to_string();
    let relace = h.client_for(&[r]).await;
    let local = local_client(&h, &r).await;
    let first = ok(&call(
        &local,
        "list_commits",
        json!({"repo_id": id, "max_results": 100}),
    )
    .await)["commits"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let calls = [
        ("list_commits", json!({"repo_id": id})),
        ("list_commits", json!({"repo_id": id, "path": "web"})),
        ("list_commits", json!({"repo_id": id, "author": "BACK"})),
        ("list_commits", json!({"repo_id": id, "max_results": 2})),
        (
            "get_commit",
            json!({"repo_id": id, "commit": "main~1", "detail": "patch"}),
        ),
        (
            "get_commit",
            json!({"repo_id": id, "commit": "main~3", "detail": "none"}),
        ),
        (
            "compare",
            json!({"repo_id": id, "from": first, "to": "main", "detail": "patch"}),
        ),
        (
            "blame_file",
            json!({"repo_id": id, "path": "web/a.ts", "commit": "main~1"}),
        ),
        (
            "search_history",
            json!({"repo_id": id, "query": "secret", "mode": "message"}),
        ),
        (
            "search_history",
            json!({"repo_id": id, "query": "needle", "mode": "added"}),
        ),
        (
            "search_history",
            json!({"repo_id": id, "query": "needle", "mode": "removed"}),
        ),
        (
            "read_file",
            json!({"repo_id": id, "path": "web/a.ts", "ref": "main~1"}),
        ),
        ("list_files", json!({"repo_id": id, "ref": first})),
    ];
    for (tool, args) in calls {
        let want = ok(&call(&local, tool, args.clone()).await);
        let got = ok(&call(&relace, tool, args.clone()).await);
        assert_eq!(got, want, "{tool} {args}");
    }
    // The second page of a listing, from the first page's cursor.
    let page = ok(&call(
        &relace,
        "list_commits",
        json!({"repo_id": id, "max_results": 2}),
    )
    .await);
    let next = json!({"repo_id": id, "max_results": 2, "cursor": page["next_cursor"]});
    assert_eq!(
        ok(&call(&relace, "list_commits", next.clone()).await),
        ok(&call(&local, "list_commits", next).await)
    );
    // A revision outside the repo's history is refused alike.
    let bad = json!({"repo_id": id, "commit": "0123456789abcdef"});
    assert_eq!(
        refused(&call(&relace, "get_commit", bad.clone()).await),
        refused(&call(&local, "get_commit", bad).await)
    );
    // A commit made after the cache was filled is seen at once.
    let newer = write(&h, &r, "late", "a late commit", &[("late.txt", "x\n")]);
    let listed = ok(&call(
        &relace,
        "list_commits",
        json!({"repo_id": id, "max_results": 1}),
    )
    .await);
    assert_eq!(listed["commits"][0]["id"], newer);
    // The credential is nowhere in the cache: not in a path, not in a file.
    let key = &h.api.as_ref().unwrap().key;
    let root = h.data_dir().join("relace-cache");
    for (path, bytes) in files_under(&root) {
        assert!(!path.display().to_string().contains(key.as_str()));
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "{} holds the credential",
            path.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [root.clone(), caches(&h)[0].parent().unwrap().to_path_buf()] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_starts_blobless_and_is_completed_when_contents_are_needed() {
    let (h, _api) = relace_with_git().await;
    let r = h.repo(&[("a.txt", "one\n"), ("b.txt", "b\n")]);
    write(&h, &r, "ann", "second", &[("a.txt", "two\n")]);
    write(&h, &r, "bob", "third", &[("a.txt", "three\n")]);
    let id = r.to_string();
    let c = h.client_for(&[r]).await;
    let listed = ok(&call(&c, "list_commits", json!({"repo_id": id})).await);
    assert_eq!(listed["commits"].as_array().unwrap().len(), 3);
    let changed = ok(&call(
        &c,
        "get_commit",
        json!({"repo_id": id, "commit": "main", "detail": "none"}),
    )
    .await);
    assert_eq!(changed["files"][0]["path"], "a.txt");
    let cache = caches(&h);
    assert_eq!(cache.len(), 1);
    // Commits and trees only: the server honoured the filter.
    assert!(is_blobless(&cache[0]));
    let missing = git(
        &cache[0],
        &["rev-list", "--objects", "--missing=print", "main"],
    );
    assert!(missing.lines().any(|l| l.starts_with('?')), "{missing}");

    let patch = ok(&call(
        &c,
        "get_commit",
        json!({"repo_id": id, "commit": "main", "detail": "patch"}),
    )
    .await);
    assert!(
        patch["files"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("+three"),
        "{patch}"
    );
    assert!(!is_blobless(&cache[0]));
    let missing = git(
        &cache[0],
        &["rev-list", "--objects", "--missing=print", "main"],
    );
    assert!(!missing.lines().any(|l| l.starts_with('?')), "{missing}");
    git(&cache[0], &["fsck", "--no-progress"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn revert_on_relace_goes_through_the_update_route_and_a_conflict_changes_nothing() {
    let (h, _api) = relace_with_git().await;
    let r = monorepo(&h);
    let id = r.to_string();
    let c = h.client_for(&[r]).await;
    let before = h.store.head(&r).unwrap();
    let moved = ok(&call(
        &c,
        "list_commits",
        json!({"repo_id": id, "path": "web/c.ts"}),
    )
    .await);
    let move_commit = moved["commits"][0]["id"].as_str().unwrap().to_string();

    let stale = refused(
        &call(
            &c,
            "revert_commit",
            json!({"repo_id": id, "commit": move_commit, "expected_head": move_commit}),
        )
        .await,
    );
    assert!(stale.contains("expected"), "{stale}");
    assert_eq!(h.store.head(&r).unwrap(), before);

    let done = ok(&call(
        &c,
        "revert_commit",
        json!({"repo_id": id, "commit": &move_commit[..9], "expected_head": before}),
    )
    .await);
    assert_eq!(done["committed"], true);
    // Seen from another process: a local server on the store.
    let other = local_client(&h, &r).await;
    let top = ok(&call(
        &other,
        "get_commit",
        json!({"repo_id": id, "commit": "main", "detail": "none"}),
    )
    .await);
    assert_eq!(top["commit"]["id"], done["head"]);
    assert_eq!(top["commit"]["parents"], json!([before]));
    assert_eq!(top["commit"]["subject"], "Revert \"web: move b\"");
    let files = ok(&call(&other, "list_files", json!({"repo_id": id})).await);
    assert_eq!(files["paths"], json!(["README.md", "web/a.ts", "web/b.ts"]));

    // Reverting the secret's second value conflicts with the third: refused, nothing
    // changed.
    let rotate = ok(&call(
        &c,
        "search_history",
        json!({"repo_id": id, "query": "rotate", "mode": "message"}),
    )
    .await);
    let head = h.store.head(&r).unwrap();
    let e = refused(
        &call(
            &c,
            "revert_commit",
            json!({"repo_id": id, "commit": rotate["commits"][0]["id"]}),
        )
        .await,
    );
    assert!(
        e.contains("conflicts") && e.contains("nothing changed"),
        "{e}"
    );
    let top = ok(&call(
        &other,
        "get_commit",
        json!({"repo_id": id, "commit": "main", "detail": "none"}),
    )
    .await);
    assert_eq!(top["commit"]["id"], head);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_limited_token_is_told_history_needs_git_which_it_cannot_use() {
    let (h, _api) = relace_with_git().await;
    let r = monorepo(&h);
    let token = mint(&h, &[r], &["web/**"]);
    let c = h
        .client_env(&["--repo", &r.to_string()], &[("RELACE_API_KEY", &token)])
        .await;
    let e = refused(&call(&c, "list_commits", json!({"repo_id": r.to_string()})).await);
    assert!(e.contains("limited to paths") && e.contains("git"), "{e}");
    assert!(caches(&h).is_empty(), "{:?}", caches(&h));
}

// The view a path-limited session hands the backend is applied to the cache exactly as
// the local store applies it (the hosted service may let such a token fetch).
#[tokio::test(flavor = "multi_thread")]
async fn a_path_limited_view_filters_the_cache_as_the_local_store() {
    let (h, _api) = relace_with_git().await;
    let r = monorepo(&h);
    let api = h.api.as_ref().unwrap();
    let client = RelaceClient::new(&api.base, &api.key, RetryPolicy::default()).unwrap();
    let relace = RelaceBackend::new(client).with_history(h.data_dir());
    let local = LocalBackend::new(h.store.clone());
    let view = Some(Arc::new(PathSet::new(&["web/**".to_string()]).unwrap()));
    let q = CommitQuery {
        max_results: 50,
        visible: view.clone(),
        ..Default::default()
    };
    let want = local.list_commits(&r, &q).await.unwrap();
    let got = relace.list_commits(&r, &q).await.unwrap();
    assert_eq!(got.commits, want.commits);
    assert!(
        got.commits
            .iter()
            .all(|c| c.changes.iter().all(|p| p.path.starts_with("web/")))
    );
    let d = DiffQuery {
        detail: DiffDetail::Patch,
        path_glob: None,
        context_lines: 3,
        first_file: 0,
        visible: view,
    };
    // `web and api together` changed both sides: only its web side is shown.
    let rev = RevSpec::HeadAncestor(3);
    let (wi, wd) = local.get_commit(&r, &rev, &d).await.unwrap();
    let (gi, gd) = relace.get_commit(&r, &rev, &d).await.unwrap();
    assert_eq!((gi, gd.files.clone()), (wi, wd.files));
    assert!(gd.files.iter().all(|f| f.path.starts_with("web/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_gets_a_clear_error_and_its_cache_is_removed() {
    let (h, _api) = relace_with_git().await;
    let r = h.repo(&[("a.txt", "a\n")]);
    let token = h
        .store
        .mint(&scoped_repo_mcp::model::MintSpec {
            name: "agent".into(),
            repo_ids: vec![r],
            ttl_seconds: Some(3600),
            read_only: true,
            paths: vec![],
            can_delegate: false,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token;
    let c = h
        .client_env(&["--repo", &r.to_string()], &[("RELACE_API_KEY", &token)])
        .await;
    ok(&call(&c, "list_commits", json!({"repo_id": r.to_string()})).await);
    assert_eq!(caches(&h).len(), 1);
    // The backend on its own, with the same token (and so the same cache).
    let api = h.api.as_ref().unwrap();
    let client = RelaceClient::new(&api.base, &token, RetryPolicy::default()).unwrap();
    let backend = RelaceBackend::new(client).with_history(h.data_dir());
    let q = CommitQuery {
        max_results: 10,
        ..Default::default()
    };
    assert_eq!(backend.list_commits(&r, &q).await.unwrap().commits.len(), 1);
    // Revoked from another process.
    let out = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["token", "revoke", &token])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let e = refused(&call(&c, "list_commits", json!({"repo_id": r.to_string()})).await);
    assert!(e.contains("revoked"), "{e}");
    let e = backend.list_commits(&r, &q).await.unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
    assert!(!e.contains(&token), "{e}");
    assert!(caches(&h).is_empty(), "{e}: {:?}", caches(&h));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_fetching_into_one_cache_at_once_leave_it_whole() {
    let (h, _api) = relace_with_git().await;
    let r = monorepo(&h);
    let id = r.to_string();
    let a = h.client_for(&[r]).await;
    let b = h.client_for(&[r]).await;
    for round in 0..3 {
        write(
            &h,
            &r,
            "w",
            &format!("round {round}"),
            &[("round.txt", &format!("{round}\n"))],
        );
        let args = json!({"repo_id": id, "commit": "main", "detail": "patch"});
        let (x, y) = tokio::join!(
            call(&a, "get_commit", args.clone()),
            call(&b, "get_commit", args)
        );
        let (x, y) = (ok(&x), ok(&y));
        assert_eq!(x, y);
        assert_eq!(x["commit"]["subject"], format!("round {round}"));
    }
    let cache = caches(&h);
    assert_eq!(cache.len(), 1);
    git(&cache[0], &["fsck", "--no-progress", "--strict"]);
    assert_eq!(
        git(&cache[0], &["rev-parse", "main"]).trim(),
        h.store.head(&r).unwrap()
    );
}

// Telling a rename with edits from a deletion and an addition reads both files: a
// blobless cache lacks them, so the listing completes the cache and answers again.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_that_meets_an_edited_rename_completes_the_cache_and_answers_as_local() {
    let (h, _api) = relace_with_git().await;
    let body: String = (0..40).map(|i| format!("line {i}\n")).collect();
    let r = h.repo(&[("old.txt", &body), ("other.txt", "x\n")]);
    crate::history::update(
        &h,
        &r,
        "ann",
        "move and edit",
        vec![
            scoped_repo_mcp::model::FileOp::Delete {
                path: scoped_repo_mcp::paths::RepoPath::parse("old.txt").unwrap(),
            },
            scoped_repo_mcp::model::FileOp::Write {
                path: scoped_repo_mcp::paths::RepoPath::parse("new.txt").unwrap(),
                content: format!("{body}one more\n"),
            },
        ],
    );
    let id = r.to_string();
    let relace = h.client_for(&[r]).await;
    let local = local_client(&h, &r).await;
    let args = json!({"repo_id": id});
    let got = ok(&call(&relace, "list_commits", args.clone()).await);
    assert_eq!(got, ok(&call(&local, "list_commits", args).await));
    assert_eq!(
        got["commits"][0]["changes"][0]["status"], "renamed",
        "{got}"
    );
    assert!(!is_blobless(&caches(&h)[0]));
}
