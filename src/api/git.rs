//! git's smart HTTP at `/v1/repo/{id}.git`: clone, fetch and push with the repo token
//! or account key as the password (HTTP Basic, any user name) or as a bearer. Who may do
//! what is decided by the front door ([`crate::credentials::admit`] on [`Surface::Git`]), as
//! on every other surface: reading needs the read right, pushing the write right; a
//! token limited to paths is refused, since git cannot leave part of a tree out.
//!
//! Why the `git` binary, not a Rust implementation: git's own `upload-pack` and
//! `receive-pack` in `--stateless-rpc` mode (what git's `http-backend`, Gitea and GitLab
//! run) speak every protocol version, capability and shallow or filtered negotiation that
//! git clients use, and receive-pack quarantines a push's objects until its pre-receive
//! hook passes. No Rust crate serves both sides as completely (gix has no receive-pack).
//! The cost is that `api` needs `git` on PATH, checked at start-up by [`GitSupport::find`].
//!
//! A push is received whole (within a deadline and a size cap, decompressed) before git
//! starts, and its command list is read first ([`super::pkt_line`]): only `main`, only a
//! few commands. receive-pack then reads and indexes the pack into its quarantine
//! without any lock; its pre-receive hook is this product's binary (the hidden
//! `git-pre-receive` command) checking every incoming commit and object against the
//! store's rules ([`crate::store::hook`], [`crate::store::push`]), and then passing the
//! push's gate ([`super::push_gate`]): this process takes the repo's writer lock (the
//! same in-process mutex and flock as `update_repo_files`, see
//! [`crate::store::Store::write_from_outside`]), admits the credential again, and holds
//! the lock until receive-pack ends. receive-pack's own old-oid check is the
//! compare-and-swap of `main`. The hook is set per run with `-c core.hooksPath=`. No
//! child process sees the caller's credential: it is never in a child's arguments, and
//! children start from an empty environment.
//!
//! A fetch serves only what `main` reaches: git's upload-pack takes only advertised
//! tips in protocol v0, but any object id in v2, so every `want` of either is checked
//! here first.

use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdout, Command};

use super::ApiState;
use super::pkt_line::{self, PushRequest, RequestError};
use super::push_gate::{ENV_GATE, ENV_GATE_KEY, Gate};
use crate::audit::PushVerdict;
use crate::credentials::{self, OperatorBound, Refusal, Surface};
use crate::model::RepoId;
use crate::rules::Limits;
use crate::scope::{Right, ScopeError};
use crate::store::StoreError;
use crate::store::push::ref_refusal;

/// The realm git shows when it asks its credential helper.
const REALM: &str = "Basic realm=\"scoped-repo-mcp\"";

/// The hidden command of this binary that git runs as the pre-receive hook.
pub const HOOK_COMMAND: &str = "git-pre-receive";

/// The environment variable naming the binary the hook runs (the store's limits go to
/// it too, see [`crate::store::hook::limits_env`]).
const ENV_EXE: &str = "SCOPED_REPO_MCP_EXE";

/// The hook script: constant, so every `api` process on a data directory can share it;
/// which binary it runs comes from the environment of each receive-pack.
const HOOK_SCRIPT: &str = "#!/bin/sh\n# Written by scoped-repo-mcp api: checks a git push against the store's rules.\nexec \"$SCOPED_REPO_MCP_EXE\" git-pre-receive\n";

/// Largest decompressed request accepted by upload-pack (a fetch's wants and haves;
/// every round of a stateless negotiation sends them again).
const MAX_FETCH_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The longest a fetch request may take to arrive, start to end.
const FETCH_REQUEST_DEADLINE: Duration = Duration::from_secs(120);

/// Most objects one fetch request may want: only `main` is advertised, so git wants one.
const MAX_WANTS: usize = 64;

/// The longest a push may take to arrive, start to end. The push holds no lock while
/// it arrives, but it holds a connection and the disk it is spooled to.
pub const PUSH_UPLOAD_DEADLINE: Duration = Duration::from_secs(600);

/// Most ref updates one push may carry; only `main` is ever taken.
pub const MAX_PUSH_COMMANDS: usize = 4;

/// How much of a request's front is kept in memory for its command list.
pub(super) const REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// How long a request may send nothing before it is taken as abandoned.
const CLIENT_IDLE: Duration = Duration::from_secs(60);

/// The most a push may be, decompressed: room for a push at the store's limit,
/// compressed or not, plus its trees and commits (the hook checks the limit itself).
/// Also receive-pack's `receive.maxInputSize`.
pub fn push_input_cap(limits: &Limits) -> usize {
    limits.max_update_bytes.saturating_mul(2) + (16 << 20)
}

