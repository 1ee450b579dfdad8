//! Dropout masks, drawn from a training call's seed, and zoneout's expectation at inference
//! ([`zoneout_expectation`]; its training masks are drawn in `layer/mod.rs`). Inter-layer dropout ([`draw_mask`],
//! stream 0): a fresh mask on each layer's output. Recurrent dropout (Gal & Ghahramani 2016,
//! as Keras' `recurrent_dropout`; [`recurrent_masks`], stream 1): one mask per sequence and
//! (layer, direction), the same at every step, on the state the recurrent product reads,
//! `W_hh (m ⊙ h_{t−1})`, applied by the driver ([`super::driver`]) through [`rec_input`] in
//! the forward loop and [`masked_states`] once before the backward loop.

use std::borrow::Cow;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kernel::scalar::Float;
use crate::layer::RecurrentConfig;

/// The masks of a training call with drop probability `p`: for each of `count` (layer,
/// direction) one `[batch, r]` mask of 0 or 1/(1−p), drawn in the caller's batch order (so
/// a sequence's mask does not depend on the others' lengths) and returned in the sorted
/// order `perm` gives (`perm[s]` = the caller's row of sorted row s). Empty when `p` ≤ 0.
pub(super) fn recurrent_masks<T: Float>(
    p: f64,
    count: usize,
    perm: &[usize],
    r: usize,
    seed: u64,
) -> Vec<Vec<T>> {
    if p <= 0.0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // a stream of its own: the inter-layer masks (stream 0) stay as they were
    rng.set_stream(1);
    let batch = perm.len();
    (0..count)
        .map(|_| {
            let drawn: Vec<T> = draw_mask(&mut rng, p, batch * r);
            let mut sorted = vec![T::zero(); batch * r];
            for (s, &orig) in perm.iter().enumerate() {
                sorted[s * r..(s + 1) * r].copy_from_slice(&drawn[orig * r..(orig + 1) * r]);
            }
            sorted
        })
        .collect()
}

/// `n` values of an inverted-dropout mask with drop probability `p` (0 < p < 1): each 0
/// with probability p, else 1/(1−p), one uniform draw of `rng` per value. The inter-layer
/// dropout (stream 0 of the call's seed) and the recurrent masks draw with it.
pub(super) fn draw_mask<T: Float>(rng: &mut ChaCha8Rng, p: f64, n: usize) -> Vec<T> {
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep).unwrap_or_else(T::one);
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                T::zero()
            }
        })
        .collect()
}

/// `h` as the recurrent product reads it: itself, or under recurrent dropout `m ⊙ h`,
/// written into `buf`.
pub(super) fn rec_input<'b, T: Float>(h: &'b [T], m: Option<&[T]>, buf: &'b mut [T]) -> &'b [T] {
    match m {
        Some(m) => {
            let d = &mut buf[..h.len()];
            mask_rows(d, h, m);
            d
        }
        None => h,
    }
}

/// The states of every step as the recurrent product read them: `h` itself when `mask` is
/// empty, else `m ⊙ h` step by step (`step` values a step; the mask is the same at every
/// step), in one pass.
pub(super) fn masked_states<'a, T: Float>(h: &'a [T], mask: &[T], step: usize) -> Cow<'a, [T]> {
    if mask.is_empty() {
        return Cow::Borrowed(h);
    }
    let mut out = h.to_vec();
    for (row, hp) in out.chunks_exact_mut(step).zip(h.chunks_exact(step)) {
        mask_rows(row, hp, mask);
    }
    Cow::Owned(out)
}

/// `d = h ⊙ m` row by row (`m` holds at least the rows).
fn mask_rows<T: Float>(d: &mut [T], h: &[T], m: &[T]) {
    for ((d, &h), &m) in d.iter_mut().zip(h).zip(m) {
        *d = h * m;
    }
}

/// Zoneout at inference: its expectation, `[1 − z_h; batch · R]` and `[1 − z_c; batch · H]`
/// (h = z h_prev + (1 − z) h̃), each empty where that zoneout is off. The whole-sequence call
/// and the stepper read the same rows.
pub(super) fn zoneout_expectation<T: Float>(cfg: &RecurrentConfig, batch: usize) -> [Vec<T>; 2] {
    [
        (cfg.zoneout_h, cfg.h_out()),
        (cfg.zoneout_c, cfg.hidden_size),
    ]
    .map(|(z, w)| {
        if z > 0.0 {
            vec![T::from_f64(1.0 - z).unwrap_or_else(T::one); batch * w]
        } else {
            Vec::new()
        }
    })
}
