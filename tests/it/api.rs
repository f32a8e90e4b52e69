//! `scoped-repo-mcp api` as a child process, driven over HTTP: the hosted service's
//! credential rules, its limits and error statuses, paging and filters, and a whole
//! session whose logs never show a secret.

use std::process::Stdio;

use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{BIN, Harness, call, ok, refused};

/// A running `api` child: its base URL and an account key.
pub(crate) struct ApiChild {
    pub(crate) base: String,
    pub(crate) key: String,
    pub(crate) child: tokio::process::Child,
}

impl ApiChild {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the api server is running")
    }
}

async fn start_api(h: &Harness, stderr: Stdio) -> ApiChild {
    start_api_with(h, stderr, &[]).await
}

/// `api` on `h`'s store with these extra flags.
pub(crate) async fn start_api_with(h: &Harness, stderr: Stdio, flags: &[&str]) -> ApiChild {
    let key = h.store.create_account_key("api tests").unwrap();
    ApiBuilder::on(h.data_dir(), key)
        .flags(flags)
        .stderr(stderr)
        .start()
        .await
}

/// The one way tests start `scoped-repo-mcp api` as a process: on a data directory,
/// listening on 127.0.0.1:0, with no credential or scope from the environment, killed
/// when dropped. `key` is an account key of that store, handed back in the
/// [`ApiChild`] for the test to use.
pub(crate) struct ApiBuilder {
    data_dir: std::path::PathBuf,
    key: String,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    stderr: Stdio,
}

impl ApiBuilder {
    pub(crate) fn on(data_dir: &std::path::Path, key: impl Into<String>) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            key: key.into(),
            flags: Vec::new(),
            env: vec![("RUST_LOG".into(), "debug".into())],
            stderr: Stdio::null(),
        }
    }

    /// Extra flags after `api --listen 127.0.0.1:0`.
    pub(crate) fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// An environment variable of the process (`PATH`, `RUST_LOG`, …).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Where its log goes (default: nowhere).
    pub(crate) fn stderr(mut self, stderr: impl Into<Stdio>) -> Self {
        self.stderr = stderr.into();
        self
    }

    pub(crate) async fn start(self) -> ApiChild {
        let mut child = tokio::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["api", "--listen", "127.0.0.1:0"])
            .args(&self.flags)
            .env_remove("RELACE_API_KEY")
            .env_remove("SCOPED_REPO_IDS")
            .envs(self.env)
            .stdout(Stdio::piped())
            .stderr(self.stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = listening_line(child.stdout.take().unwrap()).await;
        ApiChild {
            base,
            key: self.key,
            child,
        }
    }
}

/// The base URL in the first line `api` prints: `listening on http://…/v1`.
pub(crate) async fn listening_line(stdout: tokio::process::ChildStdout) -> String {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string()
}

