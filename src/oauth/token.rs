//! The token endpoint and revocation: a code becomes a grant's first access token and
//! refresh token (with PKCE S256, once, within a minute, for the client, redirect URI
//! and resource it was made for), a refresh token becomes the next pair, and any of a
//! grant's tokens can end it (RFC 7009).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{OAuthServer, Params, field, form_of, not_a_form, oauth_error};
use crate::store::{OAuthGrant, RefreshOutcome};

/// Whether `verifier` is the PKCE verifier of `challenge` (S256: the challenge is the
/// base64url SHA-256 of the verifier, RFC 7636 §4.6).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine as _;
    use sha2::Digest as _;
    if !(43..=128).contains(&verifier.len())
        || !verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        return false;
    }
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    super::same_secret(&computed, challenge)
}

fn invalid_grant(why: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

/// `POST /oauth/token`.
pub async fn token(
    State(server): State<Arc<OAuthServer>>,
    form: Result<axum::extract::Form<Params>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(form) = form_of(form) else {
        return not_a_form();
    };
    let Some(client_id) = field(&form, "client_id").map(str::to_string) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is required (clients here are public)",
        );
    };
    if let Some(r) = field(&form, "resource")
        && r.trim_end_matches('/') != server.config.resource
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "the resource is not this server's MCP endpoint",
        );
    }
    match field(&form, "grant_type") {
        Some("authorization_code") => exchange_code(&server, &client_id, &form).await,
        Some("refresh_token") => refresh(&server, &client_id, &form).await,
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
    }
}

async fn exchange_code(server: &Arc<OAuthServer>, client_id: &str, form: &Params) -> Response {
    let (Some(code), Some(verifier)) = (field(form, "code"), field(form, "code_verifier")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code and code_verifier are required",
        );
    };
    let redirect_uri = field(form, "redirect_uri").unwrap_or_default();
    let key = crate::credentials::secrets::hash(code);
    // Checked and marked used under one lock, so a code is exchanged once.
    let checked: Result<OAuthGrant, (&str, Option<String>)> = {
        let mut m = server.memory();
        match m.codes.get_mut(&key) {
            None => Err(("the code is not known here", None)),
            Some(c) if c.issued.is_some() => Err((
                "the code was already used; its tokens have been revoked",
                c.issued.clone(),
            )),
            Some(c) if c.expires <= Instant::now() => Err(("the code has expired", None)),
            Some(c) if c.client_id != client_id => {
                Err(("the code was issued to another client", None))
            }
            Some(c) if c.redirect_uri != redirect_uri => {
                Err(("redirect_uri is not the one the code was issued for", None))
            }
            Some(c) if !pkce_matches(verifier, &c.challenge) => {
                Err(("the code_verifier does not match the code_challenge", None))
            }
            Some(c) => {
                c.issued = Some(String::new());
                Ok(c.grant.clone())
            }
        }
    };
    let grant = match checked {
        Ok(g) => g,
        Err((why, replayed)) => {
            // A replayed code means someone else has it: end what it gave.
            if let Some(access) = replayed.filter(|a| !a.is_empty()) {
                let store = server.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.oauth_revoke(&access)).await;
            }
            server.record("oauth token", client_id, Err(why));
            return invalid_grant(why);
        }
    };
    let store = server.store.clone();
    let id = client_id.to_string();
    let g = grant.clone();
    let issued = tokio::task::spawn_blocking(move || store.oauth_issue(&id, &g)).await;
    match issued {
        Ok(Ok((access, refresh))) => {
            if let Some(c) = server.memory().codes.get_mut(&key) {
                c.issued = Some(access.token.clone());
            }
            server.record("oauth token", &grant.client_name, Ok(&grant.client_name));
            answer(&access.token, &refresh, &grant)
        }
        Ok(Err(e)) => {
            server.record("oauth token", client_id, Err("mint failed"));
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string())
        }
        Err(_) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be issued",
        ),
    }
}

async fn refresh(server: &Arc<OAuthServer>, client_id: &str, form: &Params) -> Response {
    let Some(refresh) = field(form, "refresh_token").map(str::to_string) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let store = server.store.clone();
    let id = client_id.to_string();
    match tokio::task::spawn_blocking(move || store.oauth_refresh(&refresh, &id)).await {
        Ok(Ok(RefreshOutcome::Rotated {
            access,
            refresh,
            grant,
        })) => {
            server.record("oauth refresh", &grant.client_name, Ok(&grant.client_name));
            answer(&access.token, &refresh, &grant)
        }
        Ok(Ok(RefreshOutcome::Refused(why))) => {
            server.record("oauth refresh", client_id, Err(why));
            invalid_grant(why)
        }
        Ok(Err(e)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string()),
        Err(_) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be refreshed",
        ),
    }
}

fn answer(access: &str, refresh: &str, grant: &OAuthGrant) -> Response {
    let scope = if grant.read_only {
        "read"
    } else {
        "read write"
    };
    let mut r = Json(serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": grant.ttl_seconds,
        "refresh_token": refresh,
        "scope": scope,
    }))
    .into_response();
    super::no_store(&mut r);
    r
}

/// `POST /oauth/revoke` (RFC 7009): ends the grant any of its tokens belongs to.
/// Answers 200 whether or not the token was known, as the RFC asks.
pub async fn revoke(
    State(server): State<Arc<OAuthServer>>,
    form: Result<axum::extract::Form<Params>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(form) = form_of(form) else {
        return not_a_form();
    };
    let Some(token) = field(&form, "token").map(str::to_string) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let store = server.store.clone();
    let known = tokio::task::spawn_blocking(move || store.oauth_revoke(&token))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    let who = field(&form, "client_id").unwrap_or("(unnamed)");
    server.record(
        "oauth revoke",
        who,
        if known {
            Ok("")
        } else {
            Err("not a token of any grant")
        },
    );
    let mut r = StatusCode::OK.into_response();
    super::no_store(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
    }
}
