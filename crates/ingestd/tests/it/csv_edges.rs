//! Inputs that used to be accepted with fewer rows than they hold, and the
//! CSV dialect / header detection: each is read exactly or refused with a
//! 400 that says why.

use lakehouse_ingestd::IngestResult;

use super::*;

static FRESH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Ingests into a dataset named `name` plus a fresh suffix (every call its
/// own dataset, so schemas never meet); returns the result and the name.
async fn csv(
    env: &Env,
    name: &str,
    data: &[u8],
    chunk: usize,
) -> Result<IngestResult, IngestError> {
    let n = FRESH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("{name}{n}");
    env.ingestor
        .ingest(
            &name,
            opts(Format::Csv, Mode::Replace),
            body(data.to_vec(), chunk),
            None,
        )
        .await
}

fn many_rows(n: usize, eol: &str) -> String {
    let mut s = format!("id,name{eol}");
    let rows: Vec<String> = (0..n).map(|i| format!("{i},n{i}")).collect();
    s.push_str(&rows.join(eol));
    s
}

#[tokio::test]
async fn csv_without_a_final_newline_keeps_its_last_row() {
    let env = env().await;
    let cases: Vec<(Vec<u8>, u64)> = vec![
        (b"a,b\n1,2".to_vec(), 1),
        (b"a,b\r\n1,2".to_vec(), 1),
        (b"a,b\n1,\"x\ny\"".to_vec(), 1),
        (b"a,b\n1,".to_vec(), 1),
        (many_rows(1_000, "\n").into_bytes(), 1_000),
        (many_rows(1_000, "\r\n").into_bytes(), 1_000),
        // Past the inference sample and past one decoded batch.
        (many_rows(70_000, "\n").into_bytes(), 70_000),
    ];
    for (data, rows) in cases {
        for chunk in [1, 7, 4096, 1 << 20] {
            if chunk < 64 && data.len() > 10_000 {
                continue;
            }
            let r = csv(&env, "tail", &data, chunk).await.unwrap();
            assert_eq!(
                r.rows,
                rows,
                "chunk {chunk}: {:?}",
                &data[..data.len().min(40)]
            );
            assert_eq!(total_rows(&read_all(&env, &r.dataset).await) as u64, rows);
        }
    }
    let r = csv(&env, "tail", many_rows(70_000, "\n").as_bytes(), 4096)
        .await
        .unwrap();
    let b = read_all(&env, &r.dataset).await;
    let last = b.last().unwrap();
    let ids = last
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(ids.value(ids.len() - 1), 69_999);

    // With the schema given, and without a header.
    let mut o = q(&[
        ("format", "csv"),
        ("schema", "a:int64,b:utf8"),
        ("mode", "replace"),
    ]);
    let r = env
        .ingestor
        .ingest("given", o.clone(), body("a,b\n1,x\n2,y", 3), None)
        .await
        .unwrap();
    assert_eq!(r.rows, 2);
    o.csv.header = Some(false);
    let r = env
        .ingestor
        .ingest("given", o, body("1,x\n2,y", 3), None)
        .await
        .unwrap();
    assert_eq!(r.rows, 2);

    // The bad-row location still names the unterminated last line.
    let mut bad = many_rows(2_000, "\n");
    bad.push_str("\n7,x,extra");
    let e = csv(&env, "tail", bad.as_bytes(), 4096).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("CSV line 2002: expected 2 fields, found 3"),
        "{e}"
    );
    let bad = "a,b\n1,2\nx,3";
    let e = env
        .ingestor
        .ingest(
            "typed",
            q(&[("format", "csv"), ("schema", "a:int64,b:int64")]),
            body(bad, 2),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CSV line 3, column 1"), "{e}");
}

#[tokio::test]
async fn ndjson_without_a_final_newline_keeps_its_last_row() {
    let env = env().await;
    for (data, rows) in [
        ("{\"a\": 1}\n{\"a\": 2}", 2u64),
        ("{\"a\": 1}\r\n{\"a\": 2}\r\n\r\n", 2),
        ("\u{feff}{\"a\": 1}\n\n{\"a\": 2}   ", 2),
    ] {
        for chunk in [1, 5, 4096] {
            let r = env
                .ingestor
                .ingest(
                    "j",
                    opts(Format::Ndjson, Mode::Replace),
                    body(data, chunk),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(r.rows, rows, "{data:?} chunk {chunk}");
        }
    }
    // Two objects on one line: read with the schema given (inference reads
    // line by line and refuses it, naming the line).
    let mut o = q(&[("format", "ndjson"), ("schema", "a:int64")]);
    o.mode = Mode::Replace;
    let r = env
        .ingestor
        .ingest("j2", o, body("{\"a\": 1} {\"a\": 2}\n{\"a\": 3}", 4), None)
        .await
        .unwrap();
    assert_eq!(r.rows, 3);
    let e = env
        .ingestor
        .ingest(
            "j3",
            opts(Format::Ndjson, Mode::Replace),
            body("{\"a\": 1} {\"a\": 2}\n", 4),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("NDJSON line 1"), "{e}");
    for bad in [
        "{\"a\": 1}\n{\"a\":",
        "{\"a\": 1}\n{\"a\": 2",
        "{\"a\": 1}\n5\n",
        "{\"a\": 1}\n[1]\n",
    ] {
        let e = env
            .ingestor
            .ingest("j", opts(Format::Ndjson, Mode::Replace), body(bad, 3), None)
            .await
            .unwrap_err();
        assert!(matches!(e, IngestError::BadData(_)), "{bad:?}: {e}");
    }
}

/// arrow-json rounds a number it reads into an integer column (`1.5` → 1);
/// an ingest never does: past the inference sample, into an existing
/// dataset's integer column, or as a float: a 400 naming the line.
#[tokio::test]
async fn ndjson_never_rounds_a_number_into_an_integer_column() {
    let env = env().await;
    let mut late = String::new();
    for i in 0..1500 {
        late.push_str(&format!("{{\"id\": {i}, \"v\": {i}}}\n"));
    }
    late.push_str("{\"id\": 1500, \"v\": 1.5}\n");
    let e = env
        .ingestor
        .ingest(
            "n",
            opts(Format::Ndjson, Mode::Append),
            body(late, 4096),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, IngestError::BadData(m) if m.contains("NDJSON line 1501") && m.contains("1.5")),
        "{e}"
    );
    assert!(
        env.catalog.get("n").await.is_err(),
        "nothing was registered"
    );
    // Integers, then (into the int64 column) integral floats: exact.
    for (data, rows) in [
        ("{\"id\": 1, \"v\": 2}\n{\"id\": 2, \"v\": 3}\n", 2),
        ("{\"id\": 3, \"v\": 4.0}\n{\"id\": 4, \"v\": 5e1}\n", 2),
    ] {
        let r = env
            .ingestor
            .ingest("n", opts(Format::Ndjson, Mode::Append), body(data, 7), None)
            .await
            .unwrap();
        assert_eq!(r.rows, rows);
    }
    let e = env
        .ingestor
        .ingest(
            "n",
            opts(Format::Ndjson, Mode::Append),
            body("{\"id\": 5, \"v\": 2.7}\n", 5),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, IngestError::BadData(m) if m.contains("NDJSON line 1") && m.contains("\"v\"")),
        "{e}"
    );
    let rows: usize = read_all(&env, "n").await.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 4);
}

