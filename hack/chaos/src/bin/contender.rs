//! One chaos contender: for `--run-for-ms`, picks one of the `--lease`s at
//! random, holds it with `LeaseKeeper` for a random while (releasing it) or
//! until the keeper signals a loss, and records every step as a JSON line
//! (`berth_chaos::Event`) in `--out`. The chaos run starts twenty of these
//! and SIGSTOPs some of them for longer than the TTL.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_chaos::clock::{mono_now, mono_of, wall_now};
use berth_chaos::history::{Event, LOSS_DEADLINE, LOSS_REFUSED, LOSS_REJECTED};
use berth_client::{Client, Error, KeeperOptions, KeeperState, LeaseKeeper, Loss};
use clap::Parser;
use tokio::time::Instant;

/// A chaos contender for Berth leases (started by the chaos run).
#[derive(Parser, Debug)]
struct Args {
    /// The apiserver, `https://127.0.0.1:<port>`.
    #[arg(long)]
    url: String,
    /// The CA that signed the apiserver's certificate.
    #[arg(long)]
    ca_file: PathBuf,
    /// A file holding the API key.
    #[arg(long)]
    api_key_file: PathBuf,
    #[arg(long)]
    namespace: String,
    /// A lease to compete for; repeat for more.
    #[arg(long = "lease", required = true)]
    leases: Vec<String>,
    /// The holder identity, e.g. `chaos/c07`.
    #[arg(long)]
    holder: String,
    #[arg(long, default_value_t = 4)]
    ttl_seconds: u64,
    /// How long to compete; a lease held at the end is released.
    #[arg(long)]
    run_for_ms: u64,
    /// Where to append the JSON lines.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Writes one JSON line per event, unbuffered, so a SIGKILL loses nothing written.
struct Recorder(File);

impl Recorder {
    fn record(&mut self, event: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.0.write_all(&line).context("writing the history")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::builder(&args.url).api_key_file(&args.api_key_file).ca_file(&args.ca_file)?.build()?;
    let out = File::options().create(true).append(true).open(&args.out).context("opening --out")?;
    let mut recorder = Recorder(out);
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let ttl = Duration::from_secs(args.ttl_seconds);
    let end = Instant::now() + Duration::from_millis(args.run_for_ms);
    while Instant::now() < end {
        let lease = args.leases[rng.usize(..args.leases.len())].clone();
        let wait = Duration::from_secs(rng.u64(0..=3));
        let options = KeeperOptions::new(&args.namespace, &lease, &args.holder, ttl).wait(wait);
        let (holder, lease_name) = (args.holder.clone(), lease.clone());
        let attempt = tokio::time::timeout(wait + ttl * 3, LeaseKeeper::acquire(client.clone(), options)).await;
        match attempt {
            Ok(Ok(keeper)) => {
                let hold_for = Duration::from_millis(rng.u64(args.ttl_seconds * 500..=args.ttl_seconds * 3000));
                hold(&mut recorder, keeper, &holder, &lease, (Instant::now() + hold_for).min(end)).await?;
            }
            Ok(Err(Error::NotAcquired { current })) => {
                recorder.record(&Event::Refused { holder, lease: lease_name, current: current.holder })?;
            }
            Ok(Err(e)) => {
                let error = e.to_string();
                recorder.record(&Event::AcquireFailed { holder, lease: lease_name, error, at_wall: wall_now() })?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {
                let error = "no answer in time".to_owned();
                recorder.record(&Event::AcquireFailed { holder, lease: lease_name, error, at_wall: wall_now() })?;
            }
        }
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(rng.u64(0..300))).min(end)).await;
    }
    Ok(())
}

/// Holds `keeper`'s grant until `until` or a loss, then releases it.
async fn hold(
    recorder: &mut Recorder,
    keeper: LeaseKeeper,
    holder: &str,
    lease: &str,
    until: Instant,
) -> anyhow::Result<()> {
    let received = mono_now();
    let received_wall = wall_now();
    let grant = keeper.grant().clone();
    let token = grant.fencing_token;
    let mut state = keeper.subscribe();
    let mut deadline = match &*state.borrow_and_update() {
        KeeperState::Held { deadline, .. } => mono_of(deadline.into_std()),
        KeeperState::Lost(_) | KeeperState::Released => received,
    };
    let (holder, lease) = (holder.to_owned(), lease.to_owned());
    recorder.record(&Event::Grant {
        holder: holder.clone(),
        lease: lease.clone(),
        token,
        acquired_at: grant.acquired_at,
        expires_at: grant.expires_at,
        received,
        received_wall,
        deadline,
    })?;
    loop {
        tokio::select! {
            loss = keeper.lost() => {
                let reason = match loss {
                    Loss::DeadlinePassed => LOSS_DEADLINE,
                    // Both say another tenure superseded this one.
                    Loss::Refused { .. } | Loss::TokenChanged { .. } => LOSS_REFUSED,
                    Loss::Rejected(_) => LOSS_REJECTED,
                };
                let (at, at_wall) = (mono_now(), wall_now());
                recorder.record(&Event::Lost {
                    holder: holder.clone(), lease: lease.clone(), token, reason: reason.to_owned(), at, at_wall,
                    acquired_at: grant.acquired_at, expires_at: grant.expires_at, deadline,
                })?;
                // The keeper's task may not have noticed yet (`lost()` has a timer of its
                // own), and dropping the keeper would then release unrecorded: release
                // explicitly, so that the history shows it.
                break;
            }
            changed = state.changed() => {
                let held = match (changed, &*state.borrow_and_update()) {
                    (Ok(()), KeeperState::Held { deadline, .. }) => Some(mono_of(deadline.into_std())),
                    _ => None,
                };
                // A change that keeps the deadline only flags the grant at risk.
                if let Some(next) = held.filter(|next| *next != deadline) {
                    deadline = next;
                    let at = mono_now();
                    recorder.record(&Event::Renewed { holder: holder.clone(), lease: lease.clone(), token, at, deadline })?;
                }
            }
            () = tokio::time::sleep_until(until) => break,
        }
    }
    let (at, at_wall) = (mono_now(), wall_now());
    recorder.record(&Event::ReleaseStarted { holder: holder.clone(), lease: lease.clone(), token, at, at_wall })?;
    let result = keeper.release().await;
    let (at, at_wall) = (mono_now(), wall_now());
    // `release` also answers Ok when the keeper had already lost the lease:
    // only the Released state says the server acknowledged it.
    // A release that got no answer may have been applied; one the server
    // answered with an error was not.
    let event = match (result, &*state.borrow()) {
        (Ok(()), KeeperState::Released) => Event::ReleaseAcked { holder, lease, token, at, at_wall },
        (Ok(()), other) => {
            let error = format!("not sent: {other:?}");
            Event::ReleaseFailed { holder, lease, token, error, maybe_applied: false }
        }
        (Err(e), _) => {
            let maybe_applied = matches!(e, Error::Transport { .. } | Error::Server { .. } | Error::Decode(_));
            Event::ReleaseFailed { holder, lease, token, error: e.to_string(), maybe_applied }
        }
    };
    recorder.record(&event)
}
