/* SQLite schema and its in-place upgrades (schema_version table). */
#ifndef IOT_SQLITE_SCHEMA_H
#define IOT_SQLITE_SCHEMA_H

#include <sqlite3.h>
#include <stddef.h>

#define SQLITE_SCHEMA_LATEST 5

/*
 * Brings the database to SQLITE_SCHEMA_LATEST inside one IMMEDIATE
 * transaction: creates it when empty, applies each missing upgrade step in
 * order. A database newer than this binary is refused (IOT_EINVAL).
 */
int sqlite_schema_apply(sqlite3 *db, char *err, size_t errlen);
/* Current version (0 = empty database). */
int sqlite_schema_read_version(sqlite3 *db, int *out);

#endif
