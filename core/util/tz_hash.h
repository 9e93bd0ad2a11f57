/*
 * tz_hash — hashing for features and provenance.
 *
 * tz_hash_siphash: SipHash-2-4 with a 16-byte key, the keyed hash used to
 * store PII features (the key lives in the home, so the same value maps to
 * the same token within a home and to unrelated ones across homes).
 * tz_hash_sha256: the digest artifacts and the registry record.
 * tz_hash_fnv1a64: unkeyed, fast, for content fingerprints and incremental
 * (pass the previous result as `seed`, start with TZ_HASH_FNV_SEED).
 * Pure functions over borrowed bytes; they cannot fail.
 */
#ifndef TZ_HASH_H
#define TZ_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TZ_HASH_FNV_SEED 14695981039346656037ull

uint64_t tz_hash_siphash(const uint8_t key[16], const void *data, size_t len);

/* SHA-256 (FIPS 180-4) of data into out (32 bytes): artifact checksums. */
void tz_hash_sha256(const void *data, size_t len, uint8_t out[32]);
uint64_t tz_hash_fnv1a64(uint64_t seed, const void *data, size_t len);

/* A point in [0, 1) for data: FNV-1a 64 continued from `state` (e.g. the
 * hash of an experiment's salt), then the MurmurHash3 64-bit finalizer,
 * since FNV's top bits are weak for short keys that differ in their last
 * bytes. Experiments assign units with it; in C rather than Lua because
 * 64-bit integer arithmetic on LuaJIT cdata miscompiles in some traces. */
double tz_hash_unit_interval(uint64_t state, const void *data, size_t len);

/* The bucket of data's point u (tz_hash_unit_interval): the first i < n
 * with u < bounds[i], else n - 1; bounds are the running sums of the
 * buckets' weights. An experiment's assignment in one call, so that the
 * Lua trace through it does not branch on the unit's hash. */
int tz_hash_bucket(uint64_t state, const void *data, size_t len, const double *bounds, int n);

#endif
