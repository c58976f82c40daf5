//! `berth`: the command-line tool of Berth. It acquires, renews, releases,
//! lists and watches leases over Berth's REST API, and runs a command while
//! holding a lease (`berth lease hold`). Exit codes are a contract, defined in
//! `exit.rs` and documented in `--help` and docs/cli.md.
#![forbid(unsafe_code)]

mod args;
mod commands;
mod exit;
mod gate;
mod hold;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command, LeaseCommand};
use exit::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings of the client library (insecure TLS, failed renews) go to
    // stderr; libraries below it stay quiet unless BERTH_LOG asks for them.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off,berth_client=warn")),
        )
        .init();
    if let Command::ExecChild { parent, command } = &cli.command {
        return ExitCode::from(hold::exec_child(*parent, command));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: starting the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{}", err.line());
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    let global = &cli.global;
    match &cli.command {
        Command::Ping => commands::ping(global).await?,
        Command::Version => commands::version(global)?,
        Command::ExecChild { parent, command } => return Ok(hold::exec_child(*parent, command)),
        Command::Gate(gate) => {
            if let Some(args::GateProbe::Probe) = gate.probe {
                return match gate::probe::probe(&gate.state_file) {
                    Ok(()) => Ok(0),
                    Err(why) => Err(CliError::Other(why)),
                };
            }
            let args = gate::GateArgs {
                name: gate.name.clone().unwrap_or_default(),
                holder: gate.holder.clone(),
                tenant: gate.tenant.clone(),
                pod: gate.pod_name.clone().or_else(|| std::env::var("HOSTNAME").ok()),
                ttl: gate.ttl,
                stop_budget: gate.stop_budget,
                state_file: gate.state_file.clone(),
            };
            return gate::gate(global, args).await;
        }
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "berth", &mut std::io::stdout());
        }
        Command::Lease(lease) => match lease {
            LeaseCommand::List { all_namespaces } => commands::list(global, *all_namespaces).await?,
            LeaseCommand::Get { name } => commands::get(global, name).await?,
            LeaseCommand::Acquire { name, holder, grant, semantics, max_holders } => {
                commands::acquire(global, name, holder, grant, *semantics, *max_holders).await?
            }
            LeaseCommand::Renew { name, holder, token, ttl } => {
                commands::renew(global, name, holder, *token, *ttl).await?
            }
            LeaseCommand::Release { name, holder, token, tenant } => {
                commands::release(global, name, holder.as_deref(), *token, tenant.as_deref()).await?
            }
            LeaseCommand::Watch { name } => commands::watch(global, name).await?,
            LeaseCommand::Hold { name, holder, grant, grace, margin, command } => {
                let args = hold::HoldArgs { name, holder, grant, grace: *grace, margin: *margin, command };
                return hold::hold(global, args).await;
            }
        },
    }
    Ok(exit::OK)
}
