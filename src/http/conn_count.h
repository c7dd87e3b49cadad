/*
 * Open connections per client address: a counter per limit key
 * (client_ip_limit_key), refusing a key that already holds `limit`. Memory is
 * bounded: a key exists only while it holds a connection, and at most
 * max_keys keys exist at once (the caller passes its connection limit, so a
 * full table means every connection slot is taken anyway). Thread-safe (one
 * internal mutex; each call is O(1) on average).
 */
#ifndef IOT_CONN_COUNT_H
#define IOT_CONN_COUNT_H

#include <stddef.h>

struct conn_count;
struct conn_count_entry;

/*
 * limit: connections one key may hold (>= 1); max_keys: keys held at once
 * (>= 1). Returns 0 and *out, or IOT_EINVAL / IOT_ENOMEM.
 */
int conn_count_create(unsigned limit, size_t max_keys, struct conn_count **out);
void conn_count_destroy(struct conn_count *c); /* accepts NULL */

/*
 * Takes one connection for key (a NUL-terminated string, at most 63 bytes
 * used). Returns the key's entry, to give back with conn_count_release, or
 * NULL when the key already holds `limit` connections (unless force), when
 * the table holds max_keys keys, or on allocation failure.
 */
struct conn_count_entry *conn_count_take(struct conn_count *c, const char *key, int force);

/* Gives back one connection taken with conn_count_take. Accepts NULL. */
void conn_count_release(struct conn_count *c, struct conn_count_entry *e);

/* Connections key holds now (for tests). */
unsigned conn_count_get(struct conn_count *c, const char *key);

#endif
