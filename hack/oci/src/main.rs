//! `oci-image`: packs files into an OCI image archive that
//! `ctr images import` (and so a node) takes, named by `--name`.
//!
//! ```sh
//! oci-image --name berth.local/apiserver:dev --out apiserver.tar \
//!   --file target/release/apiserver:/usr/local/bin/apiserver:0755 \
//!   --user 65532:65532 --entrypoint /usr/local/bin/apiserver --expose 8443
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_oci::{Entry, Runtime, archive};
use clap::Parser;

/// Pack files into an OCI image archive (one layer, deterministic), named for `ctr images import`.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The image reference, NAME:TAG (for example berth.local/apiserver:dev).
    #[arg(long)]
    name: String,
    /// Where to write the archive.
    #[arg(long)]
    out: PathBuf,
    /// A file of the host copied in: SRC:DEST[:MODE], MODE in octal (default 0644).
    #[arg(long = "file", value_name = "SRC:DEST[:MODE]")]
    files: Vec<String>,
    /// A symbolic link: DEST:TARGET.
    #[arg(long = "symlink", value_name = "DEST:TARGET")]
    symlinks: Vec<String>,
    /// An empty directory: DEST[:MODE] (parents of files are made anyway, 0755).
    #[arg(long = "dir", value_name = "DEST[:MODE]")]
    dirs: Vec<String>,
    /// The entrypoint, one flag per argument.
    #[arg(long = "entrypoint")]
    entrypoint: Vec<String>,
    /// The default arguments, one flag per argument.
    #[arg(long = "cmd")]
    cmd: Vec<String>,
    /// The user to run as, UID:GID (default root).
    #[arg(long, default_value = "")]
    user: String,
    /// An environment variable, KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The working directory.
    #[arg(long, default_value = "")]
    workdir: String,
    /// A TCP port the image listens on (documentation for its users).
    #[arg(long = "expose", value_name = "PORT")]
    exposed_ports: Vec<u16>,
}

fn mode(text: Option<&str>, default: u32) -> anyhow::Result<u32> {
    text.map_or(Ok(default), |m| u32::from_str_radix(m, 8).with_context(|| format!("{m:?} is not an octal mode")))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut entries = Vec::new();
    for spec in &args.files {
        let mut parts = spec.splitn(3, ':');
        let (Some(src), Some(dest)) = (parts.next(), parts.next()) else {
            bail!("--file {spec:?}: give SRC:DEST[:MODE]")
        };
        let data = std::fs::read(src).with_context(|| format!("reading {src}"))?;
        entries.push(Entry::File { path: dest.to_owned(), mode: mode(parts.next(), 0o644)?, data });
    }
    for spec in &args.symlinks {
        let Some((path, target)) = spec.split_once(':') else { bail!("--symlink {spec:?}: give DEST:TARGET") };
        entries.push(Entry::Symlink { path: path.to_owned(), target: target.to_owned() });
    }
    for spec in &args.dirs {
        let (path, m) = spec.split_once(':').map_or((spec.as_str(), None), |(p, m)| (p, Some(m)));
        entries.push(Entry::Dir { path: path.to_owned(), mode: mode(m, 0o755)? });
    }
    let runtime = Runtime {
        entrypoint: args.entrypoint,
        cmd: args.cmd,
        user: args.user,
        env: args.env,
        workdir: args.workdir,
        exposed_ports: args.exposed_ports,
    };
    let bytes = archive(&args.name, &entries, &runtime)?;
    // Written whole or not at all: a reader never sees half an archive.
    let partial = args.out.with_extension("tar.partial");
    std::fs::write(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}
