//! The application's STDERR: logged with the request it belongs to, never
//! sent to the client. PHP's error lines are split into fields
//! (`php_stderr`) so logs can be searched by them.

use super::php_stderr;

/// Which request STDERR lines belong to.
#[derive(Debug, Clone)]
pub struct StderrContext {
    pub request_id: u64,
    /// SCRIPT_NAME, moved here from the routed script once params are built.
    pub script: String,
    /// The SCRIPT_FILENAME we sent, for php-fpm's "Primary script unknown".
    pub script_filename: std::path::PathBuf,
}

pub fn log_stderr(ctx: &StderrContext, data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(e) = php_stderr::parse(line) {
            tracing::warn!(
                request_id = ctx.request_id,
                script = %ctx.script,
                php_level = e.level,
                php_file = e.file,
                php_line = e.line,
                "php {}: {}",
                e.level,
                e.message
            );
        } else {
            tracing::warn!(request_id = ctx.request_id, script = %ctx.script, "php stderr: {line}");
            if names_missing_script(line) {
                // Usually php-fpm runs elsewhere (a container) with the app
                // mounted at another path than ours.
                tracing::warn!(
                    request_id = ctx.request_id,
                    script_filename = %ctx.script_filename.display(),
                    "php-fpm cannot find the script we sent as SCRIPT_FILENAME={}: that path \
                     must exist where php-fpm runs (in a container, mount the app at the \
                     same path in both containers)",
                    ctx.script_filename.display()
                );
            }
        }
    }
}

/// php-fpm's words for "SCRIPT_FILENAME does not exist here".
fn names_missing_script(line: &str) -> bool {
    line.contains("Primary script unknown") || line.contains("File not found.")
}
