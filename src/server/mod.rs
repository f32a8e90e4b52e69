//! The MCP server: its tools, the scope guard they all pass, and the text an
//! agent reads at initialization.
//!
//! Tools live in four groups, one file each ([`read_tools`], [`history_tools`],
//! [`write_tools`], [`token_tools`]), merged in [`RepoServer::new`]. Each tool declares a [`ToolSpec`]
//! beside its `#[tool]`: its name, the right it needs, and its line in the
//! instructions. [`registry`] joins them; it drives the guard, which tools a session is
//! shown, and the instructions. Adding a tool touches its group's file (and the
//! backends).

mod history_tools;
pub mod importing;
mod progress;
mod read_tools;
mod resources;
mod token_tools;
mod write_tools;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    InitializeRequestParams, InitializeResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;

pub use history_tools::{
    BlameFileOutput, BlameFileRequest, CommitsOutput, CompareOutput, CompareRequest,
    GetCommitOutput, GetCommitRequest, ListCommitsRequest, RevertCommitOutput, RevertCommitRequest,
    SearchHistoryRequest,
};
pub use read_tools::{
    ListFilesOutput, ListFilesRequest, ListReposOutput, ReadFileOutput, ReadFileRequest,
    SearchMode, SearchRepoOutput, SearchRepoRequest,
};
pub use token_tools::{
    CreateScopedTokenOutput, CreateScopedTokenRequest, RevokeTokenOutput, RevokeTokenRequest,
};
pub use write_tools::{FileContent, FileOperation, UpdateRepoFilesOutput, UpdateRepoFilesRequest};

use crate::backend::{Backend, BackendError};
use crate::model::{BadRepoId, RepoId, unix_now};
use crate::paths::PathError;
use crate::scope::{Right, Scope, ScopeError};

/// A tool's entry in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSpec {
    /// The tool's name, as `tools/list` shows it.
    pub name: &'static str,
    /// The right a session needs to be shown and to call it.
    pub right: Right,
    /// Its sentence in the instructions an agent reads at initialization.
    pub guide: &'static str,
}

/// Every tool, group by group.
pub fn registry() -> impl Iterator<Item = &'static ToolSpec> {
    read_tools::TOOLS
        .iter()
        .chain(history_tools::TOOLS)
        .chain(write_tools::TOOLS)
        .chain(token_tools::TOOLS)
}

/// The fields of a registered tool's input schema that name repos (`repo_id`,
/// `repo_ids`), read from the schemas themselves, so the audit trail takes repo ids only
/// where a tool declares them; `None` when no tool of that name is registered.
pub(crate) fn repo_fields(tool: &str) -> Option<&'static [&'static str]> {
    static FIELDS: std::sync::OnceLock<std::collections::HashMap<String, Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let fields = FIELDS.get_or_init(|| {
        RepoServer::all_tools()
            .list_all()
            .into_iter()
            .map(|t| {
                let declared = t.input_schema.get("properties").and_then(|p| p.as_object());
                let named = ["repo_id", "repo_ids"]
                    .into_iter()
                    .filter(|f| declared.is_some_and(|p| p.contains_key(*f)))
                    .collect();
                (t.name.to_string(), named)
            })
            .collect()
    });
    fields.get(tool).map(Vec::as_slice)
}

/// Settings of the server beyond its scope.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// The longest TTL a minted token may have, in seconds.
    pub max_token_ttl: u64,
    /// The TTL of a minted token when the caller gives none.
    pub default_token_ttl: u64,
    /// The size limits every update is checked against before any backend sees it.
    pub limits: crate::rules::Limits,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_token_ttl: 24 * 3600,
            default_token_ttl: 3600,
            limits: crate::rules::Limits::default(),
        }
    }
}

/// What one request (or one legacy SSE session) may do: its scope, and, when its
/// credential must travel upstream with every call, the backend bound to that
/// credential.
#[derive(Clone)]
pub struct Grant {
    /// The repos and rights.
    pub scope: Arc<Scope>,
    /// A backend acting with the request's own credential; `None`: the server's own.
    pub backend: Option<Arc<dyn Backend>>,
}

impl Grant {
    /// A grant on the server's own backend.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope: Arc::new(scope),
            backend: None,
        }
    }
}

