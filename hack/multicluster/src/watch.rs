//! Records what a watch on one object sees, at monotonic instants of this
//! process: every change of a value read from the object.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::overlap::Observation;

type Entries<T> = Arc<Mutex<Vec<(Instant, T)>>>;

/// A watch on one object, recording `read(object)` each time it changes
/// (`read(None)` while the object does not exist). Stops when dropped.
pub struct Recorder<T> {
    entries: Entries<T>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone + PartialEq + Send + 'static> Recorder<T> {
    /// Starts watching object `name` of `api` in the current tokio runtime.
    pub fn start<K>(api: Api<K>, name: &str, read: impl Fn(Option<&K>) -> T + Send + 'static) -> Self
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let entries: Entries<T> = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (sink, notify) = (entries.clone(), changed.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let value = match event {
                    Ok(Event::Apply(object) | Event::InitApply(object)) => read(Some(&object)),
                    Ok(Event::Delete(_)) => read(None),
                    Ok(Event::Init | Event::InitDone) | Err(_) => continue,
                };
                let at = Instant::now();
                let mut entries = sink.lock().expect("recorder lock");
                if entries.last().is_none_or(|(_, last)| *last != value) {
                    entries.push((at, value));
                    notify.notify_waiters();
                }
            }
        });
        Self { entries, changed, task }
    }

    /// Everything recorded so far, oldest first.
    pub fn history(&self) -> Vec<(Instant, T)> {
        self.entries.lock().expect("recorder lock").clone()
    }

    /// Waits until `check` finds something in the history, or panics after `within`.
    pub async fn wait_for<R>(&self, what: &str, within: Duration, check: impl Fn(&[(Instant, T)]) -> Option<R>) -> R
    where
        T: Debug,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = check(&self.history()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let history = self.history();
                if let Some(found) = check(&history) {
                    return found;
                }
                panic!("not within {within:?}: {what}; history: {history:?}");
            }
        }
    }
}

impl Recorder<bool> {
    /// The history as overlap observations (`true`: running).
    pub fn observations(&self) -> Vec<Observation> {
        self.history().into_iter().map(|(at, running)| Observation { at, running }).collect()
    }

    /// Waits until the target is `running` at or after `after`, and returns when it was first seen so.
    pub async fn wait_running(&self, running: bool, after: Instant, within: Duration) -> Instant {
        let what = if running { "the target runs" } else { "the target stops" };
        self.wait_for(what, within, |history| {
            let observations: Vec<Observation> =
                history.iter().map(|&(at, running)| Observation { at, running }).collect();
            crate::overlap::first_at_or_after(&observations, after, running)
        })
        .await
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
