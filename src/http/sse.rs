//! The legacy HTTP+SSE transport of protocol 2024-11-05, for clients that only speak
//! it: `GET /sse` opens an event stream whose first event names the endpoint to POST
//! to (`/messages?sessionId=…`); answers come back on the stream. Built on rmcp's
//! sink/stream transport, one MCP session per stream, bound to the credential that
//! opened it and counted against its session cap. A request posted to `/messages` is
//! answered `202` once queued, but holds its credential's call budget (and counts as
//! in flight) until its answer has been sent on the stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use rmcp::ServiceExt;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use serde::Deserialize;

use super::sessions::Slot;
use super::{Admitted, HttpState, InFlight, lock, problem, too_many, too_many_sessions};

/// Messages buffered per direction before a sender waits.
const CHANNEL_DEPTH: usize = 64;

struct Session {
    inbox: mpsc::Sender<ClientJsonRpcMessage>,
    fingerprint: String,
    pending: Pending,
}

/// A request's share of its credential's budget, held until its answer is sent.
struct Held {
    _permit: crate::in_flight::Permit,
    _in_flight: InFlight,
}

/// The requests of one session not yet answered, by id.
type Pending = Arc<Mutex<HashMap<RequestId, Held>>>;

/// The open legacy sessions.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

/// Removes its session when the event stream is dropped (the client went away), which
/// frees its slot and whatever its unanswered requests held.
struct Closer {
    id: String,
    state: Arc<HttpState>,
    stop: tokio_util::sync::CancellationToken,
    _slot: Slot,
}

impl Drop for Closer {
    fn drop(&mut self) {
        lock(&self.state.sse.0).remove(&self.id);
        self.stop.cancel();
    }
}

/// `GET /sse`: open a session.
pub(crate) async fn connect(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Admitted>,
) -> Response {
    let Some(slot) = state.lifecycle.book.reserve(
        &caller.fingerprint,
        state.options.max_sessions_per_credential,
    ) else {
        return too_many_sessions();
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let pending = Pending::default();
    let (in_tx, in_rx) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_DEPTH);
    lock(&state.sse.0).insert(
        id.clone(),
        Session {
            inbox: in_tx,
            fingerprint: caller.fingerprint.clone(),
            pending: pending.clone(),
        },
    );
    let stop = state.lifecycle.sessions.child_token();
    let server = state.server.bound_to(&caller.grant);
    let session_stop = stop.clone();
    let session_id = id.clone();
    tokio::spawn(async move {
        match server.serve_with_ct((out_tx, in_rx), session_stop).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => {
                tracing::info!(session = %session_id, cause = %e, "legacy SSE session ended before initializing")
            }
        }
    });
    let closer = Closer {
        id: id.clone(),
        state,
        stop,
        _slot: slot,
    };
    let endpoint = stream::once(async move {
        Ok::<_, Infallible>(
            Event::default()
                .event("endpoint")
                .data(format!("/messages?sessionId={id}")),
        )
    });
    let messages = out_rx.map(move |message| {
        let _keep = &closer;
        let data = serde_json::to_string(&message).unwrap_or_else(|_| "{}".to_string());
        let answered = match &message {
            JsonRpcMessage::Response(r) => Some(&r.id),
            JsonRpcMessage::Error(e) => e.id.as_ref(),
            _ => None,
        };
        // The answer goes out with this event: its request stops counting.
        if let Some(id) = answered {
            lock(&pending).remove(id);
        }
        Ok::<_, Infallible>(Event::default().event("message").data(data))
    });
    Sse::new(endpoint.chain(messages))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The query of `POST /messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `POST /messages?sessionId=…`: one JSON-RPC message into a session.
pub(crate) async fn message(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Admitted>,
    Query(query): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let (inbox, pending) = {
        let sessions = lock(&state.sse.0);
        match sessions.get(&query.session_id) {
            None => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "unknown sessionId: open a new stream with GET /sse",
                );
            }
            Some(s) if s.fingerprint != caller.fingerprint => {
                return problem(
                    StatusCode::FORBIDDEN,
                    "this session was opened with another credential",
                );
            }
            Some(s) => (s.inbox.clone(), s.pending.clone()),
        }
    };
    let message: ClientJsonRpcMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a JSON-RPC message: {e}"),
            );
        }
    };
    let request_id = match &message {
        JsonRpcMessage::Request(r) => Some(r.id.clone()),
        JsonRpcMessage::Notification(n) => {
            // A cancelled request gets no answer: it stops counting now.
            if let ClientNotification::CancelledNotification(c) = &n.notification
                && let Some(id) = &c.params.request_id
            {
                lock(&pending).remove(id);
            }
            None
        }
        _ => None,
    };
    // A request holds a share of its credential's budget until its answer has been
    // sent; it is recorded before it is queued, so that its answer cannot come back
    // first. Notifications and answers start no work and are never refused for budget
    // (a cancellation must get through when the budget is spent).
    if let Some(id) = &request_id {
        let Some(permit) = state.cap.try_enter(&caller.fingerprint) else {
            return too_many(crate::in_flight::BUSY);
        };
        let held = Held {
            _permit: permit,
            _in_flight: InFlight::enter(&state.lifecycle),
        };
        lock(&pending).insert(id.clone(), held);
    }
    let mut inbox = inbox;
    if inbox.send(message).await.is_err() {
        if let Some(id) = &request_id {
            lock(&pending).remove(id);
        }
        return problem(
            StatusCode::GONE,
            "this session has ended: open a new stream with GET /sse",
        );
    }
    StatusCode::ACCEPTED.into_response()
}
