//! Softmax cross-entropy over a language model's logits, in place and on every core.
//!
//! The library's [`recur::model::cross_entropy`] is the reference (and what the tests compare
//! against); this version turns the logits buffer itself into the gradient, so a training
//! step makes no `[rows, vocabulary]` buffer of its own, and runs the rows in parallel with a
//! vectorisable exponential. For each row x with target t:
//! ```text
//! m = max x;  s = Σ exp(x − m);  ℓ = ln s − (x_t − m)
//! dx = dl · (exp(x − m) / s − onehot(t))
//! ```

use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 8;

/// What one pass gives: the sum of the rows' losses and how many rows had their largest
/// logit at the target.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct XentSums {
    pub loss: f64,
    pub correct: usize,
}

/// Replaces `logits` (`[rows, classes]`, row-major) by `dl · ∂ℓ_row/∂logits` for every row
/// and returns the summed loss. `targets[r] < classes` must hold (checked: an error names the
/// first that does not).
pub fn xent_in_place(
    logits: &mut [f32],
    targets: &[usize],
    classes: usize,
    dl: f32,
) -> anyhow::Result<XentSums> {
    check(logits, targets, classes)?;
    let isa = Isa::get();
    let sums = logits
        .par_chunks_mut(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let mut acc = XentSums::default();
            for (x, &t) in rows.chunks_exact_mut(classes).zip(ts) {
                let (loss, hit) = isa.row_grad(x, t, dl);
                acc.loss += loss;
                acc.correct += usize::from(hit);
            }
            acc
        })
        .reduce(XentSums::default, |a, b| XentSums {
            loss: a.loss + b.loss,
            correct: a.correct + b.correct,
        });
    Ok(sums)
}

/// The summed loss alone (evaluation), leaving `logits` as it is.
pub fn xent_loss(logits: &[f32], targets: &[usize], classes: usize) -> anyhow::Result<XentSums> {
    check(logits, targets, classes)?;
    let isa = Isa::get();
    Ok(logits
        .par_chunks(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let mut acc = XentSums::default();
            for (x, &t) in rows.chunks_exact(classes).zip(ts) {
                let (loss, hit) = isa.row_loss(x, t);
                acc.loss += loss;
                acc.correct += usize::from(hit);
            }
            acc
        })
        .reduce(XentSums::default, |a, b| XentSums {
            loss: a.loss + b.loss,
            correct: a.correct + b.correct,
        }))
}

/// The instruction set the row kernels run on, detected once. Every build computes the
/// same bits: the kernels are plain `+ − × ÷` without fused multiply-adds, and the sums use
/// the same 16 lanes in the same order.
#[derive(Clone, Copy)]
enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

