//! What the embedded OAuth authorization server keeps in the store, so that every
//! process on the data directory agrees: registered clients, refresh tokens and their
//! families, and the one-time sign-in links of the consent page.
//!
//! Access tokens are the store's own repo tokens (minted with an audience), so a
//! grant is listed by `token list`, revoked by `token revoke` and checked by the one
//! front door like any other token. A refresh token belongs to a family (one grant's
//! chain of rotations); using one twice, or refreshing after its access token was
//! revoked, revokes the whole family.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::db::db_err;
use super::{Store, StoreError, TokenState};
use crate::credentials::secrets;
use crate::model::{MintSpec, MintedToken, RepoId, unix_now};

/// A client registered by Dynamic Client Registration (RFC 7591).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// Its id, handed to it at registration.
    pub client_id: String,
    /// The name it gave (shown on the consent page; nothing verifies it).
    pub name: String,
    /// Where codes may be sent.
    pub redirect_uris: Vec<String>,
}

/// What the person granted on the consent page; every token of the grant's family
/// carries exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthGrant {
    /// The client's name, which names its tokens in `token list`.
    pub client_name: String,
    /// The repos granted.
    pub repos: Vec<RepoId>,
    /// Read tools only.
    pub read_only: bool,
    /// Path globs; empty: every path.
    pub paths: Vec<String>,
    /// Each access token's lifetime.
    pub ttl_seconds: u64,
    /// The MCP endpoint the tokens are for.
    pub audience: String,
}

/// A grant as the store keeps it (repo ids as text).
#[derive(Serialize, Deserialize)]
struct GrantRow {
    client_name: String,
    repos: Vec<String>,
    read_only: bool,
    paths: Vec<String>,
    ttl_seconds: u64,
    audience: String,
}

impl OAuthGrant {
    fn to_json(&self) -> String {
        serde_json::to_string(&GrantRow {
            client_name: self.client_name.clone(),
            repos: self.repos.iter().map(ToString::to_string).collect(),
            read_only: self.read_only,
            paths: self.paths.clone(),
            ttl_seconds: self.ttl_seconds,
            audience: self.audience.clone(),
        })
        .expect("grant serializes")
    }

    fn from_json(json: &str) -> Option<Self> {
        let row: GrantRow = serde_json::from_str(json).ok()?;
        Some(Self {
            client_name: row.client_name,
            repos: row
                .repos
                .iter()
                .map(|r| r.parse())
                .collect::<Result<_, _>>()
                .ok()?,
            read_only: row.read_only,
            paths: row.paths,
            ttl_seconds: row.ttl_seconds,
            audience: row.audience,
        })
    }
}

/// The answer to a refresh.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// A new access token and the refresh token that replaces the one used.
    Rotated {
        /// The new access token.
        access: Box<MintedToken>,
        /// The new refresh token (shown once).
        refresh: String,
        /// The grant both carry.
        grant: OAuthGrant,
    },
    /// Refused, and why (in words for the client's `error_description`).
    Refused(&'static str),
}

/// Prefix of refresh tokens: not a repo token, so never taken as one.
const REFRESH_PREFIX: &str = "srmr-";
/// Prefix of client ids made by registration.
const CLIENT_PREFIX: &str = "srmc-";
/// Prefix of sign-in links' secrets.
const LOGIN_PREFIX: &str = "srml-";
/// How long a refresh token lasts when unused.
pub const REFRESH_LIFETIME_SECONDS: i64 = 30 * 24 * 3600;
/// Registered clients kept at most; registration is open to anyone who can reach the
/// server, so it is bounded.
pub const MAX_CLIENTS: i64 = 10_000;

