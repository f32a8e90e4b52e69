//! The scope challenge: a tool call that needs a right the caller's token does not
//! grant is answered `403` with `error="insufficient_scope"` before it reaches the MCP
//! server, so an OAuth client can ask the person for a wider grant (MCP's step-up
//! authorization).
//!
//! Only a lack that a wider token could cure is challenged: a read-only token calling
//! a write tool, a token that may not delegate calling a mint tool. Under the
//! operator's `--read-only`, or without a credential, no token helps; those calls go on
//! to the server, which answers them with a tool error as on stdio.

use axum::body::{Body, Bytes};
use axum::extract::Request;

use crate::scope::{Right, Scope};

/// A tool call beyond what a token grants: its name, the right it needs, and the call
/// as the audit trail records it.
pub struct BeyondGrant {
    /// The tool.
    pub tool: String,
    /// The right it needs.
    pub right: Right,
    /// The call, for its audit record.
    pub call: rmcp::model::CallToolRequestParams,
}

/// The first tool call in `body` (one JSON-RPC message or a batch) that needs a right
/// `scope` lacks for want of a wider token.
pub fn beyond_grant(scope: &Scope, body: &[u8]) -> Option<BeyondGrant> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let messages = match value {
        serde_json::Value::Array(batch) => batch,
        one => vec![one],
    };
    messages.iter().find_map(|m| {
        if m.get("method")?.as_str()? != "tools/call" {
            return None;
        }
        let params = m.get("params")?;
        let name = params.get("name")?.as_str()?;
        let right = crate::server::tool_right(name)?;
        if !scope.lacks_by_credential(right) {
            return None;
        }
        let mut call = rmcp::model::CallToolRequestParams::new(name.to_string());
        if let Some(args) = params.get("arguments").and_then(|a| a.as_object()) {
            call = call.with_arguments(args.clone());
        }
        Some(BeyondGrant {
            tool: name.to_string(),
            right,
            call,
        })
    })
}

/// Reads a request's body (at most `limit` bytes) so that it can be looked at, and
/// gives back a request that carries the same bytes. `None`: the body was too large or
/// broke off; the caller answers `413`.
pub async fn buffered(request: Request, limit: usize) -> Option<(Request, Bytes)> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.ok()?;
    Some((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RepoId, TokenInfo};

    fn token_scope(read_only: bool, can_delegate: bool) -> Scope {
        let info = TokenInfo {
            name: "t".into(),
            repo_ids: vec![RepoId::new_random()],
            read_only,
            can_delegate,
            ..TokenInfo::default()
        };
        Scope::from_token("rlcr-x".into(), &info, &[])
    }

    fn call(name: &str) -> Vec<u8> {
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": {}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_read_only_token_calling_a_write_tool_is_challenged() {
        let s = token_scope(true, false);
        let named = |body: &[u8]| beyond_grant(&s, body).map(|b| (b.tool, b.right));
        assert_eq!(
            named(&call("update_repo_files")),
            Some(("update_repo_files".into(), Right::Write))
        );
        assert_eq!(named(&call("read_file")), None);
        assert_eq!(
            named(&call("create_scoped_token")),
            Some(("create_scoped_token".into(), Right::Mint))
        );
        // Unknown tools and other methods are the server's to answer.
        assert_eq!(named(&call("no_such_tool")), None);
        assert_eq!(named(br#"{"method":"tools/list"}"#), None);
        assert_eq!(named(b"not json"), None);
        // A batch is looked at whole.
        let batch = format!(
            "[{},{}]",
            String::from_utf8(call("read_file")).unwrap(),
            String::from_utf8(call("update_repo_files")).unwrap()
        );
        assert!(beyond_grant(&s, batch.as_bytes()).is_some());
    }

    #[test]
    fn a_lack_no_token_could_cure_is_not_challenged() {
        let rw = token_scope(false, false);
        assert!(beyond_grant(&rw, &call("update_repo_files")).is_none());
        let operator_ro = token_scope(false, true).read_only();
        assert!(beyond_grant(&operator_ro, &call("update_repo_files")).is_none());
        let anonymous = Scope::anonymous([RepoId::new_random()]);
        assert!(beyond_grant(&anonymous, &call("revoke_token")).is_none());
    }
}
