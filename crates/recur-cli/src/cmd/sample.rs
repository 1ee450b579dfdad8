//! `recur sample`: text from a trained language model.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::data::TokenLevel;
use recur::model::ModelInput;
use recur::{Call, State};

use crate::train::checkpoint::Checkpoint;
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
    let text = sample(args)?;
    println!("{text}");
    Ok(())
}

/// `recur sample`: the prime, then `length` drawn tokens, as text.
fn sample(a: &SampleArgs) -> Result<String> {
    let ck = Checkpoint::load(&a.checkpoint)?;
    let (model, _, vocab) = lm::load_checkpoint(&ck)?;
    let mut prime = vocab.encode(&a.prime);
    if vocab.level() == TokenLevel::Word && !a.prime.ends_with('\n') {
        // encode ends every line with <eos>; a prime without a line end continues its line
        prime.pop();
    }
    if prime.is_empty() {
        // start as after a line end: <eos> (words) or "\n" (characters), else token 0
        let start = vocab
            .eos_id()
            .or_else(|| vocab.tokens().iter().position(|t| t == "\n"))
            .unwrap_or(0);
        prime.push(start);
    }
    // What the run holds: the model, the prime's forward pass, each drawn id and the text.
    let longest = vocab.tokens().iter().map(String::len).max().unwrap_or(1);
    let mut est = recur::estimate_memory(model.config(), 1, prime.len(), 0, size_of::<f32>());
    est.gradients = 0;
    est.checkpoint = 0;
    est.tape = 0;
    let per_token = (size_of::<usize>() + longest + 1) as u128;
    est.activations = est.activations.saturating_add(
        u64::try_from((a.length as u128).saturating_mul(per_token)).unwrap_or(u64::MAX),
    );
    crate::limits::check_memory("sampling", &est, "--length or --prime")?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut state: Option<State<f32>> = None;
    // Read the prime in one pass; its last token's output gives the first draw.
    let out = model.forward(
        ModelInput::Ids {
            ids: &prime,
            shape: [prime.len(), 1],
        },
        Call::new(),
    )?;
    let v = vocab.len();
    let mut logits = out.output.data()[(prime.len() - 1) * v..].to_vec();
    state = Some(out.state).or(state);
    let mut drawn = Vec::with_capacity(a.length);
    for _ in 0..a.length {
        let id = draw(&logits, a.temperature, a.top_k, &mut rng);
        drawn.push(id);
        let out = model.forward(
            ModelInput::Ids {
                ids: &[id],
                shape: [1, 1],
            },
            Call::new().state(state.as_ref().map(State::view)),
        )?;
        logits.copy_from_slice(out.output.data());
        state = Some(out.state);
    }
    let mut text = if a.prime.is_empty() {
        String::new()
    } else {
        a.prime.clone()
    };
    let continuation = vocab.decode(&drawn)?;
    if vocab.level() == TokenLevel::Word
        && !text.is_empty()
        && !text.ends_with(['\n', ' '])
        && !continuation.starts_with('\n')
    {
        text.push(' ');
    }
    text.push_str(&continuation);
    Ok(text)
}

/// Draws a token from softmax(`logits` / `temperature`) among the `top_k` largest (0 =
/// all); temperature 0 takes the largest (the first on a tie).
pub fn draw(logits: &[f32], temperature: f64, top_k: usize, rng: &mut ChaCha8Rng) -> usize {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if top_k > 0 && top_k < logits.len() {
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        idx.truncate(top_k);
        idx.sort_unstable();
    }
    if temperature == 0.0 {
        return idx
            .iter()
            .copied()
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if logits[b] >= logits[i] => Some(b),
                _ => Some(i),
            })
            .unwrap_or(0);
    }
    let m = idx
        .iter()
        .map(|&i| f64::from(logits[i]))
        .fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((f64::from(logits[i]) - m) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (k, &wk) in w.iter().enumerate() {
        if u < wk {
            return idx[k];
        }
        u -= wk;
    }
    idx[idx.len() - 1]
}
