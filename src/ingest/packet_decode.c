/*
 * Request bodies decoded in one streaming pass: yajl 2.1 tokenizes, the
 * callbacks below fill struct decoded_packet directly. No JSON tree, no
 * allocation per key or value: yajl's own memory comes from an arena inside
 * the decoder (on the caller's stack), and the readings array is the one
 * allocation of a normal packet.
 *
 * yajl checks the grammar, and nothing else that jansson checked for us, so
 * this file adds, with jansson's rules and limits:
 * - strict UTF-8 (no overlong form, no surrogate, nothing above U+10FFFF;
 *   yajl's own check lets those through, so it is turned off);
 * - escapes: no \u0000, no lone or mismatched surrogate (yajl would turn them
 *   into '?' or into a wrong character);
 * - no duplicate key in any object, at any depth;
 * - no value nested deeper than jansson allows (DECODE_MAX_DEPTH);
 * - the root is an array or an object;
 * - only space, tab, CR and LF between tokens (yajl also takes \v and \f).
 * Those are all invalid_json with "malformed JSON at line L column C: ...".
 * The shape of the packet is judged only after the whole body has parsed,
 * in the order the tree-based decoder used, so that every body gets the same
 * code and detail as before: any JSON error wins over a shape error, and
 * among shape errors device_uuid, then packet_id, then readings.
 *
 * Numbers are converted only where a field needs them, from yajl's raw
 * text: strtod for values and times (a number that overflows a double is a
 * reading's invalid_value or invalid_timestamp, not a malformed body), an
 * exact decimal reading for legacy sensor ids.
 */
#include "ingest/packet_decode.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/timefmt.h"

#include <math.h>
#include <stddef.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

/* a value inside DECODE_MAX_DEPTH arrays or objects is too deep, as in jansson */
#define DECODE_MAX_DEPTH 2048
#define DUP_LINEAR       16   /* keys of an object compared one by one */
#define YAJL_ARENA_BYTES 4096 /* yajl's handle, lexer, state stack, escape buffer */
#define READINGS_FIRST   16

static const char *const reason_names[] = {
    "none",           "unknown_sensor", "invalid_value", "invalid_timestamp", "future_timestamp",
    "stale_timestamp"};
_Static_assert(sizeof reason_names / sizeof *reason_names == REJECT_REASONS, "a name per reason");

const char *reject_reason_name(enum reject_reason r)
{
    return reason_names[r];
}

void decoded_packet_fini(struct decoded_packet *p)
{
    free(p->readings);
    p->readings = NULL;
    p->n = 0;
}

/* ---------------------------------------------------------------- memory */

/*
 * yajl's allocator: a bump arena with a size header per block, so that
 * realloc can grow the last block in place or copy out; past the arena,
 * plain malloc. free() only releases what malloc gave.
 */
struct arena {
    size_t used;
    alignas(max_align_t) unsigned char buf[YAJL_ARENA_BYTES];
};
#define ARENA_HDR      sizeof(max_align_t)
#define ARENA_ROUND(n) (((n) + ARENA_HDR - 1) / ARENA_HDR * ARENA_HDR)

static int arena_owns(const struct arena *a, const void *p)
{
    return (uintptr_t)p >= (uintptr_t)a->buf && (uintptr_t)p < (uintptr_t)(a->buf + sizeof a->buf);
}

static void *arena_malloc(void *ctx, size_t n)
{
    struct arena *a = ctx;
    size_t need = ARENA_HDR + ARENA_ROUND(n);
    if (n > sizeof a->buf || need > sizeof a->buf - a->used) return malloc(n);
    unsigned char *p = a->buf + a->used;
    memcpy(p, &n, sizeof n);
    a->used += need;
    return p + ARENA_HDR;
}

