//! The front door: every credential, on every surface, becomes a [`Scope`] or a
//! [`Refusal`] here and nowhere else.
//!
//! A credential is classified by its shape ([`Presented`]); its status (unknown,
//! revoked, expired, or live with its grant) is asked of an [`Authority`] (the embedded
//! store, or the Relace API); the operator's [`OperatorBound`] (`--repo`, `--read-only`,
//! `--allow-anonymous`) narrows the result. stdio start-up, the per-call re-check, the
//! HTTP guard, the REST API and git's smart HTTP all call [`admit`] or [`recheck`]; every
//! refusal's words come from [`Refusal`]'s `Display` (or [`Refusal::to_git`] for git).

use std::fmt;

use axum::http::StatusCode;

use crate::backend::{Backend, BackendFuture, LocalBackend, TokenStatus};
use crate::credentials::secrets;
use crate::model::RepoId;
use crate::scope::{Credential, Scope};

/// The surface a credential (or a call) arrives on. It decides what no credential at
/// all means: the operator's own settings under stdio, an anonymous caller elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `serve` over stdio: the credential, if any, is the operator's `RELACE_API_KEY`.
    Stdio,
    /// `serve --transport http`: each request's bearer.
    Http,
    /// `api`, the REST API: each request's bearer.
    Api,
    /// `api`, git's smart HTTP at `/v1/repo/{id}.git`: each request's Basic password
    /// (or bearer). It reaches what the same credential reaches on the REST API.
    Git,
    /// An administration command (`token create`, `repo create`, …): the operator at a
    /// shell on the data directory. No credential is presented; it is only recorded.
    Cli,
}

impl Surface {
    /// The surface as the audit trail spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Stdio => "stdio",
            Surface::Http => "http",
            Surface::Api => "api",
            Surface::Git => "git",
            Surface::Cli => "cli",
        }
    }
}

/// A credential as presented, classified by its shape alone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No credential.
    Nothing,
    /// A repo token (`rlcr-` and 40 hex digits).
    RepoToken(&'a str),
    /// An account key (`rlc-…`).
    AccountKey(&'a str),
    /// Something else.
    Unrecognized,
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret, not even in debug output.
        f.write_str(match self {
            Presented::Nothing => "Nothing",
            Presented::RepoToken(_) => "RepoToken(<redacted>)",
            Presented::AccountKey(_) => "AccountKey(<redacted>)",
            Presented::Unrecognized => "Unrecognized",
        })
    }
}

impl<'a> Presented<'a> {
    /// Classify a credential by its shape.
    pub fn classify(credential: Option<&'a str>) -> Self {
        match credential.map(str::trim) {
            None | Some("") => Presented::Nothing,
            Some(c) if secrets::looks_like_repo_token(c) => Presented::RepoToken(c),
            Some(c) if c.starts_with(secrets::ACCOUNT_KEY_PREFIX) => Presented::AccountKey(c),
            Some(_) => Presented::Unrecognized,
        }
    }
}

/// The credential carried by an `Authorization` header, if any: `Bearer <credential>`,
/// the scheme in any case. One parser for every surface.
pub fn bearer(header: Option<&[u8]>) -> Result<Option<&str>, Refusal> {
    let Some(raw) = header else { return Ok(None) };
    let value = std::str::from_utf8(raw).map_err(|_| Refusal::Malformed)?;
    let (scheme, credential) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(Some(credential))
}

/// The credential carried by an `Authorization` header as git sends it: HTTP Basic with
/// any user name and the credential as the password (what git's credential helpers and
/// a `https://token:<credential>@host/…` URL produce), or `Bearer <credential>` (what
/// `http.extraHeader` and the REST clients send). Schemes in any case.
pub fn basic_or_bearer(header: Option<&[u8]>) -> Result<Option<String>, Refusal> {
    use base64::Engine as _;
    let Some(raw) = header else { return Ok(None) };
    let value = std::str::from_utf8(raw).map_err(|_| Refusal::Malformed)?;
    let (scheme, _) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return bearer(Some(raw)).map(|c| c.map(str::to_string));
    }
    let encoded = value.trim()[scheme.len()..].trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Refusal::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
    // `user:password`; the user name is not looked at (the SDKs send `token`).
    let (_, password) = decoded.split_once(':').ok_or(Refusal::Malformed)?;
    let password = password.trim();
    Ok((!password.is_empty()).then(|| password.to_string()))
}

