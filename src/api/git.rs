//! git's smart HTTP at `/v1/repo/{id}.git`: clone, fetch and push with the repo token
//! or account key as the password (HTTP Basic, any user name) or as a bearer. Who may do
//! what is decided by the front door ([`crate::access::admit`] on [`Surface::Git`]), as
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
//! A push runs receive-pack holding the repo's writer lock (the same in-process mutex and
//! flock as `update_repo_files`, see [`crate::store::Store::write_from_outside`]), so pushes and updates
//! take turns across processes; its pre-receive hook is this product's binary (the hidden
//! `git-pre-receive` command) checking every incoming commit against the store's rules
//! ([`crate::store::push`]); receive-pack's own old-oid check is the compare-and-swap of
//! `main`. The hook is set per run with `-c core.hooksPath=`. No child process sees the
//! caller's credential: it is never in a child's arguments, and children start from an
//! empty environment.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::ApiState;
use crate::access::{self, OperatorBound, Refusal, Surface};
use crate::model::RepoId;
use crate::rules::Limits;
use crate::scope::{Right, ScopeError};
use crate::store::StoreError;
use crate::store::push::{RefUpdate, check_push};

/// The realm git shows when it asks its credential helper.
const REALM: &str = "Basic realm=\"scoped-repo-mcp\"";

/// The hidden command of this binary that git runs as the pre-receive hook.
pub const HOOK_COMMAND: &str = "git-pre-receive";

/// Environment variables the hook reads (none of them secret).
const ENV_EXE: &str = "SCOPED_REPO_MCP_EXE";
const ENV_MAX_FILE: &str = "SCOPED_REPO_MCP_MAX_FILE_BYTES";
const ENV_MAX_PUSH: &str = "SCOPED_REPO_MCP_MAX_PUSH_BYTES";
const ENV_MAX_OPS: &str = "SCOPED_REPO_MCP_MAX_OPERATIONS";

/// The hook script: constant, so every `api` process on a data directory can share it;
/// which binary it runs comes from the environment of each receive-pack.
const HOOK_SCRIPT: &str = "#!/bin/sh\n# Written by scoped-repo-mcp api: checks a git push against the store's rules.\nexec \"$SCOPED_REPO_MCP_EXE\" git-pre-receive\n";

