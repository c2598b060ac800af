//! The systemd notify protocol (`Type=notify`): READY=1 once every valid connector is launched,
//! RELOADING=1 / READY=1 around a reload, WATCHDOG=1 from the supervisor loop, STOPPING=1 and
//! EXTEND_TIMEOUT_USEC while draining. Without `NOTIFY_SOCKET` (not under systemd) it does
//! nothing. A message that cannot be sent is logged, never fatal.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    enabled: bool,
    /// Half the watchdog interval systemd asked for (`WatchdogSec=`), if any.
    watchdog_every: Option<Duration>,
    last_watchdog: Instant,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog_every = if enabled { sd_notify::watchdog_enabled().map(|d| d / 2) } else { None };
        if let Some(every) = watchdog_every {
            tracing::info!(every = ?every, "systemd watchdog enabled");
        }
        Notifier { enabled, watchdog_every, last_watchdog: Instant::now() }
    }

    fn send(&self, what: &str, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(error) = sd_notify::notify(states) {
            tracing::warn!(%error, what, "cannot notify systemd");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send("READY", &[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send("RELOADING", &[NotifyState::Reloading, now]),
            Err(_) => self.send("RELOADING", &[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING", &[NotifyState::Stopping, NotifyState::Status("draining connectors")]);
    }

    /// Asks systemd for `more` time before it gives up on the stop (or start).
    pub fn extend_timeout(&self, more: Duration) {
        let usec = u32::try_from(more.as_micros()).unwrap_or(u32::MAX);
        self.send("EXTEND_TIMEOUT", &[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// Pets the watchdog if it is due. Called from the supervisor loop: if that loop hangs,
    /// systemd restarts the service.
    pub fn watchdog(&mut self) {
        let Some(every) = self.watchdog_every else { return };
        if self.last_watchdog.elapsed() >= every {
            self.send("WATCHDOG", &[NotifyState::Watchdog]);
            self.last_watchdog = Instant::now();
        }
    }
}
