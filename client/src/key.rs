//! The bearer key a [`crate::Client`] sends, and a key file read afresh when
//! it changes.
//!
//! Projected service-account tokens rotate: the kubelet replaces the file
//! (through an atomic swap of a `..data` symlink) well before the token
//! expires. A key file is therefore looked at again at most once per
//! [`KEY_FILE_RECHECK`], and at once after the server answered 401 (the
//! request is then sent once more when the file held a new key). While the
//! file is briefly missing or empty (mid-swap), the last good key is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

/// How often, at most, a key file is read again.
pub const KEY_FILE_RECHECK: Duration = Duration::from_secs(1);

/// Where the key comes from.
#[derive(Clone)]
pub(crate) enum BearerKey {
    Plain(Arc<str>),
    File(Arc<KeyFile>),
}

impl BearerKey {
    /// The key to send now.
    pub(crate) fn current(&self) -> Arc<str> {
        match self {
            BearerKey::Plain(key) => key.clone(),
            BearerKey::File(file) => file.current_at(Instant::now()),
        }
    }

    /// The server refused the key: reads the file again now. True when it
    /// now holds another key, so the refused request is worth sending again.
    pub(crate) fn reread_after_refusal(&self) -> bool {
        match self {
            BearerKey::Plain(_) => false,
            BearerKey::File(file) => file.reread(Instant::now()),
        }
    }
}

impl std::fmt::Debug for BearerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        match self {
            BearerKey::Plain(_) => f.write_str("<redacted>"),
            BearerKey::File(file) => write!(f, "<redacted, from {}>", file.path.display()),
        }
    }
}

/// A key file and the last good key read from it.
pub(crate) struct KeyFile {
    path: PathBuf,
    state: Mutex<KeyFileState>,
}

struct KeyFileState {
    key: Arc<str>,
    /// When the file was last read.
    read_at: Instant,
}

impl KeyFile {
    /// Reads the file once, so that a wrong path fails at build time.
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or holds only whitespace.
    pub(crate) fn open(path: &Path, now: Instant) -> Result<Self, Error> {
        let key = read_key(path)
            .map_err(|e| Error::Config(format!("reading API key file {}: {e}", path.display())))?
            .ok_or_else(|| Error::Config("the API key is empty".to_owned()))?;
        Ok(Self { path: path.to_owned(), state: Mutex::new(KeyFileState { key, read_at: now }) })
    }

    /// The key as of `now`: the file is read again when it was last read
    /// [`KEY_FILE_RECHECK`] ago or more. A missing, unreadable or empty file
    /// keeps the last good key.
    pub(crate) fn current_at(&self, now: Instant) -> Arc<str> {
        let mut state = self.lock();
        if now.saturating_duration_since(state.read_at) >= KEY_FILE_RECHECK {
            self.read_into(&mut state, now);
        }
        state.key.clone()
    }

    /// Reads the file now, whenever it was last read. True when the key changed.
    pub(crate) fn reread(&self, now: Instant) -> bool {
        self.read_into(&mut self.lock(), now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyFileState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_into(&self, state: &mut KeyFileState, now: Instant) -> bool {
        state.read_at = now;
        match read_key(&self.path) {
            Ok(Some(key)) if key != state.key => {
                tracing::debug!(path = %self.path.display(), "the API key file changed; sending the new key");
                state.key = key;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "API key file unreadable; keeping the last key");
                false
            }
        }
    }
}

/// The trimmed contents, or `None` when there is nothing but whitespace.
fn read_key(path: &Path) -> std::io::Result<Option<Arc<str>>> {
    let text = std::fs::read_to_string(path)?;
    let key = text.trim();
    Ok((!key.is_empty()).then(|| Arc::from(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("berth-key-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_changed_file_is_read_after_the_recheck_interval() {
        let dir = Scratch::new("recheck");
        let path = dir.0.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let start = Instant::now();
        let file = KeyFile::open(&path, start).unwrap();
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(&*file.current_at(start + KEY_FILE_RECHECK / 2), "first", "read again too early");
        assert_eq!(&*file.current_at(start + KEY_FILE_RECHECK), "second");
    }

    #[test]
    fn a_refused_key_is_read_again_at_once() {
        let dir = Scratch::new("refused");
        let path = dir.0.join("token");
        std::fs::write(&path, "first").unwrap();
        let start = Instant::now();
        let key = BearerKey::File(Arc::new(KeyFile::open(&path, start).unwrap()));
        assert!(!key.reread_after_refusal(), "an unchanged file is no reason to send again");
        std::fs::write(&path, "second").unwrap();
        assert!(key.reread_after_refusal());
        assert_eq!(&*key.current(), "second");
        assert!(!BearerKey::Plain(Arc::from("plain")).reread_after_refusal());
    }

    #[test]
    fn a_missing_or_empty_file_keeps_the_last_good_key() {
        let dir = Scratch::new("missing");
        let path = dir.0.join("token");
        std::fs::write(&path, "first").unwrap();
        let start = Instant::now();
        let file = KeyFile::open(&path, start).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&*file.current_at(start + KEY_FILE_RECHECK), "first");
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(&*file.current_at(start + 2 * KEY_FILE_RECHECK), "first");
        std::fs::write(&path, "third").unwrap();
        assert_eq!(&*file.current_at(start + 3 * KEY_FILE_RECHECK), "third");
    }

    /// The kubelet's projected volume: `token -> ..data/token`, and `..data`
    /// is a symlink to a timestamped directory that is swapped atomically.
    #[test]
    fn a_symlink_swap_like_the_kubelets_is_followed() {
        let dir = Scratch::new("swap");
        let root = &dir.0;
        let make_version = |name: &str, token: &str| {
            std::fs::create_dir(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("token"), token).unwrap();
        };
        make_version("..v1", "first");
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/token", root.join("token")).unwrap();
        let start = Instant::now();
        let file = KeyFile::open(&root.join("token"), start).unwrap();

        make_version("..v2", "second");
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(root.join("..v1")).unwrap();
        assert_eq!(&*file.current_at(start + KEY_FILE_RECHECK), "second");
    }

    #[test]
    fn open_refuses_a_missing_or_empty_file() {
        let dir = Scratch::new("open");
        let path = dir.0.join("token");
        assert!(
            matches!(KeyFile::open(&path, Instant::now()), Err(Error::Config(m)) if m.contains("reading API key file"))
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(KeyFile::open(&path, Instant::now()), Err(Error::Config(m)) if m.contains("empty")));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", BearerKey::Plain(Arc::from("s3cret")));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
