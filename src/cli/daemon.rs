//! `unimirror`: the mirror daemon's command line. It parses arguments,
//! sets up logging and the runtime, and calls [`serve::run`], which owns
//! the daemon's life.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{DEFAULT_CONFIG, exit, report};
use crate::config::{Config, LogFormat, Upstream};
use crate::serve;

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
    /// Ask a running daemon what it serves: each volume's release, hit
    /// ratio and bytes sent since it started.
    Stats {
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The daemon's base URL (default: its first `daemon.listen`
        /// address, on loopback if it listens on all addresses).
        #[arg(long)]
        url: Option<String>,
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
    let code = match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(&e),
    };
    super::log_output::flush();
    code
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config: file } => {
            let config = Config::load(&file)?;
            super::init_logging(
                config.daemon.log_format == LogFormat::Json,
                super::Output::Batched,
            );
            serve(config)
        }
        Command::Stats { config, url } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let c = Config::load(&config)?;
                    let mut addr = *c.daemon.listen.first().ok_or_else(|| {
                        anyhow::anyhow!("{}: no daemon.listen address", config.display())
                    })?;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    format!("http://{addr}")
                }
            };
            print!("{}", stats(&url)?);
            Ok(())
        }
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            let problems = c.check_world();
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                return Err(crate::config::ConfigError {
                    file: config.clone(),
                    key: "(file)".into(),
                    reason: format!(
                        "{} problem(s) above: `sync` or `serve` would fail on them",
                        problems.len()
                    ),
                }
                .into());
            }
            println!("{}: OK", config.display());
            println!("origin:  {}", c.origin.display());
            if let crate::volume::Origin::S3 { store, .. } =
                crate::volume::Origin::of_config(&c, &c.cache.dir)?
            {
                println!("store:   {}", store.survey()?);
            }
            println!("staging: {}", c.staging.display());
            println!("cache:   {}", c.cache.dir.display());
            for v in c.volumes.values() {
                let upstream = match &v.upstream {
                    Some(Upstream::Pypi(u)) => format!("; upstream pypi {}", u.url),
                    Some(Upstream::Wheel(u)) => {
                        format!("; upstream wheel {}", u.directory.display())
                    }
                    Some(Upstream::Apt(u)) => format!("; upstream apt {}", u.url),
                    Some(Upstream::Yum(u)) => format!("; upstream yum {}", u.url),
                    None => String::new(),
                };
                println!(
                    "volume {:<12} {:<12} {}{upstream}",
                    v.name, v.prefix, v.source
                );
            }
            // The key files are read as the updater and the daemon will.
            if let Some(key) = crate::release::signer(&c)? {
                println!("releases signed with key {}", key.id());
            }
            if let Some(keys) = crate::volume::signature::ReleaseKeys::of_config(&c)? {
                println!("serving only releases signed by key {keys}");
            }
            Ok(())
        }
    }
}

/// `unimirror stats`: the status API's volumes, as a table.
fn stats(base: &str) -> Result<String> {
    let url = format!("{}/-/api/v1/volumes", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // rustls needs a process-wide provider; ring is the one in the build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let response = client.get(&url).send().await?.error_for_status()?;
        anyhow::Ok(response.bytes().await?)
    });
    let body = body.map_err(|e| anyhow::anyhow!("{url}: {e:#}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("{url}: not the status API: {e}"))?;
    let mut out = format!(
        "{:<14} {:<9} {:<10} {:>9} {:>10} {:>10}\n",
        "volume", "kind", "release", "hit ratio", "requests", "sent"
    );
    for v in doc["volumes"].as_array().into_iter().flatten() {
        let release = match v["current"]["id"].as_u64() {
            Some(id) => format!("#{id}"),
            None => "-".into(),
        };
        let ratio = match v["served"]["hit_ratio"].as_f64() {
            Some(r) => format!("{:.1}%", r * 100.0),
            None => "-".into(),
        };
        out += &format!(
            "{:<14} {:<9} {:<10} {:>9} {:>10} {:>10}\n",
            v["name"].as_str().unwrap_or("?"),
            v["kind"].as_str().unwrap_or("?"),
            release,
            ratio,
            v["served"]["object_requests"].as_u64().unwrap_or(0),
            crate::progress::bytes(v["served"]["bytes_sent"].as_u64().unwrap_or(0)),
        );
    }
    Ok(out)
}

/// Runs the server until a signal stops it (see [`serve::run`]).
fn serve(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve::run(config, std::future::pending()));
    // A read stuck on a hung origin must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
