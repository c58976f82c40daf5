// The sections of one lease's page: facts, holders with their bars, the
// holding cluster, the target and the operator's last action, conditions.
import { el } from "./dom.js";
import { isMemberClaim, liveHolders, MEMBER_CONDITION, when } from "./format.js";

/** The nodes of the lease page for `view` at `now` (ms since the epoch). */
export function leaseSections(view, now) {
  const live = liveHolders(view, now);

  const fact = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
  const facts = el("dl", { class: "facts" },
    ...fact("State", el("span", { class: `state state-${view.state}`, text: view.state })),
    ...fact("Fencing token", String(view.fencingToken)),
    ...fact("Transitions", String(view.transitions)),
    ...fact("Semantics", view.semantics + (view.maxHolders ? `, at most ${view.maxHolders} holders` : "")),
    ...fact("TTL", `${view.ttlSeconds} s (renew every ${view.heartbeatIntervalSeconds} s)`),
    ...fact("Updated", el("time", { datetime: view.updatedAt }, when(view.updatedAt))),
  );

  const holders = (view.holders || []).length
    ? el("ul", { class: "holders" }, ...view.holders.map((h, index) => {
      const total = Math.max(1, Date.parse(h.expiresAt) - Date.parse(h.renewedAt));
      // By position: identities are free text, and two may differ only in punctuation.
      const id = `holder-${index}`;
      return el("li", { "data-identity": h.identity },
        el("p", { class: "holder-line" }, el("strong", { id }, h.identity), ` · token ${h.fencingToken} · expires in `,
          el("span", { class: "expires", "data-expires": Date.parse(h.expiresAt) })),
        el("progress", { max: total, value: 0, "data-expires": Date.parse(h.expiresAt), "aria-labelledby": id }),
        el("p", { class: "note" }, `acquired ${when(h.acquiredAt)}, renewed ${when(h.renewedAt)}, expires ${when(h.expiresAt)}`));
    }))
    : el("p", { class: "note" }, "No holder.");

  const cluster = !isMemberClaim(view)
    ? "none: this lease has no member-mode status"
    : live.map((h) => h.identity).join(", ") || "none: no live holder";
  const clusters = el("p", {}, cluster);

  const target = view.target
    ? el("dl", { class: "facts" },
      ...fact("Workload", `${view.target.kind}/${view.target.name} (${view.target.apiVersion})`),
      ...fact("Last action", view.targetStatus
        ? `${view.targetStatus.applied} at ${when(view.targetStatus.observedAt)}${view.targetStatus.message ? `: ${view.targetStatus.message}` : ""}`
        : "none yet"))
    : el("p", { class: "note" }, "No target: the operator acts on no workload for this lease.");

  const conditions = (view.conditions || []).length
    ? el("div", { class: "table-wrap" }, el("table", {},
      el("caption", { class: "visually-hidden" }, "Conditions"),
      el("thead", {}, el("tr", {}, ...["Type", "Status", "Reason", "Message", "Since"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...view.conditions.map((c) => el("tr", {},
        el("th", { scope: "row" }, c.type), el("td", {}, c.status), el("td", {}, c.reason),
        el("td", {}, c.message || "—"), el("td", {}, when(c.lastTransitionTime)))))))
    : el("p", { class: "note" }, "No conditions reported.");

  return [
    facts,
    el("h3", {}, "Holders"), holders,
    el("h3", {}, "Holding cluster (member mode)"), clusters,
    el("p", { class: "note" },
      `A member cluster's operator marks the leases it keeps with the ${MEMBER_CONDITION} condition; `
      + "their holders are cluster ids."),
    el("h3", {}, "Target"), target,
    el("h3", {}, "Conditions"), conditions,
  ];
}
