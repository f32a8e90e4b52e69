//! Sign-in and the consent page: the person who may grant access (the holder of the
//! operator's account key, or of a one-time sign-in link) sees who asks, chooses what
//! to grant, and the client gets a code.
//!
//! The pages are plain HTML rendered here, usable without JavaScript, with no asset
//! from elsewhere; they may not be framed, their forms post only here (and the
//! answer's redirect goes only to the client's registered URI), and a decision needs
//! the CSRF token of the browser's own sign-in.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{BrowserSession, OAuthServer, Params, PendingCode, field, random_secret, same_secret};
use crate::model::RepoId;
use crate::store::{OAuthClient, OAuthGrant};

const SESSION_COOKIE: &str = "srm_session";
const NEXT_COOKIE: &str = "srm_next";

/// The lifetimes offered, in seconds, with their words; those over `--max-token-ttl`
/// are left out.
const LIFETIMES: [(u64, &str); 5] = [
    (3600, "1 hour"),
    (8 * 3600, "8 hours"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days"),
];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}\
fieldset{border:1px solid #ccc;margin:1em 0;padding:.5em 1em}legend{font-weight:600}\
.warn{background:#fff4e5;border-left:4px solid #e69500;padding:.5em 1em}\
.err{background:#fdecea;border-left:4px solid #d93025;padding:.5em 1em}\
code{background:#f3f3f3;padding:0 .2em}button{font-size:1em;padding:.4em 1.2em;margin-right:1em}\
textarea{width:100%;font-family:monospace}";

/// An authorization request that passed every check.
struct AuthRequest {
    client: OAuthClient,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    resource: String,
    scope: Option<String>,
}

/// Why a request was refused: on a page (the client or its redirect URI cannot be
/// trusted, so nothing is sent there), or back at the client's redirect URI.
enum Refused {
    Page(StatusCode, String),
    Redirect(String),
}

/// The one value of `key`; a repeated parameter is refused.
fn one<'a>(params: &'a Params, key: &str) -> Result<Option<&'a str>, String> {
    let mut found = params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("the parameter `{key}` is given more than once"));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// `uri` with `pairs` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

impl OAuthServer {
    async fn check_request(&self, params: &Params) -> Result<AuthRequest, Refused> {
        let page = |why: String| Refused::Page(StatusCode::BAD_REQUEST, why);
        let client_id = one(params, "client_id").map_err(page)?.ok_or_else(|| {
            page("the request names no client_id; the client must send one".into())
        })?;
        let client = if super::client_metadata::is_metadata_url(client_id) {
            self.client_from_url(client_id).await.map_err(page)?
        } else {
            let store = self.store.clone();
            let id = client_id.to_string();
            tokio::task::spawn_blocking(move || store.oauth_client(&id))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .ok_or_else(|| page(format!("the client `{client_id}` is not registered here")))?
        };
        let redirect_uri = one(params, "redirect_uri")
            .map_err(page)?
            .ok_or_else(|| page("the request names no redirect_uri".into()))?;
        if !super::register::redirect_matches(redirect_uri, &client.redirect_uris) {
            return Err(page(format!(
                "the redirect_uri `{redirect_uri}` is not one the client registered; nothing was sent to it"
            )));
        }
        // From here on, errors go back to the client.
        let state = one(params, "state").ok().flatten().map(str::to_string);
        let back = |error: &str, why: &str| {
            let mut pairs = vec![
                ("error", error),
                ("error_description", why),
                ("iss", self.config.issuer.as_str()),
            ];
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            Refused::Redirect(with_query(redirect_uri, &pairs))
        };
        for key in [
            "response_type",
            "code_challenge",
            "code_challenge_method",
            "resource",
            "scope",
            "state",
        ] {
            if let Err(why) = one(params, key) {
                return Err(back("invalid_request", &why));
            }
        }
        if one(params, "response_type").ok().flatten() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is offered",
            ));
        }
        let challenge = one(params, "code_challenge").ok().flatten();
        let method = one(params, "code_challenge_method").ok().flatten();
        let Some(challenge) = challenge.filter(|c| {
            (43..=128).contains(&c.len())
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        }) else {
            return Err(back(
                "invalid_request",
                "a PKCE code_challenge (S256) is required",
            ));
        };
        if method != Some("S256") {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        let resource = match one(params, "resource").ok().flatten() {
            None => self.config.resource.clone(),
            Some(r) if r.trim_end_matches('/') == self.config.resource => {
                self.config.resource.clone()
            }
            Some(_) => {
                return Err(back(
                    "invalid_target",
                    "the resource is not this server's MCP endpoint",
                ));
            }
        };
        Ok(AuthRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            state,
            challenge: challenge.to_string(),
            resource,
            scope: one(params, "scope").ok().flatten().map(str::to_string),
        })
    }

    /// The browser's live sign-in, by its cookie.
    fn session_of(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let m = self.memory();
        let s = m.sessions.get(&id)?;
        (s.expires > Instant::now()).then(|| (id.clone(), s.csrf.clone()))
    }

    fn new_session(&self) -> String {
        let id = random_secret();
        let mut m = self.memory();
        super::bound(&mut m.sessions, |s| s.expires);
        m.sessions.insert(
            id.clone(),
            BrowserSession {
                csrf: random_secret(),
                expires: Instant::now() + super::SESSION_LIFETIME,
            },
        );
        id
    }

    fn cookie_attributes(&self) -> &'static str {
        if self.config.issuer.starts_with("https://") {
            "; Path=/oauth; HttpOnly; SameSite=Lax; Secure"
        } else {
            "; Path=/oauth; HttpOnly; SameSite=Lax"
        }
    }

    /// The repos a person may grant, with a label each.
    fn grantable(&self) -> Vec<(RepoId, String)> {
        let rows = self.store.repo_rows().unwrap_or_default();
        let label = |id: &RepoId| {
            rows.iter()
                .find(|r| r.id == *id)
                .and_then(|r| r.metadata.get("name").cloned())
                .unwrap_or_default()
        };
        if self.config.repos.is_empty() {
            rows.iter().map(|r| (r.id, label(&r.id))).collect()
        } else {
            self.config
                .repos
                .iter()
                .map(|id| (*id, label(id)))
                .collect()
        }
    }
}

