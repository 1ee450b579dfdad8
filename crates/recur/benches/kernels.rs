//! Criterion benches of the kernels and the layers (`cargo bench -p recur`; one group:
//! `cargo bench -p recur -- panels`). A benchmark, not a test: nothing here asserts a time.
//!
//! - `panels`: the panel kernel (weights packed once, see `kernel::panels`) against the `gemm`
//!   crate on the products a recurrent layer runs: a time step at batch 1, 8 and 64 (H = 256
//!   and 512) and the input projection of a whole sequence (T·B = 6400 rows).
//! - `backward_products`: an LSTM's weight gradients `daᵀ · X`, `daᵀ · H` and input gradient
//!   `da · W_ih` after a backward's time loop (T·B = 6400 rows, H = 256 and 512), on the
//!   `gemm` crate and on the panel kernel reading its right operands in place.
//! - `elementwise`: the vectorised sigmoid and tanh of the fused gate passes over one step of
//!   a B64 H256 LSTM's gates.
//! - `layers`: `Recurrent::forward` and `forward_train` + `backward` of one LSTM, GRU (also
//!   ONNX's reset-before GRU, `linear_before_reset = 0`) and RNN layer (T = 50, B = 64,
//!   I = H = 256), and one `Stepper::step` at batch 1.
//! - `machine`: what bounds them on this machine, on both threads of rayon's pool at once
//!   (AVX-512F only): the FMA peak (24 independent chains of 16-lane fused multiply-adds
//!   per thread, nothing read from memory; throughput in FLOPs) and the rate of reading
//!   a buffer of 512 KiB (fits a core's L2) or 4 MiB (does not) over and over on each
//!   thread (throughput in bytes, both threads together).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use recur::kernel::fast_f32;
use recur::kernel::{Accumulate, Mat, Panels, matmul, matmul_gemm, matmul_two};
use recur::{
    Call, CellKind, GruCell, OutputGrad, Recurrent, RecurrentConfig, ResetPlacement, Tensor,
};
use std::hint::black_box;
use std::time::Duration;

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn panels(c: &mut Criterion) {
    let mut g = c.benchmark_group("panels");
    for &(m, k, n) in &[
        (1usize, 256usize, 1024usize),
        (8, 256, 1024),
        (64, 256, 1024),
        (64, 512, 2048),
        (6400, 256, 1024),
    ] {
        let a = fill(m * k, 1);
        let w = fill(n * k, 2); // a weight matrix [n, k] as stored; the product reads wᵀ
        let wt = Mat::rows(&w, n, k, k).t();
        let packed = Panels::pack(wt);
        let mut dst = vec![0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let id = format!("m{m}_k{k}_n{n}");
        g.bench_function(BenchmarkId::new("gemm_crate", &id), |b| {
            b.iter(|| {
                matmul_gemm(
                    &mut dst,
                    n,
                    Mat::rows(&a, m, k, k),
                    wt,
                    Accumulate::Overwrite,
                )
            })
        });
        if let Some(p) = &packed {
            g.bench_function(BenchmarkId::new("panels", &id), |b| {
                b.iter(|| {
                    matmul(
                        &mut dst,
                        n,
                        Mat::rows(&a, m, k, k),
                        wt.with_panels(Some(p)),
                        Accumulate::Overwrite,
                    )
                })
            });
        }
    }
    g.finish();
}

/// The products after the time loop of a backward, with nothing packed (T·B = 6400 rows):
/// the weight gradients `dW_ih += daᵀ · X` and `dW_hh += daᵀ · H` of an LSTM (`a`
/// transposed) and the input gradient `dX = da · W_ih`, on the `gemm` crate (two calls for
/// the two weight gradients) and on the panel kernel reading its right operands in place
/// (`kernel::matmul_two`, one pass over `daᵀ` for both; `kernel::matmul`).
fn backward_products(c: &mut Criterion) {
    let mut g = c.benchmark_group("backward_products");
    let rows = 6400;
    for &h in &[256usize, 512] {
        let gh = 4 * h;
        let da = fill(rows * gh, 5);
        let (x, hs) = (fill(rows * h, 6), fill(rows * h, 7));
        let w = fill(gh * h, 8);
        let (mut dw_ih, mut dw_hh) = (vec![0f32; gh * h], vec![0f32; gh * h]);
        let a = Mat::rows(&da, rows, gh, gh).t();
        let (xm, hm) = (Mat::rows(&x, rows, h, h), Mat::rows(&hs, rows, h, h));
        g.throughput(Throughput::Elements((2 * 2 * rows * gh * h) as u64));
        let id = format!("lstm_h{h}");
        g.bench_function(BenchmarkId::new("dw_ih_hh_gemm_crate", &id), |b| {
            b.iter(|| {
                matmul_gemm(&mut dw_ih, h, a, xm, Accumulate::Add);
                matmul_gemm(&mut dw_hh, h, a, hm, Accumulate::Add);
            })
        });
        g.bench_function(BenchmarkId::new("dw_ih_hh_panels", &id), |b| {
            b.iter(|| matmul_two(a, (&mut dw_ih, h, xm), (&mut dw_hh, h, hm), Accumulate::Add))
        });
        let mut dx = vec![0f32; rows * h];
        let (dam, wm) = (Mat::rows(&da, rows, gh, gh), Mat::rows(&w, gh, h, h));
        g.throughput(Throughput::Elements((2 * rows * gh * h) as u64));
        g.bench_function(BenchmarkId::new("dx_gemm_crate", &id), |b| {
            b.iter(|| matmul_gemm(&mut dx, h, dam, wm, Accumulate::Overwrite))
        });
        g.bench_function(BenchmarkId::new("dx_panels", &id), |b| {
            b.iter(|| matmul(&mut dx, h, dam, wm, Accumulate::Overwrite))
        });
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("elementwise");
    let x = fill(64 * 1024, 3);
    let mut y = x.clone();
    g.throughput(Throughput::Elements(x.len() as u64));
    g.bench_function("sigmoid_64x1024", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            fast_f32::sigmoid_in_place(black_box(&mut y));
        })
    });
    g.bench_function("tanh_64x1024", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            fast_f32::tanh_in_place(black_box(&mut y));
        })
    });
    g.finish();
}