/// Every input here used to be (or could be) read short; now exact or 400.
#[tokio::test]
async fn every_odd_csv_is_read_exactly_or_refused() {
    let env = env().await;
    let mut long_quoted = String::from("id,text\n1,\"");
    long_quoted.push_str(&"line\n".repeat(5_000));
    long_quoted.push_str("end\"\n2,short\n3,\"a,b\"\n");
    let mut one_col_quoted = String::from("text\n\"");
    one_col_quoted.push_str(&"l\n".repeat(3_000));
    one_col_quoted.push_str("\"\n\"x\"\n");
    let ok: Vec<(&str, Vec<u8>, u64)> = vec![
        ("blank lines", b"a,b\n\n1,2\n\n\n3,4\n\n".to_vec(), 2),
        ("BOM", b"\xef\xbb\xbfa,b\n1,2\n".to_vec(), 1),
        ("CR-only line ends", b"a,b\r1,2\r3,4".to_vec(), 2),
        ("a final line of only CR", b"a,b\n1,2\n\r".to_vec(), 1),
        ("header only", b"a,b\n".to_vec(), 0),
        ("header only, no newline", b"a,b".to_vec(), 0),
        (
            "a quoted field over many chunks and lines",
            long_quoted.into_bytes(),
            3,
        ),
        (
            "one column, first value over the sample",
            one_col_quoted.into_bytes(),
            2,
        ),
        // DuckDB: in a one-column file a blank line is a missing value.
        ("one column with blank lines", b"x\n1\n\n2\n\n".to_vec(), 4),
        (
            "one column, CRLF blank lines",
            b"x\r\n1\r\n\r\n2".to_vec(),
            3,
        ),
        (
            "trailing spaces inside values",
            b"a,b\n1,x  \n2, y\n".to_vec(),
            2,
        ),
    ];
    for (what, data, rows) in ok {
        for chunk in [1, 3, 64, 1 << 20] {
            let r = csv(&env, "odd", &data, chunk).await;
            let r = r.unwrap_or_else(|e| panic!("{what} (chunk {chunk}): {e}"));
            assert_eq!(r.rows, rows, "{what} (chunk {chunk})");
        }
    }
    let r = csv(&env, "odd", b"a,b\n1,x  \n2, y\n", 4).await.unwrap();
    let b = read_all(&env, &r.dataset).await;
    assert_eq!(
        strings(&b[0], 1),
        vec![Some("x  ".into()), Some(" y".into())]
    );

    let refused: Vec<(&str, &[u8], IngestError, &str)> = vec![
        ("empty", b"", IngestError::EmptyInput, ""),
        ("only line ends", b"\n\r\n\n", IngestError::EmptyInput, ""),
        (
            "a lone quote",
            b"a,b\n1,\"x\n2,y\n3,z\n",
            bad(),
            "CSV line 2: a quoted field opened with '\"' is never closed",
        ),
        (
            "a quote open at the end",
            b"a,b\n1,2\n3,\"x",
            bad(),
            "CSV line 3: a quoted field",
        ),
        (
            "a line of spaces",
            b"a,b\n1,2\n  \n",
            bad(),
            "CSV line 3: expected 2 fields, found 1",
        ),
        (
            "a short row",
            b"a,b,c\n1,2,3\n4,5\n",
            bad(),
            "CSV line 3: expected 3 fields, found 2",
        ),
    ];
    for (what, data, want, text) in refused {
        for chunk in [1, 4096] {
            let e = csv(&env, "refused", data, chunk).await.unwrap_err();
            assert_eq!(
                std::mem::discriminant(&e),
                std::mem::discriminant(&want),
                "{what}: {e}"
            );
            assert!(e.to_string().contains(text), "{what}: {e}");
        }
    }
    assert!(
        all_keys(&env).await.iter().all(|k| !k.contains("refused")),
        "nothing written"
    );
}

