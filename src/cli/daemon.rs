//! `unimirror`: the mirror daemon's command line. It parses arguments,
//! sets up logging and the runtime, and calls [`serve::run`], which owns
//! the daemon's life.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{DEFAULT_CONFIG, exit, report};
use crate::config::{Config, LogFormat};
use crate::serve;

#[derive(Parser, Debug)]
#[command(
    name = "unimirror",
    version,
    about = "Caching mirror daemon for package ecosystems",
    after_help = "Examples:\n  \
    unimirror serve --config /etc/unimirror/unimirror.toml\n  \
    unimirror check-config\n  \
    unimirror stats                             # hit ratio per volume of the running daemon\n\n\
    Exit codes: 0 done, 1 failed, 2 bad command line or configuration."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the configured volumes over HTTP.
    #[command(after_help = "Examples:\n  \
    unimirror serve\n  \
    UNIMIRROR_LOG=debug unimirror serve --config ./unimirror.toml")]
    Serve {
        /// The configuration file.
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file, and what `serve` and `sync` will need
    /// (key files, upstream directories), and print what it configures.
    #[command(
        after_help = "Example:\n  unimirror check-config --config /etc/unimirror/unimirror.toml"
    )]
    CheckConfig {
        /// The configuration file.
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask a running daemon what it serves: each volume's release, hit
    /// ratio and bytes sent since it started.
    #[command(after_help = "Examples:\n  \
    unimirror stats\n  \
    unimirror stats --url http://mirror.example:8080")]
    Stats {
        /// The configuration file (for the daemon's address).
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The daemon's base URL (default: its first `daemon.listen`
        /// address, on loopback if it listens on all addresses).
        #[arg(long)]
        url: Option<String>,
    },
    /// What a running daemon has cached.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Write the man pages and shell completions of both binaries (for
    /// packaging).
    #[command(hide = true)]
    Generate {
        /// Where: `man/` and `completions/` are made in it.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// List the cached files of each released volume's current release:
    /// last hit, tier, size and path, most recently hit first.
    #[command(after_help = "Examples:\n  \
    unimirror cache ls\n  \
    unimirror cache ls --volume ubuntu\n  \
    unimirror cache ls --volume ubuntu --paths > used   # for unimirror-update materialize --paths\n  \
    unimirror cache ls --offline                        # the daemon stopped: its cache directory")]
    Ls {
        /// Only this volume.
        #[arg(long)]
        volume: Option<String>,
        /// Print only the paths, one per line.
        #[arg(long)]
        paths: bool,
        /// Read the cache directory and the origin instead of asking a
        /// running daemon: disk tier only, with when each file was stored
        /// instead of its last hit.
        #[arg(long, conflicts_with = "url")]
        offline: bool,
        /// The configuration file (for the daemon's address).
        #[arg(long, short, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The daemon's base URL (default: its first `daemon.listen`
        /// address, on loopback if it listens on all addresses).
        #[arg(long)]
        url: Option<String>,
    },
}

/// The command line's definition, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
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
            print!("{}", stats(&daemon_url(&config, url)?)?);
            Ok(())
        }
        Command::Cache(CacheCommand::Ls {
            volume,
            paths,
            offline,
            config,
            url,
        }) => {
            let listed = match offline {
                true => cache_ls_offline(&config, volume.as_deref(), paths)?,
                false => cache_ls(&daemon_url(&config, url)?, volume.as_deref(), paths)?,
            };
            print!("{listed}");
            Ok(())
        }
        Command::Generate { dir } => super::generate::generate(&dir),
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
                    Some(u) => format!("; upstream {u}"),
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

