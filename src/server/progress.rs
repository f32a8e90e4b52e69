//! Progress notifications for a request whose client asked for them: the work reports
//! `(done, of)` from its blocking thread through a plain function, and one task per
//! request forwards each report to the client, in order.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;

/// What a report is called: the notification's total (if the work knows one) and its
/// message, from the two numbers reported.
pub(super) type Describe = fn(u64, u64) -> (Option<u64>, String);

/// A reporter forwarding to the client of `ctx`, or `None` when its request carries no
/// progress token.
pub(super) fn reporter(
    ctx: &RequestContext<RoleServer>,
    describe: Describe,
) -> Option<Arc<dyn Fn(u64, u64) + Send + Sync>> {
    let token = ctx.meta.get_progress_token()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let peer = ctx.peer.clone();
    tokio::spawn(async move {
        while let Some((done, of)) = rx.recv().await {
            let (total, message) = describe(done, of);
            let mut note =
                ProgressNotificationParam::new(token.clone(), done as f64).with_message(message);
            if let Some(total) = total {
                note = note.with_total(total as f64);
            }
            if peer.notify_progress(note).await.is_err() {
                break;
            }
        }
    });
    Some(Arc::new(move |done, of| {
        let _ = tx.send((done, of));
    }))
}
