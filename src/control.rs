//! What the REST API may ask of the daemon: requests the supervisor loop applies. Here, not in
//! the supervisor, so that `http` and `daemon` both use it without depending on each other.

/// A request about one connector, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Pause(String),
    Resume(String),
    Stop(String),
    Restart(String),
}