impl Store {
    /// Register a client; refused past [`MAX_CLIENTS`].
    pub fn oauth_register_client(
        &self,
        name: &str,
        redirect_uris: &[String],
    ) -> Result<OAuthClient, StoreError> {
        let conn = self.db.conn();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM oauth_clients", [], |r| r.get(0))
            .map_err(db_err)?;
        if count >= MAX_CLIENTS {
            return Err(StoreError::Invalid(format!(
                "this server keeps at most {MAX_CLIENTS} registered clients"
            )));
        }
        let client = OAuthClient {
            client_id: secrets::mint(CLIENT_PREFIX),
            name: name.to_string(),
            redirect_uris: redirect_uris.to_vec(),
        };
        conn.execute(
            "INSERT INTO oauth_clients (client_id, name, redirect_uris, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                client.client_id,
                client.name,
                serde_json::to_string(&client.redirect_uris).expect("list serializes"),
                unix_now()
            ],
        )
        .map_err(db_err)?;
        Ok(client)
    }

    /// A registered client.
    pub fn oauth_client(&self, client_id: &str) -> Result<Option<OAuthClient>, StoreError> {
        self.db
            .conn()
            .query_row(
                "SELECT name, redirect_uris FROM oauth_clients WHERE client_id = ?1",
                params![client_id],
                |r| {
                    let uris: String = r.get(1)?;
                    Ok(OAuthClient {
                        client_id: client_id.to_string(),
                        name: r.get(0)?,
                        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }

    /// Mint the first access token of a new grant, and its refresh token.
    pub fn oauth_issue(
        &self,
        client_id: &str,
        grant: &OAuthGrant,
    ) -> Result<(MintedToken, String), StoreError> {
        let family = secrets::mint("family-");
        self.oauth_mint_in(&family, client_id, grant)
    }

    fn oauth_mint_in(
        &self,
        family: &str,
        client_id: &str,
        grant: &OAuthGrant,
    ) -> Result<(MintedToken, String), StoreError> {
        let access = self.mint_for(
            &MintSpec {
                name: grant.client_name.clone(),
                repo_ids: grant.repos.clone(),
                ttl_seconds: Some(grant.ttl_seconds),
                read_only: grant.read_only,
                paths: grant.paths.clone(),
                ..MintSpec::default()
            },
            Some(&grant.audience),
        )?;
        let refresh = secrets::mint(REFRESH_PREFIX);
        let now = unix_now();
        self.db
            .conn()
            .execute(
                "INSERT INTO oauth_refresh (hash, family, client_id, access_hash, grant_json, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    secrets::hash(&refresh),
                    family,
                    client_id,
                    secrets::hash(&access.token),
                    grant.to_json(),
                    now,
                    now + REFRESH_LIFETIME_SECONDS
                ],
            )
            .map_err(db_err)?;
        Ok((access, refresh))
    }

    /// Use a refresh token: rotate it (one new access token, one new refresh token),
    /// or refuse. A refresh token used a second time, or one whose latest access token
    /// was revoked, revokes its whole family.
    pub fn oauth_refresh(
        &self,
        refresh: &str,
        client_id: &str,
    ) -> Result<RefreshOutcome, StoreError> {
        let hash = secrets::hash(refresh);
        type Row = (String, String, String, String, i64, Option<i64>);
        let (row, claimed) = {
            let mut conn = self.db.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let row: Option<Row> = tx
                .query_row(
                    "SELECT family, client_id, access_hash, grant_json, expires_at, revoked_at FROM oauth_refresh WHERE hash = ?1",
                    params![hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()
                .map_err(db_err)?;
            // Claimed once, by whichever process gets here first.
            let claimed = tx
                .execute(
                    "UPDATE oauth_refresh SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL AND revoked_at IS NULL",
                    params![hash, unix_now()],
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            (row, claimed)
        };
        let Some((family, owner, access_hash, grant_json, expires_at, revoked_at)) = row else {
            return Ok(RefreshOutcome::Refused(
                "the refresh token is not known here",
            ));
        };
        if claimed == 0 {
            self.oauth_revoke_family(&family)?;
            return Ok(RefreshOutcome::Refused(if revoked_at.is_none() {
                "the refresh token was already used; its grant has been revoked"
            } else {
                "the refresh token has been revoked"
            }));
        }
        if owner != client_id {
            self.oauth_revoke_family(&family)?;
            return Ok(RefreshOutcome::Refused(
                "the refresh token was issued to another client; its grant has been revoked",
            ));
        }
        if expires_at <= unix_now() {
            return Ok(RefreshOutcome::Refused("the refresh token has expired"));
        }
        // `token revoke` of the grant's access token ends the grant.
        if self.db.token(&access_hash)?.0 == TokenState::Revoked {
            self.oauth_revoke_family(&family)?;
            return Ok(RefreshOutcome::Refused(
                "the grant's access token was revoked; sign in again",
            ));
        }
        let Some(grant) = OAuthGrant::from_json(&grant_json) else {
            return Ok(RefreshOutcome::Refused("the grant can no longer be read"));
        };
        let (access, refresh) = self.oauth_mint_in(&family, client_id, &grant)?;
        Ok(RefreshOutcome::Rotated {
            access: Box::new(access),
            refresh,
            grant,
        })
    }

    /// Revoke the grant a token belongs to (an access token of the grant, or one of
    /// its refresh tokens): every refresh token and access token of its family.
    /// `false` when the token belongs to no grant.
    pub fn oauth_revoke(&self, token: &str) -> Result<bool, StoreError> {
        let hash = secrets::hash(token);
        let family: Option<String> = self
            .db
            .conn()
            .query_row(
                "SELECT family FROM oauth_refresh WHERE hash = ?1 OR access_hash = ?1 LIMIT 1",
                params![hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        match family {
            Some(f) => {
                self.oauth_revoke_family(&f)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn oauth_revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let access: Vec<String> = {
            let conn = self.db.conn();
            conn.execute(
                "UPDATE oauth_refresh SET revoked_at = ?2 WHERE family = ?1 AND revoked_at IS NULL",
                params![family, unix_now()],
            )
            .map_err(db_err)?;
            let mut stmt = conn
                .prepare("SELECT access_hash FROM oauth_refresh WHERE family = ?1")
                .map_err(db_err)?;
            stmt.query_map(params![family], |r| r.get(0))
                .map_err(db_err)?
                .filter_map(Result::ok)
                .collect()
        };
        for a in access {
            self.db.revoke_token(&a)?;
        }
        Ok(())
    }

    /// Make a one-time sign-in link's secret, good for `ttl_seconds`.
    pub fn oauth_login_link(&self, ttl_seconds: i64) -> Result<String, StoreError> {
        let secret = secrets::mint(LOGIN_PREFIX);
        let now = unix_now();
        self.db
            .conn()
            .execute(
                "INSERT INTO oauth_logins (hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
                params![secrets::hash(&secret), now, now + ttl_seconds],
            )
            .map_err(db_err)?;
        Ok(secret)
    }

    /// Spend a sign-in link's secret: `true` exactly once, while it is good.
    pub fn oauth_use_login(&self, secret: &str) -> Result<bool, StoreError> {
        let now = unix_now();
        let n = self
            .db
            .conn()
            .execute(
                "UPDATE oauth_logins SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![secrets::hash(secret), now],
            )
            .map_err(db_err)?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_repo() -> (tempfile::TempDir, Store, RepoId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let path = crate::paths::RepoPath::parse("a.txt").unwrap();
        let (row, _) = store
            .create_repo(Default::default(), &[(path, "a\n".into())])
            .unwrap();
        (dir, store, row.id)
    }

    fn grant(repo: RepoId) -> OAuthGrant {
        OAuthGrant {
            client_name: "Some Client".into(),
            repos: vec![repo],
            read_only: true,
            paths: vec![],
            ttl_seconds: 3600,
            audience: "http://127.0.0.1:1/mcp".into(),
        }
    }

    #[test]
    fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
        let (_d, store, repo) = store_with_repo();
        let client = store
            .oauth_register_client("c", &["http://127.0.0.1/cb".into()])
            .unwrap();
        let (first, r1) = store.oauth_issue(&client.client_id, &grant(repo)).unwrap();
        assert_eq!(
            first.info.audience.as_deref(),
            Some("http://127.0.0.1:1/mcp")
        );
        let RefreshOutcome::Rotated {
            access: second,
            refresh: r2,
            ..
        } = store.oauth_refresh(&r1, &client.client_id).unwrap()
        else {
            panic!("the first use rotates")
        };
        assert_eq!(store.token(&second.token).unwrap().0, TokenState::Live);
        // r1 again: a replay. The family goes, r2 and the access tokens with it.
        assert!(matches!(
            store.oauth_refresh(&r1, &client.client_id).unwrap(),
            RefreshOutcome::Refused(_)
        ));
        assert_eq!(store.token(&second.token).unwrap().0, TokenState::Revoked);
        assert_eq!(store.token(&first.token).unwrap().0, TokenState::Revoked);
        assert!(matches!(
            store.oauth_refresh(&r2, &client.client_id).unwrap(),
            RefreshOutcome::Refused(_)
        ));
    }

    #[test]
    fn revoking_the_access_token_ends_the_grant_and_login_links_work_once() {
        let (_d, store, repo) = store_with_repo();
        let (access, refresh) = store.oauth_issue("c", &grant(repo)).unwrap();
        store.revoke_token(&access.token).unwrap();
        assert!(matches!(
            store.oauth_refresh(&refresh, "c").unwrap(),
            RefreshOutcome::Refused(_)
        ));
        let (_, other) = store.oauth_issue("c", &grant(repo)).unwrap();
        assert!(matches!(
            store.oauth_refresh(&other, "someone-else").unwrap(),
            RefreshOutcome::Refused(_)
        ));
        let link = store.oauth_login_link(60).unwrap();
        assert!(store.oauth_use_login(&link).unwrap());
        assert!(!store.oauth_use_login(&link).unwrap());
        assert!(!store.oauth_use_login("srml-nope").unwrap());
    }
}
