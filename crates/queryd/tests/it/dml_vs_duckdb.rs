//! Write statements checked against DuckDB (from PyPI) on the same data:
//! each case loads the same CSVs into both, runs the same statements, and
//! compares the rows each statement changed and the table after them —
//! NULL semantics, multi-column keys, MERGE with every clause, CTAS.
//!
//! Without `python3` and the `duckdb` package the comparison is skipped
//! with a message, unless `LAKEHOUSE_TEST_REQUIRE_PY=1` (as in CI).

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::writes::write;
use super::{Env, query_rows};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/duckdb_dml.py");

const TARGET: &str = "id,grp,name,amount\n\
1,a,alpha,10.5\n\
2,a,beta,\n\
3,b,,30\n\
4,b,delta,40.25\n\
5,,eps,50\n\
6,c,zeta,-1";

const SOURCE: &str = "id,grp,name,amount\r\n\
2,a,BETA,22\r\n\
3,x,GAMMA,\r\n\
7,c,eta,70\r\n\
8,,theta,80\r\n\
6,c,ZETA,6\r\n";

const ALL: &str = "SELECT * FROM t ORDER BY id, grp, name";

struct Case {
    name: &'static str,
    steps: &'static [&'static str],
    query: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "delete: NULL never satisfies the predicate",
        steps: &["DELETE FROM t WHERE amount > 20 OR grp <> 'a'"],
        query: ALL,
    },
    Case {
        name: "delete: IS NULL and NOT IN",
        steps: &["DELETE FROM t WHERE name IS NULL OR id NOT IN (1, 2, 3)"],
        query: ALL,
    },
    Case {
        name: "delete: every row",
        steps: &[
            "DELETE FROM t",
            "INSERT INTO t VALUES (1, 'z', 'back', 1.0)",
        ],
        query: ALL,
    },
    Case {
        name: "update: expressions over NULLs",
        steps: &[
            "UPDATE t SET amount = amount * 2, name = upper(name) WHERE grp = 'b' OR amount IS NULL",
        ],
        query: ALL,
    },
    Case {
        name: "update: CASE, coalesce, set NULL",
        steps: &[
            "UPDATE t SET name = CASE WHEN amount IS NULL THEN 'none' ELSE coalesce(name, '?') END",
            "UPDATE t SET amount = NULL WHERE id % 2 = 0",
            "UPDATE t SET grp = 'n' WHERE grp IS NULL",
        ],
        query: ALL,
    },
    Case {
        name: "insert: VALUES with NULLs, a column list, SELECT from itself",
        steps: &[
            "INSERT INTO t VALUES (9, NULL, 'nine', NULL), (10, 'a', NULL, 1e3)",
            "INSERT INTO t (id, name) VALUES (20, 'twenty')",
            "INSERT INTO t SELECT id + 100, grp, name, amount FROM t WHERE amount IS NOT NULL",
        ],
        query: ALL,
    },
    Case {
        name: "create table as select, then write to it",
        steps: &[
            "CREATE TABLE g AS SELECT grp, count(*) AS n, sum(amount) AS total FROM t GROUP BY grp",
            "UPDATE g SET total = 0 WHERE total IS NULL OR grp IS NULL",
        ],
        query: "SELECT * FROM g ORDER BY grp NULLS FIRST",
    },
    Case {
        name: "merge: upsert",
        steps: &["MERGE INTO t USING s ON t.id = s.id \
            WHEN MATCHED THEN UPDATE SET name = s.name, amount = s.amount \
            WHEN NOT MATCHED THEN INSERT (id, grp, name, amount) VALUES (s.id, s.grp, s.name, s.amount)"],
        query: ALL,
    },
    Case {
        name: "merge: every clause, with conditions",
        steps: &["MERGE INTO t USING s ON t.id = s.id \
            WHEN MATCHED AND s.amount IS NULL THEN DELETE \
            WHEN MATCHED THEN UPDATE SET amount = t.amount + s.amount \
            WHEN NOT MATCHED AND s.grp IS NOT NULL THEN INSERT VALUES (s.id, s.grp, s.name, s.amount) \
            WHEN NOT MATCHED BY SOURCE AND t.amount < 20 THEN DELETE \
            WHEN NOT MATCHED BY SOURCE THEN UPDATE SET name = 'unsent'"],
        query: ALL,
    },
    Case {
        name: "merge: two-column key, NULL keys never match",
        steps: &["MERGE INTO t USING s ON t.id = s.id AND t.grp = s.grp \
            WHEN MATCHED THEN UPDATE SET amount = s.amount \
            WHEN NOT MATCHED THEN INSERT (id, grp, name) VALUES (s.id, s.grp, s.name)"],
        query: ALL,
    },
    Case {
        name: "merge: an aggregated subquery as the source",
        steps: &[
            "MERGE INTO t USING (SELECT grp, max(amount) AS top FROM s WHERE grp IS NOT NULL GROUP BY grp) AS u \
            ON t.grp = u.grp AND t.id < 5 \
            WHEN MATCHED AND u.top IS NOT NULL THEN UPDATE SET amount = u.top \
            WHEN MATCHED THEN DELETE",
        ],
        query: ALL,
    },
];

/// Whether DuckDB can run; panics when it is required and cannot.
fn duckdb_available() -> bool {
    let why = match Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
    {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    if std::env::var("LAKEHOUSE_TEST_REQUIRE_PY").as_deref() == Ok("1") {
        panic!("LAKEHOUSE_TEST_REQUIRE_PY=1 but DuckDB cannot run: {why}");
    }
    eprintln!("skipping the DuckDB comparison: {why}");
    false
}

/// DuckDB's `{counts, rows}` for every case.
fn duckdb_answers() -> Vec<Value> {
    let input: Vec<Value> = CASES
        .iter()
        .map(|c| json!({"tables": {"t": TARGET, "s": SOURCE}, "steps": c.steps, "query": c.query}))
        .collect();
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run duckdb_dml.py");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "duckdb_dml.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), CASES.len());
    answers
}

#[tokio::test]
async fn every_statement_matches_duckdb() {
    if !duckdb_available() {
        return;
    }
    let answers = duckdb_answers();
    for (case, want) in CASES.iter().zip(answers) {
        let env = Env::new().await;
        env.ingest("t", lakehouse_ingestd::Format::Csv, TARGET)
            .await;
        env.ingest("s", lakehouse_ingestd::Format::Csv, SOURCE)
            .await;
        let engine = env.engine(Default::default());
        let mut counts = Vec::new();
        for sql in case.steps {
            let a = write(&engine, sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {sql}: {e}", case.name));
            let changed: u64 = a[2..5].iter().map(|n| n.parse::<u64>().unwrap()).sum();
            counts.push(json!(changed));
        }
        assert_eq!(
            Value::Array(counts),
            want["counts"],
            "{}: rows changed",
            case.name
        );
        let got = query_rows(&engine, case.query).await;
        assert_eq!(json!(got), want["rows"], "{}: the table after", case.name);
    }
}
