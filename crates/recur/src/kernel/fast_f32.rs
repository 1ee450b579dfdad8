//! Vectorised `f32` sigmoid, tanh and e^x for x ≤ 0: what the cells' gate passes and the
//! fast softmax cross-entropy ([`crate::model::cross_entropy_in_place`]) run on in `f32`.
//!
//! glibc's `expf`/`tanhf` are correctly rounded but called one value at a time; these are
//! branch-free approximations that LLVM vectorises, a few ulps from the exact functions:
//!
//! | function | max relative error (normal results) | max absolute error |
//! |----------|-------------------------------------|--------------------|
//! | sigmoid  | 1.8e-7 (measured 1.783e-7)          | 9.0e-8 (8.931e-8)  |
//! | tanh     | 1.5e-7 (measured 1.495e-7)          | 9.0e-8 (8.994e-8)  |
//! | e^x, x ≤ 0 | 8.0e-8 (measured 7.999e-8 on the dense grid of `error_bounds_over_a_dense_grid`, not exhaustively) | 4.7e-8 |
//!
//! measured against the exact f64 functions over every one of the 2³² f32 inputs
//! (`exhaustive_error_bounds`, run with `cargo test --release -- --ignored`), and checked
//! over a dense grid in every test run (`error_bounds_over_a_dense_grid`). Results that are
//! subnormal are correct to within the subnormal spacing; ±0 map to 0.5 and ±0, ±inf to 0/1
//! and ±1, NaN to NaN.
//!
//! **One approximation, however it runs.** Each function is written once, as scalar code with
//! no branches ([`sigmoid`], [`tanh`]), and the slice loops are compiled once per instruction
//! set (AVX-512, AVX2, and the portable baseline), picked at run time by a detection done once
//! and cached. The arithmetic is plain IEEE `+ − × ÷`, comparisons and bit moves, with no fused
//! multiply-add (Rust never contracts `a * b + c`), so every build gives the same bits as the
//! scalar function for every input, whatever its position in the slice or the slice's
//! length (tested over awkward lengths and offsets). A value's activation therefore never
//! depends on the batch size or on which rows are active.
//!
//! Method: e^x for x ≤ 0 by the Cody–Waite reduction x = n ln 2 + r, |r| ≤ ln 2 / 2, with
//! n rounded by the 1.5·2²³ trick, e^r by Cephes' degree-7 polynomial, and 2ⁿ applied in two
//! halves so that results down in the subnormal range round once. Then
//! σ(x) = (x < 0 ? e : 1) / (1 + e) with e = e^−|x|, and tanh |x| = (1 − e) / (1 + e) with
//! e = e^−2|x| for |x| ≥ 0.625, below that Cephes' odd polynomial (no cancellation near 0).

use std::sync::OnceLock;

/// σ(x) = 1 / (1 + e^−x), the approximation every build computes (see the module docs).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    // σ(|x|) = 1 / (1 + e),  σ(−|x|) = e / (1 + e): one division either way
    let num = if x < 0.0 { e } else { 1.0 };
    num / (1.0 + e)
}

/// tanh(x), the approximation every build computes (see the module docs).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const SMALL: f32 = 0.625;
    let ax = x.abs();
    // |x| ≥ 0.625: e ≤ 0.29, so 1 − e loses under half a bit
    let e = exp_nonpositive(-2.0 * ax);
    let large = (1.0 - e) / (1.0 + e);
    // |x| < 0.625: tanh|x| = |x| + |x|·z·P(z), z = x² (Cephes tanhf)
    let z = ax * ax;
    let mut p = -5.704_988_7e-3_f32;
    p = p * z + 2.063_909e-2;
    p = p * z + -5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z + -3.333_328e-1;
    let small = ax + ax * (z * p);
    let t = if ax < SMALL { small } else { large };
    t.copysign(x)
}

/// e^x for x ≤ 0 (x = −inf gives 0; NaN gives NaN), the approximation every build computes
/// (see the module docs). Positive x are outside its range (the result is then not e^x).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // Below ln 2⁻¹⁵⁰ the result rounds to 0; clamping keeps n in range. Written as a compare
    // and select (not `f32::max`) so that NaN passes through.
    const X_MIN: f32 = -104.0;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits so that n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer (round to nearest even) and leaves it in the low
    // mantissa bits: bits(t) = bits(ROUND) + n.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < X_MIN { X_MIN } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // e^r = 1 + r + r²·P(r) on |r| ≤ ln 2 / 2 (Cephes expf)
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    // 2ⁿ, n ∈ [−150, 0], as 2^n1 · 2^n2 with both factors normal; the second product is the
    // only one that can land in the subnormal range, so the result rounds once. (For NaN the
    // bits are garbage but the product stays NaN; wrapping ops keep debug builds quiet.)
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let n1 = n_int >> 1;
    let n2 = n_int.wrapping_sub(n1);
    er * pow2(n1) * pow2(n2)
}

