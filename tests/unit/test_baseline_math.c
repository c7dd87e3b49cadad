/*
 * Unit tests for src/jobs/baseline_math: the baseline model's formulas
 * (header comment of baseline_math.h, docs/jobs.md).
 *
 *   prediction = mean of the newest w = min(n, window) values
 *   confidence = 1 / (1 + spread / max(|prediction|, 1)), spread = population std
 *   z          = |v[0] - mean(ref)| / std(ref), ref = v[1..r], r = min(n-1, window)
 *   score      = 1 - 4^(-(z/anomaly_z)^2), is_anomaly = z >= anomaly_z
 *
 * Cases: flat series, flat series with a far outlier (newest, and older), ramp,
 * series shorter than the window (n = 1, n = 2, n = 3, n < window, n = window),
 * z exactly at / just under / twice anomaly_z, constant series of values that
 * are not exact binary fractions or are very large / negative (never NaN),
 * result ranges, symmetry.
 */
#include "jobs/baseline_math.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Reference implementation of the documented formulas (long double, naive). */
static void reference(const double *v, size_t n, size_t window, double az, double *pred,
                      double *conf, double *z, double *score)
{
    size_t w = n < window ? n : window;
    long double s = 0, q = 0;
    for (size_t i = 0; i < w; i++)
        s += v[i];
    long double m = s / w;
    for (size_t i = 0; i < w; i++)
        q += (v[i] - m) * (v[i] - m);
    long double spread = sqrtl(q / w);
    *pred = (double)m;
    long double scale = fabsl(m) > 1 ? fabsl(m) : 1;
    *conf = (double)(1 / (1 + spread / scale));
    size_t r = n - 1 < window ? n - 1 : window;
    *z = 0;
    if (r >= 2) {
        long double rs = 0, rq = 0;
        for (size_t i = 1; i <= r; i++)
            rs += v[i];
        long double rm = rs / r;
        for (size_t i = 1; i <= r; i++)
            rq += (v[i] - rm) * (v[i] - rm);
        long double rsd = sqrtl(rq / r);
        long double dev = fabsl(v[0] - rm);
        if (dev > 0) *z = rsd > 0 ? (double)(dev / rsd) : INFINITY;
    }
    double k = *z / az;
    *score = isinf(k) ? 1.0 : 1.0 - pow(4.0, -(k * k));
}

static struct baseline_result run(const double *v, size_t n, size_t window, double az)
{
    struct baseline_result r;
    /* Poison the output: every field must be written. */
    r.predicted = r.confidence = r.z = r.score = NAN;
    r.is_anomaly = -1;
    baseline_compute(v, n, window, az, &r);
    return r;
}

static void assert_sane(const struct baseline_result *r, const char *what)
{
    cr_assert(!isnan(r->predicted), "%s: predicted is NaN", what);
    cr_assert(!isnan(r->confidence), "%s: confidence is NaN", what);
    cr_assert(!isnan(r->z), "%s: z is NaN", what);
    cr_assert(!isnan(r->score), "%s: score is NaN", what);
    cr_assert(r->confidence > 0 && r->confidence <= 1, "%s: confidence %.17g not in (0,1]", what,
              r->confidence);
    cr_assert(r->score >= 0 && r->score <= 1, "%s: score %.17g not in [0,1]", what, r->score);
    cr_assert(r->z >= 0, "%s: z %.17g < 0", what, r->z);
    cr_assert(r->is_anomaly == 0 || r->is_anomaly == 1, "%s: is_anomaly %d", what, r->is_anomaly);
}

static void assert_close(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol * (fabs(want) > 1 ? fabs(want) : 1),
              "%s: got %.17g, want %.17g", what, got, want);
}

