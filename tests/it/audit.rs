//! The audit trail: a record for every MCP tool call (stdio and HTTP), REST request,
//! token mint and revocation, read back with `audit`; and never a secret, a file's
//! content or a query in the database or the logs.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use scoped_repo_mcp::store::{AuditQuery, AuditRow};
use serde_json::{Value, json};

use crate::api::{send, start_api_with};
use crate::common::{BIN, Harness, call, ok, refused};

const CONTENT: &str = "fn hidden() { let marker = \"CONTENT-7f3a-never-in-the-trail\"; }\n";
const QUERY: &str = "QUERY-5be1-never-in-the-trail";
const BAD_REGEX: &str = "REGEX-91cd-never-in-the-trail(";

fn short_id(secret: &str) -> String {
    scoped_repo_mcp::audit::short_id(secret)
}

fn all_rows(h: &Harness) -> Vec<AuditRow> {
    h.store
        .audit(&AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .unwrap()
}

/// Wait until the trail holds a row matching `want` (the writer batches for ~100 ms).
async fn wait_for(h: &Harness, what: &str, want: impl Fn(&AuditRow) -> bool) -> AuditRow {
    for _ in 0..100 {
        if let Some(r) = all_rows(h).into_iter().find(|r| want(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no audit record for {what}; the trail holds {:#?}",
        all_rows(h)
    );
}

/// Fail if any of `needles` appears in the store's database files or in `logs`.
fn assert_nowhere(data_dir: &Path, logs: &[&Path], needles: &[&str]) {
    let mut haystacks = Vec::new();
    for name in ["store.db", "store.db-wal"] {
        if let Some(bytes) = crate::common::read_db_file(&data_dir.join(name)) {
            haystacks.push((name.to_string(), bytes));
        }
    }
    assert!(!haystacks.is_empty(), "no database file to search");
    for log in logs {
        haystacks.push((log.display().to_string(), std::fs::read(log).unwrap()));
    }
    for needle in needles {
        for (name, bytes) in &haystacks {
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!found, "{name} holds `{needle}`");
        }
    }
}

/// A bare JSON-RPC session with `serve` over stdio, so the test can close its stdin
/// and wait for the process to end before reading the trail.
struct StdioSession {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    next_id: u64,
}

impl StdioSession {
    fn start(h: &Harness, args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(h.data_dir())
            .arg("serve")
            .args(args)
            .env_remove("RELACE_API_KEY")
            .env_remove("SCOPED_REPO_IDS")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut s = Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            next_id: 1,
        };
        s.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "audit-test", "version": "0"}}),
        );
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "server ended"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Call a tool; its result object.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": args}));
        answer["result"].clone()
    }

    /// Close stdin and wait for the process to end.
    fn finish(mut self) {
        self.stdin.take();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve ended with {status}");
    }
}

fn outcome(r: &AuditRow) -> &str {
    &r.outcome
}

