//! `unimirror`: the mirror daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
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
    /// Serve the configured volumes over HTTP.
    Serve {
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
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
        Command::Serve { config } => serve(Config::load(&config)?),
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!("{}: OK", config.display());
            println!("origin:  {}", c.origin.display());
            println!("staging: {}", c.staging.display());
            for v in c.volumes.values() {
                println!("volume {:<12} {:<12} {}", v.name, v.prefix, v.source);
            }
            Ok(())
        }
    }
}

fn serve(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let daemon = std::sync::Arc::new(crate::serve::Daemon::new(&config));
        tokio::spawn(daemon.clone().follow_releases(config.daemon.poll_interval));
        let mut servers = Vec::new();
        for addr in &config.daemon.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr}"))?;
            // Print the bound address (port 0 picks a free one).
            println!("listening on http://{}", listener.local_addr()?);
            servers.push(tokio::spawn(crate::serve::run(
                listener,
                daemon.clone(),
                shutdown_signal(),
            )));
        }
        for s in servers {
            s.await?;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
