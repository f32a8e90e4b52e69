//! The record of a REST request of `scoped-repo-mcp api`, and of git's smart HTTP
//! routes: an axum middleware around every route.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::response::IntoResponse as _;

use super::note::{NOTE, Note, Outcome, safe_reason};
use super::push;
use super::{Surface, Trail, Who, now_ms};
use crate::model::RepoId;
use crate::store::AuditRow;

/// A refusal's reason, carried on an error response for the audit layer.
#[derive(Debug, Clone)]
pub struct RefusalNote(pub String);

/// The axum middleware that records every request of `scoped-repo-mcp api`: the
/// route's template (never the concrete path, which may hold a token), the repo of a
/// `/repo/{id}/…` route, the credential the handler resolved, the status's outcome.
pub async fn rest_request(
    axum::extract::State(trail): axum::extract::State<Trail>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !trail.is_on() {
        return next.run(request).await;
    }
    if !writes(&request) {
        return record(trail, request, next).await;
    }
    // A write runs to its end, its record included, on a task of its own: a client
    // that hangs up drops this future, and the write it asked for would otherwise land
    // without its record.
    match tokio::spawn(record(trail, request, next)).await {
        Ok(response) => response,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The route a request matched (its template, never the concrete path).
fn route_of(request: &axum::extract::Request) -> String {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(no route)".into())
}

/// Whether a request writes: every route that is not a GET, but for the searches and
/// git's fetch.
fn writes(request: &axum::extract::Request) -> bool {
    let route = route_of(request);
    !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && !["/retrieve", "/search", "/git-upload-pack"]
        .iter()
        .any(|r| route.ends_with(r))
}

/// Run the request and record it.
async fn record(
    trail: Trail,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let at_ms = now_ms();
    let route = route_of(&request);
    let action = format!("{} {route}", request.method());
    let writes = writes(&request);
    let mut segments = request.uri().path().split('/').skip(1);
    let repo = match (segments.next(), segments.next(), segments.next()) {
        (Some("v1"), Some("repo"), Some(id)) => id
            .strip_suffix(".git")
            .unwrap_or(id)
            .parse::<RepoId>()
            .ok()
            .map(|id| id.to_string()),
        _ => None,
    };
    // git's smart HTTP routes are their own surface: fetches and pushes.
    let surface = if ["/info/refs", "/git-upload-pack", "/git-receive-pack"]
        .iter()
        .any(|r| route.ends_with(r))
    {
        Surface::Git
    } else {
        Surface::Api
    };
    let presented = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let cell = Arc::new(Mutex::new(Note::default()));
    let response = NOTE.scope(cell.clone(), next.run(request)).await;
    let note = std::mem::take(&mut *cell.lock().unwrap_or_else(|e| e.into_inner()));
    let status = response.status();
    // git asks every smart-HTTP route without a credential first and again with one
    // once told 401: that first request is git's way of asking, not a caller being
    // refused, and a record of it for every fetch and push would bury the real ones.
    if surface == Surface::Git && !presented && status == axum::http::StatusCode::UNAUTHORIZED {
        return response;
    }
    let (outcome, reason) = if status.is_success() || status.is_redirection() {
        (Outcome::Ok, None)
    } else if status == axum::http::StatusCode::UNAUTHORIZED
        || status == axum::http::StatusCode::FORBIDDEN
        || status == axum::http::StatusCode::TOO_MANY_REQUESTS
    {
        let why = response
            .extensions()
            .get::<RefusalNote>()
            .map(|r| safe_reason(&r.0, &[]))
            .unwrap_or_else(|| status.to_string());
        (Outcome::Refused, Some(why))
    } else {
        (Outcome::Error, Some(status.to_string()))
    };
    let who = note.who.clone().unwrap_or(if presented {
        Who::Unrecognized
    } else {
        Who::Anonymous
    });
    let (credential, credential_id) = who.columns();
    let repo = repo.or(note.repos);
    let mut row = AuditRow {
        at_ms,
        pid: std::process::id() as i64,
        surface: surface.as_str().into(),
        credential,
        credential_id,
        action,
        repo,
        paths: note.paths,
        outcome: outcome.as_str().into(),
        reason,
        duration_us: started.elapsed().as_micros() as i64,
        head_before: note.head_before,
        head_after: note.head_after,
        subject: note.subject.as_ref().map(|s| s.0.clone()),
        subject_id: note.subject.map(|s| s.1),
        refs: None,
        changed_paths: note.changed_paths,
    };
    if let Some(mut pending) = note.push {
        match pending.try_recv() {
            Ok((outcome, written)) => {
                push::apply(&mut row, outcome);
                trail.record_durable(row).await;
                let _ = written.send(());
            }
            // Still running: the record waits for the push's end, off the answer's path
            // (the answer streams meanwhile, and stays open until the record is written).
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                tokio::spawn(async move {
                    let report = pending.await;
                    row.duration_us = started.elapsed().as_micros() as i64;
                    match report {
                        Ok((outcome, written)) => {
                            push::apply(&mut row, outcome);
                            trail.record_durable(row).await;
                            let _ = written.send(());
                        }
                        // The push's task ended without a word (a panic): the status
                        // said 200 while its outcome is unknown.
                        Err(_) => {
                            row.outcome = Outcome::Error.as_str().into();
                            row.reason = Some("the push's outcome is unknown".into());
                            trail.record_durable(row).await;
                        }
                    }
                });
            }
            // The handler answered without reporting (an error status, a probe): the
            // status says it.
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                trail.record_durable(row).await;
            }
        }
        return response;
    }
    if writes {
        trail.record_durable(row).await;
    } else {
        trail.record(row);
    }
    response
}
