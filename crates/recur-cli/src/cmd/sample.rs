//! `recur sample`: text from a trained language model.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use crate::train::lm;

/// Settings of `recur sample`.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Checkpoint of a language model written by `recur train --checkpoint`
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Tokens (characters or words) to generate
    #[arg(long, default_value_t = 500)]
    pub length: usize,
    /// Softmax temperature: below 1 sharper, above 1 flatter; 0 always takes the most likely
    /// token
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Draw only among the k most likely tokens (0 = all)
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Text the model reads first; the sample continues it (printed with it)
    #[arg(long, default_value = "")]
    pub prime: String,
    /// Seed of the draws
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `recur sample`.
pub fn run(args: &SampleArgs) -> Result<()> {
    ensure!(
        args.temperature.is_finite() && args.temperature >= 0.0,
        "--temperature must be a finite number ≥ 0, got {}",
        args.temperature
    );
    let text = lm::sample_command(args)?;
    println!("{text}");
    Ok(())
}
