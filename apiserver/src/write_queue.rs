//! The write queue in front of kube-apiserver: at most `max_concurrent`
//! requests write at once, at most `max_queued` wait for a slot, and a
//! request that finds the queue full is shed at once (503 with
//! `Retry-After`), never after a wait. See docs/overload.md.
//!
//! Two classes share the queue. [`Priority::Holding`] (renews and releases
//! of live tenures) is always served before [`Priority::Acquiring`] (grants
//! and creates), and a holding request that finds the queue full takes the
//! place of the newest queued acquiring one, which is shed instead: a lost
//! lease costs an expiry write and a new acquire later, a shed acquire
//! costs nothing. Within a class, requests get their slot in arrival order.
//!
//! [`Admission`] is the pure bookkeeping (no I/O, no clock); [`WriteQueue`]
//! wraps it with a lock and wakes the waiters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Which requests win when write slots are scarce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A write that keeps or ends a live tenure: a renew (or an acquire by
    /// the live holder, which renews), or a release.
    Holding,
    /// A write that starts one: a grant, or the create of a new lease.
    Acquiring,
}

impl Priority {
    /// The fixed label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Priority::Holding => "holding",
            Priority::Acquiring => "acquiring",
        }
    }
}

/// The `Retry-After` of a shed request, in whole seconds (the header's
/// resolution), drawn at random so that requests shed together come back
/// spread out. `draw` is uniform in `[0, 1)`.
///
/// - A holder (`Holding`) is asked back within the first half of what is
///   left of its tenure, `holder_expires_in`: it keeps half its window to
///   renew in. Its keeper honours the hint when it ends before the keeper's
///   safe deadline, the end of the tenure less the keeper's margin. A holder
///   whose tenure the server does not know (no live entry) is asked back in
///   a second.
/// - An acquirer (`Acquiring`) is on no deadline: it is asked to wait 5 to
///   10 s, so that its retries leave room for the holders'.
pub fn retry_after_seconds(priority: Priority, holder_expires_in: Option<Duration>, draw: f64) -> u32 {
    match (priority, holder_expires_in) {
        (Priority::Acquiring, _) => spread(5, 10, draw),
        (Priority::Holding, None) => 1,
        (Priority::Holding, Some(left)) => {
            let half = u32::try_from(left.as_secs() / 2).unwrap_or(u32::MAX).max(1);
            spread(1, half, draw)
        }
    }
}

/// The whole number in `from..=to` that `draw` (uniform in `[0, 1)`) picks.
fn spread(from: u32, to: u32, draw: f64) -> u32 {
    let span = f64::from(to - from) + 1.0;
    from + ((draw.max(0.0) * span) as u32).min(to - from)
}

/// The limits of the queue (`--max-concurrent-writes`, `--max-queued-writes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteLimit {
    /// Requests writing to kube-apiserver at once.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; one more is shed at once.
    pub max_queued: usize,
}

impl Default for WriteLimit {
    /// 32 writes at once, and 64 waiting.
    ///
    /// Each write costs kube-apiserver about 3 ms of CPU, so 32 in flight are
    /// already about 50 ms of work on two cores: more concurrency only queues
    /// inside kube-apiserver, where nothing can refuse it in time. 64 waiting
    /// are two rounds of slots: a burst is absorbed, while a request admitted
    /// at saturation waits a few hundred ms at most on a small control plane.
    fn default() -> Self {
        Self { max_concurrent: 32, max_queued: 64 }
    }
}

/// A place in the queue.
pub type Ticket = u64;

/// The answer to a request for a write slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// A slot was free: write now.
    Run,
    /// Wait for [`Admission::finish`] to hand this ticket a slot. `evicted`
    /// is a queued acquiring request that lost its place to this one: it is shed.
    Queued { ticket: Ticket, evicted: Option<Ticket> },
    /// The queue is full: answer 503 at once.
    Shed,
}

/// The bookkeeping of slots and waiters, without I/O.
#[derive(Debug)]
pub struct Admission {
    free: usize,
    max_queued: usize,
    holding: VecDeque<Ticket>,
    acquiring: VecDeque<Ticket>,
    next: Ticket,
}

impl Admission {
    pub fn new(limit: WriteLimit) -> Self {
        Self {
            free: limit.max_concurrent,
            max_queued: limit.max_queued,
            holding: VecDeque::new(),
            acquiring: VecDeque::new(),
            next: 0,
        }
    }

