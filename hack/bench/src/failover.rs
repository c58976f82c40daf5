//! Scenario 4: how long a lease is out of reach when its holder goes away.
//!
//! - **Crash**: the holder is a separate process (`berth-bench hold`, a
//!   `LeaseKeeper` with defaults) killed with SIGKILL, so it never releases.
//!   A standby `LeaseKeeper` with defaults and a wait is already waiting. The
//!   time runs from the kill until the standby's `LeaseKeeper::acquire`
//!   returns. Most of it is the TTL still left at the kill; the lag after
//!   the old holder's `expiresAt` is reported as well.
//! - **Graceful**: the holder calls `LeaseKeeper::release`; the time runs
//!   from that call until the standby holds.

use std::process::Stdio;
use std::time::Duration;

use berth_client::{Client, KeeperOptions, LeaseKeeper};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{median, ms, ms_between};
use crate::{Error, Result};

const PRIMARY: &str = "bench/primary";
const STANDBY: &str = "bench/standby";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Crash {
    /// From SIGKILL of the holder to the standby's keeper holding.
    pub kill_to_standby_ms: f64,
    /// TTL left on the old holder's `expiresAt` at the kill.
    pub ttl_left_at_kill_ms: f64,
    /// From the old holder's `expiresAt` to the standby's `acquiredAt`.
    pub expiry_to_grant_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Graceful {
    /// `LeaseKeeper::release` of the holder, until it returned.
    pub release_ms: f64,
    /// From the release call to the standby's `acquiredAt` (the grant write).
    pub release_to_grant_ms: f64,
    /// From the release call until the standby's `LeaseKeeper::acquire`
    /// returned (it renews once and reads the lease after a waited grant).
    pub release_to_standby_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failover {
    pub ttl_seconds: i32,
    pub crashes: Vec<Crash>,
    pub graceful: Vec<Graceful>,
    /// Medians.
    pub kill_to_standby_ms: f64,
    pub ttl_left_at_kill_ms: f64,
    pub expiry_to_grant_ms: f64,
    pub release_ms: f64,
    pub release_to_grant_ms: f64,
    pub release_to_standby_ms: f64,
}

/// # Errors
/// When a holder or standby cannot get the lease.
pub async fn run(stack: &Stack, profile: &Profile) -> Result<Failover> {
    let ns = stack.namespace("bench-failover").await;
    let ttl = profile.failover_ttl_seconds;
    let mut crashes = Vec::new();
    for i in 0..profile.slow_repetitions {
        crashes.push(crash(stack, &ns, &format!("crash-{i}"), ttl).await?);
    }
    let mut graceful = Vec::new();
    for i in 0..profile.repetitions {
        graceful.push(handover(stack, &ns, &format!("graceful-{i}"), ttl).await?);
    }
    let m = |values: Vec<f64>| median(&values);
    Ok(Failover {
        ttl_seconds: ttl,
        kill_to_standby_ms: m(crashes.iter().map(|c| c.kill_to_standby_ms).collect()),
        ttl_left_at_kill_ms: m(crashes.iter().map(|c| c.ttl_left_at_kill_ms).collect()),
        expiry_to_grant_ms: m(crashes.iter().map(|c| c.expiry_to_grant_ms).collect()),
        release_ms: m(graceful.iter().map(|g| g.release_ms).collect()),
        release_to_grant_ms: m(graceful.iter().map(|g| g.release_to_grant_ms).collect()),
        release_to_standby_ms: m(graceful.iter().map(|g| g.release_to_standby_ms).collect()),
        crashes,
        graceful,
    })
}

fn options(ns: &str, name: &str, holder: &str, ttl: i32) -> KeeperOptions {
    KeeperOptions::new(ns, name, holder, Duration::from_secs(ttl.unsigned_abs().into()))
}

/// A standby keeper waiting for the lease; resolves to it and the moment it held.
fn standby(
    client: Client,
    ns: &str,
    name: &str,
    ttl: i32,
) -> tokio::task::JoinHandle<Result<(LeaseKeeper, Instant), berth_client::Error>> {
    let wait = Duration::from_secs(u64::from(ttl.unsigned_abs()) * 3 + 10);
    let options = options(ns, name, STANDBY, ttl).wait(wait);
    tokio::spawn(async move {
        let keeper = LeaseKeeper::acquire(client, options).await?;
        Ok((keeper, Instant::now()))
    })
}

async fn crash(stack: &Stack, ns: &str, name: &str, ttl: i32) -> Result<Crash> {
    let exe = std::env::current_exe().map_err(Error::io("locating the berth-bench binary"))?;
    let mut holder = tokio::process::Command::new(exe)
        .args(["hold", "--url", &stack.apiserver.url, "--namespace", ns, "--name", name, "--holder", PRIMARY])
        .arg("--ca-file")
        .arg(&stack.apiserver.ca_file)
        .args(["--ttl-seconds", &ttl.to_string()])
        .env("BERTH_BENCH_API_KEY", stack.apiserver.key(crate::stack::TENANT))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::io("starting berth-bench hold"))?;
    let stdout = holder.stdout.take().ok_or_else(|| Error::Scenario("hold has no stdout".to_owned()))?;
    let line = BufReader::new(stdout).lines().next_line().await.map_err(Error::io("reading berth-bench hold"))?;
    if !line.as_deref().is_some_and(|l| l.starts_with("held ")) {
        return Err(Error::Scenario(format!("berth-bench hold did not hold {name}: {line:?}")));
    }
    let client = stack.client()?;
    let waiting = standby(client.clone(), ns, name, ttl);
    // Crash at a random point of the holder's renew cycle.
    tokio::time::sleep(Duration::from_millis(500 + fastrand::u64(0..u64::from(ttl.unsigned_abs()) * 300))).await;
    holder.start_kill().map_err(Error::io("killing berth-bench hold"))?;
    let (killed, killed_utc) = (Instant::now(), Utc::now());
    let _ = holder.wait().await;
    // A renew in flight at the kill may still land: read after it would have.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let view = client.get(ns, name).await?;
    let old_expiry = view
        .holders
        .iter()
        .find(|h| h.identity == PRIMARY)
        .map(|h| h.expires_at)
        .ok_or_else(|| Error::Scenario(format!("{name}: the killed holder is not listed")))?;
    let (keeper, held) = joined(waiting.await)?;
    let granted = acquired_at(&keeper)?;
    keeper.release().await?;
    Ok(Crash {
        kill_to_standby_ms: ms(held - killed),
        ttl_left_at_kill_ms: ms_between(killed_utc, old_expiry),
        expiry_to_grant_ms: ms_between(old_expiry, granted),
    })
}

async fn handover(stack: &Stack, ns: &str, name: &str, ttl: i32) -> Result<Graceful> {
    let client = stack.client()?;
    let primary = LeaseKeeper::acquire(client.clone(), options(ns, name, PRIMARY, ttl)).await?;
    let waiting = standby(client, ns, name, ttl);
    // Let the standby's waiting acquire reach the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (started, started_utc) = (Instant::now(), Utc::now());
    primary.release().await?;
    let released = Instant::now();
    let (keeper, held) = joined(waiting.await)?;
    let granted = acquired_at(&keeper)?;
    keeper.release().await?;
    Ok(Graceful {
        release_ms: ms(released - started),
        release_to_grant_ms: ms_between(started_utc, granted),
        release_to_standby_ms: ms(held - started),
    })
}

fn joined<T>(result: Result<Result<T, berth_client::Error>, tokio::task::JoinError>) -> Result<T> {
    result.map_err(|e| Error::Scenario(format!("standby task: {e}")))?.map_err(Error::from)
}

fn acquired_at(keeper: &LeaseKeeper) -> Result<DateTime<Utc>> {
    keeper.grant().acquired_at.ok_or_else(|| Error::Scenario("a grant without acquiredAt".to_owned()))
}

/// `berth-bench hold`: holds a lease with a default `LeaseKeeper`, prints
/// `held <token>` once it does, and keeps it until killed, lost, or
/// `max_hold` has passed (then it releases).
///
/// # Errors
/// When the lease cannot be acquired.
pub async fn hold(client: Client, options: KeeperOptions, max_hold: Duration) -> Result<()> {
    let keeper = LeaseKeeper::acquire(client, options).await?;
    println!("held {}", keeper.fencing_token());
    tokio::select! {
        loss = keeper.lost() => return Err(Error::Scenario(format!("lost the lease: {loss}"))),
        () = tokio::time::sleep(max_hold) => {}
    }
    keeper.release().await?;
    Ok(())
}