static void *arena_realloc(void *ctx, void *ptr, size_t n)
{
    struct arena *a = ctx;
    if (!ptr) return arena_malloc(ctx, n);
    if (!arena_owns(a, ptr)) return realloc(ptr, n);
    unsigned char *p = ptr;
    size_t old;
    memcpy(&old, p - ARENA_HDR, sizeof old);
    if (n <= old) return ptr;
    int last = p + ARENA_ROUND(old) == a->buf + a->used;
    if (last && n <= sizeof a->buf &&
        ARENA_ROUND(n) - ARENA_ROUND(old) <= sizeof a->buf - a->used) {
        a->used += ARENA_ROUND(n) - ARENA_ROUND(old);
        memcpy(p - ARENA_HDR, &n, sizeof n);
        return ptr;
    }
    void *q = arena_malloc(ctx, n);
    if (q) memcpy(q, ptr, old);
    return q;
}

static void arena_free(void *ctx, void *ptr)
{
    if (ptr && !arena_owns(ctx, ptr)) free(ptr);
}

/* A stack of fixed-size elements: inline storage first, then the heap. */
struct stack {
    void *p;
    size_t n, cap, esz;
    void *inl;
};

static void stack_init(struct stack *s, void *inl, size_t cap, size_t esz)
{
    *s = (struct stack){.p = inl, .cap = cap, .esz = esz, .inl = inl};
}

/* Room for k more elements at the top; returns them, or NULL (no memory). */
static void *stack_grow(struct stack *s, size_t k)
{
    if (k > s->cap - s->n) {
        size_t cap = s->cap * 2 > s->n + k ? s->cap * 2 : s->n + k;
        void *q = s->p == s->inl ? malloc(cap * s->esz) : realloc(s->p, cap * s->esz);
        if (!q) return NULL;
        if (s->p == s->inl && s->n) memcpy(q, s->inl, s->n * s->esz);
        s->p = q;
        s->cap = cap;
    }
    void *top = (char *)s->p + s->n * s->esz;
    s->n += k;
    return top;
}

static void stack_fini(struct stack *s)
{
    if (s->p != s->inl) free(s->p);
}

/* --------------------------------------------------------------- decoder */

enum mode { MODE_PACKET, MODE_LEGACY_BULK, MODE_LEGACY_SINGLE };

/* What the values of an open array or object mean. */
enum role { ROLE_OTHER, ROLE_ROOT, ROLE_READINGS, ROLE_READING };

/* The field the next value belongs to (set by a key of a ROOT or READING object). */
enum field { F_NONE, F_DEVICE, F_PACKET_ID, F_PACKET_TS, F_READINGS, F_UUID, F_ID, F_VALUE, F_TS };

enum vkind { V_STRING, V_NUMBER, V_BOOL, V_NULL, V_OBJECT, V_ARRAY };

enum dev_state { DEV_MISSING, DEV_NOT_STRING, DEV_BAD_TEXT, DEV_OK };
enum list_state { LIST_MISSING, LIST_NOT_ARRAY, LIST_ARRAY };

struct frame {
    uint32_t key_base;  /* first key of this object in keys */
    uint32_t byte_base; /* its first byte in key_bytes */
    uint8_t role;
};

struct key {
    uint32_t off, len; /* in key_bytes (a body is at most 64 MiB, MAX_BODY_BYTES) */
    uint32_t pos;      /* body offset just past the key, for the error */
};

struct value {
    enum vkind kind;
    const char *s; /* V_STRING: decoded text, V_NUMBER: raw text */
    size_t len;
    size_t chars; /* V_STRING: code points */
};

struct dec {
    enum mode mode;
    const char *body;
    size_t len, max;
    struct decoded_packet *out;
    const char *topic_uuid; /* packet_decode_topic: the topic's device, else NULL */
    yajl_handle h;

    enum field field;
    size_t cur; /* reading being filled (ROLE_READING) */
    size_t count, cap, first_bad;
    enum dev_state dev;
    enum list_state list;
    int root_not_object, packet_id_bad, nomem, finishing;
    size_t root_end; /* just past the root's closing bracket */

    /* the first JSON error found by a callback */
    char jerr[160];
    size_t jerr_pos;

    struct stack frames, keys, key_bytes;
    struct frame frames_inl[64];
    struct key keys_inl[64];
    char key_bytes_inl[1024];
    struct arena arena;
};

