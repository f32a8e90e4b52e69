//! Tokens finer than a repo — read-only, limited to paths, able to delegate — held on
//! every surface: stdio, streamable HTTP and the REST API.

use std::process::Stdio;

use reqwest::{Method, StatusCode};
use scoped_repo_mcp::model::{MintSpec, RepoId};
use serde_json::{Value, json};

use crate::api::{send, start_api_with};
use crate::common::{Client, Harness, call, ok, refused, tool_names};

fn mint(h: &Harness, repos: &[RepoId], read_only: bool, paths: &[&str], delegate: bool) -> String {
    h.store
        .mint(&MintSpec {
            name: "agent".into(),
            repo_ids: repos.to_vec(),
            ttl_seconds: Some(3600),
            read_only,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            can_delegate: delegate,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token
}

async fn stdio_on(h: &Harness, token: &str) -> Client {
    h.client_env(&["--backend", "local"], &[("RELACE_API_KEY", token)])
        .await
}

const READ_TOOLS: [&str; 9] = [
    "blame_file",
    "compare",
    "get_commit",
    "list_commits",
    "list_files",
    "list_repos",
    "read_file",
    "search_history",
    "search_repo",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_token_reads_and_never_writes_on_any_surface() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let head = h.store.head(&r).unwrap();
    let token = mint(&h, &[r], true, &[], false);
    let update = json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "b.txt", "content": "b\n"}]});

    let stdio = stdio_on(&h, &token).await;
    assert_eq!(tool_names(&stdio).await, READ_TOOLS);
    ok(&call(
        &stdio,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "a.txt"}),
    )
    .await);
    // Not listed, so not routed: a protocol error rather than a tool error.
    let denied = stdio
        .call_tool(
            rmcp::model::CallToolRequestParams::new("update_repo_files")
                .with_arguments(update.as_object().unwrap().clone()),
        )
        .await;
    assert!(denied.is_err(), "{denied:?}");

    let server = h.http(&[]);
    let http = server.client(Some(&token)).await.unwrap();
    assert_eq!(tool_names(&http).await, READ_TOOLS);
    // Over HTTP the door answers it: 403 insufficient_scope, a wider grant could cure it.
    let denied = http
        .call_tool(
            rmcp::model::CallToolRequestParams::new("update_repo_files")
                .with_arguments(update.as_object().unwrap().clone()),
        )
        .await;
    assert!(
        denied
            .as_ref()
            .is_err_and(|e| e.to_string().contains("Insufficient scope")),
        "{denied:?}"
    );

    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let t = Some(token.as_str());
    let (s, _) = send(Method::GET, format!("{}/repo/{r}/clone", api.base), t, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = send(
        Method::POST,
        format!("{}/repo/{r}/update", api.base),
        t,
        Some(json!({"source": {"type": "diff", "operations": [{"type": "write", "filename": "b.txt", "content": "b"}]}})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    let (s, _) = send(
        Method::DELETE,
        format!("{}/repo/{r}/file/a.txt", api.base),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(h.store.head(&r).unwrap(), head);
}

fn monorepo(h: &Harness) -> RepoId {
    h.repo(&[
        ("web/a.ts", "const needle = 'web';\n"),
        ("web/sub/b.ts", "export const b = 1;\n"),
        (
            "api/secret.rs",
            "const NEEDLE: &str = \"secret\"; // needle\n",
        ),
        ("README.md", "needle in the readme\n"),
    ])
}

fn paths_of(v: &Value, key: &str, field: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_limited_token_sees_and_changes_only_its_paths_over_mcp() {
    use rmcp::model::ReadResourceRequestParams;
    let h = Harness::new();
    let r = monorepo(&h);
    let token = mint(&h, &[r], false, &["web/**"], false);
    let c = stdio_on(&h, &token).await;
    let id = r.to_string();

    let listed = ok(&call(&c, "list_files", json!({"repo_id": id})).await);
    assert_eq!(listed["paths"], json!(["web/a.ts", "web/sub/b.ts"]));
    assert_eq!(listed["total_matching"], 2);

    let found = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "needle", "mode": "literal", "case_sensitive": false}),
    )
    .await);
    assert_eq!(paths_of(&found, "hits", "path"), ["web/a.ts"]);
    assert!(found["files_searched"].as_u64().unwrap() <= 2, "{found}");
    let ranked = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "where is the secret needle constant", "mode": "ranked"}),
    )
    .await);
    for p in paths_of(&ranked, "ranked", "path") {
        assert!(p.starts_with("web/"), "{ranked}");
    }
    assert!(ranked["files_searched"].as_u64().unwrap() <= 2, "{ranked}");

    // A hidden file answers exactly as a missing one.
    let hidden = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": id, "path": "api/secret.rs"}),
        )
        .await,
    );
    let missing = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": id, "path": "api/none.rs"}),
        )
        .await,
    );
    assert_eq!(hidden.replace("secret.rs", "none.rs"), missing);
    assert!(!hidden.contains("NEEDLE"));
    let resources: Vec<String> = c
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(resources.len(), 2, "{resources:?}");
    assert!(
        c.read_resource(ReadResourceRequestParams::new(format!(
            "repo://{id}/api/secret.rs"
        )))
        .await
        .is_err()
    );

    // Writes: outside refused whole, inside fine; a directory of hidden files does not exist.
    let head = h.store.head(&r).unwrap();
    let update = |ops: Value| json!({"repo_id": id, "operations": ops});
    for ops in [
        json!([{"type": "write", "path": "web/ok.ts", "content": "1\n"}, {"type": "write", "path": "api/x.rs", "content": "x\n"}]),
        json!([{"type": "rename", "path": "web/a.ts", "new_path": "api/a.ts"}]),
        json!([{"type": "delete", "path": "api"}]),
        json!([{"type": "delete", "path": "README.md"}]),
    ] {
        refused(&call(&c, "update_repo_files", update(ops)).await);
    }
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({"repo_id": id, "replace_all": [{"path": "web/a.ts", "content": ""}]}),
        )
        .await,
    );
    assert!(msg.contains("whole tree"), "{msg}");
    assert_eq!(
        h.store.head(&r).unwrap(),
        head,
        "a refused update changed the repo"
    );
    ok(&call(&c, "update_repo_files", update(json!([{"type": "write", "path": "web/new.ts", "content": "n\n"}, {"type": "rename", "path": "web/sub", "new_path": "web/moved"}]))).await);
    let after = h.store.list_files(&r).unwrap().paths;
    assert!(
        after.contains(&"api/secret.rs".to_string())
            && after.contains(&"web/moved/b.ts".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_limited_token_sees_only_its_paths_over_rest() {
    let h = Harness::new();
    let r = monorepo(&h);
    let token = mint(&h, &[r], false, &["web/**"], false);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let b = &api.base;
    let t = Some(token.as_str());
    let (s, clone) = send(Method::GET, format!("{b}/repo/{r}/clone"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    let mut names = paths_of(&clone, "files", "filename");
    names.sort();
    assert_eq!(names, ["web/a.ts", "web/sub/b.ts"]);
    let (hidden, hb) = send(
        Method::GET,
        format!("{b}/repo/{r}/file/api/secret.rs"),
        t,
        None,
    )
    .await;
    let (missing, mb) = send(
        Method::GET,
        format!("{b}/repo/{r}/file/api/none.rs"),
        t,
        None,
    )
    .await;
    assert_eq!(
        (hidden, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(
        hb.to_string().replace("secret.rs", "none.rs"),
        mb.to_string()
    );
    let (s, _) = send(Method::PUT, format!("{b}/repo/{r}/file/api/x.rs"), t, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, found) = send(
        Method::POST,
        format!("{b}/repo/{r}/search"),
        t,
        Some(json!({"query": "needle"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(paths_of(&found, "results", "filename"), ["web/a.ts"]);
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/update"),
        t,
        Some(json!({"source": {"type": "diff", "operations": [{"type": "delete", "filename": "README.md"}]}})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delegation_narrows_at_every_step_and_revocation_cascades_to_live_sessions() {
    let h = Harness::new();
    let a = monorepo(&h);
    let other = h.repo(&[("o.txt", "o\n")]);
    let lead_token = mint(&h, &[a, other], false, &[], true);
    let server = h.http(&[]);
    let lead = server.client(Some(&lead_token)).await.unwrap();
    assert!(
        tool_names(&lead)
            .await
            .contains(&"create_scoped_token".to_string())
    );

    let child = ok(&call(
        &lead,
        "create_scoped_token",
        json!({"name": "front-end", "repo_ids": [a.to_string()], "ttl_seconds": 600, "paths": ["web/**"], "can_delegate": true}),
    )
    .await);
    assert_eq!(child["paths"], json!(["web/**"]));
    let child_token = child["token"].as_str().unwrap().to_string();
    let child_session = server.client(Some(&child_token)).await.unwrap();
    // Every widening is refused.
    for ask in [
        json!({"name": "w", "repo_ids": [other.to_string()], "ttl_seconds": 60}),
        json!({"name": "w", "repo_ids": [a.to_string()], "ttl_seconds": 60, "paths": ["**"]}),
        json!({"name": "w", "repo_ids": [a.to_string()], "ttl_seconds": 60, "paths": ["api/**"]}),
        json!({"name": "w", "repo_ids": [a.to_string()], "ttl_seconds": 100_000}),
    ] {
        refused(&call(&child_session, "create_scoped_token", ask).await);
    }
    // A narrower grandchild works, inherits the paths, and may not delegate further.
    let grandchild = ok(&call(
        &child_session,
        "create_scoped_token",
        json!({"name": "tests", "repo_ids": [a.to_string()], "ttl_seconds": 300, "read_only": true, "paths": ["web/sub/**"]}),
    )
    .await);
    let grand_token = grandchild["token"].as_str().unwrap().to_string();
    let grand = server.client(Some(&grand_token)).await.unwrap();
    assert_eq!(tool_names(&grand).await, READ_TOOLS);
    let listed = ok(&call(&grand, "list_files", json!({"repo_id": a.to_string()})).await);
    assert_eq!(listed["paths"], json!(["web/sub/b.ts"]));

    // A token the lead did not mint is not the lead's to revoke.
    let stranger = mint(&h, &[a], false, &[], false);
    let msg = refused(&call(&lead, "revoke_token", json!({"token": stranger})).await);
    assert!(msg.contains("minted from it"), "{msg}");

    // Revoking the child cuts the grandchild's live session at its next call.
    ok(&call(&lead, "revoke_token", json!({"token": child_token})).await);
    let cut = grand
        .call_tool(
            rmcp::model::CallToolRequestParams::new("list_repos")
                .with_arguments(serde_json::Map::new()),
        )
        .await;
    // The refusal itself, not any failure: a crashed server must not pass for a cut.
    // rmcp's client reports a 401 only as "Auth required", so the server's answer to
    // the same credential is read as it is.
    let why = match &cut {
        Err(e) => e.to_string(),
        Ok(r) => refused(r),
    };
    assert!(why.contains("Auth required"), "{why}");
    let answer = reqwest::Client::new()
        .post(server.url())
        .bearer_auth(&grand_token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body = answer.text().await.unwrap();
    assert!(body.contains("revoked"), "{body}");
    // The server still serves everyone else.
    ok(&call(&lead, "list_repos", json!({})).await);
    assert_eq!(
        h.store.token(&grand_token).unwrap().0,
        scoped_repo_mcp::store::TokenState::Revoked
    );

    // The REST API applies the same rule to a delegating token.
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let t = Some(lead_token.as_str());
    let (s, body) = send(
        Method::POST,
        format!("{}/repo_token", api.base),
        t,
        Some(json!({"name": "r", "repo_ids": [a.to_string()], "ttl_seconds": 60, "paths": ["web/**"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["paths"], json!(["web/**"]));
    let narrow = body["token"].as_str().unwrap().to_string();
    let (s, body) = send(
        Method::POST,
        format!("{}/repo_token", api.base),
        Some(&narrow),
        Some(json!({"name": "r2", "repo_ids": [a.to_string()], "ttl_seconds": 60})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
}
