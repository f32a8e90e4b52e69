//! Repos made from git: where a history comes from (a remote `http`/`https` URL, or a
//! local path for the operator's own commands), the rules an outbound fetch obeys, and
//! the fetch itself, by the `git` program, into a quarantine the store hands over
//! ([`crate::store::Store::create_from_history`], [`crate::store::Store::merge_history`]).
//!
//! What a remote source must pass before any byte leaves the machine:
//! - the scheme is `http` or `https` (no `file:`, `ssh:`, `git:`, `ext::`, local path
//!   or anything starting with `-`), with no query or fragment;
//! - its host and port are exactly one named by `api --allowed-git-host HOST[:PORT]`
//!   (none by default; a host named without a port allows ports 443 and 80 only);
//! - the host is resolved here, once. A host named in the allow list by its name must
//!   not resolve to a loopback, link-local, unspecified, multicast or broadcast address
//!   (a DNS answer cannot turn an allowed name into this machine or a cloud metadata
//!   endpoint); to fetch from such an address, allow the address itself. The fetch is
//!   then pinned to the first address (`http.curloptResolve`), so a second DNS answer
//!   cannot move it elsewhere, and redirects are not followed.
//!
//! How git runs: from an empty environment (no proxy, no askpass), with no system or
//! global configuration, no terminal prompt and no credential helper, only the
//! protocols the source needs (`GIT_ALLOW_PROTOCOL`), object checks on
//! (`fetch.fsckObjects`), no tags and no submodules, and without writing `FETCH_HEAD`.
//! Credentials in a URL never reach the command line, a log, an error or the repo's
//! configuration: they travel as an `Authorization` header set through git's
//! `GIT_CONFIG_COUNT` environment variables of that one process (and the children it
//! runs for the fetch). A fetch that runs past [`FetchLimits::timeout`], stays below
//! [`FetchLimits::low_speed_bytes`] a second for [`FetchLimits::low_speed_secs`], or
//! writes more than [`FetchLimits::max_bytes`] into its quarantine is killed with its
//! whole process group, and the quarantine is removed.
//!
//! Every way a source of the API fails to be reached or recognised (no such name, a
//! closed port, a server that is not git, a redirect, credentials asked for or
//! refused, git giving up for slowness) answers one fixed message,
//! [`SourceError::Unreachable`], and git's own words go to the log only: a caller may
//! not tell these apart, else a token that may create repos could scan the ports of an
//! allowed internal host.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::store::{FETCHED_REF, StoreError};

/// The oldest git a remote fetch runs with (`http.curloptResolve` came in 2.37).
pub const MIN_GIT_REMOTE: (u32, u32) = (2, 37);

/// The longest URL accepted, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// How much of git's own error text an error quotes, in bytes.
const MAX_GIT_MESSAGE: usize = 1000;

/// The `git` program, found on PATH.
#[derive(Debug, Clone)]
pub struct GitProgram {
    program: PathBuf,
    path_env: String,
    version: (u32, u32),
}

