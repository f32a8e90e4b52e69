//! Serving HTTP/1 connections for both servers (`serve --transport http` and `api`):
//! a cap on open connections, a header-read timeout, an idle timeout, TCP_NODELAY,
//! `ConnectInfo`, and a graceful stop.
//!
//! `axum::serve` offers none of the limits, and its connection builder reads the first
//! bytes (to tell HTTP/1 from HTTP/2) before hyper's header timer exists, so a client
//! that connects and sends nothing would be held forever. Here every connection goes
//! straight to hyper's HTTP/1 server with a Tokio timer.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
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
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
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
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let activity = service_activity.clone();
        let (parts, body) = request.into_parts();
        let body = Body::new(ClientBody {
            inner: body,
            activity: activity.clone(),
            waiting: false,
        });
        let mut request = axum::extract::Request::from_parts(parts, body);
        request.extensions_mut().insert(ConnectInfo(remote));
        let mut app = app.clone();
        async move {
            let _working = Working::start(activity);
            Service::call(&mut app, request).await
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
/// handler does not count as working and the idle clock runs.
struct ClientBody {
    inner: Incoming,
    activity: Arc<Activity>,
    waiting: bool,
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
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
