"""DuckDB's answer to the write-statement cases of `dml_vs_duckdb.rs`.

Reads a JSON list of cases on stdin, each {"tables": {name: csv}, "steps":
[sql], "query": sql}; loads every table with DuckDB's read_csv, runs the
steps in order, and prints one JSON line per case: {"counts": [rows each
step changed], "rows": [[cell as text]]}, cells formatted as Arrow's
display does (NULL, true/false, shortest float repr).
"""

import datetime
import json
import os
import sys
import tempfile

import duckdb


def cell(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v)


def run(case, tmp):
    con = duckdb.connect()
    for name, csv in case["tables"].items():
        path = os.path.join(tmp, f"{name}.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write(csv)
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_csv(?, header = true)", [path]
        )
    counts = []
    for sql in case["steps"]:
        out = con.execute(sql).fetchall()
        counts.append(out[0][0] if out else 0)
    rows = [[cell(v) for v in r] for r in con.execute(case["query"]).fetchall()]
    return {"counts": counts, "rows": rows}


def main():
    cases = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            print(json.dumps(run(case, tmp)))


if __name__ == "__main__":
    main()
