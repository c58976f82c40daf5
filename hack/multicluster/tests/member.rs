//! The partition suite (issue 11), black-box against the real binaries: a
//! coordination plane with the Berth apiserver and an operator, and members
//! `east` and `west`, each with a member-mode operator reaching the apiserver
//! through a proxy, and the same lease gating a CronJob (or a Deployment).
//!
//! Judged by watches on both members' targets, at monotonic instants of this
//! process: the order of stops and starts and the absence of overlap are
//! asserted. Durations (time to fence, to take over, the gap between them)
//! are printed as `figure` lines, not asserted; timeouts only bound failures.
//! The tests run one at a time: each starts its own apiserver and operators.

use std::time::{Duration, Instant};

use berth_multicluster::overlap::{first_at_or_after, running_intervals, running_now};
use berth_multicluster::stack::{Config, Stack, Target};
use berth_testenv::proxy::Mode;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Failure bound for the stack's first grant (operators start, the first acquire).
const FIRST_GRANT: Duration = Duration::from_secs(90);
/// Failure bound added to the TTL for anything after a fault.
const SLACK: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Waits until one member runs its target and the global lease has been
/// renewed `heartbeats` times; returns the holder and the other member.
async fn steady(stack: &Stack, heartbeats: usize) -> (String, String) {
    let (holder, _) = stack.wait_for_runner(stack.started, FIRST_GRANT).await;
    let global = stack.wait_heartbeats(heartbeats, FIRST_GRANT).await;
    assert_eq!(global.identity, holder, "the global holder is the cluster that runs:\n{}", stack.logs());
    let other = stack.members.iter().find(|m| m.id != holder).expect("two members").id.clone();
    (holder, other)
}

fn assert_no_overlap(stack: &Stack) {
    let overlaps = stack.overlaps();
    assert!(
        overlaps.is_empty(),
        "clusters ran at once: {overlaps:?}\nhistories: {:?}\n{}",
        stack.histories(),
        stack.logs()
    );
}

#[tokio::test]
async fn steady_state_exactly_one_cluster_runs_for_three_heartbeats() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(Config::new(), "mc-steady").await;
    let (holder, other) = steady(&stack, 3).await;

    let held = running_intervals(&holder, &stack.member(&holder).target.observations());
    assert_eq!(held.len(), 1, "the holder ran once, without a break: {held:?}");
    assert_eq!(held[0].end, None, "the holder still runs");
    let standby = running_intervals(&other, &stack.member(&other).target.observations());
    assert!(standby.is_empty(), "the other cluster never ran: {standby:?}");
    assert_no_overlap(&stack);
}

/// Cuts the holder off in `mode`, checks the handover, heals the link and
/// checks that the old holder stays standby.
async fn partition_and_rejoin(target: Target, mode: Mode) {
    let config = Config { target, ..Config::new() };
    let (ttl, heartbeat) = (config.ttl(), config.heartbeat());
    let stack = Stack::start(config, "mc-partition").await;
    let (holder, other) = steady(&stack, 2).await;

    let cut = Instant::now();
    stack.member(&holder).set_link(mode);
    let stopped = stack.member(&holder).target.wait_running(false, cut, ttl + SLACK).await;
    let taken = stack.member(&other).target.wait_running(true, cut, ttl + SLACK).await;
    assert!(stopped < taken, "the cut-off cluster stopped after the other one started:\n{}", stack.logs());
    assert_no_overlap(&stack);
    eprintln!(
        "figure partition target={target:?} mode={mode} ttl_ms={} fence_ms={} takeover_ms={} gap_ms={}",
        ms(ttl),
        ms(stopped - cut),
        ms(taken - cut),
        ms(taken - stopped)
    );

    // Rejoin: the link heals; the new holder keeps it, the old one stays standby.
    stack.member(&holder).set_link(Mode::Pass);
    let global = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(global.identity, other, "the new holder keeps the lease after the rejoin");
    let deadline = Instant::now() + ttl + SLACK;
    loop {
        let state = stack.member(&holder).lease_state(&stack.namespace).await;
        if state.as_deref() == Some("standby") {
            break;
        }
        assert!(Instant::now() < deadline, "the old holder's lease is {state:?}, not standby:\n{}", stack.logs());
        tokio::time::sleep(heartbeat / 4).await;
    }
    let old = stack.member(&holder).target.observations();
    assert_eq!(first_at_or_after(&old, stopped + Duration::from_nanos(1), true), None, "the old holder ran again");
    assert!(running_now(&stack.member(&other).target.observations()));
    assert_no_overlap(&stack);
}

#[tokio::test]
async fn partition_by_blackhole_stops_the_cut_off_cluster_before_the_other_starts_and_rejoins_as_standby() {
    let _serial = SERIAL.lock().await;
    partition_and_rejoin(Target::CronJob, Mode::Blackhole).await;
}

