use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = shadowcheck::cli::Cli::parse();
    shadowcheck::cli::run(cli)
}
