//! Batching must not change results: one text at a time, any order or batch
//! size, and duplicates give the same unit-length vectors.

use lakehouse_common::TextEmbedder;

use crate::embedder;

/// Texts of very different lengths, so batches pad a lot.
fn texts() -> Vec<String> {
    let mut t: Vec<String> = (0..70)
        .map(|i| match i % 5 {
            0 => String::new(),
            1 => format!("query {i}"),
            2 => format!("Sentence number {i} talks about rivers, bridges and towns."),
            3 => "word ".repeat(20 + i * 5),
            _ => format!("ünïcödé {i} 東京 🚀 {}", "x".repeat(i)),
        })
        .collect();
    t.push("long ".repeat(400));
    t
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn one_by_one_equals_batched_in_any_order() {
    let Some(e) = embedder("one_by_one_equals_batched_in_any_order") else {
        return;
    };
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = e.embed(&refs).unwrap();
    assert_eq!(batched.len(), refs.len() * 384);
    for (i, t) in refs.iter().enumerate() {
        let alone = e.embed(&[t]).unwrap();
        let d = max_abs_diff(&alone, &batched[i * 384..][..384]);
        assert!(d < 1e-5, "text {i} differs by {d} alone vs batched");
    }
    let reversed: Vec<&str> = refs.iter().rev().copied().collect();
    let rev = e.embed(&reversed).unwrap();
    for i in 0..refs.len() {
        let j = refs.len() - 1 - i;
        let d = max_abs_diff(&rev[j * 384..][..384], &batched[i * 384..][..384]);
        assert!(d < 1e-5, "text {i} differs by {d} in reverse order");
    }
}

#[test]
fn vectors_are_unit_length_and_duplicates_equal() {
    let Some(e) = embedder("vectors_are_unit_length_and_duplicates_equal") else {
        return;
    };
    assert_eq!(e.dim(), 384);
    assert_eq!(e.model(), "all-MiniLM-L6-v2");
    let texts = ["same text", "", "same text", "   ", "other"];
    let v = e.embed(&texts).unwrap();
    for (i, x) in v.chunks_exact(384).enumerate() {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "text {i} has norm {norm}");
        assert!(x.iter().all(|a| a.is_finite()));
    }
    assert!(max_abs_diff(&v[..384], &v[768..1152]) < 1e-6);
    // "" and whitespace are both [CLS] [SEP].
    assert!(max_abs_diff(&v[384..768], &v[1152..1536]) < 1e-6);
    assert!(e.embed(&[]).unwrap().is_empty());
}
