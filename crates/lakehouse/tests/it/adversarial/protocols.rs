//! Hostile input on the PostgreSQL and Flight SQL listeners: raw garbage,
//! absurd lengths, half-open connections and over-deep SQL. After each, the
//! server must still be up and answer both protocols and HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::protocols::ProtoServer;
use crate::support::READER;

/// Writes `bytes` and reads until the server closes or 3 s pass.
fn poke(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// A startup message (protocol 3.0) with `params`.
fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

/// Starts up, answers the password request with `password`, and returns
/// every byte the server sent until it closed (or 5 s passed).
fn password_attempt(port: u16, password: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&startup(&[("user", "x"), ("database", "lakehouse")]))
        .unwrap();
    // AuthenticationCleartextPassword: 'R', length 8, code 3.
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(
        head,
        [b'R', 0, 0, 0, 8, 0, 0, 0, 3],
        "not a cleartext password request"
    );
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((password.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(password);
    msg.push(0);
    let _ = s.write_all(&msg);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the server closes, or a session is ready (ReadyForQuery).
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if contains(&out, READY) {
            break;
        }
    }
    out
}

/// ReadyForQuery, idle (pgwire also sends one after a FATAL, then closes).
const READY: &[u8] = b"Z\0\0\0\x05I";
/// AuthenticationOk: the one sign of a session.
const AUTH_OK: &[u8] = &[b'R', 0, 0, 0, 8, 0, 0, 0, 0];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Wrong, empty, oversized and binary passwords: a FATAL 28P01 (or a
/// closed connection for a message over the protocol's size limit), never a
/// session; the server stays up and the right token still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_on_the_postgres_port_are_refused() {
    let server = ProtoServer::start(&[]);
    let port = server.pg;
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        ("wrong token", b"not-a-valid-token-0123456789".to_vec()),
        ("empty", vec![]),
        (
            "reader token with a suffix",
            format!("{READER}x").into_bytes(),
        ),
        ("not UTF-8", vec![0xff, 0xfe, 0x80, 0x81]),
        ("64 KiB", vec![b'a'; 64 << 10]),
    ];
    for (name, password) in attempts {
        let out = tokio::task::spawn_blocking(move || password_attempt(port, &password))
            .await
            .unwrap();
        assert!(!contains(&out, AUTH_OK), "{name}: got a session");
        assert!(
            out.is_empty() || contains(&out, b"28P01") || contains(&out, b"08P01"),
            "{name}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // Over the protocol's message limit: refused (error or close), server up.
    let out = tokio::task::spawn_blocking(move || password_attempt(port, &vec![b'a'; 4 << 20]))
        .await
        .unwrap();
    assert!(
        !contains(&out, AUTH_OK),
        "oversized password: got a session"
    );
    let right = tokio::task::spawn_blocking(move || password_attempt(port, READER.as_bytes()));
    let out = right.await.unwrap();
    // AuthenticationOk, then ReadyForQuery.
    assert!(contains(&out, AUTH_OK), "{out:?}");
    assert!(contains(&out, READY), "{out:?}");
    // The same on the Flight SQL port, through the ADBC driver.
    crate::protocols::python_checks("adbc-hostile-tokens", server.flight);
    let s = server.stats().await;
    assert_eq!(s["running"], 0, "{s}");
}

fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut huge = 0x7fff_fff0u32.to_be_bytes().to_vec();
    huge.extend_from_slice(&196608u32.to_be_bytes());
    let mut ssl_then_junk = vec![0, 0, 0, 8, 4, 210, 22, 47];
    ssl_then_junk.extend_from_slice(&[0xff; 64]);
    let mut auth_then_junk = startup(&[("user", "x"), ("database", "lakehouse")]);
    auth_then_junk.extend_from_slice(b"p\x7f\xff\xff\xffgarbage");
    let mut query_before_auth = startup(&[("user", "x")]);
    query_before_auth.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    vec![
        (
            "garbage",
            b"\x16\x03\x01\x02\x00GET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("huge startup length", huge),
        ("tiny startup length", vec![0, 0, 0, 1]),
        ("many parameters", startup(&vec![("k", "v"); 20_000])),
        ("ssl request then junk", ssl_then_junk),
        ("password message with absurd length", auth_then_junk),
        ("query before authentication", query_before_auth),
        (
            "http/2 preface then junk",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff".to_vec(),
        ),
        ("nothing", vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_on_the_protocol_ports_leave_the_server_up() {
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    for (name, bytes) in hostile_inputs() {
        for port in [server.pg, server.flight] {
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || poke(port, &b))
                .await
                .unwrap();
            let s = server.stats().await;
            assert!(s["running"].is_u64(), "{name} on {port}: server gone? {s}");
        }
    }
    // Half-open connections that never finish the startup do not pile up
    // work: open many, then check a real query still answers.
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.pg)).ok())
        .collect();
    assert!(idle.len() > 100);
    let s = server.stats().await;
    assert_eq!(s["running"], 0, "{s}");
    drop(idle);

    if crate::protocols::psql_available() {
        // Too deep for the planner: refused with 54001, server up.
        let deep = format!("SELECT {}", vec!["1"; 20_000].join("+"));
        let (ok, _, err) = crate::protocols::psql(server.pg, READER, &[&deep]);
        assert!(!ok && err.contains("54001"), "{err}");
        let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        let (ok, _, err) = crate::protocols::psql(server.pg, READER, &[&nested]);
        assert!(!ok && err.contains("54001"), "{err}");
        let (ok, out, err) =
            crate::protocols::psql(server.pg, READER, &["SELECT count(*) FROM sales"]);
        assert!(ok && out.contains('3'), "{out}{err}");
    }
}