#[tokio::test]
async fn partition_by_reset_stops_the_cut_off_cluster_before_the_other_starts_and_rejoins_as_standby() {
    let _serial = SERIAL.lock().await;
    partition_and_rejoin(Target::CronJob, Mode::Reset).await;
}

#[tokio::test]
async fn a_deployment_target_is_handed_over_without_overlap() {
    let _serial = SERIAL.lock().await;
    partition_and_rejoin(Target::Deployment, Mode::Blackhole).await;
}

#[tokio::test]
async fn apiserver_paused_past_the_ttl_stops_every_member_then_exactly_one_resumes() {
    let _serial = SERIAL.lock().await;
    let config = Config::new();
    let ttl = config.ttl();
    let stack = Stack::start(config, "mc-pause").await;
    let (holder, _) = steady(&stack, 2).await;

    let paused = Instant::now();
    stack.pause_apiserver(true);
    let stopped = stack.member(&holder).target.wait_running(false, paused, ttl + SLACK).await;
    // The fault lasts past the TTL (a fault schedule, not a wait for a state).
    tokio::time::sleep_until((paused + ttl + Duration::from_secs(1)).into()).await;
    for member in &stack.members {
        assert!(!running_now(&member.target.observations()), "{} runs while the apiserver is paused", member.id);
    }
    let resumed = Instant::now();
    stack.pause_apiserver(false);
    let (runner, started) = stack.wait_for_runner(resumed, ttl + SLACK).await;
    let global = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(global.identity, runner);
    let running: Vec<&str> =
        stack.members.iter().filter(|m| running_now(&m.target.observations())).map(|m| m.id.as_str()).collect();
    assert_eq!(running, vec![runner.as_str()], "exactly one member runs after the pause");
    for member in &stack.members {
        let history = member.target.observations();
        let ran_while_paused = first_at_or_after(&history, stopped + Duration::from_nanos(1), true);
        assert!(ran_while_paused.is_none_or(|at| at >= resumed), "{} ran while the apiserver was paused", member.id);
    }
    assert_no_overlap(&stack);
    eprintln!(
        "figure apiserver-pause ttl_ms={} fence_ms={} resume_after_sigcont_ms={}",
        ms(ttl),
        ms(stopped - paused),
        ms(started - resumed)
    );
}

#[tokio::test]
async fn the_holders_operator_killed_and_restarted_keeps_its_tenure_without_overlap() {
    let _serial = SERIAL.lock().await;
    let config = Config::new();
    let ttl = config.ttl();
    let mut stack = Stack::start(config, "mc-restart").await;
    let (holder, other) = steady(&stack, 2).await;
    let before = stack.wait_heartbeats(1, ttl + SLACK).await;

    let namespace = stack.namespace.clone();
    let member = stack.member_mut(&holder);
    member.kill_operator();
    member.start_operator(&namespace);

    let after = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(after.identity, holder, "the restarted operator keeps the lease");
    assert_eq!(after.fencing_token, before.fencing_token, "a re-acquire by the same holder is a renew");
    assert!(running_intervals(&other, &stack.member(&other).target.observations()).is_empty(), "the other ran");
    stack.member(&holder).target.wait_running(true, Instant::now(), ttl + SLACK).await;
    assert_no_overlap(&stack);
}

#[tokio::test]
async fn a_success_that_arrives_after_the_safe_deadline_does_not_resume_the_target() {
    let _serial = SERIAL.lock().await;
    let config = Config::new();
    let ttl = config.ttl();
    let stack = Stack::start(config, "mc-late").await;
    let (holder, other) = steady(&stack, 2).await;

    // The other member cannot take over; the holder's answers come too late.
    stack.member(&other).set_link(Mode::Blackhole);
    let delay = ttl + Duration::from_secs(2);
    let cut = Instant::now();
    stack.member(&holder).set_link(Mode::Delay(delay));
    let stopped = stack.member(&holder).target.wait_running(false, cut, ttl + SLACK).await;

    // The apiserver still grants the holder (its requests arrive late, but
    // arrive), and the answers reach the member after its safe deadline.
    let late_grant = stack
        .global
        .wait_for("the apiserver grants the holder after it stopped", 3 * delay + SLACK, |history| {
            history
                .iter()
                .find(|(at, holders)| *at > stopped && holders.first().is_some_and(|h| h.identity == holder))
                .map(|(at, _)| *at)
        })
        .await;
    // Wait until an answer to that grant has had time to arrive and be acted on:
    // a later write of the global lease seen after the answer's delay.
    stack
        .global
        .wait_for("a write of the global lease after the late answer arrived", 3 * delay + SLACK, |history| {
            history.iter().any(|(at, _)| *at > late_grant + delay).then_some(())
        })
        .await;
    let history = stack.member(&holder).target.observations();
    assert_eq!(
        first_at_or_after(&history, stopped + Duration::from_nanos(1), true),
        None,
        "a late success resumed the target: {history:?}\n{}",
        stack.logs()
    );
    assert!(running_intervals(&other, &stack.member(&other).target.observations()).is_empty());
    assert_no_overlap(&stack);
}