pub(crate) async fn send(
    method: reqwest::Method,
    url: String,
    credential: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn credentials_reach_what_the_hosted_service_lets_them_reach() {
    let h = Harness::new();
    let mine = h.repo(&[("a.txt", "a\n")]);
    let other = h.repo(&[("b.txt", "secret\n")]);
    let api = start_api(&h, Stdio::null()).await;
    let b = &api.base;
    let key = Some(api.key.as_str());

    let (s, body) = send(Method::GET, format!("{b}/repo"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("Bearer"));
    let (s, _) = send(Method::GET, format!("{b}/repo"), Some("rlc-nope"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = send(Method::GET, format!("{b}/repo"), key, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["total_items"], 2);

    let (s, minted) = send(
        Method::POST,
        format!("{b}/repo_token"),
        key,
        Some(json!({"name": "agent", "repo_ids": [mine.to_string()], "ttl_seconds": 600})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(minted["expires_at"].as_str().unwrap().ends_with('Z'));
    let t = Some(token.as_str());

    let (s, _) = send(Method::GET, format!("{b}/repo/{mine}/clone"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = send(Method::GET, format!("{b}/repo/{mine}"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    // Another repo, existing or not, answers the same: nothing is revealed.
    let missing = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69";
    let (s1, b1) = send(Method::GET, format!("{b}/repo/{other}/clone"), t, None).await;
    let (s2, b2) = send(Method::GET, format!("{b}/repo/{missing}/clone"), t, None).await;
    assert_eq!((s1, s2), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert_eq!(b1, b2);
    assert!(!b1.to_string().contains("secret"));
    for (method, url, body) in [
        (Method::GET, format!("{b}/repo"), None),
        (
            Method::POST,
            format!("{b}/repo_token"),
            Some(json!({"name": "x", "repo_ids": [mine.to_string()]})),
        ),
        (Method::DELETE, format!("{b}/repo/{mine}"), None),
        (Method::POST, format!("{b}/repo"), Some(json!({}))),
    ] {
        let (s, _) = send(method.clone(), url.clone(), t, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {url}");
    }
    let (s, own) = send(Method::GET, format!("{b}/repo_token/{token}"), t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(own["repo_ids"], json!([mine.to_string()]));
    assert!(
        own.get("token").is_none(),
        "the secret is shown only at creation"
    );

    let (s, _) = send(Method::DELETE, format!("{b}/repo_token/{token}"), key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = send(Method::GET, format!("{b}/repo/{mine}/clone"), t, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("revoked"));
    let (s, _) = send(Method::DELETE, format!("{b}/repo_token/{token}"), key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_malformed_bodies_and_missing_things_get_the_hosted_statuses() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let api = start_api(&h, Stdio::null()).await;
    let (b, key) = (&api.base, Some(api.key.as_str()));
    let head = h.store.head(&r).unwrap();

    let big = reqwest::Client::new()
        .put(format!("{b}/repo/{r}/file/big.txt"))
        .bearer_auth(&api.key)
        .body(vec![b'x'; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ops: Vec<Value> = (0..10_001)
        .map(|i| json!({"type": "write", "filename": format!("f{i}"), "content": "x"}))
        .collect();
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/update"),
        key,
        Some(json!({"source": {"type": "diff", "operations": ops}})),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["detail"].as_str().unwrap().contains("10000"), "{body}");

    let broken = reqwest::Client::new()
        .post(format!("{b}/repo/{r}/update"))
        .bearer_auth(&api.key)
        .header("content-type", "application/json")
        .body("{\"source\": {\"type\": \"diff\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail: Value = broken.json().await.unwrap();
    assert!(
        detail["detail"].as_str().unwrap().contains("line 1"),
        "{detail}"
    );
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/update"),
        key,
        Some(json!({"source": {"type": "teleport"}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("teleport"),
        "{body}"
    );
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/update"),
        key,
        Some(json!({"source": {"type": "git", "url": "https://example.com/x.git"}})),
    )
    .await;
    // A server started without --allowed-git-host fetches from nowhere, and says how.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--allowed-git-host"),
        "{body}"
    );
    let (s, _) = send(
        Method::DELETE,
        format!("{b}/repo/{r}/file/nope.txt"),
        key,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = send(
        Method::GET,
        format!("{b}/repo/{r}/file/nope.txt"),
        key,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = send(
        Method::GET,
        format!("{b}/repo/{r}/file/a%2F..%2Fb"),
        key,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = send(Method::GET, format!("{b}/repo/not-a-uuid"), key, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, body) = send(Method::GET, format!("{b}/nowhere"), key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/update"),
        key,
        Some(json!({"source": {"type": "diff", "operations": [{"type": "write", "filename": "x", "content": "x"}]}, "expected_head": "0000000000000000000000000000000000000000"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(h.store.head(&r).unwrap(), head, "nothing changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn repos_page_filter_copy_and_delete() {
    let h = Harness::new();
    let api = start_api(&h, Stdio::null()).await;
    let (b, key) = (&api.base, Some(api.key.as_str()));
    let mut ids = Vec::new();
    for (i, team) in ["a", "b", "a"].iter().enumerate() {
        let (s, info) = send(
            Method::POST,
            format!("{b}/repo"),
            key,
            Some(json!({"metadata": {"team": team}, "source": {"type": "files", "files": [{"filename": format!("f{i}.txt"), "content": "x\n"}]}})),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(info["changed_files"], json!([format!("f{i}.txt")]));
        ids.push(info["repo_id"].as_str().unwrap().to_string());
    }
    let (_, page) = send(Method::GET, format!("{b}/repo?page_size=2"), key, None).await;
    assert_eq!(page["total_items"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_page"], 2);
    let (_, rest) = send(
        Method::GET,
        format!("{b}/repo?page_size=2&page_start=2"),
        key,
        None,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_page"].is_null());
    let filter = "%7B%22team%22%3A%22a%22%7D";
    let (_, team_a) = send(
        Method::GET,
        format!("{b}/repo?filter_metadata={filter}"),
        key,
        None,
    )
    .await;
    assert_eq!(team_a["total_items"], 2);
    let (s, _) = send(Method::GET, format!("{b}/repo?order_by=size"), key, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, copy) = send(
        Method::POST,
        format!("{b}/repo"),
        key,
        Some(json!({"source": {"type": "relace", "repo_id": ids[0], "copy_metadata": true}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let copy_id = copy["repo_id"].as_str().unwrap();
    let (_, meta) = send(Method::GET, format!("{b}/repo/{copy_id}"), key, None).await;
    assert_eq!(meta["metadata"]["team"], "a");
    let (_, cloned) = send(Method::GET, format!("{b}/repo/{copy_id}/clone"), key, None).await;
    assert_eq!(
        cloned["files"],
        json!([{"filename": "f0.txt", "content": "x\n"}])
    );

    let (s, _) = send(Method::DELETE, format!("{b}/repo/{copy_id}"), key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = send(Method::GET, format!("{b}/repo/{copy_id}"), key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// What broke the promise would be a credential echoed in any log line of a session.
#[tokio::test(flavor = "multi_thread")]
async fn a_whole_session_never_logs_the_credential_or_any_token() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let logs = tempfile::tempdir().unwrap();
    let api_log = logs.path().join("api.log");
    let api = start_api(&h, std::fs::File::create(&api_log).unwrap().into()).await;
    let serve_log = logs.path().join("serve.log");
    let start = |credential: &str, log: &std::path::Path| {
        let mut cmd = h.command(&[
            "serve",
            "--repo",
            &r.to_string(),
            "--backend",
            "relace",
            "--base-url",
            &api.base,
        ]);
        cmd.env("RELACE_API_KEY", credential)
            .env("RUST_LOG", "trace");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        TokioChildProcess::builder(cmd)
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap()
            .0
    };
    let operator = ().serve(start(&api.key, &serve_log)).await.unwrap();
    let id = r.to_string();
    ok(&call(&operator, "list_repos", json!({})).await);
    ok(&call(
        &operator,
        "read_file",
        json!({"repo_id": id, "path": "a.txt"}),
    )
    .await);
    refused(
        &call(
            &operator,
            "read_file",
            json!({"repo_id": id, "path": "missing.txt"}),
        )
        .await,
    );
    ok(&call(&operator, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "write", "path": "b.txt", "content": "b\n"}]})).await);
    let minted = ok(&call(
        &operator,
        "create_scoped_token",
        json!({"name": "sub", "repo_ids": [id], "ttl_seconds": 600}),
    )
    .await);
    let token = minted["token"].as_str().unwrap().to_string();

    let agent = ().serve(start(&token, &serve_log)).await.unwrap();
    ok(&call(&agent, "list_files", json!({"repo_id": id})).await);
    ok(&call(&agent, "search_repo", json!({"repo_id": id, "query": "a"})).await);
    ok(&call(&operator, "revoke_token", json!({"token": token})).await);
    let after = refused(&call(&agent, "read_file", json!({"repo_id": id, "path": "a.txt"})).await);
    assert!(after.contains("revoked"), "{after}");
    assert!(!after.contains(&token));
    agent.cancel().await.unwrap();
    operator.cancel().await.unwrap();
    // A session that cannot start says why without echoing its credential either.
    let bad = h
        .command(&[
            "serve",
            "--repo",
            &id,
            "--backend",
            "relace",
            "--base-url",
            &api.base,
        ])
        .env("RELACE_API_KEY", &token)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let bad_err = String::from_utf8_lossy(&bad.stderr);
    assert!(bad_err.contains("revoked"), "{bad_err}");
    assert!(!bad_err.contains(&token));

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let serve_text = std::fs::read_to_string(&serve_log).unwrap();
    let api_text = std::fs::read_to_string(&api_log).unwrap();
    assert!(
        serve_text.contains("routing tools through the Relace API"),
        "logs were captured"
    );
    for (name, text) in [("serve", &serve_text), ("api", &api_text)] {
        assert!(!text.contains(&api.key), "{name} logged the account key");
        let leak = text
            .lines()
            .find(|l| l.contains(&token))
            .unwrap_or_default();
        assert!(
            !text.contains(&token),
            "{name} logged the repo token: {leak}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn search_answers_json_or_the_event_stream_the_sdks_ask_for() {
    let h = Harness::new();
    let r = h.repo(&[("src/app.py", "def login():\n    pass\n")]);
    let api = start_api(&h, Stdio::null()).await;
    let url = format!("{}/repo/{r}/search", api.base);
    let (s, json) = send(
        Method::POST,
        url.clone(),
        Some(&api.key),
        Some(json!({"query": "login"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json["results"][0]["filename"], "src/app.py");
    assert_eq!(json["results"][0]["line_number"], 1);
    let events = reqwest::Client::new()
        .post(url)
        .bearer_auth(&api.key)
        .header("accept", "text/event-stream")
        .json(&json!({"query": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let body = events.text().await.unwrap();
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: result\ndata: "), "{body}");
    let data: Value = serde_json::from_str(last.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(data["results"][0]["filename"], "src/app.py");

    // Where the TypeScript SDK sends its search.
    let agent = format!("{}/repo/{r}/agent", api.base);
    let body = reqwest::Client::new()
        .post(&agent)
        .bearer_auth(&api.key)
        .json(&json!({"agent_name": "relace-search", "agent_inputs": {"query": "login"}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("event: result") && body.contains("src/app.py"),
        "{body}"
    );
    let (s, other) = send(
        Method::POST,
        agent,
        Some(&api.key),
        Some(json!({"agent_name": "code_review", "agent_inputs": {}})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(other["detail"].as_str().unwrap().contains("relace-search"));
}
