//! The store's SQLite database: repo metadata, hashed repo tokens, hashed account keys,
//! and the audit trail.
//!
//! One connection behind a std `Mutex`: every statement is short, and the WAL journal
//! with a busy timeout lets several processes share one data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::model::{RepoId, TokenInfo, unix_now};

/// A repo's row.
#[derive(Debug, Clone)]
pub struct RepoRow {
    /// The repo.
    pub id: RepoId,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// Key/value metadata.
    pub metadata: BTreeMap<String, String>,
    /// Whether ranked retrieval indexing is on.
    pub auto_index: bool,
}

/// A token's row, as `token list` shows it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// The first 12 hex digits of the token's hash: a handle that reveals nothing.
    pub id: String,
    /// Name, repos, expiry.
    pub info: TokenInfo,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// The hash of the token it was minted from, if a token minted it.
    pub parent: Option<String>,
}

/// An account key's row, as `key list` shows it.
#[derive(Debug, Clone)]
pub struct AccountKeyRow {
    /// The first 12 hex digits of the key's hash: a handle that reveals nothing.
    pub id: String,
    /// The key's name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

/// Which rows a token lookup should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Unknown hash.
    Unknown,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Usable.
    Live,
}

pub(crate) struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS repos (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    auto_index INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    repo_ids TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS imports (
    repo_id TEXT PRIMARY KEY,
    dir TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS imports_by_dir ON imports (dir);
CREATE TABLE IF NOT EXISTS skipped (
    repo_id TEXT NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (repo_id, path)
);
CREATE TABLE IF NOT EXISTS account_keys (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    surface TEXT NOT NULL,
    credential TEXT NOT NULL,
    credential_id TEXT,
    action TEXT NOT NULL,
    repo TEXT,
    paths INTEGER,
    outcome TEXT NOT NULL,
    reason TEXT,
    duration_us INTEGER NOT NULL,
    head_before TEXT,
    head_after TEXT,
    subject TEXT,
    subject_id TEXT,
    refs TEXT,
    changed_paths TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_ms);
CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_refresh (
    hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    access_hash TEXT NOT NULL,
    grant_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS oauth_refresh_by_family ON oauth_refresh (family);
CREATE INDEX IF NOT EXISTS oauth_refresh_by_access ON oauth_refresh (access_hash);
CREATE TABLE IF NOT EXISTS oauth_logins (
    hash TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
";

/// One record of the audit trail. It names who did what, where and with what outcome;
/// it never holds a secret, a file's content or a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRow {
    /// When the call started, Unix milliseconds.
    pub at_ms: i64,
    /// The process that wrote the record.
    pub pid: i64,
    /// Where the call came in: `stdio`, `http`, `api`, `cli` (more may come).
    pub surface: String,
    /// Who called: `token NAME`, `account key NAME`, `operator`, `anonymous`.
    pub credential: String,
    /// The short id of the token or key that called (as `token list` shows it).
    pub credential_id: Option<String>,
    /// The tool, the REST route template (`POST /v1/repo/{id}/update`) or the command.
    pub action: String,
    /// The repo, or the repos comma separated, when the call names any.
    pub repo: Option<String>,
    /// For updates: the number of paths touched.
    pub paths: Option<i64>,
    /// `ok`, `refused` or `error`.
    pub outcome: String,
    /// Why a call was refused or failed.
    pub reason: Option<String>,
    /// How long the call took, in microseconds.
    pub duration_us: i64,
    /// For writes: the head the change was applied on, when known.
    pub head_before: Option<String>,
    /// For writes: the head afterwards.
    pub head_after: Option<String>,
    /// For mints and revocations: the token's name.
    pub subject: Option<String>,
    /// For mints and revocations: the token's short id.
    pub subject_id: Option<String>,
    /// For pushes: the refs the push named, comma separated.
    pub refs: Option<String>,
    /// For writes: the first paths changed, by name (the `paths` column counts them
    /// all); empty when none are known.
    pub changed_paths: Vec<String>,
}

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only calls by, mints of or revocations of the token with this name or short id.
    pub token: Option<String>,
    /// Only calls on this repo.
    pub repo: Option<String>,
    /// Only records from this time on, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// At most this many records, the most recent ones.
    pub limit: usize,
}

const AUDIT_COLUMNS: &str = "at_ms, pid, surface, credential, credential_id, action, repo, paths, outcome, reason, duration_us, head_before, head_after, subject, subject_id, refs, changed_paths";

/// Audit columns added after the first release, added to an older database by every
/// connection that opens it (SQLite's `ADD COLUMN` keeps every row).
const ADDED_AUDIT_COLUMNS: &[(&str, &str)] = &[("refs", "TEXT"), ("changed_paths", "TEXT")];

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        at_ms: r.get(0)?,
        pid: r.get(1)?,
        surface: r.get(2)?,
        credential: r.get(3)?,
        credential_id: r.get(4)?,
        action: r.get(5)?,
        repo: r.get(6)?,
        paths: r.get(7)?,
        outcome: r.get(8)?,
        reason: r.get(9)?,
        duration_us: r.get(10)?,
        head_before: r.get(11)?,
        head_after: r.get(12)?,
        subject: r.get(13)?,
        subject_id: r.get(14)?,
        refs: r.get(15)?,
        // A JSON array of paths; a value that does not parse (never written so) reads
        // as none.
        changed_paths: r
            .get::<_, Option<String>>(16)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
    })
}