/// 2ᵏ for k ∈ [−126, 127], built from its bits.
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// `xs[j] = σ(xs[j])` for every j, on the fastest instruction set the CPU has.
pub fn sigmoid_in_place(xs: &mut [f32]) {
    // SAFETY: `Isa::detected` only returns an instruction set this CPU supports.
    unsafe { run(Isa::detected(), Func::Sigmoid, xs) }
}

/// `xs[j] = tanh(xs[j])` for every j, on the fastest instruction set the CPU has.
pub fn tanh_in_place(xs: &mut [f32]) {
    // SAFETY: as in `sigmoid_in_place`.
    unsafe { run(Isa::detected(), Func::Tanh, xs) }
}

/// `xs[j] = e^xs[j]` for every j (each `xs[j] ≤ 0`, as after subtracting a row's maximum),
/// on the fastest instruction set the CPU has. (Kept for the tests and benches: the loss
/// computes its exponentials in its own row kernels.)
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn exp_nonpositive_in_place(xs: &mut [f32]) {
    // SAFETY: as in `sigmoid_in_place`.
    unsafe { run(Isa::detected(), Func::ExpNonpositive, xs) }
}

/// An instruction set the slice loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64); LLVM still vectorises.
    Portable,
    /// AVX2 (8 lanes).
    Avx2,
    /// AVX-512F (16 lanes).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU supports, detected on the first call and cached.
    pub fn detected() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .find(|isa| isa.is_supported())
                .unwrap_or(Isa::Portable)
        })
    }

    /// Whether this CPU can run the loops compiled for `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            // Each build is compiled with exactly these features (see `slice_loops!` below).
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Func {
    Sigmoid,
    Tanh,
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    ExpNonpositive,
}

