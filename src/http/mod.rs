//! The HTTP transports: streamable HTTP at `/mcp` (rmcp's server) and the legacy
//! HTTP+SSE transport of protocol 2024-11-05 (`GET /sse`, `POST /messages`), behind one
//! guard that checks `Host` and `Origin`, resolves the bearer credential into a scope,
//! binds each MCP session to the credential that opened it, and caps the sessions and
//! the concurrent calls of each credential.

pub mod auth;
pub mod resource;
mod scope_challenge;
mod sessions;
mod sse;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sessions::{SessionBook, TrackedSessions};
use tokio_util::sync::CancellationToken;

pub use auth::{AuthError, OperatorBound, Resolver, ScopeResolver};

use crate::connections::ConnectionLimits;
use crate::in_flight::InFlightCap;
use crate::server::{Grant, RepoServer};

/// Settings of the HTTP transports.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `Host` and `Origin` values accepted.
    pub allow: crate::origin::AllowLists,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Calls in flight at once per credential. A legacy `/messages` request counts until
    /// its answer has been sent on the event stream.
    pub max_concurrent_per_credential: usize,
    /// MCP sessions open at once per credential, streamable HTTP and legacy SSE together.
    pub max_sessions_per_credential: usize,
    /// A streamable HTTP session with no request for this long is ended.
    pub session_idle_timeout: Duration,
    /// This server as an OAuth protected resource: its public URL, named by every
    /// `401`'s challenge and by its metadata document.
    pub resource: resource::ProtectedResource,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allow: Default::default(),
            max_body_bytes: crate::rules::MAX_STDIO_MESSAGE_BYTES,
            max_concurrent_per_credential: 16,
            max_sessions_per_credential: 64,
            session_idle_timeout: Duration::from_secs(300),
            resource: resource::ProtectedResource::new("http://127.0.0.1:8765"),
        }
    }
}

/// Shared state of the guard and the legacy transport.
pub(crate) struct HttpState {
    server: RepoServer,
    resolver: Arc<dyn ScopeResolver>,
    options: HttpOptions,
    /// rmcp's sessions, reporting their ends to `lifecycle`'s book.
    manager: Arc<TrackedSessions>,
    /// Calls in flight per credential.
    pub(crate) cap: Arc<InFlightCap>,
    sse: sse::Sessions,
    lifecycle: Arc<Lifecycle>,
}

/// Bookkeeping shared by the guard, the legacy transport and [`serve`]: calls in flight
/// are counted until their answer has been sent, so a shutdown can wait for them
/// before ending the MCP sessions; and the MCP sessions open, per credential.
#[derive(Default)]
pub struct Lifecycle {
    sessions: CancellationToken,
    in_flight: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    book: SessionBook,
}

impl Lifecycle {
    /// Calls whose answer has not been fully sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Streamable HTTP sessions bound to a credential (ended sessions are dropped).
    pub fn sessions_bound(&self) -> usize {
        self.book.bound()
    }

    /// MCP sessions of both transports open (or being opened).
    pub fn sessions_open(&self) -> usize {
        self.book.open()
    }
}

/// Marks one call in flight until dropped.
struct InFlight(Arc<Lifecycle>);

