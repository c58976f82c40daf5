//! OCI image archives from a list of files, with no Docker engine and no
//! registry: one gzip-compressed layer, an image config, a manifest, and an
//! index whose `io.containerd.image.name` annotation names the image, so that
//! `ctr images import` lists it under that reference. `make images` packs
//! Berth's images with it, and `hack/node` the node's pause and busybox.
//!
//! # Guarantees
//! The output is deterministic: entries are sorted, every time stamp is 0 and
//! every owner is root, so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One thing in the image's file system. Paths are absolute (`/etc/passwd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File { path: String, mode: u32, data: Vec<u8> },
    Symlink { path: String, target: String },
    Dir { path: String, mode: u32 },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Symlink { path, .. } | Entry::Dir { path, .. } => path,
        }
    }
}

/// What the image runs: the image config's `config` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `uid:gid`, or empty for root.
    pub user: String,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub workdir: String,
    /// TCP ports.
    pub exposed_ports: Vec<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not an absolute path")]
    RelativePath(String),
    #[error("{0:?} is in the image twice")]
    Duplicate(String),
    #[error("{0:?} names no tag: give NAME:TAG")]
    NoTag(String),
    #[error("writing the archive")]
    Io(#[from] std::io::Error),
}

/// The layer: an uncompressed tar of `entries`, with every parent directory
/// of an entry present (mode 0755 unless given), in path order.
///
/// # Errors
/// A relative or duplicated path.
pub fn layer(entries: &[Entry]) -> Result<Vec<u8>, Error> {
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in entries {
        let path = entry.path().strip_prefix('/').ok_or_else(|| Error::RelativePath(entry.path().to_owned()))?;
        let path = path.trim_end_matches('/').to_owned();
        if tree.insert(path.clone(), entry.clone()).is_some() {
            return Err(Error::Duplicate(entry.path().to_owned()));
        }
    }
    let parents: Vec<String> = tree
        .keys()
        .flat_map(|path| path.match_indices('/').map(|(i, _)| path[..i].to_owned()).collect::<Vec<_>>())
        .collect();
    for parent in parents {
        tree.entry(parent.clone()).or_insert(Entry::Dir { path: format!("/{parent}"), mode: 0o755 });
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, entry) in &tree {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::File { mode, data, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data.as_slice())?;
            }
            Entry::Symlink { target, .. } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)?;
            }
            Entry::Dir { mode, .. } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{}", sha256(blob)), "size": blob.len()})
}

