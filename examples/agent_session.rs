//! A whole agent session through rmcp's client over stdio: list, search, read, update,
//! mint a token for a sub-agent, use it, revoke it.
//!
//! ```sh
//! cargo build && cargo run --example agent_session
//! ```
//! It makes a throw-away store with one repo, then drives `scoped-repo-mcp serve`
//! (the binary next to the example's target directory, or `$SCOPED_REPO_MCP_BIN`).

use std::path::PathBuf;
use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::{Limits, Store};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SCOPED_REPO_MCP_BIN") {
        return p.into();
    }
    // target/<profile>/examples/agent_session -> target/<profile>/scoped-repo-mcp
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("scoped-repo-mcp")
}

async fn connect(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Client> {
    let bin = binary();
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `cargo build` first or set SCOPED_REPO_MCP_BIN",
        bin.display()
    );
    let (data_dir, args) = (
        data_dir.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cmd = tokio::process::Command::new(bin).configure(move |c| {
        c.arg("--data-dir")
            .arg(&data_dir)
            .arg("serve")
            .args(&args)
            .env("RUST_LOG", "warn");
        for (k, v) in &env {
            c.env(k, v);
        }
    });
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(().serve(transport).await?)
}

async fn call(client: &Client, tool: &str, args: Value) -> anyhow::Result<CallToolResult> {
    let Value::Object(map) = args else {
        anyhow::bail!("arguments must be an object")
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(map))
        .await?;
    let text: Vec<String> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    println!(
        "── {tool}{}\n{}\n",
        if result.is_error == Some(true) {
            " (tool error)"
        } else {
            ""
        },
        text.join("\n")
    );
    Ok(result)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Limits::default())?;
    let files = vec![
        (RepoPath::parse("src/retry.rs")?, "/// Delay before attempt `n`.\npub fn backoff_ms(n: u32) -> u64 {\n    100 * 2u64.pow(n)\n}\n".to_string()),
        (RepoPath::parse("README.md")?, "# demo\n".to_string()),
    ];
    let (row, _) = store.create_repo([("name".to_string(), "demo".to_string())].into(), &files)?;
    let id = row.id.to_string();
    drop(store);

    let operator = connect(dir.path(), &["--repo", &id], &[]).await?;
    call(&operator, "list_repos", json!({})).await?;
    call(
        &operator,
        "search_repo",
        json!({"repo_id": id, "query": "backoff", "context_lines": 1}),
    )
    .await?;
    let read = call(
        &operator,
        "read_file",
        json!({"repo_id": id, "path": "src/retry.rs"}),
    )
    .await?;
    let head = read
        .structured_content
        .as_ref()
        .and_then(|v| v["head"].as_str())
        .unwrap_or_default()
        .to_string();
    call(&operator, "update_repo_files", json!({
        "repo_id": id,
        "expected_head": head,
        "message": "Cap the backoff",
        "operations": [{"type": "write", "path": "src/retry.rs", "content": "/// Delay before attempt `n`, capped at 10 s.\npub fn backoff_ms(n: u32) -> u64 {\n    (100 * 2u64.pow(n.min(20))).min(10_000)\n}\n"}]
    })).await?;
    // The same expected_head again is refused: the repo moved on.
    call(&operator, "update_repo_files", json!({"repo_id": id, "expected_head": head, "operations": [{"type": "delete", "path": "README.md"}]})).await?;

    let minted = call(
        &operator,
        "create_scoped_token",
        json!({"name": "sub-agent", "repo_ids": [id], "ttl_seconds": 600}),
    )
    .await?;
    let token = minted
        .structured_content
        .as_ref()
        .and_then(|v| v["token"].as_str())
        .unwrap_or_default()
        .to_string();
    let sub = connect(
        dir.path(),
        &["--backend", "local"],
        &[("RELACE_API_KEY", &token)],
    )
    .await?;
    call(&sub, "list_files", json!({"repo_id": id})).await?;
    call(&operator, "revoke_token", json!({"token": token})).await?;
    let refused = call(&sub, "list_files", json!({"repo_id": id})).await?;
    anyhow::ensure!(
        refused.is_error == Some(true),
        "a revoked token must be refused"
    );
    println!("session complete: the sub-agent's token was refused after revocation");
    Ok(())
}
