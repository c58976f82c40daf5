//! The command line, as clap derives it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use berth_api::Semantics;

use crate::output::Format;

/// berth: acquire, hold, inspect and release Berth leases.
#[derive(Debug, Parser)]
#[command(name = "berth", version, after_help = crate::exit::HELP, after_long_help = crate::exit::HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Berth apiserver URL, e.g. https://berth.example.com:8443
    #[arg(long, env = "BERTH_API_SERVER", global = true, value_name = "URL")]
    pub api_server: Option<String>,
    /// API key, sent as `Authorization: Bearer <key>`. Prefer --api-key-file
    /// or the environment: a flag shows in the process list.
    #[arg(long, env = "BERTH_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// File holding the API key or a service-account token (wins over
    /// --api-key); read again when it changes, so a rotated token keeps working
    #[arg(long, env = "BERTH_API_KEY_FILE", global = true, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Namespace of the lease
    #[arg(short, long, env = "BERTH_NAMESPACE", default_value = "default", global = true)]
    pub namespace: String,
    /// PEM bundle of the CA that signed the apiserver's certificate (default: the system trust store)
    #[arg(long, env = "BERTH_CA_FILE", global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the apiserver's certificate (insecure: for throwaway test setups only); wins over --ca-file
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Time one request may take, e.g. 10s
    #[arg(long, value_parser = berth_api::duration::parse, default_value = "10s", global = true)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the apiserver answers and, with a key, that it accepts the key for the namespace
    Ping,
    /// Print the version of berth and of the API it speaks
    Version,
    /// Work with leases
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// List the leases of the namespace, or of every namespace the key may use
    List {
        /// List the leases of every namespace the key may use
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show one lease
    Get {
        /// Lease name
        name: String,
    },
    /// Acquire a lease and print its fencing token (exit code 3 when someone else holds it)
    Acquire {
        /// Lease name
        name: String,
        #[command(flatten)]
        holder: HolderArgs,
        #[command(flatten)]
        grant: GrantArgs,
        /// at-most-once or at-least-once; used only when this acquire creates the lease
        #[arg(long, value_parser = parse_semantics)]
        semantics: Option<Semantics>,
        /// Cap on concurrent holders of an at-least-once lease; used only when this acquire creates it
        #[arg(long)]
        max_holders: Option<i32>,
    },
    /// Renew a lease held with a fencing token (exit code 3 when it is lost)
    Renew {
        /// Lease name
        name: String,
        #[command(flatten)]
        holder: HolderArgs,
        /// Fencing token of the grant
        #[arg(long)]
        token: i32,
        /// TTL to renew for, e.g. 30s
        #[arg(long, value_parser = berth_api::duration::parse, default_value = "30s")]
        ttl: Duration,
    },
    /// Release a lease. Without --holder and --token, the caller's own holder
    /// and its token are looked up with a get (see `berth lease release --help`)
    #[command(long_about = RELEASE_HELP)]
    Release {
        /// Lease name
        name: String,
        /// Holder to release (default: the caller's live holder of the lease)
        #[arg(long, env = "BERTH_HOLDER")]
        holder: Option<String>,
        /// Fencing token of the holder (default: looked up with a get)
        #[arg(long)]
        token: Option<i32>,
        /// With no --holder: consider only holders of this tenant (`<tenant>` or `<tenant>/…`)
        #[arg(long, env = "BERTH_TENANT")]
        tenant: Option<String>,
    },
    /// Stream the changes of a lease, starting with its current state
    Watch {
        /// Lease name
        name: String,
    },
    /// Run a command while holding a lease, like `consul lock`
    #[command(long_about = HOLD_HELP)]
    Hold {
        /// Lease name
        name: String,
        #[command(flatten)]
        holder: HolderArgs,
        #[command(flatten)]
        grant: GrantArgs,
        /// After SIGTERM on loss, how long the command has before SIGKILL
        #[arg(long, value_parser = berth_api::duration::parse, default_value = "10s")]
        grace: Duration,
        /// Give up this much before `renew sent + ttl` (default: ttl/10, between 250ms and 5s)
        #[arg(long, value_parser = berth_api::duration::parse)]
        margin: Option<Duration>,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct HolderArgs {
    /// Holder identity: `<tenant>` or `<tenant>/<anything>`
    #[arg(long, env = "BERTH_HOLDER")]
    pub holder: String,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// TTL of the grant, e.g. 30s
    #[arg(long, value_parser = berth_api::duration::parse, default_value = "30s")]
    pub ttl: Duration,
    /// Wait this long for the lease when someone else holds it, e.g. 1m
    #[arg(long, value_parser = berth_api::duration::parse)]
    pub wait: Option<Duration>,
}

const RELEASE_HELP: &str = "\
Release a lease.

With --holder and --token, that grant is released. Otherwise berth reads the
lease and picks the caller's own live holder:

  - with --holder (or BERTH_HOLDER) alone, that holder's token is looked up;
  - else the live holders are narrowed to --tenant (or BERTH_TENANT), if given:
    identity `<tenant>` or `<tenant>/...`, the holders a tenant may act as;
  - exactly one candidate left: it is released. The server refuses (403, exit 4)
    if it is not the caller's. Several left: berth asks for --holder.
  - no live holder at all: nothing to release, and berth succeeds (release is
    idempotent).";

const HOLD_HELP: &str = "\
Run a command while holding a lease, like `consul lock`.

berth acquires the lease (waiting up to --wait for it), starts COMMAND with
BERTH_LEASE, BERTH_NAMESPACE, BERTH_HOLDER and BERTH_FENCING_TOKEN in its
environment, and renews the lease in the background every heartbeat.

berth keeps a local safe deadline: the time the last successful renew was
sent, plus the TTL, minus a margin. When the deadline passes without a renew
(the apiserver unreachable), or a renew is refused (someone took the lease
over, or it was deleted), berth sends SIGTERM to COMMAND, then SIGKILL after
--grace, and exits 3. Because the deadline is counted from the moment the
renew was sent, COMMAND is signalled before the server can grant the lease to
anyone else.

When COMMAND exits, berth releases the lease and exits with COMMAND's exit
code (128+N when a signal N ended it). SIGINT, SIGTERM and SIGHUP sent to
berth are passed on to COMMAND; berth then waits for it, releases and exits
with its code.";

fn parse_semantics(s: &str) -> Result<Semantics, String> {
    match s {
        "at-most-once" => Ok(Semantics::AtMostOnce),
        "at-least-once" => Ok(Semantics::AtLeastOnce),
        _ => Err("use at-most-once or at-least-once".to_owned()),
    }
}
