//! Static API keys: a file of `<tenant>:<sha256-hex>[:<ns>,<ns>…[:<cluster-set>]]` lines
//! ([`KeysFile`]), reloaded when it changes. Only hashes are stored, compared
//! in constant time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::reload::Reloadable;
use super::{Authenticator, Namespaces, Tenant, Verdict};

/// Why a keys file was refused. `Display` names the line. Separate from
/// [`super::config::ConfigError`]: the two files are loaded, reloaded and
/// reported on their own, and a bad one of either keeps the last good one.
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
    /// Tenant → its namespaces and cluster set.
    tenants: BTreeMap<String, (Namespaces, Option<String>)>,
}

impl KeySet {
    /// Parses the keys-file format. Blank lines and `#` lines are ignored.
    /// The namespaces field may be left empty (every namespace) when a
    /// cluster set follows it.
    ///
    /// # Errors
    /// On the first bad line: a tenant or cluster set that is not a DNS
    /// label, a hash that is not 64 hex digits, a bad namespace, a hash used
    /// twice, or one tenant with two different namespace lists or cluster sets.
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
                _ => return Err(err("expected <tenant>:<sha256-hex>[:<namespaces>[:<cluster-set>]]")),
            };
            let (namespaces, cluster_set) = (fields.next(), fields.next());
            if fields.next().is_some() {
                return Err(err("too many ':'-separated fields"));
            }
            if cluster_set.is_some_and(|set| !berth_api::wire::is_dns_label(set)) {
                return Err(err("cluster set must be a DNS label"));
            }
            let namespaces = namespaces.filter(|list| !(list.is_empty() && cluster_set.is_some()));
            if !berth_api::wire::is_dns_label(tenant) {
                return Err(err("tenant must be a DNS label"));
            }
            let hash = parse_hash(hash).ok_or_else(|| err("hash must be 64 hex digits (sha256)"))?;
            let namespaces = match namespaces {
                None => Namespaces::All,
                Some(list) => {
                    let set: BTreeSet<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
                    if !set.iter().all(|n| berth_api::wire::is_dns_label(n)) {
                        return Err(err("namespaces must be comma-separated DNS labels"));
                    }
                    Namespaces::Only(Arc::new(set))
                }
            };
            if set.entries.iter().any(|e| e.hash == hash) {
                return Err(err("the same key hash appears twice"));
            }
            let cluster_set = cluster_set.map(str::to_owned);
            match set.tenants.get(tenant) {
                Some((existing, _)) if *existing != namespaces => {
                    return Err(err("a tenant's lines must list the same namespaces"));
                }
                Some((_, existing)) if *existing != cluster_set => {
                    return Err(err("a tenant's lines must name the same cluster set"));
                }
                _ => {}
            }
            set.tenants.insert(tenant.to_owned(), (namespaces, cluster_set));
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

impl KeySet {
    /// The tenant of `key`: hashes it and compares it with every entry in constant time.
    pub fn tenant_of(&self, key: &str) -> Option<Tenant> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        let entry = found?;
        let (namespaces, cluster_set) = self.tenants.get(&entry.tenant).cloned().unwrap_or((Namespaces::All, None));
        Some(Tenant { name: entry.tenant.clone(), namespaces, cluster_set })
    }
}

impl Authenticator for KeySet {
    fn authenticate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Verdict> {
        let tenant = self.tenant_of(key);
        Box::pin(async move { Ok(tenant) })
    }
}

/// A keys file on disk, reloaded when it changes. A bad reload keeps the
/// previous keys and logs an error.
pub struct KeysFile {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
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
}

impl Reloadable for KeysFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> &'static str {
        "API keys file"
    }

    fn reload_now(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let keys = self.reload()?;
        tracing::info!(path = %self.path.display(), keys, "read the API keys file");
        Ok(())
    }
}

fn read_set(path: &Path) -> Result<KeySet, KeysFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read { path: path.to_owned(), source })?;
    KeySet::parse(&text)
}

impl Authenticator for KeysFile {
    fn authenticate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Verdict> {
        let tenant = self.current().tenant_of(key);
        Box::pin(async move { Ok(tenant) })
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
        let a = set.tenant_of(KEY_A).unwrap();
        let b = set.tenant_of("secret-b").unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str()), ("team-a", "team-b"));
        assert!(a.may_use_namespace("anything"));
        assert!(b.may_use_namespace("ns2"));
        assert!(!b.may_use_namespace("ns3"));
        assert_eq!(set.tenant_of("wrong"), None);
        assert_eq!(set.tenant_of(""), None);
    }

    #[test]
    fn a_fourth_field_names_the_tenants_cluster_set() {
        let text = format!("east:{}::members\nwest:{}:ns1:members\n", hash(KEY_A), hash("secret-b"));
        let set = KeySet::parse(&text).unwrap();
        let (east, west) = (set.tenant_of(KEY_A).unwrap(), set.tenant_of("secret-b").unwrap());
        assert_eq!((east.cluster_set.as_deref(), west.cluster_set.as_deref()), (Some("members"), Some("members")));
        assert!(east.may_use_namespace("anything"), "an empty namespaces field before a set: every namespace");
        assert!(!west.may_use_namespace("ns2"));
        let plain = KeySet::parse(&format!("t:{}:ns1", hash(KEY_A))).unwrap();
        assert_eq!(plain.tenant_of(KEY_A).unwrap().cluster_set, None);
    }

    #[test]
    fn uppercase_hex_hashes_are_accepted() {
        let set = KeySet::parse(&format!("t:{}", hash(KEY_A).to_uppercase())).unwrap();
        assert_eq!(set.tenant_of(KEY_A).unwrap().name, "t");
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
            (format!("t:{h}:a:b:c"), 1),
            (format!("t:{h}:a:Bad_Set"), 1),
            (format!("t:{h}:"), 1),
            (format!("t:{h}::s\nt:{}::r", hash("other")), 2),
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
