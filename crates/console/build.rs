//! Embeds the console's assets in the binary.
//!
//! Every file under `assets/` becomes one entry of a static table (generated
//! into `OUT_DIR/assets.rs`): its URL path, MIME type, bytes, a gzip copy when
//! that is smaller, and a strong ETag. `index.html` is a template: `%BASE%` is
//! replaced by `assets/<version>`, where `<version>` is a hash of every other
//! asset, so those URLs change whenever their content does and can be cached
//! forever; `%PRELOAD%` becomes one `modulepreload` link per JavaScript module,
//! so the browser fetches them all at once instead of import by import.
//!
//! The output depends only on the files (sorted walk, gzip with no timestamp
//! or name), so every build of the same sources embeds the same bytes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

const INDEX: &str = "index.html";

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("assets");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=assets");

    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f == INDEX),
        "assets/index.html is missing"
    );

    let version = content_version(&root, &files);
    let mut table = String::new();
    for (i, rel) in files.iter().enumerate() {
        let mut bytes = fs::read(root.join(rel)).unwrap();
        if rel == INDEX {
            bytes = render_index(&bytes, &version, &files);
        }
        let raw_path = out.join(format!("asset{i}.raw"));
        fs::write(&raw_path, &bytes).unwrap();
        let gz = gzip(&bytes);
        let gz_expr = if gz.len() + 64 < bytes.len() {
            let gz_path = out.join(format!("asset{i}.gz"));
            fs::write(&gz_path, &gz).unwrap();
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        } else {
            "None".to_string()
        };
        let etag = format!("\"{}\"", hex(&Sha256::digest(&bytes)[..12]));
        writeln!(
            table,
            "    Asset {{ path: {rel:?}, mime: {mime:?}, raw: include_bytes!({raw:?}), gzip: {gz_expr}, etag: {etag:?} }},",
            mime = mime(rel),
            raw = raw_path.display().to_string(),
        )
        .unwrap();
    }
    let code = format!(
        "/// Hash of every asset but `index.html`: the `<version>` in asset URLs.\n\
         pub const VERSION: &str = {version:?};\n\
         /// Every embedded file, sorted by path.\n\
         pub static ASSETS: &[Asset] = &[\n{table}];\n"
    );
    fs::write(out.join("assets.rs"), code).unwrap();
}

/// Files under `dir`, as `/`-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap();
            let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
            out.push(parts.join("/"));
        }
    }
}

fn content_version(root: &Path, files: &[String]) -> String {
    let mut h = Sha256::new();
    for rel in files.iter().filter(|f| *f != INDEX) {
        let bytes = fs::read(root.join(rel)).unwrap();
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    hex(&h.finalize()[..6])
}

fn render_index(template: &[u8], version: &str, files: &[String]) -> Vec<u8> {
    let text = String::from_utf8(template.to_vec()).expect("index.html is UTF-8");
    let base = format!("assets/{version}");
    let preload: String = files
        .iter()
        .filter(|f| f.ends_with(".js"))
        .map(|f| format!("<link rel=\"modulepreload\" href=\"{base}/{f}\">\n"))
        .collect();
    assert!(text.contains("%BASE%") && text.contains("%PRELOAD%"));
    text.replace("%PRELOAD%\n", &preload)
        .replace("%PRELOAD%", &preload)
        .replace("%BASE%", &base)
        .into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    // GzEncoder::new writes mtime 0 and no file name: reproducible output.
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        other => panic!("assets/{path}: no MIME type for extension {other:?}; add it to build.rs"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
