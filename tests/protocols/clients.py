#!/usr/bin/env python3
"""Real-client checks of lakehouse's PostgreSQL and Flight SQL listeners.

Run by crates/lakehouse/tests/it/protocols.rs against a live server holding
the fixture dataset `sales` (ids 1-3, see FIXTURE below); also usable by
hand:

    python3 tests/protocols/clients.py psycopg PORT READ_TOKEN
    python3 tests/protocols/clients.py adbc PORT READ_TOKEN
    python3 tests/protocols/clients.py sqlalchemy PORT READ_TOKEN
    python3 tests/protocols/clients.py adbc-dataframes PORT READ_TOKEN
    python3 tests/protocols/clients.py adbc-limits PORT READ_TOKEN
    python3 tests/protocols/clients.py psycopg-limits PORT READ_TOKEN
    python3 tests/protocols/clients.py psycopg-writes PORT READ_TOKEN WRITE_TOKEN
    python3 tests/protocols/clients.py adbc-writes PORT READ_TOKEN WRITE_TOKEN
    python3 tests/protocols/clients.py adbc-hostile-tokens PORT READ_TOKEN
    python3 tests/protocols/clients.py psycopg-vectors PORT READ_TOKEN
    python3 tests/protocols/clients.py adbc-vectors PORT READ_TOKEN
        (a server with the dataset `docs` and the index `docs_idx`, see DOCS)
    python3 tests/protocols/clients.py psycopg-tls PORT READ_TOKEN CA_PEM
    python3 tests/protocols/clients.py psycopg-tls-required PORT READ_TOKEN CA_PEM
    python3 tests/protocols/clients.py adbc-tls PORT READ_TOKEN CA_PEM
        (a server with [queryd].tls_cert/tls_key from a certificate CA_PEM signed;
        tls-required: also [queryd].tls_required = true)
        (a server with max_rows=5, timeout_secs=1, memory_limit=4MiB)
    python3 tests/protocols/clients.py hold-pg PORT TOKEN SQL   (runs SQL, never returns)
    python3 tests/protocols/clients.py hold-flight PORT TOKEN SQL

Exits 0 when every check passed; a failed check raises (non-zero exit, with
the traceback). Prints one line per check.
"""

import datetime as dt
import decimal
import sys

# The rows the Rust test ingests (id, name, price, qty, ok, day, ts, tsz, amount, tags).
FIXTURE = [
    (1, "a", 1.5, 10, True, dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1),
     dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=dt.timezone.utc), decimal.Decimal("1.25"), ["x"]),
    (2, "b", 2.5, 20, False, dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
     dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc), decimal.Decimal("-2.50"), ["y", "z"]),
    (3, "c", None, 30, None, dt.date(2024, 1, 3), dt.datetime(2024, 1, 3, 0, 0, 0),
     dt.datetime(2024, 1, 3, 0, 0, 0, tzinfo=dt.timezone.utc), decimal.Decimal("0.00"), []),
]
COLUMNS = "id, name, price, qty, ok, day, ts, tsz, amount, tags"


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}")


def expect_error(name, fn, *needles):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the client's own error classes differ
        text = f"{type(e).__name__}: {e} {getattr(e, 'sqlstate', '')}"
        for n in needles:
            check(name, n in text, f"{n!r} not in {text!r}")
        return e
    raise AssertionError(f"{name}: no error")