static int json_error(struct dec *d, const char *fmt, const char *arg, size_t arglen)
{
    if (!d->jerr[0]) {
        snprintf(d->jerr, sizeof d->jerr, fmt, (int)(arglen > 40 ? 40 : arglen), arg);
        d->jerr_pos = d->finishing ? d->len : yajl_get_bytes_consumed(d->h);
    }
    return 0; /* stops yajl */
}

/*
 * Strict UTF-8 (RFC 3629). Returns the number of code points, or -1 for an
 * invalid sequence.
 */
static long utf8_chars(const unsigned char *s, size_t n)
{
    long chars = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t w;
        if (n - i >= 8 && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8; /* eight ASCII bytes */
            chars += 8;
            continue;
        }
        unsigned c = s[i];
        chars++;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
        if (c < 0xC2 || c > 0xF4 || k >= n - i) return -1;
        uint32_t cp = c & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        i += k + 1;
    }
    return chars;
}

static int hex4(const char *p, unsigned *cp)
{
    *cp = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0) return -1;
        *cp = *cp << 4 | (unsigned)v;
    }
    return 0;
}

/*
 * The \u escapes of the string token that yajl has just read (it ends just
 * before the consumed offset): \u0000 and surrogates that do not pair up are
 * refused, as jansson does. The opening quote is the nearest quote before
 * the closing one that is preceded by an even number of backslashes.
 */
static int check_escapes(struct dec *d)
{
    const char *b = d->body;
    size_t end = yajl_get_bytes_consumed(d->h) - 1, start = end;
    for (;;) {
        while (b[--start] != '"')
            ;
        size_t bs = 0;
        while (bs < start && b[start - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0) break;
    }
    for (size_t i = start + 1; i < end; i++) {
        if (b[i] != '\\') continue;
        if (b[++i] != 'u') continue;
        unsigned cp, lo;
        hex4(b + i + 1, &cp); /* yajl checked the four hex digits */
        i += 4;
        if (cp == 0) return json_error(d, "\\u0000 is not allowed%.*s", "", 0);
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return json_error(d, "invalid Unicode '\\u%.*s'", b + i - 3, 4);
        if (cp < 0xD800 || cp > 0xDBFF) continue;
        if (end - i < 7 || b[i + 1] != '\\' || b[i + 2] != 'u' || hex4(b + i + 3, &lo) ||
            lo < 0xDC00 || lo > 0xDFFF)
            return json_error(d, "invalid Unicode '\\u%.*s'", b + i - 3, 4);
        i += 6;
    }
    return 1;
}

/* A string from yajl: valid UTF-8 and escapes, or a JSON error. Returns chars or -1. */
static long check_string(struct dec *d, const unsigned char *s, size_t n)
{
    int escaped =
        !((uintptr_t)s >= (uintptr_t)d->body && (uintptr_t)s < (uintptr_t)d->body + d->len);
    if (escaped && !check_escapes(d)) return -1;
    long chars = utf8_chars(s, n);
    if (chars < 0) json_error(d, "invalid UTF-8 in a string%.*s", "", 0);
    return chars;
}

/* Raw number text to a double; overflow gives +-inf (the caller judges it). */
static double number(const char *s, size_t n)
{
    char small[64];
    char *t = n < sizeof small ? small : malloc(n + 1);
    if (!t) return NAN;
    memcpy(t, s, n);
    t[n] = 0;
    double v = strtod(t, NULL);
    if (t != small) free(t);
    return v;
}

/*
 * A legacy sensor id: the exact value of the number text s[0..n) when it is
 * an integer in 1..2^53 (12, 12.0 and 1.2e1 alike), else 0. Exact, so that
 * 9007199254740993 is not taken for its neighbour, as a double would be.
 */
static int64_t exact_id(const char *s, size_t n)
{
    const uint64_t max = 9007199254740992ULL; /* 2^53 */
    uint64_t v = 0;
    int digits = 0;        /* digits in v, up to its last nonzero one */
    long zeros = 0, e = 0; /* zeros after v's last digit; power of ten */
    int frac = 0, esign = 1;
    size_t i = 0;
    if (n && s[0] == '-') return 0;
    for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
        if (s[i] == '.') {
            frac = 1;
            continue;
        }
        e -= frac;
        if (s[i] == '0') {
            zeros += digits > 0;
            continue;
        }
        if (digits + zeros + 1 > 16) return 0; /* more than 2^53's 16 digits */
        for (; zeros; zeros--, digits++)
            v *= 10;
        v = v * 10 + (uint64_t)(s[i] - '0');
        digits++;
    }
    long x = 0;
    if (i < n) {
        i++;
        if (s[i] == '-' || s[i] == '+') esign = s[i++] == '-' ? -1 : 1;
        for (; i < n; i++)
            if (x < 100000) x = x * 10 + (s[i] - '0');
    }
    e += zeros + esign * x;
    if (v == 0 || e < 0 || digits + e > 16) return 0; /* zero, a fraction, or >= 10^16 */
    for (; e; e--)
        v *= 10;
    return v <= max ? (int64_t)v : 0;
}

