//! The warning for a CronJob resumed after a long suspension.

use chrono::{DateTime, Utc};

/// Kubernetes' CronJob controller gives up counting missed start times past this.
pub const MAX_MISSED_SCHEDULES: usize = 100;

/// The warning for resuming a CronJob after a long suspension (kubernetes#42649):
/// with no `startingDeadlineSeconds`, a CronJob that missed more than
/// [`MAX_MISSED_SCHEDULES`] start times since `last` may not be scheduled again.
/// `last` is `status.lastScheduleTime`, or the creation time when it never ran.
/// Returns `None` when there is nothing to warn about or the schedule does not parse.
pub fn long_suspension_warning(
    schedule: &str,
    starting_deadline_seconds: Option<i64>,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<String> {
    if starting_deadline_seconds.is_some() {
        return None;
    }
    let cron: croner::Cron = schedule.parse().ok()?;
    let missed = cron.iter_after(last).take_while(|t| *t <= now).take(MAX_MISSED_SCHEDULES + 1).count();
    (missed > MAX_MISSED_SCHEDULES).then(|| {
        format!(
            "resumed after missing more than {MAX_MISSED_SCHEDULES} start times since {} with no \
             spec.startingDeadlineSeconds: the CronJob controller may not schedule it again \
             (kubernetes#42649); set startingDeadlineSeconds",
            berth_api::time::format(&last)
        )
    })
}