def psycopg_checks(port, token):
    import psycopg

    base = f"host=127.0.0.1 port={port} dbname=lakehouse user=tester sslmode=disable"
    dsn = f"{base} password={token}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM sales ORDER BY id").fetchall()
        check("text rows round-trip every type", rows == FIXTURE, rows)
        with conn.cursor(binary=True) as cur:
            cur.execute(f"SELECT {COLUMNS} FROM sales WHERE id = %s", [2])
            check("binary rows with a parameter", cur.fetchall() == [FIXTURE[1]])
        r = conn.execute(
            "SELECT %s::bigint + 1, %s || 'x', %s * 2, %s, %s::date, %s::timestamp",
            [41, "a", 1.25, True, dt.date(2020, 2, 29), dt.datetime(2020, 1, 1, 12, 30)],
        ).fetchone()
        check("parameters of each type", r == (42, "ax", 2.5, True, dt.date(2020, 2, 29),
                                                dt.datetime(2020, 1, 1, 12, 30)), r)
        dates = [dt.date(99, 5, 6), dt.date(2024, 2, 29), dt.date(9999, 12, 31)]
        r = conn.execute("SELECT DATE '0099-05-06', DATE '2024-02-29', DATE '9999-12-31'").fetchone()
        check("dates as text", list(r) == dates, r)
        with conn.cursor(binary=True) as cur:
            r = cur.execute("SELECT DATE '0099-05-06', DATE '2024-02-29', DATE '9999-12-31'").fetchone()
            check("dates as binary", list(r) == dates, r)
        # psycopg sends a str and None untyped: they stay what they are.
        r = conn.execute("SELECT %s AS a, %s AS b, %s AS c",
                         [None, '{"k": "v, w"}', "{a,b}"]).fetchone()
        check("untyped NULL and text in braces", r == (None, '{"k": "v, w"}', "{a,b}"), r)
        r = conn.execute("SELECT name FROM sales WHERE day > %s AND qty < %s ORDER BY id",
                         [dt.date(2024, 1, 1), 30]).fetchall()
        check("inferred parameter types", r == [("b",)], r)
        # An untyped value takes the type it is cast to (JDBC's setDate sends this text).
        r = conn.execute("SELECT %s::date, %s::bigint", ["2024-02-03 +00", "7"]).fetchone()
        check("parameter typed by its cast", r == (dt.date(2024, 2, 3), 7), r)
        stmt = "SELECT count(*) FROM sales WHERE qty >= %s"
        for n, want in [(10, 3), (20, 2), (31, 0)]:
            got = conn.execute(stmt, [n], prepare=True).fetchone()[0]
            check(f"prepared statement with {n}", got == want, got)
        e = expect_error("unknown table", lambda: conn.execute("SELECT * FROM nope"), "42P01")
        check("unknown table class", isinstance(e, psycopg.errors.UndefinedTable), type(e))
        expect_error("syntax error", lambda: conn.execute("SELEC 1"), "42601")
        expect_error("read-only", lambda: conn.execute("CREATE TABLE t2 AS SELECT 1"), "42501")
        check("still usable after errors", conn.execute("SELECT 1").fetchone() == (1,))
    # Server-side cursor inside a transaction (psycopg sends BEGIN, DECLARE, FETCH, CLOSE).
    with psycopg.connect(dsn) as conn:
        with conn.cursor(name="c1") as cur:
            cur.itersize = 2
            cur.execute("SELECT id, name FROM sales WHERE id >= %s ORDER BY id", [1])
            check("cursor description", [d.name for d in cur.description] == ["id", "name"])
            got = [r for r in cur]
            check("server-side cursor rows", got == [(1, "a"), (2, "b"), (3, "c")], got)
        with conn.cursor(name="c2", binary=True) as cur:
            cur.execute(f"SELECT {COLUMNS} FROM sales ORDER BY id")
            check("binary server-side cursor", cur.fetchmany(2) == FIXTURE[:2])
            check("cursor rest", cur.fetchall() == FIXTURE[2:])
        conn.commit()
    expect_error("wrong token", lambda: psycopg.connect(f"{base} password=not-a-valid-token-0000"),
                 "password authentication failed")
    expect_error("no token", lambda: psycopg.connect(base, connect_timeout=5), "password")


# The rows of `docs` (doc_id, lang, embedding) and the l2 index `docs_idx`
# over them (crates/lakehouse/tests/it/protocols.rs ingests the same).
DOCS = [(1, "en", [0.1, 0.2, 0.3]), (2, "de", [0.9, 0.1, 0.0]),
        (3, "en", [0.0, 1.0, 0.5]), (4, "fr", [0.4, 0.4, 0.4])]


def nearest(q, k, lang=None):
    """The brute-force answer: (doc_id, squared l2 distance), nearest first."""
    rows = [(i, sum((a - b) ** 2 for a, b in zip(v, q))) for i, l, v in DOCS
            if lang is None or l == lang]
    return sorted(rows, key=lambda r: r[1])[:k]


