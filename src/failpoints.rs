//! Failpoints: named durable steps that a test can make fail or crash on purpose.
//!
//! Compiled in only with the `failpoints` cargo feature (the tests' builds); in every other build
//! `fire` is an empty inline function. A test sets them through the `FAILPOINTS` environment
//! variable of the daemon it starts, in the `fail` crate's syntax, e.g.
//! `FAILPOINTS="sink::commit::before=1*off->return(crash)"`: the first commit passes, the second
//! crashes. Actions:
//! - `return` (or `return(anything)`): the step fails with an I/O error naming the failpoint;
//! - `return(crash)`: the process aborts on the spot (no unwinding, no destructor flushes a
//!   buffer: what is on disk is what a power cut or SIGKILL at that point would leave);
//! - `sleep(MS)` / `pause`: the step hangs.

use std::io;

/// Evaluates the failpoint `name`: `Some(message)` if it is set to fail, aborts the process if it
/// is set to crash, `None` otherwise (always `None` without the `failpoints` feature).
#[inline(always)]
pub fn fire(name: &str) -> Option<String> {
    #[cfg(test)]
    {
        if let Some(message) = hook::fire(name) {
            return Some(message);
        }
    }
    #[cfg(feature = "failpoints")]
    {
        if let Some(arg) = fail::eval(name, |arg| arg.unwrap_or_default()) {
            if arg == "crash" {
                eprintln!("failpoint {name}: crash (abort)");
                std::process::abort();
            }
            eprintln!("failpoint {name}: error");
            return Some(format!("failpoint {name}"));
        }
    }
    let _ = name;
    None
}

/// `fire` for a step that returns an I/O result.
#[inline(always)]
pub fn io(name: &str) -> io::Result<()> {
    match fire(name) {
        Some(message) => Err(io::Error::other(message)),
        None => Ok(()),
    }
}

/// Sets failpoints up from `FAILPOINTS` for the life of the process (the binary calls this first).
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        // The scenario's guard only serialises scenarios within one process; the daemon has one.
        std::mem::forget(fail::FailScenario::setup());
        if let Ok(spec) = std::env::var("FAILPOINTS") {
            eprintln!("failpoints set: {spec}");
        }
    }
}

/// Unit tests only: a step hook for this thread, asked first at every failpoint. The sink
/// writer's model test counts the durable steps with it and stops the writer at a chosen one
/// (a crash there), without the `failpoints` feature and without touching other tests' threads.
#[cfg(test)]
pub mod hook {
    use std::cell::RefCell;

    type Hook = Box<dyn FnMut(&str) -> Option<String>>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Sets this thread's hook: `Some(message)` makes the step fail as a failpoint would.
    pub fn set(hook: impl FnMut(&str) -> Option<String> + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    pub fn clear() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    pub(super) fn fire(name: &str) -> Option<String> {
        HOOK.with(|h| h.borrow_mut().as_mut().and_then(|hook| hook(name)))
    }
}
