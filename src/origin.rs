//! The `Host` and `Origin` allow lists of both HTTP servers (`serve --transport http`
//! and `api`, git routes included): a foreign `Host` is how DNS rebinding reaches a
//! loopback server, a foreign `Origin` is a web page calling it from a browser.

/// Which `Host` and `Origin` values a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowLists {
    /// `Host` values accepted (host or host:port).
    pub hosts: Vec<String>,
    /// `Origin` values accepted (scheme://host[:port], `:*` for any port). Requests
    /// without an `Origin` (non-browser clients: git, the SDKs) pass.
    pub origins: Vec<String>,
}

impl Default for AllowLists {
    fn default() -> Self {
        Self {
            hosts: vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "[::1]".into(),
            ],
            origins: vec![
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
                "http://[::1]:*".into(),
            ],
        }
    }
}

/// Why a request is outside the allow lists; each server answers it `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Foreign {
    /// `Host` missing or not listed.
    #[error("this Host is not allowed (see --allowed-host)")]
    Host,
    /// `Origin` present and not listed.
    #[error("this Origin is not allowed (see --allowed-origin)")]
    Origin,
}

impl AllowLists {
    /// Whether a request with `headers` is one this server answers.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), Foreign> {
        if !host_allowed(headers, &self.hosts) {
            return Err(Foreign::Host);
        }
        if !origin_allowed(headers, &self.origins) {
            return Err(Foreign::Origin);
        }
        Ok(())
    }
}

/// The host part of a `Host` value, without port or IPv6 brackets.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Whether `Host` names an allowed host: an entry matches the whole `host:port` or
/// the host alone (IPv6 brackets optional).
fn host_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = host_name(host);
    allowed.iter().any(|a| {
        a.eq_ignore_ascii_case(host) || a.trim_matches(['[', ']']).eq_ignore_ascii_case(name)
    })
}

fn origin_allowed(headers: &axum::http::HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    allowed.iter().any(|a| match a.strip_suffix(":*") {
        Some(base) => {
            origin == base
                || origin.strip_prefix(base).is_some_and(|rest| {
                    rest.strip_prefix(':')
                        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                })
        }
        None => origin == a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

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
    fn hosts_and_origins_are_checked_against_the_allow_lists() {
        let o = AllowLists::default();
        assert!(host_allowed(
            &headers(&[("host", "127.0.0.1:8765")]),
            &o.hosts
        ));
        assert!(host_allowed(&headers(&[("host", "localhost")]), &o.hosts));
        assert!(host_allowed(&headers(&[("host", "[::1]:80")]), &o.hosts));
        assert!(!host_allowed(
            &headers(&[("host", "evil.example:8765")]),
            &o.hosts
        ));
        assert!(!host_allowed(&headers(&[]), &o.hosts));
        assert!(origin_allowed(&headers(&[]), &o.origins));
        assert!(origin_allowed(
            &headers(&[("origin", "http://localhost:3000")]),
            &o.origins
        ));
        assert!(!origin_allowed(
            &headers(&[("origin", "http://localhost.evil.example")]),
            &o.origins
        ));
        assert!(!origin_allowed(
            &headers(&[("origin", "https://evil.example")]),
            &o.origins
        ));
        assert_eq!(
            o.check(&headers(&[
                ("host", "localhost"),
                ("origin", "https://evil.example")
            ])),
            Err(Foreign::Origin)
        );
    }
}