def same_hits(got, want):
    return [r[0] for r in got] == [r[0] for r in want] and all(
        abs(g[1] - w[1]) < 1e-5 for g, w in zip(got, want))


SEARCH = "SELECT doc_id, distance FROM vector_search('docs_idx', {}) ORDER BY distance, doc_id"


def psycopg_vector_checks(port, token):
    import psycopg

    dsn = f"host=127.0.0.1 port={port} dbname=lakehouse user=tester sslmode=disable password={token}"
    q = [0.1, 0.2, 0.3]
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute(SEARCH.format("%s, %s"), [q, 2]).fetchall()
        check("vector_search with the embedding bound", same_hits(got, nearest(q, 2)), got)
        got = conn.execute(SEARCH.format("%s, %s, %s, %s"), [q, 3, '{"lang": "en"}', 50]).fetchall()
        check("filter and ef bound", same_hits(got, nearest(q, 3, "en")), got)
        with conn.cursor(binary=True) as cur:
            cur.execute(SEARCH.format("%s, %s"), [[0.9, 0.1, 0.0], 1])
            got = cur.fetchall()
            check("binary parameters", same_hits(got, nearest([0.9, 0.1, 0.0], 1)), got)
        for v in ([0.0, 1.0, 0.5], [0.4, 0.4, 0.5]):
            got = conn.execute(SEARCH.format("%s, 2"), [v], prepare=True).fetchall()
            check(f"prepared search {v}", same_hits(got, nearest(v, 2)), got)
        got = conn.execute(
            "SELECT d.doc_id, d.lang, d.embedding FROM vector_search('docs_idx', %s, 2) v "
            "JOIN docs d USING (doc_id) WHERE d.lang = %s ORDER BY v.distance", [q, "fr"]).fetchall()
        check("joined with the dataset", got == [(4, "fr", [0.4, 0.4, 0.4])], got)
        got = conn.execute("SELECT doc_id FROM docs ORDER BY l2_distance(embedding, %s) LIMIT 1",
                           [[0.9, 0.1, 0.0]]).fetchall()
        check("a distance function with a bound vector", got == [(2,)], got)
        expect_error("wrong dimensions", lambda: conn.execute(SEARCH.format("%s, 2"), [[1.0, 2.0]]),
                     "2 dimensions")
        expect_error("k out of range", lambda: conn.execute(SEARCH.format("%s, %s"), [q, 0]),
                     "k must be at least 1")
        check("still usable after errors", conn.execute("SELECT 1").fetchone() == (1,))


def adbc_vector_checks(port, token):
    q = [0.1, 0.2, 0.3]
    with adbc_connect(port, **bearer(token)) as conn:
        cur = conn.cursor()
        cur.execute(SEARCH.format("[0.1, 0.2, 0.3], 2"))
        got = cur.fetchall()
        check("vector_search with a literal", same_hits(got, nearest(q, 2)), got)
        cur.execute(SEARCH.format("?, ?"), parameters=(q, 3))
        got = cur.fetchall()
        check("vector_search with bound parameters", same_hits(got, nearest(q, 3)), got)
        cur.execute(SEARCH.format("?, ?, ?"), parameters=([0.0, 1.0, 0.5], 2, '{"lang": "en"}'))
        got = cur.fetchall()
        check("filter bound", same_hits(got, nearest([0.0, 1.0, 0.5], 2, "en")), got)
        cur.execute("SELECT d.lang, v.distance FROM vector_search('docs_idx', ?, 1) v "
                    "JOIN docs d USING (doc_id)", parameters=([0.9, 0.1, 0.0],))
        t = cur.fetch_arrow_table()
        check("joined, as Arrow", t.column("lang").to_pylist() == ["de"], t)
        expect_error("wrong dimensions", lambda: cur.execute(SEARCH.format("?, 2"), parameters=([1.0],)),
                     "1 dimensions")
        cur.close()


def adbc_connect(port, **kwargs):
    return adbc_connect_uri(f"grpc://127.0.0.1:{port}", **kwargs)


