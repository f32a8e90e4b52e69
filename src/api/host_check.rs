//! The API's `Host` and `Origin` check, git routes included: the allow lists of
//! [`crate::origin`], the same as `serve`'s, answered in the API's error shape.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::origin::AllowLists;

/// Refuse, `403`, a request whose `Host` or `Origin` is not allowed.
pub(super) async fn refuse_foreign(
    State(lists): State<Arc<AllowLists>>,
    request: Request,
    next: Next,
) -> Response {
    match lists.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(foreign) => ApiError::forbidden(foreign.to_string()).into_response(),
    }
}
