//! Weights packed once into the panel layout of an AVX-512 f32 kernel, and the product that
//! streams them: `dst (=|+=) a · B` with `B` `[k, n]` a weight matrix (or its transpose)
//! that stays the same for every time step of a call.
//!
//! A general GEMM packs its right operand on every call; at the few rows of a time step
//! (batch 1…64) that packing costs as much as the arithmetic. [`Panels::pack`] does it once
//! per forward or backward call, and [`matmul_panels`] reads the result with no further
//! copying: `B` is cut into column blocks of up to [`BLOCK`] = 64 columns (four 16-lane
//! vectors), each stored as `k` contiguous rows of its width, zero-padded to a multiple of 16:
//! ```text
//! data[block][kk][0 .. 16·panels_in_block]   = B[kk, 64·block ..]
//! ```
//! The microkernel holds an `MR × 64` tile of `dst` (MR ≤ 6 rows, 24 of the 32 vector
//! registers) and, per `kk`, loads the block's row once and broadcasts each of the tile's
//! `a[r, kk]` from the row-major `a` directly, so `a` is never packed either. The sum runs
//! in the order kk = 0, 1, …, k−1 with one fused multiply-add per term, whatever the
//! tiling or thread split: a row's result does not depend on the batch size or on which rows
//! are active. Long sums go in passes of `KC` terms, each starting from the partial sums
//! the last one stored, which keeps that order exactly.
//!
//! The products after a backward's time loop use the same kernel without packing anything
//! per call ([`matmul_unpacked`], [`matmul_unpacked_two`]): the right operand (the layer
//! input X, the states H, or W_ih for the input gradient) is read in place, 64 columns of
//! its rows at a time, and a transposed left operand (the weight gradient's `daᵀ`) is
//! copied a chunk at a time into strips of MR rows, so the weight gradients of W_ih and
//! W_hh share one pass over `da`.
//!
//! Two threads split large products: the rows when there are many (the input projection of
//! a whole sequence, on rayon's pool), the column blocks when there are few (a time step of
//! a small batch, on the current [`super::pair::Pair`] if one is installed, else rayon's).
//!
//! CPUs without AVX-512F get no panels ([`Panels::pack`] returns `None`) and the callers keep
//! the `gemm` crate.

use super::{Accumulate, Dispatch, Mat};

/// The dispatch of [`super::matmul`] and the packing of the layers for `f32`: the panel
/// kernel wherever this CPU has it and the operands suit it.
impl Dispatch for f32 {
    fn pack_panels(b: Mat<'_, Self>) -> Option<Panels> {
        Panels::pack(b)
    }

    fn pack_panels_bf16(b: Mat<'_, Self>) -> Option<Panels> {
        Panels::pack_bf16(b)
    }

    fn has_bf16() -> bool {
        Panels::bf16_available()
    }

    #[inline]
    fn matmul_panels(
        dst: &mut [Self],
        ld_dst: usize,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        acc: Accumulate,
        bias: Option<&[Self]>,
    ) -> bool {
        let row_major = a.col_stride == 1;
        if !row_major && a.row_stride != 1 {
            return false;
        }
        if let Some(p) = b.panels {
            if p.is_bf16() && !row_major {
                return false;
            }
            let cols = b.panels_at..b.panels_at + b.cols;
            matmul_panel_columns(dst, ld_dst, a, p, cols, acc, bias);
            return true;
        }
        if bias.is_none() && b.col_stride == 1 && unpacked_worth(a.rows, b.cols, a.cols) {
            matmul_unpacked(dst, ld_dst, a, b, acc);
            return true;
        }
        false
    }

    fn matmul_two(
        a: Mat<'_, Self>,
        first: (&mut [Self], usize, Mat<'_, Self>),
        second: (&mut [Self], usize, Mat<'_, Self>),
        acc: Accumulate,
    ) -> bool {
        let suits = (a.col_stride == 1 || a.row_stride == 1)
            && first.2.col_stride == 1
            && second.2.col_stride == 1
            && unpacked_worth(a.rows, first.2.cols + second.2.cols, a.cols);
        if suits {
            matmul_unpacked_two(a, first, second, acc);
        }
        suits
    }
}

/// Lanes of one vector: the width of one panel.
pub const LANES: usize = 16;
/// Panels per column block, the microkernel's width in vectors.
const PANELS: usize = 4;
/// Columns per block.
pub const BLOCK: usize = LANES * PANELS;
/// Rows of the microkernel's tile.
const MR: usize = 6;
/// Rows per chunk when a product has many rows: a chunk of `a` stays in L2 while every
/// column block passes over it, and the chunk's rows of `dst` while the passes of [`KC`]
/// terms go by.
const MC: usize = 96;
/// Terms per pass over a tile: a block of `B` (`KC` rows of 64 columns, 128 KiB) stays in
/// L2 while every tile of a chunk of rows passes over it. Even, for the bf16 pairs. Products
/// of k ≤ 512 (the step products at H ≤ 512) run in one pass, and so does any product of
/// one tile's rows (a time step at batch ≤ 6), which has no tiles to share a block with:
/// there, passes only cut each block's stream from memory into pieces (a B1 H512 LSTM
/// streaming step with passes of 256 took 55 µs, without 52).
const KC: usize = 512;
/// [`MC`] and [`KC`] for a transposed `a` (a weight gradient's `daᵀ`, copied to strips per
/// chunk and pass): long chunks read whole rows of `da` in order (measured on `daᵀ · X` at
/// T·B = 6400: 96 rows 114–145 GFLOP/s, 384 rows 153–182), short passes keep the strips
/// (384 × 128 floats, 192 KiB) in L2.
const MC_T: usize = 384;
const KC_T: usize = 128;
/// Below this many multiply-adds a product runs on the calling thread (a fork-join costs
/// several µs).
const PARALLEL_MIN_FMAS: usize = 1 << 21;
/// Below this many multiply-adds a product runs on the calling thread even with a
/// [`super::pair::Pair`] installed (meeting the helper costs a fraction of a µs).
const PAIR_MIN_FMAS: usize = 1 << 14;

/// `B` `[k, n]` packed for [`matmul_panels`] (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Panels {
    k: usize,
    n: usize,
    data: Data,
}

/// The packed values: f32, or bf16 pairs for the AVX-512 BF16 dot product (see
/// [`Panels::pack_bf16`]).
#[derive(Clone, Debug, PartialEq)]
enum Data {
    F32(Vec<f32>),
    /// `data[block][kp][col]` = bf16(B[2kp, col]) | bf16(B[2kp + 1, col]) << 16
    Bf16(Vec<u32>),
}

impl Panels {
    /// Whether this CPU runs the panel kernel (AVX-512F, detected once).
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static YES: OnceLock<bool> = OnceLock::new();
            *YES.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `b` packed, or `None` when this CPU has no AVX-512F.
    pub fn pack(b: Mat<'_, f32>) -> Option<Self> {
        if !Self::available() {
            return None;
        }
        let (k, n) = (b.rows, b.cols);
        let mut data = vec![0.0f32; n.div_ceil(LANES) * LANES * k];
        let mut base = 0;
        for start in (0..n).step_by(BLOCK) {
            let cols = (n - start).min(BLOCK);
            let width = cols.div_ceil(LANES) * LANES;
            let block = &mut data[base..base + k * width];
            // Walk `b` along whichever axis is contiguous in memory (a stored weight matrix
            // read through a transposed view has its k values of a column together).
            if b.row_stride == 1 && b.col_stride != 1 {
                for j in 0..cols {
                    let src = &b.data[(start + j) * b.col_stride..];
                    for (kk, &v) in src[..k].iter().enumerate() {
                        block[kk * width + j] = v;
                    }
                }
            } else {
                for kk in 0..k {
                    for j in 0..cols {
                        block[kk * width + j] =
                            b.data[kk * b.row_stride + (start + j) * b.col_stride];
                    }
                }
            }
            base += k * width;
        }
        Some(Self {
            k,
            n,
            data: Data::F32(data),
        })
    }

