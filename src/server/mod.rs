//! The MCP server: the seven tools, the scope guard they all pass, and the text an
//! agent reads at initialization.
//!
//! Tools live in three groups, one file each ([`read_tools`], [`write_tools`],
//! [`token_tools`]), merged in [`RepoServer::new`]. [`TOOL_RIGHTS`] is the one table
//! that says which right each tool needs; it drives both the guard and which tools a
//! session is shown.

mod read_tools;
mod token_tools;
mod write_tools;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData as McpError, ServerHandler, tool_handler};
use serde::Serialize;

pub use read_tools::{
    ListFilesOutput, ListFilesRequest, ListReposOutput, ReadFileOutput, ReadFileRequest,
    SearchMode, SearchRepoOutput, SearchRepoRequest,
};
pub use token_tools::{
    CreateScopedTokenOutput, CreateScopedTokenRequest, RevokeTokenOutput, RevokeTokenRequest,
};
pub use write_tools::{FileContent, FileOperation, UpdateRepoFilesOutput, UpdateRepoFilesRequest};

use crate::backend::{Backend, BackendError, TokenStatus};
use crate::model::{BadRepoId, RepoId, unix_now};
use crate::paths::PathError;
use crate::scope::{Credential, Right, Scope, ScopeError};

/// Every tool and the right it needs.
pub const TOOL_RIGHTS: &[(&str, Right)] = &[
    ("list_repos", Right::Read),
    ("search_repo", Right::Read),
    ("read_file", Right::Read),
    ("list_files", Right::Read),
    ("update_repo_files", Right::Write),
    ("create_scoped_token", Right::Mint),
    ("revoke_token", Right::Mint),
];

/// Longest query or pattern accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Settings of the server beyond its scope.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// The longest TTL a minted token may have, in seconds.
    pub max_token_ttl: u64,
    /// The TTL of a minted token when the caller gives none.
    pub default_token_ttl: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_token_ttl: 24 * 3600,
            default_token_ttl: 3600,
        }
    }
}

/// An MCP server over one backend, held to one scope.
#[derive(Clone)]
pub struct RepoServer {
    backend: Arc<dyn Backend>,
    scope: Arc<Scope>,
    settings: ServerSettings,
    instructions: Arc<str>,
    tool_router: ToolRouter<Self>,
}

/// Why a tool call did not succeed, before it becomes a tool error.
#[derive(Debug)]
pub(crate) enum ToolFailure {
    /// Refused with a message the agent can act on.
    Refused(String),
    /// The backend failed.
    Backend(BackendError),
}

impl From<ScopeError> for ToolFailure {
    fn from(e: ScopeError) -> Self {
        ToolFailure::Refused(e.to_string())
    }
}
impl From<PathError> for ToolFailure {
    fn from(e: PathError) -> Self {
        ToolFailure::Refused(e.to_string())
    }
}
impl From<BadRepoId> for ToolFailure {
    fn from(e: BadRepoId) -> Self {
        ToolFailure::Refused(e.to_string())
    }
}
impl From<BackendError> for ToolFailure {
    fn from(e: BackendError) -> Self {
        ToolFailure::Backend(e)
    }
}

/// A tool's structured answer and its short text rendering.
pub(crate) type ToolAnswer<T> = Result<(T, String), ToolFailure>;

