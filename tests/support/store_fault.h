/*
 * A fault-injecting store (test-support library, tests/support/; never in
 * the product binary): a backend that wraps another one (in the spirit
 * of SQLite's test VFS) and makes chosen calls fail with a chosen error, so
 * that the unit tests and the fuzzers can drive every error path of the
 * writer, the router and the jobs against a real database.
 *
 * Without an armed fault the wrapper is transparent: every op of struct
 * store_ops is forwarded to the inner store unchanged, with its arguments,
 * results and error codes.
 *
 * A fault is armed per op (enum store_fault_op) and counts that op's calls
 * from the moment it is armed: the nth call (1-based) fails with err instead
 * of reaching the inner store. A one-shot fault disarms itself after firing;
 * a sticky one fails that call and every later one until cleared (a disk
 * that filled up, a server that went away). STORE_FAULT_ANY counts every
 * forwarded call (every op except close and errmsg), so "fail the Nth
 * database call" is one line. Faults of different ops are independent;
 * when the op's own fault and ANY fire on the same call, the call fails
 * once, with the op's own error, and a one-shot fault of either is spent.
 *
 * What a failed call does to the inner store: nothing, it is not forwarded,
 * with one exception: a failed tx_commit rolls the inner transaction back,
 * exactly as the SQLite backend does whenever COMMIT fails, so that the
 * transaction is over whatever the caller does next. store_errmsg names the
 * injected fault until the next call reaches the inner store. The only
 * visible difference without a fault is store_backend(), which says "fault".
 *
 * Threads: the store itself, like every store, is used by one thread at a
 * time; store_fault_set / _clear and the counters may be called from any
 * thread (a test arms a fault while the writer thread runs).
 */
#ifndef IOT_TESTS_STORE_FAULT_H
#define IOT_TESTS_STORE_FAULT_H

#include "store/store.h"

#include <stdint.h>

/* One per op of STORE_OPS (store/store.h), STORE_FAULT_PING ..., plus ANY. */
#define STORE_FAULT_ENUM_(name, NAME, params, args) STORE_FAULT_##NAME,
enum store_fault_op {
    STORE_FAULT_ANY = 0,                         /* every call below */
    STORE_OPS(STORE_FAULT_ENUM_) STORE_FAULT_OPS /* count */
};
#undef STORE_FAULT_ENUM_

/*
 * Wraps inner. Takes ownership of inner: store_close(*out) closes it, and
 * so does a failure here. Returns 0 or IOT_ENOMEM (*out is then NULL).
 */
int store_fault_wrap(struct store *inner, struct store **out);

/* 1 if s was made by store_fault_wrap. */
int store_fault_is_wrapper(const struct store *s);

/*
 * Arms a one-shot fault: the nth call of op (nth >= 1, counted from this
 * call) fails with err (a negative code from core/err.h, e.g. IOT_EBUSY,
 * IOT_EUNAVAIL, IOT_EDB), then the fault disarms itself. Replaces the fault
 * armed on op, if any. err == 0 or nth < 1 disarms op instead.
 */
void store_fault_set(struct store *s, enum store_fault_op op, int nth, int err);

/* Like store_fault_set, but the nth call and every later one fail until cleared. */
void store_fault_set_sticky(struct store *s, enum store_fault_op op, int nth, int err);

/* Disarms the fault of op; store_fault_clear_all disarms every op. */
void store_fault_clear(struct store *s, enum store_fault_op op);
void store_fault_clear_all(struct store *s);

/*
 * Counters since the wrap: calls of op (failed ones included; for
 * STORE_FAULT_ANY, of every op), and faults injected so far.
 */
uint64_t store_fault_calls(struct store *s, enum store_fault_op op);
uint64_t store_fault_injected(struct store *s);

/* "tx_commit", "packet_put", ...: the op's name in struct store_ops ("any" for ANY). */
const char *store_fault_op_name(enum store_fault_op op);

#endif
