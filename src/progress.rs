//! Progress of long updater runs: a live bar on a terminal, a log line every
//! few seconds otherwise (systemd's journal, CI logs), and byte formatting.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal;
/// `UNIMIRROR_PROGRESS_INTERVAL` (seconds, fractions allowed: `0.5`)
/// overrides it.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub fn log_every() -> Duration {
    interval(std::env::var("UNIMIRROR_PROGRESS_INTERVAL").ok().as_deref())
}

/// The interval a `UNIMIRROR_PROGRESS_INTERVAL` value asks for: seconds,
/// whole or not; anything else (negative, not a number) is the default.
fn interval(value: Option<&str>) -> Duration {
    value
        .and_then(|s| s.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(LOG_EVERY)
}

/// Counters of a release run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub entries: u64,
    pub hashed_bytes: u64,
    pub new_objects: u64,
    pub copied_bytes: u64,
}

pub struct Progress {
    what: String,
    bar: Option<ProgressBar>,
    last_log: Instant,
    log_every: Duration,
    pub counters: Counters,
}

impl Progress {
    /// `expected` is the entry count if it can be guessed (the previous
    /// release's), for a bar with an end; otherwise a spinner.
    pub fn new(what: &str, expected: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match expected {
                Some(n) if n > 0 => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} {msg}")
                        .expect("valid template"),
                ),
                _ => ProgressBar::new_spinner(),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            what: what.to_string(),
            bar,
            last_log: Instant::now(),
            log_every: log_every(),
            counters: Counters::default(),
        }
    }

    fn message(&self) -> String {
        let c = &self.counters;
        format!(
            "{} entries scanned, {} hashed, {} new objects ({} copied)",
            c.entries,
            bytes(c.hashed_bytes),
            c.new_objects,
            bytes(c.copied_bytes)
        )
    }

    /// Call after any counter changed; cheap enough to call per entry.
    pub fn update(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.counters.entries);
            if self.counters.entries.is_multiple_of(256) {
                bar.set_message(self.message());
            }
        } else if self.counters.entries.is_multiple_of(1024)
            && self.last_log.elapsed() >= self.log_every
        {
            self.last_log = Instant::now();
            tracing::info!("{}: {}", self.what, self.message());
        }
    }

    /// Removes the bar; the caller prints the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Reports progress until dropped: a bar (or a spinner while no total is
/// known) with the message on a terminal, an info line every
/// `UNIMIRROR_PROGRESS_INTERVAL` seconds otherwise. `report` gives the
/// message and, when known, (done, total). Runs on the current tokio
/// runtime.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
    /// For the last line, logged when the ticker stops.
    what: String,
    report: std::sync::Arc<Report>,
}

/// What a ticker asks for each line: the message and, when known, (done,
/// total).
type Report = dyn Fn() -> (String, Option<(u64, u64)>) + Send + Sync;

impl Ticker {
    pub fn start(
        what: String,
        report: impl Fn() -> (String, Option<(u64, u64)>) + Send + Sync + 'static,
    ) -> Ticker {
        let report = std::sync::Arc::new(report);
        let (for_task, label) = (report.clone(), what.clone());
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let shown = bar.clone();
        let every = if bar.is_some() {
            Duration::from_millis(200)
        } else {
            log_every().max(Duration::from_millis(200))
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut has_total = false;
            loop {
                tick.tick().await;
                let (message, counts) = for_task();
                let Some(bar) = &shown else {
                    tracing::info!("{label}: {message}");
                    continue;
                };
                if let Some((done, total)) = counts.filter(|&(_, t)| t > 0) {
                    if !has_total {
                        has_total = true;
                        bar.set_style(bar_style());
                    }
                    bar.set_length(total);
                    bar.set_position(done.min(total));
                }
                bar.set_message(message);
            }
        });
        Ticker {
            task,
            bar,
            what,
            report,
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{wide_bar} {percent:>3}% {msg}").expect("valid template")
}

/// The time left at `rate` bytes per second, as `1h 02m`, `3m 05s` or
/// `12s`; `?` before anything has been measured.
pub fn eta(remaining: u64, rate: u64) -> String {
    if remaining == 0 {
        return "0s".into();
    }
    if rate == 0 {
        return "?".into();
    }
    let secs = remaining.div_ceil(rate);
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            // Where it ended, whatever the interval let through last.
            None => tracing::info!("{}: finished: {}", self.what, (self.report)().0),
        }
    }
}

/// Bytes in binary units, as operators read them: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_human() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn bar_template_is_valid() {
        super::bar_style();
    }

    #[test]
    fn intervals_take_fractions_and_refuse_nonsense() {
        use super::{LOG_EVERY, interval};
        use std::time::Duration;
        assert_eq!(interval(Some("0.5")), Duration::from_millis(500));
        assert_eq!(interval(Some("2")), Duration::from_secs(2));
        assert_eq!(interval(Some("0")), Duration::ZERO);
        for bad in [None, Some("-1"), Some("soon"), Some("inf"), Some("NaN")] {
            assert_eq!(interval(bad), LOG_EVERY, "{bad:?}");
        }
    }

    #[test]
    fn eta_is_remaining_over_rate() {
        assert_eq!(super::eta(0, 0), "0s");
        assert_eq!(super::eta(10, 0), "?");
        assert_eq!(super::eta(10, 3), "4s");
        assert_eq!(super::eta(185, 1), "3m 05s");
        assert_eq!(super::eta(7_320 * 1000, 1000), "2h 02m");
    }
}
