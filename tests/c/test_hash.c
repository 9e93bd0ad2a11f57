#include "kernels/tz_hash.h"
#include "tap.h"

int main(void)
{
    /* Reference vector of the SipHash paper: key 00..0f, message 00..0e. */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++) msg[i] = (uint8_t)i;
    ok(tz_hash_siphash(key, msg, 15) == 0xa129ca6149be45e5ull, "SipHash-2-4 paper vector");
    ok(tz_hash_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ull, "SipHash-2-4 empty message");
    ok(tz_hash_fnv1a64(TZ_HASH_FNV_SEED, "a", 1) == 0xaf63dc4c8601ec8cull, "FNV-1a 64 of 'a'");
    uint64_t whole = tz_hash_fnv1a64(TZ_HASH_FNV_SEED, "hello", 5);
    ok(tz_hash_fnv1a64(tz_hash_fnv1a64(TZ_HASH_FNV_SEED, "he", 2), "llo", 3) == whole, "FNV is incremental");
    return tap_done();
}