/// `GET /oauth/authorize`: the consent page, or the sign-in page first.
pub async fn authorize_page(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    uri: axum::http::Uri,
) -> Response {
    let request = match server.check_request(&params).await {
        Ok(r) => r,
        Err(refused) => return refusal(refused),
    };
    let Some((_, csrf)) = server.session_of(&headers) else {
        let next = uri.query().unwrap_or_default().to_string();
        let mut r = sign_in_page(&next, None, StatusCode::OK);
        let cookie = format!(
            "{NEXT_COOKIE}={}{}; Max-Age=900",
            urlencode(&next),
            server.cookie_attributes()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        return r;
    };
    consent_page(&server, &request, &params, &csrf)
}

/// `POST /oauth/authorize`: the person's decision.
pub async fn decide(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<Params>,
) -> Response {
    let Some((_, csrf)) = server.session_of(&headers) else {
        return page(
            StatusCode::FORBIDDEN,
            "Sign-in needed",
            "<p class=err>This browser is not signed in (or its sign-in has expired). Start again from the application.</p>",
            None,
        );
    };
    let sent = field(&form, "csrf").unwrap_or_default();
    if !same_secret(sent, &csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p class=err>The form did not come from this server's consent page (its CSRF token is missing or wrong). Nothing was granted.</p>",
            None,
        );
    }
    let request = match server.check_request(&form).await {
        Ok(r) => r,
        Err(refused) => return refusal(refused),
    };
    let back = |pairs: &[(&str, &str)]| {
        answer_to(
            &request.redirect_uri,
            &server.config.issuer,
            request.state.as_deref(),
            pairs,
        )
    };
    if form.iter().any(|(k, v)| k == "decision" && v == "deny") {
        server.record("oauth consent", &request.client.name, Err("denied"));
        return back(&[
            ("error", "access_denied"),
            ("error_description", "the person declined"),
        ]);
    }
    let grant = match choices(&server, &request, &form) {
        Ok(g) => g,
        Err(why) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Check your choices",
                &format!(
                    "<p class=err>{}</p><p>Go back and choose again. Nothing was granted.</p>",
                    esc(&why)
                ),
                None,
            );
        }
    };
    let code = random_secret();
    {
        let mut m = server.memory();
        super::bound(&mut m.codes, |c| {
            c.expires + std::time::Duration::from_secs(600)
        });
        m.codes.insert(
            crate::credentials::secrets::hash(&code),
            PendingCode {
                client_id: request.client.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.challenge.clone(),
                grant,
                expires: Instant::now() + super::CODE_LIFETIME,
                issued: None,
            },
        );
    }
    server.record("oauth consent", &request.client.name, Ok(""));
    back(&[("code", code.as_str())])
}

