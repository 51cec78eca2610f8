"""Reads CSV files with DuckDB's read_csv and Python's csv module, for the
ingestd tests that compare ingest with them.

    python3 read_csv.py property FILE...   # dialect given: , " "
    python3 read_csv.py sniff FILE...      # everything detected

Prints one JSON object per file, in order:
    {"duckdb": {"columns": [...], "rows": [[...]], "header": bool,
                "delimiter": str, "quote": str, "escape": str}
               or {"error": "..."},
     "pycsv": [[...]]}        # every non-empty record, header included
Values are JSON: numbers, booleans, null and strings (anything else as str).
"""

import csv
import decimal
import json
import math
import sys

import duckdb


def value(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return str(v)


def quote_sql(s):
    return "'" + s.replace("'", "''") + "'"


def read_duckdb(con, path, mode):
    args = quote_sql(path)
    if mode == "property":
        args += ", delim=',', quote='\"', escape='\"'"
    try:
        rel = con.sql(f"SELECT * FROM read_csv({args})")
        columns = list(rel.columns)
        rows = [[value(v) for v in row] for row in rel.fetchall()]
        sniffed = con.sql(
            f"SELECT HasHeader, Delimiter, Quote, Escape FROM sniff_csv({args})"
        ).fetchall()[0]
    except duckdb.Error as e:
        return {"error": str(e).splitlines()[0]}
    return {
        "columns": columns,
        "rows": rows,
        "header": bool(sniffed[0]),
        "delimiter": sniffed[1],
        "quote": sniffed[2],
        "escape": sniffed[3],
    }


def read_pycsv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [row for row in csv.reader(f) if row]


def main():
    mode = sys.argv[1]
    con = duckdb.connect()
    for path in sys.argv[2:]:
        out = {"duckdb": read_duckdb(con, path, mode), "pycsv": read_pycsv(path)}
        print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
