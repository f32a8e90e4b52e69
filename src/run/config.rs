//! Settings validated from the command line and environment: `ServeConfig`, the
//! factory of `serve`'s backend (the one place that picks it), and `ApiConfig`. A bad
//! setting fails here, with a sentence that says how to fix it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::LocalBackend;
use crate::connections::ConnectionLimits;
use crate::git_source::AllowedHosts;
use crate::http::HttpOptions;
use crate::model::RepoId;
use crate::origin::AllowLists;
use crate::rate::Rate;
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::run::cli::{
    ApiArgs, BackendKind, ConnectionArgs, OriginArgs, ServeArgs, StoreLimitArgs, Transport,
};
use crate::store::{Limits, Store};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The data directory: the flag, else `$XDG_DATA_HOME/scoped-repo-mcp`, else
/// `~/.local/share/scoped-repo-mcp`.
///
/// A `--data-dir` whose parent does not exist is refused rather than made, parents and
/// all: it is most often a typo, and a store made there would be a second, empty one.
/// The default directory's parents are made as needed.
pub fn data_dir(flag: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(d) = flag {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty())
            && !d.exists()
            && !parent.is_dir()
        {
            return Err(ConfigError(format!(
                "--data-dir {}: its parent directory {} does not exist; check the path for a typo, or create the parent first",
                d.display(),
                parent.display()
            )));
        }
        return Ok(d.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("scoped-repo-mcp"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h).join(".local/share/scoped-repo-mcp"));
    }
    Err(ConfigError(
        "no data directory: pass --data-dir DIR or set SCOPED_REPO_DATA_DIR (HOME is not set)"
            .into(),
    ))
}

/// Parse a duration such as `90s`, `30m`, `1h`, `7d`.
pub fn parse_duration(flag: &str, raw: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw.trim()).map_err(|e| {
        ConfigError(format!(
            "{flag} `{raw}` is not a duration ({e}); write it like 90s, 30m, 1h or 7d"
        ))
    })
}

/// `api --max-token-ttl`: unset means no cap; a zero or unparsable duration is refused.
pub fn api_max_token_ttl(raw: Option<&str>) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let d = parse_duration("--max-token-ttl", raw)?;
    if d.is_zero() {
        return Err(ConfigError(
            "--max-token-ttl must be longer than 0s; leave it unset for no cap".into(),
        ));
    }
    Ok(Some(d.as_secs()))
}

/// `--audit-retention`: how long audit records are kept; `0` turns the trail off.
pub fn audit_retention(raw: &str) -> Result<Duration, ConfigError> {
    if raw.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration("--audit-retention", raw)
}

/// `--index-memory`: a size (see [`parse_size`]); unset: a quarter of the machine's
/// memory.
pub fn index_memory(raw: Option<&str>) -> Result<usize, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(crate::store::default_index_memory());
    };
    parse_size("--index-memory", raw)
}

/// `--max-file-size` and `--max-repo-size`: the store's limits, each its default when
/// unset. A file cap over the quota is let be: the quota then decides.
pub fn store_limits(args: &StoreLimitArgs) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    fn given(raw: &Option<String>) -> Option<&str> {
        raw.as_deref().map(str::trim).filter(|r| !r.is_empty())
    }
    if let Some(raw) = given(&args.max_file_size) {
        limits.max_file_bytes = parse_size("--max-file-size", raw)?;
    }
    if let Some(raw) = given(&args.max_repo_size) {
        limits.max_repo_bytes = parse_size("--max-repo-size", raw)? as u64;
    }
    Ok(limits)
}

/// A size such as `2GiB`, `512MiB`, `64KiB` or a number of bytes (`K`, `M`, `G`, `T`,
/// with or without `iB`, count in 1024s; `KB`, `MB`, `GB`, `TB` in 1000s), at least 1,
/// given to `flag`.
fn parse_size(flag: &str, raw: &str) -> Result<usize, ConfigError> {
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let scale: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => f64::NAN,
    };
    let bytes = number.parse::<f64>().map(|n| n * scale);
    match bytes {
        Ok(b) if b.is_finite() && b >= 1.0 && b < usize::MAX as f64 => Ok(b as usize),
        _ => Err(ConfigError(format!(
            "{flag} `{raw}` is not a size; write it like 2GiB, 512MiB or 65536 (bytes), at least 1"
        ))),
    }
}

