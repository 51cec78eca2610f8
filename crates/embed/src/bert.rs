//! The BERT encoder, as plain buffers and loops over [`crate::kernels`]: the
//! weights (read through candle's safetensors loader, then laid out for the
//! products below) and the forward pass over a batch of token sequences.
//!
//! The batch is *packed*, not padded: the sequences' tokens lie one after the
//! other (`tokens × hidden`), the dense layers run over all of them at once,
//! and attention runs per sequence and head over that sequence's tokens only.
//! With no padding there is no attention mask: for the real tokens this is
//! exactly what a padded, masked batch computes (masked keys weigh e^-∞ = 0),
//! and padded positions, which pooling ignores, are never computed.
//!
//! Per layer: one fused Q/K/V product (`hidden × 3·hidden`, bias added after),
//! scaled `Q·Kᵀ` per head, softmax in place, `P·V` into the context, the output
//! projection accumulated onto the residual then bias + LayerNorm in one pass;
//! the intermediate product then bias + GELU in one pass; the output product
//! accumulated onto the residual then bias + LayerNorm. Every buffer is
//! allocated once per batch.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::kernels::{self, Mat};

/// The fields of `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
}

/// The activation between the feed-forward products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    Gelu,
    Relu,
}

impl Config {
    /// The activation, or `None` for one this encoder does not implement.
    pub fn act(&self) -> Option<Act> {
        match self.hidden_act.as_str() {
            "gelu" => Some(Act::Gelu),
            "relu" => Some(Act::Relu),
            _ => None,
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One encoder layer; matrices row-major `in × out` (transposed from
/// torch's `out × in`).
struct Layer {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    attn_norm: Norm,
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    ffn_norm: Norm,
}

/// The encoder's weights and shape.
pub(crate) struct Bert {
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: Act,
    vocab: usize,
    max_positions: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type0: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

type Result<T> = candle_core::Result<T>;

fn vec(vb: &VarBuilder, shape: impl Into<candle_core::Shape>, name: &str) -> Result<Vec<f32>> {
    vb.get(shape, name)?.flatten_all()?.to_vec1()
}

/// A linear layer's weight, transposed to `in × out`, and its bias.
fn linear(vb: &VarBuilder, inp: usize, out: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let w = vb.get((out, inp), "weight")?.t()?.contiguous()?;
    Ok((w.flatten_all()?.to_vec1()?, vec(vb, out, "bias")?))
}

fn norm(vb: &VarBuilder, size: usize) -> Result<Norm> {
    let (g, b) = if vb.contains_tensor("gamma") {
        ("gamma", "beta")
    } else {
        ("weight", "bias")
    };
    Ok(Norm {
        gamma: vec(vb, size, g)?,
        beta: vec(vb, size, b)?,
    })
}

fn layer(vb: &VarBuilder, c: &Config) -> Result<Layer> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let attn = vb.pp("attention");
    let mut qkv = Vec::new();
    for name in ["query", "key", "value"] {
        qkv.push(attn.pp("self").pp(name).get((h, h), "weight")?);
    }
    let qkv_w = candle_core::Tensor::cat(&qkv, 0)?.t()?.contiguous()?;
    let mut qkv_b = Vec::with_capacity(3 * h);
    for name in ["query", "key", "value"] {
        qkv_b.extend(vec(&attn.pp("self").pp(name), h, "bias")?);
    }
    let (out_w, out_b) = linear(&attn.pp("output").pp("dense"), h, h)?;
    let (up_w, up_b) = linear(&vb.pp("intermediate").pp("dense"), h, i)?;
    let (down_w, down_b) = linear(&vb.pp("output").pp("dense"), i, h)?;
    Ok(Layer {
        qkv_w: qkv_w.flatten_all()?.to_vec1()?,
        qkv_b,
        out_w,
        out_b,
        attn_norm: norm(&attn.pp("output").pp("LayerNorm"), h)?,
        up_w,
        up_b,
        down_w,
        down_b,
        ffn_norm: norm(&vb.pp("output").pp("LayerNorm"), h)?,
    })
}

impl Bert {
    /// Reads the weights of the encoder `c` describes from a safetensors
    /// image (names with or without the `bert.` / model-type prefix).
    pub fn load(safetensors: Vec<u8>, c: &Config, act: Act) -> Result<Self> {
        let vb = VarBuilder::from_buffered_safetensors(safetensors, DType::F32, &Device::Cpu)?;
        let probe = "embeddings.word_embeddings.weight";
        let prefixes = ["bert", c.model_type.as_deref().unwrap_or("bert")];
        let vb = match prefixes
            .iter()
            .find(|p| vb.contains_tensor(&format!("{p}.{probe}")))
        {
            Some(p) if !vb.contains_tensor(probe) => vb.pp(*p),
            _ => vb,
        };
        let h = c.hidden_size;
        let emb = vb.pp("embeddings");
        let types = vec(&emb, (c.type_vocab_size, h), "token_type_embeddings.weight")?;
        let layers = (0..c.num_hidden_layers)
            .map(|l| layer(&vb.pp(format!("encoder.layer.{l}")), c))
            .collect::<Result<_>>()?;
        Ok(Self {
            hidden: h,
            heads: c.num_attention_heads,
            inter: c.intermediate_size,
            eps: c.layer_norm_eps as f32,
            act,
            vocab: c.vocab_size,
            max_positions: c.max_position_embeddings,
            word: vec(&emb, (c.vocab_size, h), "word_embeddings.weight")?,
            position: vec(
                &emb,
                (c.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type0: types[..h].to_vec(),
            emb_norm: norm(&emb.pp("LayerNorm"), h)?,
            layers,
        })
    }

    /// The last hidden states of `seqs` (token ids, each at most
    /// `max_position_embeddings` long), packed: `Σ len × hidden`.
    pub fn forward(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let h = self.hidden;
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut x = self.embed(seqs, tokens);
        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut ctx = vec![0f32; tokens * h];
        let mut up = vec![0f32; tokens * self.inter];
        let mut scores = vec![0f32; longest * longest];
        for l in &self.layers {
            let dims = (tokens, 3 * h, h);
            kernels::matmul(
                dims,
                &mut qkv,
                3 * h,
                Mat::rows(&x, h),
                Mat::rows(&l.qkv_w, 3 * h),
                1.0,
                false,
            );
            kernels::add_bias(&mut qkv, &l.qkv_b);
            self.attention(seqs, &qkv, &mut ctx, &mut scores);
            let dims = (tokens, h, h);
            kernels::matmul(
                dims,
                &mut x,
                h,
                Mat::rows(&ctx, h),
                Mat::rows(&l.out_w, h),
                1.0,
                true,
            );
            let n = &l.attn_norm;
            kernels::bias_layer_norm(&mut x, &l.out_b, &n.gamma, &n.beta, self.eps);
            let dims = (tokens, self.inter, h);
            kernels::matmul(
                dims,
                &mut up,
                self.inter,
                Mat::rows(&x, h),
                Mat::rows(&l.up_w, self.inter),
                1.0,
                false,
            );
            match self.act {
                Act::Gelu => kernels::bias_gelu(&mut up, &l.up_b),
                Act::Relu => kernels::bias_relu(&mut up, &l.up_b),
            }
            let dims = (tokens, h, self.inter);
            kernels::matmul(
                dims,
                &mut x,
                h,
                Mat::rows(&up, self.inter),
                Mat::rows(&l.down_w, h),
                1.0,
                true,
            );
            let n = &l.ffn_norm;
            kernels::bias_layer_norm(&mut x, &l.down_b, &n.gamma, &n.beta, self.eps);
        }
        x
    }

    /// Word + position + token-type-0 embeddings, then LayerNorm.
    fn embed(&self, seqs: &[&[u32]], tokens: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut x = vec![0f32; tokens * h];
        let mut rows = x.chunks_exact_mut(h);
        for seq in seqs {
            for (pos, &id) in seq.iter().enumerate() {
                let row = rows.next().expect("one row per token");
                // Out-of-range ids (a tokenizer bigger than the model) read row 0.
                let id = if (id as usize) < self.vocab {
                    id as usize
                } else {
                    0
                };
                let pos = pos.min(self.max_positions - 1);
                let word = &self.word[id * h..][..h];
                let position = &self.position[pos * h..][..h];
                for (((v, w), p), t) in row
                    .iter_mut()
                    .zip(word)
                    .zip(position)
                    .zip(&self.token_type0)
                {
                    *v = w + p + t;
                }
            }
        }
        let zeros = vec![0f32; h];
        let n = &self.emb_norm;
        kernels::bias_layer_norm(&mut x, &zeros, &n.gamma, &n.beta, self.eps);
        x
    }

    /// Self-attention of each sequence over its own tokens, all heads, from
    /// the packed Q/K/V rows into `ctx` (`tokens × hidden`).
    fn attention(&self, seqs: &[&[u32]], qkv: &[f32], ctx: &mut [f32], scores: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut start = 0;
        for seq in seqs {
            let len = seq.len();
            if len == 0 {
                continue;
            }
            let rows = &qkv[start * 3 * h..(start + len) * 3 * h];
            let out = &mut ctx[start * h..(start + len) * h];
            let p = &mut scores[..len * len];
            for head in 0..self.heads {
                let q = Mat::rows(&rows[head * d..], 3 * h);
                let k = Mat::transposed(&rows[h + head * d..], 3 * h);
                let v = Mat::rows(&rows[2 * h + head * d..], 3 * h);
                kernels::matmul((len, len, d), p, len, q, k, scale, false);
                kernels::softmax_rows(p, len);
                kernels::matmul(
                    (len, d, len),
                    &mut out[head * d..],
                    h,
                    Mat::rows(p, len),
                    v,
                    1.0,
                    false,
                );
            }
            start += len;
        }
    }
}