static void take_ts(const struct value *v, enum ts_state *state, int64_t *ts)
{
    int rc = IOT_EINVAL;
    if (v->kind == V_NULL) {
        *state = TS_MISSING;
        return;
    }
    if (v->kind == V_STRING) rc = timefmt_parse_rfc3339(v->s, v->len, ts);
    if (v->kind == V_NUMBER) rc = timefmt_from_epoch_s(number(v->s, v->len), ts);
    *state = rc ? TS_INVALID : TS_OK;
}

/* A new element of the readings array that is an object: its slot, or -1 (no memory). */
static int reading_open(struct dec *d)
{
    struct decoded_packet *o = d->out;
    if (o->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : READINGS_FIRST;
        if (cap > d->max) cap = d->max;
        struct decoded_reading *r = realloc(o->readings, cap * sizeof *r);
        if (!r) return -1;
        o->readings = r;
        d->cap = cap;
    }
    struct decoded_reading *r = &o->readings[o->n];
    memset(r, 0, sizeof *r);
    r->index = (int)o->n;
    d->cur = o->n++;
    return 0;
}

/* A value of a reading's field. */
static void reading_field(struct dec *d, const struct value *v)
{
    struct decoded_reading *r = &d->out->readings[d->cur];
    switch (d->field) {
    case F_UUID:
        r->uuid_ok = v->kind == V_STRING && v->len >= 1 && v->len <= STORE_UUID_MAX;
        if (r->uuid_ok) {
            memcpy(r->sensor_uuid, v->s, v->len);
            r->sensor_uuid[v->len] = 0;
        }
        break;
    case F_ID:
        r->sensor_id = v->kind == V_NUMBER ? exact_id(v->s, v->len) : 0;
        break;
    case F_VALUE:
        r->value_ok = 0;
        if (v->kind == V_NUMBER) {
            r->value = number(v->s, v->len);
            r->value_ok = isfinite(r->value);
        }
        break;
    case F_TS:
        take_ts(v, &r->ts_state, &r->ts);
        break;
    default:
        break;
    }
}

/* A value of a top-level field of a packet or bulk body; returns the role of a container. */
static enum role root_field(struct dec *d, const struct value *v)
{
    struct decoded_packet *o = d->out;
    switch (d->field) {
    case F_DEVICE:
        d->dev = v->kind != V_STRING                          ? DEV_NOT_STRING
                 : !ident_valid(v->s, v->len, STORE_UUID_MAX) ? DEV_BAD_TEXT
                                                              : DEV_OK;
        if (d->dev == DEV_OK) {
            memcpy(o->device_uuid, v->s, v->len);
            o->device_uuid[v->len] = 0;
        }
        break;
    case F_PACKET_ID:
        d->packet_id_bad = v->kind != V_STRING || v->chars == 0 || v->chars > STORE_PACKET_ID_MAX;
        if (!d->packet_id_bad) {
            memcpy(o->packet_id, v->s, v->len);
            o->packet_id[v->len] = 0;
        }
        break;
    case F_PACKET_TS:
        take_ts(v, &o->ts_state, &o->ts);
        break;
    case F_READINGS:
        /* a second "readings" is a duplicate key: the body fails anyway */
        if (d->list != LIST_MISSING) break;
        d->list = v->kind == V_ARRAY ? LIST_ARRAY : LIST_NOT_ARRAY;
        return v->kind == V_ARRAY ? ROLE_READINGS : ROLE_OTHER;
    default:
        break;
    }
    return ROLE_OTHER;
}

