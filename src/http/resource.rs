//! This server as an OAuth protected resource (RFC 9728): its public URL, the metadata
//! document that names it, and the `WWW-Authenticate` challenges that point clients at
//! that document.
//!
//! MCP clients that implement MCP's authorization read the `resource_metadata` URL of a
//! `401`'s challenge, fetch the document, and learn which authorization servers issue
//! tokens for this resource. Without an authorization server configured the document
//! names none: a client is then handed a token by hand, as before.

use std::net::SocketAddr;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Where the metadata of a resource whose URL has no path is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The path of the MCP endpoint, which is the protected resource.
pub const MCP_PATH: &str = "/mcp";

/// The scopes a grant may hold, named as the rights of [`crate::scope::Right`].
pub const SCOPES: [&str; 3] = ["read", "write", "mint"];

/// This server as a protected resource: its URL and who issues tokens for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The public base URL, without a trailing slash (`https://mcp.example.com`, or
    /// `https://proxy.example.com/tools` behind a proxy that adds a path).
    base: String,
    /// Authorization servers that issue tokens for this resource (their issuer URLs).
    pub authorization_servers: Vec<String>,
}

impl ProtectedResource {
    /// The resource reached at `base`, a public URL checked by [`parse_public_url`].
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            authorization_servers: Vec::new(),
        }
    }

    /// The resource as clients reach it when no public URL is given: the address the
    /// server listens on, or, for a wildcard address, the first host clients are
    /// allowed to name (`--allowed-host`), on the same port.
    pub fn from_listener(local: SocketAddr, allowed_hosts: &[String]) -> Self {
        let host = if local.ip().is_unspecified() {
            allowed_hosts
                .first()
                .map(|h| h.split(':').next().unwrap_or(h).to_string())
                .unwrap_or_else(|| "localhost".into())
        } else {
            match local {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        Self::new(&format!("http://{host}:{}", local.port()))
    }

    /// The public base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The resource's identifier: the MCP endpoint's URL, which a token's audience
    /// names.
    pub fn resource(&self) -> String {
        format!("{}{MCP_PATH}", self.base)
    }

    /// The URL of the metadata document, in the path-suffixed form of RFC 9728 §3.1
    /// (the well-known segment goes between the host and the resource's path).
    pub fn metadata_url(&self) -> String {
        match url::Url::parse(&self.base) {
            Ok(u) => {
                let origin = u.origin().ascii_serialization();
                let path = u.path().trim_end_matches('/');
                format!("{origin}{METADATA_PATH}{path}{MCP_PATH}")
            }
            Err(_) => format!("{}{METADATA_PATH}{MCP_PATH}", self.base),
        }
    }

    /// The metadata document (RFC 9728 §2).
    pub fn metadata(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "resource": self.resource(),
            "bearer_methods_supported": ["header"],
            "scopes_supported": SCOPES,
            "resource_name": "scoped-repo-mcp",
        });
        if !self.authorization_servers.is_empty() {
            doc["authorization_servers"] = serde_json::json!(self.authorization_servers);
        }
        doc
    }

    /// The `WWW-Authenticate` value of a `401`: `error` is absent when no credential
    /// came, else `invalid_token` with a description.
    pub fn unauthorized_challenge(&self, description: Option<&str>) -> String {
        let mut c = format!(
            r#"Bearer realm="scoped-repo-mcp", resource_metadata="{}""#,
            self.metadata_url()
        );
        if let Some(d) = description {
            c.push_str(&format!(
                r#", error="invalid_token", error_description="{}""#,
                quoted(d)
            ));
        }
        c
    }

    /// The `WWW-Authenticate` value of a `403` for a call that needs `scope`, which the
    /// credential's grant lacks (RFC 6750 §3.1).
    pub fn insufficient_scope_challenge(&self, scope: &str, description: &str) -> String {
        format!(
            r#"Bearer realm="scoped-repo-mcp", error="insufficient_scope", scope="{scope}", resource_metadata="{}", error_description="{}""#,
            self.metadata_url(),
            quoted(description)
        )
    }

    /// The answer to `GET` of the metadata document.
    pub fn metadata_response(&self) -> Response {
        public_json(self.metadata())
    }
}

