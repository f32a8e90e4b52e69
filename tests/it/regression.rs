//! Regression tests, each named after what broke, with a line saying what it was.
//! Most come from an outside security review of the product.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api::{send, start_api_with};
use crate::common::{Harness, call, ok, refused, text};
use scoped_repo_mcp::store::TokenState;

/// A project directory as an operator would serve it.
fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "print('operator')\n").unwrap();
    dir
}

fn canonical(dir: &std::path::Path) -> String {
    dir.canonicalize().unwrap().display().to_string()
}

async fn repo_ids_listed(client: &crate::common::Client) -> Vec<String> {
    let listed = crate::common::list_repos_imported(client).await;
    listed["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo_id"].as_str().unwrap().to_string())
        .collect()
}

// F1: a repo token set `imported_from` metadata on its own repo, and the operator's
// next `serve --import DIR` served the attacker's repo.
#[tokio::test(flavor = "multi_thread")]
async fn repo_token_metadata_captured_serve_import() {
    let h = Harness::new();
    let project = project_dir();
    let dir = canonical(project.path());

    // The operator imports the directory once.
    let first = h.client(&["--import", &dir]).await;
    let served = repo_ids_listed(&first).await;
    first.cancel().await.unwrap();
    assert_eq!(served.len(), 1);

    // An attacker holds a token on a repo of their own.
    let attacker = h.repo(&[("x.txt", "x\n")]);
    let token = h
        .store
        .create_token("attacker", &[attacker], Some(3600))
        .unwrap()
        .token;
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let (status, body) = send(
        Method::POST,
        format!("{}/repo/{attacker}/update", api.base),
        Some(&token),
        Some(json!({"metadata": {"imported_from": dir}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("reserved"),
        "{body}"
    );
    assert!(
        !h.store
            .repo_row(&attacker)
            .unwrap()
            .metadata
            .contains_key("imported_from")
    );

    // Even a claim written before the key was reserved decides nothing.
    let mut legacy = BTreeMap::new();
    legacy.insert("imported_from".to_string(), dir.clone());
    h.store.set_metadata(&attacker, &legacy).unwrap();
    let again = h.client(&["--import", &dir]).await;
    assert_eq!(repo_ids_listed(&again).await, served);
    again.cancel().await.unwrap();
}

/// `serve --import DIR` run to completion (it fails at start-up in these tests).
async fn serve_import_output(h: &Harness, dir: &str) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        h.command(&["serve", "--import", dir])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("start-up ends")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// F1: any repo whose metadata named a directory was trusted as its import, and when
// several did, the first one won silently.
#[tokio::test(flavor = "multi_thread")]
async fn untrusted_or_several_import_claims_were_served_silently() {
    let h = Harness::new();
    let project = project_dir();
    let dir = canonical(project.path());

    // A claim only in metadata (as earlier versions wrote it) stops start-up and says
    // how to adopt it.
    let claimant = h.repo(&[("x.txt", "x\n")]);
    let mut legacy = BTreeMap::new();
    legacy.insert("imported_from".to_string(), dir.clone());
    h.store.set_metadata(&claimant, &legacy).unwrap();
    let (started, stderr) = serve_import_output(&h, &dir).await;
    assert!(!started, "served an untrusted claim");
    assert!(
        stderr.contains(&claimant.to_string()) && stderr.contains("repo link"),
        "{stderr}"
    );
    assert!(h.store.imports_of(&dir).unwrap().is_empty());

    // The operator adopts it; then it is served.
    let linked = h
        .command(&["repo", "link", &claimant.to_string(), &dir])
        .output()
        .await
        .unwrap();
    assert!(linked.status.success(), "{linked:?}");
    assert_eq!(h.store.imports_of(&dir).unwrap(), vec![claimant]);
    // A second link to the same directory is refused by the command...
    let other = h.repo(&[("y.txt", "y\n")]);
    let refused_link = h
        .command(&["repo", "link", &other.to_string(), &dir])
        .output()
        .await
        .unwrap();
    assert!(!refused_link.status.success());
    let why = String::from_utf8_lossy(&refused_link.stderr);
    assert!(why.contains("is already linked to"), "{why}");
    assert_eq!(h.store.imports_of(&dir).unwrap(), vec![claimant]);
    // ...and if two links exist anyway (two first imports racing), start-up refuses.
    h.store.link_import(&other, &dir).unwrap();
    let (started, stderr) = serve_import_output(&h, &dir).await;
    assert!(!started, "served one of two claims");
    assert!(stderr.contains("2 repos are linked"), "{stderr}");
}

// F2: a request with no credential, under --allow-anonymous, minted 24-hour tokens and
// revoked other agents' tokens.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_session_minted_and_revoked_tokens() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "f\n")]);
    let agents_token = h
        .store
        .create_token("agent", &[r], Some(3600))
        .unwrap()
        .token;
    let server = h.http(&["--allow-anonymous", "--repo", &r.to_string()]);
    let client = server.client(None).await.unwrap();
    assert_eq!(
        crate::common::tool_names(&client).await,
        [
            "blame_file",
            "compare",
            "get_commit",
            "list_commits",
            "list_files",
            "list_repos",
            "read_file",
            "revert_commit",
            "search_history",
            "search_repo",
            "update_repo_files"
        ]
    );
    let msg = refused(
        &call(
            &client,
            "create_scoped_token",
            json!({"name": "mine", "repo_ids": [r.to_string()], "ttl_seconds": 86400}),
        )
        .await,
    );
    assert!(msg.contains("not available"), "{msg}");
    let msg = refused(&call(&client, "revoke_token", json!({"token": agents_token})).await);
    assert!(msg.contains("not available"), "{msg}");
    assert_eq!(h.store.token(&agents_token).unwrap().0, TokenState::Live);
    assert_eq!(h.store.tokens().unwrap().len(), 1, "a token was minted");
    // Reading and writing the operator's repo still work.
    ok(&call(
        &client,
        "update_repo_files",
        json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "g.txt", "content": "g\n"}]}),
    )
    .await);
}

