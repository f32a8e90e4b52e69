//! `serve --backend relace` against a misbehaving endpoint: a proxy in front of the
//! real `api` server that answers 429 with Retry-After, 503, stalls, resets the
//! connection or sends malformed JSON on cue. Each tool answers a clear error or
//! succeeds after retrying, and no write is ever applied twice. The proxy's request log
//! also shows what the client asks for: nothing outside the scope, and no second
//! download of an unchanged repo.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, NumberOrString, ProgressNotificationParam,
    ProgressToken, RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{Harness, ok, refused, text};

/// What the proxy does to a request.
#[derive(Clone, Debug)]
enum Fault {
    /// Answer this status (with `Retry-After` seconds when given), without forwarding.
    Status(u16, Option<u32>),
    /// Forward (so a write lands), then answer this status instead of the real answer.
    AppliedThenStatus(u16),
    /// Wait this long before forwarding and answering.
    Stall(Duration),
    /// Forward, then stall: the write lands but its answer never comes in time.
    AppliedThenStall(Duration),
    /// Reset the connection without forwarding.
    Reset,
    /// Forward, then reset the connection.
    AppliedThenReset,
    /// Answer 200 with a truncated JSON body.
    Malformed,
    /// Forward, then drop these top-level fields from the JSON answer (an API that
    /// does not know them, as the hosted service does not know this product's
    /// extensions).
    Stripped(Vec<&'static str>),
    /// Answer 200 with this Server-Sent Events body.
    Events(String),
}

struct Rule {
    method: &'static str,
    /// A part of the path, or `=PATH` for exactly that path.
    path_contains: String,
    times: usize,
    fault: Fault,
}

#[derive(Clone)]
struct Proxy {
    base: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            base: format!("http://{addr}/v1"),
            rules: Arc::default(),
            hits: Arc::default(),
        };
        let (p, upstream) = (proxy.clone(), upstream.trim_end_matches("/v1").to_string());
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (p, upstream, http) = (p.clone(), upstream.clone(), http.clone());
                tokio::spawn(async move {
                    let _ = p.handle(conn, &upstream, &http).await;
                });
            }
        });
        proxy
    }

    fn on(&self, method: &'static str, path: impl Into<String>, times: usize, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            method,
            path_contains: path.into(),
            times,
            fault,
        });
    }

    /// How many requests with this method reached the proxy on a path holding `part`.
    fn hits(&self, method: &str, part: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.starts_with(method) && h.contains(part))
            .count()
    }

    async fn handle(
        &self,
        mut conn: TcpStream,
        upstream: &str,
        http: &reqwest::Client,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = vec![0u8; length - body.len()];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        self.hits.lock().unwrap().push(format!("{method} {path}"));
        let fault = {
            let mut rules = self.rules.lock().unwrap();
            rules
                .iter_mut()
                .find(|r| {
                    let on_path = match r.path_contains.strip_prefix('=') {
                        Some(exact) => path == exact,
                        None => path.contains(&r.path_contains),
                    };
                    r.times > 0 && r.method == method && on_path
                })
                .map(|r| {
                    r.times -= 1;
                    r.fault.clone()
                })
        };
        let forward = || async {
            let mut req = http.request(method.parse().unwrap(), format!("{upstream}{path}"));
            for (k, v) in &headers {
                if matches!(k.as_str(), "authorization" | "content-type" | "accept") {
                    req = req.header(k, v);
                }
            }
            let r = req.body(body.clone()).send().await.unwrap();
            let status = r.status().as_u16();
            let mut extra = String::new();
            for h in ["content-type", "x-repo-head"] {
                if let Some(v) = r.headers().get(h) {
                    extra.push_str(&format!("{h}: {}\r\n", v.to_str().unwrap()));
                }
            }
            (status, extra, r.bytes().await.unwrap().to_vec())
        };
        let (status, extra, answer) = match fault {
            None => forward().await,
            Some(Fault::Status(status, retry_after)) => {
                let mut extra = "content-type: application/json\r\n".to_string();
                if let Some(s) = retry_after {
                    extra.push_str(&format!("retry-after: {s}\r\n"));
                }
                (status, extra, br#"{"detail":"injected fault"}"#.to_vec())
            }
            Some(Fault::AppliedThenStatus(status)) => {
                forward().await;
                (
                    status,
                    "content-type: application/json\r\n".into(),
                    br#"{"detail":"injected fault after the write"}"#.to_vec(),
                )
            }
            Some(Fault::Stall(d)) => {
                tokio::time::sleep(d).await;
                forward().await
            }
            Some(Fault::AppliedThenStall(d)) => {
                let answer = forward().await;
                tokio::time::sleep(d).await;
                answer
            }
            Some(Fault::Reset) => {
                conn.set_zero_linger()?;
                return Ok(());
            }
            Some(Fault::AppliedThenReset) => {
                forward().await;
                conn.set_zero_linger()?;
                return Ok(());
            }
            Some(Fault::Stripped(fields)) => {
                let (status, extra, answer) = forward().await;
                let mut value: Value = serde_json::from_slice(&answer).unwrap();
                for f in fields {
                    value.as_object_mut().unwrap().remove(f);
                }
                (status, extra, serde_json::to_vec(&value).unwrap())
            }
            Some(Fault::Malformed) => (
                200,
                "content-type: application/json\r\n".into(),
                br#"{"files": [{"filename": "a.tx"#.to_vec(),
            ),
            Some(Fault::Events(events)) => (
                200,
                "content-type: text/event-stream\r\n".into(),
                events.into_bytes(),
            ),
        };
        let mut out = format!(
            "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        out.extend_from_slice(&answer);
        conn.write_all(&out).await?;
        conn.shutdown().await
    }
}

/// A client that keeps the progress messages it receives.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl ClientHandler for Recorder {
    fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.0
            .lock()
            .unwrap()
            .push(params.message.unwrap_or_default());
        std::future::ready(())
    }
}

