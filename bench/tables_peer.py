"""Peer of bench/src/bin/tables.rs: the same appends, queries and compaction on a
Delta table written by the Python `deltalake` package (delta-rs) and queried with
polars — the Delta Lake stack people use without a server.

Usage: python3 bench/tables_peer.py DIR APPENDS ROWS
Prints `key=value` lines: peer, appends_s, files_before, selective_before_s,
scan_before_s, compact_s, files_after, selective_after_s, scan_after_s, sum_check.
"""
import statistics
import sys
import time

import deltalake
import polars as pl
import pyarrow as pa


def batch(i, rows):
    start = i * rows
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table({
        "id": ids,
        "k": pa.array([(x % 100) for x in range(start, start + rows)], pa.int64()),
        "v": pa.array([float(x % 1000) / 10.0 for x in range(start, start + rows)], pa.float64()),
    })


def timed(fn, runs=5):
    ts = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def queries(path, probe):
    sel, n = timed(lambda: pl.scan_delta(path).filter(pl.col("id") == probe).select(pl.col("v").sum()).collect().item())
    scan, s = timed(lambda: pl.scan_delta(path).group_by("k").agg(pl.col("v").sum()).select(pl.col("v").sum()).collect().item())
    return sel, scan, s


def main():
    path, appends, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    t = time.perf_counter()
    for i in range(appends):
        deltalake.write_deltalake(path, batch(i, rows), mode="append")
    appends_s = time.perf_counter() - t
    probe = appends * rows // 2 + 7
    files_before = len(deltalake.DeltaTable(path).file_uris())
    sel_b, scan_b, s = queries(path, probe)
    t = time.perf_counter()
    deltalake.DeltaTable(path).optimize.compact()
    compact_s = time.perf_counter() - t
    files_after = len(deltalake.DeltaTable(path).file_uris())
    sel_a, scan_a, s2 = queries(path, probe)
    assert abs(s - s2) < 1e-6 * max(1.0, abs(s)), (s, s2)
    print(
        f"peer=deltalake+polars appends_s={appends_s:.3f} files_before={files_before} "
        f"selective_before_s={sel_b:.4f} scan_before_s={scan_b:.4f} compact_s={compact_s:.3f} "
        f"files_after={files_after} selective_after_s={sel_a:.4f} scan_after_s={scan_a:.4f} sum_check={s:.1f}"
    )


if __name__ == "__main__":
    main()
