//! `recur bench`: times one configuration of a recurrent stack in `f32` and prints time per
//! iteration, tokens/s and GFLOP/s. `scripts/bench_pytorch.py` measures PyTorch with the same
//! flags and prints the same lines and JSON keys.
//!
//! Modes (without `--mode`, train then infer):
//! ```text
//! train    zero the gradient buffer, forward_train (with --recurrent-dropout: masks drawn
//!          from --seed), backward with an all-ones output gradient
//! infer    forward
//! stream   Stepper::step on [batch, input_size] (a Recurrent::stepper session, made once:
//!          weights packed and buffers sized before timing), state carried; one step per
//!          iteration
//! ```
//! Each mode reports the median wall time of `--iters` iterations after `--warmup` untimed
//! ones. Tokens per iteration are seq_len·batch (with `--ragged`, the sum of the lengths;
//! stream: batch). FLOPs are counted per layer and direction as 2·N·G·H·(I + R) for the
//! forward, N tokens, G gates (4 LSTM, 3 GRU, 1 RNN), I the layer's input width (input_size,
//! then D·R), R = proj_size with a projection (which adds 2·N·P·H) else hidden_size; train
//! counts three times the forward.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{ArgAction, Args, ValueEnum};
use recur::{
    Call, CellKind, Direction, GruCell, LstmCell, OutputGrad, Peepholes, Recurrent,
    RecurrentConfig, RnnCell, Tensor, WeightFormat,
};
use serde_json::json;

/// Upper bound on the values of one input or output tensor (16 GiB of f32), so that a size
/// typo is an error rather than an aborted allocation.
const MAX_TENSOR_VALUES: usize = 1 << 32;

/// Settings of `recur bench`, named as PyTorch's `nn.LSTM` / `nn.GRU` / `nn.RNN` name them.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Recurrent cell (rnn = Elman RNN with tanh)
    #[arg(long, value_enum, default_value_t = Cell::Lstm)]
    pub cell: Cell,
    /// Time steps T per sequence (the longest, with --ragged)
    #[arg(long, default_value_t = 100)]
    pub seq_len: usize,
    /// Sequences per batch B (`--batch` is the old name, still accepted)
    #[arg(long = "batch-size", alias = "batch", default_value_t = 64)]
    pub batch: usize,
    /// Input features I
    #[arg(long, default_value_t = 256)]
    pub input_size: usize,
    /// Hidden units H per layer and direction
    #[arg(long, default_value_t = 256)]
    pub hidden_size: usize,
    /// Stacked recurrent layers
    #[arg(long, default_value_t = 1)]
    pub num_layers: usize,
    /// Run each layer in both directions (train and infer only)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub bidirectional: bool,
    /// LSTM projection size P (0 = none; must be smaller than --hidden-size)
    #[arg(long, default_value_t = 0)]
    pub proj_size: usize,
    /// Products with bfloat16 operands and f32 sums (AVX-512 BF16): stream and infer modes
    /// with bf16 weights (outputs within ~2e-3 of f32), train mode with
    /// `Recurrent::set_precision(Bf16)`, repacking the weights at every iteration as after
    /// an optimizer update
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub bf16: bool,
    /// LSTM with all three peepholes (Gers & Schmidhuber 2000; recur only, PyTorch has none)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub peepholes: bool,
    /// Layer-normalised LSTM or GRU (Ba et al. 2016, haste's LayerNormLSTM/GRU; recur only)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub layer_norm: bool,
    /// What to time [default: train, then infer]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Random per-sequence lengths in [seq_len/2, seq_len], drawn from --seed (train and
    /// infer only)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub ragged: bool,
    /// Threads in rayon's global pool [default: the available cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed iterations [default: 20; stream: 1000]
    #[arg(long)]
    pub iters: Option<usize>,
    /// Untimed iterations before them [default: 3; stream: 100]
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Variational recurrent dropout probability in [0, 1), applied in train mode (a recur
    /// option; PyTorch's modules have none)
    #[arg(long, default_value_t = 0.0)]
    pub recurrent_dropout: f64,
    /// Seed of the weights, the inputs, the --ragged lengths and the dropout masks
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object per mode instead of a line
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub json: bool,
}

/// The recurrent cells, as PyTorch's modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cell {
    /// nn.LSTM
    Lstm,
    /// nn.GRU
    Gru,
    /// nn.RNN with tanh
    Rnn,
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
            Cell::Rnn => "rnn",
        }
    }

    fn kind(self, proj_size: usize, peepholes: bool, layer_norm: bool) -> CellKind {
        match self {
            Cell::Lstm => CellKind::Lstm(LstmCell {
                proj_size,
                layer_norm,
                peepholes: if peepholes {
                    Peepholes::ALL
                } else {
                    Peepholes::NONE
                },
                ..Default::default()
            }),
            Cell::Gru => CellKind::Gru(GruCell {
                layer_norm,
                ..Default::default()
            }),
            Cell::Rnn => CellKind::Rnn(RnnCell::default()),
        }
    }
}