/// The image as an OCI image layout in a tar archive, named `reference`
/// (`registry/name:tag`).
///
/// # Errors
/// A reference without a tag, or an entry [`layer`] refuses.
pub fn archive(reference: &str, entries: &[Entry], runtime: &Runtime) -> Result<Vec<u8>, Error> {
    let tag = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => tag,
        _ => return Err(Error::NoTag(reference.to_owned())),
    };
    let tar = layer(entries)?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&tar)?;
    let compressed = gzip.finish()?;

    let mut config = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value, empty: bool| {
        if !empty {
            config.insert(key.to_owned(), value);
        }
    };
    put("Entrypoint", runtime.entrypoint.clone().into(), runtime.entrypoint.is_empty());
    put("Cmd", runtime.cmd.clone().into(), runtime.cmd.is_empty());
    put("User", runtime.user.clone().into(), runtime.user.is_empty());
    put("Env", runtime.env.clone().into(), runtime.env.is_empty());
    put("WorkingDir", runtime.workdir.clone().into(), runtime.workdir.is_empty());
    let ports: serde_json::Map<String, serde_json::Value> =
        runtime.exposed_ports.iter().map(|p| (format!("{p}/tcp"), serde_json::json!({}))).collect();
    put("ExposedPorts", ports.into(), runtime.exposed_ports.is_empty());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&tar))]},
    }))
    .expect("JSON serializes");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, &config),
        "layers": [descriptor(LAYER, &compressed)],
    }))
    .expect("JSON serializes");
    let mut named = descriptor(MANIFEST, &manifest);
    named["annotations"] =
        serde_json::json!({"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag});
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [named]}))
        .expect("JSON serializes");

    let mut files = vec![
        Entry::File { path: "/oci-layout".into(), mode: 0o644, data: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec() },
        Entry::File { path: "/index.json".into(), mode: 0o644, data: index },
    ];
    for blob in [config, manifest, compressed] {
        files.push(Entry::File { path: format!("/blobs/sha256/{}", sha256(&blob)), mode: 0o644, data: blob });
    }
    layer(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut tar = tar::Archive::new(archive);
        let mut files = BTreeMap::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.insert(path, data);
        }
        files
    }

    fn json(data: &[u8]) -> serde_json::Value {
        serde_json::from_slice(data).unwrap()
    }

    fn sample() -> Vec<Entry> {
        vec![
            Entry::File { path: "/usr/local/bin/tool".into(), mode: 0o755, data: b"#!tool".to_vec() },
            Entry::Symlink { path: "/bin/sh".into(), target: "busybox".into() },
            Entry::File { path: "/etc/passwd".into(), mode: 0o644, data: b"nonroot:x:65532:65532::/:/\n".to_vec() },
        ]
    }

    #[test]
    fn the_layer_lists_parents_first_in_path_order_with_modes_and_no_time_or_owner() {
        let tar = layer(&sample()).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let listed: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.mtime().unwrap(), h.uid().unwrap())
            })
            .collect();
        let paths: Vec<&str> = listed.iter().map(|(p, ..)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["bin/", "bin/sh", "etc/", "etc/passwd", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"]
        );
        assert!(listed.iter().all(|(_, _, mtime, uid)| *mtime == 0 && *uid == 0));
        assert_eq!(listed.iter().find(|(p, ..)| p == "usr/local/bin/tool").unwrap().1, 0o755);
        assert_eq!(listed.iter().find(|(p, ..)| p == "etc/").unwrap().1, 0o755);
    }

    #[test]
    fn the_same_inputs_give_the_same_archive() {
        let runtime = Runtime { entrypoint: vec!["/usr/local/bin/tool".into()], ..Runtime::default() };
        let a = archive("berth.local/tool:dev", &sample(), &runtime).unwrap();
        let mut reversed = sample();
        reversed.reverse();
        assert_eq!(a, archive("berth.local/tool:dev", &reversed, &runtime).unwrap());
    }

    #[test]
    fn the_index_names_the_image_and_every_digest_matches_its_blob() {
        let runtime = Runtime {
            entrypoint: vec!["/usr/local/bin/tool".into()],
            user: "65532:65532".into(),
            env: vec!["PATH=/bin".into()],
            exposed_ports: vec![8443],
            ..Runtime::default()
        };
        let files = read(&archive("berth.local/tool:dev", &sample(), &runtime).unwrap());
        for (path, data) in files.iter().filter(|(p, _)| p.starts_with("blobs/sha256/") && !p.ends_with('/')) {
            assert_eq!(path.trim_start_matches("blobs/sha256/"), sha256(data), "{path}");
        }
        let blob = |digest: &serde_json::Value| {
            files[&format!("blobs/sha256/{}", digest.as_str().unwrap().trim_start_matches("sha256:"))].clone()
        };
        assert_eq!(json(&files["oci-layout"])["imageLayoutVersion"], "1.0.0");
        let index = json(&files["index.json"]);
        let named = &index["manifests"][0];
        assert_eq!(named["annotations"]["io.containerd.image.name"], "berth.local/tool:dev");
        assert_eq!(named["annotations"]["org.opencontainers.image.ref.name"], "dev");
        let manifest = json(&blob(&named["digest"]));
        assert_eq!(named["size"], blob(&named["digest"]).len());
        let config = json(&blob(&manifest["config"]["digest"]));
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/tool");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["ExposedPorts"]["8443/tcp"], serde_json::json!({}));
        assert!(config["config"].get("Cmd").is_none());

        // The layer unpacks to the files, and its diff id is the digest of the uncompressed tar.
        let compressed = blob(&manifest["layers"][0]["digest"]);
        let mut uncompressed = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed.as_slice()), &mut uncompressed)
            .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{}", sha256(&uncompressed)));
        assert_eq!(read(&uncompressed)["usr/local/bin/tool"], b"#!tool");
    }

    #[test]
    fn bad_input_is_refused() {
        let relative = [Entry::Dir { path: "etc".into(), mode: 0o755 }];
        assert!(matches!(layer(&relative), Err(Error::RelativePath(_))));
        let twice = [Entry::Dir { path: "/etc".into(), mode: 0o755 }, Entry::Dir { path: "/etc/".into(), mode: 0o700 }];
        assert!(matches!(layer(&twice), Err(Error::Duplicate(_))));
        for reference in ["berth.local/tool", "localhost:5000/tool", "tool:"] {
            assert!(matches!(archive(reference, &[], &Runtime::default()), Err(Error::NoTag(_))), "{reference}");
        }
    }
}