/// The oldest git this server runs (`GIT_CONFIG_GLOBAL` needs 2.32).
const MIN_GIT: (u32, u32) = (2, 32);

/// Why git's smart HTTP cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GitSetupError(String);

/// What serving git needs: the `git` program, the hooks directory and the binary the
/// hook calls back into.
#[derive(Debug, Clone)]
pub struct GitSupport {
    found: crate::git_source::GitProgram,
    hooks_dir: PathBuf,
    hook_exe: PathBuf,
    /// Where pushes are spooled (unlinked files) and their gates' sockets live.
    incoming_dir: PathBuf,
}

impl GitSupport {
    /// Find `git` on PATH (at least 2.32) and write the pre-receive hook under
    /// `data_dir`; `hook_exe` is this product's binary, which the hook runs.
    pub fn find(data_dir: &Path, hook_exe: PathBuf) -> Result<Self, GitSetupError> {
        let found = crate::git_source::GitProgram::find(MIN_GIT).map_err(|why| {
            GitSetupError(format!(
                "`scoped-repo-mcp api` needs `git` (2.32 or later) on PATH to serve clone, fetch and push at /v1/repo/{{id}}.git: {why}; install git (e.g. `apt-get install git`) and start again"
            ))
        })?;
        let data_dir = std::fs::canonicalize(data_dir)
            .map_err(|e| GitSetupError(format!("cannot open {}: {e}", data_dir.display())))?;
        let hooks_dir = data_dir.join("git-hooks");
        write_hook(&hooks_dir)
            .map_err(|e| GitSetupError(format!("cannot write {}: {e}", hooks_dir.display())))?;
        let incoming_dir = data_dir.join("git-incoming");
        private_dir(&incoming_dir)
            .map_err(|e| GitSetupError(format!("cannot write {}: {e}", incoming_dir.display())))?;
        Ok(Self {
            found,
            hooks_dir,
            hook_exe,
            incoming_dir,
        })
    }

    /// A new file to spool a push into, already unlinked, so that nothing is left
    /// behind by a process that dies.
    fn spool_file(&self) -> std::io::Result<std::fs::File> {
        let path = self
            .incoming_dir
            .join(format!("push-{}", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    /// The `git` program, for fetches of git sources.
    pub fn program(&self) -> &crate::git_source::GitProgram {
        &self.found
    }

    /// `git <config> <service> --stateless-rpc <dir>`, isolated as every git the
    /// product runs ([`GitProgram::command`](crate::git_source::GitProgram::command)).
    fn command(
        &self,
        service: Service,
        dir: &Path,
        protocol: Option<&str>,
        limits: Limits,
    ) -> Command {
        // Only this invocation's settings: not the operator's ~/.gitconfig or
        // /etc/gitconfig, which could add hooks or change what is served.
        let mut cmd = Command::from(self.found.command());
        match service {
            Service::UploadPack => {
                // Only `main` (and HEAD, which names it) is served, and in protocol v0
                // only its tip may be wanted; no object is served by id alone
                // (protocol v2 ignores these, and its wants are checked before git
                // starts, see `unserved_want`). A filter (`--filter=blob:none`) is
                // served: leaving objects out never widens what a credential reaches,
                // and the wants it follows are checked as any other.
                cmd.args(["-c", "transfer.hideRefs=refs/"])
                    .args(["-c", "transfer.hideRefs=!refs/heads/main"])
                    .args(["-c", "uploadpack.allowAnySHA1InWant=false"])
                    .args(["-c", "uploadpack.allowReachableSHA1InWant=false"])
                    .args(["-c", "uploadpack.allowTipSHA1InWant=false"])
                    .args(["-c", "uploadpack.allowRefInWant=false"])
                    .args(["-c", "uploadpack.allowFilter=true"])
                    .args(["-c", "transfer.advertiseObjectInfo=false"]);
                if let Some(p) = protocol {
                    cmd.env("GIT_PROTOCOL", p);
                }
            }
            Service::ReceivePack => {
                let max_input = push_input_cap(&limits);
                cmd.arg("-c")
                    .arg(format!("core.hooksPath={}", self.hooks_dir.display()))
                    // git's own object checks refuse malformed objects; the names
                    // the store refuses are left to the hook, whose message names the
                    // commit and the path, not just a tree's id.
                    .args(["-c", "receive.fsckObjects=true"])
                    .args(["-c", "receive.fsck.hasDotgit=warn"])
                    .args(["-c", "receive.fsck.hasDot=warn"])
                    .args(["-c", "receive.fsck.hasDotdot=warn"])
                    .args(["-c", "receive.denyDeletes=true"])
                    .args(["-c", "receive.denyNonFastForwards=true"])
                    // No background gc outliving the push and its lock.
                    .args(["-c", "receive.autogc=false"])
                    .args(["-c", "gc.auto=0"])
                    .arg("-c")
                    .arg(format!("receive.maxInputSize={max_input}"))
                    .env(ENV_EXE, &self.hook_exe)
                    .envs(crate::store::hook::limits_env(&limits));
            }
        }
        cmd.arg(service.name())
            .arg("--stateless-rpc")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// A directory only this user reads.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_hook(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("pre-receive");
    if std::fs::read_to_string(&path).is_ok_and(|s| s == HOOK_SCRIPT) {
        return Ok(());
    }
    // Write beside and rename, so a receive-pack of another process never runs half a
    // script.
    let tmp = dir.join(format!(".pre-receive.{}", std::process::id()));
    std::fs::write(&tmp, HOOK_SCRIPT)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::rename(&tmp, &path)
}

/// The two git services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "git-upload-pack" => Some(Self::UploadPack),
            "git-receive-pack" => Some(Self::ReceivePack),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::UploadPack => "upload-pack",
            Self::ReceivePack => "receive-pack",
        }
    }

    fn right(self) -> Right {
        match self {
            Self::UploadPack => Right::Read,
            Self::ReceivePack => Right::Write,
        }
    }
}

// ---- answers git understands: git prints a text/plain body as `remote: …` lines ----

fn text(status: StatusCode, message: &str) -> Response {
    let mut r = (status, format!("{message}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn unauthorized(refusal: &Refusal) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, &refusal.to_git());
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

/// `429` past the credential's rate: git prints the body, which says when to retry.
fn rate_limited(limited: &crate::rate::Limited) -> Response {
    let message = limited.to_string();
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, &message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, limited.retry_after_secs.into());
    r.extensions_mut()
        .insert(crate::audit::RefusalNote(message));
    r
}

/// The one answer for a repo that does not exist and one the credential does not
/// reach, so nothing says which.
fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "repository not found, or this credential does not reach it",
    )
}

fn internal(cause: impl std::fmt::Display) -> Response {
    tracing::error!(cause = %cause, "git request failed inside the server");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed to complete this request (the cause is in its log); retrying may help",
    )
}