// Every stdio tool call lands in the trail by the time the process has ended: reads,
// a refusal with its reason, a failed search, an update with its heads, a mint and a
// revocation; and none of the content, queries or tokens do.
#[tokio::test(flavor = "multi_thread")]
async fn stdio_calls_are_recorded_by_the_time_the_process_ends() {
    let h = Harness::new();
    let a = h.repo(&[("src/lib.rs", CONTENT)]);
    let b = h.repo(&[("other.rs", "x\n")]);
    let head_a = h.store.head(&a).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut s = StdioSession::start(&h, &["--repo", &a.to_string()], &[], &log);
    let read = s.call(
        "read_file",
        json!({"repo_id": a.to_string(), "path": "src/lib.rs"}),
    );
    assert_eq!(read["isError"], json!(false), "{read}");
    let outside = s.call(
        "read_file",
        json!({"repo_id": b.to_string(), "path": "other.rs"}),
    );
    assert_eq!(outside["isError"], json!(true), "{outside}");
    let found = s.call(
        "search_repo",
        json!({"repo_id": a.to_string(), "query": QUERY, "mode": "literal"}),
    );
    assert_eq!(found["isError"], json!(false), "{found}");
    let bad = s.call(
        "search_repo",
        json!({"repo_id": a.to_string(), "query": BAD_REGEX, "mode": "regex"}),
    );
    assert_eq!(bad["isError"], json!(true), "{bad}");
    let update = s.call(
        "update_repo_files",
        json!({"repo_id": a.to_string(), "operations": [
            {"type": "write", "path": "src/new.rs", "content": CONTENT},
            {"type": "delete", "path": "src/lib.rs"}
        ]}),
    );
    let new_head = update["structuredContent"]["head"]
        .as_str()
        .unwrap()
        .to_string();
    let minted = s.call(
        "create_scoped_token",
        json!({"name": "stdio-child", "repo_ids": [a.to_string()], "ttl_seconds": 600}),
    );
    let token = minted["structuredContent"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = s.call("revoke_token", json!({"token": token}));
    assert_eq!(revoked["isError"], json!(false), "{revoked}");
    s.finish();

    // No waiting: the process has ended, so what it recorded is already written.
    // Records are ordered by when their call began, to the millisecond; a write's is
    // written at once and a read's in the next batch, so within one millisecond they
    // may stand in either order: ties are put in call order here.
    let calls = [
        ("read_file", "ok"),
        ("read_file", "refused"),
        ("search_repo", "ok"),
        ("search_repo", "error"),
        ("update_repo_files", "ok"),
        ("create_scoped_token", "ok"),
        ("revoke_token", "ok"),
    ];
    let mut rows = all_rows(&h);
    rows.sort_by_key(|r| {
        let call = calls
            .iter()
            .position(|(a, o)| r.action == *a && r.outcome == *o);
        (r.at_ms, call)
    });
    let tools: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        tools,
        [
            "read_file",
            "read_file",
            "search_repo",
            "search_repo",
            "update_repo_files",
            "create_scoped_token",
            "revoke_token"
        ],
        "{rows:#?}"
    );
    for r in &rows {
        assert_eq!(r.surface, "stdio");
        assert_eq!(r.credential, "operator");
        assert!(r.duration_us > 0, "{r:?}");
    }
    let (a_s, b_s) = (a.to_string(), b.to_string());
    assert_eq!(
        (rows[0].repo.as_deref(), outcome(&rows[0])),
        (Some(a_s.as_str()), "ok")
    );
    assert_eq!(rows[1].repo.as_deref(), Some(b_s.as_str()));
    assert_eq!(outcome(&rows[1]), "refused");
    let reason = rows[1].reason.as_deref().unwrap();
    assert!(
        reason.contains("outside this session's scope") && reason.contains(&b_s),
        "{reason}"
    );
    assert_eq!(outcome(&rows[2]), "ok");
    assert_eq!(outcome(&rows[3]), "error");
    assert_eq!(rows[4].paths, Some(2));
    assert_eq!(rows[4].head_before.as_deref(), Some(head_a.as_str()));
    assert_eq!(rows[4].head_after.as_deref(), Some(new_head.as_str()));
    for r in &rows[5..7] {
        assert_eq!(r.subject.as_deref(), Some("stdio-child"), "{r:?}");
        assert_eq!(r.subject_id.as_deref(), Some(short_id(&token).as_str()));
        assert_eq!(outcome(r), "ok");
    }
    assert_nowhere(
        h.data_dir(),
        &[&log],
        &[&token, "CONTENT-7f3a", QUERY, "REGEX-91cd"],
    );
}

// Over HTTP each call is recorded with the bearer's name and short id, whether a repo
// token or an account key, and neither secret is written down.
#[tokio::test(flavor = "multi_thread")]
async fn http_calls_name_the_bearer_by_name_and_short_id() {
    let h = Harness::new();
    let a = h.repo(&[("src/lib.rs", CONTENT)]);
    let b = h.repo(&[("other.rs", "x\n")]);
    let token = h
        .store
        .create_token("http-agent", &[a], Some(600))
        .unwrap()
        .token;
    let key = h.store.create_account_key("ops-key").unwrap();
    let server = h.http(&[]);
    let agent = server.client(Some(&token)).await.unwrap();
    ok(&call(
        &agent,
        "read_file",
        json!({"repo_id": a.to_string(), "path": "src/lib.rs"}),
    )
    .await);
    refused(&call(&agent, "list_files", json!({"repo_id": b.to_string()})).await);
    let row = wait_for(&h, "the token's read", |r| r.action == "read_file").await;
    assert_eq!(row.surface, "http");
    assert_eq!(row.credential, "token http-agent");
    assert_eq!(
        row.credential_id.as_deref(),
        Some(short_id(&token).as_str())
    );
    let refusal = wait_for(&h, "the token's refusal", |r| r.action == "list_files").await;
    assert_eq!(refusal.outcome, "refused");
    assert!(refusal.reason.as_deref().unwrap().contains(&b.to_string()));

    let operator = server.client(Some(&key)).await.unwrap();
    ok(&call(&operator, "list_files", json!({"repo_id": b.to_string()})).await);
    let row = wait_for(&h, "the key's call", |r| {
        r.action == "list_files" && r.outcome == "ok"
    })
    .await;
    assert_eq!(row.credential, "account key ops-key");
    assert_eq!(row.credential_id.as_deref(), Some(short_id(&key).as_str()));
    drop(server);
    assert_nowhere(h.data_dir(), &[], &[&token, &key, "CONTENT-7f3a"]);
}