// F3: `revoke_token {"token": "../admin/anything"}` made the Relace client send GET and
// DELETE /v1/admin/anything with the operator's account key.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_token_argument_steered_the_upstream_url() {
    use scoped_repo_mcp::relace::{RelaceClient, RelaceError, RetryPolicy};
    // Nothing listens on this port: had a request been sent, the error would be a
    // transport error, not a refusal.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let client = RelaceClient::new(&base, "rlc-operator", RetryPolicy::default()).unwrap();
    for steer in ["../admin/anything", "x/../../../../etc", "rlcr-%2e%2e"] {
        assert!(
            matches!(
                client.delete_token(steer).await,
                Err(RelaceError::Refused(_))
            ),
            "{steer}"
        );
        assert!(
            matches!(client.get_token(steer).await, Err(RelaceError::Refused(_))),
            "{steer}"
        );
    }

    // Through the tool, on the relace backend: refused with a sentence, nothing sent.
    let h = Harness::relace();
    let r = h.repo(&[("f.txt", "f\n")]);
    let c = h.client_for(&[r]).await;
    let msg = refused(&call(&c, "revoke_token", json!({"token": "../admin/anything"})).await);
    assert!(msg.contains("not a repo token"), "{msg}");
}

// F3: on the relace backend an update of 10,001 operations, an 11 MiB file or content
// with NUL went upstream; the limits were checked only in the store.
#[tokio::test(flavor = "multi_thread")]
async fn update_limits_were_not_applied_before_the_relace_backend() {
    let h = Harness::relace();
    let r = h.repo(&[("f.txt", "f\n")]);
    let head = h.store.head(&r).unwrap();
    let c = h.client_for(&[r]).await;
    let many: Vec<serde_json::Value> = (0..10_001)
        .map(|i| json!({"type": "write", "path": format!("d/f{i}"), "content": "x"}))
        .collect();
    let big = "a".repeat(11 * 1024 * 1024);
    for (ops, expect) in [
        (json!(many), "10001 operations is over the limit"),
        (
            json!([{"type": "write", "path": "big.txt", "content": big}]),
            "over the limit of 10485760 bytes a file",
        ),
        (
            json!([{"type": "write", "path": "nul.txt", "content": "a\u{0}b"}]),
            "NUL byte",
        ),
    ] {
        let msg = refused(
            &call(
                &c,
                "update_repo_files",
                json!({"repo_id": r.to_string(), "operations": ops}),
            )
            .await,
        );
        assert!(msg.contains(expect), "{msg}");
        // The product's own refusal, not a relayed answer of the API.
        assert!(!msg.contains("Relace API"), "{msg}");
    }
    assert_eq!(h.store.head(&r).unwrap(), head);
}

/// `git fsck --strict` on a repo of the store.
fn fsck_strict(h: &Harness, r: &scoped_repo_mcp::model::RepoId) -> std::process::Output {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(r))
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .unwrap()
}

// F4: a token named "ci\nencoding x" committed an author line broken across two
// headers, after which every read and write of the repo failed; a name like
// "x <a@b>" made every write of its token fail.
#[tokio::test(flavor = "multi_thread")]
async fn token_name_broke_commit_headers() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "f\n")]);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let (status, body) = send(
        Method::POST,
        format!("{}/repo_token", api.base),
        Some(&api.key),
        Some(json!({"name": "ci\nencoding x", "repo_ids": [r.to_string()], "ttl_seconds": 60})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let cli = h
        .command(&[
            "token",
            "create",
            "--repo",
            &r.to_string(),
            "--name",
            "ci\nencoding x",
        ])
        .output()
        .await
        .unwrap();
    assert!(!cli.status.success());
    let why = String::from_utf8_lossy(&cli.stderr);
    assert!(why.contains("printable text"), "{why}");
    assert!(h.store.tokens().unwrap().is_empty(), "a token was stored");

    // A printable name with angle brackets is accepted, and its writes commit.
    let operator = h.client_for(&[r]).await;
    let minted = ok(&call(
        &operator,
        "create_scoped_token",
        json!({"name": "x <a@b>", "repo_ids": [r.to_string()], "ttl_seconds": 600}),
    )
    .await);
    let token = minted["token"].as_str().unwrap().to_string();
    let agent = h
        .client_env(
            &["--backend", "local", "--repo", &r.to_string()],
            &[("RELACE_API_KEY", &token)],
        )
        .await;
    ok(&call(
        &agent,
        "update_repo_files",
        json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "g.txt", "content": "g\n"}]}),
    )
    .await);
    let log = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(&r))
        .args(["log", "-1", "--format=%an <%ae>"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        "x a@b <scoped-repo-mcp@localhost>"
    );
    let fsck = fsck_strict(&h, &r);
    assert!(fsck.status.success(), "{fsck:?}");
    ok(&call(
        &agent,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "g.txt"}),
    )
    .await);
}

// F5: a TTL of u64::MAX panicked while formatting the expiry, after the row was
// inserted; `token list` then exited 101 at that row.
#[tokio::test(flavor = "multi_thread")]
async fn far_future_ttl_panicked_and_lost_the_token() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "f\n")]);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    for ttl in [u64::MAX, 400 * 365 * 24 * 3600 * 100] {
        let (status, body) = send(
            Method::POST,
            format!("{}/repo_token", api.base),
            Some(&api.key),
            Some(json!({"name": "far", "repo_ids": [r.to_string()], "ttl_seconds": ttl})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("9999"), "{body}");
    }
    let cli = h
        .command(&[
            "token",
            "create",
            "--repo",
            &r.to_string(),
            "--ttl",
            "10000y",
        ])
        .output()
        .await
        .unwrap();
    assert!(!cli.status.success());
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("9999"),
        "{cli:?}"
    );
    assert!(h.store.tokens().unwrap().is_empty(), "a token was stored");
    // The latest expiry that can be written is accepted, and listed.
    let room =
        (scoped_repo_mcp::rules::MAX_EXPIRY_UNIX - scoped_repo_mcp::model::unix_now() - 60) as u64;
    h.store.create_token("last", &[r], Some(room)).unwrap();
    let list = h.command(&["token", "list"]).output().await.unwrap();
    assert!(list.status.success(), "{list:?}");
    assert!(String::from_utf8_lossy(&list.stdout).contains("9999-12-31"));
}

