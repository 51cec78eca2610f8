//! Load errors name the missing or bad file; inputs beyond the limits are
//! `EmbedError::Invalid`.

use std::path::Path;

use lakehouse_common::{EmbedError, TextEmbedder};
use lakehouse_embed::{Embedder, Error, MAX_TEXT_BYTES, MAX_TEXTS};

use crate::embedder;

/// The load error's own (crate) error.
fn load_error(dir: &Path) -> Error {
    match Embedder::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(EmbedError::Model(e)) => *e.downcast::<Error>().expect("a lakehouse_embed::Error"),
        Err(e) => panic!("not a model error: {e}"),
    }
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = load_error(&missing);
    assert!(matches!(&err, Error::NoDir(p) if p == &missing), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn an_empty_directory_names_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_error(dir.path());
    assert!(
        matches!(&err, Error::Read { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    let shown = EmbedError::from(err).to_string();
    assert!(
        shown.contains("config.json") && shown.contains("No such file"),
        "{shown}"
    );
}

/// A copy of the model directory (symlinks) without `skip`, or with `skip`
/// replaced by `junk`.
fn model_copy(model: &Path, skip: &str, junk: Option<&[u8]>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling",
    ] {
        if name == skip {
            if let Some(junk) = junk {
                std::fs::write(dir.path().join(name), junk).unwrap();
            }
            continue;
        }
        std::os::unix::fs::symlink(model.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn each_missing_or_bad_file_is_named() {
    let Some(model) =
        lakehouse_embed::testing::model_dir_or_skip("each_missing_or_bad_file_is_named")
    else {
        return;
    };
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let err = load_error(model_copy(&model, name, None).path());
        assert!(
            matches!(&err, Error::Read { path, .. } if path.ends_with(name)),
            "{name}: {err}"
        );
    }
    let err = load_error(model_copy(&model, "config.json", Some(b"{\"hidden_size\":")).path());
    assert!(
        matches!(&err, Error::Json { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    let err = load_error(model_copy(&model, "tokenizer.json", Some(b"{}")).path());
    assert!(
        matches!(&err, Error::Tokenizer { path, .. } if path.ends_with("tokenizer.json")),
        "{err}"
    );
    let err = load_error(model_copy(&model, "model.safetensors", Some(b"not weights")).path());
    assert!(
        matches!(&err, Error::Weights { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    // The sentence-transformers files are optional: a plain BERT directory loads.
    let plain = model_copy(&model, "modules.json", None);
    std::fs::remove_file(plain.path().join("sentence_bert_config.json")).unwrap();
    let e = Embedder::load(plain.path()).unwrap();
    assert_eq!(e.max_tokens(), 512);
}

#[test]
fn inputs_beyond_the_limits_are_invalid() {
    let Some(e) = embedder("inputs_beyond_the_limits_are_invalid") else {
        return;
    };
    let big = "word ".repeat(MAX_TEXT_BYTES / 5 + 1);
    assert!(big.len() > MAX_TEXT_BYTES);
    let err = e.embed(&["fine", &big]).unwrap_err();
    assert!(
        matches!(&err, EmbedError::Invalid(m) if m.contains("text 1")),
        "{err}"
    );
    assert!(matches!(
        e.token_counts(&[&big]),
        Err(EmbedError::Invalid(_))
    ));
    let many = vec![""; MAX_TEXTS + 1];
    assert!(matches!(e.embed(&many), Err(EmbedError::Invalid(_))));
    // Right at the byte limit still works (and is truncated to 256 tokens).
    let edge = "x ".repeat(MAX_TEXT_BYTES / 2);
    assert_eq!(edge.len(), MAX_TEXT_BYTES);
    assert_eq!(e.token_counts(&[&edge]).unwrap(), vec![256]);
    assert_eq!(e.embed(&[&edge]).unwrap().len(), 384);
}