/// The `Git-Protocol` header, when it is what git sends (`version=2`, `:`-separated
/// `key=value` pairs); anything else is ignored and protocol v0 is spoken.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("git-protocol")?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b));
    ok.then(|| v.to_string())
}

fn gzipped(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"))
}

/// The front door for a git request: the repo, when the request's credential may use
/// `service` on it; otherwise the answer to send.
async fn admit_git_request(
    state: &ApiState,
    headers: &HeaderMap,
    raw_id: &str,
    service: Service,
) -> Result<(RepoId, Arc<GitSupport>, Option<String>), Response> {
    let credential =
        credentials::basic_or_bearer(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(|r| unauthorized(&r))?;
    let scope = credentials::admit(
        &state.local,
        &OperatorBound::default(),
        Surface::Git,
        credential.as_deref(),
    )
    .await
    .inspect_err(|refusal| crate::audit::note_refused_credential(refusal, credential.as_deref()))
    .map_err(|refusal| match refusal {
        // A good credential whose repos are all gone: as for any repo it does not reach.
        Refusal::NoRepos => not_found(),
        other if other.http_status() == StatusCode::UNAUTHORIZED => unauthorized(&other),
        other => text(other.http_status(), &other.to_git()),
    })?;
    crate::audit::note_credential(crate::audit::Who::of_scope(&scope));
    let id: RepoId = raw_id
        .strip_suffix(".git")
        .unwrap_or(raw_id)
        .parse()
        .map_err(|_| not_found())?;
    scope.admit(Right::Read, &id).map_err(|_| not_found())?;
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.repo_row(&id)).await {
        Ok(Ok(_)) => {}
        Ok(Err(StoreError::RepoNotFound(_))) => return Err(not_found()),
        Ok(Err(e)) => return Err(internal(e)),
        Err(e) => return Err(internal(e)),
    }
    if scope.paths().is_some() {
        return Err(text(
            StatusCode::FORBIDDEN,
            "this token is limited to some paths, and git cannot clone, fetch or push part of a tree; use the MCP tools or the REST routes, which show such a token its paths only",
        ));
    }
    if let Err(e) = scope.admit(service.right(), &id) {
        let why = match e {
            ScopeError::NoRight { why, .. } => why,
            other => other.to_string(),
        };
        return Err(text(
            StatusCode::FORBIDDEN,
            &format!("this credential may clone and fetch but not push: {why}"),
        ));
    }
    let git = state.settings.git.clone().ok_or_else(|| {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server was started without git support",
        )
    })?;
    // Every check passed: the request is charged to its credential before git runs.
    crate::rate::charge(&scope).map_err(|limited| rate_limited(&limited))?;
    Ok((id, git, credential))
}