fn bad() -> IngestError {
    IngestError::BadData(String::new())
}

/// Body, then what is expected: header, delimiter, quote, rows, column names.
type Sniffed<'a> = (&'a [u8], bool, &'a str, &'a str, u64, Vec<&'a str>);

#[tokio::test]
async fn the_dialect_and_header_are_detected_and_reported() {
    let env = env().await;
    let cases: Vec<Sniffed> = vec![
        (b"a;b;c\n1;2,5;x\n", true, ";", "\"", 1, vec!["a", "b", "c"]),
        (b"a|b\n1|2\n", true, "|", "\"", 1, vec!["a", "b"]),
        (b"a\tb\n1\t2\n", true, "\t", "\"", 1, vec!["a", "b"]),
        (b"k,v\n1,'x,y'\n", true, ",", "'", 1, vec!["k", "v"]),
        // No header: the first row fits the types of the others.
        (
            b"hello,1,\",\"\nbye,2,x\n",
            false,
            ",",
            "\"",
            2,
            vec!["column0", "column1", "column2"],
        ),
        (b"1,2\n", false, ",", "\"", 1, vec!["column0", "column1"]),
        (b"a,1\n", false, ",", "\"", 1, vec!["column0", "column1"]),
        (b"x,y\nname,other\n", true, ",", "\"", 1, vec!["x", "y"]),
    ];
    for (data, header, delimiter, quote, rows, names) in cases {
        let r = csv(&env, "sniffed", data, 2).await.unwrap();
        let c = r.csv.expect("a CSV report");
        let what = String::from_utf8_lossy(data);
        assert_eq!(c.header, header, "{what}");
        assert_eq!(c.delimiter, delimiter, "{what}");
        assert_eq!(c.quote, quote, "{what}");
        assert_eq!(r.rows, rows, "{what}");
        assert_eq!(c.detected, vec!["header", "delimiter", "quote", "escape"]);
        let b = read_all(&env, &r.dataset).await;
        let got: Vec<String> = b[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(got, names, "{what}");
    }
    // A backslash-escaped quote.
    let r = csv(&env, "esc", b"a,b\n1,\"say \\\"hi\\\"\"\n", 4)
        .await
        .unwrap();
    assert_eq!(r.csv.as_ref().unwrap().escape, "\\");
    assert_eq!(
        strings(&read_all(&env, &r.dataset).await[0], 1),
        vec![Some("say \"hi\"".into())]
    );

    // Options override detection.
    let r = env
        .ingestor
        .ingest(
            "given",
            q(&[("format", "csv"), ("header", "false"), ("delimiter", ";")]),
            body("a,b;c\n1;2\n", 3),
            None,
        )
        .await
        .unwrap();
    let c = r.csv.unwrap();
    assert_eq!((c.header, c.delimiter.as_str()), (false, ";"));
    assert_eq!(c.detected, vec!["quote", "escape"]);
    assert_eq!(r.rows, 2);
}

#[tokio::test]
async fn repeated_and_empty_header_names_are_renamed() {
    let env = env().await;
    let r = csv(&env, "dupes", b"a,a,,A,a_1,a\n1,2,3,4,5,6\n", 5)
        .await
        .unwrap();
    let b = read_all(&env, &r.dataset).await;
    let names: Vec<String> = b[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // What DuckDB names them.
    assert_eq!(names, ["a", "a_1", "column2", "A_2", "a_1_1", "a_3"]);
    let renamed = r.csv.unwrap().renamed;
    assert_eq!(renamed.len(), 5);
    assert_eq!(
        (
            renamed[0].column,
            renamed[0].from.as_str(),
            renamed[0].to.as_str()
        ),
        (2, "a", "a_1")
    );
    // An append with the same header lands in the same columns.
    let r = env
        .ingestor
        .ingest(
            &r.dataset,
            opts(Format::Csv, Mode::Append),
            body("a,a,,A,a_1,a\n7,8,9,10,11,12\n", 5),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.manifest.row_count, 2);
}
