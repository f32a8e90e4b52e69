//! `serve --transport http` as an OAuth protected resource (RFC 9728): the metadata
//! document, the challenge on every 401, the `insufficient_scope` challenge of a call
//! beyond a read-only token, and `--public-url`.

use scoped_repo_mcp::model::{MintSpec, RepoId};
use serde_json::json;

use crate::common::{Harness, call, ok};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

fn mint(h: &Harness, repo: RepoId, read_only: bool, can_delegate: bool) -> String {
    h.store
        .mint(&MintSpec {
            name: "oauth-test".into(),
            repo_ids: vec![repo],
            ttl_seconds: Some(600),
            read_only,
            can_delegate,
            ..MintSpec::default()
        })
        .unwrap()
        .token
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .expect("a challenge")
        .to_str()
        .unwrap()
        .to_string()
}

/// The `resource_metadata` URL a challenge names.
fn metadata_url(challenge: &str) -> String {
    let start = challenge.find("resource_metadata=\"").expect(challenge) + 19;
    let rest = &challenge[start..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_401_names_the_metadata_which_names_the_mcp_endpoint() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&["--repo", &r.to_string()]);
    for bearer in [None, Some("rlcr-0000000000000000000000000000000000000000")] {
        let mut req = post(&server.url()).body(INIT);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let c = challenge(&resp);
        assert!(c.starts_with("Bearer "), "{c}");
        assert_eq!(c.contains("invalid_token"), bearer.is_some(), "{c}");
        let url = metadata_url(&c);
        assert_eq!(
            url,
            format!(
                "http://{}/.well-known/oauth-protected-resource/mcp",
                server.addr
            )
        );
        let doc: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert_eq!(doc["resource"], server.url());
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        // No authorization server is configured: the document names none.
        assert!(doc.get("authorization_servers").is_none(), "{doc}");
    }
    // The bare well-known URL answers the same document.
    let bare = format!(
        "http://{}/.well-known/oauth-protected-resource",
        server.addr
    );
    let doc: serde_json::Value = reqwest::get(&bare).await.unwrap().json().await.unwrap();
    assert_eq!(doc["resource"], server.url());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_by_a_read_only_token_is_challenged_for_more_scope_and_changes_nothing() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let before = h.store.head(&r).unwrap();
    let server = h.http(&[]);
    let reader = mint(&h, r, true, false);
    // Through a real client: the session opens, reads work, and the write is refused
    // at the door with 403, which the client reports as an error of the call.
    let client = server.client(Some(&reader)).await.unwrap();
    let read = ok(&call(
        &client,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "a.txt"}),
    )
    .await);
    assert_eq!(read["content"], "a\n");
    // The same call as raw HTTP shows the challenge.
    let write = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "update_repo_files",
        "arguments": {"repo_id": r.to_string(), "operations": [
            {"type": "write", "path": "a.txt", "content": "changed\n"}]}}});
    let resp = post(&server.url())
        .bearer_auth(&reader)
        .body(write.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let c = challenge(&resp);
    assert!(
        c.contains(r#"error="insufficient_scope""#) && c.contains(r#"scope="write""#),
        "{c}"
    );
    assert!(metadata_url(&c).ends_with("/.well-known/oauth-protected-resource/mcp"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("update_repo_files"), "{body}");
    // Nothing changed, as a fresh process sees it.
    let out = h.command(&["repo", "list"]).output().await.unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("head {}", &before[..12])),
        "{listed}"
    );
    assert_eq!(h.store.head(&r).unwrap(), before);
    // A token that may write is not challenged: its client's write lands.
    let writer = mint(&h, r, false, false);
    let client = server.client(Some(&writer)).await.unwrap();
    ok(&call(
        &client,
        "update_repo_files",
        json!({"repo_id": r.to_string(), "operations": [
            {"type": "write", "path": "a.txt", "content": "changed\n"}]}),
    )
    .await);
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_operators_read_only_no_token_could_help_so_no_challenge() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&["--read-only"]);
    let writer = mint(&h, r, false, false);
    let client = server.client(Some(&writer)).await.unwrap();
    let answer = call(
        &client,
        "update_repo_files",
        json!({"repo_id": r.to_string(), "operations": [{"type": "delete", "path": "a.txt"}]}),
    )
    .await;
    assert_eq!(answer.is_error, Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_url_names_the_resource_and_its_host_is_accepted() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&[
        "--repo",
        &r.to_string(),
        "--public-url",
        "https://mcp.example.test/tools/",
    ]);
    let resp = post(&server.url()).body(INIT).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        metadata_url(&challenge(&resp)),
        "https://mcp.example.test/.well-known/oauth-protected-resource/tools/mcp"
    );
    let local = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        server.addr
    );
    let doc: serde_json::Value = reqwest::get(&local).await.unwrap().json().await.unwrap();
    assert_eq!(doc["resource"], "https://mcp.example.test/tools/mcp");
    // A request naming the public host (as a proxy forwards it) passes the Host check.
    let resp = post(&server.url())
        .header("host", "mcp.example.test")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "refused by the token check, not the Host check"
    );
    let resp = post(&server.url())
        .header("host", "elsewhere.example.test")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