/// `--rate-limit`: unset means no limit but the tokens' own.
pub fn rate_limit(raw: Option<&str>) -> Result<Option<crate::rate::Rate>, ConfigError> {
    raw.map(|r| {
        r.parse()
            .map_err(|e: crate::rate::BadRate| ConfigError(format!("--rate-limit: {e}")))
    })
    .transpose()
}

/// Parse repo IDs given on the command line.
pub fn parse_repo_ids(flag: &str, raw: &[String]) -> Result<Vec<RepoId>, ConfigError> {
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<RepoId>()
                .map_err(|e| ConfigError(format!("{flag}: {e}")))
        })
        .collect()
}

/// The most connections `--max-connections` may allow.
const MAX_CONNECTIONS_CEILING: usize = 1 << 20;

/// Validate an HTTP server's connection limits.
pub fn connection_limits(args: &ConnectionArgs) -> Result<ConnectionLimits, ConfigError> {
    let header_read_timeout = parse_duration("--header-read-timeout", &args.header_read_timeout)?;
    if header_read_timeout.is_zero() {
        return Err(ConfigError(
            "--header-read-timeout must be longer than 0s (10s is a sane value)".into(),
        ));
    }
    let idle_timeout = parse_duration("--idle-timeout", &args.idle_timeout)?;
    if idle_timeout.is_zero() {
        return Err(ConfigError(
            "--idle-timeout must be longer than 0s; event streams send a keep-alive every 15s, so keep it above that".into(),
        ));
    }
    if args.max_connections == 0 || args.max_connections > MAX_CONNECTIONS_CEILING {
        return Err(ConfigError(format!(
            "--max-connections must be between 1 and {MAX_CONNECTIONS_CEILING}"
        )));
    }
    let body_timeout = parse_duration("--body-timeout", &args.body_timeout)?;
    if body_timeout.is_zero() {
        return Err(ConfigError(
            "--body-timeout must be longer than 0s (2m is a sane value)".into(),
        ));
    }
    Ok(ConnectionLimits {
        header_read_timeout,
        idle_timeout,
        max_connections: args.max_connections,
        body_timeout,
    })
}

/// Validate the per-credential cap on requests in flight.
pub fn max_concurrent_per_token(args: &ConnectionArgs) -> Result<usize, ConfigError> {
    if args.max_concurrent_per_token == 0 {
        return Err(ConfigError(
            "--max-concurrent-per-token must be at least 1".into(),
        ));
    }
    Ok(args.max_concurrent_per_token)
}

/// The Host and Origin allow lists of a server listening on `listen`: the defaults
/// name only loopback, so a server on another address must be told the names its
/// clients use.
pub fn allow_lists(args: &OriginArgs, listen: &str) -> Result<AllowLists, ConfigError> {
    let mut lists = AllowLists::default();
    let loopback = match listen.trim().parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen
            .trim()
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    };
    if !args.allowed_hosts.is_empty() {
        lists.hosts = args
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
    } else if !loopback {
        return Err(ConfigError(format!(
            "listening on {listen}, which is not loopback: name the host clients will use with --allowed-host (e.g. --allowed-host mcp.internal)"
        )));
    }
    if !args.allowed_origins.is_empty() {
        lists.origins = args
            .allowed_origins
            .iter()
            .map(|o| o.trim().to_string())
            .collect();
    }
    Ok(lists)
}

/// Validated settings of `serve`.
#[derive(Clone)]
pub struct ServeConfig {
    /// The transport.
    pub transport: Transport,
    /// The backend.
    pub backend: BackendKind,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The operator's repo set (empty: none given).
    pub repos: Vec<RepoId>,
    /// A directory to import (or reuse) and serve.
    pub import: Option<PathBuf>,
    /// Import without reading ignore files.
    pub no_ignore: bool,
    /// How long a tool call waits for a background import of its repo.
    pub import_wait: Duration,
    /// On stop, how long to wait for an index being stored (`--stop-timeout`).
    pub stop_timeout: Duration,
    /// How long a ranked question waits for a build of its index (`--ranked-wait`).
    pub ranked_wait: Duration,
    /// Offer only read tools.
    pub read_only: bool,
    /// Cap on minted tokens' lifetime.
    pub max_token_ttl: Duration,
    /// The credential, if any.
    pub api_key: Option<String>,
    /// The Relace API's base URL, without a trailing `/`.
    pub base_url: String,
    /// HTTP settings, when the transport is HTTP.
    pub http: Option<HttpSettings>,
    /// How long one request to the Relace API may take.
    pub request_timeout: Duration,
    /// How long audit records are kept; zero: no audit trail.
    pub audit_retention: Duration,
    /// Heap the search indexes of all repos may hold, in bytes.
    pub index_memory: usize,
    /// `--rate-limit`: every credential's rate; `None`: only the tokens' own.
    pub rate_limit: Option<Rate>,
    /// The embedded store's size limits (`--max-file-size`, `--max-repo-size`; set from
    /// the command's global flags, [`store_limits`]).
    pub limits: Limits,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("transport", &self.transport)
            .field("backend", &self.backend)
            .field("data_dir", &self.data_dir)
            .field("repos", &self.repos)
            .field("import", &self.import)
            .field("read_only", &self.read_only)
            .field("max_token_ttl", &self.max_token_ttl)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("base_url", &self.base_url)
            .field("http", &self.http)
            .field("request_timeout", &self.request_timeout)
            .field("audit_retention", &self.audit_retention)
            .field("index_memory", &self.index_memory)
            .finish()
    }
}

