/*
 * SQLite backend: deleting a device with everything stored under it
 * (store_ops.device_delete), the statements of store_sql.h in one
 * transaction.
 *
 * Foreign keys are off for that transaction (and back on after it): every
 * referencing row is deleted explicitly, and with the check on SQLite would
 * look for the child rows of each deleted sensor, and sensor_readings has no
 * index that starts with sensor_id (schema step 4): one scan of the readings
 * per sensor instead of one per device.
 *
 * The reading chain stays consistent without any relinking: a chain belongs
 * to one sensor, and all of a deleted sensor's readings and its state row
 * (the chain's head) go, so no remaining reading links to a deleted one and
 * no remaining head changes. Reading ids above the largest remaining one
 * may be given out again (sqlite_readings_insert takes max + 1): they are
 * then larger than every id still stored, so each chain still runs from
 * larger ids to smaller ones, which is what chain_walk relies on.
 */
#include "core/err.h"
#include "store/sqlite_int.h"
#include "store/store_sql.h"

#include <stdio.h>

static const char *const del_sql[STORE_DEL_COUNT] = {
#define DEL_SQL(name, sql) [name] = sql,
    STORE_SQL_DEVICE_DELETE(DEL_SQL, "?1")
#undef DEL_SQL
};

static int exec_sql(struct sqlite_store *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sqlite_fail(s, rc);
}

/* Runs one statement with ?1 bound to id (rare: prepared for the call); *changes = rows. */
static int exec_id(struct sqlite_store *s, const char *sql, int64_t id, int64_t *changes)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return sqlite_fail(s, rc);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    if (!ret) *changes = sqlite3_changes(s->db);
    return ret;
}

/* The device's id, or IOT_ENOTFOUND. */
static int device_id(struct sqlite_store *s, const char *uuid, int64_t *id)
{
    sqlite3_stmt *st;
    int rc =
        sqlite3_prepare_v2(s->db, "SELECT id FROM devices WHERE device_uuid = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK) return sqlite_fail(s, rc);
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    int ret = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    if (ret == IOT_ENOTFOUND) snprintf(s->err, sizeof s->err, "no device %.64s", uuid);
    return ret;
}

/* 1 if the connection checks foreign keys (PRAGMA foreign_keys), 0 if not, or an error. */
static int foreign_keys_on(struct sqlite_store *s)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA foreign_keys", -1, &st, NULL);
    if (rc != SQLITE_OK) return sqlite_fail(s, rc);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) != 0 : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    return ret;
}

int sqlite_device_delete(struct store *base, const char *uuid, struct store_device_deleted *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int64_t id = 0, changes[STORE_DEL_COUNT] = {0};
    *out = (struct store_device_deleted){0};
    if (!sqlite3_get_autocommit(s->db)) {
        snprintf(s->err, sizeof s->err, "device_delete runs its own transaction");
        return IOT_EINVAL;
    }
    int fk = foreign_keys_on(s); /* PRAGMA foreign_keys is a no-op inside a transaction */
    if (fk < 0) return fk;
    int rc = fk ? exec_sql(s, "PRAGMA foreign_keys=OFF") : 0;
    if (!rc) rc = exec_sql(s, "BEGIN IMMEDIATE");
    if (!rc) rc = device_id(s, uuid, &id);
    for (int i = 0; !rc && i < STORE_DEL_COUNT; i++)
        rc = exec_id(s, del_sql[i], id, &changes[i]);
    if (!rc) rc = exec_sql(s, "COMMIT");
    if (rc && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (fk && sqlite3_exec(s->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK && !rc)
        rc = sqlite_fail(s, sqlite3_errcode(s->db));
    if (rc) return rc;
    out->device_id = id;
    out->sensors = changes[STORE_DEL_SENSORS];
    out->readings = changes[STORE_DEL_READINGS];
    return 0;
}
