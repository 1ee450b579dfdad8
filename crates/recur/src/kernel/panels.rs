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
//! are active.
//!
//! Two threads split large products: the rows when there are many (the input projection of
//! a whole sequence, on rayon's pool), the column blocks when there are few (a time step of
//! a small batch, on the current [`super::pair::Pair`] if one is installed, else rayon's).
//!
//! CPUs without AVX-512F get no panels ([`Panels::pack`] returns `None`) and the callers keep
//! the `gemm` crate.

use super::{Accumulate, Mat};

/// Lanes of one vector: the width of one panel.
pub const LANES: usize = 16;
/// Panels per column block, the microkernel's width in vectors.
const PANELS: usize = 4;
/// Columns per block.
pub const BLOCK: usize = LANES * PANELS;
/// Rows of the microkernel's tile.
const MR: usize = 6;
/// Rows per chunk when a product has many rows: a chunk of `a` stays in L2 while every
/// column block passes over it.
const MC: usize = 96;
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

    fn blocks(&self) -> usize {
        self.n.div_ceil(BLOCK)
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

/// `dst[m, n] (=|+=) a[m, k] · B`, `dst` row-major with rows `ld_dst` apart; `a` must be
/// row-major (`col_stride == 1`).
///
/// # Panics
/// When the shapes disagree, `a` is not row-major, or a view lies outside its slice.
pub fn matmul_panels(dst: &mut [f32], ld_dst: usize, a: Mat<'_, f32>, b: &Panels, acc: Accumulate) {
    product(dst, ld_dst, a, b, acc, None);
}

/// `dst[m, n] = bias + a[m, k] · B`, every row starting from `bias` (`[n]`): the input
/// projection with its biases, written in one pass (the destination is typically a fresh
/// slab, whose pages both threads then touch first at once).
///
/// # Panics
/// As [`matmul_panels`]; also when `bias` is shorter than n.
pub fn matmul_panels_bias(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: &Panels,
    bias: &[f32],
) {
    assert!(bias.len() >= b.n, "bias too short");
    product(dst, ld_dst, a, b, Accumulate::Overwrite, Some(bias));
}

fn product(
    dst: &mut [f32],
    ld_dst: usize,
    a: Mat<'_, f32>,
    b: &Panels,
    acc: Accumulate,
    bias: Option<&[f32]>,
) {
    let (m, k, n) = (a.rows, a.cols, b.n);
    assert_eq!(k, b.k, "inner dimensions differ");
    assert!(a.col_stride == 1 || m == 0 || k == 0, "a must be row-major");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ld_dst + n <= dst.len(), "dst too small");
    assert!(
        k == 0 || (m - 1) * a.row_stride + k <= a.data.len(),
        "a out of bounds"
    );
    if k == 0 {
        if acc == Accumulate::Overwrite {
            for r in 0..m {
                let row = &mut dst[r * ld_dst..r * ld_dst + n];
                match bias {
                    Some(bias) => row.copy_from_slice(&bias[..n]),
                    None => row.fill(0.0),
                }
            }
        }
        return;
    }
    let part = Part {
        dst: dst.as_mut_ptr(),
        ld_dst,
        a: a.data.as_ptr(),
        lda: a.row_stride,
        b,
        add: acc == Accumulate::Add,
        bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
    };
    let threads = rayon::current_num_threads();
    let fmas = m.saturating_mul(n).saturating_mul(k);
    let blocks = b.blocks();
    let paired = !super::split::in_part()
        && fmas >= PAIR_MIN_FMAS
        && blocks >= 2
        && super::pair::with_current(|pair| match pair {
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
        // SAFETY: the asserts above put every row and column the part touches inside
        // `dst` and `a`; `dst` is borrowed mutably for the whole call.
        unsafe { part.run(0..m, 0..blocks) };
    } else if m >= 2 * MC {
        let half = m.div_ceil(2 * MR) * MR;
        let part = &part;
        // SAFETY: as above; the halves write disjoint rows of `dst`.
        rayon::join(
            || unsafe { part.run(0..half, 0..blocks) },
            || unsafe { part.run(half..m, 0..blocks) },
        );
    } else {
        let half = blocks.div_ceil(2);
        let part = &part;
        // SAFETY: as above; the halves write disjoint columns of `dst`.
        rayon::join(
            || unsafe { part.run(0..m, 0..half) },
            || unsafe { part.run(0..m, half..blocks) },
        );
    }
}

/// One call's operands, shared by the threads that split it.
struct Part<'a> {
    dst: *mut f32,
    ld_dst: usize,
    a: *const f32,
    lda: usize,
    b: &'a Panels,
    add: bool,
    /// `[n]` start of every row (`Overwrite` only), or null
    bias: *const f32,
}

// SAFETY: the threads sharing a `Part` write disjoint rows or columns of `dst` (see
// `matmul_panels`) and only read `a` and `b`.
unsafe impl Sync for Part<'_> {}

