//! The administration commands over the embedded store: `repo`, `token`, `key`,
//! `audit`.
//! Secrets and IDs go to stdout (for scripts); explanations go to stderr.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::audit::command_row;
use crate::git_source::{FetchLimits, GitProgram, GitSource};
use crate::model::{MintSpec, RepoId, rfc3339, unix_now};
use crate::run::StartError;
use crate::run::cli::{AuditArgs, Command, KeyCommand, RepoCommand, TokenCommand};
use crate::run::config::{ConfigError, data_dir, parse_duration, parse_repo_ids};
use crate::store::{AuditQuery, AuditRow, ImportProgress, Store, StoreError};
use crate::text::one_line;

/// An admin command's failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A bad argument.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the answer failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// `repo check` found repos to repair.
    #[error(
        "{failed} of {checked} repos failed the check; each is named above with what to repair"
    )]
    CheckFailed {
        /// Repos that failed.
        failed: usize,
        /// Repos checked.
        checked: usize,
    },
}

/// Run an administration command on the store in the data directory
/// (`data_dir_flag`, else the default): answers and secrets to stdout, explanations to
/// stderr.
pub fn run(
    data_dir_flag: Option<&Path>,
    limits: crate::store::Limits,
    command: &Command,
) -> Result<(), StartError> {
    let dir = data_dir(data_dir_flag)?;
    let store = super::open_store(&dir, limits)?;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    match command {
        Command::Repo { command } => repo(&store, command, &mut out, &mut err)?,
        Command::Token { command } => token(&store, command, &mut out, &mut err)?,
        Command::Key { command } => key(&store, command, &mut out, &mut err)?,
        Command::Audit(args) => audit(&store, args, &mut out)?,
        Command::Login(args) => {
            let base =
                crate::http::resource::parse_base_url("--url", &args.url).map_err(ConfigError)?;
            let link = crate::oauth::OAuthServer::login_link(&store, &base)
                .map_err(|e| ConfigError(format!("cannot make a sign-in link: {e}")))?;
            writeln!(out, "{link}")?;
            writeln!(
                err,
                "open it in a browser within 15 minutes to sign in to the consent page of `serve --transport http --oauth` on {}; it works once",
                store.root().display()
            )?;
        }
        Command::Serve(_) | Command::Api(_) | Command::GitPreReceive | Command::GitEnv(_) => {
            unreachable!("not an administration command; main starts it")
        }
    }
    Ok(())
}

fn parse_metadata(raw: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    raw.iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| ConfigError(format!("--metadata `{kv}` is not KEY=VALUE")))
        })
        .collect()
}

/// A progress bar that appears only once an import has run for half a second.
struct LazyBar {
    started: Instant,
    bar: RefCell<Option<ProgressBar>>,
}

