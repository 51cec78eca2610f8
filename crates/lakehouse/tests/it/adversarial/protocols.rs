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
        ("garbage", b"\x16\x03\x01\x02\x00GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("huge startup length", huge),
        ("tiny startup length", vec![0, 0, 0, 1]),
        ("many parameters", startup(&vec![("k", "v"); 20_000])),
        ("ssl request then junk", ssl_then_junk),
        ("password message with absurd length", auth_then_junk),
        ("query before authentication", query_before_auth),
        ("http/2 preface then junk", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff".to_vec()),
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
            tokio::task::spawn_blocking(move || poke(port, &b)).await.unwrap();
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
        let (ok, out, err) = crate::protocols::psql(server.pg, READER, &["SELECT count(*) FROM sales"]);
        assert!(ok && out.contains('3'), "{out}{err}");
    }
}
