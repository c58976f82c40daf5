//! `berth lease hold`: run a command while holding a lease.

use std::process::ExitStatus;
use std::time::Duration;

use berth_client::{KeeperOptions, LeaseKeeper};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{Global, GrantArgs, HolderArgs};
use crate::exit::CliError;

pub struct HoldArgs<'a> {
    pub name: &'a str,
    pub holder: &'a HolderArgs,
    pub grant: &'a GrantArgs,
    pub grace: Duration,
    pub margin: Option<Duration>,
    pub command: &'a [String],
}

/// Returns the exit code: the command's, or an error (exit 3 on loss).
pub async fn hold(global: &Global, args: HoldArgs<'_>) -> Result<u8, CliError> {
    let client = crate::commands::client(global)?;
    let mut options = KeeperOptions::new(&global.namespace, args.name, &args.holder.holder, args.grant.ttl);
    options.margin = args.margin;
    options.wait = args.grant.wait;
    let keeper =
        LeaseKeeper::acquire(client, options).await.map_err(CliError::client(format!("lease hold {}", args.name)))?;
    let token = keeper.fencing_token().to_string();
    eprintln!(
        "berth: holding {}/{} as {} with fencing token {token}; starting {}",
        global.namespace, args.name, args.holder.holder, args.command[0]
    );

    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("BERTH_LEASE", args.name)
        .env("BERTH_NAMESPACE", &global.namespace)
        .env("BERTH_HOLDER", &args.holder.holder)
        .env("BERTH_FENCING_TOKEN", &token)
        .spawn()
        .map_err(|e| CliError::Other(format!("starting {}: {e}", args.command[0])))?;
    let pid = child.id().map(|id| Pid::from_raw(i32::try_from(id).expect("pids fit in i32")));

    let signal_error = |e: std::io::Error| CliError::Other(format!("installing signal handlers: {e}"));
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_error)?;

    loop {
        let forwarded = tokio::select! {
            status = child.wait() => {
                let code = exit_code(status.map_err(|e| CliError::Other(format!("waiting for the command: {e}")))?);
                if let Err(e) = keeper.release().await {
                    eprintln!("berth: releasing {}: {e} (the lease expires at its TTL)", args.name);
                }
                return Ok(code);
            }
            loss = keeper.lost() => {
                eprintln!("berth: lost lease {}: {loss}; sending SIGTERM to the command", args.name);
                stop(&mut child, pid, args.grace).await;
                return Err(CliError::LeaseLost { name: args.name.to_owned(), loss });
            }
            _ = sigterm.recv() => Signal::SIGTERM,
            _ = sigint.recv() => Signal::SIGINT,
            _ = sighup.recv() => Signal::SIGHUP,
        };
        // Pass the signal on and keep holding until the command exits.
        if let Some(pid) = pid {
            let _ = kill(pid, forwarded);
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; waits for the command to exit.
async fn stop(child: &mut Child, pid: Option<Pid>, grace: Duration) {
    if let Some(pid) = pid {
        let _ = kill(pid, Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        eprintln!("berth: the command did not exit within {grace:?}; sending SIGKILL");
        let _ = child.kill().await;
    }
}

/// The command's exit code, or 128+N when signal N ended it (as shells report it).
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from((128 + signal) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_code_is_the_commands_or_128_plus_the_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
