//! Fuzz target: any JSON arguments to any tool, sent as a JSON-RPC `tools/call` line to
//! the real server (the stdio set-up: `RepoServer` on the local backend, scope fixed to
//! one repo) over an in-process pipe, so the server's own decoding, guard and dispatch
//! judge them. The server must answer every call, fail no call as its own fault, and
//! leave everything outside its scope as it was: the second repo's head and files, a
//! token of the second repo, and the data directory's surroundings.
//!
//! Input: the first line is the tool's name; the rest is the arguments as JSON. In the
//! arguments, `$IN` and `$OUT` stand for the in-scope and out-of-scope repo IDs,
//! `$TOKEN_IN` for a fresh token of the in-scope repo and `$TOKEN_OUT` for a token of
//! the other, so seeds (and mutations of them) reach past the ID checks. With
//! `FUZZ_SHOW` set, each call and its answer are printed to stderr.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rmcp::ServiceExt;
use scoped_repo_mcp::backend::{Backend, LocalBackend};
use scoped_repo_mcp::model::{MintSpec, RepoId};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::scope::Scope;
use scoped_repo_mcp::server::{RepoServer, ServerSettings, registry};
use scoped_repo_mcp::store::{Limits, Store, TokenState};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

/// What a tool answers when the server failed inside (`respond` and `dispatch`).
const INTERNAL: &str = "the server failed to complete this call";

struct Pipe {
    next_id: u64,
    to_server: WriteHalf<DuplexStream>,
    from_server: BufReader<ReadHalf<DuplexStream>>,
}

struct Outside {
    head: String,
    files: Vec<(String, Vec<u8>)>,
    token: String,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    pipe: Mutex<Pipe>,
    store: Arc<Store>,
    inside: RepoId,
    outside_id: RepoId,
    outside: Outside,
    /// The temporary directory holding the store (`data`) and a neighbour (`next-door`).
    root: PathBuf,
    _dir: tempfile::TempDir,
}

const FILES: [(&str, &str); 4] = [
    ("README.md", "# Demo\n\nA small repo for the tools.\n"),
    ("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n"),
    (
        "src/lib/parse.rs",
        "pub fn parse(s: &str) -> usize {\n    s.len()\n}\n",
    ),
    (
        "web/app.ts",
        "export function start(port: number) {\n  return port;\n}\n",
    ),
];

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("next-door")).unwrap();
        std::fs::write(root.join("next-door/keep.txt"), "untouched\n").unwrap();
        let store = Arc::new(Store::open(&root.join("data"), Limits::default()).unwrap());
        let files: Vec<(RepoPath, String)> = FILES
            .iter()
            .map(|(p, c)| (RepoPath::parse(p).unwrap(), c.to_string()))
            .collect();
        let mut meta = BTreeMap::new();
        meta.insert("name".to_string(), "inside".to_string());
        let inside = store.create_repo(meta.clone(), &files).unwrap().0.id;
        meta.insert("name".to_string(), "outside".to_string());
        let outside_id = store.create_repo(meta, &files).unwrap().0.id;
        let token = mint(&store, outside_id);
        let outside = Outside {
            head: store.head(&outside_id).unwrap(),
            files: snapshot(&store, &outside_id),
            token,
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = RepoServer::new(
            Arc::new(LocalBackend::new(store.clone())) as Arc<dyn Backend>,
            Scope::operator([inside]),
            ServerSettings::default(),
        );
        let (client_end, server_end) = tokio::io::duplex(1 << 20);
        let (from_client, to_client) = tokio::io::split(server_end);
        runtime.spawn(async move {
            if let Ok(running) = server.serve((from_client, to_client)).await {
                let _ = running.waiting().await;
            }
        });
        let (from_server, to_server) = tokio::io::split(client_end);
        let mut pipe = Pipe {
            next_id: 1,
            to_server,
            from_server: BufReader::new(from_server),
        };
        runtime.block_on(async {
            let init = json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "0"}
            });
            let answer = pipe.request("initialize", init).await;
            assert!(answer.get("result").is_some(), "initialize: {answer}");
            pipe.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
        });
        Harness {
            runtime,
            pipe: Mutex::new(pipe),
            store,
            inside,
            outside_id,
            outside,
            root,
            _dir: dir,
        }
    })
}

