//! Handlers driven in process, where no socket matters: the REST router with
//! `tower::ServiceExt::oneshot`, and the MCP server over `tokio::io::duplex` with rmcp's
//! client, as rmcp's own tests do. Faster than a process, and a failure points at the
//! handler rather than at start-up or transport.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use rmcp::ServiceExt;
use scoped_repo_mcp::backend::{Backend, LocalBackend};
use scoped_repo_mcp::scope::Scope;
use scoped_repo_mcp::server::{RepoServer, ServerSettings};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::common::{Harness, call, ok, refused};

async fn answer(router: axum::Router, uri: &str, credential: Option<&str>) -> (StatusCode, Value) {
    // The router checks `Host` as a server does (loopback names by default).
    let mut request = Request::get(uri).header(header::HOST, "127.0.0.1");
    if let Some(c) = credential {
        request = request.header(header::AUTHORIZATION, format!("Bearer {c}"));
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn rest_routes_answer_in_process() {
    let h = Harness::new();
    let mine = h.repo(&[("a.txt", "alpha\n")]);
    let other = h.repo(&[("b.txt", "beta\n")]);
    let key = h.store.create_account_key("in process").unwrap();
    let token = h.store.create_token("t", &[mine], None).unwrap().token;
    let router = scoped_repo_mcp::api::router(h.store.clone());

    let (s, body) = answer(router.clone(), &format!("/v1/repo/{mine}"), Some(&key)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["repo_id"], mine.to_string());
    let (s, body) = answer(router.clone(), &format!("/v1/repo/{mine}"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    // A repo token outside its repos: 403, whether the repo exists or not.
    let (s, body) = answer(router.clone(), &format!("/v1/repo/{other}"), Some(&token)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = answer(router, &format!("/v1/repo/{mine}/file/a.txt"), Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn tools_answer_in_process_over_a_duplex_pipe() {
    let h = Harness::new();
    let mine = h.repo(&[("a.txt", "alpha\n")]);
    let other = h.repo(&[("b.txt", "beta\n")]);
    let backend = Arc::new(LocalBackend::new(h.store.clone())) as Arc<dyn Backend>;
    let server = RepoServer::new(backend, Scope::operator([mine]), ServerSettings::default());
    let (server_end, client_end) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    let c = ().serve(client_end).await.unwrap();
    let read = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": mine.to_string(), "path": "a.txt"}),
    )
    .await);
    assert_eq!(read["content"], "alpha\n");
    let msg = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": other.to_string(), "path": "b.txt"}),
        )
        .await,
    );
    assert!(
        msg.contains(&other.to_string()) && msg.contains(&mine.to_string()),
        "{msg}"
    );
}
