#include "tls/tls_keys.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/ident.h"
#include "store/store.h"

#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAIN_MAX 8 /* certificates in TLS_CERT_FILE: the server's and its intermediates */

/* One certificate chain and its key. */
struct tls_pair {
    gnutls_pcert_st pcert[CHAIN_MAX];
    unsigned npcert;
    gnutls_privkey_t key;
    int64_t retired_ms; /* when a reload replaced it */
};

struct tls_keys {
    pthread_mutex_t mu;                        /* guards cur and retired */
    struct tls_pair *cur;                      /* owned */
    struct tls_pair *retired[TLS_RETIRED_MAX]; /* owned, oldest first */
    size_t nretired;
    char *cert_file, *key_file;     /* owned copies */
    char *client_ca_pem;            /* owned, NULL: client certificates off */
    gnutls_x509_trust_list_t trust; /* the client CA, NULL when off */
    enum tls_client_auth auth;
    gnutls_certificate_credentials_t cred; /* for tls_keys_session_new: the callback below */
    gnutls_priority_t prio;                /* TLS_PRIORITIES, compiled once */
};

/* The one instance, for the callback GnuTLS gives no user pointer. */
static _Atomic(struct tls_keys *) the_keys;

static void pair_free(struct tls_pair *p)
{
    if (!p) return;
    for (unsigned i = 0; i < p->npcert; i++)
        gnutls_pcert_deinit(&p->pcert[i]);
    gnutls_privkey_deinit(p->key);
    free(p);
}

/* 1 when the key is the private half of the certificate's public key. */
static int pair_matches(struct tls_pair *p)
{
    gnutls_pubkey_t pub;
    unsigned char a[64], b[64];
    size_t na = sizeof a, nb = sizeof b;
    if (gnutls_pubkey_init(&pub) < 0) return 0;
    int ok = gnutls_pubkey_import_privkey(pub, p->key, 0, 0) == 0 &&
             gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &na) == 0 &&
             gnutls_pubkey_get_key_id(p->pcert[0].pubkey, GNUTLS_KEYID_USE_SHA256, b, &nb) == 0 &&
             na == nb && memcmp(a, b, na) == 0;
    gnutls_pubkey_deinit(pub);
    return ok;
}