fn mint(store: &Store, repo: RepoId) -> String {
    store
        .mint(&MintSpec {
            name: "fuzz".into(),
            repo_ids: vec![repo],
            ttl_seconds: Some(24 * 3600),
            ..Default::default()
        })
        .unwrap()
        .token
}

fn snapshot(store: &Store, id: &RepoId) -> Vec<(String, Vec<u8>)> {
    store
        .list_files(id)
        .unwrap()
        .paths
        .into_iter()
        .map(|p| {
            let bytes = store.read_bytes(id, &RepoPath::parse(&p).unwrap()).unwrap();
            (p, bytes)
        })
        .collect()
}

impl Pipe {
    async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.to_server
            .write_all(&line)
            .await
            .expect("the server hung up");
        self.to_server.flush().await.unwrap();
    }

    /// Send a request and wait for its answer (or for the transport's answer to a
    /// message it could not read, which carries no ID).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let wait = async {
            loop {
                let mut line = String::new();
                let n = self.from_server.read_line(&mut line).await.unwrap();
                assert!(n > 0, "the server closed the pipe");
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    panic!("the server wrote a line that is not JSON: {line:?}");
                };
                match message.get("id") {
                    Some(got) if *got == json!(id) => return message,
                    Some(Value::Null) if message.get("error").is_some() => return message,
                    _ => {} // A notification, or a request of the server's own.
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} in 60 s"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (tool, args) = input.split_once('\n').unwrap_or((input, "{}"));
    let h = harness();
    let mut args = args
        .replace("$IN", &h.inside.to_string())
        .replace("$OUT", &h.outside_id.to_string())
        .replace("$TOKEN_OUT", &h.outside.token);
    if args.contains("$TOKEN_IN") {
        args = args.replace("$TOKEN_IN", &mint(&h.store, h.inside));
    }
    let Ok(arguments) = serde_json::from_str::<Value>(&args) else {
        return;
    };
    let known = registry().any(|spec| spec.name == tool);

    let answer = h.runtime.block_on(async {
        let mut pipe = h.pipe.lock().unwrap();
        pipe.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    });

    if std::env::var_os("FUZZ_SHOW").is_some() {
        eprintln!("{tool} {args}\n=> {answer}");
    }
    if let Some(error) = answer.get("error") {
        // -32603: the server's own failure.
        assert_ne!(error["code"], json!(-32603), "{tool}: {answer}");
    } else {
        let result = &answer["result"];
        let text = result["content"].to_string();
        assert!(
            !text.contains(INTERNAL),
            "{tool} failed inside the server on {args}: {answer}"
        );
        if !known {
            assert_eq!(
                result["isError"],
                json!(true),
                "unknown tool {tool:?}: {answer}"
            );
        }
    }

    // Nothing outside the scope moved.
    let out = &h.outside;
    assert_eq!(
        h.store.head(&h.outside_id).unwrap(),
        out.head,
        "{tool} moved the out-of-scope repo's head: {args}"
    );
    assert!(
        snapshot(&h.store, &h.outside_id) == out.files,
        "{tool} changed the out-of-scope repo's files: {args}"
    );
    assert_eq!(
        h.store.token(&out.token).unwrap().0,
        TokenState::Live,
        "{tool} revoked the out-of-scope repo's token: {args}"
    );
    let mut around: Vec<String> = std::fs::read_dir(&h.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    around.sort();
    assert_eq!(around, ["data", "next-door"], "{tool}: {args}");
    assert_eq!(
        std::fs::read_to_string(h.root.join("next-door/keep.txt")).unwrap(),
        "untouched\n"
    );
});