/// The operator's upper bound on every scope.
#[derive(Debug, Clone, Default)]
pub struct OperatorBound {
    /// Repos served; empty: whatever the credential reaches.
    pub repos: Vec<RepoId>,
    /// Only read rights, whatever the credential grants.
    pub read_only: bool,
    /// Let callers without a credential use exactly `repos` (HTTP only).
    pub allow_anonymous: bool,
    /// This server as an OAuth protected resource (its MCP endpoint's URL), on
    /// `serve --transport http`: a token issued by OAuth for another resource is
    /// refused. `None` elsewhere, where every OAuth-issued token is refused.
    pub resource: Option<String>,
}

/// Why a credential was refused. Every surface words its refusals through this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, where one is needed.
    Missing,
    /// The `Authorization` header is not `Bearer <credential>`.
    Malformed,
    /// Neither a repo token nor an account key.
    Unrecognized,
    /// This kind of credential is not taken on this surface and backend.
    NotTakenHere(&'static str),
    /// Not a credential the authority knows.
    Unknown,
    /// Revoked.
    Revoked,
    /// Expired.
    Expired,
    /// Good, but reaches none of the repos served here.
    NoRepos,
    /// The authority could not be asked; trying again may work.
    Unavailable,
    /// A token issued by OAuth for another resource (another server's MCP endpoint,
    /// or MCP where this is the REST API or git).
    OtherAudience,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str(
                "this server needs a credential: send `Authorization: Bearer <repo token or account key>`",
            ),
            Refusal::Malformed => {
                f.write_str("the Authorization header must be `Bearer <credential>`")
            }
            Refusal::Unrecognized => f.write_str(
                "the credential is neither a repo token (rlcr-…) nor an account key (rlc-…)",
            ),
            Refusal::NotTakenHere(why) => f.write_str(why),
            Refusal::Unknown => f.write_str("the credential is not known here"),
            Refusal::Revoked => f.write_str("the repo token has been revoked"),
            Refusal::Expired => f.write_str("the repo token has expired"),
            Refusal::NoRepos => f.write_str("the credential reaches none of the repos served here"),
            Refusal::Unavailable => {
                f.write_str("the credential could not be checked just now; try again")
            }
            Refusal::OtherAudience => f.write_str(
                "the token was issued for another resource; sign in to this server to get one for it",
            ),
        }
    }
}

impl Refusal {
    /// The HTTP status of this refusal, the same on every HTTP surface: 403 for a good
    /// credential that reaches none of the repos served, 503 when the authority could
    /// not be asked (trying again may work), 401 for every other.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Refusal::NoRepos => StatusCode::FORBIDDEN,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The refusal in git's terms: git prints it as `remote: …` lines, and someone at a
    /// shell reads it, so it says how to give git a credential.
    pub fn to_git(&self) -> String {
        match self {
            Refusal::Missing => "git needs a credential here: give a repo token or account key as the password, e.g. https://token:<TOKEN>@<host>/v1/repo/<repo id>.git".into(),
            Refusal::Malformed => "the Authorization header must be `Basic` (any user name, the repo token or account key as the password) or `Bearer <credential>`".into(),
            other => other.to_string(),
        }
    }
}

impl std::error::Error for Refusal {}

/// Where credentials are checked: the embedded store, or the Relace API.
pub trait Authority: Send + Sync {
    /// A repo token's status.
    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus>;