#[derive(Deserialize)]
pub(super) struct InfoRefsQuery {
    service: Option<String>,
}

/// `GET /v1/repo/{id}.git/info/refs?service=…`: the refs advertisement.
pub(super) async fn info_refs(
    State(state): State<ApiState>,
    UrlPath(raw_id): UrlPath<String>,
    Query(query): Query<InfoRefsQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(service) = query.service.as_deref().and_then(Service::parse) else {
        return text(
            StatusCode::FORBIDDEN,
            "only git's smart HTTP is served here (`?service=git-upload-pack` or `git-receive-pack`); use git 1.6.6 or later",
        );
    };
    let (id, git, _) = match admit_git_request(&state, &headers, &raw_id, service).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    // Push speaks protocol v0 only, as git's own http-backend.
    let protocol = match service {
        Service::UploadPack => git_protocol(&headers),
        Service::ReceivePack => None,
    };
    let mut cmd = git.command(
        service,
        &state.store.git_dir(&id),
        protocol.as_deref(),
        state.store.limits(),
    );
    cmd.arg("--advertise-refs")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = match cmd.output().await {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            return internal(format!(
                "git {} --advertise-refs failed for repo {id}: {}",
                service.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err(e) => return internal(format!("cannot run git: {e}")),
    };
    let mut body = Vec::with_capacity(out.stdout.len() + 64);
    if !protocol.as_deref().is_some_and(|p| p.contains("version=2")) {
        let line = format!("# service=git-{}\n", service.name());
        body.extend_from_slice(format!("{:04x}{line}0000", line.len() + 4).as_bytes());
    }
    body.extend_from_slice(&out.stdout);
    git_answer(
        &format!("application/x-git-{}-advertisement", service.name()),
        Body::from(body),
    )
}

fn git_answer(content_type: &str, body: Body) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Why a request body was not taken whole.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("the client went away mid-request: {0}")]
    Client(String),
    #[error("the request body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error(
        "the request is over {0} bytes (decompressed), the most this server takes in one request"
    )]
    TooLarge(usize),
    #[error("the request took over {}s to arrive, the most this server waits for one; send it again on a faster link", .0.as_secs())]
    TimedOut(Duration),
    #[error("the request could not be spooled: {0}")]
    Spool(std::io::Error),
}

impl UploadError {
    fn answer(&self) -> Response {
        match self {
            Self::TooLarge(_) => text(StatusCode::PAYLOAD_TOO_LARGE, &self.to_string()),
            Self::TimedOut(_) => text(StatusCode::REQUEST_TIMEOUT, &self.to_string()),
            Self::Gzip(_) | Self::Client(_) => text(StatusCode::BAD_REQUEST, &self.to_string()),
            Self::Spool(e) => internal(e),
        }
    }
}

/// Where a request's bytes go as they arrive, decompressed: its front kept in memory
/// (the whole of it when there is no file), the rest into a spool file; past `cap`
/// bytes in all, every write fails.
struct Sink {
    head: Vec<u8>,
    spool: Option<std::io::BufWriter<std::fs::File>>,
    total: usize,
    cap: usize,
    over: bool,
}

impl Sink {
    fn in_memory(cap: usize) -> Self {
        Self {
            head: Vec::new(),
            spool: None,
            total: 0,
            cap,
            over: false,
        }
    }