impl LazyBar {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            bar: RefCell::new(None),
        }
    }

    fn report(&self, p: ImportProgress) {
        if self.started.elapsed() < Duration::from_millis(500) {
            return;
        }
        let mut slot = self.bar.borrow_mut();
        let bar = slot.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} files ({elapsed})",
                )
                .expect("template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        match p {
            ImportProgress::Scanning(n) => bar.set_message(format!("scanning: {n} files found")),
            ImportProgress::Reading { done, total, .. } => {
                bar.set_message("importing");
                bar.set_length(total);
                bar.set_position(done);
            }
            ImportProgress::Writing { done, total } => {
                bar.set_message("writing git objects");
                bar.set_length(total);
                bar.set_position(done);
            }
            ImportProgress::Indexing { stage, done, total } => {
                bar.set_message(stage);
                bar.set_length(total);
                bar.set_position(done);
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

/// What to add to a refusal of `--from-git SOURCE` that `--from-dir` would avoid (a
/// history breaking the store's rules: a symlink, a submodule, a path or a file size
/// the store refuses, a shallow clone): a snapshot import skips such files and takes
/// the rest. Nothing for failures a snapshot would meet too (git missing, a source
/// that cannot be read).
fn from_dir_hint(e: &crate::git_source::SourceError, source: &str) -> String {
    use crate::git_source::SourceError;
    if !matches!(
        e,
        SourceError::Store(StoreError::Invalid(_) | StoreError::TooLarge(_))
    ) {
        return String::new();
    }
    let dir = Path::new(source.trim());
    if !source.contains("://") && dir.join(".git").exists() {
        format!(
            "; to import its files as they are now, without the history, run `scoped-repo-mcp repo create --from-dir {}` (it skips what the store refuses and says which)",
            dir.display()
        )
    } else {
        "; to import its files without the history, check out a work tree of it and run `scoped-repo-mcp repo create --from-dir DIR` (it skips what the store refuses and says which)".into()
    }
}

/// `repo …`
pub fn repo(
    store: &Store,
    cmd: &RepoCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), AdminError> {
    match cmd {
        RepoCommand::Create {
            from_dir,
            from_git,
            branch,
            metadata,
            link,
            no_ignore,
        } => {
            let metadata = parse_metadata(metadata)?;
            crate::rules::metadata(&metadata)
                .map_err(|e| ConfigError(format!("--metadata: {e}")))?;
            let link_dir = match (from_dir, link) {
                (Some(dir), true) => {
                    let key = link_key(dir)?;
                    refuse_linked(store, &key)?;
                    Some(key)
                }
                _ => None,
            };
            let (id, head) = match (from_dir, from_git) {
                (_, Some(source)) => {
                    let source_arg = source.as_str();
                    let source = GitSource::from_operator(source, branch.as_deref())
                        .map_err(|e| ConfigError(format!("--from-git: {e}")))?;
                    let git = GitProgram::find((2, 32)).map_err(|why| {
                        ConfigError(format!("--from-git needs `git` (2.32 or later): {why}"))
                    })?;
                    super::abandon_on_signal(store.root().to_path_buf());
                    let (row, outcome) = store
                        .create_from_history(metadata, |dir| {
                            source.fetch_into(&git, dir, &FetchLimits::default())
                        })
                        .map_err(|e| {
                            let hint = from_dir_hint(&e, source_arg);
                            ConfigError(format!("--from-git: {e}{hint}"))
                        })?;
                    writeln!(
                        err,
                        "made from the history of {}: {} file(s) at its head",
                        source.describe(),
                        outcome.changed_files.len()
                    )?;
                    let bar = LazyBar::new();
                    store.index_import(&row.id, &|p| bar.report(p));
                    bar.finish();
                    (row.id, outcome.head)
                }
                (Some(dir), None) => {
                    let bar = LazyBar::new();
                    // Ctrl-C or SIGTERM mid-import removes the half-made repo at once.
                    super::abandon_on_signal(store.root().to_path_buf());
                    let report = store
                        .import_dir_with(dir, metadata, &|p| bar.report(p), !no_ignore)
                        .inspect(|r| {
                            store.index_import(&r.repo_id, &|p| bar.report(p));
                        });
                    bar.finish();
                    let report = report?;
                    writeln!(err, "{}: {}", dir.display(), report.summary())?;
                    if report.skipped_total() > 0 {
                        writeln!(
                            err,
                            "`scoped-repo-mcp repo skipped {}` lists the files left out, and why",
                            report.repo_id
                        )?;
                    }
                    (report.repo_id, report.head)
                }
                (None, None) => {
                    let (row, outcome) = store.create_repo(metadata, &[])?;
                    (row.id, outcome.head)
                }
            };
            if let Some(key) = link_dir {
                store.link_import(&id, &key)?;
                writeln!(err, "linked: `serve --import {key}` serves this repo")?;
            }
            writeln!(out, "{id}")?;
            connect_hint(store.root(), &id, &head, err)?;
        }
        RepoCommand::Link { id, dir } => {
            let id = parse_one(id)?;
            store.repo_row(&id)?;
            let key = link_key(dir)?;
            if store.imports_of(&key)?.contains(&id) {
                writeln!(err, "repo {id} is already linked to {key}")?;
                return Ok(());
            }
            refuse_linked(store, &key)?;
            store.link_import(&id, &key)?;
            writeln!(err, "linked: `serve --import {key}` serves repo {id}")?;
        }
        RepoCommand::Skipped { id } => {
            let id = parse_one(id)?;
            let skipped = store.skipped_files(&id)?;
            if skipped.is_empty() {
                writeln!(
                    err,
                    "the import of repo {id} left no file out (or it was not an import)"
                )?;
            }
            for (path, reason) in skipped {
                writeln!(out, "{}\t{}", one_line(&path), reason)?;
            }
        }
        RepoCommand::Unlink { id } => {
            let id = parse_one(id)?;
            if !store.unlink_import(&id)? {
                return Err(ConfigError(format!("repo {id} is not linked to a directory")).into());
            }
            writeln!(err, "unlinked repo {id}; the repo itself is kept")?;
        }
        RepoCommand::List => {
            let rows = store.repo_rows()?;
            if rows.is_empty() {
                writeln!(
                    err,
                    "no repos in {}; create one with `scoped-repo-mcp repo create --from-dir DIR`",
                    store.root().display()
                )?;
            }
            for row in rows {
                let head = store
                    .head(&row.id)
                    .unwrap_or_else(|_| "(unreadable)".into());
                let mut meta: Vec<String> = row
                    .metadata
                    .iter()
                    .map(|(k, v)| format!("{}={}", one_line(k), one_line(v)))
                    .collect();
                if let Some(dir) = store.import_dir_of(&row.id)? {
                    meta.insert(0, format!("[--import {}]", one_line(&dir)));
                }
                writeln!(
                    out,
                    "{}  head {}  updated {}  {}",
                    row.id,
                    &head[..head.len().min(12)],
                    rfc3339(row.updated_at),
                    meta.join(" ")
                )?;
            }
        }
        RepoCommand::Check { id } => {
            let ids = match id {
                Some(raw) => vec![parse_one(raw)?],
                None => store.repo_rows()?.into_iter().map(|r| r.id).collect(),
            };
            let git = GitProgram::find((2, 32)).map_err(|why| {
                ConfigError(format!(
                    "`repo check` runs `git fsck`, and needs git on PATH: {why}"
                ))
            })?;
            let mut failed = 0;
            for id in &ids {
                if !check_repo(store, &git, id, out)? {
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(AdminError::CheckFailed {
                    failed,
                    checked: ids.len(),
                });
            }
            writeln!(err, "{} repos checked: all sound", ids.len())?;
        }
        RepoCommand::Delete { id } => {
            let id = parse_one(id)?;
            store.delete_repo(&id)?;
            writeln!(err, "deleted repo {id}")?;
        }
    }
    Ok(())
}

/// Check one repo with `git fsck --strict` and the store's rules, writing one line
/// for it (and one for each thing to repair) to `out`. True: sound.
fn check_repo(
    store: &Store,
    git: &GitProgram,
    id: &RepoId,
    out: &mut dyn Write,
) -> Result<bool, AdminError> {
    let dir = store.git_dir(id);
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // From an empty environment and no user settings, as every git this product runs.
    let fsck = git
        .command()
        .arg("--git-dir")
        .arg(&dir)
        .args(["fsck", "--strict", "--no-dangling", "--no-progress"])
        .stdin(std::process::Stdio::null())
        .output();
    match fsck {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let said = String::from_utf8_lossy(&o.stderr).to_string()
                + &String::from_utf8_lossy(&o.stdout);
            let first: Vec<String> = said
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(5)
                .map(|l| one_line(l).into_owned())
                .collect();
            problems.push(format!("`git fsck --strict` fails: {}", first.join(" | ")));
        }
        Err(e) => problems.push(format!("`git fsck` could not run: {e}")),
    }
    match store.check_rules(id) {
        Ok(report) => {
            if let Some(broken) = report.broken {
                problems.push(format!(
                    "`main` breaks the store's rules: {}",
                    one_line(&broken)
                ));
            }
            if report.unreferenced > 0 {
                notes.push(format!(
                    "{} objects outside `main`'s history (never served, never trusted); `git --git-dir {} gc --prune=now` drops them",
                    report.unreferenced,
                    dir.display()
                ));
            }
        }
        Err(e) => problems.push(format!("its history could not be read: {e}")),
    }
    if problems.is_empty() {
        writeln!(out, "{id}\tok")?;
    } else {
        writeln!(out, "{id}\tFAILED")?;
        for p in &problems {
            writeln!(out, "{id}\t  {p}")?;
        }
        writeln!(
            out,
            "{id}\t  repair: fetch what you need from it (`git clone` through `api`, or `GET /repo/{id}/clone`), make a clean history with a commit that removes or fixes the named paths, and replace the repo (`repo delete {id}`, then `repo create --from-git` of the clean history)"
        )?;
    }
    for n in &notes {
        writeln!(out, "{id}\t  note: {n}")?;
    }
    Ok(problems.is_empty())
}

/// The key a directory is linked under: its canonical absolute path, as `serve
/// --import` computes it.
fn link_key(dir: &Path) -> Result<String, ConfigError> {
    dir.canonicalize()
        .map(|abs| abs.display().to_string())
        .map_err(|e| {
            ConfigError(format!(
                "{}: {e}; give an existing directory",
                dir.display()
            ))
        })
}

fn refuse_linked(store: &Store, key: &str) -> Result<(), AdminError> {
    if let Some(other) = store.imports_of(key)?.first() {
        return Err(ConfigError(format!(
            "repo {other} is already linked to {key}; `scoped-repo-mcp repo unlink {other}` first"
        ))
        .into());
    }
    Ok(())
}

fn parse_one(raw: &str) -> Result<RepoId, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|e: crate::model::BadRepoId| ConfigError(e.to_string()))
}

