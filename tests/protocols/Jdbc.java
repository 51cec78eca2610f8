// Real-client checks of lakehouse's PostgreSQL listener through pgjdbc, the
// driver DBeaver, Metabase and other JDBC tools use (Debian's
// libpostgresql-jdbc-java). Run by crates/lakehouse/tests/it/protocols.rs
// against a server holding the fixture dataset `sales` (ids 1-3, the same
// rows as tests/protocols/clients.py's FIXTURE); also usable by hand:
//
//     java -cp /usr/share/java/postgresql.jar tests/protocols/Jdbc.java PORT READ_TOKEN
//
// Prints one line per check and "all checks passed"; a failed check exits 1.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class Jdbc {
    static void check(String name, boolean ok, Object detail) {
        if (!ok) {
            System.out.println("FAILED " + name + ": " + detail);
            System.exit(1);
        }
        System.out.println("ok " + name);
    }

    static List<String> column(ResultSet rs, String col) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(col));
        rs.close();
        return out;
    }

    static String sqlState(Connection c, String sql) {
        try (Statement s = c.createStatement()) {
            s.executeQuery(sql).close();
            return "no error";
        } catch (SQLException e) {
            return e.getSQLState();
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/lakehouse?sslmode=disable";
        try (Connection c = DriverManager.getConnection(url, "tester", args[1])) {
            metadata(c);
            queries(c);
            parameters(c);
        }
        try {
            DriverManager.getConnection(url, "tester", "not-a-valid-token-0000").close();
            check("wrong token", false, "connected");
        } catch (SQLException e) {
            check("wrong token", "28P01".equals(e.getSQLState()), e.getSQLState() + " " + e);
        }
        System.out.println("all checks passed");
    }

    /** What a navigator (DBeaver's generic view, Metabase's sync) asks. */
    static void metadata(Connection c) throws SQLException {
        DatabaseMetaData md = c.getMetaData();
        check("product", md.getDatabaseProductName().equals("PostgreSQL")
                && md.getDatabaseProductVersion().startsWith("16.6"), md.getDatabaseProductVersion());
        check("catalogs", column(md.getCatalogs(), "TABLE_CAT").equals(List.of("lakehouse")), "");
        List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
        check("schemas", schemas.contains("public"), schemas);
        List<String> tables = column(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME");
        check("tables", tables.equals(List.of("sales")), tables);
        List<String> cols = column(md.getColumns(null, "public", "sales", "%"), "COLUMN_NAME");
        check("columns", cols.equals(List.of("id", "name", "price", "qty", "ok", "day", "ts", "tsz", "amount", "tags")), cols);
        List<String> types = column(md.getColumns(null, "public", "sales", "%"), "TYPE_NAME");
        check("column types", types.equals(List.of("int8", "text", "float8", "int4", "bool", "date",
                "timestamp", "timestamptz", "numeric", "_text")), types);
        check("primary keys", column(md.getPrimaryKeys(null, "public", "sales"), "COLUMN_NAME").isEmpty(), "");
    }

    static void queries(Connection c) throws SQLException {
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT id, name, price, qty, ok, day, ts, amount, tags FROM sales ORDER BY id")) {
            check("row 1", rs.next(), "");
            check("values", rs.getLong(1) == 1 && rs.getString(2).equals("a") && rs.getDouble(3) == 1.5
                    && rs.getInt(4) == 10 && rs.getBoolean(5)
                    && rs.getDate(6).toString().equals("2024-01-01")
                    && rs.getTimestamp(7).toString().equals("2024-01-01 00:00:01.0")
                    && rs.getBigDecimal(8).compareTo(new BigDecimal("1.25")) == 0
                    && Arrays.equals((Object[]) rs.getArray(9).getArray(), new Object[] {"x"}), "row 1");
            rs.next();
            rs.next();
            rs.getDouble(3);
            check("null", rs.wasNull() && rs.getObject(5) == null, "row 3");
            check("three rows", !rs.next(), "");
        }
        // A fetch size inside a transaction: portal suspension, rows in batches.
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            s.setFetchSize(2);
            try (ResultSet rs = s.executeQuery("SELECT x FROM generate_series(1, 7) AS g(x)")) {
                int n = 0;
                while (rs.next()) n++;
                check("fetch size", n == 7, n);
            }
        }
        c.commit();
        c.setAutoCommit(true);
        check("unknown table", sqlState(c, "SELECT * FROM nope").equals("42P01"), "");
        check("syntax error", sqlState(c, "SELEC 1").equals("42601"), "");
        check("read-only", sqlState(c, "CREATE TABLE t2 AS SELECT 1").equals("42501"), "");
        check("usable after errors", sqlState(c, "SELECT 1").equals("no error"), "");
    }

    /** pgjdbc sends dates and timestamps untyped, as text with a zone. */
    static void parameters(Connection c) throws SQLException {
        String sql = "SELECT name FROM sales WHERE day = ? AND qty >= ? AND amount < ?";
        // Six runs: pgjdbc switches to a named server-side statement at the fifth.
        try (PreparedStatement p = c.prepareStatement(sql)) {
            for (int i = 0; i < 6; i++) {
                p.setDate(1, java.sql.Date.valueOf("2024-01-02"));
                p.setInt(2, 20);
                p.setBigDecimal(3, new BigDecimal("0"));
                try (ResultSet rs = p.executeQuery()) {
                    check("prepared run " + i, rs.next() && rs.getString(1).equals("b") && !rs.next(), "");
                }
            }
        }
        try (PreparedStatement p = c.prepareStatement("SELECT ?::date, ?::timestamp, ? + 1, ?::text")) {
            p.setDate(1, java.sql.Date.valueOf("2024-02-29"));
            p.setTimestamp(2, java.sql.Timestamp.valueOf("2024-02-03 04:05:06"));
            p.setLong(3, 41);
            p.setString(4, "x");
            try (ResultSet rs = p.executeQuery()) {
                rs.next();
                check("typed by casts", rs.getDate(1).toString().equals("2024-02-29")
                        && rs.getTimestamp(2).toString().equals("2024-02-03 04:05:06.0")
                        && rs.getLong(3) == 42 && rs.getString(4).equals("x"),
                        rs.getString(1) + " " + rs.getString(2));
            }
        }
        try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM sales WHERE ts >= ? AND price > ?")) {
            p.setObject(1, java.time.LocalDateTime.of(2024, 1, 2, 0, 0));
            p.setNull(2, Types.DOUBLE);
            try (ResultSet rs = p.executeQuery()) {
                rs.next();
                check("LocalDateTime and NULL", rs.getLong(1) == 0, rs.getLong(1));
            }
        }
    }
}