/* Compares with the reference implementation. */
static void check_reference(const double *v, size_t n, size_t window, double az, const char *what)
{
    double pred, conf, z, score;
    reference(v, n, window, az, &pred, &conf, &z, &score);
    struct baseline_result r = run(v, n, window, az);
    assert_sane(&r, what);
    assert_close(r.predicted, pred, 1e-12, what);
    assert_close(r.confidence, conf, 1e-12, what);
    if (isinf(z))
        cr_assert(isinf(r.z), "%s: z %.17g, want inf", what, r.z);
    else
        assert_close(r.z, z, 1e-9, what);
    assert_close(r.score, score, 1e-12, what);
    cr_assert_eq(r.is_anomaly, z >= az, "%s: is_anomaly %d, z %.17g", what, r.is_anomaly, z);
}

/* ---- flat series ---------------------------------------------------------- */

Test(baseline_math, flat_series_scores_zero_confidence_one)
{
    double v[11];
    for (size_t i = 0; i < N(v); i++)
        v[i] = 5.0;
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "flat");
    cr_assert_eq(r.predicted, 5.0);
    cr_assert_eq(r.confidence, 1.0);
    cr_assert_eq(r.z, 0.0);
    cr_assert_eq(r.score, 0.0);
    cr_assert_eq(r.is_anomaly, 0);
}

Test(baseline_math, flat_zero_series)
{
    double v[11] = {0};
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "flat zero");
    cr_assert_eq(r.predicted, 0.0);
    cr_assert_eq(r.confidence, 1.0);
    cr_assert_eq(r.score, 0.0);
    cr_assert_eq(r.is_anomaly, 0);
}

Test(baseline_math, flat_series_with_far_outlier_as_newest)
{
    double v[11];
    for (size_t i = 0; i < N(v); i++)
        v[i] = 5.0;
    v[0] = 100.0; /* the newest */
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "outlier");
    cr_assert(r.score > 0.9, "score %.17g", r.score);
    cr_assert_eq(r.is_anomaly, 1);
    cr_assert(isinf(r.z), "z %.17g: a flat reference has std 0", r.z);
    cr_assert_eq(r.score, 1.0);
    /* prediction = mean(100, 5 x 9) = 14.5; spread = sqrt(0.9*0.1)*95 = 28.5 */
    assert_close(r.predicted, 14.5, 1e-15, "predicted");
    assert_close(r.confidence, 1.0 / (1.0 + 28.5 / 14.5), 1e-12, "confidence");
}

Test(baseline_math, flat_series_with_far_negative_outlier_as_newest)
{
    double v[11];
    for (size_t i = 0; i < N(v); i++)
        v[i] = 5.0;
    v[0] = -100.0;
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "negative outlier");
    cr_assert(r.score > 0.9, "score %.17g", r.score);
    cr_assert_eq(r.is_anomaly, 1);
}

Test(baseline_math, noisy_series_with_far_outlier_scores_above_0_9)
{
    /* Reference alternates 10, 12: mean 11, population std 1. Newest 11 + 8 -> z = 8. */
    double v[11] = {19, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12};
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "noisy outlier");
    assert_close(r.z, 8.0, 1e-12, "z");
    cr_assert(r.score > 0.9, "score %.17g", r.score);
    cr_assert_eq(r.is_anomaly, 1);
    check_reference(v, N(v), 10, 3, "noisy outlier");
}

Test(baseline_math, outlier_that_is_not_the_newest_is_not_anomalous)
{
    /* The outlier sits in the reference: the newest (5) is close to its mean. */
    double v[11] = {5, 5, 5, 5, 100, 5, 5, 5, 5, 5, 5};
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "old outlier");
    cr_assert_eq(r.is_anomaly, 0);
    cr_assert(r.score < 0.1, "score %.17g", r.score);
    /* ref mean 14.5, std 28.5 -> z = 9.5 / 28.5 = 1/3 */
    assert_close(r.z, 1.0 / 3.0, 1e-12, "z");
    check_reference(v, N(v), 10, 3, "old outlier");
}

/* ---- ramp --------------------------------------------------------------- */