// F5: `api` had no --max-token-ttl, so its tokens could live forever.
#[tokio::test(flavor = "multi_thread")]
async fn api_had_no_token_lifetime_cap() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "f\n")]);
    let api = start_api_with(&h, Stdio::null(), &["--max-token-ttl", "1h"]).await;
    let mint = |ttl: Option<u64>| {
        let mut body = json!({"name": "capped", "repo_ids": [r.to_string()]});
        if let Some(t) = ttl {
            body["ttl_seconds"] = json!(t);
        }
        send(
            Method::POST,
            format!("{}/repo_token", api.base),
            Some(&api.key),
            Some(body),
        )
    };
    let (status, body) = mint(None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = mint(Some(7200)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = mint(Some(600)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.store.tokens().unwrap().len(), 1);
}

// F7: `list_files {"glob": "*a" × 200000}` panicked inside globset and the request was
// never answered; as `search_repo`'s path_glob it gave a misleading internal error.
#[tokio::test(flavor = "multi_thread")]
async fn long_glob_panicked_and_left_the_request_unanswered() {
    let h = Harness::new();
    let r = h.repo(&[("src/a.rs", "fn a() {}\n")]);
    let c = h.client_for(&[r]).await;
    let long = "*a".repeat(200_000);
    let answer = |tool: &'static str, args: serde_json::Value| {
        let c = &c;
        async move {
            tokio::time::timeout(Duration::from_secs(60), call(c, tool, args))
                .await
                .unwrap_or_else(|_| panic!("{tool} never answered"))
        }
    };
    let msg = refused(
        &answer(
            "list_files",
            json!({"repo_id": r.to_string(), "glob": long}),
        )
        .await,
    );
    assert!(msg.contains("4096"), "{msg}");
    let msg = refused(
        &answer(
            "search_repo",
            json!({"repo_id": r.to_string(), "query": "fn", "path_glob": long}),
        )
        .await,
    );
    assert!(msg.contains("4096"), "{msg}");
    // The longest glob allowed is answered, in time, by the glob's own rule: it
    // matches no path here.
    let edge = "*a".repeat(2048);
    let listed = ok(&answer(
        "list_files",
        json!({"repo_id": r.to_string(), "glob": edge}),
    )
    .await);
    assert_eq!(listed["paths"], json!([]), "{listed}");
    ok(&answer(
        "list_files",
        json!({"repo_id": r.to_string(), "glob": "*.rs"}),
    )
    .await);
}

// W2: metadata with a newline forged lines in list_repos' text and in `repo list`.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_forged_listing_lines() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "f\n")]);
    let mut meta = BTreeMap::new();
    meta.insert(
        "name".to_string(),
        "x\n- 00000000-0000-4000-8000-000000000000 head forged\u{1b}[2J".to_string(),
    );
    h.store.set_metadata(&r, &meta).unwrap();
    let c = h.client_for(&[r]).await;
    let shown = text(&call(&c, "list_repos", json!({})).await);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(
        shown.contains("x\\n- 0000") && !shown.contains('\u{1b}'),
        "{shown}"
    );
    let listed = h.command(&["repo", "list"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
}

// W4: account keys could be made but not listed or revoked.
#[tokio::test(flavor = "multi_thread")]
async fn account_keys_could_not_be_listed_or_revoked() {
    let h = Harness::new();
    let made = h
        .command(&["key", "create", "--name", "ops"])
        .output()
        .await
        .unwrap();
    let key = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert!(key.starts_with("rlc-"), "{made:?}");
    let listed = h.command(&["key", "list"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        stdout.contains("ops") && stdout.contains("live"),
        "{stdout}"
    );
    assert!(!stdout.contains(&key), "the secret was listed");
    let id = stdout.split_whitespace().next().unwrap().to_string();
    let revoked = h.command(&["key", "revoke", &id]).output().await.unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(!h.store.account_key_live(&key).unwrap());
    let again = h.command(&["key", "list"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("revoked"));
    let twice = h.command(&["key", "revoke", &id]).output().await.unwrap();
    assert!(!twice.status.success());
    let why = String::from_utf8_lossy(&twice.stderr);
    assert!(why.contains("no live account key matches"), "{why}");
}

// W5: the data directory and store.db were created readable by every user.
#[test]
fn data_dir_was_readable_by_every_user() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("fresh").join("store");
    let _store = scoped_repo_mcp::store::Store::open(&root, Default::default()).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("store.db")), 0o600);
    // An existing store is tightened when it is opened.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        root.join("store.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    drop(_store);
    let _again = scoped_repo_mcp::store::Store::open(&root, Default::default()).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("store.db")), 0o600);
}

// W8: resources/read had no size cap, unlike read_file's 256 KiB.
#[tokio::test(flavor = "multi_thread")]
async fn resource_read_had_no_size_cap() {
    use rmcp::model::ReadResourceRequestParams;
    let h = Harness::new();
    let big = "line of text\n".repeat(30_000);
    let r = h.repo(&[("big.txt", &big), ("small.txt", "s\n")]);
    let c = h.client_for(&[r]).await;
    let err = c
        .read_resource(ReadResourceRequestParams::new(format!(
            "repo://{r}/big.txt"
        )))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read_file"), "{err}");
    c.read_resource(ReadResourceRequestParams::new(format!(
        "repo://{r}/small.txt"
    )))
    .await
    .unwrap();
}

/// Write `path` through `update_repo_files` and return the refusal, checking that the
/// repo did not move.
async fn refused_write(h: &Harness, path: &str) -> String {
    let r = h.repo(&[("a.txt", "a\n")]);
    let before = h.store.head(&r).unwrap();
    let c = h.client_for(&[r]).await;
    let ops = json!([{"type": "write", "path": path, "content": "x\n"}]);
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({"repo_id": r.to_string(), "operations": ops}),
        )
        .await,
    );
    c.cancel().await.ok();
    assert_eq!(
        h.store.head(&r).unwrap(),
        before,
        "{path:?} changed the repo"
    );
    msg
}

// `.G\u{200c}IT` (`.git` with a code point HFS+ ignores) was committed, and `git fsck`
// reported `hasDotgit`.
#[tokio::test(flavor = "multi_thread")]
async fn hfs_ignorable_dotgit_was_committed() {
    let h = Harness::new();
    for path in [
        ".G\u{200c}IT/config",
        "src/.git\u{feff}/hooks/pre-commit",
        "\u{202e}.gi\u{206f}t",
    ] {
        let msg = refused_write(&h, path).await;
        assert!(msg.contains("has a `.git` component"), "{path:?}: {msg}");
        assert!(
            !msg.contains('\u{200c}') && msg.contains("\\u{"),
            "invisible characters are shown: {msg}"
        );
    }
}

