//! Repository files as MCP resources: `repo://{repo_id}/{path}`, so a client can attach
//! a file without a tool call. Listing is paged and bounded; reading passes the same
//! guard as `read_file`.

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};

use super::read_tools::MAX_READ_BYTES;
use super::{RepoServer, ToolFailure};
use crate::backend::BackendError;
use crate::paths::RepoPath;

/// Resources per `resources/list` page.
pub const RESOURCES_PER_PAGE: usize = 200;
/// Files listed per repo in all (the rest stay reachable through the template).
pub const MAX_RESOURCES_PER_REPO: usize = 5_000;

const SCHEME: &str = "repo://";

/// The resource template for repository files.
pub(crate) fn template() -> ResourceTemplate {
    let mut t = ResourceTemplate::new(format!("{SCHEME}{{repo_id}}/{{path}}"), "repo-file")
        .with_title("A file of a repository in scope")
        .with_description(
            "The text of `path` at the head of repo `repo_id` (a UUID from list_repos).",
        );
    t.mime_type = Some("text/plain".into());
    t
}

fn to_mcp(e: ToolFailure) -> McpError {
    match e {
        ToolFailure::Refused(m) => McpError::invalid_params(m, None),
        ToolFailure::Backend(BackendError::NotFound(m)) => McpError::resource_not_found(m, None),
        ToolFailure::Backend(e) if e.is_internal() => {
            tracing::error!(cause = %e, "resource read failed inside the server");
            McpError::internal_error("the server failed to read this resource", None)
        }
        ToolFailure::Backend(e) => McpError::invalid_params(e.to_string(), None),
    }
}

/// One page of the files in scope, repo by repo; the cursor is an offset.
pub(crate) async fn list(
    server: &RepoServer,
    cursor: Option<String>,
) -> Result<ListResourcesResult, McpError> {
    let offset: usize = match cursor {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| McpError::invalid_params("invalid cursor", None))?,
    };
    server.check_credential().await.map_err(to_mcp)?;
    let mut skipped = 0usize;
    let mut page = Vec::new();
    let mut more = false;
    'repos: for id in server.scope.repos() {
        // A repo still being imported has no files yet; it is listed once whole.
        if server.imports.unfinished(id) {
            continue;
        }
        let files = server
            .backend
            .list_files(id)
            .await
            .map_err(|e| to_mcp(e.into()))?;
        let paths: Vec<&String> = files
            .paths
            .iter()
            .filter(|p| server.scope.sees(p))
            .collect();
        let listed = paths.len().min(MAX_RESOURCES_PER_REPO);
        if skipped + listed <= offset {
            skipped += listed;
            continue;
        }
        for path in paths
            .into_iter()
            .take(listed)
            .skip(offset.saturating_sub(skipped))
        {
            if page.len() == RESOURCES_PER_PAGE {
                more = true;
                break 'repos;
            }
            let mut r = Resource::new(format!("{SCHEME}{id}/{path}"), path.clone());
            r.mime_type = Some("text/plain".into());
            page.push(r);
        }
        skipped += listed;
    }
    let next = offset + page.len();
    let mut result = ListResourcesResult::with_all_items(page);
    if more {
        result.next_cursor = Some(next.to_string());
    }
    Ok(result)
}

/// Read `repo://{repo_id}/{path}`.
pub(crate) async fn read(server: &RepoServer, uri: &str) -> Result<ReadResourceResult, McpError> {
    // No such resource here, with its URI in the error's data (as SEP-2164 asks).
    let not_found = |message: String| {
        McpError::resource_not_found(message, Some(serde_json::json!({ "uri": uri })))
    };
    let rest = uri.strip_prefix(SCHEME).ok_or_else(|| {
        not_found(format!(
            "`{uri}` is not a repo:// resource; use repo://{{repo_id}}/{{path}}"
        ))
    })?;
    let (repo_id, path) = rest.split_once('/').ok_or_else(|| {
        McpError::invalid_params(
            format!("`{uri}` names no file; use repo://{{repo_id}}/{{path}}"),
            None,
        )
    })?;
    let id = server
        .guard_repo(&RepoServer::READ_FILE, repo_id)
        .await
        .map_err(to_mcp)?;
    if let Some(listed) = server.imports.listed(&id) {
        return Err(McpError::invalid_params(
            format!("repo {id} is not readable yet: {}", listed.message),
            None,
        ));
    }
    let path = RepoPath::parse(path).map_err(|e| to_mcp(e.into()))?;
    let file = server.read_visible(&id, &path).await.map_err(|e| match e {
        ToolFailure::Backend(BackendError::NotFound(m)) => not_found(m),
        other => to_mcp(other),
    })?;
    if let Some(size) = file.binary {
        return Err(McpError::invalid_params(
            format!(
                "`{}` is a binary file ({size} bytes); its content is not returned as text",
                crate::text::one_line(path.as_str()),
            ),
            None,
        ));
    }
    // The same cap as read_file, whose line ranges reach the rest.
    if file.content.len() > MAX_READ_BYTES {
        return Err(McpError::invalid_params(
            format!(
                "`{}` is {} bytes, over the {MAX_READ_BYTES} bytes a resource read returns; \
                 read it in parts with read_file and start_line / end_line",
                crate::text::one_line(path.as_str()),
                file.content.len()
            ),
            None,
        ));
    }
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        file.content,
        uri,
    )]))
}
