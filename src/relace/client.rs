//! An HTTP client of the Relace Repos API bound to one credential: one connection pool,
//! timeouts, and retries that never apply a write twice. Wire structs are private here;
//! callers get the crate's domain types.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::RelaceError;
use super::events::{Event, EventSplitter, EventTooLarge, MAX_EVENT_BYTES};
use crate::backend::SearchOutcome;
use crate::model::{
    AgenticReport, Change, FileOp, LineQuery, LineResults, MatchRange, MintSpec, MintedToken,
    RepoId, RepoSummary, SearchHit, TokenInfo, UpdateOutcome, UpdateSpec, parse_rfc3339,
};
use crate::paths::RepoPath;

/// The header this project's `api` server uses to say which head a file was read at.
const REPO_HEAD_HEADER: &str = "x-repo-head";
/// Longest `detail` kept from an error answer.
const MAX_DETAIL: usize = 500;

/// Timeouts and retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (the official SDKs use 2).
    pub max_retries: u32,
    /// First backoff; doubled each retry.
    pub base_delay: Duration,
    /// Longest backoff between two attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one is reported instead of waited for.
    pub max_retry_after: Duration,
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): exponential with jitter, as the
    /// official SDKs do, unless the API said how long with `Retry-After`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        let mut b = [0u8; 1];
        let _ = getrandom::fill(&mut b);
        // Up to 25% less, so clients that failed together do not retry together.
        exp.mul_f64(1.0 - f64::from(b[0]) / 255.0 * 0.25)
    }
}

/// Whether a request may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Safety {
    /// Reads (and searches): sending twice changes nothing.
    Idempotent,
    /// Writes: only retried when the API certainly did not apply them.
    Write,
}

enum Body {
    None,
    Json(Vec<u8>),
}

/// A repo as `GET /repo/{id}` describes it.
#[derive(Debug, Clone)]
pub struct RepoMeta {
    /// Summary (head empty when the API does not report it).
    pub summary: RepoSummary,
    /// What identifies this version of the repo: the head when reported, else the
    /// `updated_at` time.
    pub version: String,
}

/// A `retrieve` answer.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// The commit it reflects, when the service names it.
    pub hash: Option<String>,
    /// Best first.
    pub results: Vec<Retrieved>,
    /// Files not yet indexed (`pending_embeddings`): above zero, the results are not
    /// the full ranking (`api` answers from line search while its index is built).
    pub pending: u64,
}

/// One file of a `retrieve` answer.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The file.
    pub filename: String,
    /// Relevance, 0–1.
    pub score: f64,
    /// Its content, when asked for.
    pub content: Option<String>,
}

// ---- wire types ----

