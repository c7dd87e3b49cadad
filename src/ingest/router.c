#include "ingest/router.h"
#include "ingest/classifier.h"
#include "core/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct router {
    struct sensor_states *states;
    int64_t clear_after;
    struct router_stats stats;   /* committed */
    struct router_stats batch;   /* applied in the open transaction */
    struct router_stats pending; /* applied in the open packet */
    struct store_reading *rows;  /* scratch for the batch insert */
    size_t rows_cap;
    int64_t *ids;                  /* distinct sensor ids of the packet, ascending */
    struct sensor_entry **entries; /* their cache entries, in the same order */
    const struct store_sensor_state **dirty;
    size_t ids_cap, entries_cap, dirty_cap;
};

int router_create(size_t state_cache_max, int64_t alert_clear_after, struct router **out)
{
    struct router *r = calloc(1, sizeof *r);
    if (!r) return IOT_ENOMEM;
    r->clear_after = alert_clear_after;
    int rc = sensor_states_create(state_cache_max, &r->states);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void router_destroy(struct router *r)
{
    if (!r) return;
    sensor_states_destroy(r->states);
    free(r->rows);
    free(r->entries);
    free(r->dirty);
    free(r->ids);
    free(r);
}

int router_begin_tx(struct router *r, struct store *s)
{
    memset(&r->batch, 0, sizeof r->batch);
    return sensor_states_validate(r->states, s);
}

static void add_stats(struct router_stats *to, const struct router_stats *from)
{
    for (int c = 0; c < CLASS_INVALID; c++)
        to->by_class[c] += from->by_class[c];
    to->late += from->late;
    to->alerts.opened += from->alerts.opened;
    to->alerts.escalated += from->alerts.escalated;
    to->alerts.resolved += from->alerts.resolved;
}

static int by_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int by_time(const void *a, const void *b)
{
    const struct write_reading *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->index - y->index;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np) return IOT_ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

/*
 * Classifies one reading and runs its alert transitions; updates e's state.
 * A server-stamped reading takes its time in the writer's order (SPEC §5):
 * at or before the sensor's newest time it moves to 1 ms after it, so it is
 * never late and two readings of a sensor never share a time (nor a broker
 * message id), however the worker threads that stamped them were scheduled.
 */
static int apply_one(struct router *r, struct store *s, struct sensor_entry *e,
                     struct write_reading *w, int64_t now)
{
    struct store_sensor_state *st = &e->st;
    if (w->stamped && st->has_last && w->ts <= st->last_ts) w->ts = st->last_ts + 1;
    struct alert_reading ar = {w->sensor_id, w->device_id, w->sensor_uuid, w->value, w->ts, now};
    int rc = 0;

    w->late = st->has_last && w->ts < st->last_ts;
    if (w->late) {
        w->cls = classifier_range_class(w->thr, w->value);
        r->pending.late++;
        return 0;
    }
    w->cls = classifier_classify(w->thr, st->has_last, st->last_value, w->value);
    if (w->cls != CLASS_NORMAL && w->cls != CLASS_INVALID && (rc = sensor_entry_alerts(e)))
        return rc;
    struct alert_set set = {e->alerts, e->present};
    switch (w->cls) {
    case CLASS_ALERT:
        rc = alert_engine_violation(s, set, ALERT_THRESHOLD, SEV_CRITICAL, w->thr[SEV_CRITICAL].id,
                                    &ar, &r->pending.alerts);
        break;
    case CLASS_WARNING:
        rc = alert_engine_violation(s, set, ALERT_THRESHOLD, SEV_WARNING, w->thr[SEV_WARNING].id,
                                    &ar, &r->pending.alerts);
        break;
    case CLASS_SPIKE: {
        int64_t thr_id = 0;
        classifier_is_spike(w->thr, st->last_value, w->value, &thr_id);
        rc = alert_engine_violation(s, set, ALERT_DELTA_SPIKE, SEV_WARNING, thr_id, &ar,
                                    &r->pending.alerts);
        break;
    }
    case CLASS_NORMAL:
    case CLASS_INVALID:
        break;
    }
    if (rc) return rc;
    st->normal_run = w->cls == CLASS_NORMAL ? st->normal_run + 1 : 0;
    rc = alert_engine_after_reading(s, set, w->cls == CLASS_NORMAL, st->normal_run, r->clear_after,
                                    &ar, &r->pending.alerts);
    if (rc) return rc;
    st->has_last = 1;
    st->last_ts = w->ts;
    st->last_value = w->value;
    st->last_class = w->cls;
    return 0;
}

/* The distinct sensor ids of the jobs' readings, ascending, into r->ids; returns their count. */
static size_t collect_ids(struct router *r, struct write_job *const *jobs, size_t njobs)
{
    size_t n = 0;
    for (size_t j = 0; j < njobs; j++)
        for (size_t i = 0; i < jobs[j]->nreadings; i++)
            r->ids[n++] = jobs[j]->readings[i].sensor_id;
    qsort(r->ids, n, sizeof *r->ids, by_id);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (d == 0 || r->ids[d - 1] != r->ids[i]) r->ids[d++] = r->ids[i];
    return d;
}

int router_apply(struct router *r, struct store *s, struct write_job *const *jobs, size_t njobs)
{
    int rc;
    memset(&r->pending, 0, sizeof r->pending);
    sensor_states_next_packet(r->states);
    size_t total = 0;
    for (size_t j = 0; j < njobs; j++) {
        struct write_job *job = jobs[j];
        qsort(job->readings, job->nreadings, sizeof *job->readings, by_time);
        total += job->nreadings;
    }
    if ((rc = grow((void **)&r->rows, &r->rows_cap, total, sizeof *r->rows)) ||
        (rc = grow((void **)&r->entries, &r->entries_cap, total, sizeof *r->entries)) ||
        (rc = grow((void **)&r->dirty, &r->dirty_cap, total, sizeof *r->dirty)) ||
        (rc = grow((void **)&r->ids, &r->ids_cap, total, sizeof *r->ids)))
        return rc;

    /* Load (and on shared backends lock) every sensor of the jobs at once, in id order. */
    size_t d = collect_ids(r, jobs, njobs);
    if ((rc = sensor_states_load(r->states, s, r->ids, d, r->entries))) return rc;
    for (size_t k = 0; k < d; k++)
        r->entries[k]->router_row = 0;

    size_t row = 0;
    for (size_t j = 0; j < njobs; j++) {
        struct write_job *job = jobs[j];
        for (size_t i = 0; i < job->nreadings; i++, row++) {
            struct write_reading *w = &job->readings[i];
            /* An invariant, not input: collect_ids() put every reading's sensor id in
             * r->ids, so the lookup cannot miss (store_id_index returns d if it did). */
            size_t k = store_id_index(r->ids, d, w->sensor_id);
            assert(k < d);
            struct sensor_entry *e = r->entries[k];
            if ((rc = apply_one(r, s, e, w, job->received_at))) return rc;
            r->rows[row] = (struct store_reading){
                .sensor_id = w->sensor_id,
                .value = w->value,
                .ts = w->ts,
                .ingested_at = job->received_at,
                .cls = w->cls,
                .late = w->late,
                .prev_id = e->st.last_reading_id,
                .prev_row = e->router_row,
            };
            e->router_row = row + 1;
            r->pending.by_class[w->cls]++;
        }
    }
    if ((rc = store_readings_insert(s, r->rows, total))) return rc;
    for (size_t k = 0; k < d; k++) {
        struct sensor_entry *e = r->entries[k];
        e->st.last_reading_id = r->rows[e->router_row - 1].id;
        r->dirty[k] = &e->st;
    }
    return store_states_put(s, r->dirty, d);
}

void router_packet_done(struct router *r)
{
    add_stats(&r->batch, &r->pending);
    memset(&r->pending, 0, sizeof r->pending);
}

void router_abort_packet(struct router *r)
{
    sensor_states_evict_pinned(r->states);
    memset(&r->pending, 0, sizeof r->pending);
}

void router_end_tx(struct router *r, int committed)
{
    if (committed)
        add_stats(&r->stats, &r->batch);
    else
        sensor_states_clear(r->states);
    memset(&r->batch, 0, sizeof r->batch);
}

void router_stats(struct router *r, struct router_stats *out)
{
    *out = r->stats;
}
