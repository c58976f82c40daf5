//! The app's processes, as a native sidecar sees them under
//! `shareProcessNamespace: true`: every process of the pod that is not in the
//! gate's own container (its cgroup differs) and is not the sandbox's pause
//! process (PID 1).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How often the gate looks whether the app's processes are gone.
const LOOK: Duration = Duration::from_millis(100);

/// Checks that the pod shares one process namespace: without it the gate is
/// PID 1 of its own namespace and cannot see, let alone stop, the app.
pub fn check_shared_namespace() -> Result<(), String> {
    if std::process::id() == 1 {
        return Err("berth gate must run in a pod with `shareProcessNamespace: true`: \
                    it stops the app by signalling its processes"
            .to_owned());
    }
    Ok(())
}

/// The PIDs of the app's processes now.
pub fn processes() -> Vec<Pid> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != 1 && *pid != me)
        .filter(|pid| {
            // A process that ended meanwhile has no cgroup file: not the app's any more.
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroup| cgroup != own)
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// Sends SIGTERM to the app's processes, then SIGKILL to those still there
/// at `kill_at`; returns once none is left (or, when a process cannot be
/// signalled, once nothing more can be done).
pub async fn stop(kill_at: Instant) {
    let mut signalled = false;
    loop {
        let left = processes();
        if left.is_empty() {
            return;
        }
        let signal = if Instant::now() >= kill_at {
            Some(Signal::SIGKILL)
        } else if !signalled {
            Some(Signal::SIGTERM)
        } else {
            None
        };
        if let Some(signal) = signal {
            eprintln!("berth gate: sending {signal} to the app's processes {left:?}");
            for pid in &left {
                match kill(*pid, signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(error) => {
                        eprintln!(
                            "berth gate: cannot signal process {pid} ({error}): run the app as the gate's user, \
                             or give the gate the KILL capability"
                        );
                        if signal == Signal::SIGKILL {
                            return;
                        }
                    }
                }
            }
            signalled = true;
        }
        let next = if Instant::now() < kill_at { kill_at.min(Instant::now() + LOOK) } else { Instant::now() + LOOK };
        tokio::time::sleep_until(next).await;
    }
}
