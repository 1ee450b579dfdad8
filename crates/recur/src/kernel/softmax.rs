//! The rows of softmax cross-entropy over `f32` logits, for
//! [`crate::model::cross_entropy_in_place`] and [`crate::model::cross_entropy_sums`]: each
//! row's sums in [`LANES`] fixed lanes with the vectorised exponential of [`fast_f32`],
//! compiled for the instruction set [`Isa::detected`] finds, with plain `+ − × ÷`: every build
//! gives the same bits. For each row x with target t:
//! ```text
//! m = max x;  s = Σ exp(x − m);  ℓ = ln s − (x_t − m)
//! dx = dl · (exp(x − m) / s − onehot(t))
//! ```

use super::fast_f32::{self, Isa};

/// Replaces each row x (`classes` values) of `x` by `dl · (softmax(x) − onehot(t))`, t its
/// target in `targets`, and returns the rows' losses summed in f64 in row order and how many
/// rows had their first largest logit at t.
pub fn rows_grad(x: &mut [f32], classes: usize, targets: &[usize], dl: f32) -> (f64, usize) {
    let isa = Isa::detected();
    let (mut loss, mut correct) = (0.0, 0);
    for (x, &t) in x.chunks_exact_mut(classes).zip(targets) {
        // SAFETY: `Isa::detected` only returns an instruction set this CPU supports.
        let (l, hit) = unsafe { row_grad_on(isa, x, t, dl) };
        loss += l;
        correct += usize::from(hit);
    }
    (loss, correct)
}

/// The summed loss and the correct rows of [`rows_grad`], leaving `x` as it is.
pub fn rows_loss(x: &[f32], classes: usize, targets: &[usize]) -> (f64, usize) {
    let isa = Isa::detected();
    let (mut loss, mut correct) = (0.0, 0);
    for (x, &t) in x.chunks_exact(classes).zip(targets) {
        // SAFETY: as above.
        let (l, hit) = unsafe { row_loss_on(isa, x, t) };
        loss += l;
        correct += usize::from(hit);
    }
    (loss, correct)
}

/// [`row_grad`] compiled for `isa`.
///
/// # Safety
/// `isa.is_supported()` must hold.
#[inline]
unsafe fn row_grad_on(isa: Isa, x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees the CPU has these features.
        Isa::Avx512 => unsafe { avx512::row_grad(x, t, dl) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::row_grad(x, t, dl) },
        _ => row_grad(x, t, dl),
    }
}

/// [`row_loss`] compiled for `isa`.
///
/// # Safety
/// `isa.is_supported()` must hold.
#[inline]
unsafe fn row_loss_on(isa: Isa, x: &[f32], t: usize) -> (f64, bool) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees the CPU has these features.
        Isa::Avx512 => unsafe { avx512::row_loss(x, t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::row_loss(x, t) },
        _ => row_loss(x, t),
    }
}

/// The row kernels compiled with the features of [`fast_f32`]'s builds.
macro_rules! row_builds {
    ($isa:ident, $features:literal) => {
        mod $isa {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn row_grad(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
                super::row_grad(x, t, dl)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn row_loss(x: &[f32], t: usize) -> (f64, bool) {
                super::row_loss(x, t)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
row_builds!(avx512, "avx512f,avx2,fma");
#[cfg(target_arch = "x86_64")]
row_builds!(avx2, "avx2,fma");

/// Lanes of the vectorised sums and maxima.
const LANES: usize = 16;

/// One row: x ← dl · (softmax(x) − onehot(t)); returns (ℓ, argmax x = t).
#[inline(always)]
fn row_grad(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    let m = max(x);
    let hit = first_max_at(x, m, t);
    let xt = x[t];
    for v in x.iter_mut() {
        *v = fast_f32::exp_nonpositive(*v - m);
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
            *l += fast_f32::exp_nonpositive(v - m);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += fast_f32::exp_nonpositive(v - m);
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
