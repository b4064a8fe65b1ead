"""The system OpenSSL 3 libcrypto, reached through cffi in ABI mode (no compiler needed at install).

`cryptography` bundles its own OpenSSL but exposes no SM2, so SM2 goes through the EVP interface of the
system libcrypto.so.3. Only the handful of functions SM2 needs are declared. Loaded lazily, once per process
(a cached loader, not module state created at import).
"""

from __future__ import annotations

import ctypes.util
import functools
from typing import Any

import cffi  # type: ignore[import-untyped]

from tianmu.gmcrypto.errors import BackendError

__all__ = ["Lib", "check", "last_error", "load"]

_CDEF = """
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
typedef struct ec_group_st EC_GROUP;
typedef struct ec_point_st EC_POINT;
typedef struct bignum_st BIGNUM;
typedef struct bignum_ctx BN_CTX;
typedef struct ossl_param_bld_st OSSL_PARAM_BLD;
typedef struct ossl_param_st OSSL_PARAM;

unsigned long OpenSSL_version_num(void);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);

EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name, const char *propquery);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey, const char *propquery);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_generate(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
int EVP_PKEY_fromdata_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_fromdata(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey, int selection, OSSL_PARAM *params);
void EVP_PKEY_free(EVP_PKEY *pkey);
int EVP_PKEY_up_ref(EVP_PKEY *pkey);
int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
int EVP_PKEY_get_bn_param(const EVP_PKEY *pkey, const char *key_name, BIGNUM **bn);
int EVP_PKEY_get_octet_string_param(const EVP_PKEY *pkey, const char *key_name,
                                    unsigned char *buf, size_t max_buf_sz, size_t *out_len);
int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);

EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
int EVP_DigestSignInit_ex(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const char *mdname, OSSL_LIB_CTX *libctx,
                          const char *props, EVP_PKEY *pkey, const OSSL_PARAM *params);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                   const unsigned char *tbs, size_t tbslen);
int EVP_DigestVerifyInit_ex(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const char *mdname, OSSL_LIB_CTX *libctx,
                            const char *props, EVP_PKEY *pkey, const OSSL_PARAM *params);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);

int EVP_PKEY_encrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_encrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);
int EVP_PKEY_decrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_decrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);

const BIO_METHOD *BIO_s_mem(void);
BIO *BIO_new(const BIO_METHOD *type);
BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *a);
long BIO_ctrl(BIO *bp, int cmd, long larg, void *parg);
int PEM_write_bio_PKCS8PrivateKey(BIO *bp, const EVP_PKEY *x, const void *enc, const char *kstr, int klen,
                                  void *cb, void *u);
int PEM_write_bio_PUBKEY(BIO *bp, const EVP_PKEY *x);
EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb, void *u);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
int i2d_PKCS8PrivateKey_bio(BIO *bp, const EVP_PKEY *x, const void *enc, const char *kstr, int klen,
                            void *cb, void *u);
EVP_PKEY *d2i_PrivateKey_bio(BIO *bp, EVP_PKEY **a);
int i2d_PUBKEY(const EVP_PKEY *a, unsigned char **pp);
EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);

OSSL_PARAM_BLD *OSSL_PARAM_BLD_new(void);
void OSSL_PARAM_BLD_free(OSSL_PARAM_BLD *bld);
int OSSL_PARAM_BLD_push_utf8_string(OSSL_PARAM_BLD *bld, const char *key, const char *buf, size_t bsize);
int OSSL_PARAM_BLD_push_BN(OSSL_PARAM_BLD *bld, const char *key, const BIGNUM *bn);
int OSSL_PARAM_BLD_push_octet_string(OSSL_PARAM_BLD *bld, const char *key, const void *buf, size_t bsize);
OSSL_PARAM *OSSL_PARAM_BLD_to_param(OSSL_PARAM_BLD *bld);
void OSSL_PARAM_free(OSSL_PARAM *p);

BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
int BN_bn2binpad(const BIGNUM *a, unsigned char *to, int tolen);
void BN_clear_free(BIGNUM *a);
void BN_free(BIGNUM *a);
BN_CTX *BN_CTX_new(void);
void BN_CTX_free(BN_CTX *c);

EC_GROUP *EC_GROUP_new_by_curve_name(int nid);
void EC_GROUP_free(EC_GROUP *group);
EC_POINT *EC_POINT_new(const EC_GROUP *group);
void EC_POINT_free(EC_POINT *point);
int EC_POINT_mul(const EC_GROUP *group, EC_POINT *r, const BIGNUM *n, const EC_POINT *q, const BIGNUM *m,
                 BN_CTX *ctx);
int EC_POINT_add(const EC_GROUP *group, EC_POINT *r, const EC_POINT *a, const EC_POINT *b, BN_CTX *ctx);
int EC_POINT_oct2point(const EC_GROUP *group, EC_POINT *p, const unsigned char *buf, size_t len, BN_CTX *ctx);
size_t EC_POINT_point2oct(const EC_GROUP *group, const EC_POINT *p, int form, unsigned char *buf, size_t len,
                          BN_CTX *ctx);
int EC_POINT_is_at_infinity(const EC_GROUP *group, const EC_POINT *p);
"""

NID_SM2 = 1172
EVP_PKEY_KEYPAIR = 0x87  # OSSL_KEYMGMT_SELECT_ALL_PARAMETERS | both key halves
BIO_CTRL_INFO = 3
POINT_CONVERSION_UNCOMPRESSED = 4

Lib = Any
"""The cffi library object (attributes are the C functions above)."""


@functools.cache
def load() -> tuple[cffi.FFI, Lib]:
    """(ffi, lib) for libcrypto.so.3; BackendError when absent or older than OpenSSL 3."""
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    errors: list[str] = []
    for name in ("libcrypto.so.3", ctypes.util.find_library("crypto"), "libcrypto.3.dylib"):
        if not name:
            continue
        try:
            lib = ffi.dlopen(name)
            version = lib.OpenSSL_version_num()
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        if version < 0x30000000:
            errors.append(f"{name}: OpenSSL {version:#x} is older than 3.0")
            continue
        return ffi, lib
    raise BackendError("SM2 needs the system OpenSSL 3 libcrypto (libcrypto.so.3): " + "; ".join(errors))


def last_error(lib: Lib, ffi: cffi.FFI) -> str:
    code = lib.ERR_get_error()
    lib.ERR_clear_error()
    if not code:
        return "no detail from OpenSSL"
    buf = ffi.new("char[]", 256)
    lib.ERR_error_string_n(code, buf, 256)
    return str(ffi.string(buf).decode("ascii", "replace"))


def check(ok: int, what: str) -> None:
    if ok <= 0:
        ffi, lib = load()
        raise BackendError(f"OpenSSL {what} failed: {last_error(lib, ffi)}")
