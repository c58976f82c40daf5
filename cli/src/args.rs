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
    /// Run as a pod's native sidecar: let the app start only once the pod
    /// holds the lease, and stop it at the safe deadline
    #[command(long_about = GATE_HELP)]
    Gate(GateCommand),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Internal to `lease hold`: asks for SIGKILL when process PARENT dies,
    /// then runs COMMAND in this process.
    #[command(name = "__exec-child", hide = true)]
    ExecChild {
        /// The process id of the `lease hold` that started this one
        parent: i32,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GateCommand {
    #[command(subcommand)]
    pub probe: Option<GateProbe>,
    /// Lease name
    #[arg(required = true)]
    pub name: Option<String>,
    /// Holder identity (default: <tenant>/<pod name>)
    #[arg(long, env = "BERTH_HOLDER")]
    pub holder: Option<String>,
    /// The tenant the credential maps to, for the default holder
    #[arg(long, env = "BERTH_TENANT")]
    pub tenant: Option<String>,
    /// The pod's name, for the default holder (default: $HOSTNAME, which kubelet sets to it)
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// TTL of the grant, e.g. 30s; the heartbeat is a third of it
    #[arg(long, value_parser = berth_api::duration::parse, default_value = "30s")]
    pub ttl: Duration,
    /// How long the app may take to stop after SIGTERM: it gets SIGTERM this
    /// long before the safe deadline, and SIGKILL at it
    #[arg(long, value_parser = berth_api::duration::parse, default_value = "5s")]
    pub stop_budget: Duration,
    /// Where the gate publishes its state for `berth gate probe`
    #[arg(long, env = "BERTH_GATE_STATE", default_value = "/var/run/berth-gate/state", global = true)]
    pub state_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum GateProbe {
    /// Exit 0 while the gate holds the lease and its fence has not come: the
    /// gate container's startup and readiness probe (exec)
    Probe,
}

const GATE_HELP: &str = "\
Run as a pod's native sidecar (an init container with restartPolicy: Always) so
that the pod's app runs only while the pod holds the lease, whatever its language:

  - the gate waits for the lease; its startup probe, `berth gate probe`, fails
    until then, so kubelet does not start the app container;
  - while it holds, `berth gate probe` (the readiness probe) succeeds until the
    fence: the safe deadline less --stop-budget;
  - at the fence, or on a loss, it sends SIGTERM to the app's processes, and
    SIGKILL at the safe deadline; then it releases the lease. On SIGTERM (the pod
    is stopping) it does the same once the app has exited.

The pod needs shareProcessNamespace: true (the gate signals the app's processes),
the app container needs restartPolicy: Never (a stopped app is not restarted in
this pod: the pod fails and its controller replaces it with one that waits), and
the app runs as the gate's user or the gate has the KILL capability. The credential
is --api-key-file, typically a projected service-account token with audience
berth. Example: config/samples/gate-deployment.yaml; docs/gate.md.";

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
