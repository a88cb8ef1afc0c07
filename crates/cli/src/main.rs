//! The `cairn` binary: parses the command line, calls the library, renders the result.
//! No business logic lives here.

mod cli;
mod commands;
mod exit;
mod logical_args;
mod output;
mod password;
mod progress;
mod size;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in logs and captured output.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let format = cli.global.format;
    // A failed restore_command must not look like "no such file" (status 1), or the server
    // would end recovery early: above 128 it stops instead.
    let fatal_offset = if matches!(cli.command, cli::Command::ArchiveGet(_)) { 128 } else { 0 };
    if let Err(error) = commands::run(cli) {
        let code = exit::code_of(&error);
        output::error(format, &error, code);
        std::process::exit(code.status + fatal_offset);
    }
}