Test(baseline_math, ramp)
{
    /* Newest first: 10, 9, ..., 0 (a rising series). */
    double v[11];
    for (size_t i = 0; i < N(v); i++)
        v[i] = (double)(10 - i);
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "ramp");
    /* prediction = mean(10..1) = 5.5; spread = sqrt((10^2-1)/12) */
    double sd = sqrt(99.0 / 12.0);
    assert_close(r.predicted, 5.5, 1e-15, "predicted");
    assert_close(r.confidence, 1.0 / (1.0 + sd / 5.5), 1e-12, "confidence");
    /* ref = 9..0: mean 4.5, same std; z = 5.5 / sd ~ 1.915 */
    assert_close(r.z, 5.5 / sd, 1e-12, "z");
    double k = (5.5 / sd) / 3.0;
    assert_close(r.score, 1.0 - pow(4.0, -k * k), 1e-12, "score");
    cr_assert_eq(r.is_anomaly, 0);
    cr_assert(r.confidence < 1.0);
    check_reference(v, N(v), 10, 3, "ramp");
}

Test(baseline_math, falling_ramp_is_symmetric)
{
    double up[11], down[11];
    for (size_t i = 0; i < N(up); i++) {
        up[i] = (double)(10 - i);
        down[i] = -(double)(10 - i);
    }
    struct baseline_result a = run(up, N(up), 10, 3), b = run(down, N(down), 10, 3);
    assert_sane(&b, "falling ramp");
    cr_assert_eq(b.predicted, -a.predicted);
    assert_close(b.confidence, a.confidence, 1e-15, "confidence");
    assert_close(b.z, a.z, 1e-12, "z");
    assert_close(b.score, a.score, 1e-12, "score");
}

Test(baseline_math, confidence_falls_as_spread_grows)
{
    double prev = 2;
    for (int k = 0; k <= 6; k++) {
        double amp = k * 2.0, v[10];
        for (size_t i = 0; i < N(v); i++)
            v[i] = 50 + (i % 2 ? amp : -amp);
        struct baseline_result r = run(v, N(v), 10, 3);
        assert_sane(&r, "spread");
        cr_assert(r.confidence < prev || (k == 0 && r.confidence == 1.0),
                  "amp %g: confidence %.17g not below %.17g", amp, r.confidence, prev);
        prev = r.confidence;
    }
}

Test(baseline_math, score_grows_with_z)
{
    double prev = -1;
    for (int k = 0; k <= 12; k++) {
        /* ref alternates 10, 12 (mean 11, std 1), newest 11 + k/2 -> z = k/2 */
        double v[11] = {11 + k / 2.0, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12};
        struct baseline_result r = run(v, N(v), 10, 3);
        assert_sane(&r, "z sweep");
        cr_assert(r.score > prev || (k == 0 && r.score == 0), "k %d: score %.17g vs %.17g", k,
                  r.score, prev);
        prev = r.score;
    }
}

/* ---- windows shorter than configured ---------------------------------- */

Test(baseline_math, single_reading)
{
    double v[] = {42.5};
    struct baseline_result r = run(v, 1, 10, 3);
    assert_sane(&r, "n=1");
    cr_assert_eq(r.predicted, 42.5);
    cr_assert_eq(r.confidence, 1.0);
    cr_assert_eq(r.z, 0.0);
    cr_assert_eq(r.score, 0.0);
    cr_assert_eq(r.is_anomaly, 0);
}

Test(baseline_math, single_negative_reading)
{
    double v[] = {-3.3};
    struct baseline_result r = run(v, 1, 10, 3);
    assert_sane(&r, "n=1 negative");
    cr_assert_eq(r.predicted, -3.3);
    cr_assert_eq(r.confidence, 1.0);
    cr_assert_eq(r.score, 0.0);
}

Test(baseline_math, two_readings_have_no_reference)
{
    /* r = 1 < 2: no z-score, whatever the jump. */
    double v[] = {1000, 10};
    struct baseline_result r = run(v, 2, 10, 3);
    assert_sane(&r, "n=2");
    cr_assert_eq(r.predicted, 505.0);
    /* spread = 495 -> confidence = 1 / (1 + 495/505) */
    assert_close(r.confidence, 1.0 / (1.0 + 495.0 / 505.0), 1e-15, "confidence");
    cr_assert_eq(r.z, 0.0);
    cr_assert_eq(r.score, 0.0);
    cr_assert_eq(r.is_anomaly, 0);
}

