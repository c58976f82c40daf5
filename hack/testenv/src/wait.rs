//! The one way tests wait: poll observed state until it holds, with a
//! generous bound that only turns a hang into a failure.
//!
//! [`eventually`] is for async code, [`eventually_blocking`] for code that
//! runs no async runtime (a child process, a file). The `_showing` forms add
//! `show()` to the failure message, read when the bound passes: a process
//! log, say.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every [`POLL`] until it returns `Some`, and returns that.
///
/// # Panics
/// When `within` passes first, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_showing(what, within, String::new, check).await
}

/// [`eventually`], with `show()` in the failure message.
pub async fn eventually_showing<T, F, Fut>(
    what: &str,
    within: Duration,
    show: impl FnOnce() -> String,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let bound = Bound::new(within);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if bound.passed() {
            bound.fail(what, show);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for a blocking `check`, where no async runtime runs.
///
/// # Panics
/// When `within` passes first, naming `what`.
pub fn eventually_blocking<T>(what: &str, within: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually_blocking_showing(what, within, String::new, check)
}

/// [`eventually_blocking`], with `show()` in the failure message.
pub fn eventually_blocking_showing<T>(
    what: &str,
    within: Duration,
    show: impl FnOnce() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let bound = Bound::new(within);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if bound.passed() {
            bound.fail(what, show);
        }
        std::thread::sleep(POLL);
    }
}

/// The failure bound of one wait.
struct Bound {
    within: Duration,
    deadline: Instant,
}

impl Bound {
    fn new(within: Duration) -> Self {
        Self { within, deadline: Instant::now() + within }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn fail(&self, what: &str, show: impl FnOnce() -> String) -> ! {
        let shown = show();
        let within = self.within;
        if shown.is_empty() {
            panic!("not within {within:?}: {what}")
        } else {
            panic!("not within {within:?}: {what}\n{shown}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_wait_returns_what_the_check_found() {
        let mut looks = 0;
        let found = eventually_blocking("the third look", Duration::from_secs(10), || {
            looks += 1;
            (looks == 3).then_some(looks)
        });
        assert_eq!(found, 3);
    }

    #[test]
    #[should_panic(expected = "not within 0ns: something that never holds\nthe log")]
    fn a_blocking_wait_that_never_holds_names_what_and_shows_the_log() {
        eventually_blocking_showing(
            "something that never holds",
            Duration::ZERO,
            || "the log".to_owned(),
            || None::<()>,
        );
    }

    #[tokio::test]
    async fn an_async_wait_looks_at_least_once_even_with_no_time_left() {
        let found = eventually("an answer at once", Duration::ZERO, || async { Some(7) }).await;
        assert_eq!(found, 7);
    }

    #[tokio::test]
    #[should_panic(expected = "not within 0ns: something that never holds")]
    async fn an_async_wait_that_never_holds_names_what() {
        eventually("something that never holds", Duration::ZERO, || async { None::<()> }).await;
    }
}