// Every REST request is recorded under its route template (never the concrete path,
// which for token routes holds the token), with its credential and outcome; mints and
// revocations name the token by short id; the records are written by the time the
// server has shut down on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn rest_requests_are_recorded_under_their_route_templates() {
    let h = Harness::new();
    let a = h.repo(&[("src/lib.rs", CONTENT)]);
    let b = h.repo(&[("other.rs", "x\n")]);
    let head_a = h.store.head(&a).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("api.log");
    let mut api = start_api_with(&h, std::fs::File::create(&log).unwrap().into(), &[]).await;
    let key = api.key.clone();
    let base = api.base.clone();
    let (status, _) = send(
        Method::GET,
        format!("{base}/repo/{a}/file/src/lib.rs"),
        Some(&key),
        None,
    )
    .await;
    assert!(status.is_success());
    let (status, _) = send(
        Method::POST,
        format!("{base}/repo/{a}/search"),
        Some(&key),
        Some(json!({"query": QUERY})),
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (status, minted) = send(
        Method::POST,
        format!("{base}/repo_token"),
        Some(&key),
        Some(json!({"name": "rest-child", "repo_ids": [a.to_string()], "ttl_seconds": 600})),
    )
    .await;
    assert!(status.is_success(), "{status} {minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    let (status, _) = send(Method::GET, format!("{base}/repo/{b}"), Some(&token), None).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let (status, put) = send(
        Method::POST,
        format!("{base}/repo/{a}/update"),
        Some(&token),
        Some(json!({"source": {"type": "diff", "operations": [{"type": "write", "filename": "b.txt", "content": CONTENT}]}})),
    )
    .await;
    assert!(status.is_success(), "{status} {put}");
    let (status, _) = send(
        Method::GET,
        format!("{base}/repo_token/{token}"),
        Some(&key),
        None,
    )
    .await;
    assert!(status.is_success());
    let (status, _) = send(
        Method::DELETE,
        format!("{base}/repo_token/{token}"),
        Some(&key),
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (status, _) = send(Method::GET, format!("{base}/repo"), None, None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let pid = api.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    api.child.wait().await.unwrap();

    let rows = all_rows(&h);
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "GET /v1/repo/{id}/file/{*path}",
            "POST /v1/repo/{id}/search",
            "POST /v1/repo_token",
            "GET /v1/repo/{id}",
            "POST /v1/repo/{id}/update",
            "GET /v1/repo_token/{token}",
            "DELETE /v1/repo_token/{token}",
            "GET /v1/repo",
        ],
        "{rows:#?}"
    );
    let key_id = short_id(&key);
    for i in [0, 1, 2, 5, 6] {
        assert_eq!(rows[i].surface, "api");
        assert_eq!(rows[i].credential, "account key api tests");
        assert_eq!(rows[i].credential_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(rows[i].outcome, "ok", "{:?}", rows[i]);
    }
    assert_eq!(rows[0].repo.as_deref(), Some(a.to_string().as_str()));
    for i in [2, 6] {
        assert_eq!(rows[i].subject.as_deref(), Some("rest-child"));
        assert_eq!(
            rows[i].subject_id.as_deref(),
            Some(short_id(&token).as_str())
        );
    }
    assert_eq!(rows[3].credential, "token rest-child");
    assert_eq!(rows[3].outcome, "refused");
    assert!(
        rows[3]
            .reason
            .as_deref()
            .unwrap()
            .contains("does not reach that repo"),
        "{:?}",
        rows[3]
    );
    assert_eq!(rows[4].paths, Some(1));
    assert_eq!(rows[4].head_before.as_deref(), Some(head_a.as_str()));
    assert_eq!(
        rows[4].head_after.as_deref(),
        put["repo_head"].as_str(),
        "{put}"
    );
    assert_eq!(
        (rows[7].credential.as_str(), rows[7].outcome.as_str()),
        ("anonymous", "refused")
    );
    assert_nowhere(
        h.data_dir(),
        &[&log],
        &[&token, &key, "CONTENT-7f3a", QUERY],
    );
}

fn run(h: &Harness, args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(args)
        .env_remove("RELACE_API_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// `token create` and `token revoke` are recorded; `audit --json` filters by token,
// repo and age; the text listing gives one escaped line a record.
#[tokio::test(flavor = "multi_thread")]
async fn commands_are_recorded_and_audit_filters_them() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let b = h.repo(&[("b.txt", "b\n")]);
    let token = run(
        &h,
        &[
            "token",
            "create",
            "--repo",
            &a.to_string(),
            "--name",
            "cli-agent",
        ],
    )
    .trim()
    .to_string();
    run(&h, &["token", "revoke", &token]);
    run(
        &h,
        &[
            "token",
            "create",
            "--repo",
            &b.to_string(),
            "--name",
            "second",
        ],
    );
    // A record from two hours ago, which `--since 1h` leaves out.
    let old = AuditRow {
        at_ms: (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64)
            - 2 * 3_600_000,
        surface: "stdio".into(),
        credential: "token cli-agent".into(),
        action: "read_file".into(),
        repo: Some(a.to_string()),
        outcome: "ok".into(),
        ..Default::default()
    };
    // A credential name with a line break (names made before the name rules were
    // tightened can hold one) must not forge a line of the listing.
    let forged = AuditRow {
        at_ms: old.at_ms + 2 * 3_600_000 + 60_000,
        credential: "token evil\nname".into(),
        action: "list_files".into(),
        repo: Some(b.to_string()),
        ..old.clone()
    };
    h.store.record_audit(&[old, forged]).unwrap();

    let by_token = json_lines(&run(&h, &["audit", "--json", "--token", "cli-agent"]));
    let actions: Vec<&str> = by_token
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["read_file", "token create", "token revoke"]);
    for v in &by_token[1..] {
        assert_eq!(v["surface"], "cli");
        assert_eq!(v["credential"], "operator");
        assert_eq!(v["subject_id"], json!(short_id(&token)));
    }
    let by_id = json_lines(&run(&h, &["audit", "--json", "--token", &short_id(&token)]));
    assert_eq!(by_id.len(), 2, "{by_id:?}");
    let recent = json_lines(&run(
        &h,
        &["audit", "--json", "--token", "cli-agent", "--since", "1h"],
    ));
    assert_eq!(recent.len(), 2, "{recent:?}");
    let on_b = json_lines(&run(&h, &["audit", "--json", "--repo", &b.to_string()]));
    assert_eq!(on_b.len(), 2, "{on_b:?}");
    assert_eq!(on_b[0]["subject"], "second");
    let last = json_lines(&run(&h, &["audit", "--json", "--limit", "1"]));
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["credential"], "token evil\nname");

    let text = run(&h, &["audit"]);
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("token evil\\nname"), "{text}");
    assert_nowhere(h.data_dir(), &[], &[&token]);
}

