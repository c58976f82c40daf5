//! What the two binaries (the apiserver and the operator) agree on when they
//! serve plain HTTP: how a bind address flag reads, and the content type of
//! `/metrics`. Both log JSON lines by default (`--log-format json`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The content type of `/metrics` in both binaries: prometheus-client
/// encodes OpenMetrics text (ending in `# EOF`), and says so.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A listener's bind address as controller-runtime reads it: `HOST:PORT`,
/// `:PORT` (every IPv4 interface), or `0` (the listener is disabled: `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress(pub Option<SocketAddr>);

/// A bind address that is none of `HOST:PORT`, `:PORT` or `0`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bind address {0:?} is not HOST:PORT, :PORT or 0 (disabled)")]
pub struct BindAddressError(pub String);

impl FromStr for BindAddress {
    type Err = BindAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "0" {
            return Ok(BindAddress(None));
        }
        let full = match s.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => s.to_owned(),
        };
        full.parse().map(|addr| BindAddress(Some(addr))).map_err(|_| BindAddressError(s.to_owned()))
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_follow_controller_runtime() {
        let parse = |s: &str| s.parse::<BindAddress>().map(|b| b.0);
        assert_eq!(parse(":8080"), Ok(Some("0.0.0.0:8080".parse().unwrap())));
        assert_eq!(parse("127.0.0.1:9"), Ok(Some("127.0.0.1:9".parse().unwrap())));
        assert_eq!(parse("[::1]:9"), Ok(Some("[::1]:9".parse().unwrap())));
        assert_eq!(parse("0"), Ok(None));
        assert!(parse("localhost").is_err());
        assert!(parse("").is_err());
    }
}
