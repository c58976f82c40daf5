//! Tenancy and auth (DESIGN.md §4): who a key belongs to, and what that
//! tenant may touch.
//!
//! [`Authenticator`] maps a bearer key to a [`Tenant`]; [`Resolver`] says
//! which namespaces and holder identities that tenant may use. [`KeysFile`]
//! implements both from a file of `<tenant>:<sha256-hex>[:<ns>,<ns>…]` lines
//! and reloads it when it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
}

/// Key → tenant.
pub trait Authenticator: Send + Sync + 'static {
    /// The tenant that `key` belongs to, or `None` for an unknown key.
    fn authenticate(&self, key: &str) -> Option<Tenant>;
}

/// Tenant → what it may use.
pub trait Resolver: Send + Sync + 'static {
    /// Whether `tenant` may read and write leases in `namespace`.
    fn may_use_namespace(&self, tenant: &Tenant, namespace: &str) -> bool;

    /// Whether `tenant` may act as `holder`: `<tenant>` itself or anything
    /// under `<tenant>/`.
    fn may_act_as(&self, tenant: &Tenant, holder: &str) -> bool {
        holder.strip_prefix(tenant.name.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Why a keys file was refused. `Display` names the line.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: &'static str },
}

#[derive(Debug)]
struct Entry {
    tenant: String,
    hash: [u8; 32],
}

/// One parsed keys file.
#[derive(Debug, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
    /// Tenant → its namespaces; `None` allows every namespace.
    namespaces: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl KeySet {
    /// Parses the keys-file format. Blank lines and `#` lines are ignored.
    ///
    /// # Errors
    /// On the first bad line: a tenant that is not a DNS label, a hash that is
    /// not 64 hex digits, a bad namespace, a hash used twice, or one tenant
    /// with two different namespace lists.
    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        let mut set = KeySet::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason| KeysFileError::Syntax { line: index + 1, reason };
            let mut fields = line.split(':');
            let (tenant, hash) = match (fields.next(), fields.next()) {
                (Some(t), Some(h)) => (t, h),
                _ => return Err(err("expected <tenant>:<sha256-hex>[:<namespaces>]")),
            };
            let namespaces = fields.next();
            if fields.next().is_some() {
                return Err(err("too many ':'-separated fields"));
            }
            if !berth_api::wire::is_dns_label(tenant) {
                return Err(err("tenant must be a DNS label"));
            }
            let hash = parse_hash(hash).ok_or_else(|| err("hash must be 64 hex digits (sha256)"))?;
            let namespaces = match namespaces {
                None => None,
                Some(list) => {
                    let set: BTreeSet<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
                    if !set.iter().all(|n| berth_api::wire::is_dns_label(n)) {
                        return Err(err("namespaces must be comma-separated DNS labels"));
                    }
                    Some(set)
                }
            };
            if set.entries.iter().any(|e| e.hash == hash) {
                return Err(err("the same key hash appears twice"));
            }
            match set.namespaces.get(tenant) {
                Some(existing) if *existing != namespaces => {
                    return Err(err("a tenant's lines must list the same namespaces"));
                }
                _ => {}
            }
            set.namespaces.insert(tenant.to_owned(), namespaces);
            set.entries.push(Entry { tenant: tenant.to_owned(), hash });
        }
        Ok(set)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

impl Authenticator for KeySet {
    /// Hashes the key and compares it with every entry in constant time.
    fn authenticate(&self, key: &str) -> Option<Tenant> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found.map(|e| Tenant { name: e.tenant.clone() })
    }
}

impl Resolver for KeySet {
    fn may_use_namespace(&self, tenant: &Tenant, namespace: &str) -> bool {
        match self.namespaces.get(&tenant.name) {
            Some(None) => true,
            Some(Some(allowed)) => allowed.contains(namespace),
            None => false,
        }
    }
}

/// A keys file on disk, reloaded when it changes. A bad reload keeps the
/// previous keys and logs an error.
pub struct KeysFile {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
}

/// What identifies a version of the file: modification time, size and inode
/// (a Kubernetes Secret volume swaps a symlink, which changes the inode).
type Stamp = (i64, i64, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
}