impl GitProgram {
    /// Find `git` on PATH, at least version `min`; the error says what is missing.
    pub fn find(min: (u32, u32)) -> Result<Self, String> {
        let path_env = std::env::var("PATH").unwrap_or_default();
        let program = std::env::split_paths(&path_env)
            .map(|d| d.join("git"))
            .find(|p| p.is_file())
            .ok_or_else(|| "no `git` found on PATH".to_string())?;
        let out = std::process::Command::new(&program)
            .arg("--version")
            .env_clear()
            .output()
            .map_err(|e| format!("`{} --version` failed: {e}", program.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<u32> = text
            .trim()
            .trim_start_matches("git version ")
            .split(['.', ' '])
            .take(2)
            .filter_map(|n| n.parse().ok())
            .collect();
        if numbers.len() < 2 || (numbers[0], numbers[1]) < min {
            return Err(format!(
                "found {}, need {}.{} or later",
                text.trim(),
                min.0,
                min.1
            ));
        }
        Ok(Self {
            program,
            path_env,
            version: (numbers[0], numbers[1]),
        })
    }

    /// The program's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The PATH children of git run with.
    pub fn path_env(&self) -> &str {
        &self.path_env
    }

    /// A command running this git as every git this product runs does: from an empty
    /// environment but PATH, with only the invocation's own settings (not the
    /// operator's `~/.gitconfig` or `/etc/gitconfig`, which could add hooks or
    /// helpers), never asking at a terminal, in the C locale (its messages are read).
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", &self.path_env)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        cmd
    }
}

/// Why a git source cannot be used or fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `api` was started without `--allowed-git-host`.
    #[error(
        "this server fetches from no git host: its operator must name the hosts it may fetch from with `scoped-repo-mcp api --allowed-git-host HOST` (repeatable)"
    )]
    NoAllowList,
    /// The URL, path or branch is not one a source may have.
    #[error("{0}")]
    Invalid(String),
    /// The host is not allowed, or resolves where it may not.
    #[error("{0}")]
    NotAllowed(String),
    /// git could not fetch (unreachable, no such repo or branch, refused credentials).
    #[error("{0}")]
    Fetch(String),
    /// A source of the API could not be reached or recognised as a git repository;
    /// always the same words, whatever the cause (see the module's documentation).
    #[error(
        "the git source could not be fetched: nothing at that address answered as a git repository over HTTP with that branch (unreachable, not a git server, a redirect, or credentials asked for or refused all answer alike); check the URL, its credentials and the branch"
    )]
    Unreachable,
    /// The fetch ran too long or too slowly.
    #[error("{0}")]
    TimedOut(String),
    /// The fetch wrote more than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// The longest a fetch may take, start to end.
    pub timeout: Duration,
    /// The most bytes the fetch may write into its quarantine (packs as received).
    pub max_bytes: u64,
    /// Slower than this many bytes a second …
    pub low_speed_bytes: u32,
    /// … for this many seconds in a row, and the fetch is aborted.
    pub low_speed_secs: u32,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            max_bytes: 1024 * 1024 * 1024,
            low_speed_bytes: 1024,
            low_speed_secs: 60,
        }
    }
}

/// The hosts and ports a remote git source may name (`api --allowed-git-host`).
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

/// One `--allowed-git-host` value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// Lowercase; an IP address without brackets.
    host: String,
    /// `None`: the default ports, 443 and 80.
    port: Option<u16>,
}

/// The ports a host named without one allows.
const DEFAULT_GIT_PORTS: [u16; 2] = [443, 80];

impl AllowedHosts {
    /// Validate the flag's values: `host` or `host:port`, the host a name or an IP
    /// address (IPv6 in brackets when a port follows), without scheme, user or path.
    pub fn parse(raw: &[String]) -> Result<Self, String> {
        let mut hosts = Vec::new();
        for value in raw {
            let v = value.trim();
            if v.is_empty() {
                continue;
            }
            let entry = parse_allowed(v).ok_or_else(|| {
                format!(
                    "--allowed-git-host `{}` is not a host or host:port; give a host name or IP address, with a port when it is not 443 or 80 (e.g. `github.com`, `git.internal:8443`, `10.0.0.5` or `[fd00::5]:3000`), without scheme or path",
                    crate::text::one_line(v)
                )
            })?;
            if !hosts.contains(&entry) {
                hosts.push(entry);
            }
        }
        Ok(Self(hosts))
    }

    /// Whether no host is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.0.iter().any(|h| {
            h.host == host
                && match h.port {
                    Some(p) => p == port,
                    None => DEFAULT_GIT_PORTS.contains(&port),
                }
        })
    }
}