impl ServeConfig {
    /// Validate `serve`'s flags.
    pub fn from_args(args: &ServeArgs, data_dir_flag: Option<&Path>) -> Result<Self, ConfigError> {
        let api_key = args
            .api_key
            .clone()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        let backend = args.backend.unwrap_or(if api_key.is_some() {
            BackendKind::Relace
        } else {
            BackendKind::Local
        });
        let base_url = args.base_url.trim().trim_end_matches('/').to_string();
        let request_timeout = parse_duration("--request-timeout", &args.request_timeout)?;
        if backend == BackendKind::Relace {
            if api_key.is_none() {
                return Err(ConfigError(
                    "--backend relace needs a credential: set RELACE_API_KEY to an account key (rlc-…) or a repo token (rlcr-…)".into(),
                ));
            }
            match reqwest::Url::parse(&base_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if !u.username().is_empty() || u.password().is_some() {
                        return Err(ConfigError(
                            "RELACE_BASE_URL must not carry credentials; put the credential in RELACE_API_KEY".into(),
                        ));
                    }
                }
                _ => {
                    return Err(ConfigError(format!(
                        "RELACE_BASE_URL `{base_url}` is not an http(s) URL; write it like https://api.relace.run/v1"
                    )));
                }
            }
            if args.import.is_some() {
                return Err(ConfigError(
                    "--import works only with --backend local; with --backend relace, create the repo through the API and pass --repo ID".into(),
                ));
            }
            if request_timeout.is_zero() {
                return Err(ConfigError(
                    "--request-timeout must be longer than 0s".into(),
                ));
            }
        }
        let http = match args.transport {
            Transport::Http => Some(HttpSettings::from_args(args)?),
            Transport::Stdio if args.allow_anonymous => {
                return Err(ConfigError(
                    "--allow-anonymous applies to --transport http only".into(),
                ));
            }
            Transport::Stdio if args.oauth || args.public_url.is_some() => {
                return Err(ConfigError(
                    "--oauth and --public-url apply to --transport http only".into(),
                ));
            }
            Transport::Stdio => None,
        };
        if args.oauth && backend == BackendKind::Relace {
            return Err(ConfigError(
                "--oauth grants the embedded store's tokens: use it with --backend local (a hosted account signs clients in with its own tokens)".into(),
            ));
        }
        if http.as_ref().is_some_and(|h| h.allow_anonymous)
            && args.repos.is_empty()
            && args.import.is_none()
        {
            return Err(ConfigError(
                "--allow-anonymous sessions use exactly the --repo set: give --repo ID (or --import DIR)".into(),
            ));
        }
        let max_token_ttl = parse_duration("--max-token-ttl", &args.max_token_ttl)?;
        if max_token_ttl.is_zero() {
            return Err(ConfigError("--max-token-ttl must be longer than 0s".into()));
        }
        Ok(Self {
            transport: args.transport,
            backend,
            data_dir: data_dir(data_dir_flag)?,
            repos: parse_repo_ids("--repo / SCOPED_REPO_IDS", &args.repos)?,
            import: args.import.clone(),
            no_ignore: args.no_ignore,
            stop_timeout: parse_duration("--stop-timeout", &args.stop_timeout)?,
            ranked_wait: parse_duration("--ranked-wait", &args.ranked_wait)?,
            import_wait: {
                let wait = parse_duration("--import-wait", &args.import_wait)?;
                if wait > Duration::from_secs(600) {
                    return Err(ConfigError(
                        "--import-wait is at most 10m: MCP clients give up on calls far sooner"
                            .into(),
                    ));
                }
                wait
            },
            read_only: args.read_only,
            max_token_ttl,
            api_key,
            base_url,
            request_timeout,
            http,
            audit_retention: audit_retention(&args.audit_retention)?,
            index_memory: index_memory(args.index_memory.as_deref())?,
            rate_limit: rate_limit(args.rate_limit.as_deref())?,
            limits: Limits::default(),
        })
    }
}

