//! The HTTP contract, status by status, on every backend.

use axum::body::Body;
use http::StatusCode;
use http::header;
use tower::ServiceExt;

use crate::support::{self, BIG, call, error_code, req, send};

fn etag(resp: &http::Response<Body>) -> String {
    resp.headers()[header::ETAG].to_str().unwrap().to_string()
}

#[tokio::test]
async fn put_get_head_roundtrip() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        let (resp, body) = send(
            &r,
            "PUT",
            "/storage/objects/dir/hello.txt",
            Body::from("hello world"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["key"], "dir/hello.txt");
        assert_eq!(v["size"], 11);
        let tag = etag(&resp);
        assert!(
            tag.starts_with('"') && tag.ends_with('"'),
            "quoted ETag {tag}"
        );

        let (resp, body) = send(&r, "GET", "/storage/objects/dir/hello.txt", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&body[..], b"hello world");
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "11");
        assert_eq!(resp.headers()[header::ACCEPT_RANGES], "bytes");
        assert_eq!(etag(&resp), tag, "{}", tb.name);
        assert!(resp.headers().contains_key(header::LAST_MODIFIED));

        let (resp, body) = send(&r, "HEAD", "/storage/objects/dir/hello.txt", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(body.is_empty());
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "11");

        // Overwrite replaces the bytes and the ETag.
        let (resp, _) = send(
            &r,
            "PUT",
            "/storage/objects/dir/hello.txt",
            Body::from("bye"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(etag(&resp), tag, "{}", tb.name);
        let (_, body) = send(&r, "GET", "/storage/objects/dir/hello.txt", Body::empty()).await;
        assert_eq!(&body[..], b"bye");

        // Empty objects are objects.
        let (resp, _) = send(&r, "PUT", "/storage/objects/empty", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, body) = send(&r, "GET", "/storage/objects/empty", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(body.is_empty());
    }
}

#[tokio::test]
async fn missing_objects_are_404_json() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        for method in ["GET", "HEAD"] {
            let (resp, body) =
                send(&r, method, "/storage/objects/no/such/key", Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {}", tb.name);
            if method == "GET" {
                assert_eq!(error_code(&body), "not_found");
            }
        }
        let (resp, _) = send(&r, "GET", "/no/such/route", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn ranges_are_206_and_unsatisfiable_is_416() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        send(&r, "PUT", "/storage/objects/r", Body::from("0123456789")).await;
        let cases = [
            ("bytes=0-4", "01234", "bytes 0-4/10"),
            ("bytes=7-", "789", "bytes 7-9/10"),
            ("bytes=-3", "789", "bytes 7-9/10"),
            ("bytes=8-100", "89", "bytes 8-9/10"),
            ("bytes=-100", "0123456789", "bytes 0-9/10"),
        ];
        for (range, want, content_range) in cases {
            let (resp, body) = call(
                &r,
                req("GET", "/storage/objects/r")
                    .header(header::RANGE, range)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(
                resp.status(),
                StatusCode::PARTIAL_CONTENT,
                "{range} {}",
                tb.name
            );
            assert_eq!(&body[..], want.as_bytes(), "{range} {}", tb.name);
            assert_eq!(resp.headers()[header::CONTENT_RANGE], content_range);
            assert_eq!(
                resp.headers()[header::CONTENT_LENGTH],
                want.len().to_string().as_str()
            );
        }
        for range in ["bytes=10-", "bytes=20-30", "bytes=-0"] {
            let (resp, body) = call(
                &r,
                req("GET", "/storage/objects/r")
                    .header(header::RANGE, range)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(
                resp.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range} {}",
                tb.name
            );
            assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes */10");
            assert_eq!(error_code(&body), "range_not_satisfiable");
        }
        // Several ranges or other units: RFC 9110 lets us serve the whole object.
        for range in ["bytes=0-1,4-5", "items=0-3"] {
            let (resp, body) = call(
                &r,
                req("GET", "/storage/objects/r")
                    .header(header::RANGE, range)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::OK, "{range}");
            assert_eq!(&body[..], b"0123456789");
        }
    }
}

#[tokio::test]
async fn conditional_puts() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        let put = |h: Option<(&'static str, String)>, body: &'static str| {
            let mut b = req("PUT", "/storage/objects/c");
            if let Some((k, v)) = h {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        };
        // If-Match on a missing object fails.
        let (resp, body) = call(&r, put(Some(("if-match", "\"nope\"".into())), "x")).await;
        assert_eq!(
            resp.status(),
            StatusCode::PRECONDITION_FAILED,
            "{}",
            tb.name
        );
        assert_eq!(error_code(&body), "precondition_failed");
        // Create-only succeeds once.
        let (resp, _) = call(&r, put(Some(("if-none-match", "*".into())), "v1")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
        let v1 = etag(&resp);
        let (resp, _) = call(&r, put(Some(("if-none-match", "*".into())), "v2")).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        // Compare-and-swap on the ETag.
        let (resp, _) = call(&r, put(Some(("if-match", v1.clone())), "v2")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
        let v2 = etag(&resp);
        let (resp, _) = call(&r, put(Some(("if-match", v1.clone())), "v3")).await;
        assert_eq!(
            resp.status(),
            StatusCode::PRECONDITION_FAILED,
            "stale ETag {}",
            tb.name
        );
        let (resp, _) = call(&r, put(Some(("if-match", "*".into())), "v3")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, body) = send(&r, "GET", "/storage/objects/c", Body::empty()).await;
        assert_eq!(&body[..], b"v3", "{}", tb.name);
        assert_ne!(v1, v2);
        // Malformed conditions are 400 and write nothing.
        let (resp, body) = call(&r, put(Some(("if-none-match", "\"abc\"".into())), "bad")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "invalid_header");
        let both = req("PUT", "/storage/objects/c")
            .header("if-none-match", "*")
            .header("if-match", v2.clone())
            .body(Body::from("bad"))
            .unwrap();
        let (resp, _) = call(&r, both).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let (_, body) = send(&r, "GET", "/storage/objects/c", Body::empty()).await;
        assert_eq!(&body[..], b"v3");
    }
}

#[tokio::test]
async fn conditional_gets() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        let (resp, _) = send(&r, "PUT", "/storage/objects/g", Body::from("data")).await;
        let tag = etag(&resp);
        let get = |k: &'static str, v: String| {
            req("GET", "/storage/objects/g")
                .header(k, v)
                .body(Body::empty())
                .unwrap()
        };
        let (resp, body) = call(&r, get("if-none-match", tag.clone())).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{}", tb.name);
        assert!(body.is_empty());
        assert_eq!(etag(&resp), tag);
        let (resp, _) = call(&r, get("if-none-match", "\"other\"".into())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _) = call(&r, get("if-match", tag.clone())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, body) = call(&r, get("if-match", "\"other\"".into())).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(error_code(&body), "precondition_failed");
        let future = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        );
        let past = httpdate::fmt_http_date(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        );
        let (resp, _) = call(&r, get("if-modified-since", future.clone())).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        let (resp, _) = call(&r, get("if-modified-since", past.clone())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _) = call(&r, get("if-unmodified-since", past)).await;
        assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
        let (resp, _) = call(&r, get("if-unmodified-since", future)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, body) = call(&r, get("if-modified-since", "yesterday".into())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "invalid_header");
    }
}

