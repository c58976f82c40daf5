//! `berth-proxy`: the test proxy (`berth_testenv::proxy`) as a process, for
//! `make run-clusters`. Its mode is the content of a file, read every 100 ms:
//! `echo blackhole > FILE` cuts the link, `echo pass > FILE` heals it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_testenv::proxy::{Mode, Proxy};
use clap::Parser;

/// A loopback TCP proxy whose mode (pass, blackhole, reset, delay <n>ms|<n>s)
/// is the content of a file.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where clients connect, e.g. 127.0.0.1:9444.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// Where the bytes go, e.g. the Berth apiserver at 127.0.0.1:9443.
    #[arg(long, value_name = "ADDR")]
    upstream: SocketAddr,

    /// The file holding the mode: pass, blackhole, reset, or delay <n>ms|<n>s.
    /// Created with `pass` when missing.
    #[arg(long, value_name = "PATH")]
    mode_file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.mode_file.exists() {
        std::fs::write(&args.mode_file, "pass\n").with_context(|| format!("writing {}", args.mode_file.display()))?;
    }
    let proxy = Proxy::start_on(args.listen, args.upstream)?;
    eprintln!("berth-proxy: {} -> {} (mode file {})", proxy.addr(), proxy.upstream(), args.mode_file.display());
    let mut last_text = String::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let text = std::fs::read_to_string(&args.mode_file).unwrap_or_default();
        if text == last_text {
            continue;
        }
        match text.parse::<Mode>() {
            Ok(mode) => {
                proxy.set_mode(mode);
                eprintln!("berth-proxy {}: mode {mode}", proxy.addr());
            }
            Err(e) => eprintln!("berth-proxy {}: {e}; keeping mode {}", proxy.addr(), proxy.mode()),
        }
        last_text = text;
    }
}