/// Append `rows` to the audit trail in one transaction.
pub(crate) fn insert_audit(conn: &mut Connection, rows: &[AuditRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ))?;
        for a in rows {
            stmt.execute(params![
                a.at_ms,
                a.pid,
                a.surface,
                a.credential,
                a.credential_id,
                a.action,
                a.repo,
                a.paths,
                a.outcome,
                a.reason,
                a.duration_us,
                a.head_before,
                a.head_after,
                a.subject,
                a.subject_id,
                a.refs,
                (!a.changed_paths.is_empty())
                    .then(|| serde_json::to_string(&a.changed_paths).expect("strings serialize"))
            ])?;
        }
    }
    tx.commit()
}

/// Delete audit records older than `before_ms`; how many went.
pub(crate) fn prune_audit(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM audit WHERE at_ms < ?1", params![before_ms])
}

/// A connection of its own for the audit trail's writer, so that its batches never
/// wait on the store's connection (nor the store's calls on them).
pub(crate) fn open_audit_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_private(path)?;
    // Short: the writer runs off every call's path, and a batch it cannot write within
    // this time is counted as dropped rather than held up further. NORMAL: in WAL mode
    // a committed record survives the process being killed (the operating system holds
    // it); only an operating-system crash or power loss may take the last ones. The
    // writes they record are FULL on the store's connection, and a second fsync a
    // write for its record would double what durability costs.
    configure_connection(&conn, std::time::Duration::from_secs(2), "NORMAL")?;
    Ok(conn)
}

/// The settings every connection to the database takes: how long to wait for another
/// process's lock, WAL, `synchronous`, a small page cache, and the schema.
fn configure_connection(
    conn: &Connection,
    busy: std::time::Duration,
    synchronous: &str,
) -> Result<(), StoreError> {
    conn.busy_timeout(busy).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(db_err)?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
        .map_err(db_err)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    add_columns(conn, "audit", ADDED_AUDIT_COLUMNS)
}

/// Add each of `columns` that `table` lacks (a database made by an older release).
fn add_columns(conn: &Connection, table: &str, columns: &[(&str, &str)]) -> Result<(), StoreError> {
    let have: Vec<String> = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(db_err)?;
    for (column, decl) in columns {
        if !have.iter().any(|h| h == column) {
            // Another process may add it at the same moment; a duplicate is fine.
            if let Err(e) =
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                && !e.to_string().contains("duplicate column")
            {
                return Err(db_err(e));
            }
        }
    }
    Ok(())
}

/// Each connection's page cache, in KiB (SQLite's default is 2,000, on the heap). The
/// audit trail grows by a row a call, so each connection's cache fills with pages it
/// wrote or read and never gives them back: up to 4 MB a process with two connections.
/// A call touches a few pages (a token by its hash, a repo, the audit table's last page
/// and its index's), and the file stays in the kernel's page cache, so a small cache
/// costs little.
const PAGE_CACHE_KIB: i64 = 256;

/// Open a connection to the database at `path` and make the file and its journal files
/// readable by their owner only (mode 0600): they hold the hash of every token and key.
///
/// Only SQLite ever opens these files in a process that may hold a connection. SQLite's
/// locks on Unix are POSIX advisory locks, which belong to the process: closing *any*
/// descriptor of the file drops them all. A descriptor opened here for a permission fix
/// and closed again once made another process's closing connection believe it was the
/// last, and delete the WAL under every live server ("How To Corrupt An SQLite Database
/// File", section 2.2). So modes are set by path (`chmod`, no descriptor): SQLite creates
/// the file, and creates `-wal` and `-shm` later with the mode the file has by then.
/// The data directory is 0700 from the start, so the moment between the two is not
/// visible to other users.
fn open_private(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = || std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(path, private())?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::set_permissions(std::path::PathBuf::from(side), private()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(conn)
}

pub(super) fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string()).or_no_space()
}

