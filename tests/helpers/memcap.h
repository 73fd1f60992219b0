/*
 * Test helper: run under a memory cap that also limits the page cache
 * (a cgroup v1 memory controller child group), and measure peak memory.
 */
#ifndef PSPACE_TESTS_MEMCAP_H
#define PSPACE_TESTS_MEMCAP_H

#include <stddef.h>
#include <stdint.h>

/* MEMCAP_UNDER_ASAN: defined when built with AddressSanitizer, whose shadow memory fits no tight
 * cap. */
#if defined(__SANITIZE_ADDRESS__)
#define MEMCAP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEMCAP_UNDER_ASAN 1
#endif
#endif

/** Monotonic clock in seconds, for the capped tests' timings. */
double memcap_now(void);

/**
 * @return 1 when this process can cap memory (root, cgroup v1 memory
 * controller), else 0 with the reason in @p why.
 */
int memcap_available(char *why, size_t whycap);

/**
 * Skips the calling cmocka test, printing "LABEL: skipped: reason", when
 * no cap can be set (memcap_available) or under AddressSanitizer: called
 * before a test's expensive setup, so that a skip costs nothing.
 */
void memcap_require(const char *label);

/**
 * Creates a memory cgroup below this process's own with limit @p bytes and
 * moves the calling process into it. @p path receives its directory.
 * @return 0, or -1 with a reason in @p why (not root, no cgroup v1 memory
 * controller, ...).
 */
int memcap_enter(uint64_t bytes, char *path, size_t cap, char *why, size_t whycap);

/** The group path memcap_enter() uses for process @p pid. @return 0 or -1. */
int memcap_group_path(long pid, char *path, size_t cap);

/**
 * Runs @p fn(@p ud, cgroup path) in a forked child that drops the page
 * cache and enters a group capped at @p bytes (it exits 0 when fn returns;
 * fn may _exit with its own code), waits for it and removes the group.
 * Flushes stdout first, so the child does not print the parent's buffer.
 * @return the child's exit code (77: it could not enter a group, the reason
 * printed after @p label), or minus the signal that killed it (-9: the OOM
 * killer, memory above the cap).
 */
int memcap_run(uint64_t bytes, const char *label, void (*fn)(void *ud, const char *cgroup),
               void *ud);

/**
 * In the parent: fails the test (cmocka) when memcap_run() returned a
 * signal @p st (the message names the OOM killer and the cap @p bytes),
 * skips it on 77 (no group could be entered), asserts @p st = 0 otherwise.
 */
void memcap_expect_child(int st, uint64_t bytes);

/**
 * In a capped child: prints "@p label child: <fmt, ...> [<pspace_errdetail()>]"
 * and exits with code 1 (the parent's memcap_expect_child fails on it).
 */
void memcap_child_fail(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/** In a capped child: memcap_child_fail(@p label, ...) unless @p cond holds. */
#define MEMCAP_CHECK(label, cond, ...)                                                             \
	do {                                                                                       \
		if (!(cond))                                                                       \
			memcap_child_fail(label, __VA_ARGS__);                                     \
	} while (0)

/** Removes the group at @p path (it must have no processes left). */
void memcap_remove(const char *path);

/** Reads a number from @p path/@p file (e.g. "memory.max_usage_in_bytes"); 0 on error. */
uint64_t memcap_read(const char *path, const char *file);

/** Drops the page cache (sync; echo 3 > drop_caches). @return 0 or -1. */
int memcap_drop_caches(void);

/**
 * Samples this process's anonymous resident memory (RssAnon) every few
 * milliseconds on a background thread; memcap_sampler_stop() returns the
 * peak in bytes.
 */
int memcap_sampler_start(void);
uint64_t memcap_sampler_stop(void);

/** @return a field of /proc/self/status in bytes ("VmHWM", "RssAnon", ...). */
uint64_t memcap_status(const char *field);

#endif