/*
 * Every value, scalar or container, goes through here. Returns the role of
 * a container that opens, ROLE_OTHER for the rest, or -1 to stop (a JSON
 * error or no memory, recorded in d).
 */
static int on_value(struct dec *d, const struct value *v)
{
    enum field f = d->field;
    d->field = F_NONE;
    if (d->frames.n >= DECODE_MAX_DEPTH) { /* jansson counts the value inside too */
        json_error(d, "maximum parsing depth reached%.*s", "", 0);
        return -1;
    }
    if (d->frames.n == 0) { /* the root */
        if (v->kind == V_ARRAY) {
            d->root_not_object = 1;
            return ROLE_OTHER;
        }
        if (v->kind != V_OBJECT) {
            json_error(d, "'[' or '{' expected%.*s", "", 0);
            return -1;
        }
        if (d->mode != MODE_LEGACY_SINGLE) return ROLE_ROOT;
        d->max = 1;
        return reading_open(d) ? (d->nomem = 1, -1) : ROLE_READING;
    }
    const struct frame *top = (const struct frame *)d->frames.p + d->frames.n - 1;
    switch (top->role) {
    case ROLE_ROOT:
        d->field = f;
        return root_field(d, v);
    case ROLE_READING:
        d->field = f;
        reading_field(d, v);
        return ROLE_OTHER;
    case ROLE_READINGS: {
        size_t i = d->count++;
        if (v->kind != V_OBJECT) {
            if (d->first_bad == SIZE_MAX) d->first_bad = i;
            return ROLE_OTHER;
        }
        if (i >= d->max) return ROLE_OTHER; /* only counted: the body is over the limit */
        return reading_open(d) ? (d->nomem = 1, -1) : ROLE_READING;
    }
    default:
        return ROLE_OTHER;
    }
}

/* ------------------------------------------------------- yajl callbacks */

static int open_container(struct dec *d, enum vkind kind)
{
    int role = on_value(d, &(struct value){.kind = kind});
    if (role < 0) return 0;
    struct frame *f = stack_grow(&d->frames, 1);
    if (!f) {
        d->nomem = 1;
        return 0;
    }
    *f = (struct frame){(uint32_t)d->keys.n, (uint32_t)d->key_bytes.n, (uint8_t)role};
    return 1;
}

static int cb_start_map(void *ctx)
{
    return open_container(ctx, V_OBJECT);
}

static int cb_start_array(void *ctx)
{
    return open_container(ctx, V_ARRAY);
}

static _Thread_local const char *sort_bytes;
static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = memcmp(sort_bytes + x->off, sort_bytes + y->off, x->len);
    return c ? c : x->pos < y->pos ? -1 : 1;
}

/*
 * An object with more than DUP_LINEAR keys is checked for duplicates when
 * it closes: its keys sorted, neighbours compared (O(k log k), whatever keys
 * a client chooses). The first repeated key in body order is reported.
 */
static int check_big_object(struct dec *d, const struct frame *f)
{
    size_t k = d->keys.n - f->key_base;
    struct key *ks = malloc(k * sizeof *ks);
    if (!ks) {
        d->nomem = 1;
        return 0;
    }
    memcpy(ks, (struct key *)d->keys.p + f->key_base, k * sizeof *ks);
    sort_bytes = d->key_bytes.p;
    qsort(ks, k, sizeof *ks, key_cmp);
    const struct key *dup = NULL;
    for (size_t i = 1; i < k; i++)
        if (ks[i].len == ks[i - 1].len &&
            !memcmp(sort_bytes + ks[i].off, sort_bytes + ks[i - 1].off, ks[i].len) &&
            (!dup || ks[i].pos < dup->pos))
            dup = &ks[i];
    int ok = 1;
    if (dup) {
        json_error(d, "duplicate object key \"%.*s\"", sort_bytes + dup->off, dup->len);
        d->jerr_pos = dup->pos;
        ok = 0;
    }
    free(ks);
    return ok;
}