Test(baseline_math, three_readings_have_a_two_point_reference)
{
    double v[] = {20, 10, 12}; /* ref 10, 12: mean 11, std 1 -> z = 9 */
    struct baseline_result r = run(v, 3, 10, 3);
    assert_sane(&r, "n=3");
    assert_close(r.predicted, 14.0, 1e-15, "predicted");
    assert_close(r.z, 9.0, 1e-12, "z");
    cr_assert_eq(r.is_anomaly, 1);
    check_reference(v, 3, 10, 3, "n=3");
}

Test(baseline_math, fewer_readings_than_window)
{
    double v[] = {7, 1, 2, 3, 4}; /* n = 5 < window 10 */
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "n<window");
    assert_close(r.predicted, 17.0 / 5.0, 1e-15, "predicted: mean of all 5");
    /* ref = 1..4: mean 2.5, std sqrt(1.25) */
    assert_close(r.z, 4.5 / sqrt(1.25), 1e-12, "z");
    cr_assert_eq(r.is_anomaly, 1);
    check_reference(v, N(v), 10, 3, "n<window");
}

Test(baseline_math, exactly_window_readings)
{
    double v[] = {9, 1, 2, 3, 4, 5, 6, 7, 8, 9}; /* n = window = 10: ref has 9 */
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "n=window");
    assert_close(r.predicted, 5.4, 1e-15, "predicted");
    check_reference(v, N(v), 10, 3, "n=window");
}

Test(baseline_math, only_the_window_counts)
{
    /* Readings beyond window+1 must be ignored: same result with or without them. */
    double a[11] = {3, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5};
    double b[40];
    for (size_t i = 0; i < N(b); i++)
        b[i] = i < N(a) ? a[i] : 1e6;
    struct baseline_result ra = run(a, N(a), 10, 3);
    /*
     * Passing more than window+1 values: only v[0..window] are read (w = 10 for the
     * prediction and its spread, the reference v[1..10]), so every output is the same.
     */
    struct baseline_result rc = run(b, N(b), 10, 3);
    cr_assert_eq(ra.predicted, rc.predicted);
    cr_assert_eq(ra.z, rc.z);
    cr_assert_eq(ra.confidence, rc.confidence, "confidence %.17g vs %.17g", ra.confidence,
                 rc.confidence);
    cr_assert_eq(ra.score, rc.score, "score %.17g vs %.17g", ra.score, rc.score);
    cr_assert_eq(ra.is_anomaly, rc.is_anomaly);
}

Test(baseline_math, window_of_one)
{
    double v[] = {9, 1, 2};
    struct baseline_result r = run(v, 3, 1, 3);
    assert_sane(&r, "window=1");
    cr_assert_eq(r.predicted, 9.0);
    cr_assert_eq(r.confidence, 1.0);
    cr_assert_eq(r.z, 0.0); /* r = 1 < 2 */
    cr_assert_eq(r.is_anomaly, 0);
}

/* ---- the anomaly threshold ------------------------------------------------ */

Test(baseline_math, z_exactly_at_anomaly_z_scores_0_75)
{
    /* ref = {0, 2}: mean 1, std 1 (exact); newest 4 -> z = 3 exactly. */
    double v[] = {4, 0, 2};
    struct baseline_result r = run(v, 3, 2, 3);
    assert_sane(&r, "z=Z");
    cr_assert_eq(r.z, 3.0);
    cr_assert_eq(r.score, 0.75);
    cr_assert_eq(r.is_anomaly, 1);
    cr_assert_eq(r.predicted, 2.0); /* mean of the newest w = 2: (4 + 0) / 2 */
}