/// The grant the person chose, checked against what the operator allows.
fn choices(
    server: &OAuthServer,
    request: &AuthRequest,
    form: &Params,
) -> Result<OAuthGrant, String> {
    let allowed = server.grantable();
    let mut repos = Vec::new();
    for (_, v) in form.iter().filter(|(k, _)| k == "repo") {
        let id: RepoId = v.parse().map_err(|_| format!("`{v}` is not a repo id"))?;
        if !allowed.iter().any(|(a, _)| *a == id) {
            return Err(format!("repo {id} is not one this server grants"));
        }
        if !repos.contains(&id) {
            repos.push(id);
        }
    }
    if repos.is_empty() {
        return Err("choose at least one repo".into());
    }
    let write = form.iter().any(|(k, v)| k == "access" && v == "write");
    if write && server.config.read_only {
        return Err("this server grants read-only access only".into());
    }
    let paths: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "paths")
        .flat_map(|(_, v)| v.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    crate::rules::token_paths(&paths).map_err(|e| e.to_string())?;
    crate::rules::PathSet::new(&paths).map_err(|e| e.to_string())?;
    let ttl: u64 = field(form, "ttl")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    if ttl == 0 || ttl > server.config.max_ttl.as_secs() {
        return Err(format!(
            "the lifetime must be between 1 second and {} seconds (--max-token-ttl)",
            server.config.max_ttl.as_secs()
        ));
    }
    let name: String = format!("oauth: {}", request.client.name)
        .chars()
        .take(80)
        .collect();
    Ok(OAuthGrant {
        client_name: name,
        repos,
        read_only: !write,
        paths,
        ttl_seconds: ttl,
        audience: request.resource.clone(),
    })
}

/// `POST /oauth/signin`: sign in with the operator's account key.
pub async fn sign_in(
    State(server): State<Arc<OAuthServer>>,
    axum::extract::Form(form): axum::extract::Form<Params>,
) -> Response {
    let next = field(&form, "next").unwrap_or_default().to_string();
    let key = field(&form, "key").unwrap_or_default();
    let store = server.store.clone();
    let key_for_check = key.trim().to_string();
    let live = !key_for_check.is_empty()
        && tokio::task::spawn_blocking(move || store.account_key_live(&key_for_check))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
    if !live {
        server.record("oauth sign-in", "(browser)", Err("not a live account key"));
        return sign_in_page(
            &next,
            Some("That is not a live account key of this server."),
            StatusCode::UNAUTHORIZED,
        );
    }
    server.record("oauth sign-in", "(browser)", Ok(""));
    signed_in(&server, &next)
}