impl Isa {
    fn get() -> Self {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Isa::Avx2;
                }
            }
            Isa::Baseline
        })
    }

    #[inline]
    fn row_grad(self, x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
        match self {
            // SAFETY: the features were detected at run time.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { row_grad_avx512(x, t, dl) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { row_grad_avx2(x, t, dl) },
            _ => row_grad(x, t, dl),
        }
    }

    #[inline]
    fn row_loss(self, x: &[f32], t: usize) -> (f64, bool) {
        match self {
            // SAFETY: the features were detected at run time.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { row_loss_avx512(x, t) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { row_loss_avx2(x, t) },
            _ => row_loss(x, t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_grad_avx512(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    row_grad(x, t, dl)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_grad_avx2(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    row_grad(x, t, dl)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_loss_avx512(x: &[f32], t: usize) -> (f64, bool) {
    row_loss(x, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_loss_avx2(x: &[f32], t: usize) -> (f64, bool) {
    row_loss(x, t)
}

/// Lanes of the vectorised sums and maxima.
const LANES: usize = 16;

/// One row: x ← dl · (softmax(x) − onehot(t)); returns (ℓ, argmax x = t).
#[inline(always)]
fn row_grad(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    let m = max(x);
    let hit = first_max_at(x, m, t);
    let xt = x[t];
    for v in x.iter_mut() {
        *v = exp_nonpositive(*v - m);
    }
    let s = sum(x);
    let k = dl / s;
    for v in x.iter_mut() {
        *v *= k;
    }
    x[t] -= dl;
    (f64::from(s.ln() - (xt - m)), hit)
}

/// One row's ℓ and whether its largest logit is at t.
#[inline(always)]
fn row_loss(x: &[f32], t: usize) -> (f64, bool) {
    let m = max(x);
    let hit = first_max_at(x, m, t);
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += exp_nonpositive(v - m);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += exp_nonpositive(v - m);
    }
    let s = fold(lanes);
    (f64::from(s.ln() - (x[t] - m)), hit)
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l = if v > *l { v } else { *l };
    }
    lanes
        .into_iter()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}

/// Whether the first position of the maximum `m` is `t` (`torch.argmax`'s tie rule).
#[inline(always)]
fn first_max_at(x: &[f32], m: f32, t: usize) -> bool {
    x[t] == m && !x[..t].contains(&m)
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    fold(lanes)
}

#[inline(always)]
fn fold(lanes: [f32; LANES]) -> f32 {
    lanes.into_iter().sum()
}

fn check(logits: &[f32], targets: &[usize], classes: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        classes > 0 && logits.len() == targets.len() * classes,
        "logits: {} values for {} targets of {classes} classes",
        logits.len(),
        targets.len()
    );
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= classes) {
        anyhow::bail!("target[{i}] = {t} is not below the {classes} classes");
    }
    Ok(())
}

/// e^x for x ≤ 0: Cody–Waite reduction x = n ln 2 + r and Cephes' expf polynomial
/// (relative error ≈ 1e-7), branch-free so that the loops above vectorise.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const X_MIN: f32 = -87.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = if x < X_MIN { X_MIN } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    // 2ⁿ for n ∈ [−126, 0] (X_MIN keeps it normal): the exponent field n + 127
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    er * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recur::Tensor;
    use recur::model::{CrossEntropyConfig, Reduction, cross_entropy};

    /// Largest relative error of the exponential against f64's, over [−87, 0].
    const EXP_TOL: f64 = 3e-7;
    /// The in-place pass against the library's f32 cross-entropy.
    const XENT_TOL: f64 = 1e-5;

    #[test]
    fn exponential_is_accurate() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let e = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            worst = worst.max(((got - e) / e).abs());
        }
        assert!(worst < EXP_TOL, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn matches_the_library_cross_entropy() {
        let (rows, c) = (37, 11);
        let logits: Vec<f32> = (0..rows * c)
            .map(|i| ((i * 7919) % 113) as f32 * 0.07 - 4.0)
            .collect();
        let targets: Vec<usize> = (0..rows).map(|r| (r * 5) % c).collect();
        let t = Tensor::new(logits.clone(), &[rows, c]).unwrap();
        let cfg = CrossEntropyConfig {
            ignore_index: None,
            reduction: Reduction::Sum,
        };
        let want = cross_entropy(&t, &targets, &cfg, 3.0f32).unwrap();
        let mut got = logits.clone();
        let sums = xent_in_place(&mut got, &targets, c, 3.0).unwrap();
        assert!((sums.loss - f64::from(want.loss)).abs() / f64::from(want.loss) < XENT_TOL);
        assert_eq!(sums.correct, want.correct);
        for (a, b) in got.iter().zip(want.grad.data()) {
            assert!(
                (a - b).abs() as f64 <= XENT_TOL * (1.0 + b.abs() as f64),
                "{a} vs {b}"
            );
        }
        let eval = xent_loss(&logits, &targets, c).unwrap();
        assert!((eval.loss - sums.loss).abs() < 1e-9 * sums.loss.abs().max(1.0));
        assert!(xent_loss(&logits, &[c; 37], c).is_err());
    }
}
