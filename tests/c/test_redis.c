/* tz_redis without a server: key slots (hash tags), redirect parsing, slot
 * maps from CLUSTER SLOTS replies, reply flattening and its bounds, and a
 * cluster that cannot be reached answering within its budget. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/tz_redis.h"
#include "tap.h"

static int slot(const char *k) { return tz_redis_key_slot(k, strlen(k)); }

static void test_slots(void)
{
    /* Values from the Redis Cluster specification and CLUSTER KEYSLOT. */
    is_int(slot("123456789"), 12739, "CRC16 of the spec's check string");
    is_int(slot("foo"), 12182, "CLUSTER KEYSLOT foo");
    is_int(slot("user1000"), 3443, "CLUSTER KEYSLOT user1000");
    is_int(slot(""), 0, "the empty key");
    is_int(slot("{user1000}.following"), slot("user1000"), "a hash tag alone decides");
    is_int(slot("{user1000}.followers"), slot("{user1000}.following"), "keys sharing a tag share a slot");
    ok(slot("foo{}{bar}") != slot("bar"), "an empty first tag is no tag");
    is_int(slot("foo{{bar}}zap"), slot("{bar"), "the tag runs from the first { to the next }");
    is_int(slot("foo{bar}{zap}"), slot("bar"), "only the first tag counts");
    is_int(slot("{unclosed"), tz_redis_key_slot("{unclosed", 9), "no closing brace: the whole key");
    const char bin[] = { 'a', 0, '{', 'x', '}', 0 };
    is_int(tz_redis_key_slot(bin, 6), slot("x"), "keys may hold NUL bytes");
}

