//! The HTTP transports: every session held to its own bearer token's scope, refusals
//! at the door, the legacy SSE transport, and a clean shutdown.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::common::{Harness, call, ok, refused};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

crate::on_both_backends!(
    concurrent_sessions_each_see_only_their_tokens_repos,
    a_token_revoked_mid_session_is_refused_on_its_next_request
);

async fn concurrent_sessions_each_see_only_their_tokens_repos(h: Harness) {
    let repos: Vec<_> = (0..3)
        .map(|i| h.repo(&[("f.txt", &format!("repo {i}\n"))]))
        .collect();
    let server = h.http(&[]);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, repo) in repos.iter().enumerate() {
        let token = h
            .store
            .create_token(&format!("agent-{i}"), &[*repo], Some(600))
            .unwrap()
            .token;
        let client = server.client(Some(&token)).await.unwrap();
        let (mine, others): (Vec<_>, Vec<_>) = (
            vec![*repo],
            repos
                .iter()
                .filter(|r| *r != repo)
                .copied()
                .collect::<Vec<_>>(),
        );
        tasks.spawn(async move {
            for _ in 0..5 {
                let listed = ok(&call(&client, "list_repos", json!({})).await);
                let ids: Vec<&str> = listed["repos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["repo_id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, vec![mine[0].to_string()]);
                let read = ok(&call(
                    &client,
                    "read_file",
                    json!({"repo_id": mine[0].to_string(), "path": "f.txt"}),
                )
                .await);
                assert_eq!(read["content"], format!("repo {i}\n"));
                for other in &others {
                    let msg = refused(
                        &call(
                            &client,
                            "read_file",
                            json!({"repo_id": other.to_string(), "path": "f.txt"}),
                        )
                        .await,
                    );
                    assert!(msg.contains("outside"), "{msg}");
                }
            }
            let tools: Vec<String> = client
                .list_all_tools()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            assert!(
                !tools.contains(&"create_scoped_token".to_string()),
                "token sessions cannot mint: {tools:?}"
            );
            assert!(tools.contains(&"update_repo_files".to_string()));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_a_bad_one_is_401_with_a_challenge() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "x\n")]);
    let server = h.http(&["--repo", &r.to_string()]);
    let resp = post(&server.url()).body(INIT).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let resp = post(&server.url())
        .bearer_auth("rlcr-0000000000000000000000000000000000000000")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert!(server.client(None).await.is_err());
    let health = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

