// The collection watch over fetch(): EventSource cannot send an
// Authorization header, and the key must never be put in a URL.

/** Incremental text/event-stream parser (the WHATWG format). */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = null;
  }

  /** Feeds decoded text; returns the events completed so far. */
  push(text) {
    this.buffer += text;
    const events = [];
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      // A lone \r at the very end may be the first half of \r\n.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, found.index);
      start = found.index + found[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line) {
    if (line === "") {
      const data = this.data;
      const event = this.event || "message";
      this.event = "";
      this.data = null;
      return data === null ? null : { event, data };
    }
    if (line.startsWith(":")) return null; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data = this.data === null ? value : `${this.data}\n${value}`;
    return null;
  }
}

/** Three missed keep-alives (15 s each): the connection is taken as lost. */
const IDLE_MS = 45_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;

/**
 * Follows `GET /v1alpha1/leases?watch=1` until stopped, reconnecting with
 * backoff. Handlers: connecting(), synced() after the initial list,
 * event(kind, view), lost(retryMs, reason), refused(status, message) (then
 * it stops: the key is bad or no longer allowed).
 * Returns a function that stops it.
 */
export function watchLeases(key, handlers) {
  let stopped = false;
  let controller = null;
  let backoff = BACKOFF_MIN_MS;
  let timer = null;

  const run = async () => {
    handlers.connecting();
    controller = new AbortController();
    const abort = controller;
    let idle = setTimeout(() => abort.abort(new Error("no data or keep-alive for 45 s")), IDLE_MS);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => abort.abort(new Error("no data or keep-alive for 45 s")), IDLE_MS);
    };
    let reason;
    try {
      const response = await fetch("/v1alpha1/leases?watch=1", {
        headers: { Authorization: `Bearer ${key}`, Accept: "text/event-stream" },
        cache: "no-store",
        credentials: "omit",
        signal: abort.signal,
      });
      if (response.status === 401 || response.status === 403) {
        clearTimeout(idle);
        handlers.refused(response.status, await errorMessage(response));
        return;
      }
      if (!response.ok || !response.body) {
        reason = `HTTP ${response.status}: ${await errorMessage(response)}`;
      } else {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new EventStreamParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          touch();
          for (const { event, data } of parser.push(value)) {
            if (event === "bookmark") {
              backoff = BACKOFF_MIN_MS;
              handlers.synced();
            } else if (event === "added" || event === "modified" || event === "deleted") {
              handlers.event(event, JSON.parse(data));
            }
          }
        }
        reason = "the server closed the stream";
      }
    } catch (error) {
      reason = stopped ? "stopped" : String(error && error.message ? error.message : error);
    }
    clearTimeout(idle);
    if (stopped) return;
    const wait = backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    handlers.lost(wait, reason);
    timer = setTimeout(run, wait);
  };

  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not a JSON error body
  }
  return response.statusText || "no message";
}
