//! The numeric kernels of the forward pass: matrix products (gemm's, single
//! threaded: the caller parallelises across batches), and the element-wise
//! passes (bias + GELU, bias + residual + LayerNorm, softmax) written as plain
//! loops that LLVM auto-vectorises.
//!
//! Those loops are compiled three times: for AVX-512, for AVX2 + FMA and for
//! the baseline target; [`simd`] picks one at run time with
//! `is_x86_feature_detected!` (a cached atomic load). The transcendental
//! functions are branch-free polynomial approximations so that they vectorise:
//! `exp` (Cephes' `expf`, ~1 ulp) and `erf` (Eigen's rational approximation,
//! a few ulp; torch's vectorised `erf` is of the same accuracy), instead of
//! libm's scalar calls.
//!
//! This is the only module of the crate allowed to use `unsafe`: gemm takes
//! raw pointers (every call is bounds-checked first, in [`matmul`]), and the
//! `#[target_feature]` entry points may only be called once the CPU is known
//! to have those features.
#![allow(unsafe_code)]

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with rows `stride` floats apart.
    pub fn rows(data: &'a [f32], stride: usize) -> Self {
        Self {
            data,
            rs: stride,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with rows `stride` floats apart.
    pub fn transposed(data: &'a [f32], stride: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: stride,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(
            last < self.data.len(),
            "{what}: {rows}×{cols} out of bounds"
        );
    }
}

/// `dst = scale · lhs · rhs` (or `dst += …` with `accumulate`), with `lhs`
/// m × k, `rhs` k × n and `dst` m × n row-major with rows `dst_rs` apart.
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    scale: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0 && dst_rs >= n, "matmul: bad shape");
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "matmul: dst out of bounds"
    );
    lhs.check(m, k, "matmul lhs");
    rhs.check(k, n, "matmul rhs");
    let s = |x: usize| x as isize;
    // SAFETY: the asserts above keep every element gemm reads or writes
    // inside the slices; `dst` is borrowed mutably, so it aliases neither
    // input; the rows of `dst` do not overlap (dst_rs >= n).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(dst_rs),
            accumulate,
            lhs.data.as_ptr(),
            s(lhs.cs),
            s(lhs.rs),
            rhs.data.as_ptr(),
            s(rhs.cs),
            s(rhs.rs),
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs `f` compiled for the best vector extensions the CPU has; `f`'s
/// body (and the `#[inline(always)]` helpers it calls) is inlined into a
/// `#[target_feature]` function, so its loops vectorise for that target.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX-512F and FMA (just checked).
            return unsafe { with_avx512(f) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (just checked).
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Lanes of the partial sums below: enough independent accumulators for
/// LLVM to vectorise a float reduction without reassociating it itself.
const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(tail, |a, &b| a.max(b))
}

/// `e^x` for finite `x`; results below ~1e-38 are flushed to 0.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n · LN2_HI` is exact (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let tiny = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if tiny { 0.0 } else { y * scale }
}

/// `erf(x)`: Eigen's rational approximation (odd polynomial over even one
/// on [-4, 4], ±1 beyond), accurate to a few ulp.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

/// Adds `bias` to every row of `x` (rows of `bias.len()` floats).
pub(crate) fn add_bias(x: &mut [f32], bias: &[f32]) {
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(bias.len()) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        },
    )
}

/// `x = gelu(x + bias)` on every row, the exact (erf) GELU:
/// `0.5 · v · (1 + erf(v / √2))`.
pub(crate) fn bias_gelu(x: &mut [f32], bias: &[f32]) {
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(bias.len()) {
                for (v, b) in row.iter_mut().zip(bias) {
                    let y = *v + b;
                    *v = 0.5 * y * (1.0 + erf(y * std::f32::consts::FRAC_1_SQRT_2));
                }
            }
        },
    )
}

/// `x = relu(x + bias)` on every row.
pub(crate) fn bias_relu(x: &mut [f32], bias: &[f32]) {
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(bias.len()) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            }
        },
    )
}

/// `x = LayerNorm(x + bias)` on every row (biased variance, as torch), with
/// weight `gamma`, bias `beta` and `eps`.
pub(crate) fn bias_layer_norm(x: &mut [f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let dim = gamma.len();
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(dim) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                let mean = sum(row) / dim as f32;
                row.iter_mut().for_each(|v| *v -= mean);
                let mut sq = [0f32; LANES];
                for c in row.chunks_exact(LANES) {
                    sq.iter_mut().zip(c).for_each(|(a, v)| *a += v * v);
                }
                let tail: f32 = row
                    .chunks_exact(LANES)
                    .remainder()
                    .iter()
                    .map(|v| v * v)
                    .sum();
                let var = (sq.iter().sum::<f32>() + tail) / dim as f32;
                let inv = 1.0 / (var + eps).sqrt();
                for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                    *v = *v * inv * g + b;
                }
            }
        },
    )
}

/// Softmax of every row of `x` (rows of `cols` floats), in place.
pub(crate) fn softmax_rows(x: &mut [f32], cols: usize) {
    simd(
        #[inline(always)]
        || {
            for row in x.chunks_exact_mut(cols) {
                let m = max(row);
                row.iter_mut().for_each(|v| *v = exp(*v - m));
                let inv = 1.0 / sum(row);
                row.iter_mut().for_each(|v| *v *= inv);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst = (0f64, 0f64);
        for i in -20_000..=20_000 {
            let x = i as f32 * 4e-3; // [-80, 80]
            let e = f64::from(exp(x));
            let want = f64::from(x).exp();
            worst.0 = worst.0.max(((e - want) / want).abs());
            let x = i as f32 * 3e-4; // [-6, 6]
            let want = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst.1 = worst.1.max((f64::from(erf(x)) - want).abs());
        }
        assert!(worst.0 < 5e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 5e-7, "erf absolute error {}", worst.1);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn matmul_matches_the_naive_product() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 1.5).collect();
        // b holds the transpose (n × k, row-major) of the k × n rhs.
        let mut c = vec![1.0f32; m * n];
        matmul(
            (m, n, k),
            &mut c,
            n,
            Mat::rows(&a, k),
            Mat::transposed(&b, k),
            2.0,
            true,
        );
        for i in 0..m {
            for j in 0..n {
                let dot: f32 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
                assert!((c[i * n + j] - (1.0 + 2.0 * dot)).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn softmax_and_layer_norm() {
        let mut x = vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
        softmax_rows(&mut x, 3);
        let z = 1.0 + 1f32.exp() + 2f32.exp();
        let want = [
            1.0 / z,
            1f32.exp() / z,
            2f32.exp() / z,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{x:?}");
        }
        let mut x: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let ones = vec![1.0; 20];
        bias_layer_norm(&mut x, &ones, &ones, &[0.5; 20], 1e-12);
        let sd = (((0..20).map(|i| (i as f32 - 9.5).powi(2)).sum::<f32>()) / 20.0).sqrt();
        for (i, v) in x.iter().enumerate() {
            let want = ((i % 20) as f32 - 9.5) / sd + 0.5;
            assert!((v - want).abs() < 1e-5, "{i}: {v} vs {want}");
        }
    }
}
