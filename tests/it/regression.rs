//! Regression tests, each named after what broke. The servers run inside the test on
//! 127.0.0.1:0 (`serve --transport http` built from its command line, and `api`), and
//! the clients are real TCP connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use scoped_repo_mcp::cli::{Cli, Command};
use scoped_repo_mcp::config::ServeConfig;
use scoped_repo_mcp::connections::ConnectionLimits;
use scoped_repo_mcp::http::Lifecycle;
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
            scoped_repo_mcp::serve::serve_http(&config, listener, l, s)
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
