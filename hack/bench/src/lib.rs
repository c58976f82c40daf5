//! Berth's benchmark harness (`make bench`): a load generator in Rust and the
//! benchmark scenarios (docs/benchmarks.md), run against the real local control plane with the
//! `apiserver` and `operator` binaries as child processes.
//!
//! Every figure is measured, never asserted: the harness reports medians over
//! repeated runs and ratios taken side by side in one run, and [`report`]
//! writes them as Markdown tables and JSON with the machine, the versions and
//! the date.
#![forbid(unsafe_code)]

pub mod auth;
pub mod expiry;
pub mod failover;
pub mod hot_path;
pub mod memory;
pub mod overload;
pub mod procfs;
pub mod profile;
pub mod report;
pub mod scale;
pub mod seed;
pub mod stack;
pub mod stats;
pub mod twin;
pub mod write_cost;

/// Everything a scenario can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube-apiserver: {0}")]
    Kube(#[from] kube::Error),
    #[error("berth apiserver: {0}")]
    Berth(#[from] berth_client::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The stack did not behave as a scenario needs (a grant that did not
    /// happen, an action that never came).
    #[error("{0}")]
    Scenario(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