    fn spooled(file: std::fs::File, cap: usize) -> Self {
        Self {
            spool: Some(std::io::BufWriter::with_capacity(256 * 1024, file)),
            ..Self::in_memory(cap)
        }
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.total.saturating_add(buf.len()) > self.cap {
            self.over = true;
            return Err(std::io::Error::other("over the request cap"));
        }
        self.total += buf.len();
        match &mut self.spool {
            Some(file) => {
                let room = REQUEST_HEAD_BYTES.saturating_sub(self.head.len());
                self.head.extend_from_slice(&buf[..room.min(buf.len())]);
                file.write_all(buf)?;
            }
            None => self.head.extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.spool {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// Receive a request body whole into `sink`, gunzipped when git compressed it, within
/// `deadline` in all; a client silent for [`CLIENT_IDLE`] is taken as gone. The bytes
/// as sent are capped as the decompressed ones are.
async fn receive(
    body: Body,
    gzip: bool,
    sink: Sink,
    deadline: Duration,
) -> Result<Sink, UploadError> {
    let cap = sink.cap;
    let work = async move {
        let mut stream = body.into_data_stream();
        let mut plain = None;
        let mut inflating = None;
        if gzip {
            inflating = Some(flate2::write::GzDecoder::new(sink));
        } else {
            plain = Some(sink);
        }
        let mut sent = 0usize;
        loop {
            let next = tokio::time::timeout(CLIENT_IDLE, stream.next())
                .await
                .map_err(|_| UploadError::Client(format!("nothing sent for {CLIENT_IDLE:?}")))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| UploadError::Client(e.to_string()))?;
            sent += chunk.len();
            if sent > cap {
                return Err(UploadError::TooLarge(cap));
            }
            let wrote = match (&mut plain, &mut inflating) {
                (Some(s), _) => s.write_all(&chunk).map_err(UploadError::Spool),
                (_, Some(d)) => d.write_all(&chunk).map_err(UploadError::Gzip),
                _ => unreachable!("one of the two is set"),
            };
            if let Err(e) = wrote {
                let over = plain
                    .as_ref()
                    .or(inflating.as_ref().map(|d| d.get_ref()))
                    .is_some_and(|s| s.over);
                return Err(if over { UploadError::TooLarge(cap) } else { e });
            }
        }
        let mut sink = match (plain, inflating) {
            (Some(s), _) => s,
            (_, Some(d)) => d.finish().map_err(UploadError::Gzip)?,
            _ => unreachable!("one of the two is set"),
        };
        if sink.over {
            return Err(UploadError::TooLarge(cap));
        }
        sink.flush().map_err(UploadError::Spool)?;
        Ok(sink)
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| UploadError::TimedOut(deadline))?
}

/// The answer to a request refused before git saw it: 413 past a count, 400 for what
/// git never sends.
fn refused_request(e: &RequestError) -> Response {
    match e {
        RequestError::TooMany(_) => text(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        RequestError::Malformed(_) => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// What git wrote to stderr, for the log (at most 8 KiB; git never sees a credential,
/// so none can be in it).
fn stderr_text(child: &mut Child) -> impl std::future::Future<Output = String> + use<> {
    let stderr = child.stderr.take();
    async move {
        let mut buf = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(8192).read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).trim().to_string()
    }
}

fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// The first wanted id `main` does not reach (`main`'s tip or a commit it descends
/// from), which is not served.
fn unserved_want(git_dir: &Path, wants: &[String]) -> Result<Option<String>, git2::Error> {
    let repo = git2::Repository::open_bare(git_dir)?;
    let head = repo.refname_to_id(crate::store::BRANCH_REF)?;
    for want in wants {
        let Ok(oid) = git2::Oid::from_str(want) else {
            return Ok(Some(want.clone()));
        };
        let reached = oid == head
            || (repo.find_commit(oid).is_ok() && repo.graph_descendant_of(head, oid)?);
        if !reached {
            return Ok(Some(want.clone()));
        }
    }
    Ok(None)
}

/// `POST /v1/repo/{id}.git/git-upload-pack`: a fetch or clone. The request is read
/// whole and its wants checked before git starts; the answer is streamed.
pub(super) async fn upload_pack(
    State(state): State<ApiState>,
    UrlPath(raw_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, git, _) = match admit_git_request(&state, &headers, &raw_id, Service::UploadPack).await
    {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    let protocol = git_protocol(&headers);
    let v2 = protocol.as_deref().is_some_and(|p| p.contains("version=2"));
    let request = match receive(
        body,
        gzipped(&headers),
        Sink::in_memory(MAX_FETCH_REQUEST_BYTES),
        FETCH_REQUEST_DEADLINE,
    )
    .await
    {
        Ok(sink) => sink.head,
        Err(e) => {
            tracing::debug!(repo = %id, cause = %e, "fetch request not taken");
            return e.answer();
        }
    };
    let wants = match pkt_line::fetch_wants(&request, v2, MAX_WANTS) {
        Ok(w) => w,
        Err(e) => return refused_request(&e),
    };
    if !wants.is_empty() {
        let dir = state.store.git_dir(&id);
        match tokio::task::spawn_blocking(move || unserved_want(&dir, &wants)).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(want))) => {
                // upload-pack's own words for a want it does not serve, as an error
                // line git shows (`remote error: …`).
                tracing::info!(repo = %id, want = %want, "a fetch wanted an object `main` does not reach");
                return git_answer(
                    "application/x-git-upload-pack-result",
                    Body::from(pkt(format!(
                        "ERR upload-pack: not our ref {want}; only what `main` reaches is served\n"
                    )
                    .as_bytes())),
                );
            }
            Ok(Err(e)) => return internal(format!("cannot check a fetch's wants: {e}")),
            Err(e) => return internal(e),
        }
    }
    let mut cmd = git.command(
        Service::UploadPack,
        &state.store.git_dir(&id),
        protocol.as_deref(),
        state.store.limits(),
    );
    // A client that goes away drops the answer's body, and with it upload-pack.
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return internal(format!("cannot run git: {e}")),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = stderr_text(&mut child);
    tokio::spawn(async move {
        let fed = async {
            stdin.write_all(&request).await?;
            stdin.shutdown().await
        };
        if let Err(e) = fed.await {
            tracing::debug!(repo = %id, cause = %e, "fetch request not passed whole to git");
        }
    });
    tokio::spawn(async move {
        let said = stderr.await;
        if !said.is_empty() {
            tracing::debug!(repo = %id, git = %said, "git upload-pack said");
        }
    });
    git_answer(
        "application/x-git-upload-pack-result",
        Body::from_stream(output_stream(stdout, Some(child))),
    )
}

/// git's standard output as a body stream; the stream owns `child` (when given), so
/// dropping the stream ends it.
fn output_stream(
    stdout: ChildStdout,
    child: Option<Child>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(Some((stdout, child)), |state| async move {
        let (mut stdout, mut child) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match stdout.read(&mut buf).await {
            Ok(0) => {
                if let Some(c) = child.as_mut() {
                    let _ = c.wait().await;
                }
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((stdout, child))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// receive-pack's answer refusing every command of `request` with `why`, as git
/// prints it: the reason as `remote: …` lines (when the client takes a side band) and
/// each ref `[remote rejected]`.
fn refused_push(request: &PushRequest, why: &str) -> Response {
    let mut report = pkt(b"unpack ok\n");
    for command in &request.commands {
        report.extend(pkt(format!(
            "ng {} refused: only a fast-forward of `main` is taken here\n",
            crate::text::one_line(&command.name)
        )
        .as_bytes()));
    }
    report.extend_from_slice(b"0000");
    let sideband = request.asked("side-band-64k") || request.asked("side-band");
    let body = if sideband {
        let mut body = Vec::new();
        let message = format!("push refused, nothing changed: {why}\n");
        body.extend(pkt(&[&[2u8][..], message.as_bytes()].concat()));
        // side-band (without 64k) takes at most 1000 bytes a packet.
        for piece in report.chunks(990) {
            body.extend(pkt(&[&[1u8][..], piece].concat()));
        }
        body.extend_from_slice(b"0000");
        body
    } else {
        report
    };
    git_answer("application/x-git-receive-pack-result", Body::from(body))
}

/// `POST /v1/repo/{id}.git/git-receive-pack`: a push. Received whole before git
/// starts; the writer lock is taken only when the hook reaches the gate.
pub(super) async fn receive_pack(
    State(state): State<ApiState>,
    UrlPath(raw_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, git, credential) =
        match admit_git_request(&state, &headers, &raw_id, Service::ReceivePack).await {
            Ok(x) => x,
            Err(answer) => return answer,
        };
    // The push's record waits for its outcome (see `crate::audit::note_push`).
    let reporter = crate::audit::note_push();
    let limits = state.store.limits();
    let mut file = match git.spool_file() {
        Ok(f) => f,
        Err(e) => return internal(format!("cannot spool a push: {e}")),
    };
    let sink = match file.try_clone() {
        Ok(f) => Sink::spooled(f, push_input_cap(&limits)),
        Err(e) => return internal(format!("cannot spool a push: {e}")),
    };
    let sink = match receive(body, gzipped(&headers), sink, PUSH_UPLOAD_DEADLINE).await {
        Ok(sink) => sink,
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "push not taken; nothing changed");
            return e.answer();
        }
    };
    let request = match pkt_line::push_request(&sink.head, MAX_PUSH_COMMANDS) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(repo = %id, cause = %e, "push refused before git started");
            return refused_request(&e);
        }
    };
    drop(sink);
    if request.commands.is_empty() {
        // git's probe before a large push: receive-pack would answer it with nothing.
        return git_answer(
            "application/x-git-receive-pack-result",
            Body::from(Vec::new()),
        );
    }
    if let Some(refused) = request
        .commands
        .iter()
        .find_map(|c| ref_refusal(&c.name).err())
    {
        tracing::info!(repo = %id, cause = %refused, "push refused before git started");
        // Recorded once this handler has answered; nothing to wait for.
        drop(reporter.report(crate::audit::PushOutcome {
            refs: request.commands.iter().map(|c| c.name.clone()).collect(),
            verdict: PushVerdict::Refused(refused.to_string()),
        }));
        return refused_push(&request, &refused.to_string());
    }
    if let Err(e) = file.rewind() {
        return internal(format!("cannot read a spooled push: {e}"));
    }
    let gate = match Gate::open(&git.incoming_dir) {
        Ok(g) => g,
        Err(e) => return internal(format!("cannot open a push's gate: {e}")),
    };
    let mut cmd = git.command(
        Service::ReceivePack,
        &state.store.git_dir(&id),
        None,
        limits,
    );
    cmd.stdin(Stdio::from(file))
        .env(ENV_GATE, gate.path())
        .env(ENV_GATE_KEY, gate.key());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return internal(format!("cannot run git: {e}")),
    };
    let stdout = child.stdout.take().expect("piped");
    let stderr = stderr_text(&mut child);
    // git's answer is small (the report and the hook's words): it is kept whole for a
    // slow client, so git never waits on one while the lock is held.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<Bytes>>();
    // The push runs to its end on its own, whether or not the client is still there:
    // its input is whole already.
    tokio::spawn(run_receive_pack(
        state, id, credential, request, reporter, gate, child, stdout, stderr, tx,
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    git_answer(
        "application/x-git-receive-pack-result",
        Body::from_stream(stream),
    )
}

/// Admit the push's credential again, for the gate: revoked, expired or narrowed
/// since the push was admitted, it no longer lands.
async fn readmit(state: &ApiState, credential: Option<&str>, id: &RepoId) -> Result<(), String> {
    let scope = credentials::admit(
        &state.local,
        &OperatorBound::default(),
        Surface::Git,
        credential,
    )
    .await
    .map_err(|refusal| {
        format!(
            "the credential no longer admits this push: {}",
            refusal.to_git()
        )
    })?;
    if scope.paths().is_some() {
        return Err(
            "the credential is now limited to some paths, and git cannot push part of a tree"
                .into(),
        );
    }
    scope
        .admit(Right::Write, id)
        .map_err(|e| format!("the credential may no longer push to this repo: {e}"))
}

#[allow(clippy::too_many_arguments)]
async fn run_receive_pack(
    state: ApiState,
    id: RepoId,
    credential: Option<String>,
    request: PushRequest,
    reporter: crate::audit::PushReporter,
    gate: Gate,
    mut child: Child,
    stdout: ChildStdout,
    stderr: impl std::future::Future<Output = String>,
    tx: tokio::sync::mpsc::UnboundedSender<std::io::Result<Bytes>>,
) {
    let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
    let git_side = async {
        let mut out = std::pin::pin!(output_stream(stdout, None));
        // A copy of the answer, read back for the push's record once git has ended.
        let mut answer = Vec::new();
        while let Some(chunk) = out.next().await {
            if let Ok(bytes) = &chunk
                && answer.len() < MAX_ANSWER_KEPT
            {
                answer.extend_from_slice(bytes);
            }
            // A client gone is no reason to stop: the push is whole.
            let _ = tx.send(chunk);
        }
        let status = child.wait().await;
        let _ = exited_tx.send(true);
        (status, answer)
    };
    let gate_side = async {
        let mut exited = exited_rx.clone();
        // The hook knocks once the pack is whole in quarantine and checked; a push git
        // refuses earlier never does.
        let knock = tokio::select! {
            k = gate.knock() => k,
            _ = exited.wait_for(|e| *e) => return None,
        };
        let knock = match knock {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(repo = %id, cause = %e, "a push's gate failed; the push does not land");
                return Some(format!("the server's gate for this push failed ({e})"));
            }
        };
        let store = state.store.clone();
        let runtime = tokio::runtime::Handle::current();
        let mut exited = exited_rx.clone();
        // The writer lock is a blocking one: a blocking thread holds it, driving the
        // verdict and the wait through the runtime.
        let state = state.clone();
        let credential = credential.clone();
        let held = tokio::task::spawn_blocking(move || {
            store.write_from_outside(&id, |_dir| {
                runtime.block_on(async {
                    let verdict = readmit(&state, credential.as_deref(), &id).await;
                    if let Err(why) = &verdict {
                        tracing::info!(repo = %id, cause = %why, "push refused at its gate");
                    }
                    let refused = verdict.as_ref().err().cloned();
                    knock.answer(verdict).await;
                    // Held until receive-pack has moved `main` (or not) and ended.
                    let _ = exited.wait_for(|e| *e).await;
                    refused
                })
            })
        })
        .await;
        match held {
            Ok(Ok(refused)) => refused,
            Ok(Err(e)) => {
                tracing::warn!(repo = %id, cause = %e, "a push's gate could not take the writer lock");
                Some(format!(
                    "the server could not take the repo's writer lock ({e})"
                ))
            }
            Err(e) => {
                tracing::warn!(repo = %id, cause = %e, "a push's gate failed");
                Some("the server's gate for this push failed".into())
            }
        }
    };
    let ((status, answer), gate_refused, said) = tokio::join!(git_side, gate_side, stderr);
    drop(gate);
    match &status {
        Ok(s) if s.success() => {
            tracing::info!(repo = %id, "git push request done");
        }
        Ok(s) => tracing::warn!(repo = %id, status = %s, git = %said, "git receive-pack failed"),
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "git receive-pack could not be waited for")
        }
    }
    let report = pkt_line::push_report(
        &answer,
        request.asked("side-band-64k") || request.asked("side-band"),
    );
    let store = state.store.clone();
    let commands = request.commands.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        push_verdict(&store, &id, &commands, &report, &said, gate_refused)
    })
    .await
    .unwrap_or_else(|e| PushVerdict::Failed(format!("the push's outcome could not be read: {e}")));
    // The answer stays open (`tx` lives to the end of this function) until the record
    // is written, so a pusher whose `git push` returned finds it in the trail.
    reporter
        .report(crate::audit::PushOutcome {
            refs: request.commands.iter().map(|c| c.name.clone()).collect(),
            verdict,
        })
        .written()
        .await;
}