def adbc_connect_uri(uri, **kwargs):
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(uri, db_kwargs=kwargs)


def bearer(token):
    return {"adbc.flight.sql.authorization_header": f"Bearer {token}"}


def adbc_checks(port, token):
    with adbc_connect(port, **bearer(token)) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT {COLUMNS} FROM sales ORDER BY id")
        t = cur.fetch_arrow_table()
        check("fetch_arrow_table", t.num_rows == 3 and t.column("name").to_pylist() == ["a", "b", "c"], t)
        check("decimal and list types", t.column("amount").to_pylist() == [r[8] for r in FIXTURE]
              and t.column("tags").to_pylist() == [r[9] for r in FIXTURE], t)
        cur.execute("SELECT name, qty FROM sales WHERE id = ? OR qty > ? ORDER BY id", parameters=(1, 25))
        got = cur.fetchall()
        check("bind parameters", got == [("a", 10), ("c", 30)], got)
        cur.execute("SELECT ? + 1 AS n", parameters=(41,))
        check("untyped parameter", cur.fetchall() == [(42,)])
        objs = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        cat = [c for c in objs if c["catalog_name"] == "lakehouse"]
        check("get_objects catalog", len(cat) == 1, objs)
        schemas = {s["db_schema_name"]: s for s in cat[0]["catalog_db_schemas"]}
        tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
        check("get_objects tables", "sales" in tables, tables.keys())
        cols = [c["column_name"] for c in tables["sales"]["table_columns"]]
        check("get_objects columns", cols == COLUMNS.split(", "), cols)
        check("get_table_schema", conn.adbc_get_table_schema("sales").names == COLUMNS.split(", "))
        expect_error("unknown table", lambda: cur.execute("SELECT * FROM nope"), "unknown table")
        expect_error("syntax error", lambda: cur.execute("SELEC 1"), "syntax error")
        expect_error("read-only", lambda: cur.execute("CREATE TABLE t2 AS SELECT 1"), "write role")
        cur.close()
    with adbc_connect(port, username="anyone", password=token) as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) AS n FROM sales")
        check("basic-auth handshake", cur.fetchall() == [(3,)])
        cur.close()

    def wrong():
        with adbc_connect(port, **bearer("not-a-valid-token-0000")) as c:
            cur = c.cursor()
            cur.execute("SELECT 1")

    expect_error("wrong token", wrong, "token is not valid")

    def no_token():
        with adbc_connect(port) as c:
            cur = c.cursor()
            cur.execute("SELECT 1")

    expect_error("no token", no_token, "needs a token")


def sqlalchemy_checks(port, token):
    """SQLAlchemy (psycopg dialect), and pandas and polars reading through it."""
    import pandas as pd
    import polars as pl
    import sqlalchemy as sa

    url = f"postgresql+psycopg://tester:{token}@127.0.0.1:{port}/lakehouse"
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        # The dialect parses version() and asks SHOW TRANSACTION ISOLATION LEVEL
        # and psycopg's TypeInfo (to_regtype, in a SAVEPOINT) on first connect.
        check("sqlalchemy server version", eng.dialect.server_version_info[:2] == (16, 6),
              eng.dialect.server_version_info)
        rows = conn.execute(sa.text("SELECT id, name FROM sales WHERE qty >= :q ORDER BY id"),
                            {"q": 20}).all()
        check("sqlalchemy text query with a parameter", rows == [(2, "b"), (3, "c")], rows)
        with conn.begin_nested():
            n = conn.execute(sa.text("SELECT count(*) FROM sales")).scalar()
        check("sqlalchemy savepoint", n == 3, n)
        conn.rollback()
    insp = sa.inspect(eng)
    check("sqlalchemy table names", insp.get_table_names() == ["sales"], insp.get_table_names())
    check("sqlalchemy has_table", insp.has_table("sales") and not insp.has_table("nope"))
    df = pd.read_sql(sa.text(f"SELECT {COLUMNS} FROM sales ORDER BY id"), eng)
    check("pandas read_sql", df.shape == (3, 10) and df["name"].tolist() == ["a", "b", "c"]
          and [d.date() for d in pd.to_datetime(df["day"])] == [r[5] for r in FIXTURE], df)
    got = pl.read_database("SELECT id, price FROM sales ORDER BY id", eng)
    check("polars read_database (sqlalchemy)", got.rows() == [(r[0], r[2]) for r in FIXTURE], got)
    bad = sa.create_engine(f"postgresql+psycopg://tester:not-a-valid-token-0000@127.0.0.1:{port}/lakehouse")
    expect_error("sqlalchemy wrong token", lambda: bad.connect(), "password authentication failed")