static int close_container(void *ctx)
{
    struct dec *d = ctx;
    const struct frame *f = (const struct frame *)d->frames.p + --d->frames.n;
    if (d->keys.n - f->key_base > DUP_LINEAR && !check_big_object(d, f)) return 0;
    if (d->frames.n == 0) d->root_end = yajl_get_bytes_consumed(d->h);
    d->keys.n = f->key_base;
    d->key_bytes.n = f->byte_base;
    return 1;
}

static enum field field_of(const struct dec *d, enum role role, const char *k, size_t n)
{
#define IS(lit) (n == sizeof lit - 1 && !memcmp(k, lit, n))
    if (role == ROLE_ROOT) {
        if (IS("readings")) return F_READINGS;
        if (d->mode != MODE_PACKET) return F_NONE;
        return IS("device_uuid") ? F_DEVICE
               : IS("packet_id") ? F_PACKET_ID
               : IS("ts")        ? F_PACKET_TS
                                 : F_NONE;
    }
    if (role != ROLE_READING) return F_NONE;
    if (IS("value")) return F_VALUE;
    if (d->mode == MODE_PACKET) return IS("sensor_uuid") ? F_UUID : IS("ts") ? F_TS : F_NONE;
    return IS("sensor_id") ? F_ID : IS("timestamp") ? F_TS : F_NONE;
#undef IS
}

static int cb_map_key(void *ctx, const unsigned char *key, size_t n)
{
    struct dec *d = ctx;
    if (check_string(d, key, n) < 0) return 0;
    const struct frame *f = (const struct frame *)d->frames.p + d->frames.n - 1;
    const struct key *ks = (const struct key *)d->keys.p + f->key_base;
    const char *bytes = d->key_bytes.p;
    size_t have = d->keys.n - f->key_base;
    if (have < DUP_LINEAR)
        for (size_t i = 0; i < have; i++)
            if (ks[i].len == n && !memcmp(bytes + ks[i].off, key, n))
                return json_error(d, "duplicate object key \"%.*s\"", (const char *)key, n);
    struct key *k = stack_grow(&d->keys, 1);
    char *b = k ? stack_grow(&d->key_bytes, n) : NULL;
    if (!b) {
        d->nomem = 1;
        return 0;
    }
    memcpy(b, key, n);
    *k = (struct key){(uint32_t)(d->key_bytes.n - n), (uint32_t)n,
                      (uint32_t)yajl_get_bytes_consumed(d->h)};
    d->field = field_of(d, f->role, (const char *)key, n);
    return 1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    struct dec *d = ctx;
    long chars = check_string(d, s, n);
    if (chars < 0) return 0;
    return on_value(d, &(struct value){V_STRING, (const char *)s, n, (size_t)chars}) >= 0;
}

static int cb_number(void *ctx, const char *s, size_t n)
{
    return on_value(ctx, &(struct value){.kind = V_NUMBER, .s = s, .len = n}) >= 0;
}

static int cb_boolean(void *ctx, int b)
{
    (void)b;
    return on_value(ctx, &(struct value){.kind = V_BOOL}) >= 0;
}

static int cb_null(void *ctx)
{
    return on_value(ctx, &(struct value){.kind = V_NULL}) >= 0;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = close_container,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = close_container,
};

/* ---------------------------------------------------------------- driver */

/* "malformed JSON at line L column C: what", the column counted in characters. */
static int malformed(const struct dec *d, size_t pos, const char *what, char *detail, size_t dlen,
                     const char **code)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < d->len; i++) {
        unsigned char c = (unsigned char)d->body[i];
        if (c == '\n') {
            line++;
            col = 1;
        } else {
            col += (c & 0xC0) != 0x80;
        }
    }
    snprintf(detail, dlen, "malformed JSON at line %zu column %zu: %s", line, col, what);
    *code = DECODE_INVALID_JSON;
    return IOT_EINVAL;
}

