//! Matrix products behind a small safe interface, the vectorised activations and softmax
//! rows that the cells and the loss run on, and the threads that share a step's work.
//!
//! ## Where `unsafe` lives
//! Here alone, in seven files (`grep -rln unsafe crates/recur/src` lists them); everything
//! outside `kernel/` (the cells, the driver, the loss, ONNX, I/O) is safe code:
//! - `mod.rs`: the call into the `gemm` crate ([`matmul_gemm`]), once every view has been
//!   checked to lie inside its slice;
//! - `panels.rs`: the AVX-512 panel kernel (intrinsics and raw pointers into the checked
//!   views, its parts shared by the threads that run them);
//! - `fast_f32.rs` and `softmax.rs`: calls of the builds compiled for the instruction set
//!   detected at run time (`#[target_feature]`);
//! - `rows.rs`: a cell's row pass, generic code, called in a build compiled for that
//!   instruction set;
//! - `pair.rs`: the job a pair's owner posts to its helper thread, and a thread's current
//!   pair;
//! - `split.rs`: a slab whose disjoint rows several threads write at once, behind the safe
//!   [`split::run_parts_on`] (a batch's rows for a whole sequence).
//!
//! Every matrix product in recur goes through [`matmul`] (or [`matmul_two`], two products
//! sharing their left operand). In f32 on CPUs with AVX-512F it runs the panel kernel
//! ([`panels`]) wherever the operands suit it: a right operand packed once into panels, or
//! row-major and read in place; everything else, and f64, goes to the `gemm` crate
//! ([`matmul_gemm`]). Both have a slow, obviously correct twin, [`reference::matmul`], that
//! the tests compare them with over awkward sizes.

pub mod activation;
pub mod fast_f32;
pub mod pair;
pub mod panels;
#[cfg(any(test, feature = "internals"))]
pub mod reference;
pub(crate) mod rows;
pub mod scalar;
pub(crate) mod softmax;
pub mod split;

pub use panels::Panels;
use scalar::Float;

/// The panel-kernel dispatch of a scalar type: crate-private (the supertrait of [`Float`],
/// nameable only inside recur), so that [`matmul`] asks `T` whether the panel kernel runs
/// without the kernel importing from above itself. The kernel exists for `f32` only
/// (`kernel/panels.rs` implements it); a type without one takes the defaults, which say so
/// (`None`, `false`: the caller takes the general path).
pub trait Dispatch: Sized {
    /// `b` packed for the panel kernel ([`panels`]) where this type and CPU have one (`f32`
    /// with AVX-512F), else `None`.
    fn pack_panels(_b: Mat<'_, Self>) -> Option<Panels> {
        None
    }

    /// `b` rounded to bf16 and packed for the bf16 panel kernel where this type and CPU
    /// have one (`f32` with AVX-512 BF16), else `None`.
    fn pack_panels_bf16(_b: Mat<'_, Self>) -> Option<Panels> {
        None
    }

    /// Whether [`Dispatch::pack_panels_bf16`] packs anything for this type on this CPU.
    fn has_bf16() -> bool {
        false
    }

    /// `dst (=|+=) a · b` (with `bias`: `dst = bias + a · b`, `acc` ignored) on the panel
    /// kernel, where this type and CPU have one and the operands suit it: `a` row-major or
    /// transposed, and `b` carrying its panels or row-major and worth reading in place
    /// ([`panels::matmul_unpacked`]). Returns whether it ran (`false`: the caller runs the
    /// general GEMM).
    fn matmul_panels(
        _dst: &mut [Self],
        _ld_dst: usize,
        _a: Mat<'_, Self>,
        _b: Mat<'_, Self>,
        _acc: Accumulate,
        _bias: Option<&[Self]>,
    ) -> bool {
        false
    }

