//! The MCP sessions open on the HTTP transports, per credential: each streamable HTTP
//! session bound to the credential that opened it, a slot per session (streamable or
//! legacy SSE) counted against the credential's cap, and the session manager that
//! drops a binding when rmcp ends its session (closed, timed out, or shut down).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

use super::lock;

type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// Sessions open per credential, and the streamable sessions' bindings.
#[derive(Default)]
pub(crate) struct SessionBook {
    /// Streamable HTTP session id → its binding.
    bindings: Mutex<HashMap<String, Binding>>,
    /// Credential fingerprint → sessions open or being opened.
    open: Counts,
}

struct Binding {
    fingerprint: String,
    _slot: Slot,
}

/// One session counted against its credential's cap, until dropped.
pub(crate) struct Slot {
    open: Counts,
    fingerprint: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.fingerprint) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.fingerprint);
            }
        }
    }
}

impl SessionBook {
    /// A slot for one more session of this credential, unless it has `cap` already.
    pub(crate) fn reserve(&self, fingerprint: &str, cap: usize) -> Option<Slot> {
        let mut open = lock(&self.open);
        let n = open.entry(fingerprint.to_string()).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.open.clone(),
            fingerprint: fingerprint.to_string(),
        })
    }

    /// Bind a new streamable session to the credential that holds `slot`.
    pub(crate) fn bind(&self, id: &str, slot: Slot) {
        let binding = Binding {
            fingerprint: slot.fingerprint.clone(),
            _slot: slot,
        };
        lock(&self.bindings).insert(id.to_string(), binding);
    }

    /// The fingerprint of the credential a streamable session is bound to.
    pub(crate) fn owner(&self, id: &str) -> Option<String> {
        lock(&self.bindings).get(id).map(|b| b.fingerprint.clone())
    }

    /// Forget a streamable session, freeing its slot.
    pub(crate) fn unbind(&self, id: &str) {
        let removed = lock(&self.bindings).remove(id);
        drop(removed);
    }

    /// Streamable sessions bound.
    pub(crate) fn bound(&self) -> usize {
        lock(&self.bindings).len()
    }

    /// Sessions of every kind open or being opened.
    pub(crate) fn open(&self) -> usize {
        lock(&self.open).values().sum()
    }
}

/// rmcp's in-memory session manager, telling the book when a session ends: rmcp calls
/// `close_session` on a DELETE, and from each session's task once the session has
/// ended for any reason (idle timeout, cancellation, a failed handshake).
pub(crate) struct TrackedSessions {
    inner: LocalSessionManager,
    lifecycle: Arc<super::Lifecycle>,
}

impl TrackedSessions {
    pub(crate) fn new(inner: LocalSessionManager, lifecycle: Arc<super::Lifecycle>) -> Self {
        Self { inner, lifecycle }
    }

    /// Whether rmcp still holds this session.
    pub(crate) async fn is_live(&self, id: &str) -> bool {
        self.inner.sessions.read().await.contains_key(id)
    }
}

impl SessionManager for TrackedSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.lifecycle.book.unbind(id);
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_credential_and_freed_with_their_binding() {
        let book = SessionBook::default();
        let a1 = book.reserve("a", 2).unwrap();
        let a2 = book.reserve("a", 2).unwrap();
        assert!(book.reserve("a", 2).is_none());
        let b = book.reserve("b", 2).unwrap();
        book.bind("s1", a1);
        assert_eq!(book.owner("s1").as_deref(), Some("a"));
        assert_eq!((book.bound(), book.open()), (1, 3));
        book.unbind("s1");
        assert_eq!((book.bound(), book.open()), (0, 2));
        assert!(book.reserve("a", 2).is_some());
        drop((a2, b));
        assert_eq!(book.open(), 0);
    }
}
