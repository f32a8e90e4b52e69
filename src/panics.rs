//! The middleware both HTTP servers put around their handlers: a handler's panic
//! becomes a `500` answer with a JSON body and a log line, instead of a connection
//! dropped with no answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A panic inside a handler becomes a `500` answer and a log line, instead of a
/// connection dropped with no answer. Used by every HTTP server of the product.
pub(crate) async fn answer_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request.uri().path().to_string();
    match crate::server::unwind(next.run(request)).await {
        Ok(response) => response,
        Err(cause) => {
            tracing::error!(route = %redact_route(&route), cause = %cause, "request handler panicked");
            // The REST API's error shape (`{"detail": …}`), which MCP clients read as
            // well as any other.
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({
                    "detail": "the server failed to complete this request (the cause is in its log); retrying may help"
                })),
            )
                .into_response()
        }
    }
}

/// A route for logs: a token in a token route's path is cut off.
fn redact_route(route: &str) -> &str {
    if route.contains("/repo_token/") {
        "/v1/repo_token/<redacted>"
    } else {
        route
    }
}
