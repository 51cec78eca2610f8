"""Peer of bench/src/bin/dml.rs: the same DELETE / UPDATE statement on DuckDB's own
copy of TPC-H `lineitem`, loaded from the same Parquet file.

Each run starts from a fresh DuckDB database file: `CREATE TABLE lineitem AS SELECT *
FROM read_parquet(...)`, CHECKPOINT, close and reopen (so the statement reads the
file like the lakehouse reads its objects, not DuckDB's buffer pool), then times the
statement alone (autocommit: it is durable in DuckDB's WAL when it returns). The
CHECKPOINT that folds the change into the database file is timed separately, for
information only. The process's peak RSS is reset before the statement (Linux
clear_refs) and read after it.

Usage: python3 bench/dml_peer.py PARQUET WORKDIR --sql SQL --check SQL [--runs N]
Prints one line per run:
  peer=duckdb run=I load_s=… stmt_s=… rows=… checkpoint_s=… check=… peak_rss_mib=…
"""
import argparse
import os
import shutil
import time

import duckdb


def rss_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def one_run(parquet, workdir, sql, check):
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    db = os.path.join(workdir, "lineitem.duckdb")
    t = time.perf_counter()
    con = duckdb.connect(db)
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM read_parquet('{parquet}')")
    con.execute("CHECKPOINT")
    con.close()
    load_s = time.perf_counter() - t
    con = duckdb.connect(db)
    reset_peak_rss()
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()[0][0]
    stmt_s = time.perf_counter() - t
    peak = rss_mib("VmHWM")
    t = time.perf_counter()
    con.execute("CHECKPOINT")
    checkpoint_s = time.perf_counter() - t
    value = con.execute(check).fetchall()[0][0]
    con.close()
    shutil.rmtree(workdir)
    return load_s, stmt_s, rows, checkpoint_s, value, peak


def main():
    p = argparse.ArgumentParser()
    p.add_argument("parquet")
    p.add_argument("workdir")
    p.add_argument("--sql", required=True)
    p.add_argument("--check", required=True)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    parquet = os.path.abspath(a.parquet)
    for i in range(a.runs):
        load_s, stmt_s, rows, checkpoint_s, value, peak = one_run(parquet, a.workdir, a.sql, a.check)
        print(
            f"peer=duckdb run={i + 1} load_s={load_s:.3f} stmt_s={stmt_s:.4f} rows={rows} "
            f"checkpoint_s={checkpoint_s:.4f} check={value} peak_rss_mib={peak:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