/// The backend `serve` runs on, opened from its settings.
// Opened once at start-up and unpacked at once: the size of one variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ServeBackend {
    /// The embedded store.
    Local(LocalBackend),
    /// The Relace API, with the operator's credential.
    Relace {
        /// The client of the operator's credential.
        backend: RelaceBackend,
        /// How requests to the API are retried and timed out; the HTTP transport builds
        /// each caller's own client with it.
        policy: RetryPolicy,
    },
}

impl ServeConfig {
    /// Open the backend: the one place that picks it, and the one place that builds
    /// the Relace client.
    pub fn open_backend(&self) -> Result<ServeBackend, ConfigError> {
        match self.backend {
            BackendKind::Local => Ok(ServeBackend::Local(LocalBackend::new(self.open_store()?))),
            BackendKind::Relace => {
                let policy = RetryPolicy {
                    timeout: self.request_timeout,
                    ..RetryPolicy::default()
                };
                let credential = self.api_key.as_deref().unwrap_or_default();
                let client = RelaceClient::new(&self.base_url, credential, policy)
                    .map_err(|e| ConfigError(e.to_string()))?;
                Ok(ServeBackend::Relace {
                    backend: RelaceBackend::new(client).with_history(&self.data_dir),
                    policy,
                })
            }
        }
    }

    /// Open the embedded store in `data_dir`.
    pub fn open_store(&self) -> Result<Arc<Store>, ConfigError> {
        Store::open(&self.data_dir, self.limits)
            .map(|s| {
                s.set_index_memory(self.index_memory);
                s.set_ranked_wait(self.ranked_wait);
                super::say_if_new(&s);
                Arc::new(s)
            })
            .map_err(|e| {
                ConfigError(format!(
                    "cannot open the store in {}: {e}; check the path and its permissions, or pass another --data-dir",
                    self.data_dir.display()
                ))
            })
    }
}

/// Validated settings of the HTTP transports.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Let requests without a credential use the operator's repo set.
    pub allow_anonymous: bool,
    /// Host/Origin allow lists, body cap, concurrency and session caps.
    pub options: HttpOptions,
    /// Connection cap and timeouts.
    pub connections: ConnectionLimits,
    /// The public base URL (`--public-url`), checked; `None`: the listening address.
    pub public_url: Option<String>,
    /// Run the embedded OAuth authorization server (`--oauth`).
    pub oauth: bool,
    /// Client metadata may come from private addresses.
    pub oauth_allow_private_client_metadata: bool,
}

impl HttpSettings {
    fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
            ConfigError(format!(
                "--listen `{}` is not an address; write it like 127.0.0.1:8765",
                args.listen
            ))
        })?;
        if args.allow_anonymous && !listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "--allow-anonymous is allowed on loopback addresses only, not {listen}; drop it or listen on 127.0.0.1"
            )));
        }
        let public_url = args
            .public_url
            .as_deref()
            .map(crate::http::resource::parse_public_url)
            .transpose()
            .map_err(ConfigError)?;
        // The public URL names the host clients use: with it, no --allowed-host is
        // needed, even on an address that is not loopback.
        let listen_named = if public_url.is_some() && args.origins.allowed_hosts.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            listen.to_string()
        };
        let mut allow = allow_lists(&args.origins, &listen_named)?;
        if let Some(host) = public_url
            .as_deref()
            .and_then(crate::http::resource::public_host)
        {
            allow.hosts.push(host);
        }
        // The consent page's forms post from the public origin.
        if let Some(origin) = public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
        {
            allow.origins.push(origin);
        }
        let mut options = HttpOptions {
            allow,
            max_concurrent_per_credential: max_concurrent_per_token(&args.connections)?,
            ..HttpOptions::default()
        };
        if args.max_sessions_per_token == 0 {
            return Err(ConfigError(
                "--max-sessions-per-token must be at least 1".into(),
            ));
        }
        options.max_sessions_per_credential = args.max_sessions_per_token;
        options.session_idle_timeout =
            parse_duration("--session-idle-timeout", &args.session_idle_timeout)?;
        if options.session_idle_timeout.is_zero() {
            return Err(ConfigError(
                "--session-idle-timeout must be longer than 0s".into(),
            ));
        }
        Ok(Self {
            listen,
            allow_anonymous: args.allow_anonymous,
            options,
            connections: connection_limits(&args.connections)?,
            public_url,
            oauth: args.oauth,
            oauth_allow_private_client_metadata: args.oauth_allow_private_client_metadata,
        })
    }
}

