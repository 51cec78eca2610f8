//! Distance kernels: squared L2 and dot product over `f32` slices.
//!
//! Three implementations of each kernel: AVX-512F, AVX2+FMA and a portable one
//! written so LLVM auto-vectorises it for the baseline target. [`Kernels::detect`]
//! picks one set once (at index creation) with `is_x86_feature_detected!`; the hot
//! loops then call plain function pointers and never re-check CPU features.
//!
//! This is the only module of the crate allowed to use `unsafe`: the SIMD intrinsics
//! that load from raw pointers and `_mm_prefetch` need it. Every `unsafe` block says
//! why it is sound; every SIMD entry point is reachable only through a dispatcher that
//! verified the CPU features first.
#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};

/// How distance between two vectors is measured. Smaller is closer for all three.
///
/// - `L2`: **squared** Euclidean distance `Σ (aᵢ − bᵢ)²` (hnswlib and faiss report
///   the squared value too; take the square root yourself if you need the metric).
/// - `Cosine`: `1 − cos(a, b)`, in `[0, 2]`. Vectors (stored and queried) are
///   L2-normalised on the way in, so this is `1 − a·b` at search time.
/// - `Dot`: `1 − a·b` on the raw vectors (hnswlib's "ip" space). It can be negative
///   when vectors are not normalised; ordering is by largest inner product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Cosine,
    L2,
    Dot,
}

impl Metric {
    /// Stable one-byte code used by the binary snapshot format.
    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Cosine => 0,
            Metric::L2 => 1,
            Metric::Dot => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Metric> {
        match c {
            0 => Some(Metric::Cosine),
            1 => Some(Metric::L2),
            2 => Some(Metric::Dot),
            _ => None,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        })
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "l2" => Ok(Metric::L2),
            "dot" => Ok(Metric::Dot),
            other => Err(format!(
                "unknown metric {other:?} (expected cosine, l2 or dot)"
            )),
        }
    }
}

/// A distance kernel: both slices have the same length (the index dimension).
pub type DistFn = fn(&[f32], &[f32]) -> f32;

/// Which instruction set the selected kernels use (reported for diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

/// One set of kernels chosen for this CPU.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    pub isa: Isa,
    pub l2: DistFn,
    pub dot: DistFn,
}

impl Kernels {
    /// Best kernels this CPU supports, checked once at runtime.
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Kernels {
                    isa: Isa::Avx512,
                    l2: x86::l2_avx512,
                    dot: x86::dot_avx512,
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernels {
                    isa: Isa::Avx2Fma,
                    l2: x86::l2_avx2,
                    dot: x86::dot_avx2,
                };
            }
        }
        Kernels::portable()
    }

    /// The portable kernels (any CPU).
    pub fn portable() -> Kernels {
        Kernels {
            isa: Isa::Portable,
            l2: l2_portable,
            dot: dot_portable,
        }
    }

    /// Every kernel set this CPU can run (for tests comparing them).
    pub fn all_supported() -> Vec<Kernels> {
        let mut v = vec![Kernels::portable()];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                v.push(Kernels {
                    isa: Isa::Avx2Fma,
                    l2: x86::l2_avx2,
                    dot: x86::dot_avx2,
                });
            }
            if std::is_x86_feature_detected!("avx512f") {
                v.push(Kernels {
                    isa: Isa::Avx512,
                    l2: x86::l2_avx512,
                    dot: x86::dot_avx512,
                });
            }
        }
        v
    }
}

/// Scalar reference, the definition the SIMD kernels are tested against.
pub fn l2_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Scalar reference dot product.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Portable squared L2: eight independent accumulators so LLVM can keep them in
/// one vector register and avoid a serial dependency on a single sum.
pub fn l2_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