// `--audit-retention 0` keeps no trail at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_zero_retention_keeps_no_trail() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut s = StdioSession::start(
        &h,
        &["--repo", &a.to_string(), "--audit-retention", "0"],
        &[],
        &log,
    );
    s.call(
        "read_file",
        json!({"repo_id": a.to_string(), "path": "a.txt"}),
    );
    s.finish();
    assert!(all_rows(&h).is_empty());
}

/// The bytes a record holds in its text columns.
fn row_text_bytes(r: &AuditRow) -> usize {
    [&r.surface, &r.credential, &r.action, &r.outcome]
        .map(|c| c.len())
        .iter()
        .sum::<usize>()
        + [
            &r.credential_id,
            &r.repo,
            &r.reason,
            &r.head_before,
            &r.head_after,
            &r.subject,
            &r.subject_id,
        ]
        .iter()
        .map(|c| c.as_ref().map_or(0, String::len))
        .sum::<usize>()
}

// S2: a tool name of 8 MiB, or 200,000 repo ids in arguments, became audit rows of
// megabytes, kept for the whole retention.
#[tokio::test(flavor = "multi_thread")]
async fn caller_sized_fields_leave_small_audit_rows() {
    let h = Harness::new();
    let a = h.repo(&[("src/lib.rs", CONTENT)]);
    let token = h
        .store
        .mint(&scoped_repo_mcp::model::MintSpec {
            name: "reader".into(),
            repo_ids: vec![a],
            ttl_seconds: Some(600),
            read_only: true,
            paths: vec![],
            can_delegate: false,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token;
    let server = h.http(&[]);
    let agent = server.client(Some(&token)).await.unwrap();
    let huge_name = "n".repeat(8 << 20);
    let many: Vec<String> = (0..200_000)
        .map(|i| format!("00000000-0000-4000-8000-{i:012x}"))
        .collect();
    let _ = agent
        .call_tool(rmcp::model::CallToolRequestParams::new(huge_name))
        .await;
    // A tool whose schema names repos, and one whose schema does not have `repo_ids`.
    // Beyond a read-only token: refused at the door (403 insufficient_scope), and
    // recorded as the refused call it is.
    let denied = agent
        .call_tool(
            rmcp::model::CallToolRequestParams::new("create_scoped_token").with_arguments(
                json!({"name": "x", "repo_ids": many})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    assert!(denied.is_err(), "{denied:?}");
    ok(&call(
        &agent,
        "read_file",
        json!({"repo_id": a.to_string(), "path": "src/lib.rs", "repo_ids": many}),
    )
    .await);
    let unknown = wait_for(&h, "the unknown tool", |r| r.action == "(unknown tool)").await;
    assert_eq!(unknown.credential, "token reader");
    let mint = wait_for(&h, "the refused mint", |r| {
        r.action == "create_scoped_token"
    })
    .await;
    assert_eq!(mint.outcome, "refused");
    let repo = mint.repo.as_deref().unwrap();
    assert!(repo.starts_with(&many[0]), "{repo}");
    assert!(repo.ends_with("+199992 more"), "{repo}");
    let read = wait_for(&h, "the read", |r| r.action == "read_file").await;
    assert_eq!(read.repo.as_deref(), Some(a.to_string().as_str()));
    drop(server);
    for r in all_rows(&h) {
        assert!(row_text_bytes(&r) < 2048, "a large audit row: {r:?}");
    }
}

// A revoked or expired token's request was recorded as an "unrecognized credential",
// so the trail could not say which grant was still in use.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_was_recorded_as_unrecognized() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let token = h.store.create_token("lapsed", &[id], None).unwrap().token;
    h.store.revoke_token(&token).unwrap();
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let (s, body) = send(
        Method::GET,
        format!("{}/repo/{id}", api.base),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::UNAUTHORIZED, "{body}");
    let row = wait_for(&h, "the revoked token's request", |r| {
        r.action == "GET /v1/repo/{id}" && r.outcome == "refused"
    })
    .await;
    assert_eq!(row.credential, "revoked token");
    assert_eq!(
        row.credential_id.as_deref(),
        Some(short_id(&token).as_str())
    );
}

// A REST write whose client hung up before its answer landed without its audit record:
// the record was written after the handler, in the request's future, which the closed
// connection dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_rest_write_whose_client_hung_up_landed_without_a_record() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let addr = api
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    const WRITES: usize = 8;
    for i in 0..WRITES {
        let body = json!({"source": {"type": "diff", "operations": [
            {"type": "write", "filename": format!("f{i}.txt"), "content": "x".repeat(2 << 20)}]}})
        .to_string();
        let head = format!(
            "POST /v1/repo/{r}/update HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            api.key,
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(body.as_bytes()).await.unwrap();
        // Gone before the answer.
        drop(tcp);
    }
    // Every write that landed has its record, as another process reads the trail.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (landed, recorded) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let landed = (0..WRITES)
            .filter(|i| {
                let out = std::process::Command::new("git")
                    .arg("--git-dir")
                    .arg(h.store.git_dir(&r))
                    .args(["cat-file", "-e", &format!("main:f{i}.txt")])
                    .output()
                    .unwrap();
                out.status.success()
            })
            .count();
        let records = json_lines(&run(&h, &["audit", "--json", "--repo", &r.to_string()]));
        let recorded = records
            .iter()
            .filter(|v| {
                v["action"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("/update")
                    && v["outcome"] == "ok"
            })
            .count();
        if (landed == WRITES && recorded == WRITES) || std::time::Instant::now() > deadline {
            break (landed, recorded);
        }
    };
    assert!(landed > 0, "no write landed");
    assert_eq!(recorded, landed, "every landed write has its record");
}
