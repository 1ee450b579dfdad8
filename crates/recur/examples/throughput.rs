//! Throughput benchmark of one recurrent layer in `f32`: inference forward, and a training
//! step (forward with a tape + BPTT with an all-ones output gradient, parameter gradients
//! zeroed every iteration).
//!
//! ```text
//! cargo run --release --example throughput -- [--cell lstm|gru|rnn] [--seq-len 100]
//!     [--batch 64] [--input-size 256] [--hidden-size 256] [--iters 20] [--warmup 3] [--json]
//! ```
//!
//! For each mode it reports the median wall time per iteration over `--iters` iterations
//! (after `--warmup` untimed ones), tokens/s = seq_len·batch / time, and GFLOP/s with the
//! FLOPs counted as 2·T·B·G·H·(I+H) for the forward (G = 4 LSTM, 3 GRU, 1 RNN) and three
//! times that for forward + backward. The GEMMs use rayon's global pool (all cores unless
//! `RAYON_NUM_THREADS` says otherwise). `scripts/bench_pytorch.py` measures PyTorch the same
//! way and prints the same lines / JSON objects.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use recur::{CellKind, OutputGrad, Recurrent, RecurrentConfig, Tensor};

struct Args {
    cell: String,
    seq_len: usize,
    batch: usize,
    input_size: usize,
    hidden_size: usize,
    iters: usize,
    warmup: usize,
    json: bool,
}

const USAGE: &str = "usage: throughput [--cell lstm|gru|rnn] [--seq-len N] [--batch N] \
[--input-size N] [--hidden-size N] [--iters N] [--warmup N] [--json]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        cell: "lstm".into(),
        seq_len: 100,
        batch: 64,
        input_size: 256,
        hidden_size: 256,
        iters: 20,
        warmup: 3,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--cell" => a.cell = value.clone(),
            "--seq-len" => a.seq_len = num()?,
            "--batch" => a.batch = num()?,
            "--input-size" => a.input_size = num()?,
            "--hidden-size" => a.hidden_size = num()?,
            "--iters" => a.iters = num()?,
            "--warmup" => a.warmup = num()?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    Ok(a)
}

/// Deterministic inputs in [-1, 1) (a 64-bit LCG; the values do not matter for timing).
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs `f` `warmup` times untimed, then `iters` times, and returns the median in seconds.
fn median_time(warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    }
}

fn report(a: &Args, mode: &str, secs: f64, flops: f64) {
    let tokens_per_s = (a.seq_len * a.batch) as f64 / secs;
    let gflops = flops / secs / 1e9;
    let ms = secs * 1e3;
    if a.json {
        println!(
            "{{\"mode\": \"{mode}\", \"cell\": \"{}\", \"seq_len\": {}, \"batch\": {}, \
             \"input_size\": {}, \"hidden_size\": {}, \"ms_per_iter\": {ms:.4}, \
             \"tokens_per_s\": {tokens_per_s:.1}, \"gflops\": {gflops:.3}}}",
            a.cell, a.seq_len, a.batch, a.input_size, a.hidden_size
        );
    } else {
        println!(
            "recur {mode:<9} {:<4} T={} B={} I={} H={}: {ms:9.3} ms/iter {tokens_per_s:12.0} \
             tokens/s {gflops:8.2} GFLOP/s",
            a.cell, a.seq_len, a.batch, a.input_size, a.hidden_size
        );
    }
}

fn run(a: &Args) -> recur::Result<()> {
    let (cell, gates) = match a.cell.as_str() {
        "lstm" => (CellKind::lstm(), 4),
        "gru" => (CellKind::gru(), 3),
        "rnn" => (CellKind::rnn_tanh(), 1),
        other => {
            return Err(recur::Error::Unsupported(format!(
                "--cell {other}: expected lstm, gru or rnn"
            )));
        }
    };
    let config = RecurrentConfig {
        cell,
        input_size: a.input_size,
        hidden_size: a.hidden_size,
        ..Default::default()
    };
    let model = Recurrent::<f32>::new(config, 0)?;
    let (t, b, i, h) = (a.seq_len, a.batch, a.input_size, a.hidden_size);
    let x = Tensor::new(fill(t * b * i, 1), &[t, b, i])?;
    let dy = Tensor::new(vec![1.0f32; t * b * h], &[t, b, h])?;
    let mut grads = vec![0.0f32; model.params().len()];
    let fwd_flops = 2.0 * (t * b * gates * h * (i + h)) as f64;

    // Surface errors once, outside the timed loops.
    model.forward(&x, None, None)?;
    let (_, tape) = model.forward_train(&x, None, None, 0)?;
    let grad = OutputGrad {
        output: Some(&dy),
        ..Default::default()
    };
    model.backward(&tape, grad, &mut grads)?;

    let secs = median_time(a.warmup, a.iters, || {
        black_box(model.forward(black_box(&x), None, None).expect("forward"));
    });
    report(a, "inference", secs, fwd_flops);

    let secs = median_time(a.warmup, a.iters, || {
        grads.fill(0.0);
        let (out, tape) = model
            .forward_train(black_box(&x), None, None, 0)
            .expect("forward_train");
        black_box(out);
        black_box(model.backward(&tape, grad, &mut grads).expect("backward"));
    });
    black_box(&grads);
    report(a, "training", secs, 3.0 * fwd_flops);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
