//! [`Schedule`]: the holding arithmetic (safe deadline, renew, retry and
//! renew bound), the one place where the keeper's timing is computed.

use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// The margin used when none is given: a tenth of the TTL, at least 250 ms
/// and at most 5 s.
pub fn default_margin(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// When a holder whose work takes up to `stop` to wind down must begin
/// stopping it, so that it has stopped by the safe `deadline`: `deadline -
/// stop`, or `now` when that is before the clock's start.
pub fn fence_at(deadline: Instant, stop: Duration, now: Instant) -> Instant {
    deadline.checked_sub(stop).unwrap_or(now)
}

/// The keeper's timing, as pure arithmetic on instants so that tests can
/// drive it with any clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub ttl: Duration,
    pub margin: Duration,
    pub heartbeat: Duration,
}

impl Schedule {
    /// `ttl` and `margin` as given; the heartbeat capped at half of
    /// `ttl - margin`, and at least 50 ms.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the margin is not shorter than the
    /// TTL: there would be no time in which the lease is safely held.
    pub fn new(ttl: Duration, margin: Duration, heartbeat: Duration) -> Result<Self, Error> {
        if margin >= ttl {
            return Err(Error::InvalidRequest(format!(
                "the keeper's margin ({margin:?}) must be shorter than the TTL ({ttl:?})"
            )));
        }
        let heartbeat = heartbeat.min((ttl - margin) / 2).max(Duration::from_millis(50));
        Ok(Self { ttl, margin, heartbeat })
    }

    /// The local safe deadline of a grant whose request was SENT at `sent`:
    /// the server set `expiresAt` no earlier than `sent + ttl` (it wrote
    /// after it received the request), so until `sent + ttl - margin` nobody
    /// else can be granted the lease.
    pub fn deadline(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.margin
    }

    /// When to renew after a successful renew sent at `sent`.
    pub fn next_renew(&self, sent: Instant) -> Instant {
        sent + self.heartbeat
    }

    /// How long a renew sent at `now` may go unanswered before it is
    /// abandoned: a heartbeat, and never past the deadline.
    pub fn renew_bound(&self, now: Instant, deadline: Instant) -> Duration {
        self.heartbeat.min(deadline.saturating_duration_since(now))
    }

    /// When to retry after a renew that failed at `now` without an answer
    /// (the server unreachable or erroring): soon, but never past the deadline.
    pub fn retry(&self, now: Instant, deadline: Instant) -> Instant {
        (now + (self.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))).min(deadline)
    }

    /// [`Self::retry`], unless the server asked to wait (`Retry-After`) and
    /// that wait ends before the deadline: then after that wait. A wait that
    /// would pass the deadline is not honoured, so the lease is not given up.
    pub fn retry_after(&self, now: Instant, retry_after: Option<Duration>, deadline: Instant) -> Instant {
        match retry_after.map(|wait| now + wait) {
            Some(at) if at < deadline => at.max(self.retry(now, deadline)),
            _ => self.retry(now, deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn deadline_counts_from_the_time_the_renew_was_sent() {
        let schedule = Schedule::new(S(30), S(3), S(10)).unwrap();
        let sent = Instant::now();
        assert_eq!(schedule.deadline(sent), sent + S(27));
        assert_eq!(schedule.next_renew(sent), sent + S(10));
    }

    #[test]
    fn heartbeat_is_capped_at_half_the_safe_window() {
        // A lease advertising a 10 s heartbeat, held with a 5 s TTL.
        let schedule = Schedule::new(S(5), Duration::from_millis(500), S(10)).unwrap();
        assert_eq!(schedule.heartbeat, Duration::from_millis(2250));
    }

    #[test]
    fn margin_not_shorter_than_the_ttl_is_refused() {
        for margin in [S(2), S(5)] {
            let err = Schedule::new(S(2), margin, S(1)).unwrap_err();
            assert!(err.to_string().contains("must be shorter than the TTL"), "{err}");
        }
    }

    #[test]
    fn renew_bound_is_a_heartbeat_and_never_past_the_deadline() {
        let schedule = Schedule::new(S(30), S(3), S(10)).unwrap();
        let now = Instant::now();
        assert_eq!(schedule.renew_bound(now, now + S(27)), S(10));
        assert_eq!(schedule.renew_bound(now, now + S(4)), S(4));
        assert_eq!(schedule.renew_bound(now + S(5), now + S(4)), S(0));
    }

    #[test]
    fn retries_come_soon_but_never_after_the_deadline() {
        let schedule = Schedule::new(S(30), S(3), S(10)).unwrap();
        let now = Instant::now();
        assert_eq!(schedule.retry(now, now + S(20)), now + S(1));
        assert_eq!(schedule.retry(now, now + Duration::from_millis(300)), now + Duration::from_millis(300));
    }

    #[test]
    fn retry_after_is_honoured_only_when_it_ends_before_the_deadline() {
        let schedule = Schedule::new(S(30), S(3), S(10)).unwrap();
        let now = Instant::now();
        // An overloaded apiserver's Retry-After: 1 fits a 20 s window.
        assert_eq!(schedule.retry_after(now, Some(S(2)), now + S(20)), now + S(2));
        // Shorter than the usual pause: the usual pause.
        assert_eq!(schedule.retry_after(now, Some(S(0)), now + S(20)), now + S(1));
        // It would pass the deadline: retry as usual instead of losing the lease.
        assert_eq!(schedule.retry_after(now, Some(S(5)), now + S(4)), now + S(1));
        assert_eq!(schedule.retry_after(now, Some(S(1)), now + S(1)), now + S(1));
        let close = now + Duration::from_millis(300);
        assert_eq!(schedule.retry_after(now, Some(S(1)), close), close);
        assert_eq!(schedule.retry_after(now, None, now + S(20)), now + S(1));
    }

    #[test]
    fn default_margin_is_a_tenth_of_the_ttl_within_bounds() {
        assert_eq!(default_margin(S(30)), S(3));
        assert_eq!(default_margin(S(1)), Duration::from_millis(250));
        assert_eq!(default_margin(S(3600)), S(5));
    }

    #[test]
    fn the_crds_stop_budget_rounds_this_margin_up() {
        // The CRD's CEL cannot call this code: it spells the margin again, and this checks the two agree.
        for ttl in 2..=600 {
            let rounded = ttl - 1 - 1 - berth_api::crd::max_stop_seconds(ttl, 1);
            let margin = default_margin(S(ttl.unsigned_abs().into())).as_secs_f64().ceil();
            assert_eq!(f64::from(rounded), margin, "ttl {ttl}");
        }
    }
}
