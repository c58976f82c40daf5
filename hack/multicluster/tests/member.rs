//! The partition suite of member mode, black-box against the real binaries: a
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
use berth_multicluster::stack::{Config, LEASE, Member, Stack, Target};
use berth_testenv::prometheus;
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

/// How long a member's waiting acquire may stay at the server before it is
/// answered "held by another" (the operator's standby wait): a claim that
/// was fenced shows `standby` once that answer comes.
const STANDBY_WAIT: Duration = Duration::from_secs(60);

/// Cuts the holder off in `mode` and checks the handover, for
/// `BERTH_PARTITION_ROUNDS` rounds (default 1; each round cuts the cluster
/// that runs then, and heals it after the handover); then checks that the
/// last cut-off cluster, healed, stays standby.
async fn partition_and_rejoin(target: Target, mode: Mode) {
    let config = Config { target, ..Config::new() };
    let ttl = config.ttl();
    let rounds: usize = std::env::var("BERTH_PARTITION_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let stack = Stack::start(config, "mc-partition").await;
    let (mut holder, mut other) = steady(&stack, 2).await;
    let mut stopped = Instant::now();
    for round in 1..=rounds {
        let cut = Instant::now();
        stack.member(&holder).set_link(mode);
        stopped = stack.member(&holder).target.wait_running(false, cut, ttl + SLACK).await;
        let taken = stack.member(&other).target.wait_running(true, cut, ttl + SLACK).await;
        assert!(stopped < taken, "the cut-off cluster stopped after the other one started:\n{}", stack.logs());
        assert_no_overlap(&stack);
        eprintln!(
            "figure partition round={round} target={target:?} mode={mode} ttl_ms={} fence_ms={} takeover_ms={} gap_ms={}",
            ms(ttl),
            ms(stopped - cut),
            ms(taken - cut),
            ms(taken - stopped)
        );
        stack.member(&holder).set_link(Mode::Pass);
        let global = stack.wait_heartbeats(2, ttl + SLACK).await;
        assert_eq!(global.identity, other, "the new holder keeps the lease after the rejoin");
        if round < rounds {
            std::mem::swap(&mut holder, &mut other);
        }
    }

    // Rejoin: the new holder keeps the lease, the old one stays standby.
    berth_testenv::eventually_showing(
        "the old holder's lease is standby",
        STANDBY_WAIT + ttl + SLACK,
        || stack.logs(),
        || async {
            let state = stack.member(&holder).lease_state(&stack.namespace).await;
            assert!(
                matches!(state.as_deref(), Some("fenced" | "standby")),
                "the old holder's claim is {state:?} after the rejoin:\n{}",
                stack.logs()
            );
            (state.as_deref() == Some("standby")).then_some(())
        },
    )
    .await;
    let global = stack.wait_heartbeats(1, ttl + SLACK).await;
    assert_eq!(global.identity, other, "the new holder keeps the lease after the rejoin");
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

/// The standby's waiting acquire is granted by the apiserver while its link
/// is blackholed, and the answer reaches it only after that grant's TTL has
/// passed and the old holder holds again: the late success must not resume
/// the standby's target.
#[tokio::test]
async fn a_success_that_arrives_after_the_safe_deadline_does_not_resume_the_target() {
    let _serial = SERIAL.lock().await;
    let config = Config::new();
    let ttl = config.ttl();
    let stack = Stack::start(config, "mc-late").await;
    let (holder, standby) = steady(&stack, 2).await;
    let first_token = stack.wait_heartbeats(1, ttl + SLACK).await.fencing_token;

    // The standby's pending waiting acquire stays at the server; its answer is held.
    stack.member(&standby).set_link(Mode::Blackhole);
    let cut = Instant::now();
    stack.member(&holder).set_link(Mode::Blackhole);
    stack.member(&holder).target.wait_running(false, cut, ttl + SLACK).await;
    // The apiserver grants the standby (a success it cannot hear of yet) ...
    let granted = stack
        .global
        .wait_for("the apiserver grants the blackholed standby", ttl + SLACK, |history| {
            history.iter().find(|(_, h)| h.first().is_some_and(|h| h.identity == standby)).map(|(at, _)| *at)
        })
        .await;
    // ... the old holder, healed, takes the lease again once that grant expired ...
    stack.member(&holder).set_link(Mode::Pass);
    stack
        .global
        .wait_for("the old holder holds again with a newer token", 2 * ttl + SLACK, |history| {
            history
                .iter()
                .any(|(at, h)| {
                    *at > granted
                        && h.first().is_some_and(|h| h.identity == holder && h.fencing_token > first_token + 1)
                })
                .then_some(())
        })
        .await;
    stack.member(&holder).target.wait_running(true, granted, ttl + SLACK).await;
    // ... and only then does the standby hear of its grant, long after its TTL.
    let late = Instant::now();
    assert!(late > granted + ttl);
    stack.member(&standby).set_link(Mode::Pass);
    let global = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(global.identity, holder);
    let history = stack.member(&standby).target.observations();
    assert!(
        running_intervals(&standby, &history).is_empty(),
        "the late success resumed the standby's target: {history:?}\n{}",
        stack.logs()
    );
    assert_no_overlap(&stack);
}

/// The sum of the member operator's samples of `name` with `labels`.
fn metric(member: &Member, name: &str, labels: &[&str]) -> f64 {
    prometheus::sum(&member.operator.as_ref().expect("the operator runs").metrics(), name, labels)
}

const RENEWS: &str = "berth_operator_member_renews_total";
const RENEW_DURATION_COUNT: &str = "berth_operator_member_renew_duration_seconds_count";

/// The holder's link is blackholed, then reset, each only until the
/// operator's `/metrics` counts a renew of that kind: a hung renew as
/// `timeout`, a refused connection as `error`. Every renew is also in the
/// latency histogram. A TTL of 8 s lets the holder usually ride out both.
#[tokio::test]
async fn renew_results_and_latency_are_counted_through_cuts_of_the_link() {
    let _serial = SERIAL.lock().await;
    let config = Config { ttl_seconds: 8, ..Config::new() };
    let ttl = config.ttl();
    let stack = Stack::start(config, "mc-metrics").await;
    let (holder, _) = steady(&stack, 2).await;
    let member = stack.member(&holder);
    let counted = |result: &str| metric(member, RENEWS, &[&format!("result=\"{result}\"")]);
    // The global lease shows a renew a moment before its answer reaches the operator.
    berth_testenv::eventually("renews are counted", ttl + SLACK, || async {
        (counted("renewed") >= 2.0).then_some(())
    })
    .await;

    for (mode, result) in [(Mode::Blackhole, "timeout"), (Mode::Reset, "error")] {
        let before = counted(result);
        member.set_link(mode);
        berth_testenv::eventually(&format!("a {result} renew is counted"), ttl + SLACK, || async {
            (counted(result) > before).then_some(())
        })
        .await;
        member.set_link(Mode::Pass);
    }

    let renewed = counted("renewed");
    berth_testenv::eventually("renews succeed again, each in the histogram", ttl + SLACK, || async {
        let text = member.operator.as_ref().expect("the operator runs").metrics();
        let renewed_now = prometheus::sum(&text, RENEWS, &["result=\"renewed\""]);
        let all = prometheus::sum(&text, RENEWS, &[]);
        let observed = prometheus::sum(&text, RENEW_DURATION_COUNT, &[]);
        (renewed_now > renewed && all == observed).then_some(())
    })
    .await;
    assert_no_overlap(&stack);
}

/// Two operator replicas with leader election in the holder's cluster: only
/// the leader holds and gates. The leader is SIGKILLed; the other replica
/// becomes leader, resumes the tenure with the same fencing token (a
/// re-acquire by the same holder is a renew), and the target runs on. Then
/// that leader is stopped gracefully (SIGTERM): it abandons its tenure
/// without releasing it, and a third replica resumes it the same way.
#[tokio::test]
async fn the_standby_replica_resumes_the_tenure_when_the_leading_operator_is_killed_or_stopped() {
    let _serial = SERIAL.lock().await;
    // The standby wins the election within about 4 s of the kill (3 s Lease,
    // 1 s retry): well inside the tenure the killed leader last renewed.
    let config = Config { ttl_seconds: 10, leader_election: true, ..Config::new() };
    let ttl = config.ttl();
    let mut stack = Stack::start(config, "mc-leader").await;
    let (holder, other) = steady(&stack, 2).await;
    let namespace = stack.namespace.clone();
    let mut standby = stack.member(&holder).start_replica(&namespace);
    let leader = stack.member(&holder).operator.as_ref().expect("the operator runs").pid();
    assert_eq!(stack.member(&holder).leader_pid(&namespace).await, Some(leader), "the first operator leads");

    // Ready means the standby has tried the election; renews go on meanwhile.
    stack.wait_heartbeats(2, ttl + SLACK).await;
    let standby_text = standby.metrics();
    assert_eq!(prometheus::value(&standby_text, "berth_operator_is_leader"), Some(0.0));
    for acting in [RENEWS, "berth_operator_member_acquire_duration_seconds_count", "berth_operator_status_writes_total"]
    {
        assert_eq!(prometheus::sum(&standby_text, acting, &[]), 0.0, "the standby does not act: {acting}");
    }
    let leading = stack.member(&holder);
    berth_testenv::eventually("the leader counts its renews", ttl + SLACK, || async {
        (metric(leading, RENEWS, &["result=\"renewed\""]) >= 2.0).then_some(())
    })
    .await;
    let before = stack.wait_heartbeats(1, ttl + SLACK).await;

    let killed = Instant::now();
    stack.member_mut(&holder).kill_operator();
    let member = stack.member(&holder);
    berth_testenv::eventually("the standby replica becomes the leader", ttl + SLACK, || async {
        (member.leader_pid(&namespace).await == Some(standby.pid())).then_some(())
    })
    .await;
    let led = Instant::now();
    let held = format!("berth_operator_member_state{{namespace=\"{namespace}\",name=\"{LEASE}\",state=\"held\"}}");
    berth_testenv::eventually("the new leader holds the lease", ttl + SLACK, || async {
        (prometheus::value(&standby.metrics(), &held) == Some(1.0)).then_some(())
    })
    .await;
    let resumed = Instant::now();
    let after = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(after.identity, holder, "the cluster keeps the lease:\n{}", standby.logs());
    assert_eq!(after.fencing_token, before.fencing_token, "the new leader resumed the tenure:\n{}", standby.logs());

    eprintln!(
        "figure leader-failover ttl_ms={} new_leader_ms={} held_again_ms={}",
        ms(ttl),
        ms(led - killed),
        ms(resumed - killed)
    );

    // A graceful stop hands over at once: the leader Lease is released, the
    // global lease is not (the other member, waiting for it, would get it).
    let third = stack.member(&holder).start_replica(&namespace);
    let member = stack.member(&holder);
    assert!(
        standby.terminate(),
        "SIGTERM exits cleanly:
{}",
        standby.logs()
    );
    berth_testenv::eventually("the third replica becomes the leader", ttl + SLACK, || async {
        (member.leader_pid(&namespace).await == Some(third.pid())).then_some(())
    })
    .await;
    berth_testenv::eventually("the third replica holds the lease", ttl + SLACK, || async {
        (prometheus::value(&third.metrics(), &held) == Some(1.0)).then_some(())
    })
    .await;
    let last = stack.wait_heartbeats(3, ttl + SLACK).await;
    assert_eq!(
        last.identity,
        holder,
        "the cluster keeps the lease:
{}",
        third.logs()
    );
    assert_eq!(
        last.fencing_token,
        before.fencing_token,
        "the third replica resumed the tenure:
{}",
        third.logs()
    );

    let runs = running_intervals(&holder, &stack.member(&holder).target.observations());
    assert_eq!(runs.len(), 1, "the target ran on through both handovers: {runs:?}\n{}", third.logs());
    assert_eq!(runs[0].end, None, "the target still runs");
    assert!(running_intervals(&other, &stack.member(&other).target.observations()).is_empty(), "the other ran");
    assert_no_overlap(&stack);
}
