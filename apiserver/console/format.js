// Pure helpers: durations, times, and what a lease shows.

/** "1 h 02 m", "4 m 05 s", "12 s"; "expired" at or below zero. */
export function countdown(ms) {
  if (!(ms > 0)) return "expired";
  const total = Math.ceil(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} m`;
  if (m > 0) return `${m} m ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

/** A local date and time with seconds, and the ISO form for <time datetime>. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { hour12: false });
}

/** Holders still live at `now` (ms since the epoch), soonest expiry first. */
export function liveHolders(lease, now) {
  return (lease.holders || [])
    .filter((h) => Date.parse(h.expiresAt) > now)
    .sort((a, b) => Date.parse(a.expiresAt) - Date.parse(b.expiresAt));
}

/** The expiry the table counts down to: the soonest live holder's, or null. */
export function nextExpiry(lease, now) {
  const live = liveHolders(lease, now);
  return live.length ? Date.parse(live[0].expiresAt) : null;
}

/** "CronJob/ingest" or "—". */
export function targetText(target) {
  return target ? `${target.kind}/${target.name}` : "—";
}

/** Whether a lease changed hands between two views: other holders or a new token. */
export function changedHands(before, after) {
  if (!before) return true;
  const ids = (lease) => (lease.holders || []).map((h) => `${h.identity}#${h.fencingToken}`).sort().join(",");
  return before.fencingToken !== after.fencingToken || ids(before) !== ids(after);
}

/** The condition a member-mode operator writes on every lease it keeps. */
export const MEMBER_CONDITION = "CoordinationReachable";

/**
 * Whether the lease is a member cluster's claim on a global lease, as its
 * member-mode status says: then its holders are the global holders, cluster ids.
 */
export function isMemberClaim(lease) {
  return (lease.conditions || []).some((c) => c.type === MEMBER_CONDITION);
}

/** Whether a lease matches the filters (namespace, state, free text). */
export function matches(lease, filters) {
  if (filters.namespace && lease.namespace !== filters.namespace) return false;
  if (filters.state && lease.state !== filters.state) return false;
  const text = filters.text.trim().toLowerCase();
  if (!text) return true;
  const haystack = [
    lease.namespace,
    lease.name,
    lease.state,
    lease.semantics,
    targetText(lease.target),
    ...(lease.holders || []).map((h) => h.identity),
  ]
    .join(" ")
    .toLowerCase();
  return haystack.includes(text);
}
