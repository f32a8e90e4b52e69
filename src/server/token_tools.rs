//! The token tools: `create_scoped_token` and `revoke_token`.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{ErrorData as McpError, tool, tool_router};
use serde::{Deserialize, Serialize};

use crate::scope::Right;

use super::{RepoServer, ToolAnswer, ToolFailure, ToolSpec, respond};
use crate::backend::TokenStatus;
use crate::model::{MintSpec, RepoId, rfc3339};
use crate::text::one_line;

/// Arguments of `create_scoped_token`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CreateScopedTokenRequest {
    /// A name saying who or what the token is for (shown in listings and commits).
    pub name: String,
    /// The repos the token reaches: a subset of this session's repos.
    pub repo_ids: Vec<String>,
    /// Lifetime in seconds. 0 (the default): one hour, or less when the server's maximum
    /// or this session's own credential is shorter.
    #[serde(default)]
    pub ttl_seconds: u64,
    /// Read tools only: the token cannot update files. A session on a read-only token
    /// mints read-only tokens whatever this says.
    #[serde(default)]
    pub read_only: bool,
    /// Limit the token to these path globs (ripgrep syntax, from the repo root, e.g.
    /// `web/**`): other files behave as if they did not exist. Empty: every path this
    /// session sees.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Let the token mint narrower tokens of its own (and revoke them).
    #[serde(default)]
    pub can_delegate: bool,
}

/// The answer of `create_scoped_token`: the only time the token's secret is shown.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CreateScopedTokenOutput {
    /// The token (`rlcr-…`); hand it to the agent that needs it, it is not shown again.
    pub token: String,
    /// The token's name.
    pub name: String,
    /// The repos it reaches.
    pub repo_ids: Vec<String>,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// Whether it is limited to the read tools.
    pub read_only: bool,
    /// The path globs it is limited to; empty: every path.
    pub paths: Vec<String>,
    /// Whether it may mint narrower tokens.
    pub can_delegate: bool,
}

/// Arguments of `revoke_token`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RevokeTokenRequest {
    /// The token to revoke (`rlcr-…`).
    pub token: String,
}

/// The answer of `revoke_token`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RevokeTokenOutput {
    /// Always true: a token that could not be revoked is a tool error.
    pub revoked: bool,
    /// The revoked token's name.
    pub name: String,
    /// The repos it reached.
    pub repo_ids: Vec<String>,
}

fn id_strings(ids: &[RepoId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// This group's tools, each declared beside its `#[tool]` below: the registry
/// ([`super::registry`]) is the groups' lists joined.
pub(super) const TOOLS: &[ToolSpec] = &[RepoServer::CREATE_SCOPED_TOKEN, RepoServer::REVOKE_TOKEN];

#[tool_router(router = token_tools, vis = "pub(crate)")]
impl RepoServer {
    /// `create_scoped_token`: needs the mint right.
    pub(crate) const CREATE_SCOPED_TOKEN: ToolSpec = ToolSpec {
        name: "create_scoped_token",
        right: Right::Mint,
        guide: "create_scoped_token mints a short-lived token for a subset of these repos (for a sub-agent).",
    };

    /// `revoke_token`: needs the mint right.
    pub(crate) const REVOKE_TOKEN: ToolSpec = ToolSpec {
        name: "revoke_token",
        right: Right::Mint,
        guide: "revoke_token ends one at once.",
    };

    /// Mint a repo token for some of this session's repos, with a limited lifetime, to
    /// hand to another agent. The token is shown only in this answer.
    #[tool(
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = schema_for_output::<CreateScopedTokenOutput>()
    )]
    async fn create_scoped_token(
        &self,
        Parameters(req): Parameters<CreateScopedTokenRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(
            Self::CREATE_SCOPED_TOKEN.name,
            self.create_token_impl(req).await,
        )
    }

    /// Revoke a repo token at once. Only tokens whose repos all lie in this session's
    /// scope can be revoked.
    #[tool(
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<RevokeTokenOutput>()
    )]
    async fn revoke_token(
        &self,
        Parameters(req): Parameters<RevokeTokenRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::REVOKE_TOKEN.name, self.revoke_token_impl(req).await)
    }
}

