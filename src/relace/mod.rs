//! The Relace Repos API from the client side: an HTTP client bound to one credential
//! ([`client`]), the backend that routes the MCP tools through it ([`backend`]), and
//! the git cache its history tools read ([`history`]).
//!
//! The retry policy lives in [`client`]: reads retry on 408/409/429/5xx, timeouts and
//! connection errors; writes retry only when the API certainly did not apply them
//! (the connection was never made, 429 rate limiting, 423 lock contention).

pub mod backend;
pub mod client;
pub mod events;
pub mod history;

pub use backend::RelaceBackend;
pub use client::{RelaceClient, RetryPolicy};

/// What a call to the Relace API can fail with. Messages say what the API answered and
/// what to do; they never carry the credential.
#[derive(Debug, thiserror::Error)]
pub enum RelaceError {
    /// The API answered with an error status.
    #[error("the Relace API answered {status} {reason}: {detail}{hint}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Its canonical reason phrase.
        reason: String,
        /// The API's `detail`, or the start of its body.
        detail: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The API could not be reached, or stopped answering, and the call was safe to
    /// give up on (nothing was written).
    #[error("could not get an answer from the Relace API at {base}: {cause}; {hint}")]
    Transport {
        /// The base URL (never with credentials).
        base: String,
        /// What went wrong.
        cause: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A write was sent but no answer came back: it may or may not have been applied.
    #[error(
        "the Relace API at {base} did not answer a write ({cause}); it may or may not have been applied, \
         so it was not retried: read the repo again (list_files / read_file show its head) before retrying"
    )]
    WriteUncertain {
        /// The base URL.
        base: String,
        /// What went wrong.
        cause: String,
    },
    /// The API answered success with a body this client cannot read.
    #[error(
        "the Relace API at {base} answered with a body that is not the expected JSON ({cause}); \
         check that RELACE_BASE_URL points at a Relace API (it usually ends in /v1)"
    )]
    Malformed {
        /// The base URL.
        base: String,
        /// The parse error.
        cause: String,
    },
    /// The API answered a way this client does not support.
    #[error("{0}")]
    Unsupported(String),
    /// An argument that cannot be sent: its shape is wrong for the URL it would go in.
    /// Nothing was sent.
    #[error("{0}")]
    Refused(String),
}

impl RelaceError {
    /// The HTTP status, when the API answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RelaceError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's `detail`, when it answered with an error status.
    pub fn detail(&self) -> Option<&str> {
        match self {
            RelaceError::Status { detail, .. } => Some(detail),
            _ => None,
        }
    }
}