static void test_redirects(void)
{
    char host[64];
    int s = -1, port = -1;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    is_int(tz_redis_parse_redirect(m, strlen(m), &s, host, sizeof host, &port), 1, "MOVED");
    is_int(s, 3999, "its slot");
    is_str(host, "127.0.0.1", "its host");
    is_int(port, 6381, "its port");
    m = "ASK 12 ::1:7000";
    is_int(tz_redis_parse_redirect(m, strlen(m), &s, host, sizeof host, &port), 2, "ASK, IPv6 host");
    is_str(host, "::1", "the host up to the last colon");
    m = "MOVED 5 :7001";
    is_int(tz_redis_parse_redirect(m, strlen(m), &s, host, sizeof host, &port), 1, "MOVED without a host");
    is_str(host, "", "host left empty: the replying node's");
    const char *bad[] = { "ERR unknown command", "MOVED 99999 h:1", "MOVED x h:1", "MOVED 1 h:0", "ASK 1 h", "MOVED 1" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        is_int(tz_redis_parse_redirect(bad[i], strlen(bad[i]), &s, host, sizeof host, &port), 0, "not a redirect: %s", bad[i]);
}

/* A CLUSTER SLOTS reply of three masters (one with a replica). */
static const char SLOTS[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n"
    "*3\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
    "*3\r\n:10923\r\n:16383\r\n*2\r\n$0\r\n\r\n:7002\r\n";

static void test_slot_map(void)
{
    tz_redis *r;
    tz_err err;
    is_int(tz_redis_create("redis://127.0.0.1:1,127.0.0.1:2", NULL, &r, &err), 0, "create without connecting");
    char buf[64];
    is_int(tz_redis_slot_node(r, 0, buf, sizeof buf), TZ_ENOTFOUND, "an empty map serves nothing");
    is_int(tz_redis_load_slots(r, SLOTS, sizeof SLOTS - 1, &err), 0, "CLUSTER SLOTS loaded: %s", err.msg);
    tz_redis_slot_node(r, 0, buf, sizeof buf);
    is_str(buf, "127.0.0.1:7000", "slot 0 -> the first master, not its replica");
    tz_redis_slot_node(r, 5461, buf, sizeof buf);
    is_str(buf, "127.0.0.1:7001", "slot 5461");
    tz_redis_slot_node(r, 16383, buf, sizeof buf);
    is_str(buf, "127.0.0.1:7002", "an empty host is the answering node's");
    int slots[8];
    is_int(tz_redis_master_slots(r, slots, 8), 3, "one slot per master");
    is_int(slots[0], 0, "first master's slot");
    is_int(slots[1], 5461, "second master's slot");
    const char bad[] = "*1\r\n*2\r\n:0\r\n:5\r\n";
    ok(tz_redis_load_slots(r, bad, sizeof bad - 1, &err) == TZ_EINVAL, "a malformed map is refused");
    tz_redis_slot_node(r, 0, buf, sizeof buf);
    is_str(buf, "127.0.0.1:7000", "and the old map kept");
    const char err_reply[] = "-ERR This instance has cluster support disabled\r\n";
    ok(tz_redis_load_slots(r, err_reply, sizeof err_reply - 1, &err) == TZ_EINVAL, "an error reply is refused");
    ok(strstr(err.msg, "cluster support disabled") != NULL, "with the server's words: %s", err.msg);
    tz_redis_close(r);
    ok(tz_redis_create("redis://", NULL, &r, &err) == TZ_EINVAL, "no address: %s", err.msg);
    ok(tz_redis_create("h:70000", NULL, &r, &err) == TZ_EINVAL, "a bad port: %s", err.msg);
}

static void test_replies(void)
{
    tz_redis_batch *b = tz_redis_batch_new();
    tz_err err;
    const char *argv[] = { "HMGET", "{u:1}", "1", "2" };
    for (int i = 0; i < 4; i++) is_int(tz_redis_batch_add(b, slot("{u:1}"), 4, argv, NULL, &err), i, "command %d added", i);
    const tz_redis_item *it;
    int n;
    is_int(tz_redis_batch_reply(b, 0, &it, &n), TZ_ENOTFOUND, "no reply before exec");
    const char arr[] = "*3\r\n$3\r\na\0b\r\n$-1\r\n*2\r\n:42\r\n+OK\r\n";
    is_int(tz_redis_batch_feed(b, 0, arr, sizeof arr - 1, &err), 0, "a nested array");
    is_int(tz_redis_batch_reply(b, 0, &it, &n), 0, "its reply");
    is_int(n, 6, "flattened depth-first into 6 items");
    is_int(it[0].type, TZ_REDIS_ARRAY, "array");
    is_int(it[0].integer, 3, "of 3");
    ok(it[1].type == TZ_REDIS_STRING && it[1].len == 3 && !memcmp(it[1].str, "a\0b", 3), "a binary string");
    is_int(it[2].type, TZ_REDIS_NIL, "a nil bulk");
    ok(it[3].type == TZ_REDIS_ARRAY && it[3].integer == 2, "an inner array");
    ok(it[4].type == TZ_REDIS_INTEGER && it[4].integer == 42, "an integer");
    ok(it[5].type == TZ_REDIS_STATUS && it[5].len == 2, "a status");
    const char e[] = "-WRONGTYPE Operation against a key\r\n";
    is_int(tz_redis_batch_feed(b, 1, e, sizeof e - 1, &err), 0, "an error reply");
    tz_redis_batch_reply(b, 1, &it, &n);
    ok(n == 1 && it[0].type == TZ_REDIS_ERROR && !strncmp(it[0].str, "WRONGTYPE", 9), "kept as an ERROR item");
    is_int(tz_redis_batch_feed(b, 2, "$5\r\nab", 6, &err), TZ_EINVAL, "an incomplete reply is refused");
    is_int(tz_redis_batch_feed(b, 2, "?what\r\n", 7, &err), TZ_EINVAL, "a protocol error is refused");
    const char huge[] = "*2000000\r\n";
    is_int(tz_redis_batch_feed(b, 3, huge, sizeof huge - 1, &err), TZ_ETOOBIG, "an array past max_elements: %s", err.msg);
    is_int(tz_redis_batch_reply(b, 0, &it, &n), 0, "earlier replies stay");
    ok(it[1].len == 3, "and intact");
    tz_redis_batch_clear(b);
    is_int(tz_redis_batch_count(b), 0, "cleared");
    is_int(tz_redis_batch_add(b, -2, 1, argv, NULL, &err), TZ_EINVAL, "a bad slot is refused");
    tz_redis_batch_free(b);
}

static void test_unreachable(void)
{
    /* Port 1 on loopback refuses at once: open fails, exec gives up within
     * its budget and marks every command UNAVAILABLE. */
    tz_redis *r;
    tz_err err;
    tz_redis_opts o = { .timeout_ms = 200, .retry_ms = 300 };
    is_int(tz_redis_open("127.0.0.1:1", &o, &r, &err), TZ_EIO, "no node answers: %s", err.msg);
    is_int(tz_redis_create("127.0.0.1:1", &o, &r, &err), 0, "created");
    tz_redis_load_slots(r, SLOTS, sizeof SLOTS - 1, &err);
    tz_redis_batch *b = tz_redis_batch_new();
    const char *argv[] = { "GET", "k" };
    tz_redis_batch_add(b, slot("k"), 2, argv, NULL, &err);
    is_int(tz_redis_exec(r, b, &err), TZ_EIO, "exec: %s", err.msg);
    const tz_redis_item *it;
    int n;
    tz_redis_batch_reply(b, 0, &it, &n);
    is_int(it[0].type, TZ_REDIS_UNAVAILABLE, "the command is UNAVAILABLE");
    tz_redis_stats st;
    tz_redis_get_stats(r, &st);
    ok(st.retries > 0, "after retries (%lld)", (long long)st.retries);
    tz_redis_batch_free(b);
    tz_redis_close(r);
}

static double ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_no_wait(void)
{
    /* A read with budget 0 (a serving path's) waits for nothing: its node
     * refuses, so its command is UNAVAILABLE at once, however long the
     * client's own retry budget; again while the node is known down. */
    tz_redis *r;
    tz_err err;
    tz_redis_opts o = { .timeout_ms = 200, .retry_ms = 5000 };
    tz_redis_create("127.0.0.1:1", &o, &r, &err);
    tz_redis_load_slots(r, SLOTS, sizeof SLOTS - 1, &err);
    tz_redis_batch *b = tz_redis_batch_new();
    const char *argv[] = { "GET", "k" };
    tz_redis_batch_add(b, slot("k"), 2, argv, NULL, &err);
    for (int k = 0; k < 2; k++) {
        double t0 = ms_now();
        is_int(tz_redis_exec_within(r, b, 0, &err), TZ_EIO, "exec within 0 ms: %s", err.msg);
        double took = ms_now() - t0;
        ok(took < 100, "answered in %.1f ms, not after the 5 s budget", took);
        const tz_redis_item *it;
        int n;
        tz_redis_batch_reply(b, 0, &it, &n);
        is_int(it[0].type, TZ_REDIS_UNAVAILABLE, "UNAVAILABLE (%s)", k ? "node known down" : "refused");
    }
    tz_redis_batch_free(b);
    tz_redis_close(r);
}

static void test_hung_node(void)
{
    /* A node that takes connections and never answers (a hung process, a
     * partition past the handshake): a listening socket nobody accepts on.
     * The first read waits timeout_ms, then the node is known down and the
     * next read does not wait again. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    ok(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, 16)
       && !getsockname(fd, (struct sockaddr *)&a, &alen), "a listener that never accepts");
    int port = ntohs(a.sin_port);
    char seed[64], slots[160];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", port);
    int n = snprintf(slots, sizeof slots, "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", port);
    tz_redis *r;
    tz_err err;
    tz_redis_opts o = { .timeout_ms = 100, .retry_ms = 5000 };
    tz_redis_create(seed, &o, &r, &err);
    is_int(tz_redis_load_slots(r, slots, (size_t)n, &err), 0, "its slot map");
    tz_redis_batch *b = tz_redis_batch_new();
    const char *argv[] = { "GET", "k" };
    tz_redis_batch_add(b, slot("k"), 2, argv, NULL, &err);
    double t0 = ms_now();
    is_int(tz_redis_exec_within(r, b, 0, &err), TZ_EIO, "no answer: %s", err.msg);
    double took = ms_now() - t0;
    ok(took >= 90 && took < 400, "the first read waited timeout_ms once (%.0f ms)", took);
    t0 = ms_now();
    is_int(tz_redis_exec_within(r, b, 0, &err), TZ_EIO, "again");
    took = ms_now() - t0;
    ok(took < 50, "the next did not wait: the node is known down (%.1f ms)", took);
    tz_redis_batch_free(b);
    tz_redis_close(r);
    close(fd);
}

int main(void)
{
    test_slots();
    test_redirects();
    test_slot_map();
    test_replies();
    test_unreachable();
    test_no_wait();
    test_hung_node();
    return tap_done();
}
