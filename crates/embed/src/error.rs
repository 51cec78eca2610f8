//! The crate's one error enum. It reaches callers as
//! [`EmbedError::Model`](lakehouse_common::EmbedError::Model) (boxed, so
//! `source()` chains down to it); bad input is `EmbedError::Invalid` and
//! never gets here.

use std::path::PathBuf;

use lakehouse_common::EmbedError;

/// Why the model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured model directory is not a directory.
    #[error("the model directory {} does not exist (or is not a directory)", .0.display())]
    NoDir(PathBuf),
    /// A model file is missing or unreadable.
    #[error("cannot read the model file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON model file does not parse (or lacks a field).
    #[error("the model file {} is not valid: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `tokenizer.json` is not a tokenizer this crate can load.
    #[error("the model file {} is not a valid tokenizer: {source}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    /// `model.safetensors` does not hold the weights `config.json` describes.
    #[error("the model file {} does not hold the weights config.json describes: {source}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// The sentence-transformers pipeline asks for something this crate does
    /// not implement (another pooling, an extra module, ...).
    #[error("the model file {} asks for {what}, which is not supported", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// Tokenising the input failed.
    #[error("tokenising the texts failed: {0}")]
    Tokenize(#[source] tokenizers::Error),
}

impl From<Error> for EmbedError {
    fn from(e: Error) -> Self {
        EmbedError::Model(Box::new(e))
    }
}