impl RepoServer {
    async fn create_token_impl(
        &self,
        req: CreateScopedTokenRequest,
    ) -> ToolAnswer<CreateScopedTokenOutput> {
        let name = crate::rules::token_name(&req.name)?;
        if req.repo_ids.is_empty() {
            return Err(ToolFailure::Refused(
                "repo_ids is empty: name at least one repo".into(),
            ));
        }
        let ids = req
            .repo_ids
            .iter()
            .map(|s| s.parse::<RepoId>())
            .collect::<Result<Vec<_>, _>>()?;
        self.admit_all(&Self::CREATE_SCOPED_TOKEN, &ids).await?;
        let cap = self.scope.max_ttl(self.settings.max_token_ttl);
        if cap == 0 {
            return Err(ToolFailure::Refused(
                "this session's credential expires now, so it cannot mint tokens".into(),
            ));
        }
        let ttl = match req.ttl_seconds {
            0 => self.settings.default_token_ttl.min(cap),
            t if t > cap => {
                return Err(ToolFailure::Refused(format!(
                    "ttl_seconds {t} is over the maximum of {cap} seconds (the server's --max-token-ttl, \
                     or the remaining life of this session's own credential); ask for {cap} or less"
                )));
            }
            t => t,
        };
        let spec = self.scope.child(MintSpec {
            name: name.to_string(),
            repo_ids: ids,
            ttl_seconds: Some(ttl),
            read_only: req.read_only,
            paths: req.paths,
            can_delegate: req.can_delegate,
            // The tool takes no rate: a child inherits its minting token's own.
            rate: None,
            parent: None,
        })?;
        crate::rules::token_paths(&spec.paths)?;
        let minted = self.backend.create_token(&spec).await?;
        let expires_at = minted.info.expires_at.map(rfc3339).unwrap_or_default();
        let repo_ids = id_strings(&minted.info.repo_ids);
        tracing::info!(name, repos = repo_ids.len(), ttl, "repo token minted");
        let mut limits = Vec::new();
        if minted.info.read_only {
            limits.push("read-only".to_string());
        }
        if !minted.info.paths.is_empty() {
            limits.push(format!("paths {}", minted.info.paths.join(", ")));
        }
        if minted.info.can_delegate {
            limits.push("may delegate".to_string());
        }
        let text = format!(
            "Token `{name}` for {}{} (expires {expires_at}); it is shown only now:\n{}",
            repo_ids.join(", "),
            if limits.is_empty() {
                String::new()
            } else {
                format!(", {}", one_line(&limits.join("; ")))
            },
            minted.token
        );
        Ok((
            CreateScopedTokenOutput {
                token: minted.token,
                name: minted.info.name,
                repo_ids,
                expires_at,
                read_only: minted.info.read_only,
                paths: minted.info.paths,
                can_delegate: minted.info.can_delegate,
            },
            text,
        ))
    }

    async fn revoke_token_impl(&self, req: RevokeTokenRequest) -> ToolAnswer<RevokeTokenOutput> {
        self.admit_all(&Self::REVOKE_TOKEN, &[]).await?;
        let token = req.token.trim();
        // The token travels in a URL path on the relace backend: only the exact shape
        // of a repo token may reach it.
        if !crate::credentials::secrets::looks_like_repo_token(token) {
            return Err(ToolFailure::Refused(
                "`token` is not a repo token: give the whole `rlcr-` token followed by 40 hex digits"
                    .into(),
            ));
        }
        let info = match self.backend.token_status(token).await? {
            TokenStatus::Live(info) => info,
            _ => {
                return Err(ToolFailure::Refused(
                    "that token is unknown, expired or already revoked: there is nothing to revoke"
                        .into(),
                ));
            }
        };
        self.admit_all(&Self::REVOKE_TOKEN, &info.repo_ids).await?;
        // A session on a delegating token revokes only the tokens minted from it.
        if let Some(mine) = self.scope.token() {
            let mine = crate::credentials::secrets::hash(mine);
            if !info.lineage.contains(&mine) {
                return Err(ToolFailure::Refused(
                    "a session on a repo token may revoke only the tokens minted from it".into(),
                ));
            }
        }
        let Some(info) = self.backend.revoke_token(token).await? else {
            return Err(ToolFailure::Refused(
                "that token was revoked meanwhile".into(),
            ));
        };
        let repo_ids = id_strings(&info.repo_ids);
        tracing::info!(name = %info.name, repos = repo_ids.len(), "repo token revoked");
        let text = format!("Revoked token `{}` for {}", info.name, repo_ids.join(", "));
        Ok((
            RevokeTokenOutput {
                revoked: true,
                name: info.name,
                repo_ids,
            },
            text,
        ))
    }
}