def adbc_dataframe_checks(port, token):
    """polars and pandas reading over an ADBC Flight SQL connection."""
    import pandas as pd
    import polars as pl

    with adbc_connect(port, **bearer(token)) as conn:
        got = pl.read_database(f"SELECT {COLUMNS} FROM sales ORDER BY id", connection=conn)
        check("polars read_database (adbc)", got.shape == (3, 10)
              and got["name"].to_list() == ["a", "b", "c"]
              and got["day"].to_list() == [r[5] for r in FIXTURE], got)
        df = pd.read_sql("SELECT id, qty FROM sales ORDER BY id", conn)
        check("pandas read_sql (adbc)", df.values.tolist() == [[r[0], r[3]] for r in FIXTURE], df)


def psycopg_write_checks(port, reader, writer):
    """Write statements: command tags, rowcount, server-side parameters
    (binary too), a transaction block, and a read token refused."""
    import psycopg

    base = f"host=127.0.0.1 port={port} dbname=lakehouse user=tester sslmode=disable"
    with psycopg.connect(f"{base} password={writer}", autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE w AS SELECT id, name, qty, day FROM sales")
        check("CTAS tag", cur.statusmessage == "SELECT 3" and cur.rowcount == 3, cur.statusmessage)
        check("no rows from a write", cur.description is None, cur.description)
        cur.execute("INSERT INTO w (id, name, qty, day) VALUES (%s, %s, %s, %s)",
                    [4, "d'); DROP TABLE w; --", 40, dt.date(2024, 1, 4)])
        check("INSERT tag", cur.statusmessage == "INSERT 0 1" and cur.rowcount == 1, cur.statusmessage)
        r = conn.execute("SELECT name, day FROM w WHERE id = 4").fetchall()
        check("a hostile value is only a value", r == [("d'); DROP TABLE w; --", dt.date(2024, 1, 4))], r)
        with conn.cursor(binary=True) as bcur:
            bcur.execute("UPDATE w SET name = %s WHERE id = %s", ["bb", 2])
            check("UPDATE with binary parameters", bcur.rowcount == 1, bcur.statusmessage)
        cur.execute("DELETE FROM w WHERE qty >= %s", [30])
        check("DELETE tag", cur.statusmessage == "DELETE 2" and cur.rowcount == 2, cur.statusmessage)
        cur.execute("MERGE INTO w USING sales s ON w.id = s.id "
                    "WHEN MATCHED THEN UPDATE SET qty = s.qty + 1 "
                    "WHEN NOT MATCHED THEN INSERT (id, name, qty) VALUES (s.id, s.name, s.qty)")
        check("MERGE tag", cur.statusmessage == "MERGE 3" and cur.rowcount == 3, cur.statusmessage)
        r = conn.execute("SELECT id, name, qty FROM w ORDER BY id").fetchall()
        check("table after the writes", r == [(1, "a", 11), (2, "bb", 21), (3, "c", 30)], r)
        expect_error("CREATE TABLE of an existing name", lambda: conn.execute(
            "CREATE TABLE w AS SELECT 1 AS id"), "42P07")
    # psycopg's default: statements inside BEGIN … COMMIT.
    with psycopg.connect(f"{base} password={writer}") as conn:
        conn.execute("INSERT INTO w (id, name) VALUES (%s, %s)", [9, "in a transaction"])
        conn.commit()
        r = conn.execute("SELECT name FROM w WHERE id = 9").fetchall()
        check("write in a transaction block", r == [("in a transaction",)], r)
        conn.commit()
    with psycopg.connect(f"{base} password={reader}", autocommit=True) as conn:
        for sql in ["INSERT INTO w (id) VALUES (10)", "DELETE FROM w", "UPDATE w SET qty = 0",
                    "CREATE TABLE w2 AS SELECT 1 AS a",
                    "MERGE INTO w USING sales s ON w.id = s.id WHEN MATCHED THEN DELETE"]:
            e = expect_error(f"read token: {sql.split()[0]}", lambda: conn.execute(sql), "42501")
            check("insufficient privilege class", isinstance(e, psycopg.errors.InsufficientPrivilege), type(e))
        n = conn.execute("SELECT count(*) FROM w").fetchone()[0]
        check("read token changed nothing", n == 4, n)


def adbc_write_checks(port, reader, writer):
    """Write statements over Flight SQL: the answer row through execute,
    bound parameters, executemany (ExecuteUpdate, once per row), and a read
    token refused."""
    with adbc_connect(port, **bearer(writer)) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE f AS SELECT id, name FROM sales")
        r = cur.fetchall()
        check("CTAS answer", len(r) == 1 and r[0][0] == "f" and r[0][2:] == (3, 0, 0), r)
        cur.execute("INSERT INTO f VALUES (?, ?)", parameters=(4, "d"))
        r = cur.fetchall()
        check("INSERT with parameters", r[0][2:] == (1, 0, 0), r)
        cur.executemany("INSERT INTO f VALUES (?, ?)", [(5, "e"), (6, "f")])
        cur.executemany("UPDATE f SET name = ? WHERE id = ?", [("E", 5), ("F", 6)])
        cur.execute("SELECT id, name FROM f WHERE id >= 5 ORDER BY id")
        r = cur.fetchall()
        check("executemany", r == [(5, "E"), (6, "F")], r)
        expect_error("executemany over the row cap", lambda: cur.executemany(
            "INSERT INTO f VALUES (?, ?)", [(i, "x") for i in range(10_001)]), "at most 10000")
        cur.execute("DELETE FROM f WHERE id > ?", parameters=(3,))
        r = cur.fetchall()
        check("DELETE answer", r[0][2:] == (0, 0, 3), r)
        cur.close()
    with adbc_connect(port, **bearer(reader)) as conn:
        cur = conn.cursor()
        expect_error("read token: INSERT", lambda: cur.execute("INSERT INTO f VALUES (7, 'g')"),
                     "write role")
        expect_error("read token: executemany", lambda: cur.executemany(
            "DELETE FROM f WHERE id = ?", [(1,)]), "write role")
        cur.execute("SELECT count(*) FROM f")
        n = cur.fetchall()[0][0]
        check("read token changed nothing", n == 3, n)
        cur.close()


# A query over the memory limit (a hash join's build side cannot spill) and
# one that runs for minutes unless stopped.
BIG_JOIN = ("SELECT count(*) FROM generate_series(1, 2000000) a(v) "
            "JOIN generate_series(1, 2000000) b(w) ON v = w")
SLOW = "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b"


def limit_checks(run):
    """`run(sql)` returns all rows; the server has max_rows=5, timeout 1 s, 4 MiB."""
    check("under max_rows", len(run("SELECT * FROM generate_series(1, 5)")) == 5)
    expect_error("over max_rows", lambda: run("SELECT * FROM generate_series(1, 100)"), "max_rows")
    expect_error("timeout", lambda: run(SLOW), "timeout_secs")
    expect_error("memory limit", lambda: run(BIG_JOIN), "memory_limit")
    check("still usable after limits", run("SELECT 1 AS one") == [(1,)])


def adbc_limit_checks(port, token):
    with adbc_connect(port, **bearer(token)) as conn:
        def run(sql):
            cur = conn.cursor()
            try:
                cur.execute(sql)
                return cur.fetchall()
            finally:
                cur.close()
        limit_checks(run)
        e = expect_error("over max_rows code", lambda: run("SELECT * FROM generate_series(1, 100)"), "max_rows")
        text = str(e)
        check("over max_rows status", "RESOURCE_EXHAUSTED" in text or "ResourceExhausted" in text, text)


def psycopg_limit_checks(port, token):
    import psycopg

    dsn = f"host=127.0.0.1 port={port} dbname=lakehouse user=tester password={token} sslmode=disable"
    with psycopg.connect(dsn, autocommit=True) as conn:
        limit_checks(lambda sql: conn.execute(sql).fetchall())
        expect_error("timeout state", lambda: conn.execute(SLOW), "57014")
        expect_error("memory state", lambda: conn.execute(BIG_JOIN), "53200")
        expect_error("max_rows state", lambda: conn.execute("SELECT * FROM generate_series(1, 100)").fetchall(),
                     "54000")


def adbc_hostile_token_checks(port, token):
    """Wrong, oversized and malformed credentials: errors, and the server still serves."""
    def attempt(**kwargs):
        with adbc_connect(port, **kwargs) as c:
            cur = c.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()

    cases = [
        ("wrong bearer", bearer("not-a-valid-token-0000")),
        ("reader token with a suffix", bearer(token + "x")),
        ("64 KiB bearer", bearer("a" * (64 << 10))),
        ("basic, wrong password", {"username": "x", "password": "not-a-valid-token-0000"}),
        ("basic, empty password", {"username": "x", "password": ""}),
        ("unknown scheme", {"adbc.flight.sql.authorization_header": "Digest abc"}),
        ("basic, not base64", {"adbc.flight.sql.authorization_header": "Basic !!!"}),
    ]
    for name, kwargs in cases:
        expect_error(name, lambda: attempt(**kwargs))
    with adbc_connect(port, **bearer(token)) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1 AS one")
        check("serves after hostile tokens", cur.fetchall() == [(1,)])
        cur.close()


def psycopg_tls_checks(port, token, ca):
    """Verified TLS (sslmode=verify-full against the test CA): the session is
    encrypted, parameters work, a wrong token is 28P01 over TLS too."""
    import psycopg

    base = (f"host=127.0.0.1 port={port} dbname=lakehouse user=tester "
            f"sslmode=verify-full sslrootcert={ca}")
    with psycopg.connect(f"{base} password={token}", autocommit=True) as conn:
        check("psycopg session over TLS", conn.pgconn.ssl_in_use, conn.pgconn.ssl_in_use)
        r = conn.execute("SELECT %s::bigint + 1, %s || 'x', %s::date",
                         [41, "a", dt.date(2020, 2, 29)]).fetchone()
        check("parameters over TLS", r == (42, "ax", dt.date(2020, 2, 29)), r)
        n = conn.execute("SELECT count(*) FROM generate_series(1, 5000) AS t(v) WHERE v > %s",
                         [1000]).fetchone()[0]
        check("a result over TLS", n == 4000, n)
    with psycopg.connect(f"{base} password={token}") as conn:
        with conn.cursor(name="tls_cursor") as cur:
            cur.itersize = 100
            cur.execute("SELECT v FROM generate_series(1, 1000) AS t(v) WHERE v > %s", [0])
            got = sum(r[0] for r in cur)
            check("server-side cursor over TLS", got == 500500, got)
        conn.commit()
    if psycopg.pq.version() >= 170000:
        # PostgreSQL 17's direct TLS start (no SSLRequest; ALPN "postgresql").
        with psycopg.connect(f"{base} password={token} sslnegotiation=direct") as conn:
            check("direct TLS negotiation", conn.pgconn.ssl_in_use)
            r = conn.execute("SELECT %s::text", ["direct"]).fetchone()
            check("query after direct TLS", r == ("direct",), r)
    # (libpq reports no SQLSTATE for a failed connection: the Rust test reads
    # the 28P01 and 28000 off the wire.)
    expect_error("wrong token over TLS",
                 lambda: psycopg.connect(f"{base} password=not-a-valid-token-0000"),
                 "password authentication failed")


def psycopg_tls_required_checks(port, token, ca):
    """`[queryd].tls_required`: plaintext is refused with 28000, TLS works."""
    import psycopg

    base = f"host=127.0.0.1 port={port} dbname=lakehouse user=tester password={token}"
    expect_error("plaintext refused", lambda: psycopg.connect(f"{base} sslmode=disable"),
                 "TLS is required", "sslmode=require")
    with psycopg.connect(f"{base} sslmode=verify-full sslrootcert={ca}") as conn:
        check("TLS accepted", conn.pgconn.ssl_in_use)
        r = conn.execute("SELECT %s::int * 2", [21]).fetchone()
        check("query over required TLS", r == (42,), r)


def adbc_tls_checks(port, token, ca):
    """grpc+tls:// with the test CA as the driver's root certificates; a
    plaintext client and an unverified certificate fail cleanly, and the
    server keeps serving."""
    with open(ca) as f:
        roots = {"adbc.flight.sql.client_option.tls_root_certs": f.read()}
    tls_uri = f"grpc+tls://127.0.0.1:{port}"

    def run(uri, sql, **kwargs):
        with adbc_connect_uri(uri, **kwargs) as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql)
                return cur.fetchall()
            finally:
                cur.close()

    r = run(tls_uri, "SELECT count(*) AS n FROM sales", **roots, **bearer(token))
    check("query over grpc+tls", r == [(3,)], r)
    with adbc_connect_uri(tls_uri, **roots, **bearer(token)) as conn:
        cur = conn.cursor()
        cur.execute("SELECT name FROM sales WHERE id = ?", parameters=(2,))
        check("parameters over grpc+tls", cur.fetchall() == [("b",)])
        cur.close()
    expect_error("wrong token over grpc+tls",
                 lambda: run(tls_uri, "SELECT 1", **roots, **bearer("not-a-valid-token-0000")),
                 "token is not valid")
    expect_error("plaintext client on the TLS port",
                 lambda: run(f"grpc://127.0.0.1:{port}", "SELECT 1", **bearer(token)), "Unavailable")
    expect_error("a certificate the client does not trust",
                 lambda: run(tls_uri, "SELECT 1", **bearer(token)), "certificate")
    r = run(tls_uri, "SELECT 1 AS one", **roots, **bearer(token))
    check("serves after refused clients", r == [(1,)], r)