/// One `--allowed-git-host` value, or `None` when it is not a host or host:port.
fn parse_allowed(v: &str) -> Option<AllowedHost> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    // `[v6]` or `[v6]:port`.
    if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(port(p.strip_prefix(':')?)?),
        };
        return Some(AllowedHost {
            host: ip.to_string(),
            port,
        });
    }
    // A bare address, IPv6 included (its colons are not a port).
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(AllowedHost {
            host: ip.to_string(),
            port: None,
        });
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (v, None),
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some(AllowedHost {
            host: ip.to_string(),
            port,
        });
    }
    let name_ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then(|| AllowedHost {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Where a history is fetched from.
#[derive(Clone)]
enum Location {
    /// An `http`/`https` URL, without its credentials.
    Remote {
        url: url::Url,
        /// The host as the URL names it (lowercase; an IP address without brackets).
        host: String,
        port: u16,
        /// The `Authorization` header the credentials in the URL make, if any.
        authorization: Option<String>,
        /// The credentials as they appeared, to scrub from git's messages.
        secrets: Vec<String>,
        /// Whether the host must pass the address rules (it came through the API).
        checked: bool,
    },
    /// A repository on this machine (the operator's own).
    Local(PathBuf),
}

/// A git source: a location and the ref to fetch (a branch, or the remote's HEAD).
#[derive(Clone)]
pub struct GitSource {
    location: Location,
    /// `refs/heads/<branch>`, or `HEAD`.
    refname: String,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("location", &self.describe())
            .field("ref", &self.refname)
            .finish()
    }
}

/// The ref a `branch` names: `refs/heads/<branch>`, after git's own rules for names
/// and a few more (no leading `-`, printable ASCII only).
fn branch_ref(branch: Option<&str>) -> Result<String, SourceError> {
    let Some(raw) = branch.map(str::trim).filter(|b| !b.is_empty()) else {
        return Ok("HEAD".into());
    };
    let name = raw.strip_prefix("refs/heads/").unwrap_or(raw);
    let bad = name.len() > 255
        || name.starts_with(['-', '/', '.'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("/.")
        || name.contains("@{")
        || name == "@"
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b));
    if bad {
        return Err(SourceError::Invalid(format!(
            "branch `{}` is not a branch name git accepts",
            crate::text::one_line(raw)
        )));
    }
    Ok(format!("refs/heads/{name}"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse an `http`/`https` URL into a remote location: its credentials taken out.
fn remote(raw: &str, checked: bool) -> Result<Location, SourceError> {
    let invalid = |why: &str| {
        SourceError::Invalid(format!(
            "the git source's url {why}; give an http:// or https:// URL of a git repository"
        ))
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("is empty"));
    }
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(&format!("is over {MAX_URL_BYTES} bytes")));
    }
    if raw.starts_with('-') {
        return Err(invalid("starts with `-`"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("holds a space or control character"));
    }
    let mut url = url::Url::parse(raw).map_err(|_| {
        invalid("is not a URL (a local path or scp-like address is not accepted here)")
    })?;
    if !matches!(url.scheme(), "http" | "https") || raw.contains("::") && !raw.contains("://") {
        return Err(invalid(&format!(
            "uses the scheme `{}`, which is not accepted",
            crate::text::one_line(url.scheme())
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("has a query or fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid("has no host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("has no port"))?;
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode);
    let mut secrets = Vec::new();
    let authorization = if user.is_empty() && password.is_none() {
        None
    } else {
        use base64::Engine as _;
        for s in [url.username().to_string(), user.clone()]
            .into_iter()
            .chain(url.password().map(str::to_string))
            .chain(password.clone())
        {
            if !s.is_empty() && !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        let pair = format!("{user}:{}", password.unwrap_or_default());
        Some(format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    };
    url.set_username("")
        .map_err(|_| invalid("cannot be used"))?;
    url.set_password(None)
        .map_err(|_| invalid("cannot be used"))?;
    Ok(Location::Remote {
        url,
        host,
        port,
        authorization,
        secrets,
        checked,
    })
}

/// Whether a host named in the allow list by its name may resolve to `ip`.
fn address_acceptable(ip: IpAddr, named_by_address: bool) -> Result<(), &'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err("an unspecified or multicast address");
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err("the broadcast address");
    }
    if named_by_address {
        return Ok(());
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if ip.is_loopback() {
        return Err("a loopback address (this machine)");
    }
    if link_local {
        return Err("a link-local address");
    }
    Ok(())
}

impl GitSource {
    /// A source as the API takes it: an `http`/`https` URL whose host `allowed` names,
    /// and an optional branch (default: the remote's HEAD).
    pub fn from_api(
        url: &str,
        branch: Option<&str>,
        allowed: &AllowedHosts,
    ) -> Result<Self, SourceError> {
        let location = remote(url, true)?;
        let refname = branch_ref(branch)?;
        if allowed.is_empty() {
            return Err(SourceError::NoAllowList);
        }
        if let Location::Remote { host, port, .. } = &location
            && !allowed.allows(host, *port)
        {
            let shown = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            return Err(SourceError::NotAllowed(format!(
                "the git host and port `{}` are not ones this server may fetch from; its operator allows them with `scoped-repo-mcp api --allowed-git-host HOST[:PORT]` (a host named without a port allows ports 443 and 80 only)",
                crate::text::one_line(&shown)
            )));
        }
        Ok(Self { location, refname })
    }

    /// A source as the operator names it on the command line: an `http`/`https` URL
    /// (no allow list: the operator chose it) or a local repository's path.
    pub fn from_operator(url_or_path: &str, branch: Option<&str>) -> Result<Self, SourceError> {
        let refname = branch_ref(branch)?;
        let raw = url_or_path.trim();
        let scheme = raw.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let location = match scheme.as_deref() {
            Some("http" | "https") => remote(raw, false)?,
            Some(other) => {
                return Err(SourceError::Invalid(format!(
                    "`{}://` sources are not accepted; give an http:// or https:// URL, or the path of a repository on this machine",
                    crate::text::one_line(other)
                )));
            }
            None if raw.contains("::") => {
                return Err(SourceError::Invalid(
                    "git's `transport::address` sources are not accepted; give an http:// or https:// URL, or the path of a repository on this machine".into(),
                ));
            }
            None => return Self::local(Path::new(raw), branch),
        };
        Ok(Self { location, refname })
    }

    /// A repository on this machine (a work tree or a bare repository), at `branch`
    /// or its checked-out HEAD.
    pub fn local(dir: &Path, branch: Option<&str>) -> Result<Self, SourceError> {
        let abs = dir.canonicalize().map_err(|e| {
            SourceError::Invalid(format!(
                "`{}`: {e}; give the path of a git repository",
                dir.display()
            ))
        })?;
        if !abs.is_dir() || git2::Repository::open(&abs).is_err() {
            return Err(SourceError::Invalid(format!(
                "`{}` is not a git repository",
                abs.display()
            )));
        }
        Ok(Self {
            location: Location::Local(abs),
            refname: branch_ref(branch)?,
        })
    }

    /// The source for messages and commit messages: a URL without its credentials or
    /// a path, and the branch.
    pub fn describe(&self) -> String {
        let place = match &self.location {
            Location::Remote { url, .. } => url.to_string(),
            Location::Local(p) => p.display().to_string(),
        };
        match self.refname.strip_prefix("refs/heads/") {
            Some(b) => format!("branch `{b}` of {place}"),
            None => place,
        }
    }

    /// Remove the URL's credentials from `text` (git's own messages quote what the
    /// server says), escape it onto one line and cut it short.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.trim().to_string();
        if let Location::Remote { secrets, .. } = &self.location {
            for s in secrets {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        let mut text = crate::text::one_line(&text).into_owned();
        if text.len() > MAX_GIT_MESSAGE {
            let mut cut = MAX_GIT_MESSAGE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    /// Resolve a remote source's host once and pick the address the fetch is pinned
    /// to; `None` for a local source or a host that is an IP address already.
    fn pin(&self) -> Result<Option<SocketAddr>, SourceError> {
        let Location::Remote {
            host,
            port,
            checked,
            url,
            ..
        } = &self.location
        else {
            return Ok(None);
        };
        let literal = !matches!(url.host(), Some(url::Host::Domain(_)));
        let addrs: Vec<SocketAddr> = (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| {
                self.unreachable(format!(
                    "the git host `{}` cannot be resolved: {e}",
                    crate::text::one_line(host)
                ))
            })?
            .collect();
        let Some(first) = addrs.first().copied() else {
            return Err(self.unreachable(format!(
                "the git host `{}` resolves to no address",
                crate::text::one_line(host)
            )));
        };
        if *checked {
            for a in &addrs {
                if let Err(why) = address_acceptable(a.ip(), literal) {
                    return Err(SourceError::NotAllowed(format!(
                        "the git host `{}` resolves to {why} ({}), where an allowed host name may not lead; allow the address itself with --allowed-git-host if it is meant",
                        crate::text::one_line(host),
                        a.ip()
                    )));
                }
            }
        }
        Ok((!literal).then_some(first))
    }

    /// Fetch the source's ref into the git directory `git_dir` (a quarantine), leaving
    /// the fetched commit at [`FETCHED_REF`], within `limits`.
    pub fn fetch_into(
        &self,
        git: &GitProgram,
        git_dir: &Path,
        limits: &FetchLimits,
    ) -> Result<(), SourceError> {
        if matches!(self.location, Location::Remote { .. }) && git.version < MIN_GIT_REMOTE {
            return Err(SourceError::Fetch(format!(
                "fetching over the network needs git {}.{} or later on this server (to pin the address it fetches from); found {}.{}",
                MIN_GIT_REMOTE.0, MIN_GIT_REMOTE.1, git.version.0, git.version.1
            )));
        }
        let pinned = self.pin()?;
        let mut cmd = git.command();
        cmd.env("HOME", git_dir)
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["-c", "protocol.allow=never"])
            .args(["-c", "credential.helper="])
            .args(["-c", "core.askPass="])
            .args(["-c", "core.hooksPath=/dev/null"])
            .args(["-c", "fetch.fsckObjects=true"])
            // The names the store refuses are left to its own check, whose message
            // names the commit and the path.
            .args(["-c", "fetch.fsck.hasDotgit=warn"])
            .args(["-c", "fetch.fsck.hasDot=warn"])
            .args(["-c", "fetch.fsck.hasDotdot=warn"])
            .args(["-c", "fetch.recurseSubmodules=false"])
            .args(["-c", "gc.auto=0"])
            .args(["-c", "maintenance.auto=false"]);
        let url = match &self.location {
            Location::Remote {
                url,
                host,
                port,
                authorization,
                ..
            } => {
                cmd.env("GIT_ALLOW_PROTOCOL", "http:https")
                    .args(["-c", "protocol.http.allow=always"])
                    .args(["-c", "protocol.https.allow=always"])
                    .args(["-c", "http.followRedirects=false"])
                    .args(["-c", "http.proxy="])
                    .arg("-c")
                    .arg(format!("http.lowSpeedLimit={}", limits.low_speed_bytes))
                    .arg("-c")
                    .arg(format!("http.lowSpeedTime={}", limits.low_speed_secs));
                if let Some(addr) = pinned {
                    let ip = match addr.ip() {
                        IpAddr::V4(v4) => v4.to_string(),
                        IpAddr::V6(v6) => format!("[{v6}]"),
                    };
                    cmd.arg("-c")
                        .arg(format!("http.curloptResolve={host}:{port}:{ip}"));
                }
                // The credential: only in this process's environment, never on its
                // command line.
                if let Some(header) = authorization {
                    cmd.env("GIT_CONFIG_COUNT", "1")
                        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                        .env("GIT_CONFIG_VALUE_0", header);
                }
                url.to_string()
            }
            Location::Local(path) => {
                cmd.env("GIT_ALLOW_PROTOCOL", "file")
                    .args(["-c", "protocol.file.allow=always"]);
                path.display().to_string()
            }
        };
        cmd.args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-gc",
            "--end-of-options",
        ])
        .arg(&url)
        .arg(format!("+{}:{FETCHED_REF}", self.refname))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            // Its own process group, so a fetch killed for its limits takes git's
            // helpers (remote-https, index-pack) with it.
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| SourceError::Fetch(format!("cannot run git: {e}")))?;
        let stderr = child.stderr.take();
        let said = std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut s) = stderr {
                let mut buf = [0u8; 8192];
                while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    if kept.len() < 16 * 1024 {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let started = Instant::now();
        let mut last_measure = Instant::now();
        let stopped = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(SourceError::Fetch(format!("cannot wait for git: {e}"))),
            }
            if started.elapsed() > limits.timeout {
                break Err(SourceError::TimedOut(format!(
                    "fetching {} took over {}s, the limit of a fetch; nothing changed",
                    self.describe(),
                    limits.timeout.as_secs()
                )));
            }
            if last_measure.elapsed() >= Duration::from_millis(250) {
                last_measure = Instant::now();
                if dir_size(git_dir) > limits.max_bytes {
                    break Err(self.too_large(limits));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let status = match stopped {
            Ok(status) => status,
            Err(e) => {
                kill_group(&mut child);
                let _ = said.join();
                return Err(e);
            }
        };
        let said = said.join().unwrap_or_default();
        if !status.success() {
            let low_speed =
                said.contains("Operation too slow") || said.contains("Operation timed out");
            let message = format!(
                "fetching {} failed: {}",
                self.describe(),
                self.scrub(if said.trim().is_empty() {
                    "git gave no reason"
                } else {
                    &said
                })
            );
            // A port that accepts and never answers gives up for slowness; for a source
            // of the API that answers like every other failure to reach it.
            return Err(if self.is_checked() {
                self.unreachable(message)
            } else if low_speed {
                SourceError::TimedOut(message)
            } else {
                SourceError::Fetch(message)
            });
        }
        if dir_size(git_dir) > limits.max_bytes {
            return Err(self.too_large(limits));
        }
        // git may succeed and still leave the ref alone, saying why only in a warning.
        let landed = git2::Repository::open_bare(git_dir)
            .and_then(|r| r.refname_to_id(FETCHED_REF))
            .is_ok();
        if !landed {
            let why = if said.contains("shallow") {
                "the source is a shallow clone and its history is incomplete; run `git fetch --unshallow` in it first".to_string()
            } else {
                self.scrub(if said.trim().is_empty() {
                    "git fetched no commit (an empty repository or branch?)"
                } else {
                    &said
                })
            };
            return Err(SourceError::Fetch(format!(
                "fetching {} brought no commit: {why}",
                self.describe()
            )));
        }
        Ok(())
    }

    /// Whether the source came through the API (its failures are worded for callers
    /// who may not learn what is at the address).
    fn is_checked(&self) -> bool {
        matches!(self.location, Location::Remote { checked: true, .. })
    }

    /// A failure to reach or recognise the remote: for a source of the API the one
    /// fixed message, with `detail` in the log only; otherwise `detail` itself.
    fn unreachable(&self, detail: String) -> SourceError {
        if self.is_checked() {
            tracing::info!(source = %self.describe(), cause = %detail, "a git source could not be fetched");
            SourceError::Unreachable
        } else {
            SourceError::Fetch(detail)
        }
    }

    fn too_large(&self, limits: &FetchLimits) -> SourceError {
        SourceError::TooLarge(format!(
            "fetching {} wrote over {} bytes, the limit of a fetch; nothing changed",
            self.describe(),
            limits.max_bytes
        ))
    }
}

/// Kill a fetch and every helper it started (its process group), then reap it.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        // SAFETY: the child leads a process group of its own (`process_group(0)`), so
        // this signals git and the helpers it started, nothing else.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The bytes of every file under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(hosts: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_http_and_https_urls_of_allowed_hosts_are_sources() {
        let a = allowed(&["example.com", "127.0.0.1"]);
        for bad in [
            "file:///etc",
            "ssh://example.com/r.git",
            "git://example.com/r.git",
            "ext::sh -c touch% /tmp/x",
            "-uhttps://example.com",
            "/srv/repo.git",
            "example.com:repo.git",
            "https://example.com/r.git?x=1",
            "https://example.com/r.git#frag",
            "https://exa mple.com/r.git",
            "",
        ] {
            let e = GitSource::from_api(bad, None, &a).unwrap_err();
            assert!(matches!(e, SourceError::Invalid(_)), "{bad}: {e}");
        }
        let e = GitSource::from_api("https://evil.example.org/r.git", None, &a).unwrap_err();
        assert!(matches!(e, SourceError::NotAllowed(_)), "{e}");
        assert!(e.to_string().contains("--allowed-git-host"));
        let e = GitSource::from_api("https://example.com/r.git", None, &AllowedHosts::default())
            .unwrap_err();
        assert!(matches!(e, SourceError::NoAllowList));
        assert!(e.to_string().contains("--allowed-git-host"));
        GitSource::from_api("https://EXAMPLE.com/r.git", Some("dev"), &a).unwrap();
        GitSource::from_api("http://127.0.0.1/v1/repo/x.git", None, &a).unwrap();
    }

    #[test]
    fn an_allowed_host_allows_its_port_or_else_443_and_80() {
        let a = allowed(&["example.com", "10.0.0.5:8443", "[fd00::5]:3000", "fd00::6"]);
        for ok in [
            "https://example.com/r.git",
            "http://example.com/r.git",
            "https://example.com:443/r.git",
            "https://10.0.0.5:8443/r.git",
            "http://[fd00::5]:3000/r.git",
            "https://[fd00::6]/r.git",
        ] {
            GitSource::from_api(ok, None, &a).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for refused in [
            "https://example.com:22/r.git",
            "http://example.com:8080/r.git",
            "https://10.0.0.5/r.git",
            "https://10.0.0.5:8444/r.git",
            "http://[fd00::5]/r.git",
        ] {
            let e = GitSource::from_api(refused, None, &a).unwrap_err();
            assert!(matches!(e, SourceError::NotAllowed(_)), "{refused}: {e}");
            assert!(e.to_string().contains("HOST[:PORT]"), "{e}");
        }
        for bad in [
            "example.com:0",
            "example.com:x",
            "https://example.com",
            "a/b",
            "[::1",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_names_follow_git_rules() {
        assert_eq!(branch_ref(None).unwrap(), "HEAD");
        assert_eq!(branch_ref(Some("")).unwrap(), "HEAD");
        assert_eq!(branch_ref(Some("dev")).unwrap(), "refs/heads/dev");
        assert_eq!(
            branch_ref(Some("refs/heads/a/b")).unwrap(),
            "refs/heads/a/b"
        );
        for bad in [
            "-x", "a..b", "a b", "a:b", "x.lock", "a//b", "@", "a~1", "/a", "a/",
        ] {
            assert!(branch_ref(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_leave_the_url_and_every_message() {
        let a = allowed(&["example.com"]);
        let s = GitSource::from_api(
            "https://us%40er:s3cr%2Ft@example.com/r.git",
            Some("main"),
            &a,
        )
        .unwrap();
        let shown = format!("{} {s:?}", s.describe());
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("us"), "{shown}");
        let Location::Remote {
            url, authorization, ..
        } = &s.location
        else {
            panic!()
        };
        assert_eq!(url.as_str(), "https://example.com/r.git");
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:s3cr/t");
        assert_eq!(
            authorization.as_deref(),
            Some(format!("Authorization: Basic {expected}").as_str())
        );
        let scrubbed = s.scrub("fatal: s3cr/t and s3cr%2Ft rejected\n\x1b[31m");
        assert!(!scrubbed.contains("s3cr"), "{scrubbed}");
        assert!(!scrubbed.contains('\x1b'), "{scrubbed}");
    }

    #[test]
    fn an_allowed_name_may_not_lead_to_this_machine_or_link_local() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(address_acceptable(ip("127.0.0.1"), false).is_err());
        assert!(address_acceptable(ip("::1"), false).is_err());
        assert!(address_acceptable(ip("::ffff:127.0.0.1"), false).is_err());
        assert!(address_acceptable(ip("169.254.169.254"), false).is_err());
        assert!(address_acceptable(ip("fe80::1"), false).is_err());
        assert!(address_acceptable(ip("0.0.0.0"), true).is_err());
        assert!(address_acceptable(ip("224.0.0.1"), true).is_err());
        assert!(address_acceptable(ip("127.0.0.1"), true).is_ok());
        assert!(address_acceptable(ip("10.0.0.5"), false).is_ok());
        assert!(address_acceptable(ip("140.82.112.3"), false).is_ok());
    }

    #[test]
    fn localhost_by_name_is_refused_before_any_fetch() {
        let a = allowed(&["localhost:9"]);
        let s = GitSource::from_api("http://localhost:9/r.git", None, &a).unwrap();
        let e = s.pin().unwrap_err();
        assert!(matches!(e, SourceError::NotAllowed(_)), "{e}");
    }

    #[test]
    fn a_server_that_never_answers_is_cut_off_at_the_timeout() {
        let git = GitProgram::find(MIN_GIT_REMOTE).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept, read, never answer.
        let _hold = std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming().flatten() {
                held.push(c);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(dir.path()).unwrap();
        let s = GitSource::from_api(
            &format!("http://127.0.0.1:{port}/r.git"),
            None,
            &allowed(&[&format!("127.0.0.1:{port}")]),
        )
        .unwrap();
        let started = Instant::now();
        let e = s
            .fetch_into(
                &git,
                dir.path(),
                &FetchLimits {
                    timeout: Duration::from_secs(2),
                    ..FetchLimits::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, SourceError::TimedOut(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_fetch_over_the_size_cap_is_refused() {
        let git = GitProgram::find((2, 32)).unwrap();
        let src = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(src.path()).unwrap();
        let mut index = repo.index().unwrap();
        // Text that does not compress away.
        let mut text = String::new();
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(&format!("{x:x}\n"));
        }
        std::fs::write(src.path().join("big.txt"), &text).unwrap();
        index.add_path(Path::new("big.txt")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "big", &tree, &[])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(dir.path()).unwrap();
        let s = GitSource::local(src.path(), None).unwrap();
        let e = s
            .fetch_into(
                &git,
                dir.path(),
                &FetchLimits {
                    max_bytes: 64 * 1024,
                    ..FetchLimits::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, SourceError::TooLarge(_)), "{e}");
        // Within the cap, the same fetch lands the commit at the fetched ref.
        s.fetch_into(&git, dir.path(), &FetchLimits::default())
            .unwrap();
        let fetched = git2::Repository::open_bare(dir.path()).unwrap();
        assert_eq!(
            fetched.refname_to_id(FETCHED_REF).unwrap(),
            repo.head().unwrap().target().unwrap()
        );
    }
}