async fn a_token_revoked_mid_session_is_refused_on_its_next_request(h: Harness) {
    let r = h.repo(&[("f.txt", "x\n")]);
    let server = h.http(&[]);
    let token = h
        .store
        .create_token("agent", &[r], Some(600))
        .unwrap()
        .token;
    let client = server.client(Some(&token)).await.unwrap();
    ok(&call(
        &client,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "f.txt"}),
    )
    .await);
    h.store.revoke_token(&token).unwrap();
    let args = json!({"repo_id": r.to_string(), "path": "f.txt"});
    let Some(map) = args.as_object().cloned() else {
        unreachable!()
    };
    let after = client
        .call_tool(rmcp::model::CallToolRequestParams::new("read_file").with_arguments(map))
        .await;
    match after {
        Err(_) => {}
        Ok(res) => assert_eq!(
            res.is_error,
            Some(true),
            "a revoked token must not read: {res:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_origins_hosts_and_borrowed_sessions_are_refused() {
    let h = Harness::new();
    let a = h.repo(&[("f.txt", "a\n")]);
    let b = h.repo(&[("f.txt", "b\n")]);
    let server = h.http(&[]);
    let ta = h.store.create_token("a", &[a], Some(600)).unwrap().token;
    let tb = h.store.create_token("b", &[b], Some(600)).unwrap().token;
    let resp = post(&server.url())
        .bearer_auth(&ta)
        .header("origin", "https://evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = post(&server.url())
        .bearer_auth(&ta)
        .header("host", "evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = post(&server.url())
        .bearer_auth(&ta)
        .header("origin", "http://localhost:5173")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    // Another token cannot ride on a's session.
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let resp = post(&server.url())
        .bearer_auth(&tb)
        .header("mcp-session-id", &session)
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_sessions_get_exactly_the_operator_repos_and_read_only_holds() {
    let h = Harness::new();
    let a = h.repo(&[("f.txt", "a\n")]);
    let b = h.repo(&[("f.txt", "b\n")]);
    let server = h.http(&["--allow-anonymous", "--repo", &a.to_string(), "--read-only"]);
    let client = server.client(None).await.unwrap();
    let listed = ok(&call(&client, "list_repos", json!({})).await);
    assert_eq!(listed["repos"].as_array().unwrap().len(), 1);
    refused(
        &call(
            &client,
            "read_file",
            json!({"repo_id": b.to_string(), "path": "f.txt"}),
        )
        .await,
    );
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
            "blame_file",
            "compare",
            "get_commit",
            "list_commits",
            "list_files",
            "list_repos",
            "read_file",
            "search_history",
            "search_repo"
        ]
    );
    let msg = refused(
        &call(
            &client,
            "update_repo_files",
            json!({"repo_id": a.to_string(), "operations": [{"type": "delete", "path": "f.txt"}]}),
        )
        .await,
    );
    assert!(msg.contains("not available"), "{msg}");
    // A token for b does not widen the operator's bound.
    let tb = h.store.create_token("b", &[b], Some(600)).unwrap().token;
    let resp = post(&server.url())
        .bearer_auth(&tb)
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_sse_transport_serves_a_session_with_the_same_scope() {
    let h = Harness::new();
    let a = h.repo(&[("f.txt", "hello legacy\n")]);
    let server = h.http(&[]);
    let token = h
        .store
        .create_token("legacy", &[a], Some(600))
        .unwrap()
        .token;
    let base = format!("http://{}", server.addr);
    assert_eq!(
        reqwest::get(format!("{base}/sse")).await.unwrap().status(),
        401
    );
    let stream = reqwest::Client::new()
        .get(format!("{base}/sse"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let mut buffer = String::new();
    let mut next_event = async || -> (String, String) {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let raw: String = buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
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
            let chunk = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let (name, endpoint) = next_event().await;
    assert_eq!(name, "endpoint");
    let messages = format!("{base}{endpoint}");
    let send = |body: String, token: &str| {
        reqwest::Client::new()
            .post(&messages)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(send(INIT.to_string(), &token).await.unwrap().status(), 202);
    let (_, init) = next_event().await;
    assert!(init.contains("\"protocolVersion\""), "{init}");
    send(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string(),
        &token,
    )
    .await
    .unwrap();
    let read = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"repo_id": a.to_string(), "path": "f.txt"}}});
    assert_eq!(send(read.to_string(), &token).await.unwrap().status(), 202);
    let (_, answer) = next_event().await;
    assert!(answer.contains("hello legacy"), "{answer}");
    let other = h
        .store
        .create_token("other", &[a], Some(600))
        .unwrap()
        .token;
    assert_eq!(
        send(read.to_string(), &other).await.unwrap().status(),
        403,
        "the session is bound to its token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_update_in_flight_finish_then_exits() {
    let h = Harness::new();
    let r = h.repo(&[("f.txt", "x\n")]);
    let mut server = h.http(&["--repo", &r.to_string(), "--allow-anonymous"]);
    let client = server.client(None).await.unwrap();
    let body = "content of a generated file\n".repeat(50);
    let ops: Vec<serde_json::Value> = (0..3000)
        .map(|i| json!({"type": "write", "path": format!("gen/f{i}.txt"), "content": body}))
        .collect();
    let peer = client.peer().clone();
    let id = r.to_string();
    let pending = tokio::spawn(async move {
        let args = json!({"repo_id": id, "operations": ops});
        let Some(map) = args.as_object().cloned() else {
            unreachable!()
        };
        peer.call_tool(
            rmcp::model::CallToolRequestParams::new("update_repo_files").with_arguments(map),
        )
        .await
    });
    // The store creates the repo's writer lock file when an update begins: once it
    // exists, the update is in flight on the server.
    let lock_file = h.store.git_dir(&r).join("scoped-repo-mcp.lock");
    for _ in 0..500 {
        if lock_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lock_file.exists(), "the update never started");
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let answer = pending
        .await
        .unwrap()
        .expect("the call in flight is answered");
    let out = ok(&answer);
    assert_eq!(h.store.head(&r).unwrap(), out["head"].as_str().unwrap());
    let status = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
