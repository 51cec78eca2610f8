//! The sentence-transformers pipeline a model directory describes, checked
//! against what this crate implements: a BERT `Transformer`, mean `Pooling`
//! and (optionally) `Normalize`, in that order.
//!
//! Files read, all optional (a plain Hugging Face BERT directory has none):
//! - `modules.json`: the module list. Anything but the three above (a `Dense`
//!   projection, say) is refused, so a model we would run wrongly never loads.
//! - `<pooling path>/config.json`: must ask for mean pooling only, over
//!   `hidden_size` dimensions.
//! - `sentence_bert_config.json`: `max_seq_length` (tokens per text, special
//!   tokens included; longer texts are truncated) and `do_lower_case`, which
//!   must be false (the tokenizer lowercases by itself where the model wants it).
//!
//! Without `sentence_bert_config.json` texts are cut at the model's
//! `max_position_embeddings`, as sentence-transformers does for a plain
//! directory. Vectors are always L2-normalised (the `TextEmbedder` contract);
//! for a pipeline with `Normalize` that is exactly sentence-transformers', and
//! without it cosine similarities are unchanged.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// What the directory's sentence-transformers files ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pipeline {
    /// Tokens per text fed to the model (longer texts are truncated).
    pub max_tokens: usize,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// Reads and checks the pipeline of the model in `dir`, whose transformer has
/// `hidden_size` dimensions and `max_positions` position embeddings.
pub(crate) fn read(
    dir: &Path,
    hidden_size: usize,
    max_positions: usize,
) -> Result<Pipeline, Error> {
    let modules_path = dir.join("modules.json");
    if let Some(modules) = read_optional::<Vec<Module>>(&modules_path)? {
        let pooling = check_modules(&modules_path, &modules)?;
        let pooling_path = dir.join(pooling).join("config.json");
        if let Some(pooling) = read_optional::<PoolingConfig>(&pooling_path)? {
            check_pooling(&pooling_path, &pooling, hidden_size)?;
        }
    }
    let sbert_path = dir.join("sentence_bert_config.json");
    let sbert = read_optional::<SbertConfig>(&sbert_path)?;
    if sbert.as_ref().is_some_and(|c| c.do_lower_case) {
        return Err(unsupported(&sbert_path, "do_lower_case"));
    }
    let max_tokens = sbert
        .and_then(|c| c.max_seq_length)
        .unwrap_or(max_positions)
        .min(max_positions);
    if max_tokens < 2 {
        return Err(unsupported(
            &sbert_path,
            "a max_seq_length below 2 (CLS and SEP)",
        ));
    }
    Ok(Pipeline { max_tokens })
}

/// Checks the module list; returns the pooling module's directory.
fn check_modules<'m>(path: &Path, modules: &'m [Module]) -> Result<&'m str, Error> {
    let kinds: Vec<&str> = modules.iter().map(|m| m.kind.as_str()).collect();
    match kinds.as_slice() {
        [TRANSFORMER, POOLING] | [TRANSFORMER, POOLING, NORMALIZE] => Ok(&modules[1].path),
        _ => Err(unsupported(
            path,
            &format!(
                "the modules {kinds:?} (supported: Transformer, Pooling and optionally Normalize)"
            ),
        )),
    }
}

fn check_pooling(path: &Path, c: &PoolingConfig, hidden_size: usize) -> Result<(), Error> {
    let others = c.pooling_mode_cls_token
        || c.pooling_mode_max_tokens
        || c.pooling_mode_mean_sqrt_len_tokens
        || c.pooling_mode_weightedmean_tokens
        || c.pooling_mode_lasttoken;
    if !c.pooling_mode_mean_tokens || others {
        return Err(unsupported(path, "a pooling other than mean pooling alone"));
    }
    if c.word_embedding_dimension != hidden_size {
        return Err(unsupported(
            path,
            &format!(
                "pooling {} dimensions of a {hidden_size}-dimensional transformer",
                c.word_embedding_dimension
            ),
        ));
    }
    Ok(())
}

fn unsupported(path: &Path, what: &str) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// Reads a JSON file that may be absent.
fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a JSON file that must exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    parse(path, &read_file(path)?)
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    const MODULES: &str = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;
    const MEAN: &str = r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":false,
        "pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false}"#;

    #[test]
    fn the_minilm_layout_reads_its_max_seq_length() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", MODULES);
        write(dir.path(), "1_Pooling/config.json", MEAN);
        write(
            dir.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length":256,"do_lower_case":false}"#,
        );
        assert_eq!(
            read(dir.path(), 384, 512).unwrap(),
            Pipeline { max_tokens: 256 }
        );
    }

    #[test]
    fn a_plain_directory_uses_the_position_limit() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(dir.path(), 384, 512).unwrap(),
            Pipeline { max_tokens: 512 }
        );
        write(
            dir.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length":4096}"#,
        );
        assert_eq!(
            read(dir.path(), 384, 512).unwrap(),
            Pipeline { max_tokens: 512 }
        );
    }

    #[test]
    fn other_pipelines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dense = MODULES.replace("models.Normalize", "models.Dense");
        write(dir.path(), "modules.json", &dense);
        assert!(matches!(
            read(dir.path(), 384, 512),
            Err(Error::Unsupported { .. })
        ));

        write(dir.path(), "modules.json", MODULES);
        write(
            dir.path(),
            "1_Pooling/config.json",
            &MEAN.replace("cls_token\":false", "cls_token\":true"),
        );
        let err = read(dir.path(), 384, 512).unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported { path, .. } if path.ends_with("1_Pooling/config.json"))
        );

        write(dir.path(), "1_Pooling/config.json", MEAN);
        assert!(matches!(
            read(dir.path(), 768, 512),
            Err(Error::Unsupported { .. })
        ));

        write(
            dir.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length":256,"do_lower_case":true}"#,
        );
        assert!(matches!(
            read(dir.path(), 384, 512),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn bad_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", "[{");
        let err = read(dir.path(), 384, 512).unwrap_err();
        assert!(matches!(&err, Error::Json { path, .. } if path.ends_with("modules.json")));
        assert!(err.to_string().contains("modules.json"), "{err}");
    }
}