#[derive(Deserialize)]
struct ErrorBody {
    detail: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct WireFile {
    filename: String,
    content: String,
}

#[derive(Deserialize)]
struct WireRepoInfo {
    repo_head: String,
    #[serde(default)]
    changed_files: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct WireRepoMetadata {
    repo_id: String,
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    repo_head: Option<String>,
}

#[derive(Deserialize)]
struct WireClone {
    files: Vec<WireFile>,
    #[serde(default)]
    repo_head: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum WireOp<'a> {
    Write {
        filename: &'a str,
        content: &'a str,
    },
    Delete {
        filename: &'a str,
    },
    Rename {
        old_filename: &'a str,
        new_filename: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum WireUpdateSource<'a> {
    Files { files: Vec<WireFileRef<'a>> },
    Diff { operations: Vec<WireOp<'a>> },
}

#[derive(Serialize)]
struct WireFileRef<'a> {
    filename: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct WireUpdate<'a> {
    source: WireUpdateSource<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_head: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct WireSearch<'a> {
    query: &'a str,
    regex: bool,
    case_sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_glob: Option<&'a str>,
    max_results: usize,
    context_lines: usize,
}

#[derive(Deserialize)]
struct WireMatch {
    start: usize,
    end: usize,
}

#[derive(Deserialize)]
struct WireSearchResult {
    filename: String,
    line_number: u64,
    line_content: String,
    #[serde(default)]
    match_start: Option<usize>,
    #[serde(default)]
    match_end: Option<usize>,
    #[serde(default)]
    matches: Option<Vec<WireMatch>>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
}

#[derive(Deserialize)]
struct WireSearchAnswer {
    results: Vec<WireSearchResult>,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    files_searched: Option<usize>,
    #[serde(default)]
    repo_head: Option<String>,
}

#[derive(Serialize)]
struct WireRetrieve<'a> {
    query: &'a str,
    include_content: bool,
    score_threshold: f64,
    token_limit: usize,
}

#[derive(Deserialize)]
struct WireRetrieved {
    filename: String,
    score: f64,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireRetrieveAnswer {
    results: Vec<WireRetrieved>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    pending_embeddings: u64,
}

#[derive(Serialize)]
struct WireTokenRequest<'a> {
    name: &'a str,
    repo_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
    // This product's extensions, sent only when asked for: the hosted API lacks them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    paths: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    can_delegate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
}

#[derive(Deserialize)]
struct WireToken {
    #[serde(default)]
    token: Option<String>,
    name: String,
    repo_ids: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    can_delegate: bool,
    #[serde(default)]
    rate: Option<String>,
}

impl WireToken {
    fn info(&self) -> TokenInfo {
        TokenInfo {
            name: self.name.clone(),
            repo_ids: self
                .repo_ids
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            expires_at: self.expires_at.as_deref().and_then(parse_rfc3339),
            read_only: self.read_only,
            paths: self.paths.clone(),
            can_delegate: self.can_delegate,
            rate: self.rate.as_deref().and_then(|r| r.parse().ok()),
            lineage: Vec::new(),
            audience: None,
        }
    }
}

// ---- the client ----

/// A Relace API client bound to one base URL and credential.
#[derive(Clone)]
pub struct RelaceClient {
    http: reqwest::Client,
    base: String,
    credential: String,
    policy: RetryPolicy,
}

impl std::fmt::Debug for RelaceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaceClient")
            .field("base", &self.base)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Percent-encode `value` as exactly one URL path segment: everything but RFC 3986's
/// unreserved characters is encoded, `/` included, so no value can add a segment.
/// Callers check the value's shape first; `.` and `..` never reach here, since a URL
/// parser would treat even their encoded forms as dot segments.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A repo path as URL path segments, each encoded alone. [`RepoPath`] has already
/// refused empty, `.` and `..` components.
fn encode_repo_path(path: &RepoPath) -> String {
    path.as_str()
        .split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// A repo token as one URL path segment, refused unless it has a repo token's exact
/// shape (`rlcr-` and 40 hex digits).
fn token_segment(token: &str) -> Result<String, RelaceError> {
    if !crate::credentials::secrets::looks_like_repo_token(token) {
        return Err(RelaceError::Refused(
            "not a repo token (`rlcr-` followed by 40 hex digits); nothing was sent".into(),
        ));
    }
    Ok(encode_segment(token))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        // A wait too long for a `Duration` is still a wait past any limit: saturate,
        // so the caller reports it instead of waiting (`from_secs_f64` would panic).
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate_to_unix(raw)?;
    Some(Duration::from_secs(
        (at - crate::model::unix_now()).max(0) as u64
    ))
}

/// Parse an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
fn httpdate_to_unix(raw: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(&{
        let parts: Vec<&str> = raw.split_whitespace().collect();
        let [_, day, mon, year, time, _] = parts.as_slice() else {
            return None;
        };
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let m = months.iter().position(|x| x == mon)? + 1;
        format!("{year}-{m:02}-{day:0>2} {time}")
    })
    .ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        .try_into()
        .ok()
}

fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "; fix the request as the detail says",
        401 => "; the credential in RELACE_API_KEY was refused: check it, or ask for a new one",
        403 => "; the credential does not reach this repo or route",
        404 => "; check the ID or path (list_repos and list_files show what exists)",
        408 | 500..=599 => "; the service failed after retries: try again later",
        409 => "; read the repo again and retry on top of its current head",
        413 => "; the request is over the API's size limits: split it into smaller updates",
        422 => "; the API refused the request's shape",
        423 => "; another update holds the repo's lock: retry shortly",
        429 => "; rate limited after retries: wait and try again later",
        _ => "",
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

impl RelaceClient {
    /// A client of the API at `base` (e.g. `https://api.relace.run/v1`).
    pub fn new(base: &str, credential: &str, policy: RetryPolicy) -> Result<Self, RelaceError> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("scoped-repo-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RelaceError::Unsupported(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            credential: credential.to_string(),
            policy,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The credential, for the git fetches of the history cache (which keep it out of
    /// paths, arguments and logs).
    pub(crate) fn credential(&self) -> &str {
        &self.credential
    }

    /// Never let the credential out in a message, whatever the API echoed.
    fn redact(&self, s: String) -> String {
        if self.credential.len() >= 8 && s.contains(&self.credential) {
            s.replace(&self.credential, "<redacted>")
        } else {
            s
        }
    }

    fn transport_error(&self, e: reqwest::Error, safety: Safety) -> RelaceError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        // `without_url`: a token route's URL holds a token.
        let e = e.without_url();
        let mut cause = self.redact(chain(&e));
        if timeout {
            cause = format!(
                "no answer within {}s ({cause})",
                self.policy.timeout.as_secs_f64()
            );
        }
        if safety == Safety::Write && !connect {
            return RelaceError::WriteUncertain {
                base: self.base.clone(),
                cause,
            };
        }
        RelaceError::Transport {
            base: self.base.clone(),
            cause,
            hint: if connect {
                "check RELACE_BASE_URL and that the service is up"
            } else {
                "the service may be overloaded; try again later"
            },
        }
    }

    async fn status_error(&self, response: reqwest::Response) -> RelaceError {
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let detail = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody {
                detail: serde_json::Value::String(s),
            }) => s,
            Ok(ErrorBody { detail }) => detail.to_string(),
            Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
        };
        let mut detail = self.redact(detail);
        if detail.is_empty() {
            detail = "(no detail)".into();
        }
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        RelaceError::Status {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            detail,
            hint: hint(status),
        }
    }

    /// Send a request, retrying what is safe to retry; the answer has a success status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        safety: Safety,
        accept: &str,
    ) -> Result<reqwest::Response, RelaceError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.credential)
                .header(ACCEPT, accept);
            if let Body::Json(bytes) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let wait = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let wait = retry_after(r.headers());
                    let retryable = match safety {
                        Safety::Idempotent => matches!(status, 408 | 409 | 429 | 500..=599),
                        // 429 and 423 refuse a write before applying it; anything else
                        // (a 5xx, a 408) may come after the write landed.
                        Safety::Write => matches!(status, 423 | 429),
                    };
                    if safety == Safety::Write && matches!(status, 408 | 500..=599) {
                        // The write may have landed before the failure: say so, and
                        // leave the retry to someone who has looked at the repo.
                        let err = self.status_error(r).await;
                        return Err(RelaceError::WriteUncertain {
                            base: self.base.clone(),
                            cause: err.to_string(),
                        });
                    }
                    if !retryable || attempt >= self.policy.max_retries {
                        return Err(self.status_error(r).await);
                    }
                    if wait.is_some_and(|w| w > self.policy.max_retry_after) {
                        let err = self.status_error(r).await;
                        return Err(RelaceError::Transport {
                            base: self.base.clone(),
                            cause: format!(
                                "{err} (it asks to retry after {}s)",
                                wait.unwrap_or_default().as_secs()
                            ),
                            hint: "wait that long and try again",
                        });
                    }
                    tracing::warn!(status, attempt, path = %redact_token_path(path), "Relace API answered an error; retrying");
                    wait
                }
                Err(e) => {
                    let retryable = match safety {
                        Safety::Idempotent => true,
                        // Only a connection never made certainly carried no write.
                        Safety::Write => e.is_connect(),
                    };
                    if !retryable || attempt >= self.policy.max_retries {
                        return Err(self.transport_error(e, safety));
                    }
                    tracing::warn!(attempt, path = %redact_token_path(path), cause = %self.redact(chain(&e.without_url())), "Relace API unreachable; retrying");
                    None
                }
            };
            tokio::time::sleep(self.policy.delay(attempt, wait)).await;
            attempt += 1;
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, RelaceError> {
        let bytes = response.bytes().await.map_err(|e| RelaceError::Malformed {
            base: self.base.clone(),
            cause: self.redact(chain(&e.without_url())),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RelaceError::Malformed {
            base: self.base.clone(),
            cause: e.to_string(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
        safety: Safety,
    ) -> Result<T, RelaceError> {
        let r = self
            .send(method, path, body, safety, "application/json")
            .await?;
        self.json(r).await
    }

    fn body<T: Serialize>(value: &T) -> Body {
        Body::Json(serde_json::to_vec(value).expect("wire types serialize"))
    }

    /// `GET /repo/{id}`; `None` when the API answers 404.
    pub async fn get_repo(&self, id: &RepoId) -> Result<Option<RepoMeta>, RelaceError> {
        let wire: WireRepoMetadata = match self
            .call(
                Method::GET,
                &format!("/repo/{id}"),
                Body::None,
                Safety::Idempotent,
            )
            .await
        {
            Ok(w) => w,
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let head = wire.repo_head.unwrap_or_default();
        let updated = wire.updated_at.unwrap_or_else(|| wire.created_at.clone());
        Ok(Some(RepoMeta {
            version: if head.is_empty() {
                format!("updated_at {updated}")
            } else {
                head.clone()
            },
            summary: RepoSummary {
                repo_id: wire.repo_id,
                head,
                metadata: wire.metadata.unwrap_or_default(),
                created_at: wire.created_at,
                updated_at: updated,
            },
        }))
    }

    /// `GET /repo/{id}/file/{path}`: the bytes, and the head when the API reports it.
    pub async fn read_file(
        &self,
        id: &RepoId,
        path: &RepoPath,
    ) -> Result<(Option<String>, Vec<u8>), RelaceError> {
        let r = self
            .send(
                Method::GET,
                &format!("/repo/{id}/file/{}", encode_repo_path(path)),
                Body::None,
                Safety::Idempotent,
                "*/*",
            )
            .await?;
        let head = r
            .headers()
            .get(REPO_HEAD_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = r.bytes().await.map_err(|e| RelaceError::Malformed {
            base: self.base.clone(),
            cause: self.redact(chain(&e.without_url())),
        })?;
        Ok((head, bytes.to_vec()))
    }

    /// `GET /repo/{id}/clone`: every readable text file, and the head when reported.
    pub async fn clone_repo(
        &self,
        id: &RepoId,
    ) -> Result<(Option<String>, Vec<(String, String)>), RelaceError> {
        let wire: WireClone = self
            .call(
                Method::GET,
                &format!("/repo/{id}/clone"),
                Body::None,
                Safety::Idempotent,
            )
            .await?;
        Ok((
            wire.repo_head,
            wire.files
                .into_iter()
                .map(|f| (f.filename, f.content))
                .collect(),
        ))
    }

    /// `POST /repo/{id}/update`, with a diff or a snapshot. Never retried once it may
    /// have reached the API.
    pub async fn update(
        &self,
        id: &RepoId,
        spec: &UpdateSpec,
    ) -> Result<UpdateOutcome, RelaceError> {
        let source = match &spec.change {
            Change::ReplaceAll(files) => WireUpdateSource::Files {
                files: files
                    .iter()
                    .map(|(p, c)| WireFileRef {
                        filename: p.as_str(),
                        content: c,
                    })
                    .collect(),
            },
            Change::Operations(ops) => WireUpdateSource::Diff {
                operations: ops
                    .iter()
                    .map(|op| {
                        Ok(match op {
                            FileOp::Write { path, content } => WireOp::Write {
                                filename: path.as_str(),
                                content,
                            },
                            // The update's JSON carries text only.
                            FileOp::WriteBytes { path, .. } => {
                                return Err(RelaceError::Unsupported(format!(
                                    "`{path}`: raw bytes cannot be written through the Relace API's update, which takes text"
                                )));
                            }
                            FileOp::Delete { path } => WireOp::Delete {
                                filename: path.as_str(),
                            },
                            FileOp::Rename { path, new_path } => WireOp::Rename {
                                old_filename: path.as_str(),
                                new_filename: new_path.as_str(),
                            },
                        })
                    })
                    .collect::<Result<_, RelaceError>>()?,
            },
        };
        let body = Self::body(&WireUpdate {
            source,
            expected_head: spec.expected_head.as_deref(),
            message: spec.message.as_deref(),
        });
        let wire: WireRepoInfo = self
            .call(
                Method::POST,
                &format!("/repo/{id}/update"),
                body,
                Safety::Write,
            )
            .await?;
        Ok(UpdateOutcome {
            head: wire.repo_head,
            // The service does not say what it applied the update on; an update made
            // with `expected_head` can only have been applied on that head.
            previous_head: spec.expected_head.clone(),
            changed_files: wire.changed_files.unwrap_or_default(),
        })
    }

    /// `POST /repo/{id}/search`: JSON line matches, or an agentic search's event
    /// stream whose events go to `progress` as they arrive.
    pub async fn search(
        &self,
        id: &RepoId,
        query: &LineQuery,
        progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<SearchOutcome, RelaceError> {
        let body = Self::body(&WireSearch {
            query: &query.pattern,
            regex: query.regex,
            case_sensitive: query.case_sensitive,
            path_glob: query.path_glob.as_deref(),
            max_results: query.max_results,
            context_lines: query.context_lines,
        });
        let r = self
            .send(
                Method::POST,
                &format!("/repo/{id}/search"),
                body,
                Safety::Idempotent,
                "application/json, text/event-stream",
            )
            .await?;
        let is_stream = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_stream {
            return self
                .read_events(r, progress)
                .await
                .map(SearchOutcome::Agentic);
        }
        let wire: WireSearchAnswer = self.json(r).await?;
        let hits: Vec<SearchHit> = wire
            .results
            .into_iter()
            .map(|w| SearchHit {
                path: w.filename,
                line: w.line_number,
                text: w.line_content,
                matches: match (w.matches, w.match_start, w.match_end) {
                    (Some(m), _, _) => m
                        .into_iter()
                        .map(|m| MatchRange {
                            start: m.start,
                            end: m.end,
                        })
                        .collect(),
                    (None, Some(start), Some(end)) => vec![MatchRange { start, end }],
                    _ => Vec::new(),
                },
                before: w.before,
                after: w.after,
            })
            .collect();
        let files_searched = wire.files_searched.unwrap_or_else(|| {
            let mut files: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
            files.dedup();
            files.len()
        });
        Ok(SearchOutcome::Lines(LineResults {
            head: wire.repo_head.unwrap_or_default(),
            hits,
            truncated: wire.truncated,
            files_searched,
        }))
    }

    /// Read a Server-Sent Events stream to its end, relaying each event.
    async fn read_events(
        &self,
        response: reqwest::Response,
        progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<AgenticReport, RelaceError> {
        let mut stream = response.bytes_stream();
        let mut splitter = EventSplitter::default();
        let mut last: Option<(String, String)> = None;
        let mut events = 0usize;
        let mut relay = |found: Event, last: &mut Option<(String, String)>| {
            // Events go on to the agent as progress and as the final report: like every
            // other answer's text, neither their names nor their data carry the credential.
            let (event, data) = (self.redact(found.name), self.redact(found.data));
            events += 1;
            if let Some(tx) = &progress {
                let mut shown: String = data.chars().take(300).collect();
                if shown.len() < data.len() {
                    shown.push('…');
                }
                let _ = tx.send(format!("{event}: {shown}"));
            }
            *last = Some((event, data));
        };
        let mut found = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RelaceError::Transport {
                base: self.base.clone(),
                cause: format!(
                    "the search's event stream broke off: {}",
                    self.redact(chain(&e.without_url()))
                ),
                hint: "try the search again",
            })?;
            splitter
                .push(&chunk, &mut found)
                .map_err(|EventTooLarge| RelaceError::Malformed {
                    base: self.base.clone(),
                    cause: format!(
                        "an event of the search's event stream passed {} MiB without ending",
                        MAX_EVENT_BYTES >> 20
                    ),
                })?;
            for event in found.drain(..) {
                relay(event, &mut last);
            }
        }
        if let Some(event) = splitter.finish() {
            relay(event, &mut last);
        }
        let Some((event, data)) = last else {
            return Err(RelaceError::Malformed {
                base: self.base.clone(),
                cause: "the search's event stream ended without any event".into(),
            });
        };
        if event == "error" {
            return Err(RelaceError::Transport {
                base: self.base.clone(),
                cause: format!("the agentic search failed: {data}"),
                hint: "try the search again, or use mode literal or regex",
            });
        }
        let report = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
        Ok(AgenticReport {
            event,
            report,
            events,
        })
    }

    /// `POST /repo/{id}/retrieve`: ranked natural-language retrieval.
    pub async fn retrieve(
        &self,
        id: &RepoId,
        query: &str,
        include_content: bool,
        score_threshold: f64,
        token_limit: usize,
    ) -> Result<Retrieval, RelaceError> {
        let body = Self::body(&WireRetrieve {
            query,
            include_content,
            score_threshold,
            token_limit,
        });
        let wire: WireRetrieveAnswer = self
            .call(
                Method::POST,
                &format!("/repo/{id}/retrieve"),
                body,
                Safety::Idempotent,
            )
            .await?;
        Ok(Retrieval {
            hash: wire.hash,
            results: wire
                .results
                .into_iter()
                .map(|r| Retrieved {
                    filename: r.filename,
                    score: r.score,
                    content: r.content,
                })
                .collect(),
            pending: wire.pending_embeddings,
        })
    }

    /// `POST /repo_token`. A write: a failure after sending is reported, not retried.
    ///
    /// `read_only`, `paths`, `can_delegate` and `rate` are this product's extensions: sent only
    /// when asked for, and checked in the answer. An API that does not echo them (the
    /// hosted service) minted a token wider than asked: that token is deleted at once
    /// and the call fails, so an extension is never silently dropped.
    pub async fn create_token(&self, spec: &MintSpec) -> Result<MintedToken, RelaceError> {
        let mut paths = spec.paths.clone();
        paths.sort();
        paths.dedup();
        let body = Self::body(&WireTokenRequest {
            name: &spec.name,
            repo_ids: spec.repo_ids.iter().map(ToString::to_string).collect(),
            ttl_seconds: spec.ttl_seconds,
            read_only: spec.read_only,
            paths: &paths,
            can_delegate: spec.can_delegate,
            rate: spec.rate.map(|r| r.to_string()),
        });
        let wire: WireToken = self
            .call(Method::POST, "/repo_token", body, Safety::Write)
            .await?;
        let token = wire.token.clone().ok_or_else(|| RelaceError::Malformed {
            base: self.base.clone(),
            cause: "the answer to POST /repo_token has no `token`".into(),
        })?;
        let mut echoed = wire.paths.clone();
        echoed.sort();
        echoed.dedup();
        if wire.read_only != spec.read_only
            || echoed != paths
            || wire.can_delegate != spec.can_delegate
            || wire.rate.as_deref().and_then(|r| r.parse().ok()) != spec.rate
        {
            let deleted = self.delete_token(&token).await;
            return Err(RelaceError::Unsupported(format!(
                "the Relace API at {} does not support read_only, paths, can_delegate or rate on repo tokens, \
                 so the token it minted would grant more than asked; {}. Mint without those fields, \
                 or use a `scoped-repo-mcp api` server",
                self.base,
                match deleted {
                    Ok(_) => "that token was deleted".to_string(),
                    Err(e) => format!("deleting that token failed ({e}): revoke it by hand"),
                }
            )));
        }
        Ok(MintedToken {
            token,
            info: wire.info(),
        })
    }

    /// `GET /repo_token/{token}`: what a live token grants. Errors carry the API's
    /// status (404 for an unknown, revoked or expired token; 401 when the token asked
    /// about is this client's own credential and no longer works).
    pub async fn get_token(&self, token: &str) -> Result<TokenInfo, RelaceError> {
        let wire: WireToken = self
            .call(
                Method::GET,
                &format!("/repo_token/{}", token_segment(token)?),
                Body::None,
                Safety::Idempotent,
            )
            .await?;
        Ok(wire.info())
    }

    /// `DELETE /repo_token/{token}`; false when the API answers 404. Deleting twice
    /// is harmless, so this one is retried like a read.
    pub async fn delete_token(&self, token: &str) -> Result<bool, RelaceError> {
        match self
            .send(
                Method::DELETE,
                &format!("/repo_token/{}", token_segment(token)?),
                Body::None,
                Safety::Idempotent,
                "*/*",
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A path for logs: a token route's token is cut off.
fn redact_token_path(path: &str) -> String {
    match path.strip_prefix("/repo_token/") {
        Some(_) => "/repo_token/<redacted>".to_string(),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_segment_by_segment() {
        let p = |s: &str| encode_repo_path(&RepoPath::parse(s).unwrap());
        assert_eq!(p("src/a b#.rs"), "src/a%20b%23.rs");
        assert_eq!(p("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(p("a/%2e%2e/b?x"), "a/%252e%252e/b%3Fx");
        assert_eq!(encode_segment("../admin"), "..%2Fadmin");
    }

    #[test]
    fn only_repo_token_shapes_reach_a_token_route() {
        let good = format!("rlcr-{}", "a1".repeat(20));
        assert_eq!(token_segment(&good).unwrap(), good);
        for bad in [
            "../admin/anything",
            "x/../../../../etc",
            "rlcr-..",
            "",
            "rlcr-zz",
        ] {
            assert!(
                matches!(token_segment(bad), Err(RelaceError::Refused(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let d0 = p.delay(0, None);
        assert!(d0 <= Duration::from_millis(500) && d0 >= Duration::from_millis(375));
        assert!(p.delay(10, None) <= Duration::from_secs(8));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
