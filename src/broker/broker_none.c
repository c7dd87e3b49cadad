/*
 * The "none" broker (BROKER_URL=none): publishing is switched off. It accepts
 * and discards every message and reports health DISABLED.
 *
 * Its stats stay all zero on purpose: nothing is "published" (no consumer
 * could ever get it) and nothing is "dropped" either (dropped means a loss
 * the operator should look at; here discarding is the configured behaviour).
 */
#include "broker/broker.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

struct none_broker {
    struct broker base;
};

static int none_publish(struct broker *b, const struct broker_reading *msgs, size_t n)
{
    (void)b;
    (void)n;
    return msgs ? 0 : IOT_EINVAL;
}

/* Accepted so callers need no special case; the subscriber is never called. */
static int none_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    (void)b;
    (void)ud;
    return fn ? 0 : IOT_EINVAL;
}

static void none_stats(struct broker *b, struct broker_stats *out)
{
    (void)b;
    memset(out, 0, sizeof *out);
}

static enum broker_health none_health(struct broker *b)
{
    (void)b;
    return BROKER_DISABLED;
}

static void none_destroy(struct broker *b)
{
    free(b);
}

static const struct broker_ops none_ops = {
    .name = "none",
    .publish = none_publish,
    .subscribe = none_subscribe,
    .stats = none_stats,
    .health = none_health,
    .destroy = none_destroy,
};

/* *out is owned by the caller (broker_destroy). Returns 0 or IOT_ENOMEM. */
int broker_none_create(struct broker **out)
{
    struct none_broker *n;

    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (!(n = calloc(1, sizeof *n))) return IOT_ENOMEM;
    n->base.ops = &none_ops;
    *out = &n->base;
    return 0;
}
