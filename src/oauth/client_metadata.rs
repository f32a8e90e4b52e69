//! Client ids that are URLs (OAuth Client ID Metadata Documents, which MCP's
//! authorization prefers): the server fetches the document the id names to learn the
//! client's name and redirect URIs.
//!
//! That fetch is made on behalf of anyone who can open the consent page, so it must not
//! become a way into the server's own network: https only, to a public address only
//! (every address the name resolves to is checked, and the connection is pinned to the
//! one checked), no redirects, no proxy, a size cap and a timeout; answers are cached
//! for a while. `--oauth-allow-private-client-metadata` lifts the address rule (and
//! allows plain http there), for a client on the same machine or network.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::OAuthServer;
use super::register::acceptable_redirect;
use crate::store::OAuthClient;

/// The longest a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document read.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long a fetched document is used before it is fetched again.
pub const CACHE_FOR: Duration = Duration::from_secs(600);

/// Whether a client id is a URL to fetch rather than a registered id.
pub fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Whether `ip` is an address on the public internet: not loopback, private,
/// link-local, shared (CGNAT), unique-local, documentation, benchmark, multicast,
/// broadcast or unspecified, in either family (IPv4 inside IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

impl OAuthServer {
    /// The client a URL client id names: from the cache, or fetched under the rules
    /// above. The error says why, in words for the person at the consent page.
    pub async fn client_from_url(&self, client_id: &str) -> Result<OAuthClient, String> {
        if let Some((at, c)) = self.memory().clients.get(client_id)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(c.clone());
        }
        let client = self.fetch_client(client_id).await?;
        let mut m = self.memory();
        super::bound(&mut m.clients, |(at, _)| *at + CACHE_FOR);
        m.clients
            .insert(client_id.to_string(), (Instant::now(), client.clone()));
        Ok(client)
    }

    async fn fetch_client(&self, client_id: &str) -> Result<OAuthClient, String> {
        let private_ok = self.config.allow_private_client_metadata;
        let url = url::Url::parse(client_id)
            .map_err(|e| format!("the client id `{client_id}` is not a URL ({e})"))?;
        if url.scheme() != "https" && !(private_ok && url.scheme() == "http") {
            return Err("a client metadata URL must be https".into());
        }
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err("a client metadata URL must have no fragment or credentials".into());
        }
        let host = url
            .host_str()
            .ok_or("a client metadata URL needs a host")?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("the client metadata host `{host}` does not resolve ({e})"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!(
                "the client metadata host `{host}` does not resolve"
            ));
        }
        if !private_ok && let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "the client metadata host `{host}` resolves to {}, which is not a public address; the operator may allow that with --oauth-allow-private-client-metadata",
                a.ip()
            ));
        }
        // Connect to the address checked, not to whatever a second lookup answers.
        let pinned = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .resolve(&host, addrs[0])
            .build()
            .map_err(|e| format!("the client metadata could not be fetched ({e})"))?;
        let resp = pinned
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("the client metadata could not be fetched ({e})"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the client metadata URL answered {} (redirects are not followed)",
                resp.status()
            ));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("the client metadata broke off ({e})"))?;
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the client metadata is larger than {} KiB",
                    MAX_DOCUMENT_BYTES / 1024
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_document(client_id, &body)
    }
}

/// A fetched document as a client: its `client_id` must be the URL it came from, and
/// its redirect URIs must pass the same rules as registration's.
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<OAuthClient, String> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "the client metadata is not a JSON object".to_string())?;
    if doc.get("client_id").and_then(|v| v.as_str()) != Some(client_id) {
        return Err("the client metadata's client_id is not the URL it was fetched from".into());
    }
    let uris: Vec<String> = doc
        .get("redirect_uris")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.len() > super::register::MAX_REDIRECT_URIS {
        return Err("the client metadata must list between 1 and 10 redirect_uris".into());
    }
    for u in &uris {
        acceptable_redirect(u)?;
    }
    let name = doc
        .get("client_name")
        .and_then(|v| v.as_str())
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            url::Url::parse(client_id)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "unnamed client".into())
        });
    Ok(OAuthClient {
        client_id: client_id.to_string(),
        name,
        redirect_uris: uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_document_must_name_itself_and_list_good_redirects() {
        let id = "https://app.example/client.json";
        let good = serde_json::json!({"client_id": id, "client_name": "App",
            "redirect_uris": ["http://127.0.0.1/cb"]});
        let c = parse_document(id, good.to_string().as_bytes()).unwrap();
        assert_eq!(c.name, "App");
        let other = serde_json::json!({"client_id": "https://evil.example/c.json",
            "redirect_uris": ["http://127.0.0.1/cb"]});
        assert!(parse_document(id, other.to_string().as_bytes()).is_err());
        let bad_uri =
            serde_json::json!({"client_id": id, "redirect_uris": ["http://evil.example/cb"]});
        assert!(parse_document(id, bad_uri.to_string().as_bytes()).is_err());
        assert!(parse_document(id, b"[]").is_err());
    }
}
