/*
 * Unit tests for src/ingest/classifier: the per-reading verdict of SPEC §4,
 * table-driven. Every bound open or closed, values equal to a bound (not a
 * violation), delta equal to delta_max (not a spike), the first reading (no
 * spike), the order critical > spike > warning > normal, thresholds with
 * id 0 (inactive) ignored.
 *
 * All values are exact binary fractions so that "equal" really is equal.
 */
#include "ingest/classifier.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>

#define OPEN NAN /* an open (NULL) bound */

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A threshold with the given id; OPEN for a NULL bound. */
static struct store_threshold thr(int64_t id, double min, double max, double delta)
{
    struct store_threshold t = {0};
    t.id = id;
    t.has_min = !isnan(min);
    t.min = t.has_min ? min : 0;
    t.has_max = !isnan(max);
    t.max = t.has_max ? max : 0;
    t.has_delta = !isnan(delta);
    t.delta_max = t.has_delta ? delta : 0;
    return t;
}

static const struct store_threshold NO_THR = {0};

/* ---- classifier_violates_range ---------------------------------------- */

struct range_case {
    const char *name;
    struct store_threshold t;
    double value;
    int want;
};

Test(classifier, violates_range_table)
{
    const struct range_case cases[] = {
        /* both bounds closed */
        {"inside", thr(1, 10, 20, OPEN), 15, 0},
        {"equal to min", thr(1, 10, 20, OPEN), 10, 0},
        {"equal to max", thr(1, 10, 20, OPEN), 20, 0},
        {"just below min", thr(1, 10, 20, OPEN), 9.99609375, 1},
        {"just above max", thr(1, 10, 20, OPEN), 20.00390625, 1},
        {"far below", thr(1, 10, 20, OPEN), -1e300, 1},
        {"far above", thr(1, 10, 20, OPEN), 1e300, 1},
        /* min only: max is open */
        {"min only, above", thr(2, 0, OPEN, OPEN), 1e300, 0},
        {"min only, equal", thr(2, 0, OPEN, OPEN), 0, 0},
        {"min only, below", thr(2, 0, OPEN, OPEN), -0.5, 1},
        /* max only: min is open */
        {"max only, below", thr(3, OPEN, 100, OPEN), -1e300, 0},
        {"max only, equal", thr(3, OPEN, 100, OPEN), 100, 0},
        {"max only, above", thr(3, OPEN, 100, OPEN), 100.5, 1},
        /* no bound at all (a delta-only threshold) */
        {"both open", thr(4, OPEN, OPEN, 5), 1e300, 0},
        {"both open, negative", thr(4, OPEN, OPEN, OPEN), -1e300, 0},
        /* negative band */
        {"negative band inside", thr(5, -40, -10, OPEN), -25, 0},
        {"negative band equal min", thr(5, -40, -10, OPEN), -40, 0},
        {"negative band above", thr(5, -40, -10, OPEN), -9.5, 1},
        /* degenerate band min == max */
        {"point band equal", thr(6, 7, 7, OPEN), 7, 0},
        {"point band off", thr(6, 7, 7, OPEN), 7.25, 1},
        /* id 0: no active threshold, whatever the bounds say */
        {"id 0 below", thr(0, 10, 20, OPEN), 0, 0},
        {"id 0 above", thr(0, 10, 20, OPEN), 100, 0},
        {"zeroed", NO_THR, 1e300, 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct range_case *c = &cases[i];
        cr_expect_eq(classifier_violates_range(&c->t, c->value), c->want, "%s: value %g", c->name,
                     c->value);
    }
}

/* ---- classifier_is_spike ----------------------------------------------- */

struct spike_case {
    const char *name;
    struct store_threshold warn, crit;
    double prev, value;
    int want;
    int64_t want_id; /* when want */
};

Test(classifier, is_spike_table)
{
    const struct spike_case cases[] = {
        {"no delta anywhere", thr(1, 0, 10, OPEN), thr(2, -5, 15, OPEN), 0, 1e6, 0, 0},
        {"no thresholds", NO_THR, NO_THR, 0, 1e6, 0, 0},
        {"warning delta, below", thr(1, OPEN, OPEN, 5), NO_THR, 10, 14, 0, 0},
        {"warning delta, equal up", thr(1, OPEN, OPEN, 5), NO_THR, 10, 15, 0, 0},
        {"warning delta, equal down", thr(1, OPEN, OPEN, 5), NO_THR, 10, 5, 0, 0},
        {"warning delta, over up", thr(1, OPEN, OPEN, 5), NO_THR, 10, 15.125, 1, 1},
        {"warning delta, over down", thr(1, OPEN, OPEN, 5), NO_THR, 10, 4.875, 1, 1},
        {"critical delta, equal", NO_THR, thr(2, OPEN, OPEN, 8), 0, -8, 0, 0},
        {"critical delta, over", NO_THR, thr(2, OPEN, OPEN, 8), 0, -8.5, 1, 2},
        {"both exceeded: critical preferred", thr(1, OPEN, OPEN, 5), thr(2, OPEN, OPEN, 8), 0, 9, 1,
         2},
        {"only the warning one exceeded", thr(1, OPEN, OPEN, 5), thr(2, OPEN, OPEN, 8), 0, 6, 1, 1},
        {"only the critical one exceeded", thr(1, OPEN, OPEN, 20), thr(2, OPEN, OPEN, 8), 0, 9, 1,
         2},
        {"zero delta_max, no change", thr(1, OPEN, OPEN, 0), NO_THR, 3, 3, 0, 0},
        {"zero delta_max, tiny change", thr(1, OPEN, OPEN, 0), NO_THR, 3, 3.0009765625, 1, 1},
        {"id 0 warning delta ignored", thr(0, OPEN, OPEN, 1), NO_THR, 0, 100, 0, 0},
        {"id 0 critical delta ignored", NO_THR, thr(0, OPEN, OPEN, 1), 0, 100, 0, 0},
        {"id 0 critical, warning active", thr(1, OPEN, OPEN, 50), thr(0, OPEN, OPEN, 1), 0, 60, 1,
         1},
        {"range violation is not a jump", thr(1, 0, 1, 5), thr(2, 0, 2, 5), 100, 101, 0, 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct spike_case *c = &cases[i];
        struct store_threshold t[2];
        t[SEV_WARNING] = c->warn;
        t[SEV_CRITICAL] = c->crit;
        int64_t id = -1;
        cr_expect_eq(classifier_is_spike(t, c->prev, c->value, &id), c->want, "%s", c->name);
        if (c->want)
            cr_expect_eq(id, c->want_id, "%s: threshold id %lld", c->name, (long long)id);
        else
            cr_expect_eq(id, -1, "%s: thr_id written without a spike", c->name);
        /* thr_id is optional */
        cr_expect_eq(classifier_is_spike(t, c->prev, c->value, NULL), c->want, "%s (NULL id)",
                     c->name);
    }
}

/* ---- classifier_range_class and classifier_classify -------------------- */

struct class_case {
    const char *name;
    struct store_threshold warn, crit;
    int has_prev;
    double prev, value;
    enum reading_class want;       /* classifier_classify */
    enum reading_class want_range; /* classifier_range_class */
};

/* The user's bands: normal [20, 30], warning band up to [10, 40], jumps of 8 / 12. */
#define W  thr(11, 20, 30, 8)
#define C  thr(12, 10, 40, 12)
#define WR thr(11, 20, 30, OPEN) /* the same ranges without a delta */
#define CR thr(12, 10, 40, OPEN)

Test(classifier, classify_table)
{
    const struct class_case cases[] = {
        /* every class, first reading */
        {"normal", W, C, 0, 0, 25, CLASS_NORMAL, CLASS_NORMAL},
        {"warning high", W, C, 0, 0, 35, CLASS_WARNING, CLASS_WARNING},
        {"warning low", W, C, 0, 0, 15, CLASS_WARNING, CLASS_WARNING},
        {"alert high", W, C, 0, 0, 45, CLASS_ALERT, CLASS_ALERT},
        {"alert low", W, C, 0, 0, 5, CLASS_ALERT, CLASS_ALERT},
        /* equal to a bound is not a violation */
        {"equal warning max", W, C, 1, 30, 30, CLASS_NORMAL, CLASS_NORMAL},
        {"equal warning min", W, C, 1, 20, 20, CLASS_NORMAL, CLASS_NORMAL},
        {"equal critical max", W, C, 1, 40, 40, CLASS_WARNING, CLASS_WARNING},
        {"equal critical min", W, C, 1, 10, 10, CLASS_WARNING, CLASS_WARNING},
        /* first reading: no previous value, no spike however far */
        {"first reading far jump", W, C, 0, -1000, 25, CLASS_NORMAL, CLASS_NORMAL},
        {"first reading prev ignored", W, C, 0, 1e300, 29, CLASS_NORMAL, CLASS_NORMAL},
        /* delta exactly delta_max is not a spike */
        {"jump equal warning delta", W, C, 1, 21, 29, CLASS_NORMAL, CLASS_NORMAL},
        {"jump just over warning delta", W, C, 1, 21, 29.0625, CLASS_SPIKE, CLASS_NORMAL},
        {"jump down over warning delta", W, C, 1, 29.5, 21, CLASS_SPIKE, CLASS_NORMAL},
        /* delta from the critical threshold alone */
        {"critical delta only, equal", WR, C, 1, 20, 32, CLASS_WARNING, CLASS_WARNING},
        {"critical delta only, over", WR, C, 1, 20, 32.5, CLASS_SPIKE, CLASS_WARNING},
        {"critical delta only, in band", WR, thr(12, 10, 40, 2), 1, 22, 25, CLASS_SPIKE,
         CLASS_NORMAL},
        /* delta from the warning threshold alone */
        {"warning delta only, over", W, CR, 1, 20, 28.5, CLASS_SPIKE, CLASS_NORMAL},
        {"no delta at all", WR, CR, 1, 20, 39, CLASS_WARNING, CLASS_WARNING},
        /* order: critical wins over spike, spike wins over warning */
        {"critical beats spike", W, C, 1, 25, 50, CLASS_ALERT, CLASS_ALERT},
        {"critical beats spike down", W, C, 1, 25, 0, CLASS_ALERT, CLASS_ALERT},
        {"spike beats warning", W, C, 1, 25, 36, CLASS_SPIKE, CLASS_WARNING},
        {"spike beats warning down", W, C, 1, 25, 12, CLASS_SPIKE, CLASS_WARNING},
        {"warning without spike", W, C, 1, 30, 36, CLASS_WARNING, CLASS_WARNING},
        /* the previous value's own class does not matter, only the jump */
        {"back from alert in one jump", W, C, 1, 45, 25, CLASS_SPIKE, CLASS_NORMAL},
        {"alert to alert small jump", W, C, 1, 45, 46, CLASS_ALERT, CLASS_ALERT},
        /* open bounds */
        {"max-only critical, below", NO_THR, thr(12, OPEN, 40, OPEN), 0, 0, -1e300, CLASS_NORMAL,
         CLASS_NORMAL},
        {"min-only warning, above", thr(11, 20, OPEN, OPEN), NO_THR, 0, 0, 1e300, CLASS_NORMAL,
         CLASS_NORMAL},
        {"min-only warning, below", thr(11, 20, OPEN, OPEN), NO_THR, 0, 0, 19, CLASS_WARNING,
         CLASS_WARNING},
        /* thresholds with id 0 are ignored */
        {"no thresholds", NO_THR, NO_THR, 1, 0, 1e300, CLASS_NORMAL, CLASS_NORMAL},
        {"inactive critical", W, thr(0, 10, 40, 1), 1, 25, 45, CLASS_SPIKE, CLASS_WARNING},
        {"inactive warning", thr(0, 20, 30, 1), C, 1, 25, 35, CLASS_NORMAL, CLASS_NORMAL},
        {"both inactive", thr(0, 20, 30, 1), thr(0, 10, 40, 1), 1, 25, 100, CLASS_NORMAL,
         CLASS_NORMAL},
        /* a critical band inside the warning band still wins (user misconfiguration) */
        {"critical narrower than warning", thr(11, 0, 100, OPEN), thr(12, 10, 40, OPEN), 0, 0, 50,
         CLASS_ALERT, CLASS_ALERT},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct class_case *c = &cases[i];
        struct store_threshold t[2];
        t[SEV_WARNING] = c->warn;
        t[SEV_CRITICAL] = c->crit;
        enum reading_class cls = classifier_classify(t, c->has_prev, c->prev, c->value);
        cr_expect_eq(cls, c->want, "%s: classify(prev %g, value %g) = %s, want %s", c->name,
                     c->prev, c->value, reading_class_name(cls), reading_class_name(c->want));
        enum reading_class got = classifier_range_class(t, c->value);
        cr_expect_eq(got, c->want_range, "%s: range_class(%g) = %s, want %s", c->name, c->value,
                     reading_class_name(got), reading_class_name(c->want_range));
        /* range_class never says spike; classify never says invalid */
        cr_expect_neq(got, CLASS_SPIKE, "%s", c->name);
        cr_expect_neq(cls, CLASS_INVALID, "%s: classify said invalid", c->name);
    }
}

static int same_threshold(const struct store_threshold *a, const struct store_threshold *b)
{
    return a->id == b->id && a->has_min == b->has_min && a->has_max == b->has_max &&
           a->has_delta == b->has_delta && a->min == b->min && a->max == b->max &&
           a->delta_max == b->delta_max;
}

/* Pure functions: same answer every time, thresholds left untouched. */
Test(classifier, pure)
{
    struct store_threshold t[2] = {W, C};
    const struct store_threshold copy[2] = {W, C};
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(classifier_classify(t, 1, 25, 36), CLASS_SPIKE);
        cr_expect_eq(classifier_classify(t, 1, 25, 45), CLASS_ALERT);
        cr_expect_eq(classifier_range_class(t, 36), CLASS_WARNING);
    }
    cr_expect(same_threshold(&t[0], &copy[0]) && same_threshold(&t[1], &copy[1]),
              "classifier modified its thresholds");
}
