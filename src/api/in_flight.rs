//! The API's per-credential cap on requests in flight, git routes included: the cap of
//! [`crate::in_flight`], the same as `serve`'s, keyed on the credential a request
//! presents (bearer, or git's Basic password).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::in_flight::{BUSY, InFlightCap, hold_until_sent};

/// Count the request against its credential's cap until its answer has been sent, or
/// answer `429` with `Retry-After` past the cap.
///
/// A request presenting no credential, or one that cannot be read, is not counted: it
/// is refused by authentication before any work or any read of its body, and counting
/// it would let anyone spend the one budget all such requests share (git asks without
/// a credential first, to be challenged).
pub(super) async fn limit(
    State(cap): State<Arc<InFlightCap>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = crate::credentials::basic_or_bearer(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let Ok(Some(credential)) = presented else {
        return next.run(request).await;
    };
    let fingerprint = crate::http::auth::fingerprint(Some(&credential));
    let Some(permit) = cap.try_enter(&fingerprint) else {
        let mut refusal = ApiError::new(StatusCode::TOO_MANY_REQUESTS, BUSY).into_response();
        refusal
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return refusal;
    };
    hold_until_sent(next.run(request).await, permit)
}
