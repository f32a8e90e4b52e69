//! The embedded OAuth 2.1 authorization server of `serve --transport http --oauth`:
//! its metadata (RFC 8414), client registration (RFC 7591, and client metadata
//! documents), the consent page where a person chooses what to grant, the token and
//! revocation endpoints.
//!
//! Every access token it issues is one of the store's repo tokens, minted with the
//! MCP endpoint as its audience, so the HTTP guard checks it like any other token and
//! `token list` / `token revoke` see it. What must outlive this process (clients,
//! refresh tokens, sign-in links) is in the store; what lives a minute (codes) or a
//! sitting at the browser (sign-in sessions) is kept here.
//!
//! - [`register`]: redirect URI rules and Dynamic Client Registration.
//! - [`client_metadata`]: client ids that are URLs, fetched without becoming a way
//!   into the server's network.
//! - [`consent`]: sign-in and the consent page.
//! - [`token`]: the token endpoint (codes with PKCE, rotating refresh tokens) and
//!   revocation.

pub mod client_metadata;
pub mod consent;
pub mod register;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::Trail;
use crate::model::RepoId;
use crate::store::{OAuthClient, OAuthGrant, Store};

/// Settings of the authorization server.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer: the server's public base URL, without a trailing slash.
    pub issuer: String,
    /// The protected resource tokens are issued for (the MCP endpoint's URL).
    pub resource: String,
    /// The repos a person may grant; empty: every repo in the store.
    pub repos: Vec<RepoId>,
    /// Only read-only grants (the operator's `--read-only`).
    pub read_only: bool,
    /// The longest lifetime a grant's access tokens may have.
    pub max_ttl: Duration,
    /// Client metadata documents may be fetched from private and loopback addresses,
    /// and over plain http there.
    pub allow_private_client_metadata: bool,
}

/// A code waiting for its exchange.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    grant: OAuthGrant,
    expires: Instant,
    /// The access token issued for it, once exchanged: a replay revokes it.
    issued: Option<String>,
}

/// A person signed in at the browser.
struct BrowserSession {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
struct Memory {
    codes: HashMap<String, PendingCode>,
    sessions: HashMap<String, BrowserSession>,
    clients: HashMap<String, (Instant, OAuthClient)>,
}

/// The authorization server.
pub struct OAuthServer {
    config: OAuthConfig,
    store: Arc<Store>,
    trail: Trail,
    memory: Mutex<Memory>,
}

/// How long a code may wait for its exchange.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a sign-in at the browser lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long a sign-in link works.
pub const LOGIN_LINK_SECONDS: i64 = 15 * 60;
/// Codes, sessions and fetched clients kept at most, each: past it, the oldest go.
const MAX_KEPT: usize = 10_000;

impl OAuthServer {
    /// The authorization server over `store`, recording to `trail`.
    pub fn new(config: OAuthConfig, store: Arc<Store>, trail: Trail) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            trail,
            memory: Mutex::new(Memory::default()),
        })
    }

    /// Its settings.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sign-in link, good once for [`LOGIN_LINK_SECONDS`], as `serve --oauth` prints
    /// it at start-up and `login` makes it.
    pub fn login_link(store: &Store, issuer: &str) -> Result<String, crate::store::StoreError> {
        let secret = store.oauth_login_link(LOGIN_LINK_SECONDS)?;
        Ok(format!("{issuer}/oauth/login?link={secret}"))
    }

    /// The metadata document (RFC 8414).
    pub fn metadata(&self) -> serde_json::Value {
        let i = &self.config.issuer;
        serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oauth/authorize"),
            "token_endpoint": format!("{i}/oauth/token"),
            "registration_endpoint": format!("{i}/oauth/register"),
            "revocation_endpoint": format!("{i}/oauth/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": crate::http::resource::SCOPES,
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
        })
    }

    fn record(&self, action: &str, client: &str, outcome: Result<&str, &str>) {
        self.trail.record(crate::store::AuditRow {
            at_ms: crate::audit::now_ms(),
            pid: std::process::id() as i64,
            surface: "http".into(),
            credential: format!("oauth client {}", crate::text::one_line(client)),
            credential_id: None,
            action: action.into(),
            repo: None,
            paths: None,
            outcome: if outcome.is_ok() { "ok" } else { "refused" }.into(),
            reason: outcome.err().map(str::to_string),
            duration_us: 0,
            head_before: None,
            head_after: None,
            subject: outcome.ok().filter(|s| !s.is_empty()).map(str::to_string),
            subject_id: None,
            refs: None,
            changed_paths: Vec::new(),
        });
    }
}

