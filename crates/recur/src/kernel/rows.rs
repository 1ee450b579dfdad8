//! One loop of a cell's row pass compiled for the instruction set [`Isa::detected`] finds.
//!
//! The cells' row loops are plain generic code over slices. Compiled for the target's
//! baseline (SSE2 on x86-64) they run two f64 or four f32 lanes at a time; a loop handed to
//! [`run`] as a [`Streams`] pass is compiled again inside functions built with the features
//! of [`fast_f32`]'s builds (AVX-512, AVX2), where LLVM vectorises it eight or sixteen lanes
//! wide. Its slices, up to four it writes and six it reads, reach that function as
//! parameters of their own, so that the compiler knows they do not overlap (a slice inside a
//! struct carries no such promise, and a loop that writes several of them then stays scalar).
//! The pass's [`Streams::run`] and what it calls must be `#[inline(always)]` to be compiled
//! with those features. The arithmetic is plain IEEE `+ − × ÷` and Rust never contracts
//! `a * b + c` into a fused multiply-add, so every build gives the same bits: a loop may
//! vectorise differently, never round differently.
//!
//! [`fast_f32`]: super::fast_f32

use super::fast_f32::Isa;

/// A loop over the slices it writes (`out`, up to four) and reads (`inp`, up to six); the
/// slots it does not use hold empty slices.
pub(crate) trait Streams<T> {
    type Output;

    /// The loop itself (implement it `#[inline(always)]`, see the module docs).
    fn run(self, out: [&mut [T]; 4], inp: [&[T]; 6]) -> Self::Output;
}

/// Runs `pass` over its slices on the fastest instruction set the CPU has.
#[inline]
pub(crate) fn run<T, P: Streams<T>>(pass: P, out: [&mut [T]; 4], inp: [&[T]; 6]) -> P::Output {
    let [o0, o1, o2, o3] = out;
    let [i0, i1, i2, i3, i4, i5] = inp;
    match Isa::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detected` only returns an instruction set this CPU supports.
        Isa::Avx512 => unsafe { avx512(pass, o0, o1, o2, o3, i0, i1, i2, i3, i4, i5) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2(pass, o0, o1, o2, o3, i0, i1, i2, i3, i4, i5) },
        _ => portable(pass, o0, o1, o2, o3, i0, i1, i2, i3, i4, i5),
    }
}

/// The builds of [`run`]: the same function with each slice a parameter of its own,
/// compiled with `#[target_feature]`s (or none).
macro_rules! build {
    ($name:ident $(, $features:literal)?) => {
        $(#[target_feature(enable = $features)])?
        #[allow(clippy::too_many_arguments)]
        #[inline(never)]
        unsafe fn $name<T, P: Streams<T>>(
            pass: P,
            o0: &mut [T],
            o1: &mut [T],
            o2: &mut [T],
            o3: &mut [T],
            i0: &[T],
            i1: &[T],
            i2: &[T],
            i3: &[T],
            i4: &[T],
            i5: &[T],
        ) -> P::Output {
            pass.run([o0, o1, o2, o3], [i0, i1, i2, i3, i4, i5])
        }
    };
}

// Safety of the two feature builds: the CPU must have their features.
#[cfg(target_arch = "x86_64")]
build!(avx512, "avx512f,avx2,fma");
#[cfg(target_arch = "x86_64")]
build!(avx2, "avx2,fma");
// The baseline build: `unsafe` only for the macro's sake (it needs no feature).
build!(baseline);

/// [`baseline`], safe: kept out of line, so that its slices stay parameters.
#[allow(clippy::too_many_arguments)]
fn portable<T, P: Streams<T>>(
    pass: P,
    o0: &mut [T],
    o1: &mut [T],
    o2: &mut [T],
    o3: &mut [T],
    i0: &[T],
    i1: &[T],
    i2: &[T],
    i3: &[T],
    i4: &[T],
    i5: &[T],
) -> P::Output {
    // SAFETY: the baseline build uses no feature beyond the target's.
    unsafe { baseline(pass, o0, o1, o2, o3, i0, i1, i2, i3, i4, i5) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop with f64 partial sums and f32 products into two slices.
    struct Sums;

    impl Streams<f32> for Sums {
        type Output = f64;

        #[inline(always)]
        fn run(self, [a, b, ..]: [&mut [f32]; 4], [x, ..]: [&[f32]; 6]) -> f64 {
            let mut acc = [0.0f64; 8];
            for ((c, a), b) in x
                .chunks_exact(8)
                .zip(a.chunks_exact_mut(8))
                .zip(b.chunks_exact_mut(8))
            {
                for k in 0..8 {
                    acc[k] += f64::from(c[k]) * 1.1;
                    a[k] = c[k] * 0.3 + c[k] / 7.0;
                    b[k] = c[k] - a[k] * 0.5;
                }
            }
            acc.iter().sum()
        }
    }

    #[test]
    fn every_build_gives_the_same_bits() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut outs = [
            [vec![0.0f32; 1000], vec![0.0; 1000]],
            [vec![0.0; 1000], vec![0.0; 1000]],
        ];
        let [[a1, b1], [a2, b2]] = &mut outs;
        let e: [&[f32]; 5] = [&[]; 5];
        let dispatched = run(
            Sums,
            [a1, b1, &mut [], &mut []],
            [&x, e[0], e[1], e[2], e[3], e[4]],
        );
        let baseline = portable(Sums, a2, b2, &mut [], &mut [], &x, &[], &[], &[], &[], &[]);
        assert_eq!(dispatched.to_bits(), baseline.to_bits());
        let [[a1, b1], [a2, b2]] = &outs;
        for (p, q) in a1.iter().chain(b1).zip(a2.iter().chain(b2)) {
            assert_eq!(p.to_bits(), q.to_bits());
        }
    }
}
