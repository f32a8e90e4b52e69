//! The gate a push passes right before `main` moves. receive-pack runs without the
//! repo's writer lock while it reads and indexes the pack; its pre-receive hook, once
//! the pack is whole in quarantine and checked, knocks on a Unix socket of that push's
//! own. The `api` process that started the push then takes the writer lock, admits the
//! push's credential again (it may have been revoked or have expired meanwhile) and
//! answers; the hook lets git move the ref only on `ok`, and the lock is held until
//! receive-pack has ended. So a slow client never holds the lock, and a push admitted
//! before its token was revoked does not land.
//!
//! The socket's path and a random key reach the hook through receive-pack's
//! environment; a knock without the key is turned away.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

/// The gate's socket path, in the hook's environment.
pub const ENV_GATE: &str = "SCOPED_REPO_MCP_PUSH_GATE";
/// The key the hook presents, in its environment (not a credential: it opens this one
/// gate of this one push, which only says whether the push may land).
pub const ENV_GATE_KEY: &str = "SCOPED_REPO_MCP_PUSH_GATE_KEY";

/// How long a knock may take to present its key.
const KNOCK: Duration = Duration::from_secs(5);

/// Longest socket path a Unix socket takes on every platform (`sun_path`).
const MAX_SOCKET_PATH: usize = 100;

/// One push's gate: a listening socket, removed when dropped.
pub struct Gate {
    listener: UnixListener,
    path: PathBuf,
    key: String,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Gate {
    /// Open a gate in `dir` (or the system's temporary directory when `dir` makes too
    /// long a socket path).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("push-{}.sock", &key[..16]);
        let mut path = dir.join(&name);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            path = std::env::temp_dir().join(format!("scoped-repo-mcp-{name}"));
        }
        let listener = UnixListener::bind(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self {
            listener,
            path,
            key,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key the hook must present.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Wait for the hook's knock with the right key.
    pub async fn knock(&self) -> std::io::Result<Knock> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            let mut stream = tokio::io::BufReader::new(stream);
            let mut line = String::new();
            let read = tokio::time::timeout(KNOCK, async {
                (&mut stream).take(256).read_line(&mut line).await
            })
            .await;
            if matches!(read, Ok(Ok(_))) && line.trim_end() == self.key {
                return Ok(Knock(stream.into_inner()));
            }
            tracing::warn!("a knock on a push's gate without its key was turned away");
        }
    }
}

/// The hook, waiting for the verdict.
pub struct Knock(UnixStream);

impl Knock {
    /// Let the push land, or refuse it with `refusal` (shown to the pusher).
    pub async fn answer(mut self, verdict: Result<(), String>) {
        let line = match verdict {
            Ok(()) => "ok\n".to_string(),
            Err(why) => format!("no {}\n", crate::text::one_line(&why)),
        };
        if let Err(e) = self.0.write_all(line.as_bytes()).await {
            tracing::warn!(cause = %e, "the push's hook went away before its verdict");
        }
    }
}

/// Why the gate did not open, in words for the pusher.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GateRefused(pub String);

/// How long the hook waits for the gate's answer: the wait for the writer lock behind
/// other writers included.
pub const GATE_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The hook's side: knock on the gate named in the environment and wait for the
/// verdict. `Ok` when the push may land; the writer lock is then held for it.
pub fn pass() -> Result<(), GateRefused> {
    let (Some(path), Some(key)) = (std::env::var_os(ENV_GATE), std::env::var(ENV_GATE_KEY).ok())
    else {
        return Err(GateRefused(
            "this push was not admitted by the server (no gate); nothing changed".into(),
        ));
    };
    let unavailable = |e: std::io::Error| {
        GateRefused(format!(
            "the server could not admit this push ({e}); nothing changed, push again"
        ))
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(PathBuf::from(path)).map_err(unavailable)?;
    // The answer comes once the server holds the repo's writer lock; a server that
    // never answers (its gate failed) must not hold git, its spool and its lock wait
    // for ever.
    stream
        .set_read_timeout(Some(GATE_ANSWER_TIMEOUT))
        .map_err(unavailable)?;
    stream
        .write_all(format!("{key}\n").as_bytes())
        .map_err(unavailable)?;
    let mut line = String::new();
    BufReader::new(&mut stream)
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(unavailable)?;
    match line.trim_end() {
        "ok" => Ok(()),
        other => Err(GateRefused(
            other
                .strip_prefix("no ")
                .unwrap_or("the server did not admit this push; nothing changed")
                .to_string(),
        )),
    }
}
