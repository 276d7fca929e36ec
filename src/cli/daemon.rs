//! `unimirror`: the mirror daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{DEFAULT_CONFIG, exit, report};
use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "unimirror",
    version,
    about = "Caching mirror daemon for package ecosystems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file and print what it configures.
    CheckConfig {
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    super::init_logging(false);
    match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(&e),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!("{}: OK", config.display());
            println!("origin:  {}", c.origin.display());
            println!("staging: {}", c.staging.display());
            for v in c.volumes.values() {
                println!("volume {:<12} {:<12} {}", v.name, v.prefix, v.source);
            }
        }
    }
    Ok(())
}