struct Setup {
    h: Harness,
    proxy: Proxy,
    client: RunningService<RoleClient, Recorder>,
    progress: Recorder,
    repo: String,
}

/// A repo, the API, the proxy in front of it, and `serve --backend relace` through
/// the proxy with a one-second request timeout.
async fn setup() -> Setup {
    let h = Harness::relace();
    let repo = h.repo(&[("a.txt", "alpha\n"), ("src/lib.rs", "pub fn retry() {}\n")]);
    let api = h.api.as_ref().unwrap();
    let proxy = Proxy::start(&api.base).await;
    let id = repo.to_string();
    let mut cmd = h.command(&[
        "serve",
        "--repo",
        &id,
        "--backend",
        "relace",
        "--base-url",
        &proxy.base,
        "--request-timeout",
        "1s",
    ]);
    cmd.env("RELACE_API_KEY", &api.key);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = Recorder::default();
    let client = progress.clone().serve(transport).await.unwrap();
    Setup {
        h,
        proxy,
        client,
        progress,
        repo: id,
    }
}

async fn call(s: &Setup, tool: &str, args: Value, with_progress: bool) -> CallToolResult {
    let Value::Object(map) = args else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(map);
    if with_progress {
        params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::String("p1".into()),
        )));
    }
    s.client.call_tool(params).await.unwrap()
}

fn commits(s: &Setup) -> usize {
    let repo = git2::Repository::open_bare(s.h.store.git_dir(&s.repo.parse().unwrap())).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    walk.count()
}

