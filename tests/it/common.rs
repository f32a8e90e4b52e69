//! Shared set-up: a temporary store, servers spawned as child processes, and small
//! helpers to call tools and read their answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

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

pub struct Harness {
    pub dir: TempDir,
    pub store: Store,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Limits::default()).unwrap();
        Self { dir, store }
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
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (transport, _stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        ().serve(transport).await.expect("initialize")
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
        use std::io::BufRead;
        let mut child = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["serve", "--transport", "http", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RELACE_API_KEY")
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