    /// `dst₁ (=|+=) a · b₁` and `dst₂ (=|+=) a · b₂` in one pass over `a` on the panel
    /// kernel ([`panels::matmul_unpacked_two`]) where this type and CPU have one and the
    /// operands suit it; returns whether it ran.
    fn matmul_two(
        _a: Mat<'_, Self>,
        _first: (&mut [Self], usize, Mat<'_, Self>),
        _second: (&mut [Self], usize, Mat<'_, Self>),
        _acc: Accumulate,
    ) -> bool {
        false
    }
}

/// No panel kernel in f64: every product runs on the `gemm` crate.
impl Dispatch for f64 {}

/// Whether this type and CPU run bf16 weights ([`Dispatch::pack_panels_bf16`]): an `f32`
/// model on a CPU with AVX-512 BF16.
pub fn has_bf16<T: Float>() -> bool {
    T::has_bf16()
}

/// A read-only strided matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
///
/// A right operand may also carry the same matrix packed for the panel kernel
/// ([`Mat::with_panels`]); [`matmul`] then reads the panels where it can.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    /// The same matrix packed by [`Panels::pack`] (this view being its columns from
    /// `panels_at` on), or `None`.
    pub panels: Option<&'a Panels>,
    /// The first column of `panels` this view holds.
    pub panels_at: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `[rows, cols]` matrix whose rows are `ld` apart.
    #[inline]
    pub fn rows(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: ld,
            col_stride: 1,
            panels: None,
            panels_at: 0,
        }
    }

    /// The same view, also readable through `panels` (which must hold this matrix).
    #[inline]
    pub fn with_panels(self, panels: Option<&'a Panels>) -> Self {
        debug_assert!(panels.is_none_or(|p| p.k() == self.rows && p.n() == self.cols));
        Self {
            panels,
            panels_at: 0,
            ..self
        }
    }

    /// Columns `start .. start + count`, without moving anything. The view keeps the
    /// panels where they hold those columns on their own ([`Panels::has_columns`]).
    #[inline]
    pub fn columns(self, start: usize, count: usize) -> Self {
        debug_assert!(start + count <= self.cols);
        let offset = if count == 0 || self.rows == 0 {
            0
        } else {
            start * self.col_stride
        };
        Self {
            data: &self.data[offset.min(self.data.len())..],
            rows: self.rows,
            cols: count,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            panels: self
                .panels
                .filter(|p| p.has_columns(self.panels_at + start, count)),
            panels_at: self.panels_at + start,
        }
    }

    /// The transpose, without moving anything.
    #[inline]
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            panels: None,
            panels_at: 0,
        }
    }

    /// Whether every element the view names lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Whether `matmul` overwrites its destination or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `dst = a · b`
    Overwrite,
    /// `dst += a · b`
    Add,
}

/// Below this many multiply-adds a product runs on the calling thread: forking costs more
/// than it saves (measured: a B = 1 step product at H = 256 is ~0.26 M).
const PARALLEL_MIN_FMAS: usize = 1 << 20;

/// `dst[m, n] (=|+=) a[m, k] · b[k, n]`, with `dst` row-major and `ld_dst` apart.
///
/// Uses both cores (rayon's global pool) for large products.
#[inline]
pub fn matmul<T: Float>(
    dst: &mut [T],
    ld_dst: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: Accumulate,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // Both paths check the shapes and bounds themselves.
    if m > 0 && n > 0 && k > 0 && T::matmul_panels(dst, ld_dst, a, b, acc, None) {
        return;
    }
    matmul_gemm(dst, ld_dst, a, b, acc);
}