fn parse_ids(json: &str) -> Vec<RepoId> {
    serde_json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_private(path)?;
        Self::configure(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Columns added after the first release, added to an older database when it is
    /// opened (SQLite's `ADD COLUMN` keeps every row).
    const ADDED_TOKEN_COLUMNS: &[(&str, &str)] = &[
        ("read_only", "INTEGER NOT NULL DEFAULT 0"),
        ("paths", "TEXT NOT NULL DEFAULT '[]'"),
        ("can_delegate", "INTEGER NOT NULL DEFAULT 0"),
        ("parent", "TEXT"),
        // A rate as `Rate` prints it (`120/m,burst=20`); NULL: none of its own.
        ("rate", "TEXT"),
        // The resource (an MCP endpoint's URL) an OAuth grant was issued for; NULL:
        // any surface, as for every token minted otherwise.
        ("audience", "TEXT"),
    ];

    fn configure(conn: &Connection) -> Result<(), StoreError> {
        // FULL, not NORMAL: in WAL mode NORMAL syncs only at checkpoints, so an
        // operating-system crash or power loss could undo an answered mint, revocation
        // or key change. The cost is one fsync a write transaction (BENCHMARKS.md).
        configure_connection(conn, std::time::Duration::from_secs(10), "FULL")?;
        add_columns(conn, "tokens", Self::ADDED_TOKEN_COLUMNS)?;
        conn.execute_batch("CREATE INDEX IF NOT EXISTS tokens_by_parent ON tokens (parent)")
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-written state in SQLite (each
        // statement is its own transaction), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert_repo(&self, row: &RepoRow) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&row.metadata).expect("map serializes");
        self.conn()
            .execute(
                "INSERT INTO repos (id, created_at, updated_at, metadata, auto_index) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.id.to_string(), row.created_at, row.updated_at, metadata, row.auto_index],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Record the files an import of `id` left out, with why, in one transaction.
    pub(crate) fn record_skipped(
        &self,
        id: &RepoId,
        skipped: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO skipped (repo_id, path, reason) VALUES (?1, ?2, ?3)",
                )
                .map_err(db_err)?;
            for (path, reason) in skipped {
                stmt.execute(params![id.to_string(), path, reason])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Why an import of `id` left `path` out, when it did.
    pub(crate) fn skipped_reason(
        &self,
        id: &RepoId,
        path: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT reason FROM skipped WHERE repo_id = ?1 AND path = ?2",
                params![id.to_string(), path],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
    }

    /// The files an import of `id` left out, with why, by path.
    pub(crate) fn skipped(&self, id: &RepoId) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path, reason FROM skipped WHERE repo_id = ?1 ORDER BY path")
            .map_err(db_err)?;
        let rows: Vec<(String, String)> = stmt
            .query_map(params![id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    pub(crate) fn delete_repo(&self, id: &RepoId) -> Result<bool, StoreError> {
        let conn = self.conn();
        for table in ["imports", "skipped"] {
            conn.execute(
                &format!("DELETE FROM {table} WHERE repo_id = ?1"),
                params![id.to_string()],
            )
            .map_err(db_err)?;
        }
        let n = conn
            .execute("DELETE FROM repos WHERE id = ?1", params![id.to_string()])
            .map_err(db_err)?;
        Ok(n > 0)
    }

    /// Record that `id` is the repo `serve --import dir` serves. Only the operator's own
    /// commands write this table; no API route or tool reaches it.
    pub(crate) fn link_import(&self, id: &RepoId, dir: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO imports (repo_id, dir, created_at) VALUES (?1, ?2, ?3)",
                params![id.to_string(), dir, unix_now()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Forget the directory linked to `id`; false when there was none.
    pub(crate) fn unlink_import(&self, id: &RepoId) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM imports WHERE repo_id = ?1",
                params![id.to_string()],
            )
            .map_err(db_err)?;
        Ok(n > 0)
    }

    /// The repos linked to `dir`, oldest link first.
    pub(crate) fn imports_of(&self, dir: &str) -> Result<Vec<RepoId>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT repo_id FROM imports WHERE dir = ?1 ORDER BY created_at, repo_id")
            .map_err(db_err)?;
        let ids = stmt
            .query_map(params![dir], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .filter_map(|r| r.ok()?.parse().ok())
            .collect();
        Ok(ids)
    }

    /// The directory linked to `id`, if any.
    pub(crate) fn import_dir_of(&self, id: &RepoId) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT dir FROM imports WHERE repo_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
    }

    pub(crate) fn touch_repo(&self, id: &RepoId) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE repos SET updated_at = ?2 WHERE id = ?1",
                params![id.to_string(), unix_now()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) fn set_metadata(
        &self,
        id: &RepoId,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(metadata).expect("map serializes");
        self.conn()
            .execute(
                "UPDATE repos SET metadata = ?2 WHERE id = ?1",
                params![id.to_string(), metadata],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn repo_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<RepoRow>> {
        let id: String = r.get(0)?;
        let metadata: String = r.get(3)?;
        let Ok(id) = id.parse() else { return Ok(None) };
        Ok(Some(RepoRow {
            id,
            created_at: r.get(1)?,
            updated_at: r.get(2)?,
            metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            auto_index: r.get(4)?,
        }))
    }

    pub(crate) fn repo(&self, id: &RepoId) -> Result<Option<RepoRow>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id, created_at, updated_at, metadata, auto_index FROM repos WHERE id = ?1",
                params![id.to_string()],
                Self::repo_from_row,
            )
            .optional()
            .map_err(db_err)
            .map(Option::flatten)
    }

    pub(crate) fn repos(&self) -> Result<Vec<RepoRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, created_at, updated_at, metadata, auto_index FROM repos ORDER BY created_at, id")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], Self::repo_from_row)
            .map_err(db_err)?
            .filter_map(|r| r.ok().flatten())
            .collect();
        Ok(rows)
    }

    pub(crate) fn insert_token(
        &self,
        hash: &str,
        info: &TokenInfo,
        parent: Option<&str>,
        created_at: i64,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = info.repo_ids.iter().map(ToString::to_string).collect();
        self.conn()
            .execute(
                "INSERT INTO tokens (hash, name, repo_ids, created_at, expires_at, read_only, paths, can_delegate, parent, rate, audience) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    hash,
                    info.name,
                    serde_json::to_string(&ids).expect("list serializes"),
                    created_at,
                    info.expires_at,
                    info.read_only,
                    serde_json::to_string(&info.paths).expect("list serializes"),
                    info.can_delegate,
                    parent,
                    info.rate.map(|r| r.to_string()),
                    info.audience
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
        let hash: String = r.get(0)?;
        let ids: String = r.get(2)?;
        let paths: String = r.get(7)?;
        let rate: Option<String> = r.get(10)?;
        Ok(TokenRow {
            id: hash[..12.min(hash.len())].to_string(),
            info: TokenInfo {
                name: r.get(1)?,
                repo_ids: parse_ids(&ids),
                expires_at: r.get(4)?,
                read_only: r.get(6)?,
                // A row that cannot be read as a list of globs sees nothing rather than
                // everything.
                paths: serde_json::from_str(&paths).unwrap_or_else(|_| vec![String::new()]),
                can_delegate: r.get(8)?,
                // A stored rate that no longer reads (written by a later version) allows
                // the least: one call an hour.
                rate: rate.map(|r| {
                    r.parse()
                        .unwrap_or_else(|_| crate::rules::Rate::new(1, 3600, 1).expect("valid"))
                }),
                lineage: Vec::new(),
                audience: r.get(11)?,
            },
            created_at: r.get(3)?,
            revoked_at: r.get(5)?,
            parent: r.get(9)?,
        })
    }

    /// The hashes of the tokens `hash` was minted from, nearest first.
    pub(crate) fn lineage(&self, hash: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "WITH RECURSIVE up(hash, depth) AS ( \
                   SELECT parent, 1 FROM tokens WHERE hash = ?1 AND parent IS NOT NULL \
                   UNION ALL \
                   SELECT t.parent, up.depth + 1 FROM tokens t JOIN up ON t.hash = up.hash \
                   WHERE t.parent IS NOT NULL AND up.depth < 64) \
                 SELECT hash FROM up ORDER BY depth",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![hash], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .filter_map(Result::ok)
            .collect();
        Ok(rows)
    }

    /// The token stored under `hash`, and whether it may be used now.
    pub(crate) fn token(&self, hash: &str) -> Result<(TokenState, Option<TokenRow>), StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT hash, name, repo_ids, created_at, expires_at, revoked_at, read_only, paths, can_delegate, parent, rate, audience FROM tokens WHERE hash = ?1",
                params![hash],
                Self::token_from_row,
            )
            .optional()
            .map_err(db_err)?;
        let state = match &row {
            None => TokenState::Unknown,
            Some(t) if t.revoked_at.is_some() => TokenState::Revoked,
            Some(t) if t.info.expires_at.is_some_and(|e| e <= unix_now()) => TokenState::Expired,
            Some(_) => TokenState::Live,
        };
        Ok((state, row))
    }

    pub(crate) fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT hash, name, repo_ids, created_at, expires_at, revoked_at, read_only, paths, can_delegate, parent, rate, audience FROM tokens ORDER BY created_at, hash")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], Self::token_from_row)
            .map_err(db_err)?
            .filter_map(Result::ok)
            .collect();
        Ok(rows)
    }

    /// Hashes of tokens whose short id starts with `prefix`.
    pub(crate) fn token_hashes_by_id(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.hashes_by_id("tokens", prefix)
    }

    /// Hashes in `table` (`tokens` or `account_keys`, never caller input) whose short
    /// id starts with `prefix`.
    fn hashes_by_id(&self, table: &'static str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT hash FROM {table} WHERE substr(hash, 1, length(?1)) = ?1"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![prefix], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .filter_map(Result::ok)
            .collect();
        Ok(rows)
    }

    /// Mark a token and every token minted from it, at any depth, revoked; false when
    /// the token was unknown or already revoked (its descendants are revoked anyway).
    pub(crate) fn revoke_token(&self, hash: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let now = unix_now();
        let n = tx
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash, now],
            )
            .map_err(db_err)?;
        tx.execute(
            "WITH RECURSIVE down(hash) AS ( \
               SELECT hash FROM tokens WHERE parent = ?1 \
               UNION SELECT t.hash FROM tokens t JOIN down ON t.parent = down.hash) \
             UPDATE tokens SET revoked_at = ?2 WHERE hash IN down AND revoked_at IS NULL",
            params![hash, now],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n > 0)
    }

    pub(crate) fn insert_account_key(&self, hash: &str, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO account_keys (hash, name, created_at) VALUES (?1, ?2, ?3)",
                params![hash, name, unix_now()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) fn account_keys(&self) -> Result<Vec<AccountKeyRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT hash, name, created_at, revoked_at FROM account_keys ORDER BY created_at, hash")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let hash: String = r.get(0)?;
                Ok(AccountKeyRow {
                    id: hash[..12.min(hash.len())].to_string(),
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })
            .map_err(db_err)?
            .filter_map(Result::ok)
            .collect();
        Ok(rows)
    }

    /// Hashes of account keys whose short id starts with `prefix`.
    pub(crate) fn account_key_hashes_by_id(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.hashes_by_id("account_keys", prefix)
    }

    /// Mark an account key revoked; its name when it was live, `None` otherwise.
    pub(crate) fn revoke_account_key(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let name: Option<String> = conn
            .query_row(
                "SELECT name FROM account_keys WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if name.is_some() {
            conn.execute(
                "UPDATE account_keys SET revoked_at = ?2 WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash, unix_now()],
            )
            .map_err(db_err)?;
        }
        Ok(name)
    }

    /// Append `rows` to the audit trail (for the administration commands, which write
    /// a record or two and then exit).
    pub(crate) fn insert_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        insert_audit(&mut self.conn(), rows).map_err(db_err)
    }

    /// The audit records `q` asks for, oldest first.
    pub(crate) fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let token = q.token.clone().unwrap_or_default();
        let repo = q.repo.clone().unwrap_or_default();
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM (
                    SELECT seq, {AUDIT_COLUMNS} FROM audit
                    WHERE (?1 = '' OR credential = 'token ' || ?1 OR subject = ?1
                           OR (length(?1) >= 6 AND (substr(credential_id, 1, length(?1)) = lower(?1)
                                                 OR substr(subject_id, 1, length(?1)) = lower(?1))))
                      AND (?2 = '' OR instr(repo, lower(?2)) > 0)
                      AND at_ms >= ?3
                    ORDER BY at_ms DESC, seq DESC LIMIT ?4
                ) ORDER BY at_ms, seq"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(
                params![token, repo, q.since_ms.unwrap_or(i64::MIN), q.limit as i64],
                audit_from_row,
            )
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    /// The live account key stored under `hash`: its short id and name.
    pub(crate) fn live_account_key(
        &self,
        hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT hash, name FROM account_keys WHERE hash = ?1 AND revoked_at IS NULL",
                params![hash],
                |r| {
                    let hash: String = r.get(0)?;
                    Ok((hash[..12.min(hash.len())].to_string(), r.get(1)?))
                },
            )
            .optional()
            .map_err(db_err)
    }

    pub(crate) fn account_key_live(&self, hash: &str) -> Result<bool, StoreError> {
        let found: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT revoked_at FROM account_keys WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        Ok(matches!(found, Some(None)))
    }
}
