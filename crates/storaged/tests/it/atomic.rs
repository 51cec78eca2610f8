//! Atomic visibility: while a large object streams in, readers see the old
//! object or the new one, never a part; a broken upload leaves nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::support::{self, BIG};

const NEW_SIZE: usize = 40 << 20;
const OLD_SIZE: usize = 3 << 20;

#[tokio::test]
async fn readers_never_see_a_partial_object() {
    for tb in support::all().await {
        let url = support::serve(tb.storage(BIG)).await;
        let http = reqwest::Client::new();
        let obj = format!("{url}/storage/objects/atomic/obj");
        // The old version: all 0xAA.
        let r = http
            .put(&obj)
            .body(vec![0xAAu8; OLD_SIZE])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());

        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let done = done.clone();
            let http = http.clone();
            let obj = obj.clone();
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let r = http.get(&obj).send().await.unwrap();
                    assert!(r.status().is_success());
                    let body = r.bytes().await.unwrap();
                    let fill = body[0];
                    match (body.len(), fill) {
                        (OLD_SIZE, 0xAA) | (NEW_SIZE, 0xBB) => {}
                        (n, f) => panic!("reader saw {n} bytes of {f:#x}: a torn object"),
                    }
                    assert!(body.iter().all(|b| *b == fill), "mixed content");
                    reads += 1;
                }
                reads
            })
        };
        // The new version, streamed slowly in 1 MiB chunks: all 0xBB.
        let chunks = futures::stream::iter(0..NEW_SIZE / (1 << 20)).then(|_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![0xBBu8; 1 << 20]))
        });
        let r = http
            .put(&obj)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", tb.name);
        // Let the reader observe the new version too.
        tokio::time::sleep(Duration::from_millis(100)).await;
        done.store(true, Ordering::SeqCst);
        let reads = reader.await.unwrap();
        assert!(reads > 1, "the reader ran ({reads} reads) on {}", tb.name);
        let body = http.get(&obj).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), NEW_SIZE);
    }
}

#[tokio::test]
async fn a_broken_upload_leaves_nothing() {
    for tb in support::all().await {
        let url = support::serve(tb.storage(BIG)).await;
        let http = reqwest::Client::new();
        let obj = format!("{url}/storage/objects/broken/obj");
        // 20 MiB, then the body fails: the connection is cut mid-request.
        let chunks = futures::stream::iter(0..21).map(|i| {
            if i < 20 {
                Ok(Bytes::from(vec![1u8; 1 << 20]))
            } else {
                Err(std::io::Error::other("client gave up"))
            }
        });
        let res = http
            .put(&obj)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await;
        assert!(res.is_err() || !res.unwrap().status().is_success());
        // Give the server a moment to notice and abort.
        let mut gone = false;
        for _ in 0..50 {
            let r = http.get(&obj).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "{}", tb.name);
            if tb.fs_files().is_empty() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            gone,
            "staging files removed on {}: {:?}",
            tb.name,
            tb.fs_files()
        );
    }
}