    /// The short id and name of `key` when it is a live account key here (an empty id
    /// when the authority cannot name keys), `None` otherwise.
    fn account_key<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Option<(String, String)>>;

    /// Every repo an account key reaches (asked only when a scope must list them).
    fn all_repos(&self) -> BackendFuture<'_, Vec<RepoId>>;
}

impl Authority for LocalBackend {
    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus> {
        Backend::token_status(self, token)
    }

    fn account_key<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Option<(String, String)>> {
        let key = key.to_string();
        self.blocking(move |s| s.live_account_key(&key))
    }

    fn all_repos(&self) -> BackendFuture<'_, Vec<RepoId>> {
        self.blocking(|s| Ok(s.repo_rows()?.into_iter().map(|r| r.id).collect()))
    }
}

/// An authority that only checks repo tokens, through a backend (the Relace API, where
/// an account key cannot be checked by its holder).
pub struct TokensOnly<'b>(pub &'b dyn Backend);

impl Authority for TokensOnly<'_> {
    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus> {
        self.0.token_status(token)
    }

    fn account_key<'a>(&'a self, _key: &'a str) -> BackendFuture<'a, Option<(String, String)>> {
        Box::pin(async { Ok(None) })
    }

    fn all_repos(&self) -> BackendFuture<'_, Vec<RepoId>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The one rule: the scope of `credential` presented on `surface`, within `bound`.
pub async fn admit(
    authority: &dyn Authority,
    bound: &OperatorBound,
    surface: Surface,
    credential: Option<&str>,
) -> Result<Scope, Refusal> {
    let scope = match Presented::classify(credential) {
        Presented::Nothing => match surface {
            Surface::Stdio => Scope::operator(bound.repos.iter().copied()),
            _ if bound.allow_anonymous => Scope::anonymous(bound.repos.iter().copied()),
            _ => return Err(Refusal::Missing),
        },
        Presented::Unrecognized => return Err(Refusal::Unrecognized),
        Presented::RepoToken(token) => match authority.token_status(token).await {
            Ok(TokenStatus::Live(info)) => {
                if info
                    .audience
                    .as_deref()
                    .is_some_and(|a| bound.resource.as_deref() != Some(a))
                {
                    return Err(Refusal::OtherAudience);
                }
                Scope::from_token(token.to_string(), &info, &bound.repos)
            }
            Ok(TokenStatus::Revoked) => return Err(Refusal::Revoked),
            Ok(TokenStatus::Expired) => return Err(Refusal::Expired),
            Ok(TokenStatus::Unknown) => return Err(Refusal::Unknown),
            Err(e) => {
                tracing::warn!(cause = %e, "a repo token could not be checked");
                return Err(Refusal::Unavailable);
            }
        },
        Presented::AccountKey(key) => match authority.account_key(key).await {
            // Under stdio the key is the operator's own: the scope is what the operator
            // names, as with no credential.
            Ok(Some((id, name))) => {
                let scope = if surface == Surface::Stdio {
                    Scope::operator(bound.repos.iter().copied())
                } else if !bound.repos.is_empty() {
                    Scope::account(bound.repos.iter().copied())
                } else if matches!(surface, Surface::Api | Surface::Git) {
                    // Every repo, including ones created after this request began and
                    // ones that do not exist (which then answer 404, not 403).
                    Scope::every_repo()
                } else {
                    match authority.all_repos().await {
                        Ok(repos) => Scope::account(repos),
                        Err(e) => {
                            tracing::warn!(cause = %e, "the repos of an account key could not be listed");
                            return Err(Refusal::Unavailable);
                        }
                    }
                };
                // Named for the audit trail, by its name and short id, never the key.
                if id.is_empty() {
                    scope
                } else {
                    scope.by_account_key(&name, &id)
                }
            }
            Ok(None) => return Err(Refusal::Unknown),
            Err(e) => {
                tracing::warn!(cause = %e, "an account key could not be checked");
                return Err(Refusal::Unavailable);
            }
        },
    };
    // An anonymous or operator scope over no repos is the operator's setting to fix,
    // reported by the caller; a credential reaching none of the repos is refused here.
    if scope.is_empty()
        && !matches!(
            scope.credential(),
            Credential::Operator | Credential::AccountKey
        )
    {
        return Err(Refusal::NoRepos);
    }
    Ok(if bound.read_only {
        scope.read_only()
    } else {
        scope
    })
}

