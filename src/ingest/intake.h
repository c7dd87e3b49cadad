/*
 * The front door of ingest, shared by every transport (HTTP and MQTT):
 * who may send (a device's key or the API key, and the budgets of
 * failed authentications), how often (the per-device rate limit), and what
 * becomes of a decoded packet (each reading resolved and checked, the valid
 * ones turned into writer input, the answer written). A transport keeps only
 * its framing: how keys and the client's address arrive, how the job is
 * handed to the writer and how the answer leaves.
 *
 * Failed authentications are budgeted in one limiter, under three kinds of
 * key, each led by the client's address as the limits key it:
 *
 *   "<addr>\0d<device_uuid>"  one pair of address and claimed device
 *   "<addr>\0k"               the pair of address and the API key
 *   "<addr>\0a"               the address as a whole
 *
 * A pair past its budget (AUTH_FAIL_BURST, AUTH_FAIL_RPS) is refused before
 * the device is looked up, whatever key it sends; other pairs of the same
 * address are not, so one bad actor behind a NAT cannot lock the other
 * devices out. The address key is charged 1/AUTH_FAIL_ADDR_FACTOR per
 * failure (a budget that many times looser) and is never checked before the
 * key: past it, a failure is refused with a retry delay instead of a plain
 * "denied" and empties its pair at once, so minting fresh device uuids buys
 * one try each, not a burst. A correct key is never refused by the address
 * budget. docs/SECURITY.md says what this does and does not stop.
 *
 * Thread safety: every function may be called from any thread at once (the
 * limiters lock, the counters are atomics, the rest is read-only).
 */
#ifndef IOT_INTAKE_H
#define IOT_INTAKE_H

#include "core/buf.h"
#include "core/config.h"
#include "ingest/packet_decode.h"
#include "ingest/resolver.h"
#include "ingest/write_job.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct intake;

/* Counters of the front door, whatever the transport (read by /metrics). */
struct intake_metrics {
    atomic_ullong auth_failures;       /* failed authentications */
    atomic_ullong rate_limited_auth;   /* refused by a failed-authentication budget */
    atomic_ullong rate_limited_device; /* refused by the per-device limit */
    atomic_ullong rejected[REJECT_REASONS];
};

/* cfg is borrowed for the intake's life. 0, IOT_ENOMEM or IOT_EINVAL (bad limits). */
int intake_create(const struct config *cfg, struct intake **out);
void intake_destroy(struct intake *in); /* accepts NULL */
struct intake_metrics *intake_metrics(struct intake *in);

/* Bytes of a claim's address, NUL included. */
#define INTAKE_ADDR_MAX 64

/*
 * What a client certificate says (TLS_CLIENT_AUTH, src/tls/tls_keys.h),
 * filled by the transport from its TLS session.
 */
struct intake_cert {
    char device[STORE_UUID_MAX + 1]; /* the device a verified certificate names, "" for none */
    const char *refused;             /* why a certificate sent was refused, NULL if none was */
    int required;                    /* TLS_CLIENT_AUTH=required: a device key alone is refused */
};

/* An identity one request (or connection) claims. Strings are borrowed. */
struct intake_claim {
    const char *addr;        /* the client's address as every per-address limit keys it */
    const char *device_uuid; /* the device it names, "" for none */
    const char *device_key;  /* NULL: no device key presented */
    size_t device_key_len;
    const char *api_key; /* NULL: no API key presented (MQTT never takes one) */
    size_t api_key_len;
    int api_only;                   /* it claims the API key alone (the legacy routes) */
    const struct intake_cert *cert; /* NULL: no client certificates on this transport */
};

/*
 * Seconds to wait when a pair the claim makes is past its failed-
 * authentication budget (then counted as rate_limited_auth), else 0. Called
 * before the device is looked up.
 */
int intake_locked_out(struct intake *in, const struct intake_claim *c);

/* 1 when the claim presents the API key and API_KEY is set and matches it. */
int intake_api_key_ok(struct intake *in, const struct intake_claim *c);

enum intake_auth { INTAKE_AUTH_OK, INTAKE_AUTH_DENIED, INTAKE_AUTH_INACTIVE };

/*
 * Authenticates the claim for dev (NULL: unknown device, which costs the
 * same as a wrong key): a verified client certificate that names dev, the
 * device's own key (not with TLS_CLIENT_AUTH=required), or the API key. A
 * certificate that was refused or names another device is a denial,
 * whatever key comes with it. A denial
 * spends the claim's budgets (intake_failed) unless the API key was valid;
 * *retry_s > 0 then means the address's budget is spent too, and the
 * transport refuses with that delay instead of a plain denial.
 */
enum intake_auth intake_authenticate(struct intake *in, const struct intake_claim *c,
                                     const struct store_device *dev, int *retry_s);

/* Spends the claim's failed-authentication budgets; *retry_s as above. */
void intake_failed(struct intake *in, const struct intake_claim *c, int *retry_s);

/* Takes a token of the device's rate limit: 1, or 0 with *retry_s (counted). */
int intake_device_take(struct intake *in, int64_t device_id, int *retry_s);

/* Counts a rejected reading (for readings judged outside intake_judge). */
void intake_count_rejected(struct intake *in, enum reject_reason why);

/* A decoded packet, judged reading by reading (intake_judge). Owned by the caller. */
struct intake_verdict {
    struct write_reading *readings; /* the valid ones, for the writer (malloc'ed) */
    size_t nvalid;
    struct buf answer; /* {"device_uuid","accepted","rejected","duplicate":false} */
};

/*
 * Resolves and checks every reading of p against dref's sensors and the
 * time window around received_ms (SPEC §5), fills out and counts the
 * rejections. 0 or IOT_ENOMEM (out is then empty).
 */
int intake_judge(struct intake *in, const struct decoded_packet *p, const struct device_ref *dref,
                 int64_t received_ms, struct intake_verdict *out);
void intake_verdict_fini(struct intake_verdict *v);

/*
 * The answer to a packet none of whose readings is valid (HTTP 422): the
 * verdict's answer with "detail" and "code":"no_valid_readings" added, in
 * place. 0 or IOT_ENOMEM (answer is then freed).
 */
int intake_answer_no_valid(struct buf *answer, const char *what);

/*
 * The remembered answer of a packet_id seen before, with "duplicate": true.
 * Returns malloc'ed text (the caller frees it), or NULL (no memory, or the
 * stored text is not a JSON object).
 */
char *intake_answer_duplicate(const char *stored);

/* Fills one writer reading from its sensor and device (a snapshot of its thresholds). */
void intake_reading_fill(struct write_reading *w, int index, const struct store_sensor *sen,
                         const struct store_device *dev, double value, int64_t ts, int stamped);

#endif