    /// Whether this CPU runs the bf16 panel kernel (AVX-512F and AVX-512 BF16).
    pub fn bf16_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static YES: OnceLock<bool> = OnceLock::new();
            *YES.get_or_init(|| {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `b` rounded to bfloat16 (round to nearest even; 8 significant bits, relative error
    /// ≤ 2⁻⁹) and packed for the AVX-512 BF16 dot product, which multiplies pairs of bf16
    /// values and accumulates in f32. The product then also rounds the left operand to
    /// bf16. Half the bytes of [`Panels::pack`], for products bound by reading the weights
    /// (streaming). `None` when this CPU has no AVX-512 BF16.
    pub fn pack_bf16(b: Mat<'_, f32>) -> Option<Self> {
        if !Self::bf16_available() {
            return None;
        }
        let (k, n) = (b.rows, b.cols);
        let at = |kk: usize, col: usize| -> u32 {
            if kk < k && col < n {
                u32::from(bf16_bits(b.data[kk * b.row_stride + col * b.col_stride]))
            } else {
                0
            }
        };
        let mut data = Vec::with_capacity(n.div_ceil(LANES) * LANES * k.div_ceil(2));
        for start in (0..n).step_by(BLOCK) {
            let width = (n - start).min(BLOCK).div_ceil(LANES) * LANES;
            for kp in 0..k.div_ceil(2) {
                for j in 0..width {
                    data.push(at(2 * kp, start + j) | (at(2 * kp + 1, start + j) << 16));
                }
            }
        }
        Some(Self {
            k,
            n,
            data: Data::Bf16(data),
        })
    }

    /// Whether the values are held as bf16.
    pub fn is_bf16(&self) -> bool {
        matches!(self.data, Data::Bf16(_))
    }

    /// Rows of `B` (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether columns `start .. start + count` can be read from these panels on their own
    /// ([`matmul_panel_columns`]): they start on a block and end on one or at n.
    pub fn has_columns(&self, start: usize, count: usize) -> bool {
        start.is_multiple_of(BLOCK)
            && start + count <= self.n
            && count > 0
            && (count.is_multiple_of(BLOCK) || start + count == self.n)
    }
}

/// `x` rounded to bfloat16, to nearest even (NaN kept a NaN).
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// `dst[m, n] (=|+=) a[m, k] · B`, `dst` row-major with rows `ld_dst` apart; `a` row-major
/// (`col_stride == 1`) or transposed (`row_stride == 1`, a weight gradient's `daᵀ`).
///
/// # Panics
/// When the shapes disagree, `a` has neither layout, or a view lies outside its slice.
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // the tests' and benches' entry
pub fn matmul_panels(dst: &mut [f32], ld_dst: usize, a: Mat<'_, f32>, b: &Panels, acc: Accumulate) {
    product(dst, ld_dst, a, Right::packed(b, 0, b.n), acc, None);
}

/// As [`matmul_panels`] (with `bias`: `dst = bias + a · B[:, cols]`, `acc` ignored, `bias`
/// `[cols.len()]`) over the columns `cols` of `B` only, read from the panels in place:
/// for a product with part of a packed matrix (the reset-before GRU's `[W_hr; W_hz]` and
/// `W_hn` in one packed `W_hh`). The columns must start on a block of [`BLOCK`] and end on
/// one or at n ([`Panels::has_columns`]).
///
/// # Panics
/// As [`matmul_panels`]; also when the columns are not such a range.
pub fn matmul_panel_columns(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: &Panels,
    cols: std::ops::Range<usize>,
    acc: Accumulate,
    bias: Option<&[f32]>,
) {
    assert!(
        b.has_columns(cols.start, cols.len()),
        "not a range of whole blocks"
    );
    if let Some(bias) = bias {
        assert!(bias.len() >= cols.len(), "bias too short");
    }
    let acc = if bias.is_some() {
        Accumulate::Overwrite
    } else {
        acc
    };
    product(
        dst,
        ld_dst,
        a,
        Right::packed(b, cols.start / BLOCK, cols.len()),
        acc,
        bias,
    );
}

/// `dst[m, n] = bias + a[m, k] · B`, every row starting from `bias` (`[n]`): the input
/// projection with its biases, written in one pass (the destination is typically a fresh
/// slab, whose pages both threads then touch first at once).
///
/// # Panics
/// As [`matmul_panels`]; also when `bias` is shorter than n.
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // the tests' and benches' entry
pub fn matmul_panels_bias(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: &Panels,
    bias: &[f32],
) {
    assert!(bias.len() >= b.n, "bias too short");
    product(
        dst,
        ld_dst,
        a,
        Right::packed(b, 0, b.n),
        Accumulate::Overwrite,
        Some(bias),
    );
}

/// `dst[m, n] (=|+=) a[m, k] · b` with `b` row-major (`col_stride == 1`) and read where it
/// lies, unpacked: the kernel's blocks are `b`'s own rows, 64 columns at a time. For
/// products used once, with many rows of `a` to share each block of `b` (the weight
/// gradients `daᵀ · X` over all steps, the input gradient `da · W_ih`), where packing `b`
/// would cost a pass over it. `a` as in [`matmul_panels`]; the same order of terms.
///
/// # Panics
/// As [`matmul_panels`]; also when `b` is not row-major. Without AVX-512F (see
/// [`Panels::available`]) there is no kernel to run: the caller must check.
pub fn matmul_unpacked(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    acc: Accumulate,
) {
    product(dst, ld_dst, a, Right::rows(b), acc, None);
}

/// `dst₁ (=|+=) a · b₁` and `dst₂ (=|+=) a · b₂`, as two calls of [`matmul_unpacked`] but
/// in one pass over `a`: the weight gradients `daᵀ · X` and `daᵀ · H` of a layer whose two
/// matrices share their gate gradients, each chunk of `daᵀ` read once for both.
///
/// # Panics
/// As [`matmul_unpacked`] for either product.
pub fn matmul_unpacked_two(
    a: Mat<'_, f32>,
    (dst1, ld1, b1): (&mut [f32], usize, Mat<'_, f32>),
    (dst2, ld2, b2): (&mut [f32], usize, Mat<'_, f32>),
    acc: Accumulate,
) {
    let targets = [
        Target::new(dst1, ld1, a, Right::rows(b1), acc, None),
        Target::new(dst2, ld2, a, Right::rows(b2), acc, None),
    ];
    products(a, &targets, acc);
}

/// Whether a product with `m` rows, `n` columns and `k` terms runs on [`matmul_unpacked`]
/// (rather than the `gemm` crate, which packs both operands): on CPUs with AVX-512F, from
/// 16 rows (`UNPACKED_MIN_ROWS`), enough to share each block of `b` between tiles.
pub fn unpacked_worth(m: usize, n: usize, k: usize) -> bool {
    m >= UNPACKED_MIN_ROWS && n > 0 && k > 0 && Panels::available()
}

/// Rows of `a` from which [`unpacked_worth`] holds.
const UNPACKED_MIN_ROWS: usize = 16;

/// The right operand of one product.
#[derive(Clone, Copy)]
enum Right<'a> {
    /// columns `first_block · BLOCK ..` of the panels, `n` of them
    Packed {
        panels: &'a Panels,
        first_block: usize,
        n: usize,
    },
    /// `[k, n]` row-major, rows `ld` apart, read in place
    Rows {
        data: *const f32,
        ld: usize,
        k: usize,
        n: usize,
    },
}

impl<'a> Right<'a> {
    fn packed(panels: &'a Panels, first_block: usize, n: usize) -> Self {
        Right::Packed {
            panels,
            first_block,
            n,
        }
    }

    /// `b` read in place.
    ///
    /// # Panics
    /// As [`matmul_unpacked`].
    fn rows(b: Mat<'_, f32>) -> Self {
        assert!(Panels::available(), "the panel kernel needs AVX-512F");
        assert!(
            b.col_stride == 1 || b.rows == 0 || b.cols == 0,
            "b must be row-major"
        );
        assert!(
            b.rows == 0 || b.cols == 0 || (b.rows - 1) * b.row_stride + b.cols <= b.data.len(),
            "b out of bounds"
        );
        Right::Rows {
            data: b.data.as_ptr(),
            ld: b.row_stride,
            k: b.rows,
            n: b.cols,
        }
    }

    fn k(&self) -> usize {
        match self {
            Right::Packed { panels, .. } => panels.k,
            Right::Rows { k, .. } => *k,
        }
    }

    fn n(&self) -> usize {
        match self {
            Right::Packed { n, .. } => *n,
            Right::Rows { n, .. } => *n,
        }
    }

    fn is_bf16(&self) -> bool {
        matches!(self, Right::Packed { panels, .. } if panels.is_bf16())
    }

    /// Row `kk` (even for bf16) of column block `block` (of this operand's columns), and
    /// the distance between rows.
    ///
    /// # Safety
    /// `kk < k` and `block` a block of the operand.
    unsafe fn block_row(&self, block: usize, kk: usize) -> (B, usize) {
        let width = (self.n() - block * BLOCK).min(BLOCK).div_ceil(LANES) * LANES;
        // Blocks before this one are full: BLOCK columns each.
        unsafe {
            match *self {
                Right::Packed {
                    panels: p,
                    first_block,
                    ..
                } => {
                    let block = first_block + block;
                    match &p.data {
                        Data::F32(d) => (
                            B::F32(d.as_ptr().add(block * BLOCK * p.k + kk * width)),
                            width,
                        ),
                        Data::Bf16(d) => (
                            B::Bf16(
                                d.as_ptr()
                                    .add(block * BLOCK * p.k.div_ceil(2) + kk / 2 * width),
                            ),
                            width,
                        ),
                    }
                }
                Right::Rows { data, ld, .. } => (B::F32(data.add(kk * ld + block * BLOCK)), ld),
            }
        }
    }
}

fn product(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: Right<'_>,
    acc: Accumulate,
    bias: Option<&[f32]>,
) {
    let target = Target::new(dst, ld_dst, a, b, acc, bias);
    products(a, &[target], acc);
}

/// One destination of a call and its right operand.
struct Target<'a> {
    dst: *mut f32,
    ld_dst: usize,
    b: Right<'a>,
    /// `[n]` start of every row (`Overwrite` only), or null
    bias: *const f32,
}

impl<'a> Target<'a> {
    /// `dst (=|+=) a · b` checked; with k = 0 done already (`dst` cleared or set to `bias`
    /// for `Overwrite`).
    ///
    /// # Panics
    /// When the shapes disagree or `dst` is too small.
    fn new(
        dst: &mut [f32],
        ld_dst: usize,
        a: Mat<'_, f32>,
        b: Right<'a>,
        acc: Accumulate,
        bias: Option<&[f32]>,
    ) -> Self {
        let (m, k, n) = (a.rows, a.cols, b.n());
        assert_eq!(k, b.k(), "inner dimensions differ");
        assert!(
            m == 0 || n == 0 || (m - 1) * ld_dst + n <= dst.len(),
            "dst too small"
        );
        if k == 0 && acc == Accumulate::Overwrite {
            for r in 0..m {
                let row = &mut dst[r * ld_dst..r * ld_dst + n];
                match bias {
                    Some(bias) => row.copy_from_slice(&bias[..n]),
                    None => row.fill(0.0),
                }
            }
        }
        Self {
            dst: dst.as_mut_ptr(),
            ld_dst,
            b,
            bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        }
    }
}

/// Every target's product with the same `a`, checked by [`Target::new`]: each chunk of
/// `a` is read once for all of them.
fn products(a: Mat<'_, f32>, targets: &[Target<'_>], acc: Accumulate) {
    let (m, k) = (a.rows, a.cols);
    let n: usize = targets.iter().map(|t| t.b.n()).sum();
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // a[r, kk] = a[r·lda + kk] (row-major) or a[kk·lda + r] (transposed)
    let (transposed, lda) = if a.col_stride == 1 {
        (false, a.row_stride)
    } else {
        assert!(a.row_stride == 1, "a must be row-major or transposed");
        assert!(
            targets.iter().all(|t| !t.b.is_bf16()),
            "the bf16 kernel reads a row-major a"
        );
        (true, a.col_stride)
    };
    assert!(
        if transposed {
            (k - 1) * lda + m <= a.data.len()
        } else {
            (m - 1) * lda + k <= a.data.len()
        },
        "a out of bounds"
    );
    let part = Part {
        a: a.data.as_ptr(),
        lda,
        transposed,
        k,
        targets,
        add: acc == Accumulate::Add,
    };
    let threads = rayon::current_num_threads();
    let fmas = m.saturating_mul(n).saturating_mul(k);
    let blocks: usize = targets.iter().map(|t| t.b.n().div_ceil(BLOCK)).sum();
    let paired = !super::split::in_part()
        && fmas >= PAIR_MIN_FMAS
        && blocks >= 2
        && super::pair::with_current(|pair| match pair {
            // As rayon's split below: the rows where there are many (a whole sequence's
            // products, run in the pair's scope at small batches), else the column blocks
            // (a time step).
            Some(pair) if m >= 2 * MC => {
                let half = m.div_ceil(2 * MR) * MR;
                let part = &part;
                // SAFETY: as below; the halves write disjoint rows of each `dst`.
                pair.split(&|p| unsafe {
                    if p == 0 {
                        part.run(0..half, 0..blocks);
                    } else {
                        part.run(half..m, 0..blocks);
                    }
                });
                true
            }
            Some(pair) => {
                let half = blocks.div_ceil(2);
                let part = &part;
                // SAFETY: as below; the halves write disjoint columns of `dst`.
                pair.split(&|p| unsafe {
                    if p == 0 {
                        part.run(0..m, 0..half);
                    } else {
                        part.run(0..m, half..blocks);
                    }
                });
                true
            }
            None => false,
        });
    if paired {
        return;
    }
    if threads < 2 || fmas < PARALLEL_MIN_FMAS || super::split::in_part() {
        // SAFETY: the asserts above and in `Target::new` put every row and column the
        // part touches inside its `dst`, `a` and `b`; each `dst` is borrowed mutably by
        // the caller for the whole call.
        unsafe { part.run(0..m, 0..blocks) };
    } else if m >= 2 * MC {
        let half = m.div_ceil(2 * MR) * MR;
        let part = &part;
        // SAFETY: as above; the halves write disjoint rows of each `dst`.
        rayon::join(
            || unsafe { part.run(0..half, 0..blocks) },
            || unsafe { part.run(half..m, 0..blocks) },
        );
    } else {
        let half = blocks.div_ceil(2);
        let part = &part;
        // SAFETY: as above; the halves write disjoint columns.
        rayon::join(
            || unsafe { part.run(0..m, 0..half) },
            || unsafe { part.run(0..m, half..blocks) },
        );
    }
}

/// One call's operands, shared by the threads that split it.
struct Part<'a> {
    a: *const f32,
    /// the stride of `a` that is not 1
    lda: usize,
    /// `a[r, kk]` at `a[kk·lda + r]` (else `a[r·lda + kk]`)
    transposed: bool,
    k: usize,
    /// the destinations; their column blocks are numbered one after the other
    targets: &'a [Target<'a>],
    add: bool,
}

// SAFETY: the threads sharing a `Part` write disjoint rows or column blocks of the
// destinations (see `products`) and only read `a` and the right operands.
unsafe impl Sync for Part<'_> {}

impl Part<'_> {
    /// Rows `rows` × column blocks `blocks` (numbered across the targets) of the products,
    /// a chunk of rows at a time, in passes of [`KC`] terms: the first pass starts every
    /// tile from the bias, zero or `dst` (`Add`), the later ones from the partial sums
    /// they left in `dst`. Storing and reloading an f32 is exact, so each element is still
    /// one chain of fused multiply-adds in the order kk = 0, 1, ….
    ///
    /// # Safety
    /// Every row in `rows` and column in `blocks` must lie inside its `dst`, `a` and `b`,
    /// and no other thread may touch the same part of a `dst`; the CPU must have AVX-512F.
    unsafe fn run(&self, rows: std::ops::Range<usize>, blocks: std::ops::Range<usize>) {
        let k = self.k;
        // A transposed `a` (a weight gradient's daᵀ) has the rows of a tile side by side
        // but its terms `lda` apart, often a multiple of 4 KiB that maps every term to the
        // same cache set: each chunk is copied to `strips` first, MR rows × kc terms per
        // strip, terms MR apart. Its chunks are long (whole rows of da read in order) and
        // its passes short, for the strips to stay in L2.
        let (mc, kc_max) = if self.transposed {
            (MC_T, KC_T)
        } else if rows.len() <= MR {
            (MC, k)
        } else {
            (MC, KC)
        };
        let mut strips = vec![0.0f32; if self.transposed { MC_T * KC_T } else { 0 }];
        let mut chunk = rows.start;
        while chunk < rows.end {
            let chunk_end = (chunk + mc).min(rows.end);
            // The chunk's rows of `dst` stay in cache while the passes go by.
            for k0 in (0..k).step_by(kc_max) {
                let kc = (k - k0).min(kc_max);
                let first = k0 == 0;
                if self.transposed {
                    for kk in 0..kc {
                        // SAFETY: row k0 + kk < k of aᵀ, columns chunk..chunk_end < m.
                        let src = unsafe {
                            std::slice::from_raw_parts(
                                self.a.add((k0 + kk) * self.lda + chunk),
                                chunk_end - chunk,
                            )
                        };
                        let mut vals = src.chunks_exact(MR);
                        for (s, v) in vals.by_ref().enumerate() {
                            let at = s * MR * kc + kk * MR;
                            let row: &mut [f32; MR] =
                                (&mut strips[at..at + MR]).try_into().expect("MR values");
                            *row = v.try_into().expect("MR values");
                        }
                        let rest = vals.remainder();
                        if !rest.is_empty() {
                            let at = src.len() / MR * MR * kc + kk * MR;
                            strips[at..at + rest.len()].copy_from_slice(rest);
                        }
                    }
                }
                let mut base = 0;
                for t in self.targets {
                    let n = t.b.n();
                    let count = n.div_ceil(BLOCK);
                    let mine = blocks.start.max(base)..blocks.end.min(base + count);
                    for block in mine.start - base..mine.end.max(mine.start) - base {
                        // SAFETY: as the function's.
                        unsafe { self.block(t, block, chunk..chunk_end, k0, kc, first, &strips) };
                    }
                    base += count;
                }
            }
            chunk = chunk_end;
        }
    }