/// What one iteration does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Forward with a tape and backward (BPTT) with an all-ones output gradient
    Train,
    /// Forward only
    Infer,
    /// One streaming step (Stepper::step) with carried state
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
            Mode::Stream => "stream",
        }
    }
}

impl BenchArgs {
    /// Flag checks, phrased in flag names.
    fn validate(&self) -> Result<()> {
        let at_least_one = [
            ("--seq-len", Some(self.seq_len)),
            ("--batch-size", Some(self.batch)),
            ("--input-size", Some(self.input_size)),
            ("--hidden-size", Some(self.hidden_size)),
            ("--num-layers", Some(self.num_layers)),
            ("--threads", self.threads),
            ("--iters", self.iters),
        ];
        for (flag, v) in at_least_one {
            if let Some(v) = v {
                ensure!(v >= 1, "{flag} must be at least 1, got {v}");
            }
        }
        ensure!(
            !self.peepholes || self.cell == Cell::Lstm,
            "--peepholes needs --cell lstm"
        );
        ensure!(
            !self.layer_norm || self.cell != Cell::Rnn,
            "--layer-norm needs --cell lstm or gru"
        );
        ensure!(
            !(self.layer_norm && self.proj_size > 0),
            "--layer-norm: a layer-normalised LSTM has no projection (--proj-size 0)"
        );
        if self.proj_size > 0 {
            ensure!(
                self.cell == Cell::Lstm,
                "--proj-size needs --cell lstm (PyTorch has no projection for {})",
                self.cell.name()
            );
            ensure!(
                self.proj_size < self.hidden_size,
                "--proj-size must be smaller than --hidden-size ({}), got {}",
                self.hidden_size,
                self.proj_size
            );
        }
        ensure!(
            (0.0..1.0).contains(&self.recurrent_dropout),
            "--recurrent-dropout must lie in [0, 1), got {}",
            self.recurrent_dropout
        );
        if self.mode == Some(Mode::Stream) {
            ensure!(
                !self.bidirectional,
                "--mode stream cannot run --bidirectional: the reverse direction needs the \
                 whole sequence"
            );
            ensure!(
                !self.ragged,
                "--mode stream takes one step of every sequence; --ragged applies to train \
                 and infer"
            );
        }
        let d = if self.bidirectional { 2 } else { 1 };
        let h_out = if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        };
        let width = self.input_size.max(d * h_out);
        let values = [self.seq_len, self.batch, width]
            .iter()
            .try_fold(1usize, |acc, &v| acc.checked_mul(v));
        match values {
            Some(n) if n <= MAX_TENSOR_VALUES => Ok(()),
            _ => bail!(
                "--seq-len × --batch-size × features ({} × {} × {width}) exceeds {MAX_TENSOR_VALUES} \
                 values per tensor",
                self.seq_len,
                self.batch
            ),
        }
    }

    fn modes(&self) -> Vec<Mode> {
        match self.mode {
            Some(m) => vec![m],
            None => vec![Mode::Train, Mode::Infer],
        }
    }

    fn iters(&self, mode: Mode) -> usize {
        self.iters
            .unwrap_or(if mode == Mode::Stream { 1000 } else { 20 })
    }

    fn warmup(&self, mode: Mode) -> usize {
        self.warmup
            .unwrap_or(if mode == Mode::Stream { 100 } else { 3 })
    }

    fn config(&self) -> RecurrentConfig {
        RecurrentConfig {
            cell: self
                .cell
                .kind(self.proj_size, self.peepholes, self.layer_norm),
            input_size: self.input_size,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            direction: if self.bidirectional {
                Direction::Bidirectional
            } else {
                Direction::Forward
            },
            recurrent_dropout: self.recurrent_dropout,
            ..Default::default()
        }
    }
}

/// splitmix64: a small seeded generator for the inputs and lengths (their values do not
/// matter for timing, only that a seed fixes them).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `batch` lengths uniform in [max(1, seq_len / 2), seq_len].
fn ragged_lengths(seq_len: usize, batch: usize, seed: u64) -> Vec<usize> {
    let lo = (seq_len / 2).max(1);
    let span = (seq_len - lo + 1) as u64;
    let mut rng = SplitMix(seed ^ 0x5EED_1E57);
    (0..batch)
        .map(|_| lo + (rng.next_u64() % span) as usize)
        .collect()
}