impl Part<'_> {
    /// Rows `rows` × column blocks `blocks` of the product.
    ///
    /// # Safety
    /// Every row in `rows` and column in `blocks` must lie inside `dst` and `a`, and no
    /// other thread may touch the same part of `dst`; the CPU must have AVX-512F.
    unsafe fn run(&self, rows: std::ops::Range<usize>, blocks: std::ops::Range<usize>) {
        let (k, n) = (self.b.k, self.b.n);
        let mut chunk = rows.start;
        while chunk < rows.end {
            let chunk_end = (chunk + MC).min(rows.end);
            for block in blocks.clone() {
                let start = block * BLOCK;
                let cols = (n - start).min(BLOCK);
                let panels = cols.div_ceil(LANES);
                // The last panel of the matrix may be partial: its lanes past n are masked.
                let tail = cols - (panels - 1) * LANES;
                let mask: u16 = if tail == LANES {
                    u16::MAX
                } else {
                    (1u16 << tail) - 1
                };
                // Blocks before this one are full: BLOCK columns each.
                let b = match &self.b.data {
                    Data::F32(d) => B::F32(unsafe { d.as_ptr().add(block * BLOCK * k) }),
                    Data::Bf16(d) => {
                        B::Bf16(unsafe { d.as_ptr().add(block * BLOCK * k.div_ceil(2)) })
                    }
                };
                let mut r = chunk;
                while r < chunk_end {
                    let mr = (chunk_end - r).min(MR);
                    unsafe {
                        let a = self.a.add(r * self.lda);
                        let out = Out {
                            c: self.dst.add(r * self.ld_dst + start),
                            ldc: self.ld_dst,
                            mask,
                            add: self.add,
                            bias: if self.bias.is_null() {
                                self.bias
                            } else {
                                self.bias.add(start)
                            },
                        };
                        tile(mr, panels, k, a, self.lda, b, out);
                    }
                    r += mr;
                }
            }
            chunk = chunk_end;
        }
    }
}

/// A block of packed values.
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
    /// add to what `c` holds (else overwrite)
    add: bool,
    /// the tile's columns of the bias every row starts from, or null
    bias: *const f32,
}

/// Dispatches a `mr × panels` tile to its monomorphised kernel.
///
/// # Safety
/// As `x86::kernel`.
#[inline]
unsafe fn tile(mr: usize, panels: usize, k: usize, a: *const f32, lda: usize, b: B, out: Out) {
    macro_rules! go {
        ($m:literal, $p:literal) => {
            match b {
                B::F32(b) => unsafe { x86::kernel::<$m, $p>(k, a, lda, b, out) },
                B::Bf16(b) => unsafe { x86::kernel_bf16::<$m, $p>(k, a, lda, b, out) },
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

    /// A row of accumulators as every row of a tile starts: the bias's columns, or zero.
    ///
    /// # Safety
    /// As [`kernel`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn start<const P: usize>(out: super::Out) -> [__m512; P] {
        let mut start = [_mm512_setzero_ps(); P];
        if !out.bias.is_null() {
            for (p, v) in start.iter_mut().enumerate() {
                *v = unsafe { _mm512_maskz_loadu_ps(lanes::<P>(&out, p), out.bias.add(16 * p)) };
            }
        }
        start
    }

    /// Writes (or adds) a finished tile to `out.c`, the last panel's lanes limited to the
    /// mask.
    ///
    /// # Safety
    /// As [`kernel`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store<const MR: usize, const P: usize>(acc: &[[__m512; P]; MR], out: super::Out) {
        for (r, row) in acc.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                let m = lanes::<P>(&out, p);
                unsafe {
                    let dst = out.c.add(r * out.ldc + 16 * p);
                    let value = if out.add {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), v)
                    } else {
                        v
                    };
                    _mm512_mask_storeu_ps(dst, m, value);
                }
            }
        }
    }

    /// `c[r, 16p + l] (=|+=) [bias[16p + l] +] Σ_kk a[r, kk] · b[kk][16p + l]` for r < MR,
    /// p < P, the last panel's lanes limited to `out.mask`. `b` is a block of P panels,
    /// `16·P` floats per `kk`. The sum starts from the bias (or zero) and adds the terms in
    /// the order kk = 0, 1, …, one fused multiply-add each.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `a` must hold MR rows of k values `lda` apart, `b`
    /// `k · 16P` values, `out.c` MR rows `out.ldc` apart of `16(P−1) + popcount(mask)`
    /// values, and `out.bias`, unless null, that many.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel<const MR: usize, const P: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        out: super::Out,
    ) {
        let mut acc = [unsafe { start::<P>(out) }; MR];
        let width = 16 * P;
        for kk in 0..k {
            let mut bv = [_mm512_setzero_ps(); P];
            for (p, v) in bv.iter_mut().enumerate() {
                *v = unsafe { _mm512_loadu_ps(b.add(kk * width + 16 * p)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(unsafe { *a.add(r * lda + kk) });
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
    /// As [`kernel`], with `b` holding `⌈k/2⌉ · 16P` pairs; the CPU must have AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn kernel_bf16<const MR: usize, const P: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const u32,
        out: super::Out,
    ) {
        let mut acc = [unsafe { start::<P>(out) }; MR];
        let width = 16 * P;
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
                    *v = unsafe { _mm512_loadu_si512(b.add((p0 + kp) * width + 16 * p).cast()) };
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
    pub(super) unsafe fn kernel<const MR: usize, const P: usize>(
        _k: usize,
        _a: *const f32,
        _lda: usize,
        _b: *const f32,
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
        _out: super::Out,
    ) {
        unreachable!("no panels exist without AVX-512F")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::reference;

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