// The NTFS forms of `.git` (`.git.`, `.git ` , `git~1`, `.git::$INDEX_ALLOCATION`)
// passed the path check and failed later inside libgit2 with a vague error.
#[tokio::test(flavor = "multi_thread")]
async fn ntfs_dotgit_forms_failed_late() {
    let h = Harness::new();
    for path in [
        ".git./config",
        ".git  /x",
        "GIT~1/HEAD",
        "src/git~1",
        ".git::$INDEX_ALLOCATION/config",
        "a/.Git. .:stream",
    ] {
        let msg = refused_write(&h, path).await;
        assert!(msg.contains("has a `.git` component"), "{path:?}: {msg}");
    }
}

// A file or directory name over 255 bytes (`a/<300 × y>/z.txt`) was committed, though no
// common file system can check it out.
#[tokio::test(flavor = "multi_thread")]
async fn overlong_component_was_committed() {
    let h = Harness::new();
    let path = format!("a/{}/z.txt", "y".repeat(300));
    let msg = refused_write(&h, &path).await;
    assert!(
        msg.contains("300 bytes") && msg.contains("at most 255 bytes"),
        "{msg}"
    );
    // 255 bytes is the limit, not past it.
    let r = h.repo(&[(&format!("a/{}/z.txt", "y".repeat(255)), "ok\n")]);
    assert_eq!(h.store.list_files(&r).unwrap().paths.len(), 1);
}

// Control characters in paths were accepted, and forged lines in text renderings.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_paths_were_accepted() {
    let h = Harness::new();
    for (path, code) in [
        ("notes.txt\n+ a forged line.txt", "U+000A"),
        ("red\u{1b}[31m.txt", "U+001B"),
        ("tab\there", "U+0009"),
        ("del\u{7f}", "U+007F"),
        ("next\u{85}line", "U+0085"),
        ("csi\u{9b}2J", "U+009B"),
    ] {
        let msg = refused_write(&h, path).await;
        assert!(
            msg.contains("control character") && msg.contains(code),
            "{path:?}: {msg}"
        );
        assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

// Importing a directory that held a `.git` form (`.git.`, `git~1`, …) aborted the whole
// import inside libgit2, instead of skipping those files.
#[test]
fn dotgit_form_in_a_directory_aborted_the_import() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "README.md", "# hi\n");
    // A nested repository's own metadata: left out, as always, and not counted.
    write(root, "vendor/.git/config", "[core]\n");
    let refused = [
        ".git./config",
        ".git ./HEAD",
        "git~1/HEAD",
        "sub/GIT~1/objects/x",
        ".G\u{200c}IT/config",
        "\u{feff}.git/config",
        ".git::$INDEX_ALLOCATION/config",
        "deep/er/.git:stream",
        "lib/.gitmodules/x",
        "lib/gitmod~1/y",
        "esc\u{1b}[31m/a.txt",
        "line\nbreak.txt",
        "c1\u{85}.txt",
    ];
    for rel in refused {
        write(root, rel, "x\n");
    }
    let report = h
        .store
        .import_dir(root, Default::default(), &|_| {})
        .expect("the import goes on past paths it cannot store");
    assert_eq!(report.skipped_path, refused.len());
    assert_eq!(
        h.store.list_files(&report.repo_id).unwrap().paths,
        ["README.md", "src/main.rs"]
    );
}
// The import walk skipped symlinks, but then read each file by path, following a symlink
// (or a directory turned symlink, or another file) swapped in after the walk, and so
// imported files from outside the directory.
#[cfg(unix)]
#[test]
fn import_followed_a_symlink_swapped_in() {
    let h = Harness::new();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", "SECRET via a file symlink\n");
    write(
        outside.path(),
        "dir/inner.txt",
        "SECRET via a directory symlink\n",
    );
    write(outside.path(), "hard.txt", "SECRET via another file\n");
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "keep.txt", "kept\n");
    write(root, "a.txt", "inside a\n");
    write(root, "sub/inner.txt", "inside sub\n");
    write(root, "b.txt", "inside b\n");

    // The walk is over when reading starts: swap then, exactly as a racing process would.
    let swapped = Cell::new(false);
    let report = h
        .store
        .import_dir(root, Default::default(), &|p| {
            if matches!(p, scoped_repo_mcp::store::ImportProgress::Reading { .. })
                && !swapped.replace(true)
            {
                std::fs::remove_file(root.join("a.txt")).unwrap();
                std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("a.txt"))
                    .unwrap();
                std::fs::rename(root.join("sub"), outside.path().join("moved-sub")).unwrap();
                std::os::unix::fs::symlink(outside.path().join("dir"), root.join("sub")).unwrap();
                std::fs::remove_file(root.join("b.txt")).unwrap();
                std::fs::hard_link(outside.path().join("hard.txt"), root.join("b.txt")).unwrap();
            }
        })
        .unwrap();
    assert!(swapped.get());
    let files = h.store.list_files(&report.repo_id).unwrap().paths;
    for path in &files {
        let content = h
            .store
            .read_bytes(
                &report.repo_id,
                &scoped_repo_mcp::paths::RepoPath::parse(path).unwrap(),
            )
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains("SECRET"),
            "{path} was read from outside the directory"
        );
    }
    assert_eq!(files, ["keep.txt"]);
    assert_eq!(
        report.skipped_path, 3,
        "each swapped file is skipped and counted"
    );
}

// A missing file read as a resource was `resource_not_found` on the local backend but
// `invalid_params` on the relace backend: backend errors leaked their own types.
async fn missing_resource_was_a_different_error_per_backend(h: Harness) {
    use rmcp::ServiceError;
    use rmcp::model::{ErrorCode, ReadResourceRequestParams};
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let err = c
        .read_resource(ReadResourceRequestParams::new(format!(
            "repo://{r}/missing.txt"
        )))
        .await
        .unwrap_err();
    match err {
        ServiceError::McpError(data) => {
            assert_eq!(data.code, ErrorCode::RESOURCE_NOT_FOUND, "{data:?}")
        }
        other => panic!("expected an MCP error, got {other}"),
    }
}

