//! The command lines of both binaries, and what they share: logging set-up,
//! exit codes and error reporting (the full chain of causes, one per line).

pub mod daemon;
pub mod generate;
pub mod log_output;
pub mod update;

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::volume::Busy;

/// Exit codes, documented in `docs/operations.md`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation failed; the message says why.
    pub const FAILED: u8 = 1;
    /// The command line or the configuration file is wrong.
    pub const USAGE: u8 = 2;
    /// Another writer holds the volume's lock (EX_TEMPFAIL): try later.
    pub const BUSY: u8 = 75;
}

/// Where `--config` points when it is not given.
pub const DEFAULT_CONFIG: &str = "/etc/unimirror/unimirror.toml";

/// Sets up logging to stderr. `UNIMIRROR_LOG` takes a tracing filter
/// (`info`, `unimirror=debug`, ...); `json` selects JSON lines.
pub fn init_logging(json: bool, output: Output) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNIMIRROR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    log_output::set_json(json);
    match (json, output) {
        (true, Output::Direct) => builder.json().with_writer(std::io::stderr).init(),
        (true, Output::Batched) => builder.json().with_writer(log_output::Batched).init(),
        (false, Output::Direct) => builder.with_writer(std::io::stderr).init(),
        (false, Output::Batched) => builder.with_writer(log_output::Batched).init(),
    }
}

/// How log lines reach stderr.
pub enum Output {
    /// Each line as it is made (the updater: few lines, read live).
    Direct,
    /// In batches (the daemon: a line per request); see [`log_output`].
    Batched,
}

/// Prints an error with its causes and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    log_output::flush();
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let code = if err.chain().any(|c| c.is::<Busy>()) {
        exit::BUSY
    } else if err.chain().any(|c| c.is::<ConfigError>()) {
        exit::USAGE
    } else {
        exit::FAILED
    };
    ExitCode::from(code)
}
