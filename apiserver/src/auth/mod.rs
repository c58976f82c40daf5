//! Who is calling, and what they may do: API keys and tenants.

mod keys;

pub use keys::*;
