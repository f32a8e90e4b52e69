//! Serving HTTP/1 connections for both servers (`serve --transport http` and `api`):
//! a cap on open connections, a header-read timeout, an idle timeout, a total deadline
//! for each request's body, TCP_NODELAY, `ConnectInfo`, and a graceful stop.
//!
//! `axum::serve` offers none of the limits, and its connection builder reads the first
//! bytes (to tell HTTP/1 from HTTP/2) before hyper's header timer exists, so a client
//! that connects and sends nothing would be held forever. Here every connection goes
//! straight to hyper's HTTP/1 server with a Tokio timer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Limits on the connections of one HTTP server.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers. hyper starts this
    /// clock whenever a connection waits for a request: right after it is accepted,
    /// and between the requests of a keep-alive connection.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no byte moving either way while the server
    /// is not working on one of its requests (a stalled request body, an answer the
    /// client does not read). Event streams send a keep-alive every 15 s.
    pub idle_timeout: Duration,
    /// Connections open at once; more are answered `503` with `Retry-After` and closed.
    pub max_connections: usize,
    /// How long a request's body may take to arrive, from its headers on. The idle
    /// timeout alone lets a body trickling one byte a minute hold its connection (and
    /// whatever the handler holds) for ever; past this the request is answered `408`
    /// and its connection closed.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            body_timeout: Duration::from_secs(120),
        }
    }
}

/// Refusals over the connection cap being written at once; past this, an extra
/// connection is closed without an answer, so a flood costs no more tasks.
const MAX_REFUSING: usize = 64;

/// How long a refusal may take, answer and draining together.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

const OVER_CAPACITY: &str =
    r#"{"error":"too many connections to this server; retry in a moment, please"}"#;

/// A request body that did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {} (see --body-timeout); send it faster or in smaller requests",
    humantime::format_duration(*.0)
)]
pub struct BodyTimedOut(pub Duration);

/// The answer to a request whose body timed out, whatever its handler made of the
/// failed read. The message is under both servers' error keys (`detail` for the REST
/// API and its SDKs, `error` for the MCP server), and the connection is closed, since
/// the rest of the body may still be on its way.
fn body_timed_out(limit: Duration) -> axum::response::Response {
    let message = BodyTimedOut(limit).to_string();
    let body = serde_json::json!({ "detail": message, "error": message }).to_string();
    axum::response::Response::builder()
        .status(hyper::StatusCode::REQUEST_TIMEOUT)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONNECTION, "close")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// The whole answer to a connection over the cap.
fn over_capacity() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    )
}

/// Serve `app` on `listener` within `limits` until `shutdown` is cancelled; then stop
/// accepting, let each connection finish the requests it has under way, and return
/// once every connection has closed.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let epoch = Instant::now();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(cause = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(tcp).await;
                    drop(refusal);
                });
            }
            tracing::debug!(%remote, "connection refused: at the connection cap");
            continue;
        };
        // Without TCP_NODELAY, small and streamed answers wait on Nagle's algorithm (~40 ms).
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_one(tcp, remote, app, &limits, epoch, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    // Each open connection holds a permit: all of them back means all have closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
    Ok(())
}

/// Answer a connection over the cap with a 503 once its request's headers have come
/// (an HTTP client takes an answer that comes before its request for a broken
/// connection), then drain what the client sends so that closing does not reset the
/// connection before the client has read the answer.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match tcp.read(&mut chunk).await? {
                0 => return Ok(()),
                n => head.extend_from_slice(&chunk[..n]),
            }
        }
        tcp.write_all(over_capacity().as_bytes()).await?;
        tcp.shutdown().await?;
        while tcp.read(&mut chunk).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// One connection, until it ends, idles out, or finishes after `shutdown`.
async fn serve_one(
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: &ConnectionLimits,
    epoch: Instant,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new(epoch));
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let activity = service_activity.clone();
        let (parts, body) = request.into_parts();
        let timed_out = Arc::new(AtomicBool::new(false));
        let body = Body::new(ClientBody {
            inner: body,
            activity: activity.clone(),
            waiting: false,
            limit: body_timeout,
            due: Instant::now() + body_timeout,
            deadline: None,
            timed_out: timed_out.clone(),
        });
        let mut request = axum::extract::Request::from_parts(parts, body);
        request.extensions_mut().insert(ConnectInfo(remote));
        let mut app = app.clone();
        async move {
            let _working = Working::start(activity);
            let answer = Service::call(&mut app, request).await;
            if timed_out.load(Ordering::SeqCst) {
                tracing::debug!(%remote, "request body timed out");
                return Ok(body_timed_out(body_timeout));
            }
            answer
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connection = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    let check = tokio::time::sleep(limits.idle_timeout);
    let mut check = pin!(check);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%remote, cause = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = check.as_mut() => {
                let now = Instant::now();
                if activity.working() {
                    check.as_mut().reset(now + limits.idle_timeout);
                    continue;
                }
                let last = activity.last();
                if now.duration_since(last) >= limits.idle_timeout {
                    tracing::debug!(%remote, "closing an idle connection");
                    return;
                }
                check.as_mut().reset(last + limits.idle_timeout);
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests the server is
/// working on (a handler running and not waiting for the request's body).
struct Activity {
    last_ms: AtomicU64,
    working: AtomicIsize,
    epoch: Instant,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Self {
            last_ms: AtomicU64::new(0),
            working: AtomicIsize::new(0),
            epoch,
        };
        a.touch();
        a
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn working(&self) -> bool {
        self.working.load(Ordering::SeqCst) > 0
    }
}

/// Counts a handler as working until dropped.
struct Working(Arc<Activity>);

impl Working {
    fn start(activity: Arc<Activity>) -> Self {
        activity.working.fetch_add(1, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.working.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// The connection's socket, noting every byte that moves.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request's body: while a handler waits on it, the wait is the client's, so the
/// handler does not count as working and the idle clock runs; and the whole body must
/// have come by `due`.
struct ClientBody {
    inner: Incoming,
    activity: Arc<Activity>,
    waiting: bool,
    limit: Duration,
    due: Instant,
    /// Armed at the first wait, so a request whose body is already in costs no timer.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set when `due` passed with the body unfinished; the answer is then replaced.
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if self.timed_out.load(Ordering::SeqCst) {
            return Poll::Ready(Some(Err(BodyTimedOut(self.limit).into())));
        }
        let mut polled = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(axum::BoxError::from);
        if polled.is_pending() {
            let due = self.due;
            let deadline = self
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if deadline.as_mut().poll(cx).is_ready() {
                self.timed_out.store(true, Ordering::SeqCst);
                polled = Poll::Ready(Some(Err(BodyTimedOut(self.limit).into())));
            }
        }
        match (&polled, self.waiting) {
            (Poll::Pending, false) => {
                self.waiting = true;
                self.activity.working.fetch_sub(1, Ordering::SeqCst);
            }
            (Poll::Ready(_), true) => {
                self.waiting = false;
                self.activity.working.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if self.waiting {
            self.activity.working.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_is_well_formed() {
        let answer = over_capacity();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
