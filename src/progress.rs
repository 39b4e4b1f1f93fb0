//! A progress line on standard error for the long-running commands
//! (`beam-edge upload`, `beam-edge get`): bytes done of the total, MB/s and
//! ETA, redrawn in place five times a second on a terminal, and written as
//! plain lines every five seconds otherwise (logs, CI, tests). It is not a
//! general progress-bar library: one line, one counter.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A progress line on standard error; clones share the counter.
#[derive(Clone)]
pub struct Progress {
    total: u64,
    /// Bytes already there when the run started (a resumed download): they
    /// count towards the total but not towards the rate.
    resumed: u64,
    done: Arc<AtomicU64>,
    started: Instant,
    last: Arc<Mutex<Instant>>,
    tty: bool,
}

impl Progress {
    /// A line for `total` bytes, none done yet.
    pub fn new(total: u64) -> Progress {
        Progress::resumed(total, 0)
    }

    /// A line for `total` bytes of which `already` were done by an earlier run.
    pub fn resumed(total: u64, already: u64) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            resumed: already,
            done: Arc::new(AtomicU64::new(already)),
            started: now,
            last: Arc::new(Mutex::new(now)),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done.saturating_sub(self.resumed) as f64 / secs;
        let eta = if rate > 0.0 && self.total > done {
            (self.total - done) as f64 / rate
        } else {
            0.0
        };
        format!(
            "{:.1} / {:.1} MB  {:.1} MB/s  ETA {:.0} s",
            done as f64 / 1e6,
            self.total as f64 / 1e6,
            rate / 1e6,
            eta
        )
    }

    /// Sets the bytes done so far and redraws when it is time.
    pub fn update(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.maybe_draw();
    }

    /// Adds `n` bytes done and redraws when it is time.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.maybe_draw();
    }

    /// Takes back `n` bytes counted by an attempt that failed and is retried.
    pub fn take_back(&self, n: u64) {
        self.done.fetch_sub(n, Ordering::Relaxed);
    }

    fn maybe_draw(&self) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= every {
            *last = Instant::now();
            let mut err = std::io::stderr();
            if self.tty {
                let _ = write!(err, "\r{}   ", self.line());
            } else {
                let _ = writeln!(err, "{}", self.line());
            }
        }
    }

    /// Writes the last line (always, terminal or not).
    pub fn finish(&self) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = writeln!(err, "\r{}   ", self.line());
        } else {
            let _ = writeln!(err, "{}", self.line());
        }
    }
}