/// Forward FLOPs for `tokens` (sequence, step) pairs through the whole stack.
fn forward_flops(config: &RecurrentConfig, tokens: usize) -> f64 {
    let g = config.cell.gate_count() as f64;
    let h = config.hidden_size as f64;
    let p = config.cell.proj_size() as f64;
    let r = config.h_out() as f64;
    let d = config.direction.count() as f64;
    let n = tokens as f64;
    (0..config.num_layers)
        .map(|layer| {
            let i = if layer == 0 {
                config.input_size as f64
            } else {
                d * r
            };
            d * (2.0 * n * g * h * (i + r) + 2.0 * n * p * h)
        })
        .sum()
}

/// Runs `f` `warmup` times untimed, then `iters` times, and returns the median in seconds.
fn median_time(warmup: usize, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    Ok(if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    })
}

/// Times one mode; returns (seconds per iteration, tokens per iteration, FLOPs per
/// iteration).
fn time_mode(
    args: &BenchArgs,
    model: &mut Recurrent<f32>,
    mode: Mode,
    lengths: Option<&[usize]>,
) -> Result<Timing> {
    let cfg = model.config();
    let (t, b, i) = (args.seq_len, args.batch, args.input_size);
    let mut rng = SplitMix(args.seed);
    let (iters, warmup) = (args.iters(mode), args.warmup(mode));
    let format = if args.bf16 {
        WeightFormat::Bf16
    } else {
        WeightFormat::F32
    };
    if mode == Mode::Stream {
        let x: Vec<f32> = (0..b * i).map(|_| rng.next_f32()).collect();
        let mut y = vec![0.0f32; b * cfg.h_out()];
        let mut stepper = model.stepper_with(b, format).context("stepper")?;
        let secs = median_time(warmup, iters, || {
            stepper.step(black_box(&x), &mut y)?;
            black_box(&y);
            Ok(())
        })
        .context("step")?;
        return Ok(Timing {
            secs,
            tokens: b,
            flops: forward_flops(cfg, b),
            tape_bytes: None,
            workspace_bytes: None,
        });
    }
    let tokens = lengths.map_or(t * b, |l| l.iter().sum());
    let x = Tensor::new((0..t * b * i).map(|_| rng.next_f32()).collect(), &[t, b, i])?;
    let fwd = forward_flops(cfg, tokens);
    if mode == Mode::Infer {
        let secs = median_time(warmup, iters, || {
            black_box(model.forward_with(
                black_box(&x),
                Call {
                    lengths,
                    ..Call::new()
                },
                format,
            )?);
            Ok(())
        })
        .context("forward")?;
        return Ok(Timing {
            secs,
            tokens,
            flops: fwd,
            tape_bytes: None,
            workspace_bytes: None,
        });
    }
    let width = cfg.direction.count() * cfg.h_out();
    let dy = Tensor::new(vec![1.0f32; t * b * width], &[t, b, width])?;
    let mut grads = vec![0.0f32; model.params().len()];
    let grad = OutputGrad {
        output: Some(dy.view()),
        ..Default::default()
    };
    let mut tape_bytes = 0;
    if args.bf16 {
        model.set_precision(WeightFormat::Bf16).context("--bf16")?;
    }
    let secs = median_time(warmup, iters, || {
        grads.fill(0.0);
        if args.bf16 {
            // as an optimizer update does: the weights are rounded and packed again
            model.params_mut();
        }
        let (out, tape) = model.forward_train(
            black_box(&x),
            Call {
                lengths,
                seed: Some(args.seed),
                ..Call::new()
            },
        )?;
        black_box(out);
        tape_bytes = tape.bytes();
        black_box(model.backward(&tape, grad, &mut grads)?);
        Ok(())
    })
    .context("forward_train and backward")?;
    black_box(&grads);
    Ok(Timing {
        secs,
        tokens,
        flops: 3.0 * fwd,
        tape_bytes: Some(tape_bytes),
        workspace_bytes: Some(model.workspace_bytes()),
    })
}

/// What one mode measured.
struct Timing {
    /// median seconds per iteration
    secs: f64,
    tokens: usize,
    flops: f64,
    /// train: what the training forward kept for the backward ([`recur::Tape::bytes`])
    tape_bytes: Option<usize>,
    /// train: the working memory the model keeps between calls
    /// ([`Recurrent::workspace_bytes`])
    workspace_bytes: Option<usize>,
}

