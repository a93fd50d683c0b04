//! A dense row-major f32 matrix: the one container every step passes around.

/// A dense row-major f32 matrix: embeddings, similarity blocks and
/// gradients all travel as one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns (the length of each row).
    pub cols: usize,
    /// The `rows x cols` values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Wraps row-major `data` as a `rows x cols` matrix.
    ///
    /// # Panics
    ///
    /// If `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Matrix { rows, cols, data }
    }
    /// A `rows x cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    /// Row `i` as a slice of `cols` values.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// Row `i` as a mutable slice of `cols` values.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }
    /// A new matrix made of the given rows, in that order.
    pub fn select_rows(&self, rows: impl ExactSizeIterator<Item = usize>) -> Matrix {
        let mut data = Vec::with_capacity(rows.len() * self.cols);
        let mut n = 0;
        for r in rows {
            data.extend_from_slice(self.row(r));
            n += 1;
        }
        Matrix {
            rows: n,
            cols: self.cols,
            data,
        }
    }
    /// Rows `start..end` as a new matrix.
    pub fn slice_rows(&self, start: usize, end: usize) -> Matrix {
        Matrix {
            rows: end - start,
            cols: self.cols,
            data: self.data[start * self.cols..end * self.cols].to_vec(),
        }
    }
}

/// f32 dot product, accumulated in f32 in index order (the order every twin
/// of this computation follows, so CPU and GPU round alike where it matters).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether every value is finite. A `fold` rather than `all`: with no early
/// exit it vectorises, many times faster on the clean data that is the rule.
pub fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(true, |ok, x| ok & x.is_finite())
}

/// The sum of interleaved lane accumulators, folded pairwise in a fixed
/// order (halves, then quarters, ...): the last step of every lane-wise sum
/// here, which must round the same way every time. `N` a power of two.
#[inline(always)]
pub fn fold_lanes<T: Copy + std::ops::Add<Output = T>, const N: usize>(mut acc: [T; N]) -> T {
    let mut w = N;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] = acc[l] + acc[l + w];
        }
    }
    acc[0]
}
