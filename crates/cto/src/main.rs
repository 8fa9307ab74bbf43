//! `cto`: the command-line shell around the installer. It parses flags, builds the provider
//! (Latitude, or the built-in lab), renders progress, maps errors to exit codes, and prints the
//! command that continues after any failure. Everything else lives in the library crates.

mod cli;
mod commands;
mod context;
mod exit;
mod logging;
mod output;
mod paths;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, LabCommand, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "cto", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // ring is the one crypto provider in the tree; make it the process default before any TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::STEP_FAILED);
        }
    };
    let output = match &cli.command {
        Command::Install(a) => a.output,
        Command::Status(a) => a.output,
        Command::Destroy(a) => a.output,
        Command::Health(a) => a.output,
        Command::Regions(a) => a.output,
        _ => Output::Text,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Install(args) => commands::install::run(*args).await,
            Command::Status(args) => commands::status::run(args),
            Command::Destroy(args) => commands::destroy::run(args).await,
            Command::Regions(args) => commands::regions::run(args).await,
            Command::Health(args) => commands::health::run(args).await,
            Command::Lab {
                command:
                    LabCommand::Serve {
                        listen,
                        state,
                        config,
                        faults,
                        time_scale,
                        seed,
                    },
            } => commands::lab::serve(listen, state, config, faults, time_scale, seed).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output::report_failure(output, &failure);
            ExitCode::from(failure.code)
        }
    }
}