    /// A request of `priority` asks for a slot.
    ///
    /// # Guarantees
    /// - It runs at once only when a slot is free and nobody waits.
    /// - It is queued while fewer than `max_queued` wait; a holding request
    ///   is also queued when the queue is full of acquiring ones, in place of
    ///   the newest of them.
    /// - Otherwise it is shed, with nothing queued.
    pub fn admit(&mut self, priority: Priority) -> Admit {
        if self.free > 0 && self.queued() == 0 {
            self.free -= 1;
            return Admit::Run;
        }
        let evicted = if self.queued() < self.max_queued {
            None
        } else if priority == Priority::Holding
            && let Some(newest) = self.acquiring.pop_back()
        {
            Some(newest)
        } else {
            return Admit::Shed;
        };
        let ticket = self.next;
        self.next += 1;
        match priority {
            Priority::Holding => self.holding.push_back(ticket),
            Priority::Acquiring => self.acquiring.push_back(ticket),
        }
        Admit::Queued { ticket, evicted }
    }

    /// A writer finished: its slot goes to the first holding waiter, else the
    /// first acquiring one (returned), else back to the free slots (`None`).
    pub fn finish(&mut self) -> Option<Ticket> {
        let next = self.holding.pop_front().or_else(|| self.acquiring.pop_front());
        if next.is_none() {
            self.free += 1;
        }
        next
    }

    /// A waiter gave up (its client went away). `false` when it was no
    /// longer queued: it was handed a slot or evicted already.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        for queue in [&mut self.holding, &mut self.acquiring] {
            if let Some(at) = queue.iter().position(|t| *t == ticket) {
                queue.remove(at);
                return true;
            }
        }
        false
    }

    /// Waiters of `priority`.
    pub fn queued_of(&self, priority: Priority) -> usize {
        match priority {
            Priority::Holding => self.holding.len(),
            Priority::Acquiring => self.acquiring.len(),
        }
    }

    fn queued(&self) -> usize {
        self.holding.len() + self.acquiring.len()
    }
}

/// The request was shed: nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shed;

struct Inner {
    admission: Admission,
    /// Whether a waiter got a slot (`true`) or was evicted (`false`).
    waiters: HashMap<Ticket, oneshot::Sender<bool>>,
}

/// [`Admission`] behind a lock, with waiters woken in order.
pub struct WriteQueue {
    inner: Mutex<Inner>,
    limit: WriteLimit,
    metrics: Arc<Metrics>,
}

impl WriteQueue {
    pub fn new(limit: WriteLimit, metrics: Arc<Metrics>) -> Self {
        let inner = Inner { admission: Admission::new(limit), waiters: HashMap::new() };
        let queue = Self { inner: Mutex::new(inner), limit, metrics };
        queue.publish_depth(&queue.lock().admission);
        queue
    }

    pub fn limit(&self) -> WriteLimit {
        self.limit
    }

    /// A write slot, held until the returned guard is dropped.
    ///
    /// # Errors
    /// [`Shed`] when the queue is full, or when a holding request took this
    /// request's place in it.
    ///
    /// # Caveats
    /// Dropping the future while it waits gives its place up (and the slot,
    /// if one was handed over in the meantime).
    pub async fn slot(&self, priority: Priority) -> Result<WriteSlot<'_>, Shed> {
        let mut waiting = {
            let mut inner = self.lock();
            match inner.admission.admit(priority) {
                Admit::Run => {
                    self.metrics.writes_in_flight.inc();
                    return Ok(WriteSlot { queue: self });
                }
                Admit::Shed => return Err(Shed),
                Admit::Queued { ticket, evicted } => {
                    if let Some(evicted) = evicted.and_then(|t| inner.waiters.remove(&t)) {
                        // A waiter that is gone already has nothing to be told.
                        let _ = evicted.send(false);
                    }
                    let (tx, rx) = oneshot::channel();
                    inner.waiters.insert(ticket, tx);
                    self.publish_depth(&inner.admission);
                    Waiting { queue: self, ticket, rx: Some(rx) }
                }
            }
        };
        let rx = waiting.rx.as_mut().expect("set above");
        let granted = rx.await.unwrap_or(false);
        // Answered: nothing is left for the guard to give up.
        waiting.rx = None;
        if granted { Ok(WriteSlot { queue: self }) } else { Err(Shed) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("write queue lock")
    }

