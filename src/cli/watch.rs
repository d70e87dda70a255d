//! `ipw watch`: redraw a run's view until the run ends.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run directory (one model's, e.g. runs/exp/model).
    run: PathBuf,
    /// Seconds between redraws.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Draw once and exit.
    #[arg(long)]
    once: bool,
    /// Write the view to this file (once) instead of the terminal.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    anyhow::ensure!(
        a.interval.is_finite() && a.interval > 0.0,
        "--interval: {} is not a number of seconds > 0",
        a.interval
    );
    loop {
        let frame = ipw_core::watch::frame(&a.run)
            .with_context(|| format!("watching {}", a.run.display()))?;
        let text = frame.render();
        if let Some(out) = &a.out {
            std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        if a.once {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        // Clear the screen and draw from the top: one frame, no scrolling history.
        print!("\x1b[2J\x1b[H{text}");
        if frame.status != "running" {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs_f64(a.interval));
    }
}