/// Most bytes of receive-pack's answer kept to read its report back (the report and
/// the hook's words are a few hundred bytes; progress lines may add some).
const MAX_ANSWER_KEPT: usize = 256 * 1024;

/// What a push came to, from git's report and the gate's verdict: landed (with the
/// paths it changed), refused (the gate's or the hook's words, else git's), or failed.
fn push_verdict(
    store: &crate::store::Store,
    id: &RepoId,
    commands: &[pkt_line::PushCommand],
    report: &pkt_line::PushReport,
    stderr: &str,
    gate_refused: Option<String>,
) -> PushVerdict {
    if let Some(why) = gate_refused {
        return PushVerdict::Refused(why);
    }
    if let Some(e) = &report.unpack_error {
        return PushVerdict::Failed(format!("git could not unpack the push: {e}"));
    }
    if let Some((name, why)) = report
        .refs
        .iter()
        .find_map(|(name, why)| why.as_ref().map(|w| (name, w)))
    {
        // The hook's own words, when it refused (they reach the pusher on the side
        // band, or on receive-pack's stderr without one).
        let hook = [report.messages.as_str(), stderr]
            .into_iter()
            .flat_map(str::lines)
            .find_map(|l| {
                l.split_once("push refused, nothing changed: ")
                    .map(|(_, w)| w)
            })
            .or_else(|| {
                [report.messages.as_str(), stderr]
                    .into_iter()
                    .flat_map(str::lines)
                    .find_map(|l| l.strip_prefix("push refused: "))
            });
        return PushVerdict::Refused(match hook {
            Some(w) => w.trim().to_string(),
            None => format!("git refused {name}: {why}"),
        });
    }
    let landed = !commands.is_empty()
        && commands.iter().all(|c| {
            report
                .refs
                .iter()
                .any(|(n, why)| *n == c.name && why.is_none())
        });
    if !landed {
        return PushVerdict::Failed("git ended without reporting the push's refs".into());
    }
    let (Some(first), Some(last)) = (commands.first(), commands.last()) else {
        return PushVerdict::Failed("a push without commands".into());
    };
    match store.changed_between(id, &first.old, &last.new) {
        Ok(paths) => PushVerdict::Landed {
            before: first.old.clone(),
            after: last.new.clone(),
            paths,
        },
        Err(e) => PushVerdict::Failed(format!(
            "the push landed at {}, but its changed paths could not be read: {e}",
            last.new
        )),
    }
}

/// The pre-receive hook (`scoped-repo-mcp git-pre-receive`, run by receive-pack in the
/// repo's directory): the store's rules ([`crate::store::hook::pre_receive`]), with this
/// server's push gate. True: accept.
pub fn pre_receive(input: &str, err: &mut dyn std::io::Write) -> bool {
    crate::store::hook::pre_receive(input, err, super::push_gate::pass)
}
