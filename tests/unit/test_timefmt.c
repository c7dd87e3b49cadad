#include <criterion/criterion.h>

#include "core/err.h"
#include "core/timefmt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIN_MS (-62135596800000LL) /* 0001-01-01T00:00:00.000Z */
#define MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */

/* A string literal with its exact length, embedded NULs included. */
#define LIT(s) s, sizeof(s) - 1

struct parse_case {
    const char *s;
    size_t len;
    int rc;
    int64_t ms;
};

/*
 * Parses a copy in a heap block of exactly len bytes with no terminator, so
 * ASan reports any read past the end.
 */
static int parse_exact(const char *s, size_t len, int64_t *ms)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, s, len);
    int rc = timefmt_parse_rfc3339(copy, len, ms);
    free(copy);
    return rc;
}

static void run_parse_cases(const struct parse_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t ms = 12345;
        int rc = parse_exact(c[i].s, c[i].len, &ms);
        cr_expect_eq(rc, c[i].rc, "case %zu \"%.*s\": rc %d, want %d", i, (int)c[i].len, c[i].s, rc,
                     c[i].rc);
        if (c[i].rc == 0 && rc == 0)
            cr_expect_eq(ms, c[i].ms, "case %zu \"%.*s\": %lld ms, want %lld", i, (int)c[i].len,
                         c[i].s, (long long)ms, (long long)c[i].ms);
        if (rc != 0) cr_expect_eq(ms, 12345, "case %zu: output written on error", i);
    }
}

