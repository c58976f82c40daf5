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

    // The command runs through `berth __exec-child`, which asks the kernel to
    // SIGKILL it when this process dies (even by SIGKILL), then execs it: a
    // command never outlives the hold that guards it.
    let this = std::env::current_exe().map_err(|e| CliError::Other(format!("finding the berth binary: {e}")))?;
    let mut child = Command::new(this)
        .arg("__exec-child")
        .arg(std::process::id().to_string())
        .arg("--")
        .args(args.command)
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

/// The body of `berth __exec-child PARENT -- COMMAND…`: sets the parent-death
/// signal to SIGKILL, makes sure PARENT is still the parent (it may have died
/// before the signal was set), then replaces this process with COMMAND.
/// Returns only on failure: 127 when COMMAND cannot be run, as shells do.
///
/// # Caveats
/// The kernel sends the signal when the parent's spawning thread ends: `berth`
/// spawns from its main thread, which lives as long as the process.
pub fn exec_child(parent: i32, command: &[String]) -> u8 {
    use std::ffi::CString;

    use nix::sys::prctl;
    use nix::unistd::{execvp, getppid};

    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("berth: setting the parent-death signal: {e}");
        return 127;
    }
    if getppid() != Pid::from_raw(parent) {
        eprintln!("berth: lease hold ended before {} started", command[0]);
        return 127;
    }
    let args: Result<Vec<CString>, _> = command.iter().map(|a| CString::new(a.as_bytes())).collect();
    let Ok(args) = args else {
        eprintln!("berth: starting {}: an argument contains a NUL byte", command[0]);
        return 127;
    };
    let error = match execvp(&args[0], &args) {
        Err(error) => error,
        Ok(never) => match never {},
    };
    eprintln!("berth: starting {}: {error}", command[0]);
    127
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
