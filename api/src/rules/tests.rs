use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

fn spec(semantics: Semantics, max_holders: Option<i32>, lock_delay_seconds: i32) -> BerthLeaseSpec {
    BerthLeaseSpec { semantics, max_holders, lock_delay_seconds, ..Default::default() }
}

fn exclusive() -> BerthLeaseSpec {
    spec(Semantics::AtMostOnce, None, 0)
}

fn acquire(holder: &str, ttl_seconds: i32) -> Request<'_> {
    Request::Acquire { holder, ttl_seconds }
}

/// Applies `request` and returns the status after it, written or not.
fn apply(
    spec: &BerthLeaseSpec,
    status: &BerthLeaseStatus,
    request: Request,
    now: DateTime<Utc>,
) -> (Outcome, BerthLeaseStatus) {
    let decision = decide(spec, status, &request, now);
    (decision.outcome, decision.status.unwrap_or_else(|| status.clone()))
}

fn granted(outcome: &Outcome) -> &Holder {
    match outcome {
        Outcome::Granted(h) => h,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn first_acquire_grants_token_one() {
    let (outcome, status) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let holder = granted(&outcome);
    assert_eq!((holder.fencing_token, holder.expires_at), (1, t(10)));
    assert_eq!((status.state, status.fencing_token, status.transitions), (LeaseState::Held, 1, 1));
    assert_eq!(status.last_transition_time, Some(t(0)));
}

#[test]
fn acquire_by_live_holder_is_a_renew_keeping_token_and_acquired_at() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let (outcome, status) = apply(&exclusive(), &held, acquire("a", 20), t(5));
    let Outcome::Renewed(h) = outcome else { panic!("{outcome:?}") };
    assert_eq!((h.fencing_token, h.acquired_at, h.renewed_at, h.expires_at), (1, t(0), t(5), t(25)));
    assert_eq!((status.fencing_token, status.transitions), (1, 1));
}

#[test]
fn tenure_end_is_the_requesters_own_live_expiry() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let renew = |holder| Request::Renew { holder, fencing_token: 1, ttl_seconds: 10 };
    assert_eq!(tenure_end(&held, &renew("a"), t(4)), Some(t(10)));
    assert_eq!(tenure_end(&held, &Request::Release { holder: "a", fencing_token: 1 }, t(4)), Some(t(10)));
    assert_eq!(tenure_end(&held, &renew("b"), t(4)), None, "another identity's tenure");
    assert_eq!(tenure_end(&held, &renew("a"), t(10)), None, "expired");
    assert_eq!(tenure_end(&held, &Request::Expire, t(4)), None);
}

#[test]
fn at_most_once_refuses_second_holder_naming_current() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let decision = decide(&exclusive(), &held, &acquire("b", 10), t(9));
    assert_eq!(decision.status, None);
    let Outcome::NotAcquired { refusal, current } = decision.outcome else { panic!() };
    assert_eq!(refusal, Refusal::HeldByOther);
    assert_eq!(current.unwrap().identity, "a");
}

#[test]
fn takeover_after_expiry_drops_the_old_entry_and_raises_the_token() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let (outcome, status) = apply(&exclusive(), &held, acquire("b", 10), t(10));
    assert_eq!(granted(&outcome).fencing_token, 2);
    assert_eq!(status.holders.len(), 1);
    assert_eq!(status.holders[0].identity, "b");
    assert_eq!(status.expired_at, Some(t(10)));
}

#[test]
fn renew_by_stale_token_is_refused() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let decision =
        decide(&exclusive(), &held, &Request::Renew { holder: "a", fencing_token: 7, ttl_seconds: 10 }, t(1));
    assert!(matches!(decision.outcome, Outcome::NotAcquired { refusal: Refusal::Lost, .. }));
    assert_eq!(decision.status, None);
}

#[test]
fn renew_after_expiry_is_refused() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let renew = Request::Renew { holder: "a", fencing_token: 1, ttl_seconds: 10 };
    assert!(matches!(
        decide(&exclusive(), &held, &renew, t(10)).outcome,
        Outcome::NotAcquired { refusal: Refusal::Lost, .. }
    ));
    let (outcome, _) = apply(&exclusive(), &held, renew, t(9));
    assert!(matches!(outcome, Outcome::Renewed(ref h) if h.expires_at == t(19)));
}

