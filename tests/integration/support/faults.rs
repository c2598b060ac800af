//! Fault tests' part of the harness: the `FAILPOINTS` spec of a fault (`src/failpoints.rs`), and
//! waiting until it happened.

use std::time::Duration;

use super::daemon::{Daemon, tail};

/// Crash: abort at the (`skip`+1)th time the step is reached. Error: fail that once, then pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    Crash,
    Error,
}

impl Fault {
    /// The `FAILPOINTS` spec for `failpoint`, letting `skip` hits pass first.
    pub fn spec(self, failpoint: &str, skip: u32) -> String {
        match self {
            Fault::Crash => format!("{failpoint}={skip}*off->return(crash)"),
            Fault::Error => format!("{failpoint}={skip}*off->1*return->off"),
        }
    }

    /// Waits until the fault happened: a crash ends the daemon (by that failpoint, not otherwise);
    /// after an error the daemon goes on, and its log says the step failed.
    pub fn wait(self, d: &mut Daemon, failpoint: &str, spec: &str, timeout: Duration) {
        match self {
            Fault::Crash => {
                let status = d.wait_exit(timeout).unwrap_or_else(|| {
                    panic!("{spec}: the daemon never reached the failpoint\n{}", tail(&d.log(), 40))
                });
                assert!(!status.success(), "{spec}: the daemon exited by itself: {status:?}");
                assert!(d.log().contains(&format!("failpoint {failpoint}: crash")), "{spec}: not our crash");
            }
            Fault::Error => d.wait_log(&format!("failpoint {failpoint}: error"), timeout),
        }
    }
}