    /// One pass of terms `k0 .. k0 + kc` over rows `rows` of column block `block` of `t`.
    ///
    /// # Safety
    /// As [`Part::run`]; a transposed `a` must have its rows' strips in `strips`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        t: &Target<'_>,
        block: usize,
        rows: std::ops::Range<usize>,
        k0: usize,
        kc: usize,
        first: bool,
        strips: &[f32],
    ) {
        let start = block * BLOCK;
        let cols = (t.b.n() - start).min(BLOCK);
        let panels = cols.div_ceil(LANES);
        // The last panel of the matrix may be partial: its lanes past n are masked.
        let tail = cols - (panels - 1) * LANES;
        let mask: u16 = if tail == LANES {
            u16::MAX
        } else {
            (1u16 << tail) - 1
        };
        // SAFETY: k0 < k, and the passes are even.
        let (b, ldb) = unsafe { t.b.block_row(block, k0) };
        let mut r = rows.start;
        while r < rows.end {
            let mr = (rows.end - r).min(MR);
            unsafe {
                let a = if self.transposed {
                    A {
                        ptr: strips.as_ptr().add((r - rows.start) * kc),
                        lda: MR,
                        transposed: true,
                    }
                } else {
                    A {
                        ptr: self.a.add(r * self.lda + k0),
                        lda: self.lda,
                        transposed: false,
                    }
                };
                let out = Out {
                    c: t.dst.add(r * t.ld_dst + start),
                    ldc: t.ld_dst,
                    mask,
                    add: self.add || !first,
                    bias: if t.bias.is_null() || !first {
                        std::ptr::null()
                    } else {
                        t.bias.add(start)
                    },
                };
                tile(mr, panels, kc, a, b, ldb, out);
            }
            r += mr;
        }
    }
}

