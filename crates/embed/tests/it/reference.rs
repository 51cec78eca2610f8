//! Agreement with the reference implementation: sentence-transformers'
//! embeddings of 100 varied texts (`tests/fixtures/reference.json`, written by
//! `make_reference.py`), to cosine ≥ 0.999 each, with the same token counts.

use lakehouse_common::TextEmbedder;
use serde::Deserialize;

use crate::{cosine, embedder};

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    texts: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_text_matches_sentence_transformers() {
    let Some(e) = embedder("every_text_matches_sentence_transformers") else {
        return;
    };
    let r = reference();
    assert_eq!(r.texts.len(), 100);
    let texts: Vec<&str> = r.texts.iter().map(|c| c.text.as_str()).collect();
    let got = e.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len() * 384);
    let mut worst = (f64::INFINITY, "");
    for (case, v) in r.texts.iter().zip(got.chunks_exact(384)) {
        assert_eq!(case.embedding.len(), 384);
        let c = cosine(v, &case.embedding);
        if c < worst.0 {
            worst = (c, &case.text);
        }
        assert!(c >= 0.999, "cosine {c} for {:?}", case.text);
    }
    eprintln!(
        "minimum cosine to sentence-transformers: {:.9} ({:?})",
        worst.0, worst.1
    );
}

#[test]
fn token_counts_and_truncation_match_sentence_transformers() {
    let Some(e) = embedder("token_counts_and_truncation_match_sentence_transformers") else {
        return;
    };
    let r = reference();
    assert_eq!(e.max_tokens(), r.max_seq_length);
    let texts: Vec<&str> = r.texts.iter().map(|c| c.text.as_str()).collect();
    let counts = e.token_counts(&texts).unwrap();
    for (case, n) in r.texts.iter().zip(counts) {
        assert_eq!(n, case.tokens, "token count of {:?}", case.text);
    }
    // The fixture exercises truncation and the bare [CLS] [SEP] of "".
    assert!(r.texts.iter().any(|c| c.tokens == r.max_seq_length));
    assert!(r.texts.iter().any(|c| c.text.is_empty() && c.tokens == 2));
}

#[test]
fn similar_texts_are_closer_than_unrelated_ones() {
    let Some(e) = embedder("similar_texts_are_closer_than_unrelated_ones") else {
        return;
    };
    let v = e
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market crashed.",
        ])
        .unwrap();
    let (a, b, c) = (&v[..384], &v[384..768], &v[768..]);
    assert!(
        cosine(a, b) > cosine(a, c) + 0.3,
        "{} vs {}",
        cosine(a, b),
        cosine(a, c)
    );
}
