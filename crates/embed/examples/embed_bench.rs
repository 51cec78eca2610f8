//! Embedding throughput, for `bench/embed.sh`: embeds the texts of a file (one
//! per line) `--runs` times and prints each run's texts/s and their median.
//!
//! Usage: embed_bench MODEL_DIR TEXTS_FILE [--runs N]

use std::time::Instant;

use lakehouse_common::TextEmbedder;
use lakehouse_embed::{Embedder, MAX_TEXTS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, file, rest @ ..] = args.as_slice() else {
        return Err("usage: embed_bench MODEL_DIR TEXTS_FILE [--runs N]".into());
    };
    let runs: usize = match rest {
        [] => 3,
        [flag, n] if flag == "--runs" => n.parse()?,
        _ => return Err("usage: embed_bench MODEL_DIR TEXTS_FILE [--runs N]".into()),
    };
    let embedder = Embedder::load(dir.as_ref())?;
    let body = std::fs::read_to_string(file)?;
    let texts: Vec<&str> = body.lines().collect();
    embedder.embed(&texts[..texts.len().min(64)])?; // warm-up
    let mut rates = Vec::with_capacity(runs);
    for run in 1..=runs {
        let start = Instant::now();
        let mut floats = 0;
        for chunk in texts.chunks(MAX_TEXTS) {
            floats += embedder.embed(chunk)?.len();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(floats, texts.len() * embedder.dim());
        let rate = texts.len() as f64 / secs;
        eprintln!(
            "run {run}: {} texts in {secs:.2} s = {rate:.1} texts/s",
            texts.len()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("{:.1}", rates[rates.len() / 2]);
    Ok(())
}