/// Portable dot product, same structure as [`l2_portable`].
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Hint the CPU to pull all of `s` (up to 1 KiB) into L1 ahead of use.
/// Purely a performance hint: it never faults and has no observable effect.
#[inline(always)]
pub fn prefetch<T>(s: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = s.as_ptr() as *const i8;
        let bytes = std::mem::size_of_val(s).min(1024);
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch is a hint that never dereferences architecturally (no
            // fault even on a bad address) and SSE is part of the x86_64 baseline;
            // `off < size_of_val(s)` keeps the address inside the live slice.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    // The safe wrappers below are only ever stored in `Kernels` by `detect` /
    // `all_supported` after the matching `is_x86_feature_detected!` check, so the
    // `target_feature` functions they call only run on CPUs that have the features.

    pub fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        debug_assert!(std::is_x86_feature_detected!("avx512f"));
        // SAFETY: reachable only through Kernels chosen after detecting avx512f.
        unsafe { l2_avx512_impl(a, b) }
    }

    pub fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        debug_assert!(std::is_x86_feature_detected!("avx512f"));
        // SAFETY: reachable only through Kernels chosen after detecting avx512f.
        unsafe { dot_avx512_impl(a, b) }
    }

    pub fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        debug_assert!(std::is_x86_feature_detected!("avx2"));
        // SAFETY: reachable only through Kernels chosen after detecting avx2 and fma.
        unsafe { l2_avx2_impl(a, b) }
    }

    pub fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        debug_assert!(std::is_x86_feature_detected!("avx2"));
        // SAFETY: reachable only through Kernels chosen after detecting avx2 and fma.
        unsafe { dot_avx2_impl(a, b) }
    }

    #[target_feature(enable = "avx512f")]
    fn l2_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads below): every access is at offsets < n, inside both slices;
        // the masked tail load touches only the lanes selected by the mask.
        while i + 32 <= n {
            unsafe {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                let d1 = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            }
            i += 32;
        }
        if i + 16 <= n {
            unsafe {
                let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc0 = _mm512_fmadd_ps(d, d, acc0);
            }
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            unsafe {
                let d = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                );
                acc1 = _mm512_fmadd_ps(d, d, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f")]
    fn dot_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads below): offsets < n, inside both slices; masked tail.
        while i + 32 <= n {
            unsafe {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
            }
            i += 32;
        }
        if i + 16 <= n {
            unsafe {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            }
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            unsafe {
                acc1 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, pa.add(i)),
                    _mm512_maskz_loadu_ps(mask, pb.add(i)),
                    acc1,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads below): offsets + 8 <= n, inside both slices.
        while i + 16 <= n {
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            }
            i += 16;
        }
        if i + 8 <= n {
            unsafe {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d, d, acc0);
            }
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            let d = a[i] - b[i];
            s += d * d;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads below): offsets + 8 <= n, inside both slices.
        while i + 16 <= n {
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        if i + 8 <= n {
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            }
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn kernels_match_scalar_reference() {
        let mut seed = 7;
        for k in Kernels::all_supported() {
            for n in 1..=300 {
                let a = rand_vec(&mut seed, n);
                let b = rand_vec(&mut seed, n);
                let (l2r, dotr) = (l2_scalar(&a, &b), dot_scalar(&a, &b));
                let (l2k, dotk) = ((k.l2)(&a, &b), (k.dot)(&a, &b));
                let tol = 1e-4 * (n as f32).max(1.0);
                assert!(
                    (l2r - l2k).abs() <= tol,
                    "{:?} l2 n={n}: {l2r} vs {l2k}",
                    k.isa
                );
                assert!(
                    (dotr - dotk).abs() <= tol,
                    "{:?} dot n={n}: {dotr} vs {dotk}",
                    k.isa
                );
            }
        }
    }

    #[test]
    fn identical_vectors_have_zero_l2() {
        let mut seed = 3;
        for k in Kernels::all_supported() {
            for n in [1, 7, 16, 33, 128, 300] {
                let a = rand_vec(&mut seed, n);
                assert_eq!((k.l2)(&a, &a), 0.0, "{:?} n={n}", k.isa);
            }
        }
    }

    #[test]
    fn metric_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Metric::Cosine).unwrap(),
            "\"cosine\""
        );
        assert_eq!(
            serde_json::from_str::<Metric>("\"l2\"").unwrap(),
            Metric::L2
        );
        assert_eq!("dot".parse::<Metric>().unwrap(), Metric::Dot);
    }
}
