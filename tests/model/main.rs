//! Model-based tests of the state machines the product's promises rest on, without Kafka: random
//! sequences of what writers, rotations, acknowledgements and crashes do, replayed against the
//! real code and checked against a model of what must come out. `MODEL_CASES` sets how many
//! sequences each property runs (`scripts/test --long` runs many more than the fast suite).

mod architecture;
mod tailer;

use proptest::test_runner::{Config, RngSeed};

/// The fast suite runs `default` sequences from a fixed seed, the same at every run (CI cannot
/// turn red by chance on a case nobody has seen); `MODEL_CASES=N` runs N from a random seed, to
/// look for more (`scripts/test --long`).
pub fn config(default: u32) -> Config {
    let base = Config { failure_persistence: None, ..Config::default() };
    match std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()) {
        Some(cases) => Config { cases, ..base },
        None => Config { cases: default, rng_seed: RngSeed::Fixed(15), ..base },
    }
}