/* Reads a PEM certificate chain and its key into a new pair. */
static int pair_load(const char *cert_file, const char *key_file, struct tls_pair **out, char *err,
                     size_t errlen)
{
    gnutls_datum_t c = {NULL, 0}, k = {NULL, 0};
    struct tls_pair *p = calloc(1, sizeof *p);
    int rc = IOT_EINVAL, g;
    *out = NULL;
    if (!p) return IOT_ENOMEM;
    if ((g = gnutls_load_file(cert_file, &c)) < 0) {
        iot_set_err(err, errlen, "cannot read TLS_CERT_FILE %s: %s", cert_file, gnutls_strerror(g));
        goto fail;
    }
    if ((g = gnutls_load_file(key_file, &k)) < 0) {
        iot_set_err(err, errlen, "cannot read TLS_KEY_FILE %s: %s", key_file, gnutls_strerror(g));
        goto fail;
    }
    p->npcert = CHAIN_MAX;
    if ((g = gnutls_pcert_list_import_x509_raw(p->pcert, &p->npcert, &c, GNUTLS_X509_FMT_PEM, 0)) <
            0 ||
        p->npcert == 0) {
        p->npcert = 0;
        iot_set_err(err, errlen, "TLS_CERT_FILE %s: no PEM certificate chain (%s)", cert_file,
                    g < 0 ? gnutls_strerror(g) : "empty");
        goto fail;
    }
    if ((g = gnutls_privkey_init(&p->key)) < 0 ||
        (g = gnutls_privkey_import_x509_raw(p->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        iot_set_err(err, errlen, "TLS_KEY_FILE %s: no unencrypted PEM private key (%s)", key_file,
                    gnutls_strerror(g));
        goto fail;
    }
    if (!pair_matches(p)) {
        iot_set_err(err, errlen, "TLS_KEY_FILE %s is not the key of TLS_CERT_FILE %s", key_file,
                    cert_file);
        goto fail;
    }
    rc = 0;
    *out = p;
    p = NULL;
fail:
    pair_free(p);
    gnutls_free(c.data);
    gnutls_free(k.data);
    return rc;
}

/* Loads TLS_CLIENT_CA_FILE into k's trust list and keeps its text for the transports. */
static int client_ca_load(struct tls_keys *k, const char *file, char *err, size_t errlen)
{
    gnutls_datum_t d = {NULL, 0};
    int g;
    if ((g = gnutls_load_file(file, &d)) < 0) {
        iot_set_err(err, errlen, "cannot read TLS_CLIENT_CA_FILE %s: %s", file, gnutls_strerror(g));
        return IOT_EINVAL;
    }
    int rc = 0;
    if (gnutls_x509_trust_list_init(&k->trust, 0) < 0 ||
        (g = gnutls_x509_trust_list_add_trust_mem(k->trust, &d, NULL, GNUTLS_X509_FMT_PEM, 0, 0)) <=
            0) {
        iot_set_err(err, errlen, "TLS_CLIENT_CA_FILE %s: no PEM CA certificate", file);
        rc = IOT_EINVAL;
    } else if (!(k->client_ca_pem = malloc(d.size + 1))) {
        rc = IOT_ENOMEM;
    } else {
        memcpy(k->client_ca_pem, d.data, d.size);
        k->client_ca_pem[d.size] = '\0';
    }
    gnutls_free(d.data);
    return rc;
}

int tls_keys_create(const struct config *cfg, struct tls_keys **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->tls_cert_file[0]) return 0;
    struct tls_keys *k = calloc(1, sizeof *k), *none = NULL;
    if (!k) return IOT_ENOMEM;
    pthread_mutex_init(&k->mu, NULL);
    k->auth = strcmp(cfg->tls_client_auth, "required") == 0   ? TLS_CLIENT_REQUIRED
              : strcmp(cfg->tls_client_auth, "optional") == 0 ? TLS_CLIENT_OPTIONAL
                                                              : TLS_CLIENT_OFF;
    int rc = IOT_ENOMEM;
    if (!(k->cert_file = strdup(cfg->tls_cert_file)) || !(k->key_file = strdup(cfg->tls_key_file)))
        goto fail;
    if ((rc = pair_load(k->cert_file, k->key_file, &k->cur, err, errlen))) goto fail;
    if (k->auth != TLS_CLIENT_OFF && (rc = client_ca_load(k, cfg->tls_client_ca_file, err, errlen)))
        goto fail;
    rc = IOT_ENOMEM;
    if (gnutls_certificate_allocate_credentials(&k->cred) < 0) {
        k->cred = NULL;
        goto fail;
    }
    gnutls_certificate_set_retrieve_function2(k->cred, tls_keys_retrieve);
    if (gnutls_priority_init(&k->prio, TLS_PRIORITIES, NULL) < 0) {
        k->prio = NULL;
        goto fail;
    }
    if (!atomic_compare_exchange_strong(&the_keys, &none, k)) {
        iot_set_err(err, errlen, "TLS is already set up in this process");
        rc = IOT_EINVAL;
        goto fail;
    }
    *out = k;
    return 0;
fail:
    if (rc == IOT_ENOMEM) iot_set_err(err, errlen, "out of memory");
    tls_keys_destroy(k);
    return rc;
}

void tls_keys_destroy(struct tls_keys *k)
{
    if (!k) return;
    struct tls_keys *self = k;
    atomic_compare_exchange_strong(&the_keys, &self, NULL);
    pair_free(k->cur);
    for (size_t i = 0; i < k->nretired; i++)
        pair_free(k->retired[i]);
    if (k->trust) gnutls_x509_trust_list_deinit(k->trust, 1);
    if (k->cred) gnutls_certificate_free_credentials(k->cred);
    if (k->prio) gnutls_priority_deinit(k->prio);
    free(k->client_ca_pem);
    free(k->cert_file);
    free(k->key_file);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

int tls_keys_reload(struct tls_keys *k, char *err, size_t errlen)
{
    struct tls_pair *p;
    int rc = pair_load(k->cert_file, k->key_file, &p, err, errlen);
    if (rc) return rc;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&k->mu);
    /* Free the pairs retired long enough ago; refuse when none can go. */
    size_t keep = 0;
    for (size_t i = 0; i < k->nretired; i++) {
        if (now - k->retired[i]->retired_ms >= TLS_RETIRE_MS)
            pair_free(k->retired[i]);
        else
            k->retired[keep++] = k->retired[i];
    }
    k->nretired = keep;
    if (k->nretired == TLS_RETIRED_MAX) {
        pthread_mutex_unlock(&k->mu);
        pair_free(p);
        iot_set_err(err, errlen, "%d reloads within %d minutes: try again later", TLS_RETIRED_MAX,
                    TLS_RETIRE_MS / 60000);
        return IOT_EBUSY;
    }
    k->cur->retired_ms = now;
    k->retired[k->nretired++] = k->cur;
    k->cur = p;
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int tls_keys_retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca, int nreq,
                      const gnutls_pk_algorithm_t *pk, int npk, gnutls_pcert_st **pcert,
                      unsigned int *npcert, gnutls_privkey_t *key)
{
    (void)s, (void)req_ca, (void)nreq, (void)pk, (void)npk;
    struct tls_keys *k = atomic_load(&the_keys);
    if (!k) return -1;
    pthread_mutex_lock(&k->mu);
    *pcert = k->cur->pcert;
    *npcert = k->cur->npcert;
    *key = k->cur->key;
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int tls_keys_session_new(struct tls_keys *k, gnutls_session_t *out)
{
    gnutls_session_t s;
    *out = NULL;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) return IOT_ENOMEM;
    if (gnutls_priority_set(s, k->prio) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, k->cred) < 0) {
        gnutls_deinit(s);
        return IOT_ENOMEM;
    }
    if (k->auth != TLS_CLIENT_OFF) gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    *out = s;
    return 0;
}

