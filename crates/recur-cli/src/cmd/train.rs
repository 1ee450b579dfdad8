//! `recur train`: see [`crate::train`].

pub use crate::train::args::TrainArgs;

/// Runs `recur train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    crate::train::run(args)
}
