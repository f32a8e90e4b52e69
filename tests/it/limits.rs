//! The cheap denials of service of both HTTP servers: the `Host`/`Origin` allow lists and
//! the per-credential cap on requests in flight on `api` (git routes included), and the
//! total deadline on request bodies on `api` and `serve --transport http`. Clients are
//! raw TCP connections to servers on 127.0.0.1:0.

use std::process::Stdio;
use std::time::Duration;

use scoped_repo_mcp::model::{MintSpec, RepoId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::start_api_with;
use crate::common::Harness;

/// Long enough for anything to happen on a loaded machine; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// An answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lowercased.
    head: String,
    body: serde_json::Value,
}

/// The `host:port` of a base URL `http://host:port/v1`.
fn addr_of(base: &str) -> String {
    base.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Send `head` (request line and headers, without the blank line) and `body` on a new
/// connection to `addr`.
async fn open(addr: &str, head: &str, body: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp.write_all(body).await.unwrap();
    tcp
}

/// The answer on `tcp`; panics when none comes within [`PATIENCE`].
async fn answer(tcp: &mut (impl AsyncRead + Unpin), what: &str) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            bytes.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&bytes).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .to_lowercase()
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: ").map(str::to_string))
                    .and_then(|l| l.trim().parse::<usize>().ok());
                if n == 0 || length.is_some_and(|l| body.len() >= l) {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    })
    .await;
    let text = read.unwrap_or_else(|_| panic!("{what}: no answer after {PATIENCE:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: not an HTTP answer: {text:?}"));
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}

/// A whole request on a new connection, and its answer.
async fn request(addr: &str, head: &str) -> Answer {
    let mut tcp = open(addr, &format!("{head}\r\nConnection: close"), b"").await;
    answer(&mut tcp, head).await
}