Test(baseline_math, z_at_anomaly_z_other_thresholds)
{
    const double zs[] = {0.5, 1, 2, 4, 2.5};
    for (size_t i = 0; i < N(zs); i++) {
        double v[] = {1 + zs[i], 0, 2};
        struct baseline_result r = run(v, 3, 2, zs[i]);
        assert_sane(&r, "z=Z");
        cr_assert_eq(r.z, zs[i]);
        cr_assert_eq(r.score, 0.75, "Z=%g: score %.17g", zs[i], r.score);
        cr_assert_eq(r.is_anomaly, 1);
    }
}

Test(baseline_math, z_just_below_anomaly_z_is_not_anomalous)
{
    double v[] = {3.9375, 0, 2}; /* z = 2.9375 */
    struct baseline_result r = run(v, 3, 2, 3);
    assert_sane(&r, "z<Z");
    cr_assert_eq(r.z, 2.9375);
    cr_assert_eq(r.is_anomaly, 0);
    cr_assert(r.score < 0.75 && r.score > 0.7, "score %.17g", r.score);
}

Test(baseline_math, z_twice_anomaly_z_scores_above_0_99)
{
    double v[] = {7, 0, 2}; /* z = 6 = 2 * 3 */
    struct baseline_result r = run(v, 3, 2, 3);
    assert_sane(&r, "z=2Z");
    cr_assert_eq(r.z, 6.0);
    assert_close(r.score, 1.0 - 1.0 / 256.0, 1e-15, "score = 1 - 4^-4");
    cr_assert(r.score > 0.99);
    cr_assert_eq(r.is_anomaly, 1);
}

Test(baseline_math, every_anomaly_clears_the_default_explainer_threshold)
{
    /* is_anomaly implies score >= 0.75 >= ANOMALY_SCORE_THRESHOLD's default 0.7. */
    for (int k = 0; k <= 40; k++) {
        double z = 2.0 + k * 0.125;
        double v[] = {1 + z, 0, 2};
        struct baseline_result r = run(v, 3, 2, 3);
        assert_sane(&r, "sweep");
        if (r.is_anomaly)
            cr_assert(r.score >= 0.75, "z %g: score %.17g", z, r.score);
        else
            cr_assert(r.score < 0.75, "z %g: score %.17g", z, r.score);
    }
}

/* ---- constant series of awkward values: never NaN, score 0 ----------------- */

static void check_constant(double c, size_t n, size_t window)
{
    double v[64];
    cr_assert(n <= N(v));
    for (size_t i = 0; i < n; i++)
        v[i] = c;
    struct baseline_result r = run(v, n, window, 3);
    char what[64];
    snprintf(what, sizeof what, "constant %.17g n=%zu w=%zu", c, n, window);
    assert_sane(&r, what);
    cr_assert_eq(r.z, 0.0, "%s: z %.17g", what, r.z);
    cr_assert_eq(r.score, 0.0, "%s: score %.17g", what, r.score);
    cr_assert_eq(r.is_anomaly, 0, "%s", what);
    assert_close(r.predicted, c, 1e-13, what);
    cr_assert(r.confidence > 1 - 1e-12, "%s: confidence %.17g", what, r.confidence);
}

Test(baseline_math, constant_non_binary_fractions)
{
    const double cs[] = {20.1, 0.1, -3.3, 0.3, 1.1, 99.99, -0.7, 1e-300, 123456.789};
    const size_t ns[] = {3, 7, 11, 31, 64};
    for (size_t i = 0; i < N(cs); i++)
        for (size_t j = 0; j < N(ns); j++)
            check_constant(cs[i], ns[j], ns[j] - 1);
}

Test(baseline_math, constant_large_values)
{
    const double cs[] = {1e15, -1e15, 1e15 + 0.5, 4503599627370497.0, 1e100, -1e150};
    for (size_t i = 0; i < N(cs); i++) {
        check_constant(cs[i], 11, 10);
        check_constant(cs[i], 64, 63);
    }
}