const char *tls_keys_client_ca_pem(const struct tls_keys *k)
{
    return k ? k->client_ca_pem : NULL;
}

enum tls_client_auth tls_keys_client_auth(const struct tls_keys *k)
{
    return k ? k->auth : TLS_CLIENT_OFF;
}

/* Why verification refused a chain, from GnuTLS's status bits. */
static const char *refusal(unsigned status)
{
    if (status & GNUTLS_CERT_EXPIRED) return "the client certificate has expired";
    if (status & GNUTLS_CERT_NOT_ACTIVATED) return "the client certificate is not valid yet";
    if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
        return "the client certificate is not issued by TLS_CLIENT_CA_FILE";
    if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
        return "the client certificate is not for client authentication";
    if (status & GNUTLS_CERT_REVOKED) return "the client certificate is revoked";
    return "the client certificate is not valid";
}

/* The device crt names: its SAN URI urn:device:<uuid>, else its CN. 0 or IOT_EINVAL. */
static int crt_device(gnutls_x509_crt_t crt, char *out, size_t cap)
{
    static const char urn[] = "urn:device:";
    char v[256];
    for (unsigned i = 0;; i++) {
        size_t n = sizeof v - 1;
        unsigned critical;
        int t = gnutls_x509_crt_get_subject_alt_name(crt, i, v, &n, &critical);
        if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
        if (t == GNUTLS_SAN_URI && n > sizeof urn - 1 && strncmp(v, urn, sizeof urn - 1) == 0) {
            if (!ident_valid(v + sizeof urn - 1, n - (sizeof urn - 1), STORE_UUID_MAX))
                return IOT_EINVAL;
            snprintf(out, cap, "%.*s", (int)(n - (sizeof urn - 1)), v + sizeof urn - 1);
            return 0;
        }
    }
    size_t n = sizeof v - 1;
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, v, &n) < 0 ||
        !ident_valid(v, n, STORE_UUID_MAX))
        return IOT_EINVAL;
    snprintf(out, cap, "%.*s", (int)n, v);
    return 0;
}

int tls_keys_peer_device(struct tls_keys *k, gnutls_session_t s, char *out, size_t cap,
                         const char **why)
{
    unsigned n = 0;
    *why = NULL;
    const gnutls_datum_t *raw = k && k->trust ? gnutls_certificate_get_peers(s, &n) : NULL;
    if (!raw || n == 0) return IOT_ENOTFOUND;
    gnutls_x509_crt_t chain[CHAIN_MAX];
    unsigned nc = 0;
    int rc = IOT_EINVAL;
    *why = "the client certificate cannot be read";
    for (; nc < n && nc < CHAIN_MAX; nc++) {
        if (gnutls_x509_crt_init(&chain[nc]) < 0) goto out;
        if (gnutls_x509_crt_import(chain[nc], &raw[nc], GNUTLS_X509_FMT_DER) < 0) {
            nc++;
            goto out;
        }
    }
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    unsigned status = 0;
    if (gnutls_x509_trust_list_verify_crt2(k->trust, chain, nc, &purpose, 1, 0, &status, NULL) < 0)
        goto out;
    if (status) {
        *why = refusal(status);
        goto out;
    }
    *why = "the client certificate names no valid device uuid (SAN urn:device:<uuid> or CN)";
    if ((rc = crt_device(chain[0], out, cap)) == 0) *why = NULL;
out:
    for (unsigned i = 0; i < nc; i++)
        gnutls_x509_crt_deinit(chain[i]);
    return rc;
}
