//! The two clocks of a run: `CLOCK_MONOTONIC` for the contenders' beliefs
//! (shared by every process on the machine, never stepped, and the clock
//! `LeaseKeeper`'s deadlines run on: `std::time::Instant` is
//! `CLOCK_MONOTONIC` on Linux) and the wall clock for the server's times.

use chrono::{DateTime, Utc};
use nix::time::{ClockId, clock_gettime};

use crate::history::Mono;

/// Now, in nanoseconds of `CLOCK_MONOTONIC`.
///
/// # Panics
/// When the clock cannot be read (it always can on Linux).
pub fn mono_now() -> Mono {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC reads");
    now.tv_sec() * 1_000_000_000 + now.tv_nsec()
}

/// `instant` in nanoseconds of `CLOCK_MONOTONIC`, by its distance from now
/// (the two readings are microseconds apart).
pub fn mono_of(instant: std::time::Instant) -> Mono {
    let (now, mono) = (std::time::Instant::now(), mono_now());
    let nanos = |d: std::time::Duration| Mono::try_from(d.as_nanos()).unwrap_or(Mono::MAX);
    if instant >= now { mono + nanos(instant - now) } else { mono - nanos(now - instant) }
}

/// Now, on the wall clock.
pub fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_instant_maps_to_the_monotonic_clock() {
        let before = mono_now();
        let later = mono_of(Instant::now() + Duration::from_secs(3));
        let after = mono_now();
        assert!(later >= before + 3_000_000_000 && later <= after + 3_000_000_000);
        assert!(mono_of(Instant::now() - Duration::from_secs(1)) < mono_now());
    }
}