/// Largest decompressed request accepted by upload-pack (a fetch's wants and haves).
const MAX_FETCH_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// How long a request may send nothing before it is taken as abandoned.
const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

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
    program: PathBuf,
    path_env: String,
    hooks_dir: PathBuf,
    hook_exe: PathBuf,
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
        let program = found.program().to_path_buf();
        let path_env = found.path_env().to_string();
        let hooks_dir = std::fs::canonicalize(data_dir)
            .map_err(|e| GitSetupError(format!("cannot open {}: {e}", data_dir.display())))?
            .join("git-hooks");
        write_hook(&hooks_dir)
            .map_err(|e| GitSetupError(format!("cannot write {}: {e}", hooks_dir.display())))?;
        Ok(Self {
            found,
            program,
            path_env,
            hooks_dir,
            hook_exe,
        })
    }

    /// The `git` program, for fetches of git sources.
    pub fn program(&self) -> &crate::git_source::GitProgram {
        &self.found
    }

    /// `git <config> <service> --stateless-rpc <dir>`, from an empty environment.
    fn command(
        &self,
        service: Service,
        dir: &Path,
        protocol: Option<&str>,
        limits: Limits,
    ) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", &self.path_env)
            // Only this invocation's settings: not the operator's ~/.gitconfig or
            // /etc/gitconfig, which could add hooks or change what is served.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        match service {
            Service::UploadPack => {
                // Only `main` (and HEAD, which names it) is served.
                cmd.args(["-c", "transfer.hideRefs=refs/"])
                    .args(["-c", "transfer.hideRefs=!refs/heads/main"]);
                if let Some(p) = protocol {
                    cmd.env("GIT_PROTOCOL", p);
                }
            }
            Service::ReceivePack => {
                // Room for a push at the store's limit, compressed or not, plus its
                // trees and commits; the hook checks the limit itself.
                let max_input = limits.max_update_bytes.saturating_mul(2) + (16 << 20);
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
                    .env(ENV_MAX_FILE, limits.max_file_bytes.to_string())
                    .env(ENV_MAX_PUSH, limits.max_update_bytes.to_string())
                    .env(ENV_MAX_OPS, limits.max_operations.to_string());
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
async fn admit(
    state: &ApiState,
    headers: &HeaderMap,
    raw_id: &str,
    service: Service,
) -> Result<(RepoId, Arc<GitSupport>), Response> {
    let credential =
        access::basic_or_bearer(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(|r| unauthorized(&r))?;
    let scope = access::admit(
        &state.local,
        &OperatorBound::default(),
        Surface::Git,
        credential.as_deref(),
    )
    .await
    .map_err(|refusal| match refusal {
        // A good credential whose repos are all gone: as for any repo it does not reach.
        Refusal::NoRepos => not_found(),
        Refusal::Unavailable => text(StatusCode::SERVICE_UNAVAILABLE, &refusal.to_git()),
        other => unauthorized(&other),
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
    Ok((id, git))
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
    let (id, git) = match admit(&state, &headers, &raw_id, service).await {
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

/// Why feeding a request to git stopped early.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("the client went away mid-request: {0}")]
    Client(String),
    #[error("the request body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("the request is over {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("git stopped reading: {0}")]
    Git(std::io::Error),
}

/// Copy the request body (gunzipped when git compressed it) into git's standard input,
/// then close it.
async fn feed(body: Body, gzip: bool, mut stdin: ChildStdin, max: usize) -> Result<(), FeedError> {
    let mut stream = body.into_data_stream();
    let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut total = 0usize;
    loop {
        // A client that stops sending holds the repo's writer lock during a push: give
        // up on it after a while, as on one that hung up.
        let next = tokio::time::timeout(CLIENT_IDLE, stream.next())
            .await
            .map_err(|_| FeedError::Client(format!("nothing sent for {CLIENT_IDLE:?}")))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| FeedError::Client(e.to_string()))?;
        let out: Bytes = match &mut decoder {
            Some(d) => {
                d.write_all(&chunk).map_err(FeedError::Gzip)?;
                std::mem::take(d.get_mut()).into()
            }
            None => chunk,
        };
        total += out.len();
        if total > max {
            return Err(FeedError::TooLarge(max));
        }
        stdin.write_all(&out).await.map_err(FeedError::Git)?;
    }
    if let Some(d) = decoder {
        let rest = d.finish().map_err(FeedError::Gzip)?;
        stdin.write_all(&rest).await.map_err(FeedError::Git)?;
    }
    stdin.shutdown().await.map_err(FeedError::Git)
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

/// `POST /v1/repo/{id}.git/git-upload-pack`: a fetch or clone, streamed.
pub(super) async fn upload_pack(
    State(state): State<ApiState>,
    UrlPath(raw_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, git) = match admit(&state, &headers, &raw_id, Service::UploadPack).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    let mut cmd = git.command(
        Service::UploadPack,
        &state.store.git_dir(&id),
        git_protocol(&headers).as_deref(),
        state.store.limits(),
    );
    // A client that goes away drops the answer's body, and with it upload-pack.
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return internal(format!("cannot run git: {e}")),
    };
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = stderr_text(&mut child);
    let gzip = gzipped(&headers);
    tokio::spawn(async move {
        if let Err(e) = feed(body, gzip, stdin, MAX_FETCH_REQUEST_BYTES).await {
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

/// `POST /v1/repo/{id}.git/git-receive-pack`: a push, run as the repo's one writer.
pub(super) async fn receive_pack(
    State(state): State<ApiState>,
    UrlPath(raw_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, git) = match admit(&state, &headers, &raw_id, Service::ReceivePack).await {
        Ok(x) => x,
        Err(answer) => return answer,
    };
    let gzip = gzipped(&headers);
    let limits = state.store.limits();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let store = state.store.clone();
    let runtime = tokio::runtime::Handle::current();
    // The push runs to its end on its own, whether or not the client is still there:
    // under the writer lock, which only a blocking thread may hold, driving the child
    // through the runtime. A client gone mid-upload makes receive-pack read an early
    // end of input, and git then drops the quarantined objects and leaves `main` as
    // it was; a client gone after its upload does not stop a push that is whole.
    tokio::task::spawn_blocking(move || {
        let mut started = Some(started_tx);
        let ran = store.write_from_outside(&id, |dir| {
            let cmd = git.command(Service::ReceivePack, dir, None, limits);
            runtime.block_on(run_receive_pack(cmd, id, body, gzip, tx, &mut started))
        });
        if let Err(e) = ran
            && let Some(s) = started.take()
        {
            let _ = s.send(Err(e.to_string()));
        }
    });
    match started_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(cause)) => return internal(cause),
        Err(_) => return internal("the push ended before it started"),
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    git_answer(
        "application/x-git-receive-pack-result",
        Body::from_stream(stream),
    )
}

async fn run_receive_pack(
    mut cmd: Command,
    id: RepoId,
    body: Body,
    gzip: bool,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    started: &mut Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(s) = started.take() {
                let _ = s.send(Err(format!("cannot run git: {e}")));
            }
            return;
        }
    };
    if let Some(s) = started.take() {
        let _ = s.send(Ok(()));
    }
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = stderr_text(&mut child);
    // The input: dropped (closing git's stdin) as soon as it fails.
    let fed = feed(body, gzip, stdin, usize::MAX);
    let relay = async {
        let mut out = std::pin::pin!(output_stream(stdout, None));
        let mut client = Some(tx);
        while let Some(chunk) = out.next().await {
            // Keep reading after the client is gone, so git never blocks on a full pipe.
            if let Some(c) = &client
                && c.send(chunk).await.is_err()
            {
                client = None;
            }
        }
    };
    let (fed, (), said) = tokio::join!(fed, relay, stderr);
    let status = child.wait().await;
    if let Err(e) = &fed {
        tracing::warn!(repo = %id, cause = %e, "push cut short; git left `main` as it was");
    }
    match status {
        Ok(s) if s.success() => {
            tracing::info!(repo = %id, "git push request done");
        }
        Ok(s) => tracing::warn!(repo = %id, status = %s, git = %said, "git receive-pack failed"),
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "git receive-pack could not be waited for")
        }
    }
}

/// The pre-receive hook (`scoped-repo-mcp git-pre-receive`, run by receive-pack in the
/// repo's directory): read the ref updates from `input`, check the push, and write the
/// refusal to `err` (git relays it to the pusher as `remote: …`). True: accept.
pub fn pre_receive(input: &str, err: &mut dyn std::io::Write) -> bool {
    let env_num = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let defaults = Limits::default();
    let limits = Limits {
        max_file_bytes: env_num(ENV_MAX_FILE, defaults.max_file_bytes),
        max_update_bytes: env_num(ENV_MAX_PUSH, defaults.max_update_bytes),
        max_operations: env_num(ENV_MAX_OPS, defaults.max_operations),
    };
    let quarantine = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from);
    let checked = match std::env::current_dir() {
        Ok(dir) => RefUpdate::parse_lines(input)
            .and_then(|updates| check_push(&dir, quarantine.as_deref(), &updates, &limits)),
        Err(e) => {
            let _ = writeln!(err, "push refused: the repository could not be found: {e}");
            return false;
        }
    };
    match checked {
        Ok(()) => true,
        Err(refused) => {
            let _ = writeln!(err, "push refused, nothing changed: {refused}");
            false
        }
    }
}