crate::on_both_backends!(missing_resource_was_a_different_error_per_backend);

// The REST API parsed `Authorization` with a parser of its own that took only `Bearer`
// and `bearer`, unlike the HTTP guard: one parser now serves every surface.
#[tokio::test(flavor = "multi_thread")]
async fn api_bearer_scheme_was_case_sensitive() {
    let h = Harness::new();
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let r = reqwest::Client::new()
            .get(format!("{}/repo", api.base))
            .header("authorization", format!("{scheme} {}", api.key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    let r = reqwest::Client::new()
        .get(format!("{}/repo", api.base))
        .header("authorization", format!("Basic {}", api.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

// An import whose `.gitignore` ends in `/*` (as Debian's kernel source tree's does) took
// no file and exited 0, leaving an empty repo.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_that_took_no_file_succeeded() {
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitignore"), "*.o\n/*\n").unwrap();
    std::fs::create_dir(dir.path().join("kernel")).unwrap();
    std::fs::write(dir.path().join("kernel/sched.c"), "int x;\n").unwrap();
    let before = h.store.repo_rows().unwrap().len();
    let path = dir.path().to_str().unwrap();
    let out = h
        .command(&["repo", "create", "--from-dir", path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("/*") && stderr.contains("--no-ignore"),
        "{stderr}"
    );
    let (started, stderr) = serve_import_output(&h, path).await;
    assert!(!started && stderr.contains("--no-ignore"), "{stderr}");
    assert_eq!(
        h.store.repo_rows().unwrap().len(),
        before,
        "a repo was made"
    );
    let out = h
        .command(&["repo", "create", "--from-dir", path, "--no-ignore"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id: scoped_repo_mcp::model::RepoId =
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let files = h.store.list_files(&id).unwrap().paths;
    assert!(files.contains(&"kernel/sched.c".to_string()), "{files:?}");
}

/// The HTTP servers' resource limits: servers run inside the test on 127.0.0.1:0 and
/// the clients are real TCP connections.
mod http_limits {
    // Regression tests, each named after what broke. The servers run inside the test on
    // 127.0.0.1:0 (`serve --transport http` built from its command line, and `api`), and
    // the clients are real TCP connections.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use clap::Parser;
    use futures::StreamExt;
    use scoped_repo_mcp::connections::ConnectionLimits;
    use scoped_repo_mcp::http::Lifecycle;
    use scoped_repo_mcp::run::cli::{Cli, Command};
    use scoped_repo_mcp::run::config::ServeConfig;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use crate::common::Harness;

    const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

    /// Long enough for anything to happen on a loaded machine; only a hang reaches it.
    const PATIENCE: Duration = Duration::from_secs(15);

    /// `serve --transport http` running inside the test.
    struct Mcp {
        addr: SocketAddr,
        lifecycle: Arc<Lifecycle>,
        stop: CancellationToken,
    }

    impl Drop for Mcp {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    impl Mcp {
        /// Start it on the harness's store with these extra `serve` flags.
        async fn start(h: &Harness, flags: &[&str]) -> Self {
            let dir = h.data_dir().to_str().unwrap().to_string();
            let mut argv = vec![
                "scoped-repo-mcp",
                "--data-dir",
                &dir,
                "serve",
                "--transport",
                "http",
                "--backend",
                "local",
            ];
            argv.extend_from_slice(flags);
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Serve(args) = &cli.command else {
                unreachable!()
            };
            let config = ServeConfig::from_args(args, cli.data_dir.as_deref()).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let lifecycle = Arc::new(Lifecycle::default());
            let stop = CancellationToken::new();
            let (l, s) = (lifecycle.clone(), stop.clone());
            tokio::spawn(async move {
                scoped_repo_mcp::run::serve::serve_http(&config, listener, l, s)
                    .await
                    .unwrap()
            });
            Self {
                addr,
                lifecycle,
                stop,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn post(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
            let r = reqwest::Client::new()
                .post(self.url(path))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream");
            match token {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
        }

        fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
            reqwest::Client::new()
                .get(self.url(path))
                .bearer_auth(token)
        }
    }

    /// `api` running inside the test with these limits.
    async fn api(h: &Harness, limits: ConnectionLimits) -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(scoped_repo_mcp::api::serve_until(
            listener,
            h.store.clone(),
            Default::default(),
            limits,
            stop.clone(),
        ));
        (addr, stop)
    }

    /// Wait until the server closes `tcp` (end of stream or a reset); panic if it is still
    /// open after [`PATIENCE`].
    async fn closed_by_server(tcp: &mut TcpStream, what: &str) {
        let mut buf = [0u8; 1024];
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "{what}: still open after {PATIENCE:?}");
    }

    /// A raw `GET /healthz` on a new connection: the answer, lowercased.
    async fn raw_health(addr: SocketAddr) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).to_lowercase()
    }

    /// Poll `done` until it holds, or panic after [`PATIENCE`].
    async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `cap` idle connections are held; one more is refused with a 503 and `Retry-After`;
    /// once one closes, a new connection is served.
    async fn connection_cap_holds(addr: SocketAddr, cap: usize) {
        let mut idle = Vec::new();
        for _ in 0..cap {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let refused = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        let detail = refused.text().await.expect("a whole answer");
        assert!(detail.contains("too many connections"), "{detail}");
        drop(idle.pop());
        // Any answer but the 503 means the request reached the application.
        eventually("a connection is served once one closes", async || {
            let answer = raw_health(addr).await;
            answer.starts_with("http/1.1 ") && !answer.starts_with("http/1.1 503")
        })
        .await;
    }

    /// Reads named events from an SSE response.
    struct Events {
        stream: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
        buffer: String,
    }

    impl Events {
        fn new(response: reqwest::Response) -> Self {
            Self {
                stream: response.bytes_stream().boxed(),
                buffer: String::new(),
            }
        }

        async fn next(&mut self) -> (String, String) {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let raw: String = self.buffer.drain(..end + 2).collect();
                    let (mut name, mut data) = (String::new(), String::new());
                    for line in raw.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if !name.is_empty() {
                        return (name, data);
                    }
                    continue;
                }
                let chunk = tokio::time::timeout(PATIENCE, self.stream.next())
                    .await
                    .expect("an event")
                    .expect("the stream is open")
                    .unwrap();
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    }

    // A client that opened a connection and never finished its headers held it forever.
    #[tokio::test(flavor = "multi_thread")]
    async fn slow_headers_held_a_connection_forever() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(
            &h,
            &[
                "--allow-anonymous",
                "--repo",
                &r.to_string(),
                "--header-read-timeout",
                "300ms",
            ],
        )
        .await;
        let mut silent = TcpStream::connect(mcp.addr).await.unwrap();
        let mut partial = TcpStream::connect(mcp.addr).await.unwrap();
        partial
            .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        closed_by_server(&mut silent, "a connection that sent nothing").await;
        closed_by_server(&mut partial, "a connection with half its headers").await;
        assert!(raw_health(mcp.addr).await.starts_with("http/1.1 200"));
    }

    // The same on the REST API server.
    #[tokio::test(flavor = "multi_thread")]
    async fn slow_headers_held_an_api_connection_forever() {
        let h = Harness::new();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ConnectionLimits::default()
        };
        let (addr, _stop) = api(&h, limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"GET /v1/repo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz")
            .await
            .unwrap();
        closed_by_server(&mut silent, "a connection that sent nothing").await;
        closed_by_server(&mut partial, "a connection with half its headers").await;
    }

    // 800 idle connections were all held: there was no cap on open connections.
    #[tokio::test(flavor = "multi_thread")]
    async fn idle_connections_were_all_held() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(
            &h,
            &[
                "--allow-anonymous",
                "--repo",
                &r.to_string(),
                "--max-connections",
                "3",
            ],
        )
        .await;
        connection_cap_holds(mcp.addr, 3).await;
    }

    // The same on the REST API server.
    #[tokio::test(flavor = "multi_thread")]
    async fn idle_api_connections_were_all_held() {
        let h = Harness::new();
        let limits = ConnectionLimits {
            max_connections: 3,
            ..ConnectionLimits::default()
        };
        let (addr, _stop) = api(&h, limits).await;
        connection_cap_holds(addr, 3).await;
    }

    // A request whose body never finished held its connection, and its share of the
    // credential's call budget, forever.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_stalled_request_body_held_its_call_budget_forever() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(
            &h,
            &[
                "--allow-anonymous",
                "--repo",
                &r.to_string(),
                "--max-concurrent-per-token",
                "1",
                "--idle-timeout",
                "500ms",
            ],
        )
        .await;
        let mut stalled = TcpStream::connect(mcp.addr).await.unwrap();
        stalled
            .write_all(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                  Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\"",
            )
            .await
            .unwrap();
        eventually("the stalled call reaches the guard", async || {
            mcp.lifecycle.in_flight() == 1
        })
        .await;
        let busy = mcp.post("/mcp", None).body(INIT).send().await.unwrap();
        assert_eq!(busy.status(), 429, "the stalled call holds the budget");
        closed_by_server(&mut stalled, "a connection whose body stalled").await;
        let after = mcp.post("/mcp", None).body(INIT).send().await.unwrap();
        assert_eq!(after.status(), 200);
    }

    // One token opened a thousand legacy SSE sessions, and held them all.
    #[tokio::test(flavor = "multi_thread")]
    async fn one_token_held_a_thousand_sse_sessions() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(&h, &["--max-sessions-per-token", "2"]).await;
        let t = h.store.create_token("t", &[r], Some(600)).unwrap().token;
        let u = h.store.create_token("u", &[r], Some(600)).unwrap().token;
        let first = mcp.get("/sse", &t).send().await.unwrap();
        assert_eq!(first.status(), 200);
        let init = mcp.post("/mcp", Some(&t)).body(INIT).send().await.unwrap();
        assert_eq!(init.status(), 200);
        let session = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        // Streamable and legacy sessions share the cap.
        let third = mcp.get("/sse", &t).send().await.unwrap();
        assert_eq!(third.status(), 429);
        assert_eq!(third.headers()["retry-after"], "1");
        let third = mcp.post("/mcp", Some(&t)).body(INIT).send().await.unwrap();
        assert_eq!(third.status(), 429);
        assert_eq!(mcp.lifecycle.sessions_open(), 2);
        // The cap is per credential.
        let other = mcp.get("/sse", &u).send().await.unwrap();
        assert_eq!(other.status(), 200);
        // Ending a session frees its place.
        let ended = reqwest::Client::new()
            .delete(mcp.url("/mcp"))
            .bearer_auth(&t)
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert!(ended.status().is_success(), "{}", ended.status());
        let again = mcp.get("/sse", &t).send().await.unwrap();
        assert_eq!(again.status(), 200);
        // So does closing a legacy stream.
        drop(first);
        eventually("a closed stream frees its place", async || {
            let r = mcp.get("/sse", &t).send().await.unwrap();
            r.status() == 200
        })
        .await;
        drop((other, again));
    }

    // Legacy `/messages` answered 202 once a call was queued, so the per-credential cap
    // on calls in flight did not bound the work it started.
    #[tokio::test(flavor = "multi_thread")]
    async fn legacy_messages_bypassed_the_in_flight_cap() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(&h, &["--max-concurrent-per-token", "1"]).await;
        let t = h.store.create_token("t", &[r], Some(600)).unwrap().token;
        let stream = mcp.get("/sse", &t).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let mut events = Events::new(stream);
        let (name, endpoint) = events.next().await;
        assert_eq!(name, "endpoint");
        let send = async |body: String| {
            mcp.post(&endpoint, Some(&t))
                .body(body)
                .send()
                .await
                .unwrap()
        };
        assert_eq!(send(INIT.into()).await.status(), 202);
        let (_, answer) = events.next().await;
        assert!(answer.contains("protocolVersion"), "{answer}");
        assert_eq!(send(INITIALIZED.into()).await.status(), 202);
        // Hold the repo's writer lock, so that an update cannot finish until released.
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(h.store.git_dir(&r).join("scoped-repo-mcp.lock"))
            .unwrap();
        lock.lock().unwrap();
        let update = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "update_repo_files",
            "arguments": {"repo_id": r.to_string(), "operations": [
                {"type": "write", "path": "g.txt", "content": "y\n"}]}}});
        assert_eq!(send(update.to_string()).await.status(), 202);
        let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "list_repos", "arguments": {}}});
        let refused = send(list.to_string()).await;
        assert_eq!(
            refused.status(),
            429,
            "the unanswered update holds the token's one call"
        );
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(mcp.lifecycle.in_flight(), 1);
        // A cancellation gets through although the budget is spent, and frees its place.
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 2, "reason": "test"}});
        assert_eq!(send(cancel.to_string()).await.status(), 202);
        assert_eq!(send(list.to_string()).await.status(), 202);
        lock.unlock().unwrap();
        let answered = async |events: &mut Events, id: u32| loop {
            let (_, answer) = events.next().await;
            if answer.contains(&format!(r#""id":{id}"#)) {
                break;
            }
        };
        answered(&mut events, 3).await;
        // An answer sent frees its request's place.
        let again = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "list_repos", "arguments": {}}});
        assert_eq!(send(again.to_string()).await.status(), 202);
        answered(&mut events, 4).await;
        eventually("no call is left in flight", async || {
            mcp.lifecycle.in_flight() == 0
        })
        .await;
    }

    // Streamable HTTP sessions that timed out stayed in the session → credential map.
    #[tokio::test(flavor = "multi_thread")]
    async fn ended_sessions_stayed_in_the_bindings_map() {
        let h = Harness::new();
        let r = h.repo(&[("f.txt", "x\n")]);
        let mcp = Mcp::start(
            &h,
            &[
                "--allow-anonymous",
                "--repo",
                &r.to_string(),
                "--session-idle-timeout",
                "500ms",
            ],
        )
        .await;
        let init = mcp.post("/mcp", None).body(INIT).send().await.unwrap();
        assert_eq!(init.status(), 200);
        let session = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = init.bytes().await;
        let ack = mcp
            .post("/mcp", None)
            .header("mcp-session-id", &session)
            .body(INITIALIZED)
            .send()
            .await
            .unwrap();
        assert!(ack.status().is_success(), "{}", ack.status());
        assert_eq!(mcp.lifecycle.sessions_bound(), 1);
        eventually(
            "the timed-out session leaves the bindings map",
            async || mcp.lifecycle.sessions_bound() == 0,
        )
        .await;
        assert_eq!(mcp.lifecycle.sessions_open(), 0);
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let gone = mcp
            .post("/mcp", None)
            .header("mcp-session-id", &session)
            .body(list)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404, "the session has ended");
    }
}

/// The base URL of a server that answers every request with `response`, as a Relace API
/// gone wrong might.
async fn answering_every_request(response: &'static [u8]) -> String {
    answering_in_pieces(std::slice::from_ref(Box::leak(Box::new(response)))).await
}

/// Like [`answering_every_request`], with the answer written piece by piece, a pause
/// after each, so the client receives each piece as its own chunk.
async fn answering_in_pieces(pieces: &'static [&'static [u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Every request here is a small one: read its head and answer.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.read(&mut buf).await;
                for piece in pieces {
                    let _ = conn.write_all(piece).await;
                    let _ = conn.flush().await;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            });
        }
    });
    base
}

// A hand-made relace_decoding fuzz input: a `Retry-After` of more seconds than a `Duration` holds
// (`1e20`) panicked the Relace client in `Duration::from_secs_f64` on any error answer.
#[tokio::test(flavor = "multi_thread")]
async fn huge_retry_after_panicked_the_relace_client() {
    use scoped_repo_mcp::model::{Change, FileOp, UpdateSpec};
    use scoped_repo_mcp::paths::RepoPath;
    use scoped_repo_mcp::relace::{RelaceClient, RelaceError, RetryPolicy};

    let base = answering_every_request(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 100000000000000000000\r\n\
          content-length: 4\r\nconnection: close\r\n\r\nbusy",
    )
    .await;
    let client = RelaceClient::new(&base, "rlc-operator", RetryPolicy::default()).unwrap();
    let id = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(30), client.get_repo(&id))
        .await
        .expect("answered without waiting out the Retry-After");
    let Err(RelaceError::Transport { cause, .. }) = read else {
        panic!("a read told to retry after 1e20 s: {read:?}");
    };
    assert!(cause.contains("retry after"), "{cause}");

    let update = UpdateSpec {
        change: Change::Operations(vec![FileOp::Delete {
            path: RepoPath::parse("f.txt").unwrap(),
        }]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    };
    let write = client.update(&id, &update).await;
    assert!(
        matches!(write, Err(RelaceError::WriteUncertain { .. })),
        "{write:?}"
    );
}

// Fuzzing (relace_decoding): the agentic search relayed its event stream's progress
// events (names and data), and returned its final report, without redacting the
// client's credential (only the `error` event's data was redacted).
#[tokio::test(flavor = "multi_thread")]
async fn agentic_search_events_carried_the_credential() {
    use scoped_repo_mcp::backend::SearchOutcome;
    use scoped_repo_mcp::model::LineQuery;
    use scoped_repo_mcp::relace::{RelaceClient, RetryPolicy};

    const KEY: &str = "rlc-operator-secret-key";
    let base = answering_every_request(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
          event: progress rlc-operator-secret-key\ndata: calling with rlc-operator-secret-key\n\n\
          event: done\ndata: {\"note\": \"key rlc-operator-secret-key\"}\n\n",
    )
    .await;
    let client = RelaceClient::new(&base, KEY, RetryPolicy::default()).unwrap();
    let id = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
    let query = LineQuery {
        pattern: "main".into(),
        regex: false,
        case_sensitive: true,
        path_glob: None,
        visible: None,
        max_results: 10,
        context_lines: 0,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = client.search(&id, &query, Some(tx)).await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert!(!event.contains(KEY), "{event}");
        assert!(event.contains("<redacted>"), "{event}");
    }
    let SearchOutcome::Agentic(report) = outcome else {
        panic!("an event stream is an agentic search's answer");
    };
    assert!(
        !report.report.to_string().contains(KEY),
        "{:?}",
        report.report
    );
}

// The agentic search's event stream was decoded chunk by chunk as it arrived, so a
// character whose bytes the network split across two chunks became two replacement
// characters, in the relayed progress and in the final report alike.
#[tokio::test(flavor = "multi_thread")]
async fn event_stream_split_inside_a_character_was_mangled() {
    use scoped_repo_mcp::backend::SearchOutcome;
    use scoped_repo_mcp::model::LineQuery;
    use scoped_repo_mcp::relace::{RelaceClient, RetryPolicy};

    // "é" is 0xC3 0xA9 and "✓" is 0xE2 0x9C 0x93: each piece ends inside one of them,
    // and the third ends between a line's `\r` and its `\n`.
    let base = answering_in_pieces(&[
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
          event: progress\r\ndata: caf\xC3",
        b"\xA9 \xE2\x9C",
        b"\x93 ok\r",
        b"\n\r\nevent: done\ndata: {\"note\": \"caf\xC3",
        b"\xA9\"}\n\n",
    ])
    .await;
    let client = RelaceClient::new(&base, "rlc-key", RetryPolicy::default()).unwrap();
    let id = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
    let query = LineQuery {
        pattern: "main".into(),
        regex: false,
        case_sensitive: true,
        path_glob: None,
        visible: None,
        max_results: 10,
        context_lines: 0,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = client.search(&id, &query, Some(tx)).await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    assert_eq!(
        events,
        ["progress: café ✓ ok", "done: {\"note\": \"café\"}"]
    );
    let SearchOutcome::Agentic(report) = outcome else {
        panic!("an event stream is an agentic search's answer");
    };
    assert_eq!(report.report, serde_json::json!({"note": "café"}));
}

// Fuzzing (git_push): a pushed tree entry with a mode git2 does not know (`644`, which
// a hand-written tree object can hold and git's object checks only note) panicked the
// push check in git2's `DiffFile::mode`, and the ranked index's advance the same way.
// Where it did not panic, libgit2 read such a mode as a file and git as a submodule.
#[test]
fn a_pushed_tree_with_an_unknown_mode_panicked_the_push_check() {
    use git2::{ObjectType, Repository, Signature};
    use scoped_repo_mcp::rules::Limits;
    use scoped_repo_mcp::store::push::{PushRefused, RefUpdate, check_push};

    let dir = tempfile::tempdir().unwrap();
    let main = Repository::init_bare(dir.path().join("main.git")).unwrap();
    let sig = Signature::new("t", "t@example.invalid", &git2::Time::new(0, 0)).unwrap();
    let empty = main
        .find_tree(main.treebuilder(None).unwrap().write().unwrap())
        .unwrap();
    let base = main
        .commit(Some("refs/heads/main"), &sig, &sig, "base", &empty, &[])
        .unwrap();
    // The objects `raw` names, written into each push's quarantine when it names them
    // (a quarantine holding objects its push does not reference is refused whole).
    let blob = git2::Oid::hash_object(ObjectType::Blob, b"text\n").unwrap();
    let empty_blob = git2::Oid::hash_object(ObjectType::Blob, b"").unwrap();
    let empty_tree = git2::Oid::hash_object(ObjectType::Tree, b"").unwrap();
    let pushes = std::cell::Cell::new(0);
    // Push a commit on `main` whose tree is `raw`, written as is; its objects wait in a
    // quarantine of its own, as receive-pack keeps them.
    let push = |raw: &[u8], message: &str| -> Result<(), PushRefused> {
        pushes.set(pushes.get() + 1);
        let incoming =
            Repository::init_bare(dir.path().join(format!("incoming{}.git", pushes.get())))
                .unwrap();
        let odb = incoming.odb().unwrap();
        for (kind, content) in [
            (ObjectType::Blob, &b"text\n"[..]),
            (ObjectType::Blob, b""),
            (ObjectType::Tree, b""),
        ] {
            let oid = git2::Oid::hash_object(kind, content).unwrap();
            if raw.windows(20).any(|w| w == oid.as_bytes()) {
                odb.write(kind, content).unwrap();
            }
        }
        let tree = odb.write(ObjectType::Tree, raw).unwrap();
        let commit = format!(
            "tree {tree}\nparent {base}\nauthor t <t@example.invalid> 0 +0000\n\
             committer t <t@example.invalid> 0 +0000\n\n{message}\n"
        );
        let pushed = odb.write(ObjectType::Commit, commit.as_bytes()).unwrap();
        let update = RefUpdate {
            old: base,
            new: pushed,
            name: "refs/heads/main".into(),
        };
        check_push(
            main.path(),
            Some(&incoming.path().join("objects")),
            &[update],
            &Limits::default(),
        )
    };
    let entry = |mode: &str, name: &str, oid: git2::Oid| {
        let mut e = format!("{mode} {name}\0").into_bytes();
        e.extend_from_slice(oid.as_bytes());
        e
    };
    for (mode, why) in [
        ("644", "mode is 644"),
        ("100600", "mode is 100600"),
        ("100000", "mode is 100000"),
        ("120000", "symbolic links"),
        ("160000", "submodules"),
    ] {
        let refused = push(&entry(mode, "f.txt", blob), mode).expect_err(mode);
        assert!(refused.to_string().contains("`f.txt`"), "{refused}");
        assert!(refused.to_string().contains(why), "{mode}: {refused}");
    }
    // Fuzzing (git_push): trees the commit's diff does not show whole. A name listed
    // twice (`0` as a file, then `0` as a symbolic link or, here, as the same file again:
    // the diff sees one), and an empty directory named `.GIT` (a diff shows no empty
    // directory).
    let twice = [
        entry("100644", "0", empty_blob),
        entry("100644", "0", empty_blob),
    ]
    .concat();
    let dot_git = entry("40000", ".GIT", empty_tree);
    for (tree, why) in [
        (twice, "twice or out of git's order"),
        (dot_git, "`.git` component"),
    ] {
        let refused = push(&tree, why).expect_err(why);
        assert!(refused.to_string().contains(why), "{refused}");
    }
    // A regular file's mode in the group-writable form old git wrote reads as a regular
    // file, as git checks it out.
    for mode in ["100664", "100755"] {
        push(&entry(mode, "f.txt", blob), mode)
            .unwrap_or_else(|e| panic!("a {mode} file is a regular file: {e}"));
    }
}