/// The routes of the authorization server, to merge beside `/mcp`, behind the same
/// `Host` allow list (a consent page reachable under any name could be driven by DNS
/// rebinding) and, for the pages' forms, the `Origin` allow list.
pub fn router(server: Arc<OAuthServer>, allow: crate::origin::AllowLists) -> Router {
    let metadata_path = well_known_path(&server.config.issuer);
    let doc = server.clone();
    let mut router = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get({
                let doc = doc.clone();
                move || std::future::ready(crate::http::resource::public_json(doc.metadata()))
            }),
        )
        .route("/oauth/register", post(register::register))
        .route(
            "/oauth/authorize",
            get(consent::authorize_page).post(consent::decide),
        )
        .route("/oauth/signin", post(consent::sign_in))
        .route("/oauth/login", get(consent::login_link))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke));
    if metadata_path != "/.well-known/oauth-authorization-server" {
        router = router.route(
            &metadata_path,
            get(move || std::future::ready(crate::http::resource::public_json(doc.metadata()))),
        );
    }
    router.with_state(server).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let checked = allowed(&allow, &request);
            async move {
                match checked {
                    Ok(()) => next.run(request).await,
                    Err(why) => oauth_error(StatusCode::FORBIDDEN, "access_denied", &why),
                }
            }
        },
    ))
}

/// The `Host` of every request, and the `Origin` of the pages' forms, against the
/// server's allow lists. Clients calling the token, registration and revocation
/// endpoints are not browsers on this server's pages; their `Origin` is not checked.
fn allowed(
    allow: &crate::origin::AllowLists,
    request: &axum::extract::Request,
) -> Result<(), String> {
    let path = request.uri().path();
    let page = ["/oauth/authorize", "/oauth/signin", "/oauth/login"].contains(&path);
    let mut headers = request.headers().clone();
    if !page {
        headers.remove(header::ORIGIN);
    }
    allow.check(&headers).map_err(|f| f.to_string())
}

/// Where RFC 8414 puts the metadata of `issuer`: the well-known segment between the
/// host and the issuer's path.
fn well_known_path(issuer: &str) -> String {
    let path = url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    format!("/.well-known/oauth-authorization-server{path}")
}

/// An OAuth error answer (RFC 6749 §5.2): `{error, error_description}`, never cached.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A form's or a query's parameters, in order, repeats kept (so that a repeat can be
/// refused).
type Params = Vec<(String, String)>;

/// The form of a `POST`; `None` for a body that is not one ([`not_a_form`] answers it).
fn form_of(
    form: Result<axum::extract::Form<Params>, axum::extract::rejection::FormRejection>,
) -> Option<Params> {
    form.ok().map(|axum::extract::Form(f)| f)
}

/// The answer to a `POST` whose body is not a form.
fn not_a_form() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "the body must be application/x-www-form-urlencoded",
    )
}

/// The first non-empty value of `key`.
fn field<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A fresh random secret for codes, sessions and CSRF tokens: 32 bytes, base64url.
fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS's random source answers");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Drop the oldest entries of a map that has grown past [`MAX_KEPT`].
fn bound<V>(map: &mut HashMap<String, V>, expires: impl Fn(&V) -> Instant) {
    let now = Instant::now();
    map.retain(|_, v| expires(v) > now);
    while map.len() >= MAX_KEPT {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| expires(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lives_where_rfc_8414_puts_it() {
        assert_eq!(
            well_known_path("https://a.example"),
            "/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known_path("https://a.example/tools"),
            "/.well-known/oauth-authorization-server/tools"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert_ne!(random_secret(), random_secret());
    }
}