def hold(kind, port, token, sql):
    """Runs a long query and waits forever (the test kills this process)."""
    print("started", flush=True)
    if kind == "pg":
        import psycopg

        conn = psycopg.connect(f"host=127.0.0.1 port={port} dbname=lakehouse user=t "
                               f"password={token} sslmode=disable")
        conn.execute(sql).fetchall()
    else:
        with adbc_connect(port, **bearer(token)) as conn:
            cur = conn.cursor()
            cur.execute(sql)
            cur.fetchall()


def main():
    cmd, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if cmd == "psycopg":
        psycopg_checks(port, token)
    elif cmd == "adbc":
        adbc_checks(port, token)
    elif cmd == "sqlalchemy":
        sqlalchemy_checks(port, token)
    elif cmd == "adbc-dataframes":
        adbc_dataframe_checks(port, token)
    elif cmd == "adbc-limits":
        adbc_limit_checks(port, token)
    elif cmd == "psycopg-vectors":
        psycopg_vector_checks(port, token)
    elif cmd == "adbc-vectors":
        adbc_vector_checks(port, token)
    elif cmd == "adbc-hostile-tokens":
        adbc_hostile_token_checks(port, token)
    elif cmd == "psycopg-writes":
        psycopg_write_checks(port, token, sys.argv[4])
    elif cmd == "adbc-writes":
        adbc_write_checks(port, token, sys.argv[4])
    elif cmd == "psycopg-limits":
        psycopg_limit_checks(port, token)
    elif cmd == "psycopg-tls":
        psycopg_tls_checks(port, token, sys.argv[4])
    elif cmd == "psycopg-tls-required":
        psycopg_tls_required_checks(port, token, sys.argv[4])
    elif cmd == "adbc-tls":
        adbc_tls_checks(port, token, sys.argv[4])
    elif cmd in ("hold-pg", "hold-flight"):
        hold(cmd.split("-")[1], port, token, sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")
    print("all checks passed")


if __name__ == "__main__":
    main()
