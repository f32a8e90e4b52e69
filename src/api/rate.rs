//! The API's per-credential rate limit, git routes included: each request is one
//! metered call of [`crate::rate`], the same limiter shape as `serve`'s tool calls. The
//! charge itself is taken where the credential is admitted (the `Caller` extractor,
//! git's front door), so a request without a credential, or with a refused one, costs
//! nothing; a request answered `401` or `403` gets its charge back.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::rate::RateLimiter;

/// Run the request as one metered call.
pub(super) async fn meter(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    crate::rate::metered(&limiter, next.run(request), |answer: &Response| {
        matches!(
            answer.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    })
    .await
}
