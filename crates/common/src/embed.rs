//! Text embeddings as the services see them: one trait, implemented by the
//! in-process sentence model (`lakehouse-embed`) and consumed by vectord
//! (text columns embedded at index time, `{"text": …}` searches) and queryd
//! (the `embed()` SQL function). Keeping the trait here lets both take an
//! `Arc<dyn TextEmbedder>` without depending on the inference stack.

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No model is configured: the message names the setting to set.
    #[error("{0}")]
    NotConfigured(String),
    /// The input cannot be embedded (too many texts, say): the caller's fault.
    #[error("{0}")]
    Invalid(String),
    /// The model failed.
    #[error("the embedding model failed: {0}")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A sentence-embedding model.
pub trait TextEmbedder: Send + Sync {
    /// The model's name, as configured (for `GET` answers and errors).
    fn model(&self) -> &str;
    /// Dimensions of every vector it returns.
    fn dim(&self) -> usize;
    /// Embeds `texts`, in order: `texts.len() * dim()` floats, one
    /// unit-length vector after another. CPU-heavy and blocking (it uses
    /// every core): call it from a blocking thread, never a runtime worker.
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>, EmbedError>;
}

/// What a service answers when it has no model: names the setting.
pub fn not_configured() -> EmbedError {
    EmbedError::NotConfigured(
        "no embedding model is configured: set [embed].model_dir (or \
         LAKEHOUSE__EMBED__MODEL_DIR) to a directory holding all-MiniLM-L6-v2's \
         config.json, tokenizer.json and model.safetensors"
            .into(),
    )
}
