/*
 * The sensor resolver: device_uuid -> device (key hash, active flag) and its
 * sensors with their active thresholds, so that (device_uuid, sensor_uuid)
 * -> sensor_id needs no database round trip. A cache with a TTL
 * (SENSOR_CACHE_TTL_S): `device disable`, `sensor disable` and
 * `threshold set` take effect within it, without a restart. Bounded by
 * max_devices (least recently used out). Thread-safe; entries are
 * reference-counted so a worker can use one while it is replaced.
 *
 * A uuid the database does not know is remembered as unknown for a shorter
 * time (the negative TTL), so a device that keeps retrying before it is
 * provisioned, or a client cycling through made-up uuids, does not query the
 * database on every request; a device added meanwhile is found once the
 * negative entry expires. At most max(16, max_devices / 4) negative entries
 * are kept, apart from the devices (a flood of unknown uuids evicts only
 * other unknown uuids).
 */
#ifndef IOT_RESOLVER_H
#define IOT_RESOLVER_H

#include "store/store.h"
#include "store/store_shared.h"

#include <stddef.h>
#include <stdint.h>

struct resolver;

/* An immutable snapshot of a device and its sensors. */
struct device_ref {
    struct store_device dev;
    struct store_sensor *sensors; /* sorted by uuid */
    size_t nsensors;
};

struct resolver_stats {
    uint64_t hits, misses;  /* misses: lookups that queried the database */
    uint64_t negative_hits; /* answered IOT_ENOTFOUND from a negative entry */
    size_t entries;         /* devices held */
    size_t negatives;       /* negative entries held */
};

/*
 * db is borrowed (shared with other readers). Devices are kept ttl_ms;
 * unknown uuids min(neg_ttl_ms, ttl_ms), or not at all when that is <= 0.
 */
int resolver_create(struct store_shared *db, int64_t ttl_ms, int64_t neg_ttl_ms, size_t max_devices,
                    struct resolver **out);
void resolver_destroy(struct resolver *r); /* accepts NULL */

/*
 * Finds the device by uuid: 0 and a reference the caller must release,
 * IOT_ENOTFOUND (*out NULL), or a retryable store error (*out NULL).
 */
int resolver_get(struct resolver *r, const char *device_uuid, const struct device_ref **out);
void resolver_release(struct resolver *r, const struct device_ref *ref);

/* The sensor of ref with that uuid, or NULL. */
const struct store_sensor *device_ref_sensor(const struct device_ref *ref, const char *sensor_uuid);

void resolver_get_stats(struct resolver *r, struct resolver_stats *out);

#endif
