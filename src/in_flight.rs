//! The per-credential cap on requests in flight, one implementation for both HTTP
//! servers (`serve --transport http` and `api`): one credential cannot hold every
//! connection of a server with slow requests, whatever `--max-connections` allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;

/// The refusal past the cap, the same words on both servers (answered `429` with
/// `Retry-After`).
pub const BUSY: &str = "too many requests in flight for this credential (see --max-concurrent-per-token); retry shortly";

/// How many requests each credential has in flight, and the most it may have.
#[derive(Debug)]
pub struct InFlightCap {
    max: usize,
    /// Credential fingerprint → requests in flight. An entry goes when its count is back
    /// to zero, so the map holds only credentials with work under way, however many
    /// different credentials are presented.
    counts: Mutex<HashMap<String, usize>>,
}

/// One request in flight, counted until dropped.
#[derive(Debug)]
pub struct Permit {
    cap: Arc<InFlightCap>,
    key: String,
}

impl InFlightCap {
    /// A cap of `max` requests in flight per credential.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one more request for the credential `fingerprint`, or `None` when it has
    /// the most it may have.
    pub fn try_enter(self: &Arc<Self>, fingerprint: &str) -> Option<Permit> {
        let mut counts = self.counts();
        let n = counts.entry(fingerprint.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Permit {
            cap: self.clone(),
            key: fingerprint.to_string(),
        })
    }

    /// Requests in flight for `fingerprint`.
    pub fn in_flight(&self, fingerprint: &str) -> usize {
        self.counts().get(fingerprint).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.cap.counts();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// `response`, holding `held` until its body has been sent: a streamed answer is sent
/// after the handler returns, and a request counts until then.
pub fn hold_until_sent<T: Send + Sync + 'static>(response: Response, held: T) -> Response {
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &held;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_credential_has_its_own_count_and_entries_go_at_zero() {
        let cap = InFlightCap::new(2);
        let a1 = cap.try_enter("a").unwrap();
        let _a2 = cap.try_enter("a").unwrap();
        assert!(cap.try_enter("a").is_none());
        let b = cap.try_enter("b").unwrap();
        drop(a1);
        assert!(cap.try_enter("a").is_some());
        drop(b);
        assert_eq!(cap.in_flight("b"), 0);
        assert!(!cap.counts().contains_key("b"));
    }
}
