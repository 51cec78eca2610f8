//! The pure parts of embedding: input limits, grouping texts into batches of
//! similar length (so little compute goes to padding), and mean pooling with
//! L2 normalisation, exactly as sentence-transformers' `Pooling` (mean
//! tokens) and `Normalize` modules compute them.

use lakehouse_common::EmbedError;

/// Most texts one `embed` call takes. Large enough for a whole DataFusion
/// record batch (8 192 rows by default) in one call; callers with more chunk.
pub const MAX_TEXTS: usize = 16_384;

/// Largest text, in UTF-8 bytes, one `embed` call takes. The model reads at
/// most its first 256 tokens (~1 000–1 500 bytes of prose), but the whole text
/// is tokenised first: the cap bounds that work. Callers embedding longer
/// documents cut them (or split them into passages) first.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Refuses input beyond [`MAX_TEXTS`] and [`MAX_TEXT_BYTES`].
pub(crate) fn check(texts: &[&str]) -> Result<(), EmbedError> {
    if texts.len() > MAX_TEXTS {
        return Err(EmbedError::Invalid(format!(
            "{} texts in one call; at most {MAX_TEXTS} can be embedded at once",
            texts.len()
        )));
    }
    if let Some((i, t)) = texts
        .iter()
        .enumerate()
        .find(|(_, t)| t.len() > MAX_TEXT_BYTES)
    {
        return Err(EmbedError::Invalid(format!(
            "text {i} is {} bytes; at most {MAX_TEXT_BYTES} bytes per text can be embedded \
             (the model reads only the first 256 tokens: cut longer texts first)",
            t.len()
        )));
    }
    Ok(())
}

/// Groups text indices into batches: longest first, so each batch is padded
/// only to its first (longest) text; at most `max_rows` texts and
/// `token_budget` padded tokens (rows × longest) per batch, at least one text.
pub(crate) fn plan(lens: &[usize], max_rows: usize, token_budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let longest = current.first().map_or(lens[i], |&f| lens[f]).max(1);
        let fits = current.len() < max_rows && (current.len() + 1) * longest <= token_budget;
        if !current.is_empty() && !fits {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean of each row's first `lens[r]` token vectors in `hidden` (rows × `seq`
/// × `dim`, row-major), L2-normalised: `lens.len()` vectors of `dim` floats.
pub(crate) fn pool(hidden: &[f32], seq: usize, dim: usize, lens: &[usize]) -> Vec<f32> {
    debug_assert_eq!(hidden.len(), lens.len() * seq * dim);
    let mut out = vec![0f32; lens.len() * dim];
    for (r, (&len, v)) in lens.iter().zip(out.chunks_exact_mut(dim)).enumerate() {
        let row = &hidden[r * seq * dim..][..len.min(seq) * dim];
        for token in row.chunks_exact(dim) {
            v.iter_mut().zip(token).for_each(|(a, b)| *a += b);
        }
        // sentence-transformers clamps the token count at 1e-9.
        let n = (len.min(seq) as f32).max(1e-9);
        v.iter_mut().for_each(|a| *a /= n);
        normalize(v);
    }
    out
}

/// Scales `v` to unit length, as `torch.nn.functional.normalize` (the norm
/// clamped at 1e-12, so a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(check(&[]).is_ok());
        let big = "x".repeat(MAX_TEXT_BYTES);
        assert!(check(&[&big, ""]).is_ok());
        let bigger = "x".repeat(MAX_TEXT_BYTES + 1);
        let err = check(&["a", &bigger]).unwrap_err();
        assert!(
            matches!(&err, EmbedError::Invalid(m) if m.starts_with("text 1 ")),
            "{err}"
        );
        let many = vec!["a"; MAX_TEXTS + 1];
        assert!(matches!(check(&many), Err(EmbedError::Invalid(_))));
        assert!(check(&many[1..]).is_ok());
    }

    #[test]
    fn plan_sorts_longest_first_and_respects_both_caps() {
        let lens = [3, 10, 1, 10, 5, 2];
        let batches = plan(&lens, 2, 1000);
        assert_eq!(batches, vec![vec![1, 3], vec![4, 0], vec![5, 2]]);
        // 10-token texts: only two fit a 25-token budget; then 5 × 4 rows.
        let batches = plan(&lens, 8, 25);
        assert_eq!(batches, vec![vec![1, 3], vec![4, 0, 5, 2]]);
        // A text longer than the budget still gets a batch of its own.
        assert_eq!(plan(&[50, 40], 8, 10), vec![vec![0], vec![1]]);
        assert!(plan(&[], 8, 10).is_empty());
        // Every index exactly once.
        let lens: Vec<usize> = (0..1000).map(|i| (i * 7919) % 257).collect();
        let mut seen: Vec<usize> = plan(&lens, 32, 4096).concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn pool_averages_only_the_real_tokens_then_normalises() {
        // 2 rows × 3 positions × 2 dims; row 0 has 2 tokens, row 1 has 1.
        let hidden = [
            1.0, 0.0, 3.0, 4.0, 99.0, 99.0, 0.0, 2.0, 50.0, 50.0, 50.0, 50.0,
        ];
        let out = pool(&hidden, 3, 2, &[2, 1]);
        // Row 0: mean (2, 2) → (0.7071, 0.7071); row 1: (0, 2) → (0, 1).
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let want = [s, s, 0.0, 1.0];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn normalize_keeps_zero_at_zero() {
        let mut v = [0.0f32; 4];
        normalize(&mut v);
        assert_eq!(v, [0.0; 4]);
        let mut v = [3.0f32, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }
}