fn report(args: &BenchArgs, mode: Mode, threads: usize, timing: &Timing) {
    let &Timing {
        secs,
        tokens,
        flops,
        tape_bytes,
        workspace_bytes,
    } = timing;
    let ms = secs * 1e3;
    let tokens_per_s = tokens as f64 / secs;
    let gflops = flops / secs / 1e9;
    if args.json {
        let mut obj = json!({
            "engine": "recur",
            "mode": mode.name(),
            "cell": args.cell.name(),
            "seq_len": args.seq_len,
            "batch": args.batch,
            "input_size": args.input_size,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "bidirectional": args.bidirectional,
            "proj_size": args.proj_size,
            "ragged": args.ragged,
            "recurrent_dropout": args.recurrent_dropout,
            "threads": threads,
            "iters": args.iters(mode),
            "warmup": args.warmup(mode),
            "seed": args.seed,
            "tokens_per_iter": tokens,
            "ms_per_iter": ms,
            "tokens_per_s": tokens_per_s,
            "gflops": gflops,
        });
        if mode == Mode::Stream {
            obj["us_per_step"] = json!(secs * 1e6);
        }
        if let Some(bytes) = tape_bytes {
            obj["tape_bytes"] = json!(bytes);
            obj["tape_bytes_per_token"] = json!(bytes as f64 / tokens as f64);
        }
        if let Some(bytes) = workspace_bytes {
            obj["workspace_bytes"] = json!(bytes);
        }
        obj["peepholes"] = json!(args.peepholes);
        obj["layer_norm"] = json!(args.layer_norm);
        obj["bf16"] = json!(args.bf16);
        println!("{obj}");
    } else {
        let step = if mode == Mode::Stream {
            format!(" ({:.2} µs/step)", secs * 1e6)
        } else {
            String::new()
        };
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        let tape = tape_bytes.map_or(String::new(), |bytes| {
            format!(
                " {:8.1} MiB tape ({:.0} B/token)",
                mib(bytes),
                bytes as f64 / tokens as f64
            )
        });
        let tape = match workspace_bytes {
            Some(bytes) => format!("{tape}, {:.1} MiB kept", mib(bytes)),
            None => tape,
        };
        println!(
            "recur {:<6} {:<4} T={} B={} I={} H={} L={} D={} P={}{}{}{}{}{} threads={}: \
             {ms:10.4} ms/iter{step} {tokens_per_s:12.0} tokens/s {gflops:8.2} GFLOP/s{tape}",
            mode.name(),
            args.cell.name(),
            args.seq_len,
            args.batch,
            args.input_size,
            args.hidden_size,
            args.num_layers,
            if args.bidirectional { 2 } else { 1 },
            args.proj_size,
            if args.peepholes { " peepholes" } else { "" },
            if args.layer_norm { " layer_norm" } else { "" },
            if args.bf16 { " bf16" } else { "" },
            if args.ragged { " ragged" } else { "" },
            if args.recurrent_dropout > 0.0 {
                format!(" recurrent_dropout={}", args.recurrent_dropout)
            } else {
                String::new()
            },
            threads,
        );
    }
}

/// Runs `recur bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    args.validate()?;
    let threads = match args.threads {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("--threads: building rayon's global pool")?;
    let threads = rayon::current_num_threads();
    let mut model = Recurrent::<f32>::new(args.config(), args.seed).context("recurrent stack")?;
    let lengths = args
        .ragged
        .then(|| ragged_lengths(args.seq_len, args.batch, args.seed));
    for mode in args.modes() {
        let timing = time_mode(args, &mut model, mode, lengths.as_deref())?;
        report(args, mode, threads, &timing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_follow_the_formula() {
        let mut cfg = RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 3,
            hidden_size: 5,
            ..Default::default()
        };
        // 2·N·G·H·(I+H)
        assert_eq!(forward_flops(&cfg, 7), 2.0 * 7.0 * 4.0 * 5.0 * 8.0);
        cfg.num_layers = 2;
        cfg.direction = Direction::Bidirectional;
        cfg.cell = CellKind::Lstm(LstmCell {
            proj_size: 2,
            ..Default::default()
        });
        // per direction: layer 0 I = 3, layer 1 I = 2·P = 4; R = P = 2, plus 2·N·P·H
        let layer = |i: f64| 2.0 * (2.0 * 7.0 * 4.0 * 5.0 * (i + 2.0) + 2.0 * 7.0 * 2.0 * 5.0);
        assert_eq!(forward_flops(&cfg, 7), layer(3.0) + layer(4.0));
    }

    #[test]
    fn ragged_lengths_are_seeded_and_in_range() {
        let a = ragged_lengths(100, 64, 3);
        assert_eq!(a, ragged_lengths(100, 64, 3));
        assert_ne!(a, ragged_lengths(100, 64, 4));
        assert!(a.iter().all(|&l| (50..=100).contains(&l)));
        assert!(a.iter().any(|&l| l < 75) && a.iter().any(|&l| l > 75));
        assert_eq!(ragged_lengths(1, 4, 0), vec![1; 4]);
    }
}