    /// Hands a finished writer's slot to the next waiter, under the lock.
    fn finish(&self, inner: &mut Inner) {
        loop {
            match inner.admission.finish() {
                Some(ticket) => {
                    let sent = inner.waiters.remove(&ticket).is_some_and(|tx| tx.send(true).is_ok());
                    if sent {
                        break;
                    }
                }
                None => {
                    self.metrics.writes_in_flight.dec();
                    break;
                }
            }
        }
        self.publish_depth(&inner.admission);
    }

    fn publish_depth(&self, admission: &Admission) {
        for priority in [Priority::Holding, Priority::Acquiring] {
            self.metrics.queued_writes(priority.label()).set(admission.queued_of(priority) as i64);
        }
    }
}

/// A request's place in the queue, until it gets a slot or is evicted;
/// dropped while waiting, it gives the place up.
struct Waiting<'q> {
    queue: &'q WriteQueue,
    ticket: Ticket,
    rx: Option<oneshot::Receiver<bool>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut inner = self.queue.lock();
        if inner.admission.cancel(self.ticket) {
            inner.waiters.remove(&self.ticket);
            self.queue.publish_depth(&inner.admission);
        } else if matches!(rx.try_recv(), Ok(true)) {
            // Handed a slot that nobody will use: pass it on.
            self.queue.finish(&mut inner);
        }
    }
}

