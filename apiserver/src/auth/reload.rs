//! Files reloaded when they change (the keys file, the authentication
//! configuration): a local `stat` every interval, and a bad new version keeps
//! the one in force.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What identifies a version of a file: modification time, size and inode
/// (a Kubernetes Secret or ConfigMap volume swaps a symlink, which changes the inode).
type Stamp = (i64, i64, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

/// A file whose contents are in force until a good new version replaces them.
pub trait Reloadable: Send + Sync + 'static {
    fn path(&self) -> &Path;
    /// What the file is, for logs: "API keys file".
    fn what(&self) -> &'static str;
    /// Reads and applies the file now; on error what was in force stays.
    fn reload_now(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Checks `file` every `interval` and reloads it when its stamp changes,
/// until `shutdown` fires. A missing file (perhaps mid-swap) keeps what is in
/// force and is reported once.
pub async fn watch(file: Arc<dyn Reloadable>, interval: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let path = file.path().to_owned();
    let what = file.what();
    let mut last = stamp(&path).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = match stamp(&path) {
            Ok(now) => Some(now),
            Err(error) => {
                if last.take().is_some() {
                    tracing::error!(path = %path.display(), %error, "{what} unreadable; the previous version stays in force");
                }
                continue;
            }
        };
        if now == last {
            continue;
        }
        last = now;
        match file.reload_now() {
            Ok(()) => tracing::info!(path = %path.display(), "reloaded the {what}"),
            Err(error) => tracing::error!(
                path = %path.display(), %error, "refused the changed {what}; the previous version stays in force"
            ),
        }
    }
}
