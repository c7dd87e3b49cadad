/*
 * Fuzzes the timestamp code of core/timefmt: RFC 3339 parsing, epoch-second
 * conversion and RFC 3339 formatting.
 *
 * Each input is used four ways:
 * 1. as RFC 3339 text (not NUL-terminated: ASan catches a read past len),
 *    checked against an independent oracle built on glibc's timegm: the
 *    parser accepts exactly the strings the grammar of timefmt.h allows
 *    (inside years 0001..9999 after the offset) and gives the same ms;
 * 2. as decimal epoch seconds (strtod of the whole input, as JSON numbers
 *    reach timefmt_from_epoch_s);
 * 3. its first 8 bytes as a double of epoch seconds (NaN, inf, huge, tiny);
 * 4. its first 8 bytes as an int64 ms for the formatter (any value: the
 *    output must stay inside TIMEFMT_RFC3339_LEN).
 * Every accepted instant must format back to 24 characters that parse to
 * the same ms.
 */
#include "core/err.h"
#include "core/timefmt.h"

#include "fuzz_util.h"

#include <math.h>
#include <time.h>

#define TS_MIN (-62135596800000LL)
#define TS_MAX 253402300799999LL

static void round_trip(int64_t ms)
{
    char out[TIMEFMT_RFC3339_LEN];
    timefmt_format_rfc3339(ms, out);
    size_t n = strlen(out);
    FUZZ_CHECK(n == 24 && out[23] == 'Z', "%lld formats as \"%s\"", (long long)ms, out);
    int64_t back = 0;
    FUZZ_CHECK(timefmt_parse_rfc3339(out, n, &back) == 0, "\"%s\" does not parse back", out);
    FUZZ_CHECK(back == ms, "%lld -> \"%s\" -> %lld", (long long)ms, out, (long long)back);
}

static int digits(const char *s, size_t at, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[at + (size_t)i];
        if (c < '0' || c > '9') return 0;
        *v = *v * 10 + (c - '0');
    }
    return 1;
}

/*
 * The oracle: 1 and *ms if s[0..len) is a timestamp the parser must accept.
 * Written apart from timefmt.c: day validity and the instant come from
 * timegm/gmtime_r (64-bit time_t covers years 1..9999).
 */
static int oracle_rfc3339(const char *s, size_t len, int64_t *ms)
{
    int y, mo, d, h, mi, sec;
    if (len < 20) return 0;
    if (!digits(s, 0, 4, &y) || s[4] != '-' || !digits(s, 5, 2, &mo) || s[7] != '-' ||
        !digits(s, 8, 2, &d) || !(s[10] == 'T' || s[10] == 't' || s[10] == ' ') ||
        !digits(s, 11, 2, &h) || s[13] != ':' || !digits(s, 14, 2, &mi) || s[16] != ':' ||
        !digits(s, 17, 2, &sec))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return 0;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    struct tm chk;
    if (!gmtime_r(&t, &chk) || chk.tm_mday != d || chk.tm_mon != mo - 1) return 0; /* Feb 30 */

    size_t pos = 19;
    int64_t frac = 0;
    if (pos < len && s[pos] == '.') {
        size_t start = ++pos;
        int round_up = 0;
        while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
            size_t k = pos - start;
            if (k < 3) frac = frac * 10 + (s[pos] - '0');
            if (k == 3) round_up = s[pos] >= '5';
            pos++;
        }
        if (pos == start) return 0;
        for (size_t k = pos - start; k < 3; k++)
            frac *= 10;
        frac += round_up;
    }
    int64_t off = 0;
    if (pos + 1 == len && (s[pos] == 'Z' || s[pos] == 'z')) {
        pos++;
    } else if (pos + 6 == len && (s[pos] == '+' || s[pos] == '-')) {
        int oh, om;
        if (!digits(s, pos + 1, 2, &oh) || s[pos + 3] != ':' || !digits(s, pos + 4, 2, &om))
            return 0;
        if (oh > 23 || om > 59) return 0;
        off = (s[pos] == '-' ? -1 : 1) * (int64_t)(oh * 60 + om);
        pos += 6;
    } else {
        return 0;
    }
    int64_t v = (int64_t)t * 1000 + frac - off * 60000;
    if (v < TS_MIN || v > TS_MAX) return 0;
    *ms = v;
    return 1;
}

static void check_epoch(double secs)
{
    int64_t ms = 0;
    int rc = timefmt_from_epoch_s(secs, &ms);
    double x = secs * 1000.0;
    int in_range = isfinite(x) && x >= (double)TS_MIN - 0.5 && x < (double)TS_MAX + 0.5;
    if (rc) {
        FUZZ_CHECK(rc == IOT_EINVAL, "rc %d", rc);
        /* Right at the edges the half-up rounding decides; only clear cases are checked. */
        FUZZ_CHECK(!(isfinite(x) && x > (double)TS_MIN + 1 && x < (double)TS_MAX - 1),
                   "%.17g s refused", secs);
        return;
    }
    FUZZ_CHECK(in_range, "%.17g s accepted as %lld", secs, (long long)ms);
    FUZZ_CHECK(fabs((double)ms - x) <= 0.5 + fabs(x) * 1e-15, "%.17g s -> %lld ms", secs,
               (long long)ms);
    round_trip(ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;

    /* 1. RFC 3339 against the oracle. */
    int64_t got = 0, want = 0;
    int rc = timefmt_parse_rfc3339(s, size, &got);
    int ok = oracle_rfc3339(s, size, &want);
    FUZZ_CHECK(rc == 0 || rc == IOT_EINVAL, "rc %d", rc);
    FUZZ_CHECK((rc == 0) == ok, "parser %s, oracle %s: \"%.*s\"", rc ? "refuses" : "accepts",
               ok ? "accepts" : "refuses", (int)(size > 80 ? 80 : size), s);
    if (ok) {
        FUZZ_CHECK(got == want, "\"%.*s\": parser %lld, oracle %lld", (int)(size > 80 ? 80 : size),
                   s, (long long)got, (long long)want);
        round_trip(got);
    }

    /* 2. Decimal epoch seconds, as a JSON number would arrive. */
    char *txt = fuzz_cstr(data, size);
    if (txt) {
        char *end = NULL;
        double v = strtod(txt, &end);
        if (end != txt && *end == '\0') check_epoch(v);
        free(txt);
    }

    /* 3 and 4. Raw doubles and raw int64 ms. */
    if (size >= 8) {
        double d;
        int64_t ms;
        memcpy(&d, data, 8);
        memcpy(&ms, data, 8);
        check_epoch(d);
        char out[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(ms, out);
        FUZZ_CHECK(memchr(out, '\0', sizeof out) != NULL, "no NUL in the output of %lld",
                   (long long)ms);
        if (ms >= TS_MIN && ms <= TS_MAX) round_trip(ms);
    }
    return 0;
}
