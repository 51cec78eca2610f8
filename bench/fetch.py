#!/usr/bin/env python3
"""Result-fetch benchmark: one N-row result pulled over Arrow Flight SQL (ADBC),
the PostgreSQL protocol (psycopg, binary, no COPY) and HTTP Arrow, next to
DuckDB's in-process fetch of the same query on the same Parquet objects, in
one run. Prints the median rows/s of each and Flight SQL / DuckDB.

Usage: bench/fetch.py --lakehouse target/release/lakehouse [--rows N] [--runs N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

TOKEN = "bench-admin-token-0123456789"


def make_table(rows):
    """id, qty, price, name (1000 distinct), day: a typical fact table."""
    con = duckdb.connect()
    return con.sql(f"""
        SELECT i::BIGINT AS id, (i % 97)::INTEGER AS qty, (i * 0.25)::DOUBLE AS price,
               'item-' || (i % 1000)::VARCHAR AS name,
               DATE '2020-01-01' + (i % 1500)::INTEGER AS day
        FROM range({rows}) t(i)""").arrow().read_all()


def start(binary, data_dir, rows):
    env = dict(os.environ,
               LAKEHOUSE_LOG="warn",
               LAKEHOUSE__AUTH__TOKENS=f"bench:admin:{TOKEN}",
               LAKEHOUSE__QUERYD__MAX_ROWS=str(rows * 2),
               LAKEHOUSE__QUERYD__PG_BIND="127.0.0.1:0",
               LAKEHOUSE__QUERYD__FLIGHT_BIND="127.0.0.1:0")
    p = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", data_dir],
                         stdout=subprocess.PIPE, text=True, env=env)
    http = p.stdout.readline().split("on ", 1)[1].strip()
    pg = int(p.stdout.readline().rsplit(":", 1)[1])
    flight = int(p.stdout.readline().rsplit(":", 1)[1])
    return p, http, pg, flight


def pb_bytes(field, data):
    """One length-delimited protobuf field."""
    n, varint = len(data), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        varint.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([field << 3 | 2]) + bytes(varint) + data


def any_message(name, value):
    """A `google.protobuf.Any` holding `value`, as Flight SQL commands travel."""
    return pb_bytes(1, f"type.googleapis.com/{name}".encode()) + pb_bytes(2, value)


def post(url, body, content_type="application/octet-stream"):
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "authorization": f"Bearer {TOKEN}", "content-type": content_type})
    return urllib.request.urlopen(req, timeout=3600)


def timed(fn, runs):
    times, rows = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
        assert rows is None or rows == n, (rows, n)
        rows = n
    return rows, statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lakehouse", required=True)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg-runs", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        proc, http, pg_port, flight_port = start(args.lakehouse, data, args.rows)
        try:
            table = make_table(args.rows)
            src = os.path.join(tmp, "fetch.parquet")
            pq.write_table(table, src)
            with open(src, "rb") as f:
                post(f"{http}/ingest/fetchbench?format=parquet", f.read()).read()
            manifest = json.load(urllib.request.urlopen(urllib.request.Request(
                f"{http}/catalog/manifest/fetchbench",
                headers={"authorization": f"Bearer {TOKEN}"})))
            files = [os.path.join(data, "objects", o["key"]) for o in manifest["objects"]]
            sql = "SELECT id, qty, price, name, day FROM fetchbench"
            results = run_all(sql, files, http, pg_port, flight_port, args)
        finally:
            proc.terminate()
            proc.wait()
    duck = results["duckdb (in-process)"]
    for name, (rows, secs) in results.items():
        print(f"{name:<32} {rows:>10} rows  {secs:7.3f} s  {rows / secs / 1e6:7.2f} M rows/s")
    fl = results["flight sql (adbc)"]
    ratio = (fl[0] / fl[1]) / (duck[0] / duck[1])
    print(f"flight sql / duckdb fetch: {ratio:.2f}x (goal >= 0.8x)")


def run_all(sql, files, http, pg_port, flight_port, args):
    import adbc_driver_flightsql.dbapi as flightsql
    import psycopg

    out = {}
    con = duckdb.connect()
    con.sql(f"CREATE VIEW fetchbench AS SELECT * FROM read_parquet({files!r})")
    out["duckdb (in-process)"] = timed(lambda: con.sql(sql).arrow().read_all().num_rows, args.runs)

    conn = flightsql.connect(f"grpc://127.0.0.1:{flight_port}", db_kwargs={
        "adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"})
    cur = conn.cursor()

    def flight():
        cur.execute(sql)
        return cur.fetch_arrow_table().num_rows

    out["flight sql (adbc)"] = timed(flight, args.runs)
    cur.close()
    conn.close()

    # The same Flight SQL statement through Arrow's C++ Flight client: tells
    # the server's speed from the ADBC driver's.
    import pyarrow.flight as fl

    client = fl.connect(f"grpc://127.0.0.1:{flight_port}")
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    command = any_message("arrow.flight.protocol.sql.CommandStatementQuery", pb_bytes(1, sql.encode()))

    def flight_cpp():
        info = client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
        return client.do_get(info.endpoints[0].ticket, options).read_all().num_rows

    out["flight sql (pyarrow.flight)"] = timed(flight_cpp, args.runs)
    client.close()

    def http_arrow():
        r = post(f"{http}/query/sql", json.dumps({"sql": sql, "format": "arrow"}).encode(),
                 "application/json")
        return pa.ipc.open_stream(r).read_all().num_rows

    out["http arrow (pyarrow)"] = timed(http_arrow, args.runs)

    pconn = psycopg.connect(f"host=127.0.0.1 port={pg_port} dbname=lakehouse user=bench "
                            f"password={TOKEN} sslmode=disable", autocommit=True)

    def pg():
        n = 0
        with pconn.cursor(binary=True) as c:
            c.execute(sql)
            while batch := c.fetchmany(100_000):
                n += len(batch)
        return n

    out["postgres (psycopg, binary)"] = timed(pg, args.pg_runs)
    pconn.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
