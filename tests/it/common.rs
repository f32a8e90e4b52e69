//! Shared set-up: a temporary store, servers spawned as child processes, and small
//! helpers to call tools and read their answers.
//!
//! A [`Harness`] runs `serve` on one of two backends over the same store: `local`
//! (the store itself) or `relace` (the `api` server on the store, started in this
//! process on 127.0.0.1:0, and `serve --backend relace` pointed at it with an account
//! key). [`on_both_backends!`] runs one behaviour test against each.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use scoped_repo_mcp::model::RepoId;
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::Value;
use tempfile::TempDir;

pub type Client = RunningService<RoleClient, ()>;

pub const BIN: &str = env!("CARGO_BIN_EXE_scoped-repo-mcp");

/// The `api` server of a relace harness.
pub struct Api {
    /// Its base URL, `http://127.0.0.1:PORT/v1`.
    pub base: String,
    /// An account key it accepts.
    pub key: String,
}

pub struct Harness {
    pub dir: TempDir,
    pub store: Arc<Store>,
    pub api: Option<Api>,
}

/// Run each named `async fn(Harness)` as two tests: `NAME::local` and `NAME::relace`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn local() {
                super::$name($crate::common::Harness::new()).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn relace() {
                super::$name($crate::common::Harness::relace()).await
            }
        }
    )*};
}

impl Harness {
    /// A harness whose servers run on the local backend.
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A harness whose store lives in a fresh directory under `parent`.
    pub fn new_in(parent: &Path) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let store = Arc::new(Store::open(dir.path(), Limits::default()).unwrap());
        Self {
            dir,
            store,
            api: None,
        }
    }

    /// A harness whose servers run on `--backend relace`, against an `api` server on
    /// the same store (inside this test's runtime).
    pub fn relace() -> Self {
        let mut h = Self::new();
        let key = h.store.create_account_key("tests").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(scoped_repo_mcp::api::serve(listener, h.store.clone()));
        h.api = Some(Api {
            base: format!("http://{addr}/v1"),
            key,
        });
        h
    }

    /// Whether servers run on the relace backend.
    pub fn is_relace(&self) -> bool {
        self.api.is_some()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self, files: &[(&str, &str)]) -> RepoId {
        let files: Vec<(RepoPath, String)> = files
            .iter()
            .map(|(p, c)| (RepoPath::parse(p).unwrap(), c.to_string()))
            .collect();
        let mut meta = BTreeMap::new();
        meta.insert("name".to_string(), "test".to_string());
        self.store.create_repo(meta, &files).unwrap().0.id
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let data_dir = self.data_dir().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::process::Command::new(BIN).configure(move |c| {
            c.arg("--data-dir")
                .arg(&data_dir)
                .args(&args)
                .env_remove("RELACE_API_KEY")
                .env_remove("SCOPED_REPO_IDS")
                .env("RUST_LOG", "scoped_repo_mcp=debug,warn");
        })
    }

    /// A client connected to `serve` with these extra arguments.
    pub async fn client(&self, args: &[&str]) -> Client {
        self.client_env(args, &[]).await
    }

    pub async fn client_env(&self, args: &[&str], env: &[(&str, &str)]) -> Client {
        let cmd = self.serve_command(args, env);
        let (transport, _stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        ().serve(transport).await.expect("initialize")
    }

    /// `serve` with these arguments and environment, on this harness's backend: for
    /// relace, any `--backend` given is replaced, and the account key is the
    /// credential unless `env` sets one.
    pub fn serve_command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut all = vec!["serve"];
        let mut skip = false;
        for a in args {
            if skip {
                skip = false;
                continue;
            }
            if self.api.is_some() && *a == "--backend" {
                skip = true;
                continue;
            }
            all.push(a);
        }
        if let Some(api) = &self.api {
            all.extend_from_slice(&["--backend", "relace", "--base-url", &api.base]);
        }
        let mut cmd = self.command(&all);
        if let Some(api) = &self.api
            && !env.iter().any(|(k, _)| *k == "RELACE_API_KEY")
        {
            cmd.env("RELACE_API_KEY", &api.key);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// A client scoped to exactly `repos`.
    pub async fn client_for(&self, repos: &[RepoId]) -> Client {
        let ids: Vec<String> = repos.iter().map(ToString::to_string).collect();
        let joined = ids.join(",");
        self.client(&["--repo", &joined]).await
    }
}

pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await
        .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
}

/// `list_repos` once no repo in scope is still being imported (a first `--import`
/// runs in the background), within a minute.
pub async fn list_repos_imported<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed = ok(&client
            .call_tool(CallToolRequestParams::new("list_repos"))
            .await
            .expect("list_repos"));
        if listed.get("importing").is_none() {
            return listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still importing after a minute: {listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The names of the tools a client is shown, sorted.
pub async fn tool_names<S: rmcp::service::Service<RoleClient>>(
    c: &RunningService<RoleClient, S>,
) -> Vec<String> {
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// The structured answer of a call that must have succeeded.
pub fn ok(result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "expected success, got {:?}",
        text(result)
    );
    result
        .structured_content
        .clone()
        .expect("structured content")
}

/// The text of a call that must have failed as a tool error.
pub fn refused(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error, got {:?}",
        result.structured_content
    );
    text(result)
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A server started with `serve --transport http` on a free loopback port.
pub struct HttpServer {
    pub child: std::process::Child,
    pub addr: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HttpServer {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// An MCP client over streamable HTTP bearing `token` (or none).
    pub async fn client(&self, token: Option<&str>) -> Result<Client, String> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url());
        if let Some(t) = token {
            config = config.auth_header(t.to_string());
        }
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(|e| e.to_string())
    }
}

impl Harness {
    /// Start `serve --transport http --listen 127.0.0.1:0` with these extra arguments.
    pub fn http(&self, args: &[&str]) -> HttpServer {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"])
            .args(args)
            .args(match &self.api {
                Some(api) => vec!["--backend", "relace", "--base-url", api.base.as_str()],
                None => vec![],
            })
            .env(
                "RELACE_API_KEY",
                self.api.as_ref().map(|a| a.key.as_str()).unwrap_or(""),
            );
        start_http(cmd)
    }
}

/// The one way tests start `serve --transport http`: `cmd` names the binary, its data
/// directory, `serve --transport http --listen 127.0.0.1:0` and any flags; this starts
/// it with no scope from the environment and waits until it says where it listens.
pub fn start_http(mut cmd: std::process::Command) -> HttpServer {
    use std::io::BufRead;
    let mut child = cmd
        .env_remove("SCOPED_REPO_IDS")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the HTTP server");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    HttpServer { child, addr }
}

impl Harness {
    /// A client with its own handler (to observe notifications), connected to `serve`.
    pub async fn client_with<H: rmcp::ClientHandler>(
        &self,
        handler: H,
        args: &[&str],
    ) -> RunningService<RoleClient, H> {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let (transport, _stderr) = TokioChildProcess::builder(self.command(&all))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        handler.serve(transport).await.expect("initialize")
    }
}

/// The bytes of one of the store's database files (`store.db`, `-wal`), read by a child
/// process, or `None` when it does not exist. This test process holds connections to
/// the store, and SQLite's locks belong to the process: reading the file here would
/// open and close a descriptor of it and drop every lock those connections hold.
pub fn read_db_file(path: &Path) -> Option<Vec<u8>> {
    let out = std::process::Command::new("cat")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .expect("run cat");
    out.status.success().then_some(out.stdout)
}

/// Run the `git` program in `dir` with `args`, `input` on its stdin; its output, once
/// it succeeded.
pub fn git_fed(dir: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    out
}