impl KeysFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// When the file cannot be read or has a bad line.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KeysFileError> {
        let path = path.into();
        let set = read_set(&path)?;
        Ok(Self { path, current: RwLock::new(Arc::new(set)) })
    }

    /// The keys in force.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("keys lock").clone()
    }

    /// Rereads the file now. On error the old keys stay.
    ///
    /// # Errors
    /// When the file cannot be read or has a bad line.
    pub fn reload(&self) -> Result<usize, KeysFileError> {
        let set = read_set(&self.path)?;
        let count = set.len();
        *self.current.write().expect("keys lock") = Arc::new(set);
        Ok(count)
    }

    /// Checks the file every `interval` (a local `stat`, no network) and
    /// reloads it when its stamp changes, until `shutdown` fires.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last = stamp(&self.path).ok();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let now = match stamp(&self.path) {
                Ok(now) => Some(now),
                Err(error) => {
                    // Missing (perhaps mid-swap): keep the old keys, say so once.
                    if last.take().is_some() {
                        tracing::error!(path = %self.path.display(), %error, "API keys file unreadable; the previous keys stay in force");
                    }
                    continue;
                }
            };
            if now == last {
                continue;
            }
            last = now;
            match self.reload() {
                Ok(keys) => tracing::info!(path = %self.path.display(), keys, "reloaded the API keys file"),
                Err(error) => tracing::error!(
                    path = %self.path.display(), %error, "refused the changed API keys file; the previous keys stay in force"
                ),
            }
        }
    }
}

fn read_set(path: &Path) -> Result<KeySet, KeysFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read { path: path.to_owned(), source })?;
    KeySet::parse(&text)
}

impl Authenticator for KeysFile {
    fn authenticate(&self, key: &str) -> Option<Tenant> {
        self.current().authenticate(key)
    }
}

impl Resolver for KeysFile {
    fn may_use_namespace(&self, tenant: &Tenant, namespace: &str) -> bool {
        self.current().may_use_namespace(tenant, namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "secret-a";
    fn hash(key: &str) -> String {
        Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn two_field_lines_allow_every_namespace_and_three_field_lines_limit_them() {
        let text = format!("# comment\n\nteam-a:{}\nteam-b:{}:ns1,ns2\n", hash(KEY_A), hash("secret-b"));
        let set = KeySet::parse(&text).unwrap();
        let a = set.authenticate(KEY_A).unwrap();
        let b = set.authenticate("secret-b").unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str()), ("team-a", "team-b"));
        assert!(set.may_use_namespace(&a, "anything"));
        assert!(set.may_use_namespace(&b, "ns2"));
        assert!(!set.may_use_namespace(&b, "ns3"));
        assert_eq!(set.authenticate("wrong"), None);
        assert_eq!(set.authenticate(""), None);
    }

    #[test]
    fn uppercase_hex_hashes_are_accepted() {
        let set = KeySet::parse(&format!("t:{}", hash(KEY_A).to_uppercase())).unwrap();
        assert_eq!(set.authenticate(KEY_A).unwrap().name, "t");
    }

    #[test]
    fn holder_must_be_the_tenant_or_under_it() {
        let set = KeySet::default();
        let tenant = Tenant { name: "east".into() };
        assert!(set.may_act_as(&tenant, "east"));
        assert!(set.may_act_as(&tenant, "east/worker-1"));
        assert!(!set.may_act_as(&tenant, "eastern"));
        assert!(!set.may_act_as(&tenant, "west/east"));
        assert!(!set.may_act_as(&tenant, "eas"));
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let h = hash(KEY_A);
        let cases = [
            ("just-a-tenant".to_string(), 1),
            (format!("t:{}", &h[..63]), 1),
            (format!("t:{}z", &h[..63]), 1),
            (format!("Bad_Tenant:{h}"), 1),
            (format!("# ok\nt:{h}:Bad_NS"), 2),
            (format!("t:{h}:a:b"), 1),
            (format!("t:{h}\nu:{h}"), 2),
            (format!("t:{h}:a\nt:{}:b", hash("other")), 2),
        ];
        for (text, line) in cases {
            match KeySet::parse(&text) {
                Err(KeysFileError::Syntax { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
