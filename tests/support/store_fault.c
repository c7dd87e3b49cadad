/*
 * The fault-injecting store wrapper (see store_fault.h). Each op first asks
 * enter() whether an armed fault fires on this call; if not, it forwards to
 * the inner store through the usual inline wrappers.
 */
#include "support/store_fault.h"
#include "core/err.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct fault {
    int err;       /* 0: disarmed */
    int sticky;    /* keeps failing once it fired */
    uint64_t skip; /* calls still to let through before the failing one */
};

struct fault_store {
    struct store base;
    struct store *inner;
    pthread_mutex_t mu; /* guards f, calls, injected */
    struct fault f[STORE_FAULT_OPS];
    uint64_t calls[STORE_FAULT_OPS];
    uint64_t injected;
    /* Owner thread only: the last call was an injected failure; err describes it. */
    int faulted;
    char err[128];
};

static const struct store_ops fault_ops;

#define OP_NAME_(name, NAME, params, args) [STORE_FAULT_##NAME] = #name,
static const char *const op_names[STORE_FAULT_OPS] = {
    [STORE_FAULT_ANY] = "any", STORE_OPS(OP_NAME_) /* [STORE_FAULT_PING] = "ping", ... */
};
#undef OP_NAME_

const char *store_fault_op_name(enum store_fault_op op)
{
    if ((unsigned)op >= STORE_FAULT_OPS || !op_names[op]) return "unknown";
    return op_names[op];
}

static struct fault_store *fault_store(struct store *s)
{
    assert(s && s->ops == &fault_ops);
    return (struct fault_store *)s;
}

int store_fault_is_wrapper(const struct store *s)
{
    return s && s->ops == &fault_ops;
}

/* Counts one call of f; 1 if it is the one (or, sticky, one of those) that fails. */
static int fault_tick(struct fault *f)
{
    if (!f->err) return 0;
    if (f->skip) {
        f->skip--;
        return 0;
    }
    return 1;
}

/*
 * Called first by every op: counts the call and decides whether an armed
 * fault fires. Returns 0 and sets *inner to forward, or the injected error.
 * A failed tx_commit ends the inner transaction, as the SQLite backend's
 * does.
 */
static int enter(struct store *base, enum store_fault_op op, struct store **inner)
{
    struct fault_store *fs = (struct fault_store *)base;
    int err = 0;
    pthread_mutex_lock(&fs->mu);
    fs->calls[op]++;
    fs->calls[STORE_FAULT_ANY]++;
    int own = fault_tick(&fs->f[op]);
    int any = fault_tick(&fs->f[STORE_FAULT_ANY]);
    enum store_fault_op fired = own ? op : STORE_FAULT_ANY;
    if (own || any) {
        err = fs->f[fired].err;
        fs->injected++;
    }
    /* A one-shot fault that fired is spent, even when the other one won. */
    if (own && !fs->f[op].sticky) fs->f[op].err = 0;
    if (any && !fs->f[STORE_FAULT_ANY].sticky) fs->f[STORE_FAULT_ANY].err = 0;
    pthread_mutex_unlock(&fs->mu);

    if (err) {
        fs->faulted = 1;
        snprintf(fs->err, sizeof fs->err, "injected fault: %s failed with \"%s\"%s",
                 store_fault_op_name(op), iot_strerror(err),
                 fired == STORE_FAULT_ANY ? " (any)" : "");
        if (op == STORE_FAULT_TX_COMMIT) store_tx_rollback(fs->inner);
        return err;
    }
    fs->faulted = 0;
    *inner = fs->inner;
    return 0;
}

static void arm(struct store *s, enum store_fault_op op, int nth, int err, int sticky)
{
    struct fault_store *fs = fault_store(s);
    assert((unsigned)op < STORE_FAULT_OPS);
    pthread_mutex_lock(&fs->mu);
    if (err == 0 || nth < 1)
        fs->f[op] = (struct fault){0, 0, 0};
    else
        fs->f[op] = (struct fault){err, sticky, (uint64_t)nth - 1};
    pthread_mutex_unlock(&fs->mu);
}

void store_fault_set(struct store *s, enum store_fault_op op, int nth, int err)
{
    arm(s, op, nth, err, 0);
}

void store_fault_set_sticky(struct store *s, enum store_fault_op op, int nth, int err)
{
    arm(s, op, nth, err, 1);
}

void store_fault_clear(struct store *s, enum store_fault_op op)
{
    arm(s, op, 0, 0, 0);
}

void store_fault_clear_all(struct store *s)
{
    for (int op = 0; op < STORE_FAULT_OPS; op++)
        arm(s, (enum store_fault_op)op, 0, 0, 0);
}

uint64_t store_fault_calls(struct store *s, enum store_fault_op op)
{
    struct fault_store *fs = fault_store(s);
    assert((unsigned)op < STORE_FAULT_OPS);
    pthread_mutex_lock(&fs->mu);
    uint64_t n = fs->calls[op];
    pthread_mutex_unlock(&fs->mu);
    return n;
}

uint64_t store_fault_injected(struct store *s)
{
    struct fault_store *fs = fault_store(s);
    pthread_mutex_lock(&fs->mu);
    uint64_t n = fs->injected;
    pthread_mutex_unlock(&fs->mu);
    return n;
}

int store_fault_wrap(struct store *inner, struct store **out)
{
    *out = NULL;
    struct fault_store *fs = calloc(1, sizeof *fs);
    if (!fs) {
        store_close(inner);
        return IOT_ENOMEM;
    }
    fs->base.ops = &fault_ops;
    fs->inner = inner;
    pthread_mutex_init(&fs->mu, NULL);
    *out = &fs->base;
    return 0;
}

/* ---- the ops ------------------------------------------------------------ */

static void sf_close(struct store *base)
{
    struct fault_store *fs = (struct fault_store *)base;
    store_close(fs->inner);
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

static const char *sf_errmsg(struct store *base)
{
    struct fault_store *fs = (struct fault_store *)base;
    return fs->faulted ? fs->err : store_errmsg(fs->inner);
}

/*
 * One forwarder per op of STORE_OPS: enter() counts the call and either
 * returns the injected error or sets s to the inner store, which the op's
 * own inline wrapper then gets with the caller's arguments.
 */
#define SF_FORWARD_(name, NAME, params, args)                                                      \
    static int sf_##name params                                                                    \
    {                                                                                              \
        int rc = enter(s, STORE_FAULT_##NAME, &s);                                                 \
        return rc ? rc : store_##name args;                                                        \
    }
STORE_OPS(SF_FORWARD_)
#undef SF_FORWARD_

#define SF_OP_(name, NAME, params, args) .name = sf_##name,
static const struct store_ops fault_ops = {
    .name = "fault",
    .close = sf_close,
    .errmsg = sf_errmsg,
    STORE_OPS(SF_OP_) /* .ping = sf_ping, ... */
};
#undef SF_OP_