/// One write slot; dropping it hands the slot to the next waiter.
pub struct WriteSlot<'q> {
    queue: &'q WriteQueue,
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        let mut inner = self.queue.lock();
        self.queue.finish(&mut inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_concurrent: usize, max_queued: usize) -> WriteLimit {
        WriteLimit { max_concurrent, max_queued }
    }

    #[test]
    fn a_shed_holder_is_asked_back_within_the_first_half_of_its_tenure() {
        let holding =
            |left: u64, draw: f64| retry_after_seconds(Priority::Holding, Some(Duration::from_secs(left)), draw);
        // 20 s left: anywhere from 1 to 10 s, spread evenly by the draw.
        assert_eq!(holding(20, 0.0), 1);
        assert_eq!(holding(20, 0.5), 6);
        assert_eq!(holding(20, 0.999), 10);
        let picked: std::collections::BTreeSet<u32> = (0..100).map(|i| holding(20, f64::from(i) / 100.0)).collect();
        assert_eq!(picked, (1..=10).collect());
        // Less than 2 s left, or a tenure it does not know: a second, the header's least.
        assert_eq!(holding(1, 0.9), 1);
        assert_eq!(retry_after_seconds(Priority::Holding, None, 0.9), 1);
    }

    #[test]
    fn a_shed_acquirer_waits_five_to_ten_seconds() {
        let acquiring = |draw: f64| retry_after_seconds(Priority::Acquiring, Some(Duration::from_secs(60)), draw);
        let picked: std::collections::BTreeSet<u32> = (0..100).map(|i| acquiring(f64::from(i) / 100.0)).collect();
        assert_eq!(picked, (5..=10).collect());
    }

    fn queued(admit: Admit) -> Ticket {
        match admit {
            Admit::Queued { ticket, evicted: None } => ticket,
            other => panic!("expected a plain queued ticket, got {other:?}"),
        }
    }

    #[test]
    fn free_slots_run_at_once_and_the_queue_is_bounded_by_length() {
        let mut a = Admission::new(limit(2, 3));
        assert_eq!(a.admit(Priority::Acquiring), Admit::Run);
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
        for _ in 0..3 {
            queued(a.admit(Priority::Holding));
        }
        assert_eq!(a.admit(Priority::Holding), Admit::Shed);
        assert_eq!(a.admit(Priority::Acquiring), Admit::Shed);
        assert_eq!(a.queued_of(Priority::Holding), 3);
    }

    #[test]
    fn a_queue_of_length_zero_sheds_whatever_finds_no_free_slot() {
        let mut a = Admission::new(limit(1, 0));
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
        assert_eq!(a.admit(Priority::Holding), Admit::Shed);
        assert_eq!(a.finish(), None);
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
    }

    #[test]
    fn slots_go_to_holding_waiters_first_and_in_order_within_a_class() {
        let mut a = Admission::new(limit(1, 10));
        assert_eq!(a.admit(Priority::Acquiring), Admit::Run);
        let acquire1 = queued(a.admit(Priority::Acquiring));
        let renew1 = queued(a.admit(Priority::Holding));
        let acquire2 = queued(a.admit(Priority::Acquiring));
        let renew2 = queued(a.admit(Priority::Holding));
        let order: Vec<_> = std::iter::from_fn(|| a.finish()).collect();
        assert_eq!(order, [renew1, renew2, acquire1, acquire2]);
        // The last finish found nobody waiting: the slot is free again.
        assert_eq!(a.admit(Priority::Acquiring), Admit::Run);
    }

    #[test]
    fn a_holding_request_takes_the_place_of_the_newest_queued_acquire() {
        let mut a = Admission::new(limit(1, 2));
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
        let older = queued(a.admit(Priority::Acquiring));
        let newer = queued(a.admit(Priority::Acquiring));
        let Admit::Queued { ticket: renew, evicted } = a.admit(Priority::Holding) else { panic!("renew not queued") };
        assert_eq!(evicted, Some(newer));
        // The queue stays at its bound; an acquire now finds it full.
        assert_eq!(a.admit(Priority::Acquiring), Admit::Shed);
        assert_eq!(a.finish(), Some(renew));
        assert_eq!(a.finish(), Some(older));
    }

    #[test]
    fn a_full_queue_of_holding_requests_sheds_the_next_holder() {
        let mut a = Admission::new(limit(1, 1));
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
        queued(a.admit(Priority::Holding));
        assert_eq!(a.admit(Priority::Holding), Admit::Shed);
    }

    #[test]
    fn a_cancelled_waiter_leaves_its_place_and_gets_no_slot() {
        let mut a = Admission::new(limit(1, 2));
        assert_eq!(a.admit(Priority::Holding), Admit::Run);
        let gone = queued(a.admit(Priority::Holding));
        let stays = queued(a.admit(Priority::Acquiring));
        assert!(a.cancel(gone));
        assert!(!a.cancel(gone));
        assert_eq!(a.queued_of(Priority::Holding), 0);
        assert_eq!(a.finish(), Some(stays));
        assert!(!a.cancel(stays), "handed a slot: no longer queued");
    }

    #[tokio::test]
    async fn waiters_are_woken_in_priority_order_and_an_evicted_one_is_shed() {
        let queue = WriteQueue::new(limit(1, 1), Arc::new(Metrics::default()));
        let running = queue.slot(Priority::Acquiring).await.unwrap();
        let mut acquire = Box::pin(queue.slot(Priority::Acquiring));
        assert!(futures::poll!(&mut acquire).is_pending());
        let mut renew = Box::pin(queue.slot(Priority::Holding));
        assert!(futures::poll!(&mut renew).is_pending());
        // The renew took the queued acquire's place.
        assert!(matches!(acquire.await, Err(Shed)));
        assert!(futures::poll!(&mut renew).is_pending());
        drop(running);
        let renewing = renew.await.unwrap();
        let mut next = Box::pin(queue.slot(Priority::Holding));
        assert!(futures::poll!(&mut next).is_pending(), "the slot is taken: the next one queues");
        drop(next);
        drop(renewing);
        let inner = queue.lock();
        assert_eq!((inner.admission.free, inner.waiters.len()), (1, 0));
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_it_was_handed_a_slot_passes_the_slot_on() {
        let queue = WriteQueue::new(limit(1, 2), Arc::new(Metrics::default()));
        let running = queue.slot(Priority::Holding).await.unwrap();
        let mut first = Box::pin(queue.slot(Priority::Holding));
        assert!(futures::poll!(&mut first).is_pending());
        let mut second = Box::pin(queue.slot(Priority::Holding));
        assert!(futures::poll!(&mut second).is_pending());
        drop(running);
        // `first` was handed the slot but goes away before it takes it.
        drop(first);
        let slot = second.await.expect("the slot was passed on");
        drop(slot);
        let inner = queue.lock();
        assert_eq!((inner.admission.free, inner.admission.queued(), inner.waiters.len()), (1, 0, 0));
    }
}
