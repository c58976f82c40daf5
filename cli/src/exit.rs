//! The exit codes of `berth`, a documented contract defined here only, and
//! the one error type every command returns.

use berth_client::{Error as ClientError, Loss};

/// Success.
pub const OK: u8 = 0;
/// Any other error: transport, TLS, server error, conflict, not found.
pub const ERROR: u8 = 1;
/// Bad command line (clap uses 2 for its own errors as well).
pub const USAGE: u8 = 2;
/// The lease was not acquired, or it was lost while held.
pub const NOT_ACQUIRED: u8 = 3;
/// The key was refused (401) or may not do this (403).
pub const UNAUTHORIZED: u8 = 4;

/// Shown at the end of `berth --help`; docs/cli.md repeats it.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  error (transport, TLS, server error, conflict, not found)
  2  usage error
  3  lease not acquired, or lost while held (lease hold, lease renew)
  4  unauthorized or forbidden (the API key was refused)";

/// Why a command failed. `Display` is the one line `berth` prints on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{context}: {source}")]
    Client {
        context: String,
        #[source]
        source: ClientError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("lease {name} lost: {loss}")]
    LeaseLost { name: String, loss: Loss },
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn client(context: impl Into<String>) -> impl FnOnce(ClientError) -> CliError {
        let context = context.into();
        move |source| CliError::Client { context, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client { source, .. } => match source {
                ClientError::NotAcquired { .. } => NOT_ACQUIRED,
                ClientError::Unauthorized(_) | ClientError::Forbidden(_) => UNAUTHORIZED,
                ClientError::Config(_) => USAGE,
                ClientError::Conflict(_)
                | ClientError::NotFound(_)
                | ClientError::InvalidRequest(_)
                | ClientError::Server { .. }
                | ClientError::Transport { .. }
                | ClientError::Decode(_) => ERROR,
            },
            CliError::Usage(_) => USAGE,
            CliError::LeaseLost { .. } => NOT_ACQUIRED,
            CliError::Other(_) => ERROR,
        }
    }

    /// The single stderr line: never more than one line, whatever the server sent.
    pub fn line(&self) -> String {
        format!("berth: {}", self.to_string().replace(['\n', '\r'], " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::wire::AcquireResponse;

    fn client(source: ClientError) -> CliError {
        CliError::Client { context: "lease get x".into(), source }
    }

    #[test]
    fn each_failure_maps_to_its_documented_exit_code() {
        let cases = [
            (client(ClientError::NotAcquired { current: AcquireResponse::default() }), NOT_ACQUIRED),
            (client(ClientError::Unauthorized("unauthorized".into())), UNAUTHORIZED),
            (client(ClientError::Forbidden("not authorized for this namespace".into())), UNAUTHORIZED),
            (client(ClientError::NotFound("lease not found".into())), ERROR),
            (client(ClientError::Conflict("held".into())), ERROR),
            (client(ClientError::Transport { message: "refused".into(), source: None }), ERROR),
            (client(ClientError::Config("bad URL".into())), USAGE),
            (CliError::Usage("--holder is required".into()), USAGE),
            (CliError::LeaseLost { name: "x".into(), loss: Loss::DeadlinePassed }, NOT_ACQUIRED),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err}");
        }
    }

    #[test]
    fn error_line_is_one_line_with_the_server_message() {
        let err = client(ClientError::NotFound("lease not found\nsecond line".into()));
        assert_eq!(err.line(), "berth: lease get x: not found: lease not found second line");
    }
}
