/*
 * The writer: the one serialized writer per database (SPEC §10). A thread
 * with a bounded queue of write jobs. It takes as many queued jobs as are
 * waiting (up to batch_max) and commits them in one transaction, as one
 * unit (one call per table for the whole batch). If that fails, the batch
 * runs again with each job inside its own savepoint, so that one failing
 * packet never takes its neighbours down and is never half-stored. Every
 * job's done() callback runs
 * after the commit (or the failure) is final; only then may the HTTP layer
 * answer. Normal, non-late readings are published to the broker after commit.
 */
#ifndef IOT_WRITER_H
#define IOT_WRITER_H

#include "broker/broker.h"
#include "ingest/router.h"
#include "ingest/write_job.h"
#include "store/store.h"

struct writer;

struct writer_opts {
    size_t queue_max;         /* jobs waiting before submit refuses (high-water mark) */
    size_t batch_max;         /* most jobs per transaction */
    int64_t packet_window_ms; /* how long a packet_id is remembered */
};

#define WRITER_LAT_BUCKETS   12
#define WRITER_BATCH_BUCKETS 10
extern const double writer_lat_bounds[WRITER_LAT_BUCKETS];     /* seconds */
extern const double writer_batch_bounds[WRITER_BATCH_BUCKETS]; /* jobs */

struct writer_stats {
    uint64_t jobs, commits, commit_failures, duplicates;
    uint64_t batch_jobs_sum; /* sum of batch sizes, for the mean */
    uint64_t commit_us_sum;  /* time spent in transactions */
    /* Histograms (non-cumulative counts; the last slot is +Inf). */
    uint64_t commit_lat[WRITER_LAT_BUCKETS + 1];
    uint64_t batch_size[WRITER_BATCH_BUCKETS + 1];
    uint64_t published; /* readings handed to the broker */
    size_t queue_depth;
    struct router_stats router;
};

/*
 * Takes ownership of s and r (closed/destroyed by writer_destroy, also on
 * failure). The broker b is borrowed and may be NULL.
 */
int writer_create(struct store *s, struct router *r, struct broker *b,
                  const struct writer_opts *opts, struct writer **out);
int writer_start(struct writer *w);

/*
 * Queues a job. Returns 0 (done() will be called exactly once, later, on the
 * writer thread), IOT_EFULL past the high-water mark or IOT_ESHUTDOWN when
 * stopping (done() is then never called).
 */
int writer_submit(struct writer *w, struct write_job *job);

/* Finishes every queued job, then stops the thread. Accepts NULL. */
void writer_stop(struct writer *w);
void writer_destroy(struct writer *w); /* stops first; accepts NULL */

void writer_get_stats(struct writer *w, struct writer_stats *out);

#endif