/// The slice loop for `func`, compiled for `isa`.
///
/// # Safety
/// `isa.is_supported()` must hold.
unsafe fn run(isa: Isa, func: Func, xs: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees the CPU has the features these were compiled with.
        Isa::Avx512 => unsafe {
            match func {
                Func::Sigmoid => avx512::sigmoid_in_place(xs),
                Func::Tanh => avx512::tanh_in_place(xs),
                Func::ExpNonpositive => avx512::exp_nonpositive_in_place(xs),
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe {
            match func {
                Func::Sigmoid => avx2::sigmoid_in_place(xs),
                Func::Tanh => avx2::tanh_in_place(xs),
                Func::ExpNonpositive => avx2::exp_nonpositive_in_place(xs),
            }
        },
        _ => match func {
            Func::Sigmoid => portable::sigmoid_in_place(xs),
            Func::Tanh => portable::tanh_in_place(xs),
            Func::ExpNonpositive => portable::exp_nonpositive_in_place(xs),
        },
    }
}

/// The same three loops, compiled with `#[target_feature]`s (or none): one source, so every
/// build computes the scalar functions above.
macro_rules! slice_loops {
    ($isa:ident $(, $features:literal)?) => {
        mod $isa {
            $(#[target_feature(enable = $features)])?
            pub(super) unsafe fn sigmoid_in_place(xs: &mut [f32]) {
                for x in xs {
                    *x = super::sigmoid(*x);
                }
            }

            $(#[target_feature(enable = $features)])?
            pub(super) unsafe fn tanh_in_place(xs: &mut [f32]) {
                for x in xs {
                    *x = super::tanh(*x);
                }
            }

            $(#[target_feature(enable = $features)])?
            pub(super) unsafe fn exp_nonpositive_in_place(xs: &mut [f32]) {
                for x in xs {
                    *x = super::exp_nonpositive(*x);
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
slice_loops!(avx512, "avx512f,avx2,fma");
#[cfg(target_arch = "x86_64")]
slice_loops!(avx2, "avx2,fma");

/// The baseline build: safe, no features beyond the target's.
mod portable {
    pub(super) fn sigmoid_in_place(xs: &mut [f32]) {
        for x in xs {
            *x = super::sigmoid(*x);
        }
    }

    pub(super) fn tanh_in_place(xs: &mut [f32]) {
        for x in xs {
            *x = super::tanh(*x);
        }
    }

    pub(super) fn exp_nonpositive_in_place(xs: &mut [f32]) {
        for x in xs {
            *x = super::exp_nonpositive(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stated bounds (module docs), with the measured worst case rounded up.
    const SIGMOID_MAX_REL: f64 = 1.8e-7;
    const SIGMOID_MAX_ABS: f64 = 9.0e-8;
    const TANH_MAX_REL: f64 = 1.5e-7;
    const TANH_MAX_ABS: f64 = 9.0e-8;
    /// e^x for x ≤ 0, relative, over results that are normal f32.
    const EXP_MAX_REL: f64 = 8.0e-8;

    fn sigmoid_exact(x: f64) -> f64 {
        crate::kernel::activation::sigmoid(x)
    }

    /// Worst relative error (over results the exact function gives as normal f32) and worst
    /// absolute error of `fast` against `exact` over `xs`; NaN must give NaN.
    #[derive(Debug, Default, Clone, Copy)]
    struct Worst {
        rel: f64,
        rel_at: f32,
        abs: f64,
        abs_at: f32,
    }

    impl Worst {
        fn add(&mut self, x: f32, got: f32, want: f64) {
            if x.is_nan() {
                assert!(got.is_nan(), "NaN in gave {got}");
                return;
            }
            assert!(!got.is_nan(), "{x:e} gave NaN");
            let abs = (got as f64 - want).abs();
            if abs > self.abs {
                (self.abs, self.abs_at) = (abs, x);
            }
            if want.abs() >= f32::MIN_POSITIVE as f64 {
                let rel = abs / want.abs();
                if rel > self.rel {
                    (self.rel, self.rel_at) = (rel, x);
                }
            }
        }

        fn merge(self, o: Worst) -> Worst {
            let mut w = self;
            if o.rel > w.rel {
                (w.rel, w.rel_at) = (o.rel, o.rel_at);
            }
            if o.abs > w.abs {
                (w.abs, w.abs_at) = (o.abs, o.abs_at);
            }
            w
        }
    }

    /// The awkward inputs: zeros, infinities, NaNs, subnormals, the extremes, and the edges of
    /// the ranges the approximations switch at.
    fn special_inputs() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::EPSILON,
            0.625,
            0.624_999_94,
            -0.625,
            52.0,
            87.0,
            88.8,
            103.9,
            104.0,
            104.1,
            200.0,
        ];
        let neg: Vec<f32> = v.iter().map(|x| -x).collect();
        v.extend(neg);
        v
    }

    /// Every input with bits `start, start + stride, …` below 2³², both signs.
    fn grid(stride: u32, start: u32) -> impl Iterator<Item = f32> {
        (start..=u32::MAX)
            .step_by(stride as usize)
            .map(f32::from_bits)
    }

    fn measure(xs: impl Iterator<Item = f32>) -> (Worst, Worst) {
        let (mut s, mut t) = (Worst::default(), Worst::default());
        for x in xs {
            s.add(x, sigmoid(x), sigmoid_exact(x as f64));
            t.add(x, tanh(x), (x as f64).tanh());
        }
        (s, t)
    }

    fn check(s: Worst, t: Worst) {
        assert!(
            s.rel <= SIGMOID_MAX_REL && s.abs <= SIGMOID_MAX_ABS,
            "sigmoid: {s:?}"
        );
        assert!(
            t.rel <= TANH_MAX_REL && t.abs <= TANH_MAX_ABS,
            "tanh: {t:?}"
        );
    }

    /// Every 257th bit pattern (16.7 M inputs over the whole line, both signs: large |x|,
    /// subnormals and NaNs included), every f32 in [−1/16, 1/16] near the polynomial's
    /// switch-over at 0.625 and near 0, and the special inputs.
    #[test]
    fn error_bounds_over_a_dense_grid() {
        let near = |c: f32| {
            let b = c.to_bits();
            (b - 4096..b + 4096).map(f32::from_bits)
        };
        let xs = grid(257, 7)
            .chain(special_inputs())
            .chain(near(0.625))
            .chain(near(0.625).map(|x| -x))
            .chain(near(1.0))
            .chain((0..0x0010_0000).map(|k| k as f32 / 0x0010_0000 as f32 * 40.0 - 20.0));
        let (s, t) = measure(xs);
        check(s, t);
        // e^x over every x ≤ 0 of the grid (its negative half) and a dense sweep of [−104, 0]
        let mut e = Worst::default();
        let sweep = (0..=1_040_000).map(|k| -(k as f32) * 1e-4);
        for x in grid(257, 7)
            .filter(|x| x.is_nan() || *x <= 0.0)
            .chain(sweep)
        {
            e.add(x, exp_nonpositive(x), (x as f64).exp());
        }
        assert!(e.rel <= EXP_MAX_REL, "exp: {e:?}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    /// All 2³² inputs: the source of the bounds in the module docs. Slow in a debug build;
    /// run with `cargo test --release -p recur -- --ignored exhaustive --nocapture`.
    #[test]
    #[ignore]
    fn exhaustive_error_bounds() {
        use rayon::prelude::*;
        let (s, t) = (0u32..=0xffff)
            .into_par_iter()
            .map(|hi| measure((0u32..=0xffff).map(|lo| f32::from_bits(hi << 16 | lo))))
            .reduce(
                || (Worst::default(), Worst::default()),
                |a, b| (a.0.merge(b.0), a.1.merge(b.1)),
            );
        println!("sigmoid {s:?}\ntanh    {t:?}");
        check(s, t);
    }

    #[test]
    fn special_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-0.0), 0.5);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(20.0), 1.0);
        assert!(sigmoid(f32::NAN).is_nan());
        assert_eq!(tanh(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(f32::MAX), 1.0);
        assert!(tanh(f32::NAN).is_nan());
        let tiny = f32::from_bits(3);
        assert_eq!(tanh(tiny), tiny);
        assert_eq!(tanh(-tiny), -tiny);
        // e^x down to the subnormal range: σ(x) ≈ e^x there
        let x = -100.0f32;
        let want = sigmoid_exact(x as f64);
        let got = sigmoid(x) as f64;
        assert!(got > 0.0 && (got - want).abs() <= 2.0 * f32::from_bits(1) as f64);
    }

    /// Inputs with every kind of value, in a fixed pseudo-random order.
    fn mixed(len: usize, seed: u32) -> Vec<f32> {
        let specials = special_inputs();
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|k| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                match k % 5 {
                    0 => specials[s as usize % specials.len()],
                    1 => f32::from_bits(s),
                    _ => (s as f32 / u32::MAX as f32 - 0.5) * 24.0,
                }
            })
            .collect()
    }

    /// Every instruction set this CPU has gives the scalar function's bits, for every length
    /// and offset, so the value of an element never depends on where it sits.
    #[test]
    fn every_build_matches_the_scalar_function_bitwise() {
        let lengths = [
            0usize, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 1000,
        ];
        let isas = [Isa::Portable, Isa::Avx2, Isa::Avx512];
        assert!(Isa::detected().is_supported());
        let mut checked = 0;
        for isa in isas.into_iter().filter(|i| i.is_supported()) {
            for &len in &lengths {
                for offset in [0usize, 1, 5] {
                    let mixed_src = mixed(len + offset, (len * 31 + offset) as u32);
                    // e^x is defined for x ≤ 0 only: its inputs are the mixed ones made ≤ 0
                    let nonpositive: Vec<f32> = mixed_src.iter().map(|x| -x.abs()).collect();
                    for (func, scalar, src) in [
                        (Func::Sigmoid, sigmoid as fn(f32) -> f32, &mixed_src),
                        (Func::Tanh, tanh as fn(f32) -> f32, &mixed_src),
                        (
                            Func::ExpNonpositive,
                            exp_nonpositive as fn(f32) -> f32,
                            &nonpositive,
                        ),
                    ] {
                        let mut xs = src.clone();
                        // SAFETY: filtered on `is_supported` above.
                        unsafe { run(isa, func, &mut xs[offset..]) };
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&xs[..offset]), bits(&src[..offset]));
                        for (k, (&y, &x)) in xs[offset..].iter().zip(&src[offset..]).enumerate() {
                            let want = scalar(x);
                            assert!(
                                y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                                "{isa:?} {func:?} len {len} offset {offset} at {k}: \
                                 {x:e} gave {y:e}, scalar {want:e}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= lengths.len() * 3 * 3);
        // the public entry points are the detected build
        let src = mixed(1000, 9);
        let mut s = src.clone();
        let mut t = src.clone();
        let mut e: Vec<f32> = src.iter().map(|x| -x.abs()).collect();
        sigmoid_in_place(&mut s);
        tanh_in_place(&mut t);
        exp_nonpositive_in_place(&mut e);
        for (((&x, &ys), &yt), &ye) in src.iter().zip(&s).zip(&t).zip(&e) {
            assert!(ys.to_bits() == sigmoid(x).to_bits() || ys.is_nan());
            assert!(yt.to_bits() == tanh(x).to_bits() || yt.is_nan());
            assert!(ye.to_bits() == exp_nonpositive(-x.abs()).to_bits() || ye.is_nan());
        }
    }
}