Test(timefmt_parse, valid)
{
    static const struct parse_case cases[] = {
        {LIT("1970-01-01T00:00:00Z"), 0, 0},
        {LIT("1970-01-01T00:00:00.000Z"), 0, 0},
        {LIT("2026-11-27T17:00:00.123Z"), 0, 1795798800123},
        {LIT("2026-11-27t17:00:00.123z"), 0, 1795798800123},
        {LIT("2026-11-27 17:00:00.123Z"), 0, 1795798800123},
        {LIT("2026-11-27T17:00:00.123+00:00"), 0, 1795798800123},
        {LIT("2026-11-27T17:00:00.123-00:00"), 0, 1795798800123},
        {LIT("2026-11-27T18:00:00.123+01:00"), 0, 1795798800123},
        {LIT("2024-02-29T12:00:00Z"), 0, 1709208000000},
        {LIT("2000-02-29T00:00:00Z"), 0, 951782400000},
        {LIT("1600-02-29T00:00:00Z"), 0, -11670998400000},
        {LIT("1900-02-28T23:59:59Z"), 0, -2203891201000},
        {LIT("2024-03-01T00:30:00+01:00"), 0, 1709249400000},
        {LIT("2024-06-15T08:45:30-05:30"), 0, 1718460930000},
        {LIT("2024-06-15T08:45:30+23:59"), 0, 1718354790000},
        {LIT("2024-06-15T08:45:30-23:59"), 0, 1718527470000},
        {LIT("2024-12-31T23:59:59.999Z"), 0, 1735689599999},
        {LIT("1969-07-20T20:17:40Z"), 0, -14182940000},
        {LIT("1969-12-31T23:59:59.999Z"), 0, -1},
        {LIT("1969-12-31T23:59:59.001Z"), 0, -999},
        {LIT("0001-01-01T00:00:00Z"), 0, MIN_MS},
        {LIT("0001-01-01T00:00:00-01:00"), 0, -62135593200000},
        {LIT("9999-12-31T23:59:59.999Z"), 0, MAX_MS},
        {LIT("9999-12-31T23:59:59.9994Z"), 0, MAX_MS},
        {LIT("9999-12-31T23:59:59+00:00"), 0, MAX_MS - 999},
        /* fractions of every length, rounded half-up */
        {LIT("1970-01-01T00:00:00.1Z"), 0, 100},
        {LIT("1970-01-01T00:00:00.12Z"), 0, 120},
        {LIT("1970-01-01T00:00:00.123Z"), 0, 123},
        {LIT("1970-01-01T00:00:00.1234Z"), 0, 123},
        {LIT("1970-01-01T00:00:00.1235Z"), 0, 124},
        {LIT("1970-01-01T00:00:00.12349999999Z"), 0, 123},
        {LIT("1970-01-01T00:00:00.0005Z"), 0, 1},
        {LIT("1970-01-01T00:00:00.0004999999999999999Z"), 0, 0},
        {LIT("1970-01-01T00:00:00.000000000000000000000000000000000001Z"), 0, 0},
        {LIT("1970-01-01T00:00:00.123456789012345678901234567890+00:00"), 0, 123},
        {LIT("1970-01-01T00:00:00.0000000000000000000000000000000000000000000000000000000"
             "000000000000000000000000000000000000000000000000000000000000000000000000Z"),
         0, 0},
        /* the rounding carry runs through seconds, minutes, hours, days, years */
        {LIT("1970-01-01T00:00:00.9995Z"), 0, 1000},
        {LIT("1970-01-01T00:00:59.9995Z"), 0, 60000},
        {LIT("1999-12-31T23:59:59.9995Z"), 0, 946684800000},
        {LIT("1999-12-31T23:59:59.99999999Z"), 0, 946684800000},
        {LIT("2024-02-28T23:59:59.9996Z"), 0, 1709164800000},
        {LIT("1969-12-31T23:59:59.9995Z"), 0, 0},
        {LIT("1969-12-31T23:59:59.9994Z"), 0, -1},
        {LIT("2000-01-01T00:59:59.9995+01:00"), 0, 946684800000},
        /* len may stop before the end of the memory: no terminator needed */
        {"2026-11-27T17:00:00.123Zgarbage", 24, 0, 1795798800123},
    };
    run_parse_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(timefmt_parse, invalid)
{
    static const struct parse_case cases[] = {
        {LIT(""), IOT_EINVAL, 0},
        {LIT("2024"), IOT_EINVAL, 0},
        {LIT("2024-01-01"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.123"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00."), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.+01:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00,123Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.12.3Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.1e3Z"), IOT_EINVAL, 0},
        /* field widths */
        {LIT("2024-1-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-1T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("24-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("02024-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T0:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:0:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:0Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:000Z"), IOT_EINVAL, 0},
        {LIT("20240101T000000Z"), IOT_EINVAL, 0},
        /* ranges */
        {LIT("0000-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("0000-12-31T23:30:00-01:00"), IOT_EINVAL, 0}, /* year 0000 even if UTC is 0001 */
        {LIT("2024-00-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-13-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-00T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-32T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-04-31T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-06-31T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-09-31T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-11-31T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2023-02-29T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("1900-02-29T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2100-02-29T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-02-30T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T24:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T23:60:00Z"), IOT_EINVAL, 0},
        {LIT("2016-12-31T23:59:60Z"), IOT_EINVAL, 0}, /* leap second: rejected */
        {LIT("2024-01-01T00:00:99Z"), IOT_EINVAL, 0},
        /* the instant must stay within years 0001..9999 in UTC */
        {LIT("0001-01-01T00:00:00+00:01"), IOT_EINVAL, 0},
        {LIT("0001-01-01T00:30:00+01:00"), IOT_EINVAL, 0},
        {LIT("9999-12-31T23:59:59-00:01"), IOT_EINVAL, 0},
        {LIT("9999-12-31T23:59:59.9995Z"), IOT_EINVAL, 0},
        /* separators and offsets */
        {LIT("2024-01-01X00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00X"), IOT_EINVAL, 0},
        {LIT("2024-01-01\t00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024/01/01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00.00.00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+24:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:60"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+0100"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+1:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:0"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:000"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00Z+01:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00UTC"), IOT_EINVAL, 0},
        /* signs in the wrong places */
        {LIT("-2024-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("+2024-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-+1-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024--1-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T-1:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+-1:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00-+1:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00++01:00"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.-1Z"), IOT_EINVAL, 0},
        /* surrounding whitespace and trailing garbage */
        {LIT(" 2024-01-01T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00Z "), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00Z\n"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00ZZ"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00Zx"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:00 "), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.123Zabc"), IOT_EINVAL, 0},
        {"1970-01-01T00:00:00.12345Z", 22, IOT_EINVAL, 0}, /* len ends in the fraction */
        /* embedded NULs */
        {LIT("2024-01-01T00:00:00Z\0"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00\0Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.12\0003Z"), IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00+01:00\0"), IOT_EINVAL, 0},
        {LIT("2024-01-01\0T00:00:00Z"), IOT_EINVAL, 0},
        {LIT("2024\0-01-01T00:00:00Z"), IOT_EINVAL, 0},
        /* non-ASCII digits (full-width 2) */
        {LIT("\xef\xbc\x92"
             "024-01-01T00:00:00Z"),
         IOT_EINVAL, 0},
        {LIT("2024-01-01T00:00:00.\xd9\xa1Z"), IOT_EINVAL, 0},
    };
    run_parse_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(timefmt_parse, every_prefix_of_a_valid_timestamp_is_invalid)
{
    static const char *full[] = {"2026-11-27T17:00:00.123456+05:30", "2024-02-29T00:00:00Z"};
    for (size_t f = 0; f < sizeof(full) / sizeof(full[0]); f++) {
        size_t n = strlen(full[f]);
        for (size_t len = 0; len < n; len++) {
            int64_t ms;
            int rc = parse_exact(full[f], len, &ms);
            /* a prefix ending inside the fraction has no offset: still invalid */
            cr_expect_eq(rc, IOT_EINVAL, "\"%.*s\" accepted", (int)len, full[f]);
        }
        int64_t ms;
        cr_expect_eq(parse_exact(full[f], n, &ms), 0);
    }
}

Test(timefmt_parse, null_arguments)
{
    int64_t ms;
    cr_expect_eq(timefmt_parse_rfc3339(NULL, 20, &ms), IOT_EINVAL);
    cr_expect_eq(timefmt_parse_rfc3339("1970-01-01T00:00:00Z", 20, NULL), IOT_EINVAL);
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/*
 * Compares the day at ms (and a time of day in it) with the text built from
 * y-m-d, both ways. Returns 1 on a mismatch.
 */
static int check_day(int y, int m, int d, int64_t ms)
{
    const int64_t hms = (13 * 3600 + 37 * 60 + 59) * 1000LL + 250;
    char in[] = "YYYY-MM-DDT13:37:59.250Z", got[TIMEFMT_RFC3339_LEN];
    put2(in, y / 100);
    put2(in + 2, y % 100);
    put2(in + 5, m);
    put2(in + 8, d);
    int64_t parsed = 0;
    int bad = 0;
    if (timefmt_parse_rfc3339(in, strlen(in), &parsed) != 0 || parsed != ms + hms) {
        cr_expect_fail("parse %s: %lld, want %lld", in, (long long)parsed, (long long)(ms + hms));
        bad = 1;
    }
    timefmt_format_rfc3339(ms + hms, got);
    if (strcmp(in, got) != 0) {
        cr_expect_fail("format %lld: %s, want %s", (long long)(ms + hms), got, in);
        bad = 1;
    }
    return bad;
}

/*
 * Walks every day of years 0001..9999 with a naive calendar (day, month, year
 * counters and a month-length table) and checks the parser's day arithmetic
 * and the formatter against it. The Gregorian calendar repeats every 400
 * years, so every day of the first cycle and of 1960..2110 is checked, and
 * the month edges of all other years (a full walk is slow under ASan).
 */
Test(timefmt_parse, every_day_matches_a_naive_calendar)
{
    static const int mlen[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 1, m = 1, d = 1;
    int64_t ms = MIN_MS;
    int failures = 0;
    while (y <= 9999 && failures < 10) {
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int last = mlen[m - 1] + (m == 2 && leap);
        if (y <= 401 || (y >= 1960 && y <= 2110) || d <= 2 || d >= 27)
            failures += check_day(y, m, d, ms);
        ms += 86400000;
        if (++d > last) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
    cr_expect_eq(failures, 0);
    cr_expect_eq(ms, MAX_MS + 1);
}

struct epoch_case {
    double secs;
    int rc;
    int64_t ms;
};

Test(timefmt_epoch, table)
{
    const struct epoch_case cases[] = {
        {0.0, 0, 0},
        {-0.0, 0, 0},
        {1.0, 0, 1000},
        {1.5, 0, 1500},
        {-1.5, 0, -1500},
        {1700000000.0, 0, 1700000000000},
        {1700000000.123, 0, 1700000000123},
        {1700000000.1234, 0, 1700000000123},
        {1700000000.1236, 0, 1700000000124},
        {-14182940.0, 0, -14182940000},
        {0.0004, 0, 0},
        {0.0006, 0, 1},
        {-0.0004, 0, 0},
        {-0.0006, 0, -1},
        {0.49999999999999994 / 1000.0, 0, 0},
        {0.9996, 0, 1000},
        {-0.9996, 0, -1000},
        {4.9e-324, 0, 0},
        {-4.9e-324, 0, 0},
        {0.5 / 1024.0, 0, 0},   /* 0.48828125 ms */
        {-1.0 / 1024.0, 0, -1}, /* -0.9765625 ms */
        {-0.5 / 1024.0, 0, 0},  /* -0.48828125 ms */
        {0.75 / 1024.0, 0, 1},  /* 0.732421875 ms */
        {-62135596800.0, 0, MIN_MS},
        {-62135596800.0004, 0, MIN_MS},
        {253402300799.999, 0, MAX_MS},
        {253402300799.0, 0, MAX_MS - 999},
        {-62135596800.001, IOT_EINVAL, 0},
        {-62135596801.0, IOT_EINVAL, 0},
        {253402300800.0, IOT_EINVAL, 0},
        {253402300799.9996, IOT_EINVAL, 0},
        {1e15, IOT_EINVAL, 0},
        {-1e15, IOT_EINVAL, 0},
        {9.3e15, IOT_EINVAL, 0},
        {1e300, IOT_EINVAL, 0},
        {-1e300, IOT_EINVAL, 0},
        {1.7976931348623157e308, IOT_EINVAL, 0},
        {NAN, IOT_EINVAL, 0},
        {-NAN, IOT_EINVAL, 0},
        {INFINITY, IOT_EINVAL, 0},
        {-INFINITY, IOT_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 12345;
        int rc = timefmt_from_epoch_s(cases[i].secs, &ms);
        cr_expect_eq(rc, cases[i].rc, "case %zu (%.17g): rc %d", i, cases[i].secs, rc);
        if (rc == 0 && cases[i].rc == 0)
            cr_expect_eq(ms, cases[i].ms, "case %zu (%.17g): %lld ms, want %lld", i, cases[i].secs,
                         (long long)ms, (long long)cases[i].ms);
        if (rc != 0) cr_expect_eq(ms, 12345, "case %zu: output written on error", i);
    }
    cr_expect_eq(timefmt_from_epoch_s(1.0, NULL), IOT_EINVAL);
}

/*
 * k/1024 s is exact in binary and so is its product by 1000, which for
 * 0.0625 + 0.125 k s is the tie 62.5 + 125 k ms: half-up, also below zero.
 */
Test(timefmt_epoch, exact_ties_round_up)
{
    for (int64_t k = -100000; k <= 100000; k++) {
        double secs = 0.0625 + 0.125 * (double)k;
        int64_t ms;
        cr_assert_eq(timefmt_from_epoch_s(secs, &ms), 0);
        cr_assert_eq(ms, 63 + 125 * k, "k=%lld: %lld", (long long)k, (long long)ms);
    }
}

struct format_case {
    int64_t ms;
    const char *want;
};

Test(timefmt_format, table)
{
    static const struct format_case cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {999, "1970-01-01T00:00:00.999Z"},
        {1000, "1970-01-01T00:00:01.000Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {-999, "1969-12-31T23:59:59.001Z"},
        {-1000, "1969-12-31T23:59:59.000Z"},
        {-1001, "1969-12-31T23:59:58.999Z"},
        {-86400000, "1969-12-31T00:00:00.000Z"},
        {-86400001, "1969-12-30T23:59:59.999Z"},
        {-14182940000, "1969-07-20T20:17:40.000Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {1709208000000, "2024-02-29T12:00:00.000Z"},
        {1795798800123, "2026-11-27T17:00:00.123Z"},
        {-11670998400000, "1600-02-29T00:00:00.000Z"},
        {MIN_MS, "0001-01-01T00:00:00.000Z"},
        {MAX_MS, "9999-12-31T23:59:59.999Z"},
        {MIN_MS - 1, "0000-12-31T23:59:59.999Z"},
        {MAX_MS + 1, "10000-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(cases[i].ms, out);
        cr_expect_str_eq(out, cases[i].want, "ms %lld", (long long)cases[i].ms);
    }
}

Test(timefmt_format, extremes_fit_the_buffer)
{
    const int64_t vals[] = {INT64_MIN,     INT64_MIN + 1,   INT64_MAX,
                            INT64_MAX - 1, -62167219200001, -62167219200000};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char out[TIMEFMT_RFC3339_LEN + 1];
        memset(out, 'x', sizeof(out));
        timefmt_format_rfc3339(vals[i], out);
        cr_expect_eq(out[TIMEFMT_RFC3339_LEN], 'x', "overflow for %lld", (long long)vals[i]);
        cr_expect_lt(strlen(out), (size_t)TIMEFMT_RFC3339_LEN);
        cr_expect_eq(out[strlen(out) - 1], 'Z');
    }
    char out[TIMEFMT_RFC3339_LEN];
    timefmt_format_rfc3339(INT64_MIN, out);
    cr_expect_str_eq(out, "-292275055-05-16T16:47:04.192Z");
    timefmt_format_rfc3339(INT64_MAX, out);
    cr_expect_str_eq(out, "292278994-08-17T07:12:55.807Z");
    timefmt_format_rfc3339(-62167219200001, out);
    cr_expect_str_eq(out, "-0001-12-31T23:59:59.999Z");
}

/* A small xorshift generator: deterministic across runs and platforms. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(timefmt_roundtrip, format_then_parse)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    const uint64_t span = (uint64_t)(MAX_MS - MIN_MS) + 1;
    for (int i = 0; i < 200000; i++) {
        int64_t ms = MIN_MS + (int64_t)(next_rand(&seed) % span);
        char out[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(ms, out);
        cr_assert_eq(strlen(out), 24u, "%s", out);
        int64_t back;
        cr_assert_eq(timefmt_parse_rfc3339(out, strlen(out), &back), 0, "%s", out);
        cr_assert_eq(back, ms, "%s", out);

        double secs = (double)ms / 1000.0;
        cr_assert_eq(timefmt_from_epoch_s(secs, &back), 0);
        cr_assert_eq(back, ms, "epoch %.17g", secs);
    }
}

/* The same instant written with different offsets formats to the same UTC text. */
Test(timefmt_roundtrip, offsets_normalise_to_utc)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"2024-03-01T00:30:00.5+01:00", "2024-02-29T23:30:00.500Z"},
        {"2024-02-29T18:00:00.000-05:30", "2024-02-29T23:30:00.000Z"},
        {"2023-12-31T23:59:59.9999-00:01", "2024-01-01T00:01:00.000Z"},
        {"2024-01-01T23:00:00+23:59", "2023-12-31T23:01:00.000Z"},
        {"2023-12-31 00:00:00z", "2023-12-31T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms;
        cr_assert_eq(timefmt_parse_rfc3339(cases[i].in, strlen(cases[i].in), &ms), 0, "%s",
                     cases[i].in);
        char out[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(ms, out);
        cr_expect_str_eq(out, cases[i].want, "%s", cases[i].in);
    }
}
