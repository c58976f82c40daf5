//! Rust client for Berth's lease REST API (`docs/api.md`): typed calls for every
//! route, and a [`LeaseKeeper`] that holds a lease in the background and says
//! the moment it may no longer be held.
//!
//! TLS uses rustls with the ring provider. The server's certificate is
//! checked against the system trust store, a CA bundle
//! ([`ClientBuilder::ca_file`]), or a rustls configuration of your own
//! ([`ClientBuilder::rustls_config`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use berth_client::{Client, KeeperOptions, LeaseKeeper};
//!
//! # async fn run() -> Result<(), berth_client::Error> {
//! let client = Client::builder("https://berth.example.com:8443")
//!     .api_key_file("/var/run/secrets/berth/api-key")
//!     .ca_file("/var/run/secrets/berth/ca.crt")?
//!     .build()?;
//!
//! let options = KeeperOptions::new("team-a", "ingest-coordinator", "team-a/worker-1", Duration::from_secs(30))
//!     .wait(Duration::from_secs(60));
//! let keeper = LeaseKeeper::acquire(client, options).await?;
//! let token = keeper.fencing_token(); // pass it to every downstream write
//!
//! tokio::select! {
//!     loss = keeper.lost() => eprintln!("lost the lease ({loss}); stopping"),
//!     () = do_the_work(token) => keeper.release().await?,
//! }
//! # Ok(())
//! # }
//! # async fn do_the_work(_token: i32) {}
//! ```
//!
//! Calls return [`Error`], which separates a lease held by someone else
//! ([`Error::NotAcquired`]) from conflicts, auth failures, missing leases,
//! invalid requests (with the server's message) and transport failures.
#![forbid(unsafe_code)]

mod client;
mod error;
mod keeper;
mod key;
pub mod sse;
mod tls;
mod tls_errors;

pub use berth_api::wire::{AcquireRequest, AcquireResponse, LeaseView, ReleaseRequest, RenewRequest};
pub use client::{
    Client, ClientBuilder, DEFAULT_TIMEOUT, Grant, LeaseEvent, LeaseEventStream, LeaseStream, WATCH_IDLE_TIMEOUT,
};
pub use error::Error;
pub use keeper::{
    KeeperOptions, KeeperState, LeaseKeeper, Loss, RenewObserver, RenewReport, RenewResult, Schedule, default_margin,
    fence_at,
};
pub use key::KEY_FILE_RECHECK;
