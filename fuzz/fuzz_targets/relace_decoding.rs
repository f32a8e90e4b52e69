//! Fuzz target: the Relace client reading any answer to each of its calls — any status,
//! headers and body — always returns a clean error or a value, never panics, and never
//! puts its credential in a message.
//!
//! The client is the real one, over a real HTTP connection to a server in this process
//! that answers every request with the fuzzed response, so each call's own decoding
//! (status errors, retries and `Retry-After`, JSON bodies, the search's event stream,
//! the read's `x-repo-head` header, the token calls' echo checks) runs as it does in use.
//!
//! Input: the first line is the status code; the lines after it, up to an empty line,
//! are headers (`name: value`); the rest is the body. The harness frames the body
//! itself (`content-length`, `connection: close`) and drops `location`, so the client
//! never follows a redirect out of this process.
#![no_main]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::model::{Change, FileOp, LineQuery, MintSpec, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::relace::{RelaceClient, RelaceError, RetryPolicy};

/// The client's credential, which a body may echo: it must never reach a message.
const CREDENTIAL: &str = "rlcr-0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69";

struct Harness {
    runtime: tokio::runtime::Runtime,
    client: RelaceClient,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Vec::new()));
        let shared = answer.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if read_request(&mut stream).is_err() {
                    continue;
                }
                let bytes = shared.lock().unwrap().clone();
                let _ = stream.write_all(&bytes);
                let _ = stream.flush();
            }
        });
        let policy = RetryPolicy {
            // One retry, with no backoff, and any `Retry-After` past a millisecond
            // reported rather than waited for: every branch, no sleeping.
            max_retries: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_retry_after: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
        };
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: RelaceClient::new(&base, CREDENTIAL, policy).expect("a client"),
            answer,
        }
    })
}

/// Read one request (head and `content-length` body) so the answer follows it.
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)
}

/// The HTTP response the input describes, or `None` when its status is not a final one.
fn response(data: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let status: u16 = lines.next()?.trim().parse().ok()?;
    if !(200..=599).contains(&status) {
        return None; // 1xx are interim answers: the client would wait for the real one.
    }
    let mut out = format!("HTTP/1.1 {status} Fuzz\r\n").into_bytes();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let framing = [
            "content-length",
            "transfer-encoding",
            "connection",
            "location",
        ];
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || framing.iter().any(|f| name.eq_ignore_ascii_case(f))
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        {
            continue;
        }
        out.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    Some(out)
}

fn clean<T>(call: &str, status: u16, result: Result<T, RelaceError>) -> Result<T, String> {
    result.map_err(|e| {
        let message = e.to_string();
        assert!(
            !message.contains(CREDENTIAL),
            "{call}: the credential is in the message: {message}"
        );
        if let Some(s) = e.status() {
            assert_eq!(s, status, "{call}: {message}");
        }
        message
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = response(data) else {
        return;
    };
    let status: u16 = String::from_utf8_lossy(data)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let h = harness();
    *h.answer.lock().unwrap() = bytes;
    let c = &h.client;
    let repo: RepoId = REPO.parse().unwrap();
    let path = RepoPath::parse("src/main.rs").unwrap();
    let failed = !(200..300).contains(&status);
    h.runtime.block_on(async {
        let got = clean("get_repo", status, c.get_repo(&repo).await);
        assert!(
            !failed || got.is_err() || (status == 404 && matches!(got, Ok(None))),
            "get_repo succeeded on {status}"
        );
        let got = clean("read_file", status, c.read_file(&repo, &path).await);
        assert!(!failed || got.is_err(), "read_file succeeded on {status}");
        let got = clean("clone_repo", status, c.clone_repo(&repo).await);
        assert!(!failed || got.is_err(), "clone_repo succeeded on {status}");
        let update = UpdateSpec {
            change: Change::Operations(vec![FileOp::Write {
                path: path.clone(),
                content: "fn main() {}\n".into(),
            }]),
            expected_head: None,
            message: Some("fuzz".into()),
            control: Default::default(),
            visible: None,
        };
        let got = clean("update", status, c.update(&repo, &update).await);
        assert!(!failed || got.is_err(), "update succeeded on {status}");
        let query = LineQuery {
            pattern: "fn main".into(),
            regex: false,
            case_sensitive: true,
            path_glob: None,
            visible: None,
            max_results: 50,
            context_lines: 1,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let got = clean("search", status, c.search(&repo, &query, Some(tx)).await);
        assert!(!failed || got.is_err(), "search succeeded on {status}");
        while let Ok(event) = rx.try_recv() {
            assert!(
                !event.contains(CREDENTIAL),
                "an event relays the credential"
            );
        }
        let got = clean(
            "retrieve",
            status,
            c.retrieve(&repo, "where is main", true, 0.3, 800).await,
        );
        assert!(!failed || got.is_err(), "retrieve succeeded on {status}");
        let spec = MintSpec {
            name: "fuzz".into(),
            repo_ids: vec![repo],
            ttl_seconds: Some(600),
            read_only: true,
            paths: vec!["src/**".into()],
            can_delegate: false,
            parent: None,
            rate: None,
        };
        let got = clean("create_token", status, c.create_token(&spec).await);
        assert!(
            !failed || got.is_err(),
            "create_token succeeded on {status}"
        );
        let got = clean("get_token", status, c.get_token(CREDENTIAL).await);
        assert!(!failed || got.is_err(), "get_token succeeded on {status}");
        let got = clean("delete_token", status, c.delete_token(CREDENTIAL).await);
        assert!(
            !failed || got.is_err() || (status == 404 && matches!(got, Ok(false))),
            "delete_token succeeded on {status}"
        );
    });
});
