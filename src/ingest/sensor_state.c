#include "ingest/sensor_state.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

/* The size docs/operations.md counts per cached sensor (a 112-byte malloc chunk). */
_Static_assert(sizeof(struct sensor_entry) <= 104, "sensor_entry grew past 104 bytes");

/*
 * A core/lru table keyed by sensor id (an id key: ids come from the
 * database, and this table is on the per-packet path). Its bucket array
 * starts at 1024 and doubles with the sensors actually seen, up to a power
 * of two >= max (at most 2^24), not sized for STATE_CACHE_MAX up front.
 */
struct sensor_states {
    struct lru table; /* of sensor_entry, owned */
    uint64_t packet_gen;
    uint64_t epoch;
    int epoch_known;
};

int sensor_states_create(size_t max_entries, struct sensor_states **out)
{
    struct sensor_states *c = calloc(1, sizeof *c);
    if (!c) return IOT_ENOMEM;
    size_t nbuckets_max = max_entries < ((size_t)1 << 24) ? max_entries : ((size_t)1 << 24);
    struct lru_params p = {.id_offset = LRU_ID_OFFSET(struct sensor_entry, node, st.sensor_id),
                           .max = max_entries,
                           .buckets = 1024,
                           .buckets_max = nbuckets_max};
    if (lru_init(&c->table, &p)) {
        free(c);
        return IOT_ENOMEM;
    }
    c->packet_gen = 1;
    *out = c;
    return 0;
}

static void remove_entry(struct sensor_states *c, struct sensor_entry *e)
{
    lru_remove(&c->table, &e->node);
    free(e->alerts);
    free(e);
}

void sensor_states_clear(struct sensor_states *c)
{
    struct lru_node *n;
    while ((n = lru_newest(&c->table)))
        remove_entry(c, LRU_ENTRY(n, struct sensor_entry, node));
}

void sensor_states_destroy(struct sensor_states *c)
{
    if (!c) return;
    sensor_states_clear(c);
    lru_fini(&c->table);
    free(c);
}

int sensor_states_validate(struct sensor_states *c, struct store *s)
{
    uint64_t e;
    int rc = store_change_epoch(s, &e);
    if (rc) return rc;
    if (c->epoch_known && e != c->epoch) sensor_states_clear(c);
    c->epoch = e;
    c->epoch_known = 1;
    return 0;
}

void sensor_states_next_packet(struct sensor_states *c)
{
    c->packet_gen++;
}

void sensor_states_evict_pinned(struct sensor_states *c)
{
    for (struct lru_node *n = lru_newest(&c->table), *older; n; n = older) {
        older = lru_older(n);
        struct sensor_entry *e = LRU_ENTRY(n, struct sensor_entry, node);
        if (e->pin == c->packet_gen) remove_entry(c, e);
    }
}

/* Evicts least recently used entries that the current packet does not pin. */
static void make_room(struct sensor_states *c)
{
    struct lru_node *n = lru_oldest(&c->table);
    while (lru_full(&c->table) && n) {
        struct lru_node *newer = lru_newer(n);
        struct sensor_entry *e = LRU_ENTRY(n, struct sensor_entry, node);
        if (e->pin != c->packet_gen) remove_entry(c, e);
        n = newer;
    }
}

static struct sensor_entry *lookup(struct sensor_states *c, int64_t sensor_id)
{
    struct lru_node *n = lru_find_id(&c->table, lru_hash_id(&c->table, sensor_id), sensor_id);
    if (!n) return NULL;
    struct sensor_entry *e = LRU_ENTRY(n, struct sensor_entry, node);
    lru_touch(&c->table, n);
    e->pin = c->packet_gen;
    return e;
}

static struct sensor_entry *insert(struct sensor_states *c,
                                   const struct store_sensor_snapshot *snap, int64_t sensor_id)
{
    struct sensor_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->st = snap->st;
    e->st.sensor_id = sensor_id;
    memcpy(e->present, snap->present, sizeof e->present);
    for (int k = 0; k < ALERT_KINDS; k++)
        if (snap->present[k]) {
            if (sensor_entry_alerts(e)) {
                free(e);
                return NULL;
            }
            memcpy(e->alerts, snap->alerts, sizeof snap->alerts);
            break;
        }
    make_room(c);
    lru_insert(&c->table, &e->node, lru_hash_id(&c->table, sensor_id));
    e->pin = c->packet_gen;
    return e;
}

int sensor_entry_alerts(struct sensor_entry *e)
{
    if (!e->alerts && !(e->alerts = calloc(ALERT_KINDS, sizeof *e->alerts))) return IOT_ENOMEM;
    return 0;
}

int sensor_states_load(struct sensor_states *c, struct store *s, const int64_t *ids, size_t n,
                       struct sensor_entry **out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!(out[i] = lookup(c, ids[i]))) m++;
    if (m == 0) return 0;
    int64_t *missing = malloc(m * sizeof *missing);
    struct store_sensor_snapshot *snaps = calloc(m, sizeof *snaps);
    int rc = missing && snaps ? 0 : IOT_ENOMEM;
    for (size_t i = 0, k = 0; !rc && i < n; i++)
        if (!out[i]) missing[k++] = ids[i];
    if (!rc) rc = store_states_load(s, missing, m, snaps);
    for (size_t i = 0, k = 0; !rc && i < n; i++)
        if (!out[i] && !(out[i] = insert(c, &snaps[k++], ids[i]))) rc = IOT_ENOMEM;
    free(snaps);
    free(missing);
    return rc;
}