/* The body parsed: its shape, judged in the order of the tree-based decoder. */
static int judge(const struct dec *d, const char *field, char *detail, size_t dlen,
                 const char **code)
{
#define SHAPE(...) (snprintf(detail, dlen, __VA_ARGS__), *code = DECODE_INVALID_REQUEST, IOT_EINVAL)
    if (d->root_not_object) return SHAPE("the body must be a JSON object");
    if (d->mode == MODE_LEGACY_SINGLE) return 0;
    if (d->mode == MODE_PACKET) {
        if (d->dev == DEV_MISSING && !d->topic_uuid) return SHAPE("device_uuid is missing");
        if (d->dev == DEV_NOT_STRING) return SHAPE("device_uuid must be a string");
        if (d->dev == DEV_BAD_TEXT)
            return SHAPE("device_uuid must be 1 to %d characters of " IDENT_ALPHABET_TEXT,
                         STORE_UUID_MAX);
        if (d->dev == DEV_OK && d->topic_uuid && strcmp(d->out->device_uuid, d->topic_uuid))
            return SHAPE("device_uuid must be the topic's device (%s) or be omitted",
                         d->topic_uuid);
        if (d->packet_id_bad)
            return SHAPE("packet_id must be a string of 1 to %d characters", STORE_PACKET_ID_MAX);
    }
    if (d->list == LIST_MISSING) return SHAPE("%s is missing", field);
    if (d->list == LIST_NOT_ARRAY) return SHAPE("%s must be an array", field);
    if (d->count == 0) return SHAPE("%s is empty", field);
    if (d->count > d->max)
        return SHAPE("%s has %zu readings, more than the limit of %zu", field, d->count, d->max);
    if (d->first_bad != SIZE_MAX) return SHAPE("%s[%zu] must be an object", field, d->first_bad);
    return 0;
#undef SHAPE
}

/* The JSON error yajl found itself, without its trailing newline. */
static int yajl_error(struct dec *d, size_t pos, char *detail, size_t dlen, const char **code)
{
    unsigned char *e = yajl_get_error(d->h, 0, NULL, 0);
    char what[128];
    snprintf(what, sizeof what, "%s", e ? (const char *)e : "parse error");
    what[strcspn(what, "\n")] = 0;
    if (e) yajl_free_error(d->h, e);
    return malformed(d, pos, what, detail, dlen, code);
}

/*
 * yajl also takes \v and \f for blanks between tokens; JSON does not (and
 * inside a string either is a raw control character, which yajl refuses).
 * Returns the offset of the first, or len.
 */
static size_t blank_not_json(const char *body, size_t len)
{
    const char *v = memchr(body, '\v', len), *f = memchr(body, '\f', len);
    const char *first = !v ? f : !f ? v : v < f ? v : f;
    return first ? (size_t)(first - body) : len;
}

/*
 * strspn over s[0..n), which has no NUL at its end. yajl takes a token it
 * could not finish at the end of the body after the root (an unterminated
 * string) for the start of another value, not for trailing garbage.
 */
static size_t strspn_n(const char *s, size_t n, const char *set)
{
    size_t i = 0;
    while (i < n && s[i] && strchr(set, s[i]))
        i++;
    return i;
}

/*
 * One pass of yajl over the body with the callbacks above, then the shape
 * checks. The decoder lives on the stack (about 7 KiB). On failure nothing
 * stays allocated in out.
 */