/// Validated settings of `api`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// On stop, how long to wait for an index being stored (`--stop-timeout`).
    pub stop_timeout: Duration,
    /// How long a ranked question waits for a build of its index (`--ranked-wait`).
    pub ranked_wait: Duration,
    /// Where to listen, as given (`--listen`); bound at start.
    pub listen: String,
    /// How long audit records are kept; zero: no audit trail.
    pub audit_retention: Duration,
    /// Connection cap and timeouts.
    pub connections: ConnectionLimits,
    /// Heap the search indexes of all repos may hold, in bytes.
    pub index_memory: usize,
    /// The longest lifetime a minted token may have, in seconds; `None`: no cap.
    pub max_token_ttl: Option<u64>,
    /// The hosts a git source may fetch from (`--allowed-git-host`).
    pub allowed_git_hosts: AllowedHosts,
    /// The `Host` and `Origin` values answered.
    pub allow: AllowLists,
    /// Requests in flight at once per credential.
    pub max_concurrent_per_token: usize,
    /// Every credential's rate; `None`: only the tokens' own.
    pub rate_limit: Option<Rate>,
    /// The embedded store's size limits (set from the command's global flags,
    /// [`store_limits`]).
    pub limits: Limits,
}

impl ApiConfig {
    /// Validate `api`'s flags.
    pub fn from_args(args: &ApiArgs, data_dir_flag: Option<&Path>) -> Result<Self, ConfigError> {
        Ok(Self {
            data_dir: data_dir(data_dir_flag)?,
            listen: args.listen.clone(),
            stop_timeout: parse_duration("--stop-timeout", &args.stop_timeout)?,
            ranked_wait: parse_duration("--ranked-wait", &args.ranked_wait)?,
            audit_retention: audit_retention(&args.audit_retention)?,
            connections: connection_limits(&args.connections)?,
            index_memory: index_memory(args.index_memory.as_deref())?,
            max_token_ttl: api_max_token_ttl(args.max_token_ttl.as_deref())?,
            allowed_git_hosts: AllowedHosts::parse(&args.allowed_git_hosts).map_err(ConfigError)?,
            allow: allow_lists(&args.origins, &args.listen)?,
            max_concurrent_per_token: max_concurrent_per_token(&args.connections)?,
            rate_limit: rate_limit(args.rate_limit.as_deref())?,
            limits: Limits::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_memory_sizes_read_as_people_write_them() {
        assert_eq!(index_memory(Some("2GiB")).unwrap(), 2 << 30);
        assert_eq!(index_memory(Some("512 MiB")).unwrap(), 512 << 20);
        assert_eq!(index_memory(Some("64k")).unwrap(), 64 << 10);
        assert_eq!(index_memory(Some("1.5G")).unwrap(), 3 << 29);
        assert_eq!(index_memory(Some("2GB")).unwrap(), 2_000_000_000);
        assert_eq!(index_memory(Some("1")).unwrap(), 1);
        assert!(index_memory(None).unwrap() > 0);
        for bad in ["0", "lots", "2XB", "-1G", "1.2.3M"] {
            let e = index_memory(Some(bad)).unwrap_err().0;
            assert!(e.contains("--index-memory"), "{bad}: {e}");
        }
    }

    #[test]
    fn store_limits_take_sizes_as_people_write_them() {
        let args = |file: Option<&str>, repo: Option<&str>| StoreLimitArgs {
            max_file_size: file.map(str::to_string),
            max_repo_size: repo.map(str::to_string),
        };
        let d = store_limits(&args(None, None)).unwrap();
        assert_eq!(d.max_file_bytes, 10 << 20);
        assert_eq!(d.max_repo_bytes, 4 << 30);
        let l = store_limits(&args(Some("64MiB"), Some("1GiB"))).unwrap();
        assert_eq!((l.max_file_bytes, l.max_repo_bytes), (64 << 20, 1 << 30));
        let l = store_limits(&args(None, Some("64KiB"))).unwrap();
        assert_eq!((l.max_file_bytes, l.max_repo_bytes), (10 << 20, 64 << 10));
        let e = store_limits(&args(Some("big"), None)).unwrap_err().0;
        assert!(e.contains("--max-file-size `big` is not a size"), "{e}");
    }
}