#[tokio::test]
async fn delete_is_idempotent() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        send(&r, "PUT", "/storage/objects/d/x", Body::from("1")).await;
        for _ in 0..2 {
            let (resp, _) = send(&r, "DELETE", "/storage/objects/d/x", Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{}", tb.name);
        }
        let (resp, _) = send(&r, "GET", "/storage/objects/d/x", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        // A "directory" is not an object either.
        send(&r, "PUT", "/storage/objects/p/q/r", Body::from("1")).await;
        let (resp, _) = send(&r, "DELETE", "/storage/objects/p/q", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{}", tb.name);
        let (resp, _) = send(&r, "GET", "/storage/objects/p/q/r", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn objects_over_the_limit_are_413_and_leave_nothing() {
    for tb in support::all().await {
        let r = support::router(tb.storage(1024));
        // Declared too large: refused before reading.
        let (resp, body) = call(
            &r,
            req("PUT", "/storage/objects/big")
                .header(header::CONTENT_LENGTH, "2048")
                .body(Body::from(vec![7u8; 2048]))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{}", tb.name);
        assert_eq!(error_code(&body), "too_large");
        // Streamed without a length: refused once the limit is crossed.
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..4)
            .map(|_| Ok(bytes::Bytes::from(vec![1u8; 512])))
            .collect();
        let (resp, _) = send(
            &r,
            "PUT",
            "/storage/objects/big",
            Body::from_stream(futures::stream::iter(chunks)),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{}", tb.name);
        // Exactly at the limit is fine.
        let (resp, _) = send(
            &r,
            "PUT",
            "/storage/objects/ok",
            Body::from(vec![0u8; 1024]),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _) = send(&r, "GET", "/storage/objects/big", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{}", tb.name);
        assert_eq!(tb.fs_files().len(), if tb.name == "fs" { 1 } else { 0 });

        // Past the multipart threshold: the upload is aborted, nothing remains.
        let limit = 10 << 20;
        let r = support::router(tb.storage(limit));
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..12)
            .map(|_| Ok(bytes::Bytes::from(vec![3u8; 1 << 20])))
            .collect();
        let (resp, _) = send(
            &r,
            "PUT",
            "/storage/objects/huge",
            Body::from_stream(futures::stream::iter(chunks)),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{}", tb.name);
        let (resp, _) = send(&r, "GET", "/storage/objects/huge", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            tb.fs_files(),
            if tb.name == "fs" {
                vec!["ok".to_string()]
            } else {
                vec![]
            }
        );
    }
}

/// The bad-key table: every one is a 400 naming the problem, for every
/// method, and nothing is written.
#[tokio::test]
async fn bad_keys_are_400() {
    let long = "k".repeat(2048);
    let bad: Vec<(String, &str)> = vec![
        ("../x".into(), "'..' segment"),
        ("a/../../etc/passwd".into(), "'..' segment"),
        ("%2E%2E/x".into(), "'..' segment"),
        ("a//b".into(), "empty segment"),
        ("a/".into(), "empty segment"),
        ("/abs".into(), "starts with '/'"),
        ("a/./b".into(), "'.' segment"),
        ("a%00b".into(), "U+0000"),
        ("a%01b".into(), "U+0001"),
        ("line%0Abreak".into(), "U+000A"),
        ("del%7F".into(), "U+007F"),
        ("bad%FFutf8".into(), "invalid key in URL"),
        (long, "2048 bytes long"),
        ("staged%2312".into(), "reserved"),
        // NAME_MAX: was a 500 on the fs backend (ENAMETOOLONG).
        ("s".repeat(256), "limit is 240 bytes per segment"),
        (
            format!("dir/{}/x", "d".repeat(255)),
            "limit is 240 bytes per segment",
        ),
        ("s".repeat(241), "segment of 241 bytes"),
    ];
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        for (key, why) in &bad {
            for method in ["PUT", "GET", "HEAD", "DELETE"] {
                let uri = format!("/storage/objects/{key}");
                let (resp, body) = send(&r, method, &uri, Body::from("x")).await;
                assert_eq!(
                    resp.status(),
                    StatusCode::BAD_REQUEST,
                    "{method} {key:?} on {}",
                    tb.name
                );
                if method != "HEAD" {
                    assert_eq!(error_code(&body), "invalid_key", "{key:?}");
                    let text = String::from_utf8_lossy(&body);
                    assert!(text.contains(why), "{key:?}: {text}");
                }
            }
        }
        let (_, body) = send(&r, "GET", "/storage/list", Body::empty()).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["objects"].as_array().unwrap().len(),
            0,
            "nothing written on {}",
            tb.name
        );
        assert!(tb.fs_files().is_empty());
    }
}

/// The longest segment the grammar allows is writable on every backend, as
/// the last segment and as a directory, by a single put and by a streamed
/// multipart upload (whose staging file on the fs backend is `<segment>#1`).
#[tokio::test]
async fn the_longest_segment_is_writable_on_every_backend() {
    let seg = "s".repeat(lakehouse_storaged::key::MAX_SEGMENT_LEN);
    let big: Vec<u8> = (0..(lakehouse_storaged::service::PART_SIZE + 4096))
        .map(|i| (i % 253) as u8)
        .collect();
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        for (key, body) in [
            (format!("{seg}/{seg}"), b"small".to_vec()),
            (format!("b{}/{seg}", &seg[1..]), big.clone()),
        ] {
            let uri = format!("/storage/objects/{key}");
            let (resp, text) = send(&r, "PUT", &uri, Body::from(body.clone())).await;
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{} bytes on {}: {}",
                body.len(),
                tb.name,
                String::from_utf8_lossy(&text)
            );
            let (resp, got) = send(&r, "GET", &uri, Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
            assert_eq!(got.len(), body.len(), "{}", tb.name);
            assert!(got[..] == body[..], "{}", tb.name);
        }
    }
}

/// Unusual but valid keys round-trip byte-exact: through the URL, the
/// backend, and the listing.
#[tokio::test]
async fn unusual_keys_roundtrip() {
    let cases: &[(&str, &str)] = &[
        ("with%20space/and%20more", "with space/and more"),
        ("percent%252Fslash", "percent%2Fslash"),
        ("%2548%2545LLO/x", "%48%45LLO/x"),
        (
            "%C3%BCn%C3%AFc%C3%B6d%C3%A9/%E6%97%A5%E6%9C%AC/%F0%9F%99%80.parquet",
            "ünïcödé/日本/🙀.parquet",
        ),
        ("odd%3C%20%26%20%3E'chars", "odd< & >'chars"),
        ("hash%23tag/x%231a", "hash#tag/x#1a"),
        ("dots.../..a", "dots.../..a"),
    ];
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        for (i, (uri_key, key)) in cases.iter().enumerate() {
            let payload = format!("payload {i}");
            let uri = format!("/storage/objects/{uri_key}");
            let (resp, body) = send(&r, "PUT", &uri, Body::from(payload.clone())).await;
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{key:?} on {}: {}",
                tb.name,
                String::from_utf8_lossy(&body)
            );
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["key"], *key);
            let (resp, body) = send(&r, "GET", &uri, Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::OK, "{key:?}");
            assert_eq!(body, payload.as_bytes());
        }
        let (_, body) = send(&r, "GET", "/storage/list", Body::empty()).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut listed: Vec<String> = v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["key"].as_str().unwrap().to_string())
            .collect();
        let mut want: Vec<String> = cases.iter().map(|(_, k)| k.to_string()).collect();
        want.sort();
        assert_eq!(listed, want, "listing is sorted and exact on {}", tb.name);
        listed.dedup();
        assert_eq!(listed.len(), cases.len());
    }
}

