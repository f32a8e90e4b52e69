//! Regression tests, each named after what broke, with a line saying what it was.
//! Most come from an outside security review of the product.

use std::collections::BTreeMap;
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
    let listed = ok(&call(client, "list_repos", json!({})).await);
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
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "list_files",
            "list_repos",
            "read_file",
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
    // The longest glob allowed is answered one way or the other.
    let edge = "*a".repeat(2048);
    let _ = answer(
        "list_files",
        json!({"repo_id": r.to_string(), "glob": edge}),
    )
    .await;
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