fn read_only_token(h: &Harness, repo: RepoId) -> String {
    h.store
        .mint(&MintSpec {
            name: "reader".into(),
            repo_ids: vec![repo],
            ttl_seconds: Some(600),
            read_only: true,
            paths: vec![],
            can_delegate: false,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token
}

// `api` answered any Host and any Origin, git routes included: a page in a browser, or
// a DNS-rebinding name pointing at loopback, could drive it.
#[tokio::test(flavor = "multi_thread")]
async fn api_answered_a_foreign_host_and_origin() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let addr = addr_of(&api.base);
    let key = &api.key;
    let list = format!("GET /v1/repo HTTP/1.1\r\nAuthorization: Bearer {key}");
    let refs = format!(
        "GET /v1/repo/{r}.git/info/refs?service=git-upload-pack HTTP/1.1\r\nAuthorization: Bearer {key}"
    );
    for route in [&list, &refs] {
        let ok = request(&addr, &format!("{route}\r\nHost: {addr}")).await;
        assert_eq!(ok.status, 200, "{route}: {ok:?}");
        let foreign_host = request(&addr, &format!("{route}\r\nHost: rebound.example")).await;
        assert_eq!(foreign_host.status, 403, "{route}: {foreign_host:?}");
        assert_eq!(
            foreign_host.body["detail"],
            "this Host is not allowed (see --allowed-host)"
        );
        let foreign_origin = request(
            &addr,
            &format!("{route}\r\nHost: {addr}\r\nOrigin: https://evil.example"),
        )
        .await;
        assert_eq!(foreign_origin.status, 403, "{route}: {foreign_origin:?}");
        assert_eq!(
            foreign_origin.body["detail"],
            "this Origin is not allowed (see --allowed-origin)"
        );
    }
    // The same flags as `serve` widen the lists.
    let named = start_api_with(&h, Stdio::null(), &["--allowed-host", "api.internal"]).await;
    let addr = addr_of(&named.base);
    let key = &named.key;
    let ok = request(
        &addr,
        &format!("GET /v1/repo HTTP/1.1\r\nAuthorization: Bearer {key}\r\nHost: api.internal"),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

// S6: twenty slow request bodies from one read-only token held every `api` connection,
// and every other caller got 503; `api` had no per-credential cap and no body deadline.
#[tokio::test(flavor = "multi_thread")]
async fn one_token_with_slow_bodies_held_every_api_connection() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let token = read_only_token(&h, r);
    let api = start_api_with(
        &h,
        Stdio::null(),
        &[
            "--max-connections",
            "5",
            "--max-concurrent-per-token",
            "2",
            "--body-timeout",
            "3s",
        ],
    )
    .await;
    let addr = addr_of(&api.base);
    let slow = format!(
        "POST /v1/repo/{r}/search HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000"
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open(&addr, &slow, b"{\"query\":").await);
    }
    // Past its two, the token is refused at once, with a message and Retry-After.
    let mut answers = futures::future::join_all(
        held.iter_mut()
            .map(|tcp| async { answer(tcp, "a slow body").await }),
    )
    .await;
    answers.sort_by_key(|a| a.status);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    // The two admitted are cut at the body deadline.
    assert_eq!(statuses, [408, 408, 429, 429], "{answers:#?}");
    for busy in &answers[2..] {
        assert_eq!(
            busy.body["detail"],
            scoped_repo_mcp::in_flight::BUSY,
            "{busy:?}"
        );
        assert!(busy.head.contains("retry-after: 1"), "{busy:?}");
    }
    for cut in &answers[..2] {
        assert_eq!(
            cut.body["detail"],
            "the request body did not arrive within 3s (see --body-timeout); send it faster or in smaller requests"
        );
    }
}

// S6, the other side: while one token holds its whole budget with slow bodies, another
// credential is served.
#[tokio::test(flavor = "multi_thread")]
async fn another_credential_is_served_while_one_token_holds_its_budget() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let token = read_only_token(&h, r);
    let api = start_api_with(
        &h,
        Stdio::null(),
        &["--max-connections", "4", "--max-concurrent-per-token", "2"],
    )
    .await;
    let addr = addr_of(&api.base);
    let slow = format!(
        "POST /v1/repo/{r}/search HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000"
    );
    let mut slow_ones = Vec::new();
    for _ in 0..3 {
        slow_ones.push(open(&addr, &slow, b"{").await);
    }
    // One of the three is refused at once (whichever the server saw last); the other
    // two stay open, waiting on their bodies.
    let (busy, _, _) = futures::future::select_all(
        slow_ones
            .iter_mut()
            .map(|tcp| Box::pin(async { answer(tcp, "the slow bodies").await })),
    )
    .await;
    assert_eq!(busy.status, 429, "{busy:?}");
    assert_eq!(busy.body["detail"], scoped_repo_mcp::in_flight::BUSY);
    let other = request(
        &addr,
        &format!(
            "GET /v1/repo/{r} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}",
            api.key
        ),
    )
    .await;
    assert_eq!(other.status, 200, "{other:?}");
}

// A body trickling in held its `serve --transport http` connection as long as it kept
// a byte moving within the idle timeout: bodies had no total deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_body_held_an_mcp_connection() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let token = h.store.create_token("t", &[r], Some(600)).unwrap().token;
    let server = h.http(&["--body-timeout", "2s", "--idle-timeout", "1s"]);
    let addr = server.addr.clone();
    let tcp = open(
        &addr,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: 1000"
        ),
        b"{",
    )
    .await;
    let (mut reader, mut writer) = tcp.into_split();
    // One byte every half second: never idle for the idle timeout.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b" ").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let cut = tokio::select! {
        cut = answer(&mut reader, "the trickling body") => cut,
        _ = trickle => unreachable!(),
    };
    assert_eq!(cut.status, 408, "{cut:?}");
    assert_eq!(
        cut.body["error"],
        "the request body did not arrive within 2s (see --body-timeout); send it faster or in smaller requests"
    );
}
