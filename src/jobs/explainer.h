/*
 * The explainer job (the seed's ai_explainer_runner, SPEC §6.2). Runs no ML:
 * sends each anomalous prediction without an explanation, with its sensor's
 * context and recent readings, to AI_EXPLAINER_URL/explain, and stores the
 * JSON answer verbatim. A failure for one prediction (refused, timeout,
 * non-2xx, not JSON) is logged and skipped; the next run retries it. The
 * request body is documented in docs/jobs.md.
 */
#ifndef IOT_JOB_EXPLAINER_H
#define IOT_JOB_EXPLAINER_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define EXPLAIN_RECENT_READINGS 20
#define EXPLAIN_MAX_RESPONSE    (1024 * 1024)

struct explain_opts {
    const char *url; /* base URL; "/explain" is appended */
    double min_score;
    int64_t connect_timeout_ms, timeout_ms;
    size_t max_per_run;
};

struct explain_summary {
    uint64_t candidates, stored, failed;
    int64_t duration_ms;
};

int job_explain_run(struct store *s, const struct explain_opts *o, struct explain_summary *sum);

#endif