#[tokio::test]
async fn list_paginates_with_prefixes() {
    for tb in support::all().await {
        let storage = tb.storage(BIG);
        let r = support::router(storage);
        let mut keys: Vec<String> = (0..25).map(|i| format!("data/part-{i:03}")).collect();
        keys.push("data/a/nested".into());
        keys.push("data.txt".into());
        keys.push("database/x".into());
        keys.push("other".into());
        for k in &keys {
            let (resp, _) =
                send(&r, "PUT", &format!("/storage/objects/{k}"), Body::from("v")).await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
        // Page through "data/" ten at a time.
        let mut seen = vec![];
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut uri = "/storage/list?prefix=data%2F&limit=10".to_string();
            if let Some(a) = &after {
                uri.push_str(&format!("&after={}", urlencode(a)));
            }
            let (resp, body) = send(&r, "GET", &uri, Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let objs = v["objects"].as_array().unwrap();
            assert!(objs.len() <= 10);
            for o in objs {
                seen.push(o["key"].as_str().unwrap().to_string());
                assert_eq!(o["size"], 1);
                assert!(o["last_modified"].is_string());
            }
            pages += 1;
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        let mut want: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with("data/"))
            .cloned()
            .collect();
        want.sort();
        assert_eq!(seen, want, "{}", tb.name);
        assert_eq!(pages, 3);
        // A string prefix, not a directory: "data" matches data/, data.txt, database/.
        let (_, body) = send(
            &r,
            "GET",
            "/storage/list?prefix=data&limit=10000",
            Body::empty(),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["objects"].as_array().unwrap().len(), 28, "{}", tb.name);
        let (_, body) = send(
            &r,
            "GET",
            "/storage/list?prefix=data%2Fpart-01",
            Body::empty(),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["objects"].as_array().unwrap().len(), 10);
        // Bad parameters are 400.
        for q in ["limit=0", "limit=10001", "limit=ten", "prefix=%00"] {
            let (resp, body) = send(&r, "GET", &format!("/storage/list?{q}"), Body::empty()).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(error_code(&body), "invalid_argument");
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// On a filesystem a key cannot be both an object and a prefix: 409, clearly.
#[tokio::test]
async fn fs_key_prefix_conflicts_are_409() {
    let tb = support::fs().await;
    let r = support::router(tb.storage(BIG));
    send(&r, "PUT", "/storage/objects/a", Body::from("1")).await;
    let (resp, body) = send(&r, "PUT", "/storage/objects/a/b", Body::from("2")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "key_conflict");
    send(&r, "PUT", "/storage/objects/x/y", Body::from("1")).await;
    let (resp, body) = send(&r, "PUT", "/storage/objects/x", Body::from("2")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("x/"));
    let (_, body) = send(&r, "GET", "/storage/objects/a", Body::empty()).await;
    assert_eq!(&body[..], b"1");
}

/// Large objects (multipart upload with direct I/O on fs, memory-mapped GET
/// from 8 MiB) read back byte-exact, whole and in unaligned ranges, and a
/// replaced object never leaks into a read that started before.
#[tokio::test]
async fn large_objects_whole_and_ranged() {
    for tb in support::all().await {
        let r = support::router(tb.storage(BIG));
        let size = 20 * 1024 * 1024 + 123;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        let (resp, _) = send(&r, "PUT", "/storage/objects/big", data.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
        let (resp, body) = send(&r, "GET", "/storage/objects/big", Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", tb.name);
        assert!(body == data, "whole object differs on {}", tb.name);
        for (start, end) in [
            (4097, 12 << 20),
            (1, size - 2),
            (size - (9 << 20), size - 1),
        ] {
            let (resp, body) = call(
                &r,
                req("GET", "/storage/objects/big")
                    .header(header::RANGE, format!("bytes={start}-{end}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{}", tb.name);
            assert!(
                body[..] == data[start..=end],
                "range {start}-{end} differs on {}",
                tb.name
            );
        }
        // A response in progress keeps the version it started with.
        let resp = r
            .clone()
            .oneshot(
                req("GET", "/storage/objects/big")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let other = vec![0xAAu8; size];
        let (put, _) = send(&r, "PUT", "/storage/objects/big", other).await;
        assert_eq!(put.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body == data, "a read mixed two versions on {}", tb.name);
    }
}