fn write(s: &Setup, name: &str) -> Value {
    json!({"repo_id": s.repo, "operations": [{"type": "write", "path": name, "content": "x\n"}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_calls_wait_for_retry_after_then_succeed_writes_included() {
    let s = setup().await;
    s.proxy.on("GET", "/file/", 1, Fault::Status(429, Some(1)));
    let started = Instant::now();
    let read = ok(&call(
        &s,
        "read_file",
        json!({"repo_id": s.repo, "path": "a.txt"}),
        false,
    )
    .await);
    assert_eq!(read["content"], "alpha\n");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(s.proxy.hits("GET", "/file/"), 2);

    // A 429 refuses a write before applying it, so it is safe to send again.
    s.proxy
        .on("POST", "/update", 1, Fault::Status(429, Some(1)));
    let before = commits(&s);
    ok(&call(&s, "update_repo_files", write(&s, "b.txt"), false).await);
    assert_eq!(s.proxy.hits("POST", "/update"), 2);
    assert_eq!(commits(&s), before + 1, "applied exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_for_reads_and_a_write_is_never_sent_twice() {
    let s = setup().await;
    s.proxy.on("GET", "/file/", 2, Fault::Status(503, None));
    ok(&call(
        &s,
        "read_file",
        json!({"repo_id": s.repo, "path": "a.txt"}),
        false,
    )
    .await);
    assert_eq!(s.proxy.hits("GET", "/file/"), 3);

    s.proxy.on("GET", "/file/", 3, Fault::Status(503, None));
    let msg = refused(
        &call(
            &s,
            "read_file",
            json!({"repo_id": s.repo, "path": "a.txt"}),
            false,
        )
        .await,
    );
    assert!(
        msg.contains("503") && msg.contains("injected fault"),
        "{msg}"
    );
    assert!(msg.contains("try again later"), "says what to do: {msg}");

    let before = commits(&s);
    s.proxy
        .on("POST", "/update", 1, Fault::AppliedThenStatus(503));
    let msg = refused(&call(&s, "update_repo_files", write(&s, "c.txt"), false).await);
    assert!(msg.contains("may or may not have been applied"), "{msg}");
    assert_eq!(
        s.proxy.hits("POST", "/update"),
        1,
        "the write was not resent"
    );
    assert_eq!(commits(&s), before + 1, "applied exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_answer_times_out_a_read_is_retried_a_write_is_not() {
    let s = setup().await;
    s.proxy
        .on("GET", "/clone", 1, Fault::Stall(Duration::from_secs(3)));
    let listed = ok(&call(&s, "list_files", json!({"repo_id": s.repo}), false).await);
    assert_eq!(listed["paths"], json!(["a.txt", "src/lib.rs"]));
    assert_eq!(s.proxy.hits("GET", "/clone"), 2);

    let before = commits(&s);
    s.proxy.on(
        "POST",
        "/update",
        1,
        Fault::AppliedThenStall(Duration::from_secs(3)),
    );
    let msg = refused(&call(&s, "update_repo_files", write(&s, "d.txt"), false).await);
    assert!(
        msg.contains("within 1s") && msg.contains("may or may not"),
        "{msg}"
    );
    assert_eq!(s.proxy.hits("POST", "/update"), 1);
    assert_eq!(commits(&s), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_connection_is_retried_for_reads_and_reported_for_writes() {
    let s = setup().await;
    s.proxy.on("GET", "/file/", 1, Fault::Reset);
    ok(&call(
        &s,
        "read_file",
        json!({"repo_id": s.repo, "path": "a.txt"}),
        false,
    )
    .await);
    assert_eq!(s.proxy.hits("GET", "/file/"), 2);

    let before = commits(&s);
    s.proxy.on("POST", "/update", 1, Fault::AppliedThenReset);
    let msg = refused(&call(&s, "update_repo_files", write(&s, "e.txt"), false).await);
    assert!(msg.contains("may or may not have been applied"), "{msg}");
    assert_eq!(s.proxy.hits("POST", "/update"), 1);
    assert_eq!(commits(&s), before + 1);

    // Reset before the write reached the store: reported the same way, nothing applied.
    s.proxy.on("POST", "/update", 1, Fault::Reset);
    refused(&call(&s, "update_repo_files", write(&s, "f.txt"), false).await);
    assert_eq!(s.proxy.hits("POST", "/update"), 2);
    assert_eq!(commits(&s), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_a_clear_error() {
    let s = setup().await;
    s.proxy.on("GET", "/clone", 1, Fault::Malformed);
    let msg = refused(&call(&s, "list_files", json!({"repo_id": s.repo}), false).await);
    assert!(msg.contains("not the expected JSON"), "{msg}");
    assert!(msg.contains("RELACE_BASE_URL"), "says what to check: {msg}");
    // The next call is answered normally.
    ok(&call(&s, "list_files", json!({"repo_id": s.repo}), false).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agentic_search_stream_is_relayed_as_progress_and_its_report_returned() {
    let s = setup().await;
    let events = "event: started\ndata: {\"query\": \"where is retry\"}\n\n\
                  event: tool\ndata: {\"name\": \"grep\", \"args\": \"retry\"}\n\n\
                  event: result\ndata: {\"files\": [{\"path\": \"src/lib.rs\", \"lines\": [1, 1]}], \"explanation\": \"retry lives in lib.rs\"}\n\n";
    s.proxy
        .on("POST", "/search", 1, Fault::Events(events.into()));
    let result = call(
        &s,
        "search_repo",
        json!({"repo_id": s.repo, "query": "where is retry", "mode": "literal"}),
        true,
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["mode"], "agentic");
    assert_eq!(out["report"]["files"][0]["path"], "src/lib.rs");
    assert!(text(&result).contains("retry lives in lib.rs"));
    // Notifications are handled on their own task; give the last one a moment.
    let mut progress = Vec::new();
    for _ in 0..50 {
        progress = s.progress.0.lock().unwrap().clone();
        if progress.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(progress.len(), 3, "{progress:?}");
    // Each notification is handled on its own task, so their order may vary here.
    for kind in ["started:", "tool:", "result:"] {
        assert!(progress.iter().any(|p| p.starts_with(kind)), "{progress:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_files_downloads_a_repo_again_only_when_its_head_moved() {
    let s = setup().await;
    let list = json!({"repo_id": s.repo});
    ok(&call(&s, "list_files", list.clone(), false).await);
    ok(&call(&s, "list_files", list.clone(), false).await);
    assert_eq!(
        s.proxy.hits("GET", "/clone"),
        1,
        "the second call used the cache"
    );
    ok(&call(&s, "update_repo_files", write(&s, "new.txt"), false).await);
    let after = ok(&call(&s, "list_files", list, false).await);
    assert!(
        after["paths"]
            .as_array()
            .unwrap()
            .contains(&json!("new.txt"))
    );
    assert_eq!(s.proxy.hits("GET", "/clone"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_outside_the_scope_is_ever_requested() {
    let s = setup().await;
    let other = s.h.repo(&[("secret.txt", "s\n")]).to_string();
    let calls = [
        ("read_file", json!({"repo_id": other, "path": "secret.txt"})),
        ("list_files", json!({"repo_id": other})),
        ("search_repo", json!({"repo_id": other, "query": "s"})),
        (
            "update_repo_files",
            json!({"repo_id": other, "operations": [{"type": "delete", "path": "secret.txt"}]}),
        ),
        (
            "create_scoped_token",
            json!({"name": "x", "repo_ids": [other]}),
        ),
    ];
    let before = s.proxy.hits.lock().unwrap().len();
    for (tool, args) in calls {
        refused(&call(&s, tool, args, false).await);
    }
    let hits = s.proxy.hits.lock().unwrap().clone();
    assert_eq!(
        hits.len(),
        before,
        "refused calls made no request: {hits:?}"
    );
    assert!(hits.iter().all(|h| !h.contains(&other)));
}

// The hosted service may refuse `GET /repo/{id}` to a repo token; the tools still work.
#[tokio::test(flavor = "multi_thread")]
async fn repos_whose_metadata_is_refused_are_still_listed_and_browsable() {
    let s = setup().await;
    s.proxy.on(
        "GET",
        format!("=/v1/repo/{}", s.repo),
        100,
        Fault::Status(403, None),
    );
    let listed = ok(&call(&s, "list_repos", json!({}), false).await);
    assert_eq!(listed["repos"][0]["repo_id"], s.repo);
    assert_eq!(listed["repos"][0]["head"], "");
    let list = json!({"repo_id": s.repo});
    ok(&call(&s, "list_files", list.clone(), false).await);
    let again = ok(&call(&s, "list_files", list, false).await);
    assert_eq!(again["paths"], json!(["a.txt", "src/lib.rs"]));
    assert_eq!(s.proxy.hits("GET", "/clone"), 2, "no version to cache by");
}

// Asked for a read-only token, an API that drops the extension (as the hosted service
// would) mints a read-write one: the client deletes it and says so, never handing out
// a token wider than asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_extension_the_api_drops_is_never_silently_lost() {
    let s = setup().await;
    s.proxy.on(
        "POST",
        "=/v1/repo_token",
        1,
        Fault::Stripped(vec!["read_only", "paths", "can_delegate"]),
    );
    let msg = refused(
        &call(
            &s,
            "create_scoped_token",
            json!({"name": "reviewer", "repo_ids": [s.repo], "ttl_seconds": 600, "read_only": true}),
            false,
        )
        .await,
    );
    assert!(
        msg.contains("does not support") && msg.contains("deleted"),
        "{msg}"
    );
    let tokens = s.h.store.tokens().unwrap();
    assert_eq!(tokens.len(), 1, "the API minted one token");
    assert!(tokens[0].revoked_at.is_some(), "and it was deleted at once");
    // Without the fault the same call works, and the token is read-only.
    let minted = ok(&call(
        &s,
        "create_scoped_token",
        json!({"name": "reviewer", "repo_ids": [s.repo], "ttl_seconds": 600, "read_only": true}),
        false,
    )
    .await);
    assert_eq!(minted["read_only"], true);
}
