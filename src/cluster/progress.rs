//! A progress display for the slow parts of `macklake cluster` (jar downloads, JVM start-up): a
//! spinner on a terminal, plain lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    spinner: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { spinner, quiet: false }
    }

    /// Prints nothing at all (library callers such as tests).
    pub fn quiet() -> Self {
        Progress { spinner: None, quiet: true }
    }

    /// A milestone: kept on screen.
    pub fn step(&self, message: &str) {
        match &self.spinner {
            Some(bar) => bar.println(format!("  {message}")),
            None if !self.quiet => eprintln!("  {message}"),
            None => {}
        }
    }

    /// A passing state: replaces the spinner's message; not printed without a terminal.
    pub fn tick(&self, message: &str) {
        if let Some(bar) = &self.spinner {
            bar.set_message(message.to_string());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
