//! `dctl`: the command-line client and node daemon of the Draft actor runtime.
//!
//! `dctl node start` runs a node; `dctl up` runs a local setup and prints where to look; the
//! other commands talk to a node's admin API (`--admin HOST:PORT`, env `DCTL_ADMIN`).

mod cli;
mod client;
mod commands;
mod events_cmd;
mod keys_cmd;
mod kv_cmd;
mod new_cmd;
mod proxy_cmd;
mod render;
mod routes_cmd;
mod run_cmd;
mod services;
mod svc_cmd;
mod top_cmd;
mod up;
mod up_proxy;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if !cli.command.is_daemon() {
        restore_sigpipe();
    }
    init_tracing(&cli);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(cli: &cli::Cli) {
    // Daemons log at info by default (openraft's per-election chatter at warn); client commands
    // stay quiet unless RUST_LOG says otherwise.
    let default = if cli.command.is_daemon() {
        "info,openraft=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: logs written to a file or a pipe carry no ANSI codes.
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A client command whose stdout is closed (`dctl kv ls | head`) ends quietly, as `ls` does,
/// instead of panicking on the failed write: Rust ignores SIGPIPE by default, this puts the
/// default action back. Daemons keep ignoring it (a closed log pipe must not stop a node).
fn restore_sigpipe() {
    // SAFETY: called at start-up, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
