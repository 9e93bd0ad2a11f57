#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_hash.h"
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
    /* Unit interval: in [0, 1), and about uniform over many short keys. */
    uint64_t salt = tz_hash_fnv1a64(TZ_HASH_FNV_SEED, "exp\0", 4);
    int below = 0, inside = 1;
    for (int i = 0; i < 100000; i++) {
        char unit[16];
        int n = snprintf(unit, sizeof unit, "user-%d", i);
        double u = tz_hash_unit_interval(salt, unit, (size_t)n);
        inside &= u >= 0 && u < 1;
        below += u < 0.2;
    }
    ok(inside, "unit interval values lie in [0, 1)");
    /* Buckets: the first bound above the point, the last one for the rest. */
    const double bounds[3] = { 0.2, 0.7, 0.999 };
    int agree = 1, counts[3] = { 0, 0, 0 };
    for (int i = 0; i < 20000; i++) {
        char unit[16];
        int n = snprintf(unit, sizeof unit, "user-%d", i);
        double u = tz_hash_unit_interval(salt, unit, (size_t)n);
        int b = tz_hash_bucket(salt, unit, (size_t)n, bounds, 3);
        agree &= b == (u < 0.2 ? 0 : u < 0.7 ? 1 : 2);
        counts[b]++;
    }
    ok(agree, "each unit's bucket is the first bound above its point (last: the rest)");
    ok(counts[0] > 3700 && counts[0] < 4300 && counts[1] > 9600 && counts[1] < 10400, "buckets by weight (%d %d %d)",
       counts[0], counts[1], counts[2]);
    ok(below > 19400 && below < 20600, "a fifth of 100000 units fall below 0.2 (%d)", below);
    static const struct { const char *msg; const char *hex; } v[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    for (int t = 0; t < 3; t++) {
        uint8_t d[32];
        char hex[65];
        tz_hash_sha256(v[t].msg, strlen(v[t].msg), d);
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
        is_str(hex, v[t].hex, "SHA-256 of a %zu-byte FIPS vector", strlen(v[t].msg));
    }
    /* One million 'a': crosses many blocks. */
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    uint8_t d[32];
    char hex[65];
    tz_hash_sha256(million, 1000000, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "SHA-256 of a million 'a'");
    free(million);
    return tap_done();
}
