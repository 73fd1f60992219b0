/*
 * Test helper: cgroup v1 memory caps and peak-memory sampling.
 */
#include "memcap.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pspace/common.h"

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (!f)
		return -1;
	rc = fputs(text, f) < 0 ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* The memory cgroup of this process, relative to the controller's mount. */
static int own_memory_group(char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/self/cgroup", "r");
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, ":memory:");
		if (p) {
			p += strlen(":memory:");
			p[strcspn(p, "\n")] = '\0';
			snprintf(out, cap, "%s", p);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

int memcap_group_path(long pid, char *path, size_t cap)
{
	char group[400];

	if (own_memory_group(group, sizeof(group)) != 0)
		return -1;
	snprintf(path, cap, "/sys/fs/cgroup/memory%s/pspace-test-%ld",
	         strcmp(group, "/") == 0 ? "" : group, pid);
	return 0;
}

double memcap_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int memcap_available(char *why, size_t whycap)
{
	struct stat st;

	if (geteuid() != 0) {
		snprintf(why, whycap, "not root: cgroup memory limits need root");
		return 0;
	}
	if (stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st) != 0) {
		snprintf(why, whycap, "no cgroup v1 memory controller at /sys/fs/cgroup/memory");
		return 0;
	}
	return 1;
}

void memcap_require(const char *label)
{
	char why[128];

#ifdef MEMCAP_UNDER_ASAN
	printf("%s: skipped: AddressSanitizer's shadow memory fits no tight cap\n", label);
	skip();
#endif
	if (!memcap_available(why, sizeof(why))) {
		printf("%s: skipped: %s\n", label, why);
		skip();
	}
}

int memcap_enter(uint64_t bytes, char *path, size_t cap, char *why, size_t whycap)
{
	char file[600], num[32];

	if (!memcap_available(why, whycap))
		return -1;
	if (memcap_group_path((long)getpid(), path, cap) != 0) {
		snprintf(why, whycap, "no cgroup v1 memory controller at /sys/fs/cgroup/memory");
		return -1;
	}
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		snprintf(why, whycap, "mkdir %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)bytes);
	snprintf(file, sizeof(file), "%s/memory.limit_in_bytes", path);
	if (write_file(file, num) != 0) {
		snprintf(why, whycap, "cannot set %s: %s", file, strerror(errno));
		return -1;
	}
	snprintf(num, sizeof(num), "%ld", (long)getpid());
	snprintf(file, sizeof(file), "%s/cgroup.procs", path);
	if (write_file(file, num) != 0) {
		snprintf(why, whycap, "cannot join %s: %s", file, strerror(errno));
		return -1;
	}
	return 0;
}

int memcap_run(uint64_t bytes, const char *label, void (*fn)(void *ud, const char *cgroup),
               void *ud)
{
	char cgroup[512], why[256];
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1000;
	if (pid == 0) {
		memcap_drop_caches();
		if (memcap_enter(bytes, cgroup, sizeof(cgroup), why, sizeof(why)) != 0) {
			printf("%s: skipped: %s\n", label, why);
			fflush(stdout);
			_exit(77);
		}
		fn(ud, cgroup);
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1000;
	if (memcap_group_path((long)pid, cgroup, sizeof(cgroup)) == 0)
		memcap_remove(cgroup);
	return WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
}

void memcap_expect_child(int st, uint64_t bytes)
{
	if (st < 0)
		fail_msg("the capped child died of signal %d (9 = killed by the OOM killer: "
		         "memory above the %llu MiB cap)",
		         -st, (unsigned long long)(bytes >> 20));
	if (st == 77)
		skip();
	assert_int_equal(st, 0);
}

void memcap_child_fail(const char *label, const char *fmt, ...)
{
	va_list ap;

	printf("%s child: ", label);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" [%s]\n", pspace_errdetail());
	fflush(stdout);
	_exit(1);
}

void memcap_remove(const char *path)
{
	rmdir(path);
}

uint64_t memcap_read(const char *path, const char *file)
{
	char name[600];
	unsigned long long v = 0;
	FILE *f;

	snprintf(name, sizeof(name), "%s/%s", path, file);
	f = fopen(name, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

int memcap_drop_caches(void)
{
	sync();
	return write_file("/proc/sys/vm/drop_caches", "3");
}

uint64_t memcap_status(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			sscanf(line + n + 1, "%llu", &kb);
			break;
		}
	fclose(f);
	return (uint64_t)kb * 1024;
}

static pthread_t sampler;
static atomic_int sampling;
static _Atomic uint64_t peak_anon;

static void *sample(void *arg)
{
	const struct timespec pause = {0, 5 * 1000 * 1000};

	(void)arg;
	while (atomic_load(&sampling)) {
		uint64_t v = memcap_status("RssAnon");
		if (v > atomic_load(&peak_anon))
			atomic_store(&peak_anon, v);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

int memcap_sampler_start(void)
{
	atomic_store(&peak_anon, memcap_status("RssAnon"));
	atomic_store(&sampling, 1);
	return pthread_create(&sampler, NULL, sample, NULL) == 0 ? 0 : -1;
}

uint64_t memcap_sampler_stop(void)
{
	atomic_store(&sampling, 0);
	pthread_join(sampler, NULL);
	return atomic_load(&peak_anon);
}