/// An MCP server over one backend, held to one scope.
///
/// Under stdio the scope is fixed for the life of the process. Under HTTP the server is
/// built [`RepoServer::per_request`]: every request carries its own scope (resolved from
/// its bearer token by the HTTP layer and put in the request's extensions), and each
/// call runs on a copy of the server bound to that scope.
#[derive(Clone)]
pub struct RepoServer {
    backend: Arc<dyn Backend>,
    scope: Arc<Scope>,
    settings: ServerSettings,
    per_request: bool,
    /// The credential was checked for this very request (by the HTTP guard), so the
    /// per-call revocation check would only repeat it.
    credential_checked: bool,
    tool_router: ToolRouter<Self>,
    /// Where every tool call is recorded.
    audit: crate::audit::Recorder,
    /// The per-credential rate limits every tool call is charged to.
    rate: Arc<crate::rate::RateLimiter>,
    /// Repos in scope whose import is still running.
    imports: importing::Imports,
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
impl From<crate::rules::RuleError> for ToolFailure {
    fn from(e: crate::rules::RuleError) -> Self {
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
    // Why it failed, for the audit trail: a refusal keeps its reason; a backend
    // failure only its kind.
    match &answer {
        Err(ToolFailure::Refused(m)) => crate::audit::note_refusal(m),
        Err(ToolFailure::Backend(e)) => crate::audit::note_backend_error(e),
        Ok(_) => {}
    }
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
            crate::rate::refused();
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
            tracing::info!(tool, reason = %crate::audit::loggable(&e), "tool call failed");
            Ok(CallToolResult::error(vec![ContentBlock::text(
                e.to_string(),
            )]))
        }
    }
}

/// The right the tool called `name` needs, if this server has such a tool.
pub fn tool_right(name: &str) -> Option<Right> {
    registry()
        .find(|spec| spec.name == name)
        .map(|spec| spec.right)
}

fn right_of(tool: &str) -> Right {
    registry()
        .find(|spec| spec.name == tool)
        .map(|spec| spec.right)
        // A tool missing from the table needs the strongest right, so a forgotten
        // entry fails closed.
        .unwrap_or(Right::Mint)
}

impl RepoServer {
    /// A server over `backend`, held to `scope`.
    pub fn new(backend: Arc<dyn Backend>, scope: Scope, settings: ServerSettings) -> Self {
        let mut router = Self::all_tools();
        for spec in registry() {
            if !scope.has(spec.right) {
                router.remove_route(spec.name);
            }
        }
        Self {
            backend,
            scope: Arc::new(scope),
            settings,
            per_request: false,
            credential_checked: false,
            tool_router: router,
            audit: Default::default(),
            rate: Default::default(),
            imports: Default::default(),
        }
    }

    /// A server whose scope comes with each request (the HTTP transports): a request
    /// without a [`Scope`] in its extensions is refused.
    pub fn per_request(backend: Arc<dyn Backend>, settings: ServerSettings) -> Self {
        Self {
            backend,
            scope: Arc::new(Scope::operator([]).read_only()),
            settings,
            per_request: true,
            credential_checked: false,
            tool_router: Self::all_tools(),
            audit: Default::default(),
            rate: Default::default(),
            imports: Default::default(),
        }
    }

    /// This server bound to one grant for good (a legacy SSE session, whose credential
    /// is fixed when it connects), or for one request.
    pub fn bound_to(&self, grant: &Grant) -> Self {
        Self {
            scope: grant.scope.clone(),
            backend: grant
                .backend
                .clone()
                .unwrap_or_else(|| self.backend.clone()),
            per_request: false,
            ..self.clone()
        }
    }

    /// This server recording every tool call in `audit`.
    pub fn with_audit(self, audit: crate::audit::Recorder) -> Self {
        Self { audit, ..self }
    }

    /// This server charging every tool call to its credential's bucket in `rate`.
    pub fn with_rate_limit(self, rate: Arc<crate::rate::RateLimiter>) -> Self {
        Self { rate, ..self }
    }

    /// This server knowing of the imports in `imports`: calls naming one of their
    /// repos wait for it, and `list_repos` shows them.
    pub fn with_imports(self, imports: importing::Imports) -> Self {
        Self { imports, ..self }
    }

    /// Where this server records its tool calls.
    pub fn audit(&self) -> &crate::audit::Recorder {
        &self.audit
    }

    fn all_tools() -> ToolRouter<Self> {
        let mut router = Self::read_tools();
        router.merge(Self::history_tools());
        router.merge(Self::write_tools());
        router.merge(Self::token_tools());
        router
    }

