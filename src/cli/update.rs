//! `unimirror-update`: publish, inspect, roll back and collect releases.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use super::{DEFAULT_CONFIG, exit, report};
use crate::config::Config;
use crate::release::{self, ReleaseOptions, gc, rollback, status, tag};

#[derive(Parser, Debug)]
#[command(
    name = "unimirror-update",
    version,
    about = "Publishes the volumes unimirror serves",
    after_help = "Examples:\n  \
    unimirror-update sync pypi                  # fetch, verify and release\n  \
    unimirror-update status                     # every volume's release and last sync\n  \
    unimirror-update rollback ubuntu            # back to the previous release\n\n\
    Exit codes: 0 done, 1 failed, 2 bad command line or configuration, 75 busy (another writer holds the volume)."
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "UNIMIRROR_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Log JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch the volume's upstream into its staging tree, verify it, and
    /// release it.
    #[command(after_help = "Examples:\n  \
    unimirror-update sync pypi\n  \
    unimirror-update sync ubuntu --dry-run       # what would be fetched\n  \
    unimirror-update sync wheel --prune --wait   # from a timer: queue behind a running gc")]
    Sync {
        /// The volume, as named in the configuration (`[volumes.<name>]`).
        volume: String,
        /// Fetch and verify, but do not release.
        #[arg(long)]
        no_release: bool,
        /// Say what would be fetched, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait for a running sync, release, tag, rollback or gc of this
        /// volume instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
        /// Wheel volumes: drop wheels the build output no longer has.
        #[arg(long)]
        prune: bool,
        /// Accept an apt `Date` or a yum `revision` older than the current
        /// release's (an upstream that rolled back on purpose).
        #[arg(long)]
        allow_older: bool,
    },
    /// Publish the volume's staging tree (or --from DIR) as a new release.
    #[command(after_help = "Examples:\n  \
    unimirror-update release docs --from /srv/build/docs\n  \
    unimirror-update release pypi-frozen --from-release pypi@passed-ci   # no copy")]
    Release {
        /// The volume, as named in the configuration.
        volume: String,
        /// Publish this directory tree instead of the staging tree.
        #[arg(long, value_name = "DIR", conflicts_with = "from_release")]
        from: Option<PathBuf>,
        /// Release another volume's release (an id, a tag or `current`)
        /// without copying: both volumes' objects are in the shared store.
        #[arg(long, value_name = "VOLUME@RELEASE")]
        from_release: Option<String>,
        /// Rehash every file instead of trusting size, mtime and inode.
        #[arg(long)]
        verify: bool,
        /// Wait for a running sync, release, tag, rollback or gc of this
        /// volume instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Copy remote entries of the current (on-demand) release into the
    /// origin's object store, and release the same tree with them as
    /// ordinary files.
    #[command(after_help = "Examples:\n  \
    unimirror-update materialize ubuntu                       # every remote entry\n  \
    unimirror cache ls --volume ubuntu --paths > used && unimirror-update materialize ubuntu --paths used")]
    Materialize {
        /// The volume, as named in the configuration.
        volume: String,
        /// Only these paths, one per line (as served, or as asked for with
        /// the volume's prefix: e.g. the access log's upstream fills).
        #[arg(long, value_name = "FILE")]
        paths: Option<PathBuf>,
        /// Wait for a running sync, release, tag, rollback or gc of this
        /// volume instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Show the current release of each volume, its age and the retained
    /// ones, its upstream and its last sync.
    #[command(after_help = "Examples:\n  \
    unimirror-update status\n  \
    unimirror-update status pypi --json")]
    Status {
        /// Only this volume (default: all).
        volume: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier retained release current again.
    #[command(after_help = "Examples:\n  \
    unimirror-update rollback ubuntu             # to the newest release older than current\n  \
    unimirror-update rollback ubuntu --to 41")]
    Rollback {
        /// The volume, as named in the configuration.
        volume: String,
        /// The release to return to (default: the newest older than current).
        #[arg(long, value_name = "ID")]
        to: Option<u64>,
        /// Wait for a running sync, release, tag or gc of this volume
        /// instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Point a tag at a release (promotion): `/<prefix>/@<name>/` serves it.
    ///
    /// `tag <volume> <release|current> <name>` moves the tag;
    /// `tag <volume> <name> --undo` moves it back to where it pointed
    /// before its last move.
    #[command(after_help = "Examples:\n  \
    unimirror-update tag pypi current passed-ci\n  \
    unimirror-update tag pypi 41 passed-ci\n  \
    unimirror-update tag pypi passed-ci --undo")]
    Tag {
        /// The volume, as named in the configuration.
        volume: String,
        /// The release (an id, or `current`), then the tag's name; with
        /// --undo, the tag's name alone.
        #[arg(num_args = 1..=2, required = true, value_name = "RELEASE|current> <NAME")]
        args: Vec<String>,
        /// Move the tag back to where it pointed before its last move.
        #[arg(long)]
        undo: bool,
        /// Wait for a running sync, release, tag, rollback or gc of this
        /// volume instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Remove a tag (`tag --undo` puts it back).
    #[command(after_help = "Example:\n  unimirror-update untag pypi passed-ci")]
    Untag {
        /// The volume, as named in the configuration.
        volume: String,
        /// The tag's name.
        name: String,
        /// Wait for a running sync, release, tag, rollback or gc of this
        /// volume instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Move a format-1 volume's objects into the origin's shared store
    /// (format 2), by hard links: nothing is copied or downloaded.
    #[command(after_help = "Example:\n  unimirror-update migrate pypi --wait")]
    Migrate {
        /// The volume, as named in the configuration.
        volume: String,
        /// Wait for a running writer of this volume, and for a gc of the
        /// shared store, instead of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
    /// Remove old releases, unreferenced objects and interrupted runs' debris.
    #[command(after_help = "Examples:\n  \
    unimirror-update gc ubuntu --dry-run         # what would go, and why the rest stays\n  \
    unimirror-update gc ubuntu --keep 5 --wait")]
    Gc {
        /// The volume, as named in the configuration.
        volume: String,
        /// Releases to keep, counting the current one (at least 3 are kept).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait for a running sync, release, tag or rollback of this volume
        /// (and, on a shared store, for the other volumes' writers) instead
        /// of failing with exit code 75.
        #[arg(long)]
        wait: bool,
    },
}

/// The command line's definition, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`status | head`)
    // instead of panicking on a failed print.
    // SAFETY: restoring a signal's default disposition at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    super::init_logging(cli.log_json, super::Output::Direct);
    match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => report(&e),
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Sync {
            volume,
            no_release,
            dry_run,
            wait,
            prune,
            allow_older,
        } => {
            let opts = crate::sync::SyncOptions {
                no_release,
                dry_run,
                wait,
                prune,
                allow_older,
            };
            let report = crate::sync::sync(&config, &volume, &opts)?;
            println!("{}", report.summary(&volume));
        }
        Command::Release {
            volume,
            from,
            from_release,
            verify,
            wait,
        } => {
            let opts = ReleaseOptions {
                from,
                verify,
                wait,
                from_release,
            };
            let outcome = release::release(&config, &volume, &opts)?;
            println!("{}", outcome.summary(&volume));
        }
        Command::Materialize {
            volume,
            paths,
            wait,
        } => {
            let r = release::materialize::materialize(&config, &volume, paths.as_deref(), wait)?;
            println!("{}", r.summary(&volume));
        }
        Command::Status { volume, json } => {
            let st = status::status(&config, volume.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", status::render(&st));
            }
        }
        Command::Rollback { volume, to, wait } => {
            let (from, to) = rollback::rollback(&config, &volume, to, wait)?;
            println!("rolled {volume} back from #{from} to #{to}");
        }
        Command::Tag {
            volume,
            args,
            undo,
            wait,
        } => {
            let (target, name) = match (undo, args.as_slice()) {
                (true, [name]) => (tag::Target::Undo, name),
                (false, [release, name]) => (tag::Target::parse(release)?, name),
                (true, _) => anyhow::bail!("usage: tag <volume> <name> --undo"),
                (false, _) => anyhow::bail!("usage: tag <volume> <release|current> <name>"),
            };
            let moved = tag::tag(&config, &volume, name, Some(target), wait)?;
            println!("{}", moved.summary(&volume, name));
        }
        Command::Migrate { volume, wait } => {
            let done = release::migrate::migrate(&config, &volume, wait)?;
            println!("{}", done.summary(&volume));
        }
        Command::Untag { volume, name, wait } => {
            let moved = tag::tag(&config, &volume, &name, None, wait)?;
            println!("{}", moved.summary(&volume, &name));
        }
        Command::Gc {
            volume,
            keep,
            dry_run,
            wait,
        } => {
            let r = gc::gc(&config, &volume, keep, dry_run, wait)?;
            if dry_run {
                print!("{}", r.plan.render());
            }
            println!("{}", r.summary(&volume));
        }
    }
    Ok(())
}
