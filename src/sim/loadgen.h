/*
 * The simulator's HTTP load loop: libcurl's multi interface on one thread,
 * `connections` transfers in flight at most, each connection kept alive and
 * reused. Requests are paced to `rate` per second in total (an open-loop
 * schedule; when every connection is busy the schedule slips, and slots
 * more than one second overdue are dropped and counted in `behind`), or
 * sent back to back when rate is 0. Latency is measured from the moment a
 * request is handed to libcurl until its answer is complete.
 *
 * Memory is fixed at start: one body buffer and one small answer buffer per
 * connection, plus the histograms.
 */
#ifndef IOT_SIM_LOADGEN_H
#define IOT_SIM_LOADGEN_H

#include "core/buf.h"
#include "sim/latency.h"

#include <signal.h>
#include <stdint.h>

#define LOADGEN_STATUS_MAX 600 /* HTTP statuses counted individually: 0..599 */
#define LOADGEN_ERR_MAX    128 /* libcurl error codes counted individually */

struct loadgen_request {
    struct buf body; /* owned by the loop; the source replaces its content */
    void *headers;   /* a struct curl_slist *, borrowed: must outlive the run */
};

/* Fills the next request. 0, or a negative error that ends the sending phase. */
typedef int (*loadgen_fill_fn)(void *ud, struct loadgen_request *req);

struct loadgen_tick {
    double t_s;                                    /* since the start */
    uint64_t sent, answered, ok, errors, accepted; /* totals so far */
    uint64_t i_ok, i_accepted;                     /* during the last interval */
    double interval_s;
    uint64_t i_p50_us, i_p99_us, i_max_us;
    unsigned in_flight;
};
typedef void (*loadgen_tick_fn)(void *ud, const struct loadgen_tick *t);

struct loadgen_opts {
    const char *url;                   /* full URL every request is POSTed to */
    unsigned connections;              /* >= 1 */
    double rate;                       /* requests per second in total; 0 = as fast as possible */
    double duration_s;                 /* sending phase; then the answers in flight are awaited */
    long timeout_ms;                   /* per request */
    const volatile sig_atomic_t *stop; /* optional: non-zero ends the sending phase */
    loadgen_fill_fn fill;
    loadgen_tick_fn tick; /* optional: called about once a second */
    void *ud;
};

struct loadgen_totals {
    uint64_t sent, answered, ok, errors, unfinished; /* errors: no HTTP answer */
    uint64_t accepted;                               /* sum of "accepted" in 2xx answers */
    uint64_t behind;                                 /* schedule slots dropped */
    uint64_t bytes_sent;                             /* request bodies */
    double elapsed_s;                                /* start to last answer */
    uint64_t status[LOADGEN_STATUS_MAX];             /* by HTTP status */
    uint64_t curl_error[LOADGEN_ERR_MAX];            /* by CURLcode */
    struct lat_hist lat;                             /* every answered request */
};

/*
 * Runs the load. t is zeroed first (it is large: allocate it). Returns 0
 * when the run completed, whatever the answers were; IOT_ENOMEM or IOT_EIO
 * if libcurl could not be set up; the fill error if the source failed (t
 * then holds what was done until then). curl_global_init must have been
 * called.
 */
int loadgen_run(const struct loadgen_opts *o, struct loadgen_totals *t);

/* libcurl's text for a CURLcode counted in curl_error[]. */
const char *loadgen_error_name(int code);

#endif