/// `dst₁ (=|+=) a · b₁` and `dst₂ (=|+=) a · b₂`: as two calls of [`matmul`], but on the
/// panel kernel in one pass over `a` where it runs (the weight gradients of `W_ih` and
/// `W_hh`, which share `daᵀ`).
pub fn matmul_two<T: Float>(
    a: Mat<'_, T>,
    (dst1, ld1, b1): (&mut [T], usize, Mat<'_, T>),
    (dst2, ld2, b2): (&mut [T], usize, Mat<'_, T>),
    acc: Accumulate,
) {
    if !T::matmul_two(a, (&mut *dst1, ld1, b1), (&mut *dst2, ld2, b2), acc) {
        matmul(dst1, ld1, a, b1, acc);
        matmul(dst2, ld2, a, b2, acc);
    }
}

/// [`matmul`] on the `gemm` crate whatever the operands (the panels of `b` unused): the
/// general path, and the baseline the panel kernel is measured against.
pub fn matmul_gemm<T: Float>(
    dst: &mut [T],
    ld_dst: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: Accumulate,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if acc == Accumulate::Overwrite {
            for r in 0..m {
                dst[r * ld_dst..r * ld_dst + n].fill(T::zero());
            }
        }
        return;
    }
    // Bounds are guaranteed by the asserts above for every caller in this crate; they are
    // checked in release builds too, since a wrong view here would be memory-unsafe.
    assert!(a.in_bounds() && b.in_bounds() && (m - 1) * ld_dst + n <= dst.len());
    let parallelism =
        if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_FMAS && !split::in_part() {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
    // SAFETY: all three views were checked to lie inside their slices; `dst` is borrowed
    // mutably so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld_dst as isize,
            acc == Accumulate::Add,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst[m, n] = bias + a[m, k] · b[k, n]`: every row of `dst` (row-major, `ld_dst` apart)
/// starts from `bias` (`[n]`). With panels in `b` one pass of the panel kernel, which also
/// writes a fresh destination's pages from both threads; otherwise the rows are filled with
/// `bias` and [`matmul`] adds the product.
pub fn matmul_bias<T: Float>(
    dst: &mut [T],
    ld_dst: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    bias: &[T],
) {
    let (m, n) = (a.rows, b.cols);
    assert!(bias.len() >= n, "bias too short");
    if m == 0 || n == 0 {
        return;
    }
    if b.panels.is_some() && T::matmul_panels(dst, ld_dst, a, b, Accumulate::Overwrite, Some(bias))
    {
        return;
    }
    for r in 0..m {
        dst[r * ld_dst..r * ld_dst + n].copy_from_slice(&bias[..n]);
    }
    matmul(dst, ld_dst, a, b, Accumulate::Add);
}

/// `out[c] += Σ_r x[r, c]` over the first `rows` rows of a row-major `[rows, cols]` matrix:
/// the bias gradient of a product whose output rows were `x`.
#[inline]
pub fn add_column_sums<T: Float>(out: &mut [T], x: &[T], rows: usize, cols: usize) {
    debug_assert!(out.len() >= cols && x.len() >= rows * cols);
    for row in x[..rows * cols].chunks_exact(cols) {
        for (o, &v) in out[..cols].iter_mut().zip(row) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(n: usize, seed: u64) -> Vec<f64> {
        // A small LCG is enough to fill test matrices.
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    /// The fast product equals the reference one over awkward sizes, both layouts of each
    /// operand, and both accumulation modes.
    #[test]
    fn matmul_matches_reference_over_awkward_sizes() {
        const TOL: f64 = 1e-12;
        let sizes = [0usize, 1, 2, 7, 16, 63, 65, 130];
        let mut case = 0u64;
        for &m in &sizes {
            for &n in &[0usize, 1, 3, 17, 64, 65] {
                for &k in &[0usize, 1, 5, 33, 129] {
                    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                        case += 1;
                        let a_data = fill(m * k, case);
                        let b_data = fill(k * n, case + 1000);
                        let a = if ta {
                            Mat::rows(&a_data, k, m, m).t()
                        } else {
                            Mat::rows(&a_data, m, k, k)
                        };
                        let b = if tb {
                            Mat::rows(&b_data, n, k, k).t()
                        } else {
                            Mat::rows(&b_data, k, n, n)
                        };
                        for acc in [Accumulate::Overwrite, Accumulate::Add] {
                            let ld = n + 3;
                            let init = fill(m * ld, case + 2000);
                            let mut fast = init.clone();
                            let mut slow = init.clone();
                            matmul(&mut fast, ld, a, b, acc);
                            reference::matmul(&mut slow, ld, a, b, acc);
                            for (i, (x, y)) in fast.iter().zip(&slow).enumerate() {
                                assert!(
                                    (x - y).abs() <= TOL * (1.0 + k as f64),
                                    "m={m} n={n} k={k} ta={ta} tb={tb} {acc:?} at {i}: {x} vs {y}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matmul_f32_matches_reference() {
        let (m, n, k) = (65, 129, 257);
        let a: Vec<f32> = fill(m * k, 1).into_iter().map(|v| v as f32).collect();
        let b: Vec<f32> = fill(k * n, 2).into_iter().map(|v| v as f32).collect();
        let mut fast = vec![0f32; m * n];
        let mut slow = vec![0f32; m * n];
        matmul(
            &mut fast,
            n,
            Mat::rows(&a, m, k, k),
            Mat::rows(&b, k, n, n),
            Accumulate::Overwrite,
        );
        reference::matmul(
            &mut slow,
            n,
            Mat::rows(&a, m, k, k),
            Mat::rows(&b, k, n, n),
            Accumulate::Overwrite,
        );
        for (x, y) in fast.iter().zip(&slow) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}