impl InFlight {
    fn enter(l: &Arc<Lifecycle>) -> Self {
        l.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(l.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self
            .0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// The grant and credential fingerprint the guard attaches to a request.
#[derive(Clone)]
pub(crate) struct Admitted {
    grant: Grant,
    fingerprint: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn problem(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A `429` that tells the client when to try again.
fn too_many(message: &str) -> Response {
    let mut r = problem(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A `401` whose challenge points at the resource's metadata (RFC 9728 §5.1).
fn unauthorized(resource: &resource::ProtectedResource, err: &AuthError) -> Response {
    let mut r = problem(StatusCode::UNAUTHORIZED, &err.to_string());
    let challenge = match err {
        AuthError::Missing => resource.unauthorized_challenge(None),
        other => resource.unauthorized_challenge(Some(&other.to_string())),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A `403` for a tool call that needs `right`, which the caller's token lacks.
fn insufficient_scope(
    resource: &resource::ProtectedResource,
    tool: &str,
    right: crate::scope::Right,
) -> Response {
    let message = format!(
        "the tool `{tool}` needs the `{right}` scope, which this token does not grant; ask for a token that grants it"
    );
    let mut r = problem(StatusCode::FORBIDDEN, &message);
    let challenge = resource.insufficient_scope_challenge(&right.to_string(), &message);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    crate::credentials::bearer(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
}

/// The guard in front of every MCP route.
async fn guard(State(state): State<Arc<HttpState>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Err(foreign) = state.options.allow.check(headers) {
        return problem(StatusCode::FORBIDDEN, &foreign.to_string());
    }
    let bearer = match bearer(headers) {
        Ok(b) => b.map(str::to_string),
        Err(e) => return unauthorized(&state.options.resource, &e),
    };
    let grant = match state.resolver.resolve(bearer.as_deref()).await {
        Ok(g) => g,
        Err(e) if e.http_status() == StatusCode::UNAUTHORIZED => {
            return unauthorized(&state.options.resource, &e);
        }
        Err(e) => return problem(e.http_status(), &e.to_string()),
    };
    let fingerprint = auth::fingerprint(bearer.as_deref());
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &session
        && state
            .lifecycle
            .book
            .owner(id)
            .is_some_and(|owner| owner != fingerprint)
    {
        return problem(
            StatusCode::FORBIDDEN,
            "this MCP session was opened with another credential",
        );
    }
    let is_post = request.method() == Method::POST;
    // A legacy `/messages` call takes its budget in `sse::message`, and holds it until
    // its answer has been sent on the event stream, not just until it is queued.
    let is_legacy_message = request.uri().path() == "/messages";
    // A POST without a session id opens a streamable session (legacy sessions are
    // counted in `sse::connect`).
    let slot = if is_post && session.is_none() && !is_legacy_message {
        match state
            .lifecycle
            .book
            .reserve(&fingerprint, state.options.max_sessions_per_credential)
        {
            Some(slot) => Some(slot),
            None => return too_many_sessions(),
        }
    } else {
        None
    };
    // Long-lived GET streams do not count against the budget: they hold no work.
    let permit = if is_post && !is_legacy_message {
        match state.cap.try_enter(&fingerprint) {
            Some(p) => Some(p),
            None => return too_many(crate::in_flight::BUSY),
        }
    } else {
        None
    };
    let in_flight = (is_post && !is_legacy_message).then(|| InFlight::enter(&state.lifecycle));
    // A tool call beyond what the token grants is challenged before it reaches a
    // session, so that an OAuth client can ask for a wider grant; it is recorded as the
    // refused call it is. The body is read after the call took its budget, so a stalled
    // body holds that budget as any other call's does.
    if request.method() == Method::POST
        && !(grant.scope.has(crate::scope::Right::Write)
            && grant.scope.has(crate::scope::Right::Mint))
    {
        let Some((buffered, body)) =
            scope_challenge::buffered(request, state.options.max_body_bytes).await
        else {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large or broke off",
            );
        };
        request = buffered;
        if let Some(beyond) = scope_challenge::beyond_grant(&grant.scope, &body) {
            let response = insufficient_scope(&state.options.resource, &beyond.tool, beyond.right);
            crate::audit::ToolCall::begin(
                state.server.audit(),
                &grant.scope,
                &beyond.call,
                crate::server::repo_fields(&beyond.tool),
            )
            .refused_at_the_door(&format!(
                "insufficient scope: the token does not grant `{}`",
                beyond.right
            ))
            .await;
            return response;
        }
    }
    let is_delete = request.method() == Method::DELETE;
    request.extensions_mut().insert(grant.clone());
    request.extensions_mut().insert(Admitted {
        grant,
        fingerprint: fingerprint.clone(),
    });
    let response = next.run(request).await;
    if let Some(id) = &session
        && is_delete
    {
        state.lifecycle.book.unbind(id);
    } else if let Some(slot) = slot
        && let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        state.lifecycle.book.bind(id, slot);
        // A session that ended before it was bound was not seen by the book.
        if !state.manager.is_live(id).await {
            state.lifecycle.book.unbind(id);
        }
    }
    if permit.is_none() && in_flight.is_none() {
        return response;
    }
    // A streamed answer is sent after this function returns: the call's budget and
    // its in-flight mark are held until the body has been sent.
    crate::in_flight::hold_until_sent(response, (permit, in_flight))
}

/// The `429` past the per-credential session cap.
pub(crate) fn too_many_sessions() -> Response {
    too_many(
        "too many MCP sessions open for this credential (see --max-sessions-per-token); end one (DELETE /mcp, or close a legacy stream) or retry later",
    )
}

/// The whole HTTP application: `/mcp`, `/sse`, `/messages` behind the guard, and `/healthz`.
pub fn router(
    server: RepoServer,
    resolver: Arc<dyn ScopeResolver>,
    options: HttpOptions,
    lifecycle: Arc<Lifecycle>,
) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(options.allow.hosts.clone())
        .with_allowed_origins(options.allow.origins.clone())
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(lifecycle.sessions.child_token());
    let factory_server = server.clone();
    let mut local = LocalSessionManager::default();
    local.session_config.keep_alive = Some(options.session_idle_timeout);
    let manager = Arc::new(TrackedSessions::new(local, lifecycle.clone()));
    let mcp =
        StreamableHttpService::new(move || Ok(factory_server.clone()), manager.clone(), config);
    let cap = InFlightCap::new(options.max_concurrent_per_credential);
    let resource_for_routes = options.resource.clone();
    let state = Arc::new(HttpState {
        server,
        resolver,
        options,
        manager,
        cap,
        sse: sse::Sessions::default(),
        lifecycle,
    });
    let guarded = Router::new()
        .nest_service("/mcp", mcp)
        .route("/sse", get(sse::connect))
        .route("/messages", post(sse::message))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.options.max_body_bytes,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    let metadata = resource_for_routes.clone();
    let suffixed = format!("{}{}", resource::METADATA_PATH, resource::MCP_PATH);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // RFC 9728: the document for the resource `/mcp` is at the path-suffixed
        // well-known URL; the bare one is served too, for clients that look there.
        .route(
            resource::METADATA_PATH,
            get(move || std::future::ready(metadata.metadata_response())),
        )
        .route(
            &suffixed,
            get(move || std::future::ready(resource_for_routes.metadata_response())),
        )
        .merge(guarded)
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "not found: MCP is served at /mcp (streamable HTTP) and /sse (legacy)",
            )
        })
        // A panic in a handler answers 500 and is logged, never a dropped connection.
        .layer(middleware::from_fn(crate::panics::answer_panics))
}

/// Serve `app` on `listener` within `limits` until `shutdown` is cancelled; then stop
/// accepting connections, wait (at most `grace`) for calls in flight to finish, end the
/// MCP sessions and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    lifecycle: Arc<Lifecycle>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let server = crate::connections::serve_connections(listener, app, limits, shutdown.clone());
    let mut server = tokio::spawn(server);
    tokio::select! {
        joined = &mut server => return joined.map_err(std::io::Error::other)?,
        _ = shutdown.cancelled() => {}
    }
    let deadline = tokio::time::Instant::now() + grace;
    while lifecycle.in_flight() > 0 {
        let idle = lifecycle.idle.notified();
        if lifecycle.in_flight() == 0 || tokio::time::timeout_at(deadline, idle).await.is_err() {
            break;
        }
    }
    if lifecycle.in_flight() > 0 {
        tracing::warn!(
            calls = lifecycle.in_flight(),
            "calls still in flight after the grace period"
        );
    }
    lifecycle.sessions.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(joined) => joined.map_err(std::io::Error::other)?,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(&headers(&[])).unwrap(), None);
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])).unwrap(),
            Some("abc")
        );
        assert!(bearer(&headers(&[("authorization", "Basic abc")])).is_err());
    }
}