/// A metadata document as `GET` answers it: JSON any origin may read. Browser-based
/// clients (the Inspector's web page) read such documents across origins; they hold
/// nothing secret.
pub fn public_json(doc: serde_json::Value) -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A description inside a quoted-string: RFC 6750 allows no `"` or `\` there, and a
/// header value no control characters.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

/// Checks a `--public-url`: an absolute http(s) URL with a host and no query, fragment
/// or credentials. Answers it without a trailing slash.
pub fn parse_public_url(raw: &str) -> Result<String, String> {
    parse_base_url("--public-url", raw)
}

/// Checks a server's public base URL given as `flag` (see [`parse_public_url`]).
pub fn parse_base_url(flag: &str, raw: &str) -> Result<String, String> {
    let fix = "write it like https://mcp.example.com or https://example.com/prefix";
    let u = url::Url::parse(raw.trim())
        .map_err(|e| format!("{flag} `{raw}` is not a URL ({e}); {fix}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{flag} `{raw}` must be http or https; {fix}"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{flag} `{raw}` has no host; {fix}"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "{flag} `{raw}` must not have a query or fragment; {fix}"
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{flag} `{raw}` must not hold credentials; {fix}"));
    }
    let mut s = u.to_string();
    while s.ends_with('/') {
        s.pop();
    }
    Ok(s)
}

/// The host (and port, when not the scheme's default) of a public URL, as a `Host`
/// header names it.
pub fn public_host(base: &str) -> Option<String> {
    let u = url::Url::parse(base).ok()?;
    let host = u.host_str()?.to_string();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_puts_the_well_known_segment_before_the_path() {
        let r = ProtectedResource::new("https://mcp.example.com");
        assert_eq!(r.resource(), "https://mcp.example.com/mcp");
        assert_eq!(
            r.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let r = ProtectedResource::new("https://example.com/tools/");
        assert_eq!(r.resource(), "https://example.com/tools/mcp");
        assert_eq!(
            r.metadata_url(),
            "https://example.com/.well-known/oauth-protected-resource/tools/mcp"
        );
    }

    #[test]
    fn a_wildcard_listener_is_named_by_its_first_allowed_host() {
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        let r = ProtectedResource::from_listener(any, &["mcp.internal:9000".into()]);
        assert_eq!(r.resource(), "http://mcp.internal:9000/mcp");
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        assert_eq!(
            ProtectedResource::from_listener(v6, &[]).resource(),
            "http://[::1]:81/mcp"
        );
    }

    #[test]
    fn metadata_names_authorization_servers_only_when_there_are_some() {
        let mut r = ProtectedResource::new("http://127.0.0.1:1");
        assert!(r.metadata().get("authorization_servers").is_none());
        r.authorization_servers.push("http://127.0.0.1:1".into());
        assert_eq!(
            r.metadata()["authorization_servers"][0],
            "http://127.0.0.1:1"
        );
        assert_eq!(r.metadata()["resource"], "http://127.0.0.1:1/mcp");
    }

    #[test]
    fn challenges_carry_the_metadata_url_and_no_quote_from_the_description() {
        let r = ProtectedResource::new("http://h:1");
        let c = r.unauthorized_challenge(Some(r#"bad "token" \ here"#));
        assert!(c.contains(
            r#"resource_metadata="http://h:1/.well-known/oauth-protected-resource/mcp""#
        ));
        assert!(
            c.contains(r#"error_description="bad 'token' ' here""#),
            "{c}"
        );
        assert!(!r.unauthorized_challenge(None).contains("error="));
        let c = r.insufficient_scope_challenge("write", "read-only");
        assert!(c.contains(r#"error="insufficient_scope", scope="write""#));
    }

    #[test]
    fn public_urls_are_checked() {
        assert_eq!(
            parse_public_url("https://a.example/x/").unwrap(),
            "https://a.example/x"
        );
        assert_eq!(
            parse_public_url("http://a.example").unwrap(),
            "http://a.example"
        );
        for bad in [
            "a.example",
            "ftp://a.example",
            "https://a.example/?q=1",
            "https://u:p@a.example",
            "https://a.example/#f",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            public_host("https://a.example:8443/x").unwrap(),
            "a.example:8443"
        );
        assert_eq!(public_host("https://a.example/x").unwrap(), "a.example");
    }
}
