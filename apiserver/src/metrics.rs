//! Prometheus metrics, served as text on the metrics port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/v1alpha1/namespaces/{namespace}/leases/{name}/acquire`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `create` or `replace_status`.
    pub verb: &'static str,
    /// `ok`, `conflict` or `error`.
    pub result: &'static str,
}

/// Every metric of the apiserver. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Request duration; its `_count` series is the request count.
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub lease_outcomes: Family<OutcomeLabels, Counter>,
    /// Writes against kube-apiserver, by verb and result (`conflict` counts 409s).
    pub kube_writes: Family<WriteLabels, Counter>,
    pub cached_leases: Gauge,
    /// Requests answered 503 because the write queue was full.
    pub shed_requests: Family<ShedLabels, Counter>,
    /// Requests holding a write slot.
    pub writes_in_flight: Gauge,
    /// Requests waiting for a write slot, by priority.
    pub queued_writes: Family<QueueLabels, Gauge>,
    /// How long requests that got a write slot waited for it.
    pub write_queue_wait: Histogram,
    /// Acquires with `waitSeconds` that were refused and now wait for the lease to come free.
    pub waiting_acquires: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `holding` (renews, releases) or `acquiring` (grants, creates).
    pub priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `acquire`, `renew` or `release`.
    pub operation: &'static str,
}

/// One acquire counted in `waiting_acquires` while it lives (see [`Metrics::waiting`]).
pub struct WaitingAcquire<'a>(&'a Gauge);

impl Drop for WaitingAcquire<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn request_histogram() -> Histogram {
    // 1 ms … ~33 s: a waiting acquire may block for minutes, the rest are fast.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth_apiserver");
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(request_histogram);
        let lease_outcomes = Family::<OutcomeLabels, Counter>::default();
        let kube_writes = Family::<WriteLabels, Counter>::default();
        let cached_leases = Gauge::default();
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration by route, method and status",
            requests.clone(),
        );
        registry.register("lease_outcomes", "Answers to acquire, renew and release", lease_outcomes.clone());
        registry.register(
            "kube_writes",
            "Writes to kube-apiserver by verb and result (conflict = HTTP 409)",
            kube_writes.clone(),
        );
        registry.register("cached_leases", "BerthLeases in the informer cache", cached_leases.clone());
        let shed_requests = Family::<ShedLabels, Counter>::default();
        registry.register(
            "shed_requests",
            "Requests answered 503 with Retry-After because the queue for a write slot to kube-apiserver was full",
            shed_requests.clone(),
        );
        let writes_in_flight = Gauge::default();
        registry.register(
            "writes_in_flight",
            "Requests holding a write slot to kube-apiserver",
            writes_in_flight.clone(),
        );
        let queued_writes = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queued_writes",
            "Requests waiting for a write slot, by priority (holding: renews and releases; acquiring: grants and creates)",
            queued_writes.clone(),
        );
        // 100 µs … ~3 s: a length-bounded queue should be passed in milliseconds.
        let write_queue_wait = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "write_queue_wait_seconds",
            "Time a request waited in the queue for a write slot, of the requests that got one",
            write_queue_wait.clone(),
        );
        let waiting_acquires = Gauge::default();
        registry.register(
            "waiting_acquires",
            "Acquires with waitSeconds that were refused and wait for the lease to come free",
            waiting_acquires.clone(),
        );
        Self {
            registry,
            requests,
            lease_outcomes,
            kube_writes,
            cached_leases,
            shed_requests,
            writes_in_flight,
            queued_writes,
            write_queue_wait,
            waiting_acquires,
        }
    }
}

impl Metrics {
    pub fn outcome(&self, operation: &'static str, outcome: &'static str) {
        self.lease_outcomes.get_or_create(&OutcomeLabels { operation, outcome }).inc();
    }

    pub fn write(&self, verb: &'static str, result: &'static str) {
        self.kube_writes.get_or_create(&WriteLabels { verb, result }).inc();
    }

    pub fn shed(&self, operation: &'static str) {
        self.shed_requests.get_or_create(&ShedLabels { operation }).inc();
    }

    /// The gauge of requests of `priority` waiting for a write slot.
    pub fn queued_writes(&self, priority: &'static str) -> Gauge {
        self.queued_writes.get_or_create(&QueueLabels { priority }).clone()
    }

    /// Counts one waiting acquire in `waiting_acquires` until the guard is dropped.
    pub fn waiting(&self) -> WaitingAcquire<'_> {
        self.waiting_acquires.inc();
        WaitingAcquire(&self.waiting_acquires)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