/// The check every call repeats: a scope from a repo token stands only while the token
/// is live, so a revocation or an expiry stops the very next call.
pub async fn recheck(authority: &dyn Authority, scope: &Scope) -> Result<(), Refusal> {
    if scope
        .expires_at()
        .is_some_and(|e| e <= crate::model::unix_now())
    {
        return Err(Refusal::Expired);
    }
    let Credential::RepoToken(token) = scope.credential() else {
        return Ok(());
    };
    match authority.token_status(token).await {
        Ok(TokenStatus::Live(_)) => Ok(()),
        Ok(TokenStatus::Revoked) => Err(Refusal::Revoked),
        Ok(TokenStatus::Expired) => Err(Refusal::Expired),
        Ok(TokenStatus::Unknown) => Err(Refusal::Unknown),
        Err(e) => {
            tracing::warn!(cause = %e, "a repo token could not be re-checked");
            Err(Refusal::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_classified_by_shape() {
        let token = format!("rlcr-{}", "ab".repeat(20));
        assert_eq!(Presented::classify(None), Presented::Nothing);
        assert_eq!(Presented::classify(Some("  ")), Presented::Nothing);
        assert_eq!(
            Presented::classify(Some(&token)),
            Presented::RepoToken(&token)
        );
        assert_eq!(
            Presented::classify(Some("rlc-abc")),
            Presented::AccountKey("rlc-abc")
        );
        assert_eq!(
            Presented::classify(Some("rlcr-short")),
            Presented::Unrecognized
        );
        assert!(!format!("{:?}", Presented::classify(Some(&token))).contains(&token));
    }

    #[test]
    fn one_bearer_parser_for_every_surface() {
        assert_eq!(bearer(None), Ok(None));
        assert_eq!(bearer(Some(b"Bearer abc")), Ok(Some("abc")));
        assert_eq!(bearer(Some(b"bearer abc")), Ok(Some("abc")));
        assert_eq!(bearer(Some(b"BEARER  abc ")), Ok(Some("abc")));
        assert_eq!(bearer(Some(b"Basic abc")), Err(Refusal::Malformed));
        assert_eq!(bearer(Some(b"Bearer")), Err(Refusal::Malformed));
        assert_eq!(bearer(Some(b"Bearer \xff")), Err(Refusal::Malformed));
    }

    #[test]
    fn git_takes_basic_with_any_user_or_bearer() {
        use base64::Engine as _;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let ok = |h: &str| basic_or_bearer(Some(h.as_bytes()));
        assert_eq!(basic_or_bearer(None), Ok(None));
        assert_eq!(ok(&basic("token:rlcr-abc")), Ok(Some("rlcr-abc".into())));
        assert_eq!(
            ok(&basic("anyone:rlc-k:with:colons")),
            Ok(Some("rlc-k:with:colons".into()))
        );
        assert_eq!(ok(&basic(":rlc-k")), Ok(Some("rlc-k".into())));
        assert_eq!(ok(&basic("token:")), Ok(None));
        assert_eq!(
            ok(&format!("basic  {}", &basic("u:p")[6..])),
            Ok(Some("p".into()))
        );
        assert_eq!(ok("Bearer rlc-k"), Ok(Some("rlc-k".into())));
        assert_eq!(ok(&basic("no-colon")), Err(Refusal::Malformed));
        assert_eq!(ok("Basic !!!"), Err(Refusal::Malformed));
        assert_eq!(ok("Digest x"), Err(Refusal::Malformed));
    }
}
