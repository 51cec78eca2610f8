//! storaged end to end through the real binary: large streamed objects,
//! ranges, `kill -9` in the middle of a write, restart, operations endpoints.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;

use crate::support::{Server, run_cli};

const MIB: usize = 1 << 20;

/// Deterministic pseudo-random bytes: byte `i` of stream `seed` is always the
/// same, so any range can be checked without keeping the data.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let p = offset + i as u64;
        let mut z = (p / 8).wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        *b = (z >> ((p % 8) * 8)) as u8;
    }
}

fn chunk(seed: u64, index: usize) -> Bytes {
    let mut v = vec![0u8; MIB];
    fill(seed, (index * MIB) as u64, &mut v);
    Bytes::from(v)
}

fn expected(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(seed, offset, &mut v);
    v
}

/// Streams `mib` MiB of stream `seed` as a chunked PUT body.
fn body(seed: u64, mib: usize) -> reqwest::Body {
    reqwest::Body::wrap_stream(
        futures::stream::iter(0..mib).map(move |i| Ok::<_, std::io::Error>(chunk(seed, i))),
    )
}

/// Reads the whole object and checks every byte against stream `seed`.
async fn assert_object(http: &reqwest::Client, url: &str, seed: u64, size: usize) {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    assert_eq!(resp.content_length(), Some(size as u64));
    let mut stream = resp.bytes_stream();
    let mut offset = 0u64;
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        assert_eq!(
            &b[..],
            &expected(seed, offset, b.len())[..],
            "bytes at {offset} of {url}"
        );
        offset += b.len() as u64;
    }
    assert_eq!(offset, size as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_ranges_and_kill_9_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();

    // 1. Stream 100 MiB in.
    let first = format!("{}/storage/objects/big/first.bin", server.url);
    let resp = http.put(&first).body(body(1, 100)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["size"], 100 * MIB as u64);

    // 2. Ranges of it back.
    let total = (100 * MIB) as u64;
    for (start, len) in [
        (0u64, 10usize),
        (12_345_678, MIB),
        (total - 17, 17),
        (50 * MIB as u64 - 3, 4 * MIB + 6),
    ] {
        let resp = http
            .get(&first)
            .header(
                "range",
                format!("bytes={}-{}", start, start + len as u64 - 1),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            format!("bytes {}-{}/{}", start, start + len as u64 - 1, total)
        );
        let got = resp.bytes().await.unwrap();
        assert_eq!(&got[..], &expected(1, start, len)[..], "range at {start}");
    }
    assert_object(&http, &first, 1, 100 * MIB).await;

    // 3. A second large PUT, killed with SIGKILL once ~60 MiB have been sent.
    let second = format!("{}/storage/objects/big/second.bin", server.url);
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(1);
    let slow = futures::stream::iter(0..300usize).then(move |i| {
        let sent_tx = sent_tx.clone();
        async move {
            if i == 60 {
                let _ = sent_tx.send(()).await;
                // Give the server time to take in what was sent.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, std::io::Error>(chunk(2, i))
        }
    });
    let put = {
        let http = http.clone();
        let second = second.clone();
        tokio::spawn(async move {
            http.put(&second)
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
        })
    };
    sent_rx.recv().await.unwrap();
    server.kill9();
    let res = put.await.unwrap();
    assert!(
        res.as_ref()
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "the interrupted PUT was not acknowledged"
    );

    // 4. Restart on the same data directory.
    let server = Server::start(dir.path(), &[], &[]);
    let first = format!("{}/storage/objects/big/first.bin", server.url);
    let second = format!("{}/storage/objects/big/second.bin", server.url);
    assert_object(&http, &first, 1, 100 * MIB).await;
    let resp = http.head(&second).send().await.unwrap();
    match resp.status() {
        StatusCode::NOT_FOUND => {}
        StatusCode::OK => assert_object(&http, &second, 2, 300 * MIB).await,
        s => panic!("unexpected status {s} for the interrupted key"),
    }
    // The listing shows whole objects only, and no staging file survived.
    let list: serde_json::Value = http
        .get(format!("{}/storage/list?prefix=big/", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for o in list["objects"].as_array().unwrap() {
        let size = o["size"].as_u64().unwrap();
        assert!(size == 100 * MIB as u64 || size == 300 * MIB as u64, "{o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("objects/big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('#'))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
}

#[tokio::test]
async fn operations_endpoints_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let h: serde_json::Value = http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r = http
        .get(format!("{}/ready", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(r["checks"]["storaged"]["ok"], true);
    http.put(format!("{}/storage/objects/m", server.url))
        .body("x")
        .send()
        .await
        .unwrap();
    http.get(format!("{}/storage/objects/missing", server.url))
        .send()
        .await
        .unwrap();
    let resp = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = resp.text().await.unwrap();
    assert!(m.contains(r#"lakehouse_http_requests_total{route="/storage/objects/{*key}",method="PUT",status="200"} 1"#), "{m}");
    assert!(
        m.contains(r#"route="/storage/objects/{*key}",method="GET",status="404"} 1"#),
        "{m}"
    );
    assert!(m.contains("lakehouse_http_request_duration_seconds_bucket"));
    let id = http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert!(id.headers().contains_key("x-request-id"));

    // A second server on the same data directory is refused, clearly.
    let (status, _, stderr) = run_cli(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[("LAKEHOUSE_LOG", "error")],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("another lakehouse server is using the data directory"),
        "{stderr}"
    );

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[tokio::test]
async fn config_file_env_and_only_storaged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lakehouse.toml");
    std::fs::write(&cfg, "[storaged]\nmax_object_size = \"1KiB\"\n").unwrap();
    let server = Server::start(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "--only", "storaged"],
        &[],
    );
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/storage/objects/k", server.url))
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "too_large");
    drop(server);

    // The environment overrides the file.
    let server = Server::start(
        dir.path(),
        &["--config", cfg.to_str().unwrap()],
        &[("LAKEHOUSE__STORAGED__MAX_OBJECT_SIZE", "4096")],
    );
    let r = http
        .put(format!("{}/storage/objects/k", server.url))
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A bad config is a clear start-up error.
    std::fs::write(&cfg, "[storaged]\nbackend = \"floppy\"\n").unwrap();
    let (status, _, stderr) = run_cli(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("floppy"), "{stderr}");
}
