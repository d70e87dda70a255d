//! `ipw`: the command-line interface. Parses arguments, calls `ipw-core`, prints. No logic.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    ipw_core::records::clock::mark_process_start();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            std::process::ExitCode::from(2)
        }
    }
}
