//! Rust client for Berth's lease REST API. Not built yet (see README "Status").
#![forbid(unsafe_code)]