    /// The scope this server holds calls to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The server bound to the scope of the request behind `ctx`.
    fn for_request(&self, ctx: &RequestContext<RoleServer>) -> Result<Self, McpError> {
        if !self.per_request {
            return Ok(self.clone());
        }
        let grant = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Grant>())
            .ok_or_else(|| McpError::invalid_request("this request carries no credential", None))?;
        // The guard resolved this grant from this request's own credential a moment ago.
        Ok(Self {
            credential_checked: true,
            ..self.bound_to(grant)
        })
    }

    /// The guard for tools that act on one repo: parse the ID, check the session's
    /// credential is still good, and check the repo and right against the scope.
    pub(crate) async fn guard_repo(
        &self,
        tool: &ToolSpec,
        repo_id: &str,
    ) -> Result<RepoId, ToolFailure> {
        let id: RepoId = repo_id.parse()?;
        self.check_credential().await?;
        self.scope.admit(tool.right, &id)?;
        self.charge()?;
        Ok(id)
    }

    /// The guard for tools that act on several repos (or on none yet known).
    pub(crate) async fn admit_all(
        &self,
        tool: &ToolSpec,
        repo_ids: &[RepoId],
    ) -> Result<(), ToolFailure> {
        self.check_credential().await?;
        self.scope.admit_all(tool.right, repo_ids)?;
        self.charge()?;
        Ok(())
    }

    /// Charge the call to its credential's rate, once it has passed the guard: a call
    /// the guard refuses has done no work and costs nothing.
    fn charge(&self) -> Result<(), ToolFailure> {
        crate::rate::charge(&self.scope)
            .map_err(|limited| ToolFailure::Refused(limited.to_string()))
    }

    /// A repo token behind the session is re-checked on every call (by the front
    /// door's one rule), so a revoked or expired token stops working at once.
    pub(crate) async fn check_credential(&self) -> Result<(), ToolFailure> {
        if self.credential_checked && self.scope.expires_at().is_none_or(|e| e > unix_now()) {
            return Ok(());
        }
        crate::credentials::recheck(&crate::credentials::TokensOnly(self.backend.as_ref()), &self.scope)
            .await
            .map_err(|refusal| {
                ToolFailure::Refused(format!(
                    "this session's credential no longer works: {refusal}; start a new session with a fresh token"
                ))
            })
    }
}

/// Run `work`, turning a panic inside it into an error carrying the panic's message, so
/// that a bug answers the request (as an internal error) instead of leaving the client
/// waiting for an answer that never comes.
pub(crate) async fn unwind<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// The repos a call's arguments name, in the fields its tool declares (`repo_id`,
/// `repo_ids`); ill-formed IDs are left for the tool to refuse.
fn named_repos(request: &CallToolRequestParams) -> Vec<RepoId> {
    let (Some(fields), Some(args)) = (repo_fields(&request.name), request.arguments.as_ref())
    else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for field in fields {
        match args.get(*field) {
            Some(serde_json::Value::String(s)) => ids.extend(s.parse::<RepoId>().ok()),
            Some(serde_json::Value::Array(items)) => ids.extend(
                items
                    .iter()
                    .filter_map(|v| v.as_str()?.parse::<RepoId>().ok()),
            ),
            _ => {}
        }
    }
    ids
}

fn instructions(scope: &Scope) -> String {
    let repos: Vec<String> = scope.repos().map(ToString::to_string).collect();
    let mut s = format!(
        "Tools over code repositories, held to a fixed scope ({}).\nRepos you may use: {}.\n",
        scope.describe(),
        repos.join(", ")
    );
    let guides: Vec<&str> = registry()
        .filter(|spec| scope.has(spec.right))
        .map(|spec| spec.guide)
        .collect();
    s.push_str(&guides.join(" "));
    s
}

fn server_info(instructions: String) -> ServerConfig {
    ServerConfig::new(
        ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .build(),
    )
    .with_server_info(rmcp::model::Implementation::new(
        "scoped-repo-mcp",
        env!("CARGO_PKG_VERSION"),
    ))
    .with_instructions(instructions)
}