fn layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("layers");
    let (t, bs, h) = (50, 64, 256);
    for (name, cell) in [
        ("lstm", CellKind::lstm()),
        ("gru", CellKind::gru()),
        (
            "gru_reset_before",
            CellKind::Gru(GruCell {
                reset: ResetPlacement::BeforeMatmul,
                ..Default::default()
            }),
        ),
        ("rnn", CellKind::rnn_tanh()),
    ] {
        let config = RecurrentConfig {
            cell,
            input_size: h,
            hidden_size: h,
            ..Default::default()
        };
        let m = Recurrent::<f32>::new(config, 0).expect("valid config");
        let x = Tensor::new(fill(t * bs * h, 4), &[t, bs, h]).expect("shape");
        let dy = Tensor::new(vec![1f32; t * bs * h], &[t, bs, h]).expect("shape");
        let mut grads = vec![0f32; m.params().len()];
        g.throughput(Throughput::Elements((t * bs) as u64));
        g.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| m.forward(&x, Call::new()).expect("forward"))
        });
        g.bench_function(BenchmarkId::new("train", name), |b| {
            b.iter(|| {
                let (_, tape) = m.forward_train(&x, Call::new()).expect("forward");
                let grad = OutputGrad {
                    output: Some(dy.view()),
                    ..Default::default()
                };
                m.backward(&tape, grad, &mut grads).expect("backward")
            })
        });
        let mut stepper = m.stepper(1).expect("stepper");
        let (xs, mut ys) = (fill(h, 5), vec![0f32; h]);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("stream_b1", name), |b| {
            b.iter(|| stepper.step(&xs, &mut ys).expect("step"))
        });
    }
    g.finish();
}

/// 24 independent chains of 16-lane FMAs, `iters` links each: 768 FLOPs per iteration,
/// nothing read from memory.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (
        _mm512_set1_ps(black_box(0.999)),
        _mm512_set1_ps(black_box(1e-3)),
    );
    // distinct starts, so that no two chains are the same computation
    let mut acc: [__m512; 24] = std::array::from_fn(|i| _mm512_set1_ps(black_box(i as f32)));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(total)
}

/// The sum of `xs` (a multiple of 64 values), four vectors at a time.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn read_all(xs: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 4];
    for chunk in xs.chunks_exact(64) {
        for (j, v) in acc.iter_mut().enumerate() {
            // SAFETY: 16 values of the chunk's 64.
            *v = _mm512_add_ps(*v, unsafe { _mm512_loadu_ps(chunk.as_ptr().add(16 * j)) });
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(total)
}

#[cfg(target_arch = "x86_64")]
fn machine(c: &mut Criterion) {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return;
    }
    let mut g = c.benchmark_group("machine");
    const ITERS: usize = 1 << 17;
    g.throughput(Throughput::Elements((2 * ITERS * 768) as u64));
    g.bench_function("fma_peak_2_threads", |b| {
        b.iter(|| {
            // SAFETY: AVX-512F was detected above.
            rayon::join(
                || unsafe { fma_chains(black_box(ITERS)) },
                || unsafe { fma_chains(black_box(ITERS)) },
            )
        })
    });
    for kib in [512usize, 4096] {
        let n = kib * 1024 / 4;
        let (x0, x1) = (fill(n, 6), fill(n, 7));
        let passes = (64 << 20) / (kib * 1024);
        let read = |x: &[f32]| {
            (0..passes)
                // SAFETY: AVX-512F was detected above.
                .map(|_| unsafe { read_all(black_box(x)) })
                .sum::<f32>()
        };
        g.throughput(Throughput::Bytes((2 * passes * kib * 1024) as u64));
        g.bench_function(
            BenchmarkId::new("read_2_threads", format!("{kib}KiB_each")),
            |b| b.iter(|| rayon::join(|| read(&x0), || read(&x1))),
        );
    }
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn machine(_: &mut Criterion) {}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = panels, backward_products, elementwise, layers, machine
}
criterion_main!(benches);
