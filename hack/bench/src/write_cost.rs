//! Scenario 7: what one write costs kube-apiserver and etcd (CPU-ms per
//! write, from `/proc/<pid>/stat` around a fixed batch), kind by kind side
//! by side, and what a renew rewrites.
//!
//! - a renew through Berth;
//! - a raw `replace_status` with resourceVersion of a BerthLease of the same
//!   shape (after the same `decide`), as the hot path's floor;
//! - a server-side-apply status write carrying `metadata.resourceVersion`
//!   (a precondition), on objects of its own made the same way;
//! - the same BerthLease JSON, and only its holder's fields, written to
//!   twin CRDs ([`crate::twin`]): what the schema, CEL, atomic ownership,
//!   managedFields and the status's size cost;
//! - the minimal one-holder object: a `coordination.k8s.io/v1` Lease
//!   (holder, duration, renew time), replaced with resourceVersion, as
//!   Kubernetes' own leader election renews. A built-in type: no CRD schema
//!   or CEL.
//!
//! BerthLeases are watched by Berth's apiserver and the operator; the twin
//! and the Lease get two watchers of this process each, so that every kind
//! pays the same watch fan-out.
//!
//! The batches alternate kind by kind, repeated; each batch runs `workers`
//! writers at once, each on its own object. The control plane's CPU at rest
//! (the median of idle seconds read before each repetition) is subtracted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use berth_api::BerthLease;
use berth_api::rules::{self, Request};
use berth_api::wire::{AcquireRequest, RenewRequest};
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procfs::cpu_seconds;
use crate::profile::Profile;
use crate::stack::Stack;
use crate::stats::{Latency, median, ms};
use crate::twin::{Shape, Twin, TwinLease, minimal_status};
use crate::{Error, Result};

const HOLDER: &str = "bench/write-cost";
const TTL_SECONDS: i32 = 3_600;
const FIELD_MANAGER: &str = "berth-bench";

/// Declares [`WriteKind`] from `Variant => "label",` lines: the label is what
/// the report shows and what `benchmarks.json` holds. A new kind is one line
/// here, and its writers in [`run`].
macro_rules! write_kinds {
    ($($variant:ident => $label:literal,)+) => {
        /// A kind of write, in the order the batches run and [`WriteCost::kinds`] lists them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum WriteKind {
            $(#[serde(rename = $label)] $variant,)+
        }

        impl WriteKind {
            pub const ALL: &[WriteKind] = &[$(WriteKind::$variant),+];

            pub fn label(self) -> &'static str {
                match self {
                    $(WriteKind::$variant => $label,)+
                }
            }
        }
    };
}

write_kinds! {
    Berth => "renew through Berth",
    Raw => "raw replace_status (BerthLease, same shape)",
    Apply => "raw server-side apply with resourceVersion (same objects)",
    Bare => "schemaless twin CRD, the same JSON (replace_status)",
    BareMinimal => "schemaless twin CRD, only the holder's fields (replace_status)",
    BareMinimalCleared => "schemaless twin CRD, only the holder's fields, managedFields cleared (replace_status)",
    TwinCel => "twin CRD, the real schema with its CEL rules, the same JSON (replace_status)",
    TwinCelCleared => "twin CRD, the real schema with its CEL rules, managedFields cleared, the same JSON (replace_status)",
    TwinCelClearedMinimal => "twin CRD, the real schema with its CEL rules, managedFields cleared, only the holder's fields (replace_status)",
    TwinNoCel => "twin CRD, the real schema without CEL, the same JSON (replace_status)",
    TwinFieldByField => "twin CRD, the real schema with status field by field (not atomic), the same JSON (replace_status)",
    Lease => "minimal one-holder object (coordination.k8s.io Lease, replace)",
}

/// The twin CRDs the kinds write to.
const TWINS: [Twin; 4] = [Twin::Schemaless, Twin::WithCel, Twin::WithoutCel, Twin::FieldByField];