static int decode(enum mode mode, const char *topic_uuid, const char *body, size_t len,
                  size_t max_readings, struct decoded_packet *out, char *detail, size_t dlen,
                  const char **code)
{
    memset(out, 0, sizeof *out);
    struct dec d;
    memset(&d, 0, offsetof(struct dec, frames_inl)); /* not the inline buffers */
    d.mode = mode;
    d.body = body;
    d.len = len;
    d.max = max_readings;
    d.out = out;
    d.topic_uuid = topic_uuid;
    d.first_bad = SIZE_MAX;
    d.arena.used = 0;
    stack_init(&d.frames, d.frames_inl, sizeof d.frames_inl / sizeof *d.frames_inl,
               sizeof *d.frames_inl);
    stack_init(&d.keys, d.keys_inl, sizeof d.keys_inl / sizeof *d.keys_inl, sizeof *d.keys_inl);
    stack_init(&d.key_bytes, d.key_bytes_inl, sizeof d.key_bytes_inl, 1);
    yajl_alloc_funcs af = {arena_malloc, arena_realloc, arena_free, &d.arena};
    d.h = yajl_alloc(&callbacks, &af, &d);
    if (!d.h) return IOT_ENOMEM;
    yajl_config(d.h, yajl_dont_validate_strings, 1); /* utf8_chars is stricter */

    yajl_status st = yajl_parse(d.h, (const unsigned char *)body, len);
    size_t pos = yajl_get_bytes_consumed(d.h);
    if (st == yajl_status_ok) {
        d.finishing = 1; /* yajl reads one more blank: positions are the end */
        st = yajl_complete_parse(d.h);
        pos = len;
    }
    int rc;
    if (d.nomem)
        rc = IOT_ENOMEM;
    else if (d.jerr[0])
        rc = malformed(&d, d.jerr_pos, d.jerr, detail, dlen, code);
    else if (st != yajl_status_ok)
        rc = yajl_error(&d, pos, detail, dlen, code);
    else if ((pos = blank_not_json(body, len)) < len)
        rc = malformed(&d, pos, "invalid token (only space, tab, CR and LF separate tokens)",
                       detail, dlen, code);
    else if ((pos = d.root_end + strspn_n(body + d.root_end, len - d.root_end, " \t\r\n")) < len)
        rc = malformed(&d, pos, "trailing garbage", detail, dlen, code);
    else
        rc = judge(&d, "readings", detail, dlen, code);
    if (!rc && topic_uuid && d.dev == DEV_MISSING)
        snprintf(out->device_uuid, sizeof out->device_uuid, "%s", topic_uuid);
    yajl_free(d.h);
    stack_fini(&d.frames);
    stack_fini(&d.keys);
    stack_fini(&d.key_bytes);
    if (rc) decoded_packet_fini(out);
    return rc;
}

int packet_decode(const char *body, size_t len, size_t max_readings, struct decoded_packet *out,
                  char *detail, size_t dlen, const char **code)
{
    return decode(MODE_PACKET, NULL, body, len, max_readings, out, detail, dlen, code);
}

int packet_decode_topic(const char *device_uuid, const char *body, size_t len, size_t max_readings,
                        struct decoded_packet *out, char *detail, size_t dlen, const char **code)
{
    return decode(MODE_PACKET, device_uuid, body, len, max_readings, out, detail, dlen, code);
}

int legacy_decode(const char *body, size_t len, int bulk, size_t max_readings,
                  struct decoded_packet *out, char *detail, size_t dlen, const char **code)
{
    return decode(bulk ? MODE_LEGACY_BULK : MODE_LEGACY_SINGLE, NULL, body, len, max_readings, out,
                  detail, dlen, code);
}

enum reject_reason decode_effective_ts(const struct decoded_reading *r,
                                       const struct decoded_packet *p, int64_t now,
                                       int64_t max_future_ms, int64_t max_past_ms, int64_t *ts)
{
    enum ts_state st = r->ts_state;
    int64_t t = r->ts;
    if (st == TS_MISSING) {
        st = p->ts_state;
        t = p->ts;
    }
    if (st == TS_MISSING) {
        st = TS_OK;
        t = now;
    }
    if (st == TS_INVALID) return REJECT_INVALID_TIMESTAMP;
    if (t > now + max_future_ms) return REJECT_FUTURE_TIMESTAMP;
    if (t < now - max_past_ms) return REJECT_STALE_TIMESTAMP;
    *ts = t;
    return REJECT_NONE;
}
