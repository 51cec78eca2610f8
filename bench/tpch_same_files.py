#!/usr/bin/env python3
"""DataFusion-python and DuckDB over the lakehouse's own ingested objects.

Separates the service's overhead from the file layout: the peers script reads
tpchgen's files (snappy, ~114k-row row groups), the lakehouse reads what
/ingest wrote (zstd, larger row groups). Point this at a directory with one
sub-directory of Parquet objects per table (symlinks into
<data_dir>/objects/datasets/<table>/ do).

  tpch_same_files.py DIR [--runs 3]
"""
import argparse, math, os, time

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--runs", type=int, default=3)
p.add_argument("--engines", default="duckdb,datafusion-python")
p.add_argument("--queries", default=os.path.join(here, "..", "..", "shared", "bench", "tpch"))
a = p.parse_args()
tables = ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
queries = {i: open(os.path.join(a.queries, f"q{i}.sql")).read() for i in range(1, 23)}

def duckdb_engine():
    import duckdb
    con = duckdb.connect()
    for t in tables:
        con.execute(f"create view {t} as select * from read_parquet('{a.dir}/{t}/*.parquet')")
    return lambda sql: con.sql(sql).fetchall()

def datafusion_engine():
    import datafusion
    ctx = datafusion.SessionContext()
    for t in tables:
        ctx.register_parquet(t, f"{a.dir}/{t}/")
    return lambda sql: ctx.sql(sql).collect()

for name, make in [("duckdb", duckdb_engine), ("datafusion-python", datafusion_engine)]:
    if name not in a.engines.split(","):
        continue
    run = make()
    times = []
    for i in range(1, 23):
        best = None
        for _ in range(a.runs):
            t = time.perf_counter(); run(queries[i]); dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        times.append(best)
        print(f"engine={name} query=q{i} best_s={best:.4f}", flush=True)
    print(f"engine={name} geomean_s={math.exp(sum(math.log(x) for x in times) / len(times)):.4f}", flush=True)
