//! Clients and where codes may go: the redirect URI rules, and Dynamic Client
//! Registration (RFC 7591) for clients that do not publish a metadata document.
//!
//! Every client is public (no secret: PKCE protects the code), so registration asks
//! nothing of the caller; it is bounded in number ([`crate::store`] keeps at most
//! 10,000 clients) and each registration is recorded.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{OAuthServer, oauth_error};

/// Redirect URIs a client may register at most.
pub const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI or client name taken.
const MAX_URI_BYTES: usize = 2048;
const MAX_NAME_CHARS: usize = 100;

/// Whether `uri` may be a redirect URI: https anywhere, or http to a loopback host
/// (RFC 8252 §7.3), or a private-use scheme of a native app (`com.example.app:/cb`);
/// never with a fragment, credentials, or a dangerous scheme.
pub fn acceptable_redirect(uri: &str) -> Result<url::Url, String> {
    if uri.len() > MAX_URI_BYTES {
        return Err(format!(
            "a redirect URI is longer than {MAX_URI_BYTES} bytes"
        ));
    }
    let u = url::Url::parse(uri).map_err(|e| format!("`{uri}` is not a URL ({e})"))?;
    if u.fragment().is_some() {
        return Err(format!("redirect URI `{uri}` must not have a fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("redirect URI `{uri}` must not hold credentials"));
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback_host(&u) => Ok(u),
        "http" => Err(format!(
            "redirect URI `{uri}` must be https, or http to a loopback address (127.0.0.1, [::1], localhost)"
        )),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ws" | "wss" => Err(
            format!("redirect URI `{uri}` has a scheme that cannot be a redirect target"),
        ),
        // A native app's private-use scheme holds a dot (a reversed domain name).
        s if s.contains('.') => Ok(u),
        _ => Err(format!(
            "redirect URI `{uri}` must be https, http to loopback, or a reversed-domain scheme"
        )),
    }
}

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether `asked` matches one of `registered`: exactly, or, for a loopback http
/// URI, on any port (RFC 8252 §7.3: native apps listen on a port chosen at run time).
pub fn redirect_matches(asked: &str, registered: &[String]) -> bool {
    if registered.iter().any(|r| r == asked) {
        return true;
    }
    let Ok(a) = url::Url::parse(asked) else {
        return false;
    };
    if a.scheme() != "http" || !is_loopback_host(&a) {
        return false;
    }
    registered.iter().any(|r| {
        url::Url::parse(r).is_ok_and(|mut r| {
            r.scheme() == "http"
                && is_loopback_host(&r)
                && r.host() == a.host()
                && r.set_port(a.port()).is_ok()
                && r.as_str() == a.as_str()
        })
    })
}

/// A registration request; fields a public client cannot use are refused or set.
#[derive(Deserialize)]
pub struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// `POST /oauth/register`.
pub async fn register(
    State(server): State<Arc<OAuthServer>>,
    body: Result<Json<Registration>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(reg)) = body else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the body must be a JSON client metadata object",
        );
    };
    match check(&reg) {
        Ok((name, uris)) => {
            let store = server.store.clone();
            let registered =
                tokio::task::spawn_blocking(move || store.oauth_register_client(&name, &uris))
                    .await;
            match registered {
                Ok(Ok(client)) => {
                    server.record("oauth register", &client.name, Ok(""));
                    let body = serde_json::json!({
                        "client_id": client.client_id,
                        "client_id_issued_at": crate::model::unix_now(),
                        "client_name": client.name,
                        "redirect_uris": client.redirect_uris,
                        "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"],
                        "token_endpoint_auth_method": "none",
                    });
                    (StatusCode::CREATED, Json(body)).into_response()
                }
                Ok(Err(e)) => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    &e.to_string(),
                ),
                Err(_) => oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the registration failed",
                ),
            }
        }
        Err((error, why)) => {
            server.record("oauth register", "(unregistered)", Err(&why));
            oauth_error(StatusCode::BAD_REQUEST, error, &why)
        }
    }
}

fn check(reg: &Registration) -> Result<(String, Vec<String>), (&'static str, String)> {
    let bad_uri = |why: String| ("invalid_redirect_uri", why);
    let bad = |why: String| ("invalid_client_metadata", why);
    if reg.redirect_uris.is_empty() {
        return Err(bad_uri("redirect_uris must name at least one URI".into()));
    }
    if reg.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad_uri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs may be registered"
        )));
    }
    for uri in &reg.redirect_uris {
        acceptable_redirect(uri).map_err(bad_uri)?;
    }
    if let Some(g) = &reg.grant_types
        && g.iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(bad(
            "grant_types may hold authorization_code and refresh_token only".into(),
        ));
    }
    if let Some(r) = &reg.response_types
        && r.iter().any(|r| r != "code")
    {
        return Err(bad("response_types may hold code only".into()));
    }
    if let Some(m) = &reg.token_endpoint_auth_method
        && m != "none"
    {
        return Err(bad(format!(
            "token_endpoint_auth_method `{}` is not offered: clients here are public (none), with PKCE",
            crate::text::one_line(m)
        )));
    }
    let name = reg
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect()
        })
        .unwrap_or_else(|| "unnamed client".to_string());
    Ok((name, reg.redirect_uris.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_an_apps_own_scheme() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:33418/callback",
            "http://[::1]/cb",
            "http://localhost:9/cb",
            "com.example.app:/oauth",
        ] {
            assert!(acceptable_redirect(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://u:p@app.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "myapp:/cb",
            "not a url",
        ] {
            assert!(acceptable_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port_and_others_exactly() {
        let reg = vec![
            "http://127.0.0.1/callback".to_string(),
            "https://app.example/cb".to_string(),
        ];
        assert!(redirect_matches("http://127.0.0.1:51234/callback", &reg));
        assert!(redirect_matches("https://app.example/cb", &reg));
        assert!(!redirect_matches("http://127.0.0.1:51234/other", &reg));
        assert!(!redirect_matches("http://localhost:51234/callback", &reg));
        assert!(!redirect_matches("https://app.example:444/cb", &reg));
        assert!(!redirect_matches("https://app.example/cb?x=1", &reg));
        assert!(!redirect_matches("https://evil.example/cb", &reg));
    }
}
