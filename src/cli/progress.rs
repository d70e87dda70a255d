//! The progress bar: one per model run, with queries/s and the error count.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipw_core::records::Record;
use ipw_core::run::{RunObserver, RunOutcome};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct Progress {
    bar: Mutex<Option<ProgressBar>>,
    errors: AtomicUsize,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: Mutex::new(None),
            errors: AtomicUsize::new(0),
            quiet,
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().unwrap().as_ref() {
            f(bar)
        }
    }
}

impl RunObserver for Progress {
    fn run_started(&self, model: &str, dir: &Path, total: usize, done: usize) {
        eprintln!(
            "model {model}: {total} queries ({done} already recorded) -> {}",
            dir.display()
        );
        let bar = if self.quiet {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} {msg} (eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(model.to_string());
        bar.set_position(done as u64);
        bar.reset_eta();
        self.errors.store(0, Ordering::Relaxed);
        bar.set_message("errors: 0");
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn phase(&self, _model: &str, what: &str) {
        self.with_bar(|b| b.set_message(what.to_string()));
    }

    fn recorded(&self, record: &Record) {
        let errors = self.errors.load(Ordering::Relaxed) + usize::from(record.error.is_some());
        self.errors.store(errors, Ordering::Relaxed);
        self.with_bar(|b| {
            b.inc(1);
            b.set_message(format!("errors: {errors}"));
        });
    }

    fn run_finished(&self, _outcome: &RunOutcome) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }
}