/*
 * A flat series has no spread, so its confidence is 1, however large the
 * (finite) value. Beyond ~1e154 the rounding error of the mean, squared,
 * overflows to inf in mean_std(): spread = inf, confidence = 0.
 */
Test(baseline_math, constant_beyond_1e154_has_confidence_one)
{
    const double cs[] = {-1e200, 3e250, 1e300};
    for (size_t i = 0; i < N(cs); i++)
        check_constant(cs[i], 11, 10);
}

/*
 * Finite values near DBL_MAX are valid readings (SPEC §4 rejects only non-finite
 * values). The header promises "Never produces NaN".
 */
Test(baseline_math, constant_near_dbl_max_is_nan_free)
{
    check_constant(1e308, 11, 10);
    check_constant(-1.5e308, 11, 10);
}

Test(baseline_math, huge_mixed_values_are_nan_free)
{
    double v[] = {1e308, -1e308, 1e308, -1e308, 1e308, -1e308, 1e308, -1e308, 1e308, -1e308, 1};
    struct baseline_result r = run(v, N(v), 10, 3);
    cr_assert(!isnan(r.predicted) && !isnan(r.confidence) && !isnan(r.z) && !isnan(r.score),
              "NaN: predicted %g confidence %g z %g score %g", r.predicted, r.confidence, r.z,
              r.score);
    /* The true confidence here is ~1e-308: 0 after rounding is acceptable. */
    cr_assert(r.confidence >= 0 && r.confidence <= 1);
    cr_assert(r.score >= 0 && r.score <= 1);
}

Test(baseline_math, rounding_noise_is_not_an_anomaly)
{
    /* 0.1 + 0.2 != 0.3: differences at the last bit must not give z = inf. */
    double v[11] = {0.1 + 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3};
    struct baseline_result r = run(v, N(v), 10, 3);
    assert_sane(&r, "rounding noise");
    cr_assert_eq(r.z, 0.0);
    cr_assert_eq(r.score, 0.0);
    cr_assert_eq(r.is_anomaly, 0);
}

Test(baseline_math, random_like_series_match_reference)
{
    /* A deterministic pseudo-random series checked against the naive formulas. */
    double v[64];
    unsigned x = 12345;
    for (size_t i = 0; i < N(v); i++) {
        x = x * 1103515245u + 12345u;
        v[i] = (double)((x >> 8) % 10000) / 100.0 - 50.0;
    }
    const size_t ns[] = {1, 2, 3, 5, 10, 11, 20, 64};
    const size_t ws[] = {2, 3, 10, 63, 1000};
    for (size_t i = 0; i < N(ns); i++)
        for (size_t j = 0; j < N(ws); j++)
            check_reference(v, ns[i], ws[j], 3, "pseudo-random");
}

/* The shared formulas the online model calls too (baseline_math.h), at their edges. */
Test(baseline_math, shared_formulas_at_the_edges)
{
    cr_assert_eq(baseline_score(0, 3), 0.0);
    cr_assert_eq(baseline_score(3, 3), 0.75);
    cr_assert_eq(baseline_score(INFINITY, 3), 1.0);
    cr_assert_eq(baseline_score(1e300, 0.1), 1.0); /* the ratio overflows */
    cr_assert(baseline_score(6, 3) > 0.99 && baseline_score(6, 3) < 1.0);
    cr_assert_eq(baseline_is_anomaly(3, 3), 1);
    cr_assert_eq(baseline_is_anomaly(nextafter(3, 0), 3), 0);
    cr_assert_eq(baseline_is_anomaly(INFINITY, 3), 1);
    cr_assert_eq(baseline_confidence(0, 0), 1.0);
    cr_assert_eq(baseline_confidence(-0.5, 1), 0.5); /* scale max(|level|, 1) = 1 */
    cr_assert_eq(baseline_confidence(-4, 4), 0.5);   /* scale |level| = 4 */
    cr_assert_eq(baseline_confidence(1e308, INFINITY), 0.0);
    cr_assert_eq(baseline_confidence(INFINITY, INFINITY), 0.0); /* never NaN */
}