/// A tile's rows of the left operand.
#[derive(Clone, Copy)]
struct A {
    ptr: *const f32,
    lda: usize,
    transposed: bool,
}

/// A block of packed (or in-place) values.
#[derive(Clone, Copy)]
enum B {
    F32(*const f32),
    Bf16(*const u32),
}

/// Where a tile's results go.
#[derive(Clone, Copy)]
struct Out {
    /// the tile's first element
    c: *mut f32,
    ldc: usize,
    /// lanes of the last panel that exist
    mask: u16,
    /// start from what `c` holds (else from the bias or zero)
    add: bool,
    /// the tile's columns of the bias every row starts from, or null
    bias: *const f32,
}

/// Dispatches a `mr × panels` tile to its monomorphised kernel.
///
/// # Safety
/// As `x86::kernel`.
#[inline]
unsafe fn tile(mr: usize, panels: usize, k: usize, a: A, b: B, ldb: usize, out: Out) {
    macro_rules! go {
        ($m:literal, $p:literal) => {
            match (b, a.transposed) {
                (B::F32(b), false) => unsafe {
                    x86::kernel::<$m, $p, false>(k, a.ptr, a.lda, b, ldb, out)
                },
                (B::F32(b), true) => unsafe {
                    x86::kernel::<$m, $p, true>(k, a.ptr, a.lda, b, ldb, out)
                },
                (B::Bf16(b), _) => unsafe {
                    x86::kernel_bf16::<$m, $p>(k, a.ptr, a.lda, b, ldb, out)
                },
            }
        };
    }
    macro_rules! rows {
        ($p:literal) => {
            match mr {
                1 => go!(1, $p),
                2 => go!(2, $p),
                3 => go!(3, $p),
                4 => go!(4, $p),
                5 => go!(5, $p),
                _ => go!(6, $p),
            }
        };
    }
    match panels {
        1 => rows!(1),
        2 => rows!(2),
        3 => rows!(3),
        _ => rows!(4),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Lanes of panel `p` of `P` that exist.
    #[inline]
    fn lanes<const P: usize>(out: &super::Out, p: usize) -> __mmask16 {
        if p + 1 == P { out.mask } else { u16::MAX }
    }

    /// The accumulators as a tile starts: what `out.c` holds (`out.add`), the bias's
    /// columns, or zero.
    ///
    /// # Safety
    /// As [`kernel`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn start<const MR: usize, const P: usize>(out: super::Out) -> [[__m512; P]; MR] {
        let mut acc = [[_mm512_setzero_ps(); P]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            for (p, v) in row.iter_mut().enumerate() {
                let m = lanes::<P>(&out, p);
                if out.add {
                    *v = unsafe { _mm512_maskz_loadu_ps(m, out.c.add(r * out.ldc + 16 * p)) };
                } else if !out.bias.is_null() {
                    *v = unsafe { _mm512_maskz_loadu_ps(m, out.bias.add(16 * p)) };
                }
            }
        }
        acc
    }

    /// Writes a finished tile to `out.c`, the last panel's lanes limited to the mask.
    ///
    /// # Safety
    /// As [`kernel`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store<const MR: usize, const P: usize>(acc: &[[__m512; P]; MR], out: super::Out) {
        for (r, row) in acc.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                unsafe {
                    _mm512_mask_storeu_ps(out.c.add(r * out.ldc + 16 * p), lanes::<P>(&out, p), v);
                }
            }
        }
    }

    /// `c[r, 16p + l] = [c[r, 16p + l] | bias[16p + l]] + Σ_kk a[r, kk] · b[kk][16p + l]`
    /// for r < MR, p < P, the last panel's lanes limited to `out.mask`. `b` is a block of P
    /// panels, its rows `ldb` floats apart. `a[r, kk]` is `a[r·lda + kk]`, or with
    /// `TRANSPOSED` `a[kk·lda + r]`. The sum starts from `c` (`out.add`), the bias or zero
    /// and adds the terms in the order kk = 0, 1, …, one fused multiply-add each.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `a` must hold the MR × k values named, `b` k rows of
    /// `16(P−1) + popcount(mask)` values, `out.c` MR rows `out.ldc` apart of as many, and
    /// `out.bias`, unless null, as many.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel<const MR: usize, const P: usize, const TRANSPOSED: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        out: super::Out,
    ) {
        let mut acc = unsafe { start::<MR, P>(out) };
        for kk in 0..k {
            let mut bv = [_mm512_setzero_ps(); P];
            for (p, v) in bv.iter_mut().enumerate() {
                *v =
                    unsafe { _mm512_maskz_loadu_ps(lanes::<P>(&out, p), b.add(kk * ldb + 16 * p)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let at = if TRANSPOSED {
                    kk * lda + r
                } else {
                    r * lda + kk
                };
                let av = _mm512_set1_ps(unsafe { *a.add(at) });
                for (p, v) in row.iter_mut().enumerate() {
                    *v = _mm512_fmadd_ps(av, bv[p], *v);
                }
            }
        }
        unsafe { store(&acc, out) };
    }

    /// Pairs of `a` values converted to bf16 per pass of [`kernel_bf16`] (a stack buffer of
    /// MR × this many u32).
    const PAIRS_PER_PASS: usize = 128;

    /// As [`kernel`] with `b` in bf16 pairs (`Panels::pack_bf16`): `a` is rounded to bf16
    /// in passes of [`PAIRS_PER_PASS`] pairs (16 pairs per `vcvtne2ps2bf16`), and each kp
    /// adds `a[r, 2kp]·b[2kp] + a[r, 2kp+1]·b[2kp+1]` to the f32 accumulator
    /// (`vdpbf16ps`).
    ///
    /// # Safety
    /// As [`kernel`] (`a` row-major), with `b` holding `⌈k/2⌉` rows of pairs `ldb` apart;
    /// the CPU must have AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn kernel_bf16<const MR: usize, const P: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const u32,
        ldb: usize,
        out: super::Out,
    ) {
        let mut acc = unsafe { start::<MR, P>(out) };
        let pairs = k.div_ceil(2);
        let mut buf = [[0u32; PAIRS_PER_PASS]; MR];
        let mut p0 = 0;
        while p0 < pairs {
            let np = (pairs - p0).min(PAIRS_PER_PASS);
            // a[r, 2·p0 ..] → bf16 pairs, 32 values at a time (masked past k).
            for (r, row) in buf.iter_mut().enumerate() {
                for j in (0..np).step_by(16) {
                    let first = 2 * (p0 + j);
                    let left = k - first;
                    let m_lo: __mmask16 = if left >= 16 {
                        u16::MAX
                    } else {
                        (1u16 << left) - 1
                    };
                    let m_hi: __mmask16 = if left >= 32 {
                        u16::MAX
                    } else if left > 16 {
                        (1u16 << (left - 16)) - 1
                    } else {
                        0
                    };
                    unsafe {
                        let src = a.add(r * lda + first);
                        let lo = _mm512_maskz_loadu_ps(m_lo, src);
                        let hi = _mm512_maskz_loadu_ps(m_hi, src.add(16.min(left)));
                        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                        _mm512_storeu_si512(row.as_mut_ptr().add(j).cast(), packed);
                    }
                }
            }
            // kp indexes both the packed block and every row's pairs
            #[allow(clippy::needless_range_loop)]
            for kp in 0..np {
                let mut bv = [_mm512_setzero_si512(); P];
                for (p, v) in bv.iter_mut().enumerate() {
                    *v = unsafe { _mm512_loadu_si512(b.add((p0 + kp) * ldb + 16 * p).cast()) };
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        unsafe { std::mem::transmute(_mm512_set1_epi32(buf[r][kp] as i32)) };
                    for (p, v) in row.iter_mut().enumerate() {
                        let bp: __m512bh = unsafe { std::mem::transmute(bv[p]) };
                        *v = _mm512_dpbf16_ps(*v, av, bp);
                    }
                }
            }
            p0 += np;
        }
        unsafe { store(&acc, out) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: without AVX-512F no [`super::Panels`] exist.
    pub(super) unsafe fn kernel<const MR: usize, const P: usize, const TRANSPOSED: bool>(
        _k: usize,
        _a: *const f32,
        _lda: usize,
        _b: *const f32,
        _ldb: usize,
        _out: super::Out,
    ) {
        unreachable!("no panels exist without AVX-512F")
    }

    /// Never called, as `kernel`.
    pub(super) unsafe fn kernel_bf16<const MR: usize, const P: usize>(
        _k: usize,
        _a: *const f32,
        _lda: usize,
        _b: *const u32,
        _ldb: usize,
        _out: super::Out,
    ) {
        unreachable!("no panels exist without AVX-512F")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::reference;

    /// `a` `[rows, cols]` row-major, transposed into a fresh `[cols, rows]`.
    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .flat_map(|c| (0..rows).map(move |r| a[r * cols + c]))
            .collect()
    }

    fn fill(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The panel product equals the reference product (in f64) over awkward shapes, both
    /// layouts of `B`, both accumulation modes and a destination with a wider stride, with
    /// the columns past n left untouched.
    #[test]
    fn matches_reference_over_awkward_shapes() {
        if !Panels::available() {
            return;
        }
        let mut case = 0;
        for &m in &[1usize, 2, 5, 6, 7, 13, 64, 200] {
            for &n in &[1usize, 15, 16, 17, 64, 65, 100, 256] {
                for &k in &[0usize, 1, 3, 31, 64] {
                    for transposed in [false, true] {
                        case += 1;
                        let a = fill(m * k, case);
                        let b = fill(k * n, case + 1000);
                        let bm = if transposed {
                            Mat::rows(&b, n, k, k).t()
                        } else {
                            Mat::rows(&b, k, n, n)
                        };
                        let panels = Panels::pack(bm).unwrap();
                        for acc in [Accumulate::Overwrite, Accumulate::Add] {
                            let ld = n + 5;
                            let init = fill(m * ld, case + 2000);
                            let mut fast = init.clone();
                            matmul_panels(&mut fast, ld, Mat::rows(&a, m, k, k), &panels, acc);
                            let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
                            let mut slow: Vec<f64> = init.iter().map(|&v| v as f64).collect();
                            let b64m = if transposed {
                                Mat::rows(&b64, n, k, k).t()
                            } else {
                                Mat::rows(&b64, k, n, n)
                            };
                            reference::matmul(&mut slow, ld, Mat::rows(&a64, m, k, k), b64m, acc);
                            for r in 0..m {
                                for col in 0..ld {
                                    let (x, y) = (fast[r * ld + col] as f64, slow[r * ld + col]);
                                    let tol = 1e-6 * (1.0 + k as f64);
                                    assert!(
                                        (x - y).abs() <= tol,
                                        "m={m} n={n} k={k} t={transposed} {acc:?} ({r},{col}): {x} vs {y}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `start` plus `Σ_kk a_row[kk] · b[kk, c]` (`b` `[k, n]` row-major), one fused
    /// multiply-add per term in the order kk = 0, 1, …
    fn fma_chain(start: f32, a_row: &[f32], b: &[f32], n: usize, c: usize) -> f32 {
        let mut acc = start;
        for (kk, &v) in a_row.iter().enumerate() {
            acc = v.mul_add(b[kk * n + c], acc);
        }
        acc
    }

    /// Every element is one chain of fused multiply-adds in the order kk = 0, 1, …, from
    /// zero, the bias or the destination: the product equals that chain computed one term at
    /// a time bit for bit, with `a` row-major or transposed, `b` packed or read in place,
    /// over awkward shapes and k across several passes of KC terms.
    #[test]
    fn every_element_is_one_fma_chain_in_k_order() {
        if !Panels::available() {
            return;
        }
        let mut case = 500;
        let mut shapes = Vec::new();
        for m in [1usize, 5, 6, 7, 16, 50] {
            for n in [1usize, 16, 17, 65, 130] {
                for k in [1usize, 3, 255, 256, 257, 600] {
                    shapes.push((m, n, k));
                }
            }
        }
        // more than one chunk of a transposed a, the last partial or whole
        shapes.extend([(390, 17, 257), (768, 65, 130)]);
        for (m, n, k) in shapes {
            case += 1;
            let a = fill(m * k, case);
            let b = fill(k * n, case + 1000);
            let bias = fill(n, case + 3000);
            let ld = n + 3;
            let init = fill(m * ld, case + 2000);
            let b_rows = Mat::rows(&b, k, n, n);
            let panels = Panels::pack(b_rows).unwrap();
            let at = transpose(&a, m, k);
            for transposed in [false, true] {
                let am = if transposed {
                    Mat::rows(&at, k, m, m).t()
                } else {
                    Mat::rows(&a, m, k, k)
                };
                for mode in 0..4 {
                    let mut got = init.clone();
                    match mode {
                        0 => matmul_panels(&mut got, ld, am, &panels, Accumulate::Overwrite),
                        1 => matmul_panels(&mut got, ld, am, &panels, Accumulate::Add),
                        2 => matmul_panels_bias(&mut got, ld, am, &panels, &bias),
                        _ => matmul_unpacked(&mut got, ld, am, b_rows, Accumulate::Add),
                    }
                    for r in 0..m {
                        for c in 0..ld {
                            let want = if c >= n {
                                init[r * ld + c]
                            } else {
                                let start = match mode {
                                    0 => 0.0f32,
                                    2 => bias[c],
                                    _ => init[r * ld + c],
                                };
                                fma_chain(start, &a[r * k..(r + 1) * k], &b, n, c)
                            };
                            assert_eq!(
                                got[r * ld + c].to_bits(),
                                want.to_bits(),
                                "m={m} n={n} k={k} t={transposed} mode={mode} ({r},{c})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A range of whole blocks of packed columns ([`matmul_panel_columns`], what
    /// `Mat::columns` keeps panels for) gives those columns of the whole product, bit for
    /// bit, with and without a bias; other ranges are not views.
    #[test]
    fn a_range_of_blocks_is_those_columns_of_the_product() {
        if !Panels::available() {
            return;
        }
        let (m, k, n) = (7, 40, 200);
        let a = fill(m * k, 31);
        let b = fill(k * n, 32);
        let bias = fill(n, 33);
        let panels = Panels::pack(Mat::rows(&b, n, k, k).t()).unwrap();
        let am = Mat::rows(&a, m, k, k);
        let mut whole = vec![0f32; m * n];
        matmul_panels_bias(&mut whole, n, am, &panels, &bias);
        for cols in [0..64, 64..192, 128..200, 192..200, 0..200] {
            assert!(panels.has_columns(cols.start, cols.len()), "{cols:?}");
            let w = cols.len();
            let mut part = vec![0f32; m * w];
            let bias_part = &bias[cols.clone()];
            matmul_panel_columns(
                &mut part,
                w,
                am,
                &panels,
                cols.clone(),
                Accumulate::Add,
                Some(bias_part),
            );
            for r in 0..m {
                assert_eq!(
                    part[r * w..(r + 1) * w],
                    whole[r * n + cols.start..r * n + cols.end],
                    "{cols:?}"
                );
            }
        }
        for (start, count) in [(1, 64), (0, 65), (64, 100), (0, 0), (192, 9)] {
            assert!(!panels.has_columns(start, count), "{start} {count}");
        }
        // through `Mat::columns`: the view keeps the panels where it can
        let bm = Mat::rows(&b, n, k, k).t().with_panels(Some(&panels));
        assert!(bm.columns(64, 128).panels.is_some());
        assert!(bm.columns(64, 128).columns(64, 64).panels.is_some());
        assert!(bm.columns(128, 72).columns(64, 8).panels.is_some());
        assert!(bm.columns(128, 72).columns(0, 8).panels.is_none());
        assert!(bm.columns(10, 64).panels.is_none());
    }

    /// Two products sharing their left operand ([`matmul_unpacked_two`]) equal their FMA
    /// chains bit for bit, each with its own right operand and destination, whichever
    /// thread split the column blocks of both get.
    #[test]
    fn two_products_in_one_pass_are_each_one_fma_chain() {
        if !Panels::available() {
            return;
        }
        let mut case = 900;
        for (m, n1, n2, k) in [(7, 17, 64, 300), (50, 64, 200, 257), (400, 64, 100, 200)] {
            case += 1;
            let a = fill(m * k, case);
            let (b1, b2) = (fill(k * n1, case + 1), fill(k * n2, case + 2));
            let (i1, i2) = (fill(m * n1, case + 3), fill(m * n2, case + 4));
            let at = transpose(&a, m, k);
            for transposed in [false, true] {
                let am = if transposed {
                    Mat::rows(&at, k, m, m).t()
                } else {
                    Mat::rows(&a, m, k, k)
                };
                let (mut d1, mut d2) = (i1.clone(), i2.clone());
                matmul_unpacked_two(
                    am,
                    (&mut d1, n1, Mat::rows(&b1, k, n1, n1)),
                    (&mut d2, n2, Mat::rows(&b2, k, n2, n2)),
                    Accumulate::Add,
                );
                for (got, init, b, n) in [(&d1, &i1, &b1, n1), (&d2, &i2, &b2, n2)] {
                    for r in 0..m {
                        for c in 0..n {
                            let want = fma_chain(init[r * n + c], &a[r * k..(r + 1) * k], b, n, c);
                            assert_eq!(
                                got[r * n + c].to_bits(),
                                want.to_bits(),
                                "m={m} n={n} k={k} t={transposed} ({r},{c})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The bf16 product equals, to f32 rounding, the exact product of the bf16-rounded
    /// operands, over awkward shapes (odd k, partial panels, passes of 128 pairs) and both
    /// accumulation modes and the bias.
    #[test]
    fn bf16_matches_the_product_of_rounded_operands() {
        if !Panels::bf16_available() {
            return;
        }
        let round = |v: f32| f64::from(f32::from_bits(u32::from(bf16_bits(v)) << 16));
        let mut case = 100;
        for &m in &[1usize, 3, 6, 7] {
            for &n in &[1usize, 17, 64, 100] {
                for &k in &[1usize, 2, 31, 64, 257, 300] {
                    case += 1;
                    let a = fill(m * k, case);
                    let b = fill(k * n, case + 1000);
                    let bias = fill(n, case + 3000);
                    let panels = Panels::pack_bf16(Mat::rows(&b, n, k, k).t()).unwrap();
                    assert!(panels.is_bf16());
                    for mode in 0..3 {
                        let ld = n + 2;
                        let init = fill(m * ld, case + 2000);
                        let mut fast = init.clone();
                        let am = Mat::rows(&a, m, k, k);
                        match mode {
                            0 => matmul_panels(&mut fast, ld, am, &panels, Accumulate::Overwrite),
                            1 => matmul_panels(&mut fast, ld, am, &panels, Accumulate::Add),
                            _ => matmul_panels_bias(&mut fast, ld, am, &panels, &bias),
                        }
                        for r in 0..m {
                            for c in 0..n {
                                let mut want = match mode {
                                    0 => 0.0,
                                    1 => f64::from(init[r * ld + c]),
                                    _ => f64::from(bias[c]),
                                };
                                for kk in 0..k {
                                    want += round(a[r * k + kk]) * round(b[c * k + kk]);
                                }
                                let got = f64::from(fast[r * ld + c]);
                                assert!(
                                    (got - want).abs() <= 1e-6 * (1.0 + k as f64),
                                    "m={m} n={n} k={k} mode={mode} ({r},{c}): {got} vs {want}"
                                );
                            }
                            // untouched past n
                            for c in n..ld {
                                assert_eq!(fast[r * ld + c], init[r * ld + c]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to even (1.0)
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: ties to even (upwards)
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        assert!(f32::from_bits(u32::from(bf16_bits(f32::NAN)) << 16).is_nan());
        assert_eq!(bf16_bits(f32::INFINITY), 0x7F80);
    }

    /// A row's result is the same bits whatever the number of rows around it (tiling) and
    /// whether the product is split between threads.
    #[test]
    fn a_row_does_not_depend_on_the_batch() {
        if !Panels::available() {
            return;
        }
        let (k, n) = (300, 1000);
        let b = fill(k * n, 7);
        let panels = Panels::pack(Mat::rows(&b, k, n, n)).unwrap();
        let a = fill(250 * k, 8);
        let mut all = vec![0f32; 250 * n];
        matmul_panels(
            &mut all,
            n,
            Mat::rows(&a, 250, k, k),
            &panels,
            Accumulate::Overwrite,
        );
        for &(start, rows) in &[(0usize, 1usize), (3, 5), (100, 64), (249, 1)] {
            let mut some = vec![0f32; rows * n];
            let sub = Mat::rows(&a[start * k..], rows, k, k);
            matmul_panels(&mut some, n, sub, &panels, Accumulate::Overwrite);
            assert_eq!(some[..], all[start * n..(start + rows) * n]);
        }
    }
}
