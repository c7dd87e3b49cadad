#include "ingest/sensor_state.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

struct sensor_states {
    struct sensor_entry **buckets;
    size_t nbuckets, count, max;
    size_t nbuckets_max; /* the table grows up to this (a power of two >= max) */
    struct sensor_entry *lru_head, *lru_tail; /* head = most recently used */
    uint64_t packet_gen;
    uint64_t epoch;
    int epoch_known;
};

static size_t slot(const struct sensor_states *c, int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (c->nbuckets - 1);
}

int sensor_states_create(size_t max_entries, struct sensor_states **out)
{
    struct sensor_states *c = calloc(1, sizeof *c);
    if (!c) return IOT_ENOMEM;
    c->max = max_entries;
    c->nbuckets = 1024;
    c->nbuckets_max = 1024;
    while (c->nbuckets_max < max_entries && c->nbuckets_max < ((size_t)1 << 24))
        c->nbuckets_max <<= 1;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return IOT_ENOMEM;
    }
    c->packet_gen = 1;
    *out = c;
    return 0;
}

static void lru_unlink(struct sensor_states *c, struct sensor_entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        c->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        c->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_front(struct sensor_states *c, struct sensor_entry *e)
{
    e->lprev = NULL;
    e->lnext = c->lru_head;
    if (c->lru_head) c->lru_head->lprev = e;
    c->lru_head = e;
    if (!c->lru_tail) c->lru_tail = e;
}

static void remove_entry(struct sensor_states *c, struct sensor_entry *e)
{
    struct sensor_entry **pp = &c->buckets[slot(c, e->st.sensor_id)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    free(e->alerts);
    free(e);
}

void sensor_states_clear(struct sensor_states *c)
{
    while (c->lru_head)
        remove_entry(c, c->lru_head);
}

void sensor_states_destroy(struct sensor_states *c)
{
    if (!c) return;
    sensor_states_clear(c);
    free(c->buckets);
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
    struct sensor_entry *e = c->lru_head, *next;
    for (; e; e = next) {
        next = e->lnext;
        if (e->pin == c->packet_gen) remove_entry(c, e);
    }
}

/* Evicts least recently used entries that the current packet does not pin. */
static void make_room(struct sensor_states *c)
{
    struct sensor_entry *e = c->lru_tail;
    while (c->count >= c->max && e) {
        struct sensor_entry *prev = e->lprev;
        if (e->pin != c->packet_gen) remove_entry(c, e);
        e = prev;
    }
}

static struct sensor_entry *lookup(struct sensor_states *c, int64_t sensor_id)
{
    struct sensor_entry *e = c->buckets[slot(c, sensor_id)];
    while (e && e->st.sensor_id != sensor_id)
        e = e->hnext;
    if (e) {
        lru_unlink(c, e);
        lru_push_front(c, e);
        e->pin = c->packet_gen;
    }
    return e;
}

/*
 * Doubles the bucket array once it holds as many entries as buckets (up to
 * nbuckets_max), so that its memory follows the sensors actually seen, not
 * STATE_CACHE_MAX. Keeps the old array if memory is short (chains grow).
 */
static void maybe_grow(struct sensor_states *c)
{
    if (c->count < c->nbuckets || c->nbuckets >= c->nbuckets_max) return;
    struct sensor_entry **old = c->buckets;
    size_t oldn = c->nbuckets;
    struct sensor_entry **nb = calloc(oldn * 2, sizeof *nb);
    if (!nb) return;
    c->buckets = nb;
    c->nbuckets = oldn * 2;
    for (size_t i = 0; i < oldn; i++)
        for (struct sensor_entry *e = old[i], *next; e; e = next) {
            next = e->hnext;
            size_t b = slot(c, e->st.sensor_id);
            e->hnext = nb[b];
            nb[b] = e;
        }
    free(old);
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
    maybe_grow(c);
    size_t b = slot(c, sensor_id);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    lru_push_front(c, e);
    c->count++;
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
