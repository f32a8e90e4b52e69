//! `scoped-repo-mcp api`: a Relace-compatible REST API (`/v1/...`) over the embedded
//! store, so the official SDKs, and `serve --backend relace` on another machine, can use
//! repos that live here.
//!
//! # Layout
//! - [`auth`]: who is calling (account key or repo token) and what that reaches.
//! - [`git`]: git's smart HTTP at `/v1/repo/{id}.git` (clone, fetch, push), through
//!   git's own upload-pack and receive-pack, and the pre-receive hook that checks a push.
//! - [`pkt_line`]: a push's command list and a fetch's wants, read before git starts.
//! - [`push_gate`]: the writer lock and the second admission a push passes right before
//!   `main` moves.
//! - `routes`: the handlers, one resource a file, and their wire types, private to
//!   this module.
//! - `host_check`, `in_flight`, `rate`: middleware, one concern each: the
//!   `Host`/`Origin` allow lists, the per-credential cap on requests in flight and the
//!   per-credential rate limit, all shared with `serve`.
//!
//! Statuses follow the hosted service: 401 without a valid credential, 403 for a repo
//! token outside its repos (whether the repo exists or not, so nothing is revealed),
//! 404 for an unknown repo, file or token, 409 when `expected_head` no longer holds,
//! 413 over the store's limits, 422 for a body that is not the JSON asked for.

pub mod auth;
pub mod git;
mod host_check;
mod in_flight;
pub mod pkt_line;
pub mod push_gate;
mod rate;
mod routes;

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::connections::ConnectionLimits;
use crate::paths::PathError;
use crate::store::{Store, StoreError};

/// Largest request body accepted, in bytes: an update at the store's 50 MiB limit plus
/// room for JSON escaping. Larger bodies answer 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 80 * 1024 * 1024;

/// The header carrying the head commit a file was read at: the hosted file GET returns
/// bare bytes, so this is this server's extension, and clients must not rely on it.
pub const REPO_HEAD_HEADER: &str = "x-repo-head";

/// Settings of the API server beyond its store.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The longest lifetime `POST /v1/repo_token` may give a token, in seconds. `None`:
    /// no cap, and tokens without `ttl_seconds` (which never expire) are allowed, as on
    /// the hosted service. `Some`: every token must ask for a TTL within the cap.
    pub max_token_ttl: Option<u64>,
    /// Where every request is recorded (off by default).
    pub audit: crate::audit::Trail,
    /// What serving git needs; `None`: the `/repo/{id}.git` routes answer 503.
    pub git: Option<std::sync::Arc<git::GitSupport>>,
    /// The hosts a git source (`source: {type: "git"}`) may fetch from
    /// (`--allowed-git-host`); none by default, and every git source is then refused.
    pub allowed_git_hosts: crate::git_source::AllowedHosts,
    /// The `Host` and `Origin` values answered (`--allowed-host`, `--allowed-origin`).
    pub allow: crate::origin::AllowLists,
    /// Requests in flight at once per credential (`--max-concurrent-per-token`).
    pub max_concurrent_per_token: usize,
    /// Every credential's rate (`--rate-limit`); a token's own rate applies too, and
    /// the stricter wins. `None`: only tokens minted with a rate are limited.
    pub rate_limit: Option<crate::rate::Rate>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_token_ttl: None,
            audit: Default::default(),
            git: None,
            allowed_git_hosts: Default::default(),
            allow: Default::default(),
            max_concurrent_per_token: crate::http::HttpOptions::default()
                .max_concurrent_per_credential,
            rate_limit: None,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Arc<Store>,
    /// The store as the front door's authority for credentials.
    local: crate::backend::LocalBackend,
    settings: ApiSettings,
}

/// The API's router (mounted under `/v1`), for tests that drive it with `oneshot`.
pub fn router(store: Arc<Store>) -> axum::Router {
    router_with(store, ApiSettings::default())
}

