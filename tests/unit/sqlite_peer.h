/*
 * The unit tests' own plain SQLite connection to the database under test (the
 * "peer"): one-value queries and statements built with sqlite3_vmprintf
 * formats (%lld, %q, %Q, %w ...), every SQLite error failing the test. Each
 * test file binds its connection with a one-line macro, e.g.
 *     #define q_int(...) sqlite_peer_int(peer, __VA_ARGS__)
 * Not a test file itself: the Makefile builds only tests/unit/test_*.c.
 *
 * A file that calls these from a thread other than the test's own defines
 * SQLITE_PEER_FAIL(...) before including this header: cr_assert leaves the
 * test by longjmp, which is undefined from another thread.
 */
#ifndef IOT_TESTS_SQLITE_PEER_H
#define IOT_TESTS_SQLITE_PEER_H

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#ifndef SQLITE_PEER_FAIL
#define SQLITE_PEER_FAIL(...) cr_assert_fail(__VA_ARGS__)
#endif

/* Removes a database file and its -wal, -shm and -journal companions. */
static inline void rm_db_files(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[512];
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

/* The formatted statement, prepared; fails the test when it cannot be. */
static inline sqlite3_stmt *sqlite_peer_prepare_(sqlite3 *db, const char *fmt, va_list ap)
{
    char *sql = sqlite3_vmprintf(fmt, ap);
    if (!sql) SQLITE_PEER_FAIL("sqlite3_vmprintf(\"%s\"): out of memory", fmt);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK || !q) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s: %s", sql, sqlite3_errmsg(db));
        sqlite3_finalize(q);
        sqlite3_free(sql);
        SQLITE_PEER_FAIL("%s", msg);
    }
    sqlite3_free(sql);
    return q;
}

/* Steps q once: SQLITE_ROW or SQLITE_DONE; any other result fails the test. */
static inline int sqlite_peer_step_(sqlite3 *db, sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s: %s", sqlite3_sql(q), sqlite3_errmsg(db));
        sqlite3_finalize(q);
        SQLITE_PEER_FAIL("%s", msg);
    }
    return rc;
}

/* Runs the formatted statement(s) with sqlite3_exec. */
static inline void sqlite_peer_exec(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (!sql) SQLITE_PEER_FAIL("sqlite3_vmprintf(\"%s\"): out of memory", fmt);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s: %s", sql, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        sqlite3_free(sql);
        SQLITE_PEER_FAIL("%s", msg);
    }
    sqlite3_free(sql);
}

/* First column of the first row as an integer; -1 when there is no row, -2 for NULL. */
static inline int64_t sqlite_peer_int(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *q = sqlite_peer_prepare_(db, fmt, ap);
    va_end(ap);
    int64_t v = -1;
    if (sqlite_peer_step_(db, q) == SQLITE_ROW)
        v = sqlite3_column_type(q, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* First column of the first row as a double; -1e300 when there is no row (NULL reads 0). */
static inline double sqlite_peer_dbl(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *q = sqlite_peer_prepare_(db, fmt, ap);
    va_end(ap);
    double v = -1e300;
    if (sqlite_peer_step_(db, q) == SQLITE_ROW) v = sqlite3_column_double(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* First column of the first row as text into buf ("" when there is no row or NULL). */
static inline const char *sqlite_peer_text(sqlite3 *db, char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *q = sqlite_peer_prepare_(db, fmt, ap);
    va_end(ap);
    buf[0] = 0;
    if (sqlite_peer_step_(db, q) == SQLITE_ROW && sqlite3_column_text(q, 0))
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return buf;
}

#endif