/// `GET /oauth/login?link=…`: sign in with a one-time link.
pub async fn login_link(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let link = one(&params, "link")
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let store = server.store.clone();
    let good = !link.is_empty()
        && tokio::task::spawn_blocking(move || store.oauth_use_login(&link))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
    if !good {
        server.record(
            "oauth sign-in",
            "(link)",
            Err("link unknown, used or expired"),
        );
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign-in link refused",
            "<p class=err>This sign-in link is unknown, already used, or expired. Make a new one with <code>scoped-repo-mcp login</code>.</p>",
            None,
        );
    }
    server.record("oauth sign-in", "(link)", Ok(""));
    let next = cookie(&headers, NEXT_COOKIE)
        .map(|n| urldecode(&n))
        .unwrap_or_default();
    signed_in(&server, &next)
}

/// A new sign-in: the cookie, then back to the request that asked for it.
fn signed_in(server: &OAuthServer, next: &str) -> Response {
    let session = server.new_session();
    let mut r = if next.is_empty() {
        page(
            StatusCode::OK,
            "Signed in",
            "<p>Signed in. Go back to the application's tab and start its sign-in again, or reload the page that asked.</p>",
            None,
        )
    } else {
        // Only ever back to this server's own authorize page.
        redirect(&format!(
            "/oauth/authorize?{}",
            next.trim_start_matches('?')
        ))
    };
    let attrs = server.cookie_attributes();
    for c in [
        format!("{SESSION_COOKIE}={session}{attrs}; Max-Age=1800"),
        format!("{NEXT_COOKIE}={attrs}; Max-Age=0"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The redirect that answers the client: `pairs`, its `state` and the issuer (RFC 9207).
fn answer_to(
    redirect_uri: &str,
    issuer: &str,
    state: Option<&str>,
    pairs: &[(&str, &str)],
) -> Response {
    let mut all = pairs.to_vec();
    all.push(("iss", issuer));
    if let Some(s) = state {
        all.push(("state", s));
    }
    redirect(&with_query(redirect_uri, &all))
}

fn refusal(refused: Refused) -> Response {
    match refused {
        Refused::Page(status, why) => page(
            status,
            "This request cannot be answered",
            &format!("<p class=err>{}</p>", esc(&why)),
            None,
        ),
        Refused::Redirect(to) => redirect(&to),
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    super::no_store(&mut r);
    r
}

fn sign_in_page(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error = error
        .map(|e| format!("<p class=err>{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<p>An application asks for access to repositories on this server. Sign in to choose what it may do.</p>{error}\
<form method=post action=\"/oauth/signin\"><input type=hidden name=next value=\"{}\">\
<p><label>Account key <input type=password name=key autocomplete=off size=50 required></label></p>\
<p><button type=submit>Sign in</button></p></form>\
<p>Or open a one-time sign-in link: the one <code>serve --oauth</code> printed when it started, or a new one from <code>scoped-repo-mcp login</code>.</p>",
        esc(next)
    );
    page(status, "Sign in", &body, None)
}

fn consent_page(
    server: &OAuthServer,
    request: &AuthRequest,
    params: &Params,
    csrf: &str,
) -> Response {
    let host = url::Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| request.redirect_uri.clone());
    let mut hidden = String::new();
    for key in [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
        "resource",
        "scope",
    ] {
        if let Ok(Some(v)) = one(params, key) {
            hidden.push_str(&format!(
                "<input type=hidden name=\"{key}\" value=\"{}\">",
                esc(v)
            ));
        }
    }
    hidden.push_str(&format!(
        "<input type=hidden name=csrf value=\"{}\">",
        esc(csrf)
    ));
    let repos = server.grantable();
    let mut repo_boxes = String::new();
    for (id, label) in &repos {
        let label = if label.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(label))
        };
        repo_boxes.push_str(&format!(
            "<label><input type=checkbox name=repo value=\"{id}\"> <code>{id}</code>{label}</label><br>"
        ));
    }
    if repos.is_empty() {
        repo_boxes.push_str("<p class=err>This server has no repo to grant.</p>");
    }
    let write_disabled = if server.config.read_only {
        " disabled"
    } else {
        ""
    };
    let mut lifetimes = String::new();
    let max = server.config.max_ttl.as_secs();
    for (i, (secs, words)) in LIFETIMES.iter().filter(|(s, _)| *s <= max).enumerate() {
        let selected = if i == 0 { " selected" } else { "" };
        lifetimes.push_str(&format!("<option value={secs}{selected}>{words}</option>"));
    }
    if lifetimes.is_empty() {
        lifetimes.push_str(&format!(
            "<option value={max} selected>{max} seconds</option>"
        ));
    }
    let asked = request
        .scope
        .as_deref()
        .map(|s| {
            format!(
                "<p>It asks for the scope <code>{}</code>; you decide below.</p>",
                esc(s)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p><strong>{name}</strong> asks for access to repositories on this server.</p>\
<p class=warn>The name is what the application calls itself, and it will receive access at <strong>{host}</strong>. Nothing here verifies either: grant access only if you started this sign-in.</p>{asked}\
<form method=post action=\"/oauth/authorize\">{hidden}\
<fieldset><legend>Repositories</legend>{repo_boxes}</fieldset>\
<fieldset><legend>Access</legend>\
<label><input type=radio name=access value=read checked> Read only: search, read and list files</label><br>\
<label><input type=radio name=access value=write{write_disabled}> Read and write: also change files</label></fieldset>\
<fieldset><legend>Paths (optional)</legend><label>Globs, one a line; empty: every path.<br>\
<textarea name=paths rows=3 placeholder=\"src/**&#10;docs/*.md\"></textarea></label></fieldset>\
<fieldset><legend>For how long</legend><select name=ttl>{lifetimes}</select></fieldset>\
<p><button type=submit name=decision value=allow>Allow</button><button type=submit name=decision value=deny>Deny</button></p>\
</form>",
        name = esc(&request.client.name),
        host = esc(&host),
    );
    page(
        StatusCode::OK,
        "Grant access",
        &body,
        Some(&request.redirect_uri),
    )
}

/// An HTML page with the headers every page here carries. `redirect_to`: the
/// client's redirect URI, the one place besides this server a form's answer may go.
fn page(status: StatusCode, title: &str, body: &str, redirect_to: Option<&str>) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>{t} · scoped-repo-mcp</title><style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    let form_action = match redirect_to.and_then(form_target) {
        Some(t) => format!("'self' {t}"),
        None => "'self'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; style-src '{}'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
        style_hash()
    );
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it browsers send `Origin: null` on the pages' own form
        // posts, which the Origin check must then refuse.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    super::no_store(&mut r);
    r
}

/// The CSP source a redirect URI's answer goes to: its origin, or its scheme for an
/// app's own scheme.
fn form_target(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.scheme() {
        "http" | "https" => Some(u.origin().ascii_serialization()),
        s => Some(format!("{s}:")),
    }
}

/// The CSP hash of the one inline style.
fn style_hash() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(STYLE.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Text made safe for HTML, in content and in quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn urldecode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_in_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        let p: Params = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
        assert!(one(&p, "a").is_err());
        assert_eq!(one(&p, "b").unwrap(), None);
    }

    #[test]
    fn the_next_request_survives_its_cookie() {
        let q = "response_type=code&client_id=srmc-1&state=a%20b";
        assert_eq!(urldecode(&urlencode(q)), q);
    }

    #[test]
    fn forms_may_post_only_here_and_to_the_clients_redirect() {
        assert_eq!(
            form_target("http://127.0.0.1:5555/cb?x=1").unwrap(),
            "http://127.0.0.1:5555"
        );
        assert_eq!(
            form_target("com.example.app:/cb").unwrap(),
            "com.example.app:"
        );
        let r = page(StatusCode::OK, "t", "b", Some("https://app.example/cb"));
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains("form-action 'self' https://app.example"),
            "{csp}"
        );
        assert!(csp.contains("default-src 'none'"), "{csp}");
    }
}