impl WriteKind {
    /// The name prefix of this kind's objects.
    fn object_prefix(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// Processes whose CPU each write is charged.
const PROCESSES: [&str; 3] = ["kube-apiserver", "etcd", "apiserver"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Batch {
    pub writes: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latency: Latency,
    /// CPU seconds used over the batch by process, as read.
    #[serde(default)]
    pub cpu_seconds: HashMap<String, f64>,
    /// CPU-ms per write by process, the median idle rate subtracted.
    pub cpu_ms_per_write: HashMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindCost {
    pub kind: WriteKind,
    pub batches: Vec<Batch>,
    /// Medians over the batches.
    pub latency: Latency,
    pub cpu_ms_per_write: HashMap<String, f64>,
}

impl KindCost {
    pub fn cpu(&self, process: &str) -> f64 {
        self.cpu_ms_per_write.get(process).copied().unwrap_or(f64::NAN)
    }
}

/// Bytes of the objects as kube-apiserver returns them (JSON, as a CRD's
/// objects are stored in etcd).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sizes {
    /// A held BerthLease after the operator's conditions, whole.
    pub berth_object: usize,
    pub berth_status: usize,
    pub berth_managed_fields: usize,
    /// The same status with only what a holder needs: state, holders,
    /// fencing token, transitions.
    pub berth_status_minimal: usize,
    /// The coordination Lease, whole.
    pub lease_object: usize,
    /// The managedFields of one object of each kind but Berth's (see
    /// `berth_managed_fields`), after the batches.
    #[serde(default, alias = "twin_managed_fields")]
    pub managed_fields: BTreeMap<WriteKind, usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteCost {
    pub workers: usize,
    pub writes_per_batch: usize,
    /// Control-plane cores at rest, by process (median of the idle readings).
    pub idle_cores: HashMap<String, f64>,
    pub kinds: Vec<KindCost>,
    pub sizes: Sizes,
    /// The fields one renew through Berth changed in the stored object
    /// (JSON paths; `metadata.resourceVersion` left out).
    pub renew_rewrites: Vec<String>,
}

impl WriteCost {
    pub fn kind(&self, kind: WriteKind) -> Option<&KindCost> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
    /// CPU-ms of `process` per write of `kind`; NaN when not measured.
    pub fn cpu(&self, kind: WriteKind, process: &str) -> f64 {
        self.kind(kind).map_or(f64::NAN, |k| k.cpu(process))
    }
    /// kube-apiserver CPU per Berth renew over per minimal-object write.
    pub fn cpu_ratio_minimal(&self) -> f64 {
        self.ratio(WriteKind::Berth, WriteKind::Lease)
    }
    /// kube-apiserver CPU per Berth renew over the CRD floor: the schemaless
    /// twin written with only the holder's fields.
    pub fn cpu_ratio_floor(&self) -> f64 {
        self.ratio(WriteKind::Berth, WriteKind::BareMinimal)
    }
    /// kube-apiserver CPU per Berth renew over per raw write of the same shape.
    pub fn cpu_ratio_same_shape(&self) -> f64 {
        self.ratio(WriteKind::Berth, WriteKind::Raw)
    }
    /// kube-apiserver CPU per SSA write over per `replace_status`.
    pub fn cpu_ratio_apply(&self) -> f64 {
        self.ratio(WriteKind::Apply, WriteKind::Raw)
    }
    pub fn p50_ratio_apply(&self) -> f64 {
        let p50 = |kind| self.kind(kind).map_or(f64::NAN, |k| k.latency.p50_ms);
        p50(WriteKind::Apply) / p50(WriteKind::Raw)
    }
    /// kube-apiserver CPU per write of kind `a` over kind `b`.
    pub fn ratio(&self, a: WriteKind, b: WriteKind) -> f64 {
        self.cpu(a, "kube-apiserver") / self.cpu(b, "kube-apiserver")
    }
}

/// One object a worker writes, with its last written copy.
enum Writer {
    Berth {
        client: berth_client::Client,
        ns: String,
        name: String,
        renew: RenewRequest,
    },
    /// A raw status write: `replace_status`, or server-side apply when `apply`.
    Raw {
        api: Api<BerthLease>,
        lease: BerthLease,
        token: i32,
        apply: bool,
    },
    Lease {
        api: Api<Lease>,
        lease: Lease,
    },
    /// A status write to a twin CRD.
    Twin(TwinLease),
}

impl Writer {
    /// One write; `Ok(false)` when it failed and counts as an error.
    async fn write(&mut self) -> Result<bool> {
        match self {
            Writer::Berth { client, ns, name, renew } => Ok(client.renew(ns, name, renew).await.is_ok()),
            Writer::Raw { api, lease, token, apply } => write_berth_status(api, lease, *token, *apply).await,
            Writer::Twin(twin) => twin.renew().await,
            Writer::Lease { api, lease } => {
                let mut next = lease.clone();
                next.metadata.managed_fields = None;
                let spec = next.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
                let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
                match api.replace(&lease.name_any(), &params, &next).await {
                    Ok(written) => {
                        *lease = written;
                        Ok(true)
                    }
                    Err(_) => {
                        *lease = api.get(&lease.name_any()).await?;
                        Ok(false)
                    }
                }
            }
        }
    }

    /// Bytes of the managedFields of the object as stored; `None` for a
    /// renew through Berth (its object is read by [`inspect`]).
    async fn managed_fields_bytes(&self) -> Result<Option<usize>> {
        Ok(match self {
            Writer::Berth { .. } => None,
            Writer::Raw { api, lease, .. } => {
                Some(json_len(&api.get(&lease.name_any()).await?.metadata.managed_fields))
            }
            Writer::Lease { api, lease } => Some(json_len(&api.get(&lease.name_any()).await?.metadata.managed_fields)),
            Writer::Twin(twin) => Some(json_len(&twin.stored().await?["metadata"]["managedFields"])),
        })
    }
}

/// `decide` a renew on `lease`, then write its status guarded by its
/// resourceVersion: by `replace_status`, or by server-side apply carrying
/// `metadata.resourceVersion`. A conflict rereads and decides again.
async fn write_berth_status(api: &Api<BerthLease>, lease: &mut BerthLease, token: i32, apply: bool) -> Result<bool> {
    let name = lease.name_any();
    for _ in 0..8 {
        let request = Request::Renew { holder: HOLDER, fencing_token: token, ttl_seconds: TTL_SECONDS };
        let decision = rules::decide(&lease.spec, &lease.status.clone().unwrap_or_default(), &request, Utc::now());
        let status = decision.status.ok_or_else(|| Error::Scenario(format!("the raw renew of {name} was refused")))?;
        let result = if apply {
            let body = json!({
                "apiVersion": BerthLease::api_version(&()),
                "kind": BerthLease::kind(&()),
                "metadata": {"name": name, "resourceVersion": lease.resource_version()},
                "status": status,
            });
            let params = PatchParams::apply("berth-bench-apply").force();
            api.patch_status(&name, &params, &Patch::Apply(&body)).await
        } else {
            let mut object = lease.clone();
            object.metadata.managed_fields = None;
            object.status = Some(status);
            let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
            api.replace_status(&name, &params, &object).await
        };
        match result {
            Ok(written) => {
                *lease = written;
                return Ok(true);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => *lease = api.get(&name).await?,
            Err(_) => return Ok(false),
        }
    }
    Ok(false)
}

/// # Errors
/// When the objects cannot be set up.
pub async fn run(stack: &Stack, profile: &Profile) -> Result<WriteCost> {
    let ns = stack.namespace("bench-cost").await;
    let client = stack.client()?;
    let berth_api: Api<BerthLease> = Api::namespaced(stack.kube.clone(), &ns);
    let lease_api: Api<Lease> = Api::namespaced(stack.kube.clone(), &ns);
    let workers = profile.write_cost_workers;
    let acquire = AcquireRequest { holder: HOLDER.to_owned(), ttl_seconds: TTL_SECONDS, ..Default::default() };

    // Every BerthLease is made by a creating acquire through Berth, so all
    // have the same shape (and no managedFields until an apply adds some).
    let mut writers: BTreeMap<WriteKind, Vec<Writer>> = BTreeMap::new();
    for w in 0..workers {
        let name = format!("berth-{w}");
        let grant = client.acquire(&ns, &name, &acquire).await?;
        let renew =
            RenewRequest { holder: HOLDER.to_owned(), fencing_token: grant.fencing_token, ttl_seconds: TTL_SECONDS };
        writers.entry(WriteKind::Berth).or_default().push(Writer::Berth {
            client: client.clone(),
            ns: ns.clone(),
            name,
            renew,
        });
        for (kind, apply) in [(WriteKind::Raw, false), (WriteKind::Apply, true)] {
            let name = format!("{}-{w}", kind.object_prefix());
            let token = client.acquire(&ns, &name, &acquire).await?.fencing_token;
            let lease = BerthLease::new(&name, Default::default());
            writers.entry(kind).or_default().push(Writer::Raw { api: berth_api.clone(), lease, token, apply });
        }
    }
    // The operator writes the first conditions of each new lease: let that land.
    wait_for_conditions(&berth_api, 3 * workers).await?;
    for writer in writers.values_mut().flatten() {
        if let Writer::Raw { api, lease, .. } = writer {
            *lease = api.get(&lease.name_any()).await?;
        }
    }
    for twin in TWINS {
        twin.install(&stack.kube).await?;
    }
    let same_json = Shape { minimal: false, clear_managed_fields: false };
    let cleared = Shape { minimal: false, clear_managed_fields: true };
    let holder_only = Shape { minimal: true, clear_managed_fields: false };
    for (kind, twin, shape) in [
        (WriteKind::Bare, Twin::Schemaless, same_json),
        (WriteKind::BareMinimal, Twin::Schemaless, holder_only),
        (WriteKind::BareMinimalCleared, Twin::Schemaless, Shape { clear_managed_fields: true, ..holder_only }),
        (WriteKind::TwinCel, Twin::WithCel, same_json),
        (WriteKind::TwinCelCleared, Twin::WithCel, cleared),
        (WriteKind::TwinCelClearedMinimal, Twin::WithCel, Shape { minimal: true, ..cleared }),
        (WriteKind::TwinNoCel, Twin::WithoutCel, same_json),
        (WriteKind::TwinFieldByField, Twin::FieldByField, same_json),
    ] {
        let mut twins = Vec::new();
        for w in 0..workers {
            let like = berth_api.get(&format!("raw-{w}")).await?;
            let name = format!("{}-{w}", kind.object_prefix());
            twins.push(Writer::Twin(TwinLease::create(&stack.kube, twin, &ns, &name, &like, shape).await?));
        }
        writers.insert(kind, twins);
    }
    let mut leases = Vec::new();
    for w in 0..workers {
        let lease = minimal_lease(&lease_api, &format!("lease-{w}")).await?;
        leases.push(Writer::Lease { api: lease_api.clone(), lease });
    }
    writers.insert(WriteKind::Lease, leases);
    assert_eq!(writers.len(), WriteKind::ALL.len(), "every write kind has its writers");
    // BerthLeases are watched by two informers (Berth's apiserver and the
    // operator): give the twin and the Lease two watchers each, so that
    // every kind pays the same watch fan-out.
    let mut watchers = JoinSet::new();
    for _ in 0..2 {
        for twin in TWINS {
            watchers.spawn(drain(watcher(twin.api(&stack.kube, &ns), watcher::Config::default())));
        }
        watchers.spawn(drain(watcher(lease_api.clone(), watcher::Config::default())));
    }
    let (mut sizes, renew_rewrites) = inspect(&client, &ns, &berth_api, &lease_api).await?;

    let pids: Vec<(&'static str, u32)> =
        stack.pids().into_iter().filter(|(name, _)| PROCESSES.contains(name)).collect();
    let mut idle = Vec::new();
    let mut batches: BTreeMap<WriteKind, Vec<Batch>> = BTreeMap::new();
    for _ in 0..profile.write_cost_repetitions {
        idle.push(idle_cores(&pids).await);
        for (kind, writers) in &mut writers {
            batches.entry(*kind).or_default().push(batch(writers, profile.write_cost_batch / workers, &pids).await?);
        }
    }
    for (kind, writers) in &writers {
        if let Some(bytes) = writers.first().map(Writer::managed_fields_bytes) {
            bytes.await?.map(|bytes| sizes.managed_fields.insert(*kind, bytes));
        }
    }
    // One idle second can catch a compaction or a GC: subtract the median rate.
    let idle_cores: HashMap<String, f64> = PROCESSES
        .iter()
        .map(|p| ((*p).to_owned(), median(&idle.iter().filter_map(|i| i.get(*p).copied()).collect::<Vec<_>>())))
        .collect();
    for batch in batches.values_mut().flatten() {
        for (name, used) in &batch.cpu_seconds {
            let at_rest = idle_cores.get(name).copied().unwrap_or(0.0) * batch.seconds;
            batch.cpu_ms_per_write.insert(name.clone(), (used - at_rest) * 1000.0 / batch.writes.max(1) as f64);
        }
    }
    let kinds = batches
        .into_iter()
        .map(|(kind, batches)| {
            let latency = Latency::median_of(&batches.iter().map(|b| b.latency.clone()).collect::<Vec<_>>());
            let cpu_ms_per_write = PROCESSES
                .iter()
                .map(|p| {
                    let values: Vec<f64> = batches.iter().filter_map(|b| b.cpu_ms_per_write.get(*p).copied()).collect();
                    ((*p).to_owned(), median(&values))
                })
                .collect();
            KindCost { kind, batches, latency, cpu_ms_per_write }
        })
        .collect();
    watchers.abort_all();
    Ok(WriteCost {
        workers,
        writes_per_batch: profile.write_cost_batch / workers * workers,
        idle_cores,
        kinds,
        sizes,
        renew_rewrites,
    })
}

async fn minimal_lease(api: &Api<Lease>, name: &str) -> Result<Lease> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let mut lease = Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(HOLDER.to_owned()),
            lease_duration_seconds: Some(TTL_SECONDS),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    lease.metadata.name = Some(name.to_owned());
    let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_owned()) };
    Ok(api.create(&params, &lease).await?)
}

/// Waits until the operator has written its conditions on every BerthLease
/// of the namespace (2 × `workers` of them).
async fn wait_for_conditions(api: &Api<BerthLease>, leases: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.list(&Default::default()).await?;
        let done = list.items.iter().filter(|l| l.status.as_ref().is_some_and(|s| !s.conditions.is_empty())).count();
        if done >= leases {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Scenario(format!("the operator wrote conditions on {done} of {leases} leases")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sizes of the objects, and the fields one renew through Berth changes.
async fn inspect(
    client: &berth_client::Client,
    ns: &str,
    berth_api: &Api<BerthLease>,
    lease_api: &Api<Lease>,
) -> Result<(Sizes, Vec<String>)> {
    let before = berth_api.get("berth-0").await?;
    let lease = lease_api.get("lease-0").await?;
    let status = before.status.clone().unwrap_or_default();
    let minimal = minimal_status(&status);
    let sizes = Sizes {
        berth_object: json_len(&before),
        berth_status: json_len(&status),
        berth_managed_fields: json_len(&before.metadata.managed_fields),
        berth_status_minimal: json_len(&minimal),
        lease_object: json_len(&lease),
        managed_fields: BTreeMap::new(),
    };
    let grant = client
        .acquire(
            ns,
            "berth-0",
            &AcquireRequest { holder: HOLDER.to_owned(), ttl_seconds: TTL_SECONDS, ..Default::default() },
        )
        .await?;
    let renew =
        RenewRequest { holder: HOLDER.to_owned(), fencing_token: grant.fencing_token, ttl_seconds: TTL_SECONDS };
    let before = serde_json::to_value(berth_api.get("berth-0").await?)?;
    // managedFields times have a resolution of a second: let one pass, so
    // that a rewritten time shows.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    client.renew(ns, "berth-0", &renew).await?;
    let after = serde_json::to_value(berth_api.get("berth-0").await?)?;
    let mut changed = Vec::new();
    diff("", &before, &after, &mut changed);
    changed.retain(|path| path != "metadata.resourceVersion");
    Ok((sizes, changed))
}

/// Consumes a watch until aborted.
async fn drain<S: futures::Stream>(stream: S) {
    stream.for_each(|_| std::future::ready(())).await;
}

/// Bytes of `value` as JSON.
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// The paths at which `a` and `b` differ.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                diff(&join(key), x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

/// Cores each process uses at rest, over one second.
async fn idle_cores(pids: &[(&'static str, u32)]) -> BTreeMap<&'static str, f64> {
    let before: Vec<Option<f64>> = pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let wall = started.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .filter_map(|((name, pid), before)| Some((*name, (cpu_seconds(*pid)? - before?) / wall)))
        .collect()
}

/// `per_worker` writes through each writer, all at once, and the CPU used meanwhile.
async fn batch(writers: &mut [Writer], per_worker: usize, pids: &[(&'static str, u32)]) -> Result<Batch> {
    let before: Vec<Option<f64>> = pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let started = Instant::now();
    let runs = futures::future::join_all(writers.iter_mut().map(|writer| async move {
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for _ in 0..per_worker {
            let sent = Instant::now();
            if writer.write().await? {
                latencies.push(ms(sent.elapsed()));
            } else {
                errors += 1;
            }
        }
        Ok::<_, Error>((latencies, errors))
    }))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for run in runs {
        let (l, e) = run?;
        latencies.extend(l);
        errors += e;
    }
    let writes = latencies.len() + errors;
    let cpu_seconds = pids
        .iter()
        .zip(before)
        .filter_map(|((name, pid), before)| Some(((*name).to_owned(), cpu_seconds(*pid)? - before?)))
        .collect();
    let latency = Latency::of(&latencies);
    Ok(Batch { writes, errors, seconds, latency, cpu_seconds, cpu_ms_per_write: HashMap::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_kind_is_stored_as_its_label() {
        for &kind in WriteKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.label());
            assert_eq!(serde_json::from_value::<WriteKind>(json).unwrap(), kind);
        }
    }

    #[test]
    fn diff_names_the_changed_paths_only() {
        let a = json!({"metadata": {"resourceVersion": "1", "managedFields": [{"time": "t1"}]},
            "status": {"holders": [{"expiresAt": "x", "identity": "a"}], "state": "held"}});
        let b = json!({"metadata": {"resourceVersion": "2", "managedFields": [{"time": "t2"}]},
            "status": {"holders": [{"expiresAt": "y", "identity": "a"}], "state": "held", "extra": 1}});
        let mut changed = Vec::new();
        diff("", &a, &b, &mut changed);
        assert_eq!(
            changed,
            [
                "metadata.managedFields[0].time",
                "metadata.resourceVersion",
                "status.extra",
                "status.holders[0].expiresAt"
            ]
        );
    }
}