/// The API's router with `settings`.
pub fn router_with(store: Arc<Store>, settings: ApiSettings) -> axum::Router {
    let audit = settings.audit.clone();
    let allow = Arc::new(settings.allow.clone());
    let cap = crate::in_flight::InFlightCap::new(settings.max_concurrent_per_token);
    let limiter = crate::rate::RateLimiter::new(settings.rate_limit);
    let local = crate::backend::LocalBackend::new(store.clone());
    routes::router(ApiState {
        store,
        local,
        settings,
    })
    .layer(axum::middleware::from_fn(crate::panics::answer_panics))
    .layer(axum::middleware::from_fn_with_state(limiter, rate::meter))
    .layer(axum::middleware::from_fn_with_state(cap, in_flight::limit))
    // Before any other work, a request from a foreign page or host name is refused.
    .layer(axum::middleware::from_fn_with_state(
        allow,
        host_check::refuse_foreign,
    ))
    // Outside the others, so every refusal and a panicking request's 500 are recorded.
    .layer(axum::middleware::from_fn_with_state(
        audit,
        crate::audit::rest_request,
    ))
}

/// Serve the API on `listener`, within the default connection limits, until the
/// process ends.
pub async fn serve(listener: tokio::net::TcpListener, store: Arc<Store>) -> std::io::Result<()> {
    let never = tokio_util::sync::CancellationToken::new();
    serve_until(
        listener,
        store,
        ApiSettings::default(),
        ConnectionLimits::default(),
        never,
    )
    .await
}

/// Serve the API on `listener` within `limits` until `shutdown` is cancelled; requests
/// under way are finished first, so no update is cut off between its commit and its
/// answer.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    settings: ApiSettings,
    limits: ConnectionLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    crate::connections::serve_connections(listener, router_with(store, settings), limits, shutdown)
        .await
}

/// An error answer: a status and a FastAPI-style `{"detail": …}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    /// The paths of a merge that conflicts (a git source's update), also named in
    /// `detail`.
    conflicts: Vec<String>,
    /// Seconds for `Retry-After`, on a `429`.
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    detail: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    conflicts: &'a [String],
}

impl ApiError {
    /// An error with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            conflicts: Vec::new(),
            retry_after: None,
        }
    }

    /// 429 past the credential's rate, saying when to retry (also as `Retry-After`).
    pub fn rate_limited(limited: crate::rate::Limited) -> Self {
        Self {
            retry_after: Some(limited.retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, limited.to_string())
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 500, with the cause logged here and not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "API request failed inside the server");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to complete this request (the cause is in its log); retrying may help",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                detail: &self.detail,
                conflicts: &self.conflicts,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) {
            response
                .extensions_mut()
                .insert(crate::audit::RefusalNote(self.detail));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::MergeConflict(paths) = &e {
            return ApiError {
                status: StatusCode::CONFLICT,
                detail: e.to_string(),
                conflicts: paths.clone(),
                retry_after: None,
            };
        }
        let status = match &e {
            StoreError::RepoNotFound(_) | StoreError::FileNotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict { .. } | StoreError::MergeConflict(_) => StatusCode::CONFLICT,
            // No HTTP request cancels a store update, but the store can say so.
            StoreError::Cancelled => StatusCode::CONFLICT,
            StoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::Invalid(_) | StoreError::Search(_) => StatusCode::BAD_REQUEST,
            StoreError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            StoreError::Database(_) | StoreError::Git(_) | StoreError::Io(_) => {
                return ApiError::internal(e);
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::git_source::SourceError> for ApiError {
    fn from(e: crate::git_source::SourceError) -> Self {
        use crate::git_source::SourceError;
        let status = match &e {
            SourceError::NoAllowList | SourceError::Invalid(_) | SourceError::NotAllowed(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            SourceError::Fetch(_) | SourceError::Unreachable => StatusCode::BAD_GATEWAY,
            SourceError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            SourceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SourceError::Store(_) => {
                let SourceError::Store(inner) = e else {
                    unreachable!()
                };
                return inner.into();
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::rules::RuleError> for ApiError {
    fn from(e: crate::rules::RuleError) -> Self {
        match e {
            crate::rules::RuleError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            crate::rules::RuleError::Invalid(m) => ApiError::unprocessable(m),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Run a blocking call on the store (a store operation, or a git source's fetch and the
/// store's work on it) on the blocking pool, its error turned into the API's.
async fn blocking<T, E, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
    F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}