impl RepoServer {
    /// Run one tool call: refuse a tool the scope lacks the right for, then route it,
    /// answering a panic inside it as an internal error.
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.tool_router.has_route(&request.name) && !self.scope.has(right_of(&request.name)) {
            let message = format!(
                "tool `{}` is not available to this session: it may not {}",
                request.name,
                right_of(&request.name)
            );
            crate::audit::note_refusal(&message);
            return Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(message),
            ])));
        }
        let waiting: Vec<RepoId> = named_repos(&request)
            .into_iter()
            .filter(|id| self.scope.repos().any(|r| r == id) && self.imports.unfinished(id))
            .collect();
        if !waiting.is_empty()
            && let Err(held) = self.imports.wait_for(&waiting, &context).await
        {
            let message = held.message();
            crate::audit::note_refusal(&message);
            tracing::info!(tool = %request.name, reason = %message, "tool call held by an import");
            return Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(message),
            ])));
        }
        let tool = request.name.clone();
        let tcc = ToolCallContext::new(self, request, context);
        match unwind(self.tool_router.call(tcc)).await {
            Ok(answer) => answer,
            Err(cause) => {
                tracing::error!(tool = %tool, cause = %cause, "tool call panicked");
                crate::audit::note_internal_error();
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(
                        "the server failed to complete this call (the cause is in its log); retrying may help",
                    ),
                ])))
            }
        }
    }
}

impl ServerHandler for RepoServer {
    fn get_info(&self) -> ServerConfig {
        if self.per_request {
            // Without a request there is no scope to describe.
            server_info(
                "Tools over code repositories; which repos you may use depends on your bearer \
                 token: call list_repos."
                    .to_string(),
            )
        } else {
            server_info(instructions(&self.scope))
        }
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let server = self.for_request(&context)?;
        let mut result = self.negotiate_initialize(&request)?;
        result.instructions = Some(instructions(&server.scope));
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let server = self.for_request(&context)?;
        let fields = repo_fields(&request.name);
        let audit = crate::audit::ToolCall::begin(&server.audit, &server.scope, &request, fields);
        let rate = server.rate.clone();
        // A call refused after its charge (a later check of the guard, a bad path) gets
        // it back through `respond`; other failures did work and keep it.
        let work = crate::rate::metered(&rate, server.dispatch(request, context), |_| false);
        audit.run(work).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let server = self.for_request(&context)?;
        let tools = server
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| server.scope.has(right_of(&t.name)))
            .collect();
        let mut result = ListToolsResult::with_all_items(tools);
        if context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
        {
            // The list depends on the caller's credential: no shared caching.
            result.ttl_ms = Some(0);
            result.cache_scope = Some(CacheScope::Private);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_router.get(name).cloned()
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            resources::template(),
        ]))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let server = self.for_request(&context)?;
        match unwind(resources::list(&server, request.and_then(|r| r.cursor))).await {
            Ok(listed) => listed,
            Err(cause) => {
                tracing::error!(cause = %cause, "resource listing panicked");
                Err(McpError::internal_error(
                    "the server failed to list resources",
                    None,
                ))
            }
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let server = self.for_request(&context)?;
        let read = unwind(resources::read(&server, &request.uri));
        // A resource read is work like a tool call, charged by the same guard.
        match crate::rate::metered(&server.rate.clone(), read, |_| false).await {
            Ok(read) => read.map(ReadResourceResponse::Complete),
            Err(cause) => {
                tracing::error!(cause = %cause, "resource read panicked");
                Err(McpError::internal_error(
                    "the server failed to read this resource",
                    None,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_tool_has_one_spec_and_its_read_only_hint_matches_its_right() {
        let tools = RepoServer::all_tools().list_all();
        let routed: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        let declared: BTreeSet<&str> = registry().map(|s| s.name).collect();
        assert_eq!(
            routed, declared,
            "a tool without a spec, or a spec without a tool"
        );
        assert_eq!(declared.len(), registry().count(), "a tool declared twice");
        for tool in &tools {
            let spec = registry().find(|s| s.name == tool.name).unwrap();
            let read_only = tool
                .annotations
                .as_ref()
                .and_then(|a| a.read_only_hint)
                .unwrap_or_else(|| panic!("{} sets no read_only_hint", tool.name));
            assert_eq!(read_only, spec.right == Right::Read, "{}", tool.name);
        }
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(unwind(async { 7 }).await, Ok(7));
        let caught = unwind(async {
            if true {
                panic!("glob regex too large");
            }
        })
        .await;
        assert_eq!(caught, Err("glob regex too large".to_string()));
    }

    #[test]
    fn instructions_name_only_the_tools_a_scope_may_use() {
        let id: RepoId = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
        let full = instructions(&Scope::operator([id]));
        let reader = instructions(&Scope::operator([id]).read_only());
        for spec in registry() {
            assert!(full.contains(spec.name), "{}", spec.name);
            assert_eq!(
                reader.contains(spec.name),
                spec.right == Right::Read,
                "{}",
                spec.name
            );
        }
    }
}