/// The running daemon's base URL: `--url`, else from the configuration.
fn daemon_url(config: &std::path::Path, url: Option<String>) -> Result<String> {
    if let Some(u) = url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let c = Config::load(config)?;
    let mut addr = *c
        .daemon
        .listen
        .first()
        .ok_or_else(|| anyhow::anyhow!("{}: no daemon.listen address", config.display()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}"))
}

/// GETs a status API path (`/-/api/v1/<path>`) of the daemon at `base`.
/// The API's own error message when it answers one.
fn api_get(base: &str, path: &str) -> Result<serde_json::Value> {
    let url = format!("{base}/-/api/v1/{path}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // rustls needs a process-wide provider; ring is the one in the build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        let response = client.get(&url).send().await?;
        anyhow::Ok((response.status(), response.bytes().await?))
    });
    let (status, body) = answer.map_err(|e| anyhow::anyhow!("{url}: {e:#}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("{url}: {status}, not the status API: {e}"))?;
    if !status.is_success() {
        let why = doc["error"].as_str().unwrap_or("no reason given");
        anyhow::bail!("{url}: {status}: {why}");
    }
    Ok(doc)
}

/// `unimirror stats`: the status API's volumes, as a table.
fn stats(base: &str) -> Result<String> {
    let doc = api_get(base, "volumes")?;
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

/// `unimirror cache ls`: the cached paths of one released volume, or of
/// each, from the status API.
fn cache_ls(base: &str, volume: Option<&str>, paths_only: bool) -> Result<String> {
    let names: Vec<String> = match volume {
        // A name no volume can have is refused here, not sent as a path.
        Some(v) => {
            crate::config::check_volume_name(v).map_err(anyhow::Error::msg)?;
            vec![v.to_string()]
        }
        None => api_get(base, "volumes")?["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["kind"] == "released")
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect(),
    };
    let mut out = String::new();
    for name in names {
        let list = api_get(base, &format!("volumes/{name}/cache"))?;
        let release = match list["release"].as_u64() {
            Some(id) => format!("release #{id}"),
            None => "no release yet".into(),
        };
        let rows = list["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| CachedRow {
                order: e["last_hit_unix"].as_u64(),
                when: e["last_hit"].as_str().unwrap_or("-").to_string(),
                tier: if e["tier"] == "memory" {
                    "memory"
                } else {
                    "disk"
                },
                size: e["size"].as_u64().unwrap_or(0),
                path: e["path"].as_str().unwrap_or("?").to_string(),
            })
            .collect();
        let title = format!("{name} ({release})");
        let bytes = list["bytes"].as_u64().unwrap_or(0);
        render_cached(&mut out, &title, "last hit", bytes, rows, paths_only);
    }
    Ok(out)
}

/// One cached path, as `cache ls` prints it.
struct CachedRow {
    /// What the rows are sorted by, newest first (unknown last).
    order: Option<u64>,
    /// The last hit, or offline when it was stored.
    when: String,
    tier: &'static str,
    size: u64,
    path: String,
}

/// A volume's cached paths, most recent first: a title line with their
/// count and `bytes`, then a table; or with `paths_only`, the paths alone.
fn render_cached(
    out: &mut String,
    title: &str,
    when: &str,
    bytes: u64,
    mut rows: Vec<CachedRow>,
    paths_only: bool,
) {
    rows.sort_by_key(|r| std::cmp::Reverse(r.order));
    if paths_only {
        for r in &rows {
            *out += &r.path;
            out.push('\n');
        }
        return;
    }
    *out += &format!(
        "{title}: {} paths cached, {}\n",
        rows.len(),
        crate::progress::bytes(bytes)
    );
    if !rows.is_empty() {
        *out += &format!("  {when:<20}  {:<6}  {:>10}  path\n", "tier", "size");
    }
    for r in &rows {
        *out += &format!(
            "  {:<20}  {:<6}  {:>10}  {}\n",
            r.when,
            r.tier,
            crate::progress::bytes(r.size),
            r.path
        );
    }
}

/// `unimirror cache ls --offline`: the same listing from the cache
/// directory and the origin, with no daemon: each released volume's
/// current manifest walked, each file looked for in the disk tier's
/// content directory. Only reads, but for an S3 origin's manifests, which
/// are fetched (verified) where the daemon keeps its own copies of them.
fn cache_ls_offline(
    config: &std::path::Path,
    volume: Option<&str>,
    paths_only: bool,
) -> Result<String> {
    let c = Config::load(config)?;
    if let Some(v) = volume {
        crate::config::check_volume_name(v).map_err(anyhow::Error::msg)?;
        if !c.volumes.contains_key(v) {
            anyhow::bail!("{}: no volume `{v}`", config.display());
        }
    }
    let origin = crate::volume::Origin::of_config(&c, &c.cache.dir.join("s3-origin"))?;
    let mut out = String::new();
    for v in c.volumes.values() {
        let wanted = volume.is_none_or(|name| name == v.name);
        if !wanted || v.source != crate::config::VolumeSource::Released {
            continue;
        }
        let dir = origin.volume(&v.name);
        let Some(id) = dir.current()? else {
            if !paths_only {
                out += &format!("{} (no release yet): 0 paths cached, 0 B\n", v.name);
            }
            continue;
        };
        let manifest = dir.manifest(&dir.meta(id)?)?;
        let found = manifest.files_found(&v.prefix, |sha| {
            let file = crate::cache::disk::content_path(&c.cache.dir, sha);
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()))
        })?;
        let rows = found
            .files
            .into_iter()
            .map(|f| CachedRow {
                order: f.what.map(crate::volume::unix),
                when: f.what.map_or("-".into(), |t| {
                    humantime::format_rfc3339_seconds(t).to_string()
                }),
                tier: "disk",
                size: f.size,
                path: f.path,
            })
            .collect();
        let title = format!("{} (release #{id}, offline)", v.name);
        render_cached(&mut out, &title, "stored", found.bytes, rows, paths_only);
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