#[test]
fn release_cases() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let cases = [
        ("a", 1, t(1), Outcome::Released, Some(LeaseState::Released)),
        ("a", 2, t(1), Outcome::ReleaseConflict, None),
        ("b", 1, t(1), Outcome::ReleaseConflict, None),
        ("a", 1, t(10), Outcome::AlreadyReleased, None),
        ("b", 9, t(11), Outcome::AlreadyReleased, None),
    ];
    for (holder, token, now, expected, state) in cases {
        let decision = decide(&exclusive(), &held, &Request::Release { holder, fencing_token: token }, now);
        assert_eq!(decision.outcome, expected, "{holder}/{token} at {now}");
        assert_eq!(decision.status.map(|s| s.state), state, "{holder}/{token} at {now}");
    }
}

#[test]
fn at_least_once_caps_at_max_holders() {
    let shared = spec(Semantics::AtLeastOnce, Some(2), 0);
    let (_, s) = apply(&shared, &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let (o, s) = apply(&shared, &s, acquire("b", 10), t(1));
    assert_eq!(granted(&o).fencing_token, 2);
    let (o, _) = apply(&shared, &s, acquire("c", 10), t(2));
    assert!(matches!(o, Outcome::NotAcquired { refusal: Refusal::Full, .. }));
    let (o, s) = apply(&shared, &s, acquire("c", 10), t(10));
    assert_eq!(granted(&o).fencing_token, 3);
    assert_eq!(s.holders.iter().map(|h| h.identity.as_str()).collect::<Vec<_>>(), ["b", "c"]);
}

#[test]
fn lock_delay_follows_expiry_but_not_release() {
    let delayed = spec(Semantics::AtMostOnce, None, 5);
    let (_, held) = apply(&delayed, &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    let (o, _) = apply(&delayed, &held, acquire("b", 10), t(14));
    assert!(matches!(o, Outcome::NotAcquired { refusal: Refusal::LockDelay, current: None }));
    let (o, _) = apply(&delayed, &held, acquire("b", 10), t(15));
    assert_eq!(granted(&o).fencing_token, 2);

    let (_, released) = apply(&delayed, &held, Request::Release { holder: "a", fencing_token: 1 }, t(3));
    let (o, _) = apply(&delayed, &released, acquire("b", 10), t(3));
    assert_eq!(granted(&o).fencing_token, 2);
}

#[test]
fn next_change_is_the_next_expiry_or_the_end_of_lock_delay() {
    let delayed = spec(Semantics::AtMostOnce, None, 5);
    let (_, held) = apply(&delayed, &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    assert_eq!(next_change(&delayed, &held, t(3)), Some(t(10)));
    // Expired but not yet written away: the lock-delay runs from expiresAt.
    assert_eq!(next_change(&delayed, &held, t(12)), Some(t(15)));
    let (o, _) = apply(&delayed, &held, acquire("b", 10), t(15));
    assert_eq!(granted(&o).fencing_token, 2);
    assert_eq!(next_change(&delayed, &held, t(15)), None);
    assert_eq!(next_change(&exclusive(), &held, t(12)), None);

    let pool = spec(Semantics::AtLeastOnce, Some(2), 0);
    let (_, one) = apply(&pool, &BerthLeaseStatus::default(), acquire("a", 20), t(0));
    let (_, two) = apply(&pool, &one, acquire("b", 10), t(0));
    assert_eq!(next_change(&pool, &two, t(1)), Some(t(10)));
}

#[test]
fn expire_drops_expired_entries_and_sets_expired_state() {
    let (_, held) = apply(&exclusive(), &BerthLeaseStatus::default(), acquire("a", 10), t(0));
    assert_eq!(decide(&exclusive(), &held, &Request::Expire, t(9)).outcome, Outcome::NothingExpired);
    let (o, s) = apply(&exclusive(), &held, Request::Expire, t(12));
    assert!(matches!(o, Outcome::Expired(ref d) if d.len() == 1));
    assert_eq!((s.state, s.expired_at, s.last_transition_time), (LeaseState::Expired, Some(t(10)), Some(t(12))));
    assert!(s.holders.is_empty());
    assert_eq!(next_expiry(&held), Some(t(10)));
}

#[test]
fn token_counter_never_wraps() {
    let status = BerthLeaseStatus { fencing_token: i32::MAX, ..Default::default() };
    let o = decide(&exclusive(), &status, &acquire("a", 10), t(0)).outcome;
    assert!(matches!(o, Outcome::NotAcquired { refusal: Refusal::TokensExhausted, .. }));
}

#[derive(Clone, Debug)]
enum Step {
    Acquire(usize, i32),
    Renew(usize, i32, i32),
    Release(usize, i32),
    Expire,
    Advance(i64),
}

const IDS: [&str; 4] = ["a", "b", "c", "d"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..IDS.len(), 1..20i32).prop_map(|(h, ttl)| Step::Acquire(h, ttl)),
        (0..IDS.len(), 0..8i32, 1..20i32).prop_map(|(h, tok, ttl)| Step::Renew(h, tok, ttl)),
        (0..IDS.len(), 0..8i32).prop_map(|(h, tok)| Step::Release(h, tok)),
        Just(Step::Expire),
        (0..15i64).prop_map(Step::Advance),
    ]
}

fn lease_spec() -> impl Strategy<Value = BerthLeaseSpec> {
    (any::<bool>(), proptest::option::of(1..4i32), 0..6i32).prop_map(|(shared, max, delay)| {
        if shared { spec(Semantics::AtLeastOnce, max, delay) } else { spec(Semantics::AtMostOnce, None, delay) }
    })
}

proptest! {
    #[test]
    fn random_histories_keep_the_invariants(spec in lease_spec(), steps in prop::collection::vec(step(), 1..60)) {
        let mut status = BerthLeaseStatus::default();
        let mut now = t(0);
        let mut last_token = 0;
        for step in steps {
            let request = match step {
                Step::Advance(s) => { now += Duration::seconds(s); continue; }
                Step::Acquire(h, ttl) => acquire(IDS[h], ttl),
                Step::Renew(h, tok, ttl) => Request::Renew { holder: IDS[h], fencing_token: tok, ttl_seconds: ttl },
                Step::Release(h, tok) => Request::Release { holder: IDS[h], fencing_token: tok },
                Step::Expire => Request::Expire,
            };
            let before = status.clone();
            let decision = decide(&spec, &before, &request, now);
            match (&request, &decision.outcome) {
                (_, Outcome::Granted(h)) => {
                    prop_assert!(h.fencing_token > last_token, "tokens rise strictly");
                    last_token = h.fencing_token;
                }
                (Request::Renew { holder, fencing_token, .. }, outcome) => {
                    let matched = before.holders.iter().any(|h| h.identity == *holder && h.fencing_token == *fencing_token && h.is_live(now));
                    prop_assert_eq!(matches!(outcome, Outcome::Renewed(_)), matched, "renew extends only a live exact match");
                    if !matched {
                        prop_assert!(decision.status.is_none(), "a refused renew changes nothing");
                    }
                }
                (Request::Release { .. }, Outcome::Released) => {
                    let again = decide(&spec, decision.status.as_ref().unwrap(), &request, now);
                    prop_assert!(matches!(again.outcome, Outcome::AlreadyReleased), "release is idempotent");
                    prop_assert!(again.status.is_none());
                }
                _ => {}
            }
            if let Some(next) = decision.status { status = next; }
            let live = status.holders.iter().filter(|h| h.is_live(now)).count();
            match spec.semantics {
                Semantics::AtMostOnce => prop_assert!(live <= 1, "at-most-once has one live holder at most"),
                Semantics::AtLeastOnce => if let Some(max) = spec.max_holders {
                    prop_assert!(live <= max as usize, "live holders stay within maxHolders");
                },
            }
            prop_assert!(status.fencing_token >= before.fencing_token, "the token counter never decreases");
        }
    }
}