/// Turn a tool's answer into the MCP result: structured content plus text, or a tool
/// error. Internal failures are logged in full and reported without detail.
pub(crate) fn respond<T: Serialize>(
    tool: &str,
    answer: ToolAnswer<T>,
) -> Result<CallToolResult, McpError> {
    match answer {
        Ok((value, text)) => {
            let value = serde_json::to_value(&value).map_err(|e| {
                McpError::internal_error(format!("could not encode the result: {e}"), None)
            })?;
            let mut result = CallToolResult::structured(value);
            result.content = vec![ContentBlock::text(text)];
            Ok(result)
        }
        Err(ToolFailure::Refused(message)) => {
            tracing::info!(tool, reason = %message, "tool call refused");
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
        Err(ToolFailure::Backend(e)) if e.is_internal() => {
            tracing::error!(tool, cause = %e, "tool call failed inside the server");
            Ok(CallToolResult::error(vec![ContentBlock::text(
                "the server failed to complete this call (the cause is in its log); retrying may help",
            )]))
        }
        Err(ToolFailure::Backend(e)) => {
            tracing::info!(tool, reason = %e, "tool call failed");
            Ok(CallToolResult::error(vec![ContentBlock::text(
                e.to_string(),
            )]))
        }
    }
}

fn right_of(tool: &str) -> Right {
    TOOL_RIGHTS
        .iter()
        .find(|(name, _)| *name == tool)
        .map(|(_, r)| *r)
        // A tool missing from the table needs the strongest right, so a forgotten
        // entry fails closed.
        .unwrap_or(Right::Mint)
}

impl RepoServer {
    /// A server over `backend`, held to `scope`.
    pub fn new(backend: Arc<dyn Backend>, scope: Scope, settings: ServerSettings) -> Self {
        let mut router = Self::read_tools();
        router.merge(Self::write_tools());
        router.merge(Self::token_tools());
        for (name, right) in TOOL_RIGHTS {
            if !scope.has(*right) {
                router.remove_route(name);
            }
        }
        let instructions = instructions(&scope, &router);
        Self {
            backend,
            scope: Arc::new(scope),
            settings,
            instructions: instructions.into(),
            tool_router: router,
        }
    }

    /// The scope this server holds calls to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The guard for tools that act on one repo: parse the ID, check the session's
    /// credential is still good, and check the repo and right against the scope.
    pub(crate) async fn admit(&self, tool: &str, repo_id: &str) -> Result<RepoId, ToolFailure> {
        let id: RepoId = repo_id.parse()?;
        self.check_credential().await?;
        self.scope.admit(right_of(tool), &id)?;
        Ok(id)
    }

    /// The guard for tools that act on several repos (or on none yet known).
    pub(crate) async fn admit_all(
        &self,
        tool: &str,
        repo_ids: &[RepoId],
    ) -> Result<(), ToolFailure> {
        self.check_credential().await?;
        self.scope.admit_all(right_of(tool), repo_ids)?;
        Ok(())
    }

    /// A repo token behind the session is re-checked on every call, so a revoked or
    /// expired token stops working at once.
    pub(crate) async fn check_credential(&self) -> Result<(), ToolFailure> {
        if self.scope.expires_at().is_some_and(|e| e <= unix_now()) {
            return Err(ToolFailure::Refused(
                "this session's repo token has expired; start a new session with a fresh token"
                    .into(),
            ));
        }
        let Credential::RepoToken(token) = self.scope.credential() else {
            return Ok(());
        };
        match self.backend.token_status(token).await? {
            TokenStatus::Live(_) => Ok(()),
            TokenStatus::Revoked => Err(ToolFailure::Refused(
                "this session's repo token has been revoked; ask whoever issued it for a new one"
                    .into(),
            )),
            TokenStatus::Expired => Err(ToolFailure::Refused(
                "this session's repo token has expired; start a new session with a fresh token"
                    .into(),
            )),
            TokenStatus::Unknown => Err(ToolFailure::Refused(
                "this session's repo token is no longer known to the backend".into(),
            )),
        }
    }
}

fn instructions(scope: &Scope, router: &ToolRouter<RepoServer>) -> String {
    let repos: Vec<String> = scope.repos().map(ToString::to_string).collect();
    let mut s = format!(
        "Tools over code repositories, held to a fixed scope ({}).\nRepos you may use: {}.\n",
        scope.describe(),
        repos.join(", ")
    );
    s.push_str(
        "Start with list_repos (IDs, metadata, head commit). Find code with search_repo \
         (mode literal or regex for exact lines; auto picks one), browse with list_files, \
         and read with read_file (use start_line/end_line for large files).",
    );
    if router.has_route("update_repo_files") {
        s.push_str(
            " Change files with update_repo_files: all operations land as one commit or none do; \
             pass the head you last read as expected_head so you never overwrite work you have not seen.",
        );
    }
    if router.has_route("create_scoped_token") {
        s.push_str(
            " create_scoped_token mints a short-lived token for a subset of these repos (for a \
             sub-agent); revoke_token ends one at once.",
        );
    }
    s
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for RepoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new(
                "scoped-repo-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(self.instructions.to_string())
    }
}
