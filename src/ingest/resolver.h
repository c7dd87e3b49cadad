/*
 * The sensor resolver: device_uuid -> device (key hash, active flag) and its
 * sensors with their active thresholds, so that (device_uuid, sensor_uuid)
 * -> sensor_id needs no database round trip. A cache with a TTL
 * (SENSOR_CACHE_TTL_S): `device disable`, `sensor disable` and
 * `threshold set` take effect within it, without a restart. Bounded by
 * max_devices (least recently used out). Thread-safe; entries are
 * reference-counted so a worker can use one while it is replaced.
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
    uint64_t hits, misses;
    size_t entries;
};

/* db is borrowed (shared with other readers). */
int resolver_create(struct store_shared *db, int64_t ttl_ms, size_t max_devices,
                    struct resolver **out);
void resolver_destroy(struct resolver *r); /* accepts NULL */

/*
 * Finds the device by uuid: 0 and a reference the caller must release,
 * IOT_ENOTFOUND, or a retryable store error.
 */
int resolver_get(struct resolver *r, const char *device_uuid, const struct device_ref **out);
void resolver_release(struct resolver *r, const struct device_ref *ref);

/* The sensor of ref with that uuid, or NULL. */
const struct store_sensor *device_ref_sensor(const struct device_ref *ref, const char *sensor_uuid);

void resolver_get_stats(struct resolver *r, struct resolver_stats *out);

#endif
