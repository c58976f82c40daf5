//! Berth's apiserver: the HTTPS lease API of docs/api.md over BerthLease status.
//!
//! It is stateless. Reads come from an informer cache ([`cache`]); every
//! acquire, renew and release is one conditional status write decided by
//! [`berth_api::rules::decide`] ([`leases`]). Keys and tenancy are in
//! [`auth`], the routes and their checks in [`http`], serving and shutdown in
//! [`serve`]. Any number of replicas can run side by side.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod collection_watch;
pub mod console;
pub mod error;
pub mod http;
pub mod leases;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod serve;
pub mod warmup;
pub mod write_queue;

pub use error::ApiError;
pub use http::{App, router};