fn connect_hint(
    data_dir: &Path,
    id: &RepoId,
    head: &str,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "scoped-repo-mcp".into());
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let config = serde_json::json!({
        "mcpServers": {
            "scoped-repo": {
                "command": exe,
                "args": ["serve", "--data-dir", data_dir.display().to_string(), "--repo", id.to_string()]
            }
        }
    });
    writeln!(
        err,
        "repo {id} at commit {head}\n\nServe it over stdio:\n  {exe} serve --data-dir {} --repo {id}\n\nor add this to your MCP client's configuration (mcp.json):\n{}",
        data_dir.display(),
        serde_json::to_string_pretty(&config).expect("json")
    )
}

/// `token …`
pub fn token(
    store: &Store,
    cmd: &TokenCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), AdminError> {
    match cmd {
        TokenCommand::Create {
            repos,
            ttl,
            name,
            read_only,
            paths,
            delegate,
            rate,
        } => {
            let ids = parse_repo_ids("--repo", repos)?;
            let rate = rate
                .as_deref()
                .map(|r| {
                    r.parse()
                        .map_err(|e: crate::rate::BadRate| ConfigError(format!("--rate: {e}")))
                })
                .transpose()?;
            let ttl = if ttl.trim() == "never" {
                None
            } else {
                let d = parse_duration("--ttl", ttl)?;
                if d.is_zero() {
                    return Err(
                        ConfigError("--ttl must be longer than 0s (or `never`)".into()).into(),
                    );
                }
                Some(d.as_secs())
            };
            let minted = match store.mint(&MintSpec {
                name: name.clone(),
                repo_ids: ids.clone(),
                ttl_seconds: ttl,
                read_only: *read_only,
                paths: paths.clone(),
                can_delegate: *delegate,
                rate,
                parent: None,
            }) {
                Ok(m) => m,
                Err(e) => {
                    record(
                        store,
                        command_row("token create", &ids, Err(&e.to_string()), None),
                    );
                    return Err(e.into());
                }
            };
            record(
                store,
                command_row(
                    "token create",
                    &ids,
                    Ok(()),
                    Some((&minted.info.name, &minted.token)),
                ),
            );
            writeln!(out, "{}", minted.token)?;
            writeln!(
                err,
                "token `{}` for {} repo(s), {}; it is shown only now",
                minted.info.name,
                minted.info.repo_ids.len(),
                minted
                    .info
                    .expires_at
                    .map(|e| format!("expires {}", rfc3339(e)))
                    .unwrap_or_else(|| "never expires".into())
            )?;
        }
        TokenCommand::List => {
            let now = unix_now();
            for t in store.tokens()? {
                let status = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.info.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "live"
                };
                let ids: Vec<String> = t.info.repo_ids.iter().map(ToString::to_string).collect();
                let mut limits = Vec::new();
                if t.info.read_only {
                    limits.push("read-only".to_string());
                }
                if !t.info.paths.is_empty() {
                    limits.push(format!("paths {}", t.info.paths.join(",")));
                }
                if t.info.can_delegate {
                    limits.push("delegates".to_string());
                }
                if let Some(rate) = t.info.rate {
                    limits.push(format!("rate {rate}"));
                }
                if let Some(parent) = &t.parent {
                    limits.push(format!("minted by {}", &parent[..parent.len().min(12)]));
                }
                writeln!(
                    out,
                    "{}  {status:<7}  {:<20}  created {}  expires {}  repos {}{}",
                    t.id,
                    one_line(&t.info.name),
                    rfc3339(t.created_at),
                    t.info
                        .expires_at
                        .map(rfc3339)
                        .unwrap_or_else(|| "never".into()),
                    ids.join(","),
                    if limits.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", one_line(&limits.join("  ")))
                    }
                )?;
            }
        }
        TokenCommand::Revoke { token } => {
            let token = token.trim();
            let revoked = if token.starts_with("rlcr-") {
                store.revoke_token(token)?
            } else {
                store.revoke_token_by_id(token)?
            };
            let row = match &revoked {
                Some(info) => command_row(
                    "token revoke",
                    &info.repo_ids,
                    Ok(()),
                    Some((&info.name, token)),
                ),
                None => command_row(
                    "token revoke",
                    &[],
                    Err("no live token matches"),
                    Some(("", token)),
                ),
            };
            record(store, row);
            match revoked {
                Some(info) => writeln!(err, "revoked token `{}`", one_line(&info.name))?,
                None => {
                    return Err(ConfigError(
                        "no live token matches; `scoped-repo-mcp token list` shows them".into(),
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// `key …`
pub fn key(
    store: &Store,
    cmd: &KeyCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), AdminError> {
    match cmd {
        KeyCommand::Create { name } => {
            let key = store.create_account_key(name)?;
            writeln!(out, "{key}")?;
            writeln!(err, "account key `{name}` created; it is shown only now")?;
        }
        KeyCommand::List => {
            for k in store.account_keys()? {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                writeln!(
                    out,
                    "{}  {status:<7}  {:<20}  created {}",
                    k.id,
                    one_line(&k.name),
                    rfc3339(k.created_at)
                )?;
            }
        }
        KeyCommand::Revoke { key } => match store.revoke_account_key(key.trim())? {
            Some(name) => writeln!(err, "revoked account key `{}`", one_line(&name))?,
            None => {
                return Err(ConfigError(
                    "no live account key matches; `scoped-repo-mcp key list` shows them".into(),
                )
                .into());
            }
        },
    }
    Ok(())
}

/// Write an administration command's record; a failure is logged, never fatal.
fn record(store: &Store, row: AuditRow) {
    if let Err(e) = store.record_audit(&[row]) {
        tracing::warn!(cause = %e, "the audit record of this command could not be written");
    }
}

/// `audit`: the trail's records, oldest first, one escaped line (or JSON object) each.
pub fn audit(store: &Store, args: &AuditArgs, out: &mut dyn Write) -> Result<(), AdminError> {
    let repo = match args.repo.as_deref().map(str::trim) {
        Some(raw) => Some(
            raw.parse::<RepoId>()
                .map_err(|e| ConfigError(format!("--repo: {e}")))?
                .to_string(),
        ),
        None => None,
    };
    let since_ms = match &args.since {
        Some(raw) => {
            let d = parse_duration("--since", raw)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|n| n.as_millis() as i64)
                .unwrap_or(0);
            Some(now.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64))
        }
        None => None,
    };
    if args.limit == 0 {
        return Err(ConfigError("--limit must be at least 1".into()).into());
    }
    let rows = store.audit(&AuditQuery {
        token: args
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        repo,
        since_ms,
        limit: args.limit,
    })?;
    for r in &rows {
        if args.json {
            writeln!(out, "{}", audit_json(r))?;
        } else {
            writeln!(out, "{}", audit_line(r))?;
        }
    }
    Ok(())
}

fn audit_json(r: &AuditRow) -> serde_json::Value {
    serde_json::json!({
        "at": rfc3339(r.at_ms.div_euclid(1000)),
        "at_ms": r.at_ms,
        "pid": r.pid,
        "surface": r.surface,
        "credential": r.credential,
        "credential_id": r.credential_id,
        "action": r.action,
        "repo": r.repo,
        "paths": r.paths,
        "outcome": r.outcome,
        "reason": r.reason,
        "duration_us": r.duration_us,
        "head_before": r.head_before,
        "head_after": r.head_after,
        "subject": r.subject,
        "subject_id": r.subject_id,
        "refs": r.refs,
        "changed_paths": r.changed_paths,
    })
}

fn audit_line(r: &AuditRow) -> String {
    use std::fmt::Write as _;
    let mut line = format!(
        "{}  {:<5}  {}",
        rfc3339(r.at_ms.div_euclid(1000)),
        r.surface,
        one_line(&r.credential)
    );
    if let Some(id) = &r.credential_id {
        let _ = write!(line, " ({id})");
    }
    let _ = write!(line, "  {}", one_line(&r.action));
    if let Some(repo) = &r.repo {
        let _ = write!(line, "  repo {repo}");
    }
    let _ = write!(line, "  {}", r.outcome);
    if let Some(reason) = &r.reason {
        let _ = write!(line, " ({})", one_line(reason));
    }
    let _ = write!(line, "  {:.1}ms", r.duration_us as f64 / 1000.0);
    if let Some(refs) = &r.refs {
        let _ = write!(line, "  ref {}", one_line(refs));
    }
    if let Some(n) = r.paths {
        let _ = write!(line, "  paths {n}");
        if !r.changed_paths.is_empty() {
            let names: Vec<String> = r
                .changed_paths
                .iter()
                .map(|p| one_line(p).into_owned())
                .collect();
            let _ = write!(line, ": {}", names.join(", "));
            let more = n - r.changed_paths.len() as i64;
            if more > 0 {
                let _ = write!(line, " (+{more} more)");
            }
        }
    }
    match (&r.head_before, &r.head_after) {
        (Some(b), Some(a)) => {
            let _ = write!(line, "  head {}..{}", short(b), short(a));
        }
        (None, Some(a)) => {
            let _ = write!(line, "  head {}", short(a));
        }
        _ => {}
    }
    if r.subject.is_some() || r.subject_id.is_some() {
        let _ = write!(
            line,
            "  token {}",
            one_line(r.subject.as_deref().unwrap_or_default())
        );
        if let Some(id) = &r.subject_id {
            let _ = write!(line, " ({id})");
        }
    }
    line
}

/// A commit id cut to 12 digits for the text listing.
fn short(head: &str) -> &str {
    head.get(..12).unwrap_or(head)
}
