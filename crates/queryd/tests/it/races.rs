//! Write statements racing other writers on the same table: a DELETE
//! racing appends (both land), two UPDATEs of the same rows (no update is
//! lost: each one either lands or answers `write_conflict`), a MERGE racing
//! a compaction (the rows are right whichever commits first).

use std::sync::Arc;

use lakehouse_catalogd::CompactOptions;
use lakehouse_queryd::{QueryEngine, QueryError};

use super::writes::write;
use super::{Env, query_rows, table};

/// `n` rows `id,grp,n` with ids from `first`, each in its own group of 10.
fn rows_csv(first: u64, n: u64) -> String {
    let mut csv = String::from("id,grp,n\n");
    for id in first..first + n {
        csv.push_str(&format!("{id},{},{}\n", id % 10, id));
    }
    csv
}

async fn one(engine: &QueryEngine, sql: &str) -> String {
    query_rows(engine, sql).await.remove(0).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_appends_keeps_every_append() {
    for round in 0..3 {
        let env = Arc::new(Env::new().await);
        env.ingest("ev", lakehouse_ingestd::Format::Csv, &rows_csv(1, 100))
            .await;
        let engine = env.engine(Default::default());
        let appends = {
            let env = env.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    let csv = rows_csv(1000 + i * 10, 10);
                    env.ingest("ev", lakehouse_ingestd::Format::Csv, &csv).await;
                }
            })
        };
        let a = write(&engine, "DELETE FROM ev WHERE id <= 50")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(a[4], "50", "round {round}");
        appends.await.unwrap();
        assert_eq!(
            query_rows(
                &engine,
                "SELECT count(*), count(*) FILTER (WHERE id <= 50), count(*) FILTER (WHERE id >= 1000) FROM ev"
            )
            .await,
            table(&[&["100", "0", "50"]]),
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_updates_of_the_same_rows_lose_no_update() {
    for round in 0..3 {
        let env = Env::new().await;
        env.ingest("c", lakehouse_ingestd::Format::Csv, &rows_csv(1, 20))
            .await;
        let engine = env.engine(Default::default());
        let before: i64 = one(&engine, "SELECT sum(n) FROM c").await.parse().unwrap();
        let sql = "UPDATE c SET n = n + 1 WHERE grp < 5";
        let (a, b, c) = tokio::join!(
            write(&engine, sql),
            write(&engine, sql),
            write(&engine, sql)
        );
        let mut landed = 0;
        for r in [a, b, c] {
            match r {
                Ok(answer) => {
                    assert_eq!(answer[3], "10", "round {round}: rows updated");
                    landed += 1;
                }
                Err(e @ QueryError::WriteConflict { .. }) => {
                    assert_eq!(e.status(), http::StatusCode::CONFLICT);
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(landed >= 1, "round {round}: one update always lands");
        let after: i64 = one(&engine, "SELECT sum(n) FROM c").await.parse().unwrap();
        assert_eq!(after, before + 10 * landed, "round {round}: no lost update");
        assert_eq!(one(&engine, "SELECT count(*) FROM c").await, "20");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_racing_a_compaction_keeps_the_right_rows() {
    for round in 0..3 {
        let env = Arc::new(Env::new().await);
        // Many small objects, so the compaction has work.
        for i in 0..8 {
            env.ingest("m", lakehouse_ingestd::Format::Csv, &rows_csv(i * 10, 10))
                .await;
        }
        env.ingest("src", lakehouse_ingestd::Format::Csv, &rows_csv(75, 10))
            .await;
        let engine = env.engine(Default::default());
        let compaction = {
            let env = env.clone();
            tokio::spawn(async move { env.catalog.compact("m", CompactOptions::default()).await })
        };
        let merged = write(
            &engine,
            "MERGE INTO m USING src ON m.id = src.id \
             WHEN MATCHED THEN UPDATE SET n = -src.n \
             WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.grp, src.n)",
        )
        .await;
        let compacted = compaction.await.unwrap();
        let merged = merged.unwrap_or_else(|e| panic!("round {round}: merge: {e}"));
        assert_eq!(&merged[2..5], ["5", "5", "0"], "round {round}");
        if let Err(e) = &compacted {
            eprintln!("round {round}: the compaction lost the race: {e}");
        }
        assert_eq!(
            query_rows(
                &engine,
                "SELECT count(*), count(DISTINCT id), sum(CASE WHEN n < 0 THEN 1 ELSE 0 END), max(id) FROM m"
            )
            .await,
            table(&[&["85", "85", "5", "84"]]),
            "round {round}"
        );
    }
}
