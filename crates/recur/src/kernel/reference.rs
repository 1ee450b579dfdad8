//! Slow, obviously correct twins of the fast kernels, for tests.

use super::scalar::Float;
use super::{Accumulate, Mat};

/// The triple loop that [`super::matmul`] must agree with.
pub fn matmul<T: Float>(
    dst: &mut [T],
    ld_dst: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    acc: Accumulate,
) {
    for r in 0..a.rows {
        for c in 0..b.cols {
            let mut s = T::zero();
            for i in 0..a.cols {
                s += a.data[r * a.row_stride + i * a.col_stride]
                    * b.data[i * b.row_stride + c * b.col_stride];
            }
            let d = &mut dst[r * ld_dst + c];
            *d = match acc {
                Accumulate::Overwrite => s,
                Accumulate::Add => *d + s,
            };
        }
    }
}
