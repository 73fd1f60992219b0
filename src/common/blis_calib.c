/*
 * Choosing the BLIS kernel set by measurement: each candidate timed in a
 * forked child (BLIS's choice is fixed at its first initialization in a
 * process), and the per-CPU cache file of the result.
 */
#include "common/blis_calib.h"

#include <blis.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

/* A 384^3 product: 0.11 GFLOP, about a millisecond with vector kernels,
 * long enough for the micro-kernel (not packing) to dominate. */
#define CALIB_N    384
#define CALIB_REPS 2 /* timed runs per child after one warm-up */
/* Rounds over all candidates, interleaved, the best time of each counting:
 * a burst of load from other processes rarely hits one candidate in all. */
#define CALIB_ROUNDS     3
#define CALIB_TIMEOUT_MS 2000 /* a child slower than this is killed and left out */
#define CALIB_FORMAT     "pspace-blis-calibration 1\n"

/* What a child writes to its pipe. */
typedef struct calib_msg {
	double ts, td; /* best sgemm and dgemm seconds */
	int status;    /* 0 = measured, 1 = BLIS runs another kernel set, 2 = no memory */
} calib_msg;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The best of CALIB_REPS C = A B of CALIB_N^3, after one warm-up. */
static double time_gemm(int dbl, void *a, void *b, void *c)
{
	const dim_t n = CALIB_N;
	double best = 0.0;

	for (int r = 0; r <= CALIB_REPS; r++) {
		double t0 = now(), t;

		if (dbl) {
			double one = 1.0, zero = 0.0;

			bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, a, 1, n, b,
			          1, n, &zero, c, 1, n);
		} else {
			float one = 1.0f, zero = 0.0f;

			bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, a, 1, n, b,
			          1, n, &zero, c, 1, n);
		}
		t = now() - t0;
		if (r > 0 && (best == 0.0 || t < best))
			best = t;
	}
	return best;
}

/* The child: BLIS with kernel set @p idx, one thread; times, reports, exits.
 * It touches nothing of the parent's (no stdio, no files, no atexit). */
static void child_run(int fd, int idx)
{
	const size_t nn = (size_t)CALIB_N * CALIB_N;
	calib_msg m = {0.0, 0.0, 2};
	char num[16];
	double *buf = NULL;
	ssize_t w;

	snprintf(num, sizeof(num), "%d", idx);
	setenv("BLIS_ARCH_TYPE", num, 1);
	bli_init();
	if ((int)bli_arch_query_id() != idx) {
		m.status = 1;
		goto out;
	}
	bli_thread_set_num_threads(1);
	buf = malloc(3 * nn * sizeof(double));
	if (buf == NULL)
		goto out;
	{
		float *f = (float *)buf;

		for (size_t i = 0; i < 3 * nn; i++)
			f[i] = 0.05f * (float)((int)(i * 7 % 13) - 6);
		m.ts = time_gemm(0, f, f + nn, f + 2 * nn);
	}
	for (size_t i = 0; i < 3 * nn; i++)
		buf[i] = 0.05 * (double)((int)(i * 7 % 13) - 6);
	m.td = time_gemm(1, buf, buf + nn, buf + 2 * nn);
	m.status = 0;
out:
	free(buf);
	do
		w = write(fd, &m, sizeof(m));
	while (w < 0 && errno == EINTR);
	_exit(0);
}

/* Reads one calib_msg from @p fd within CALIB_TIMEOUT_MS.
 * @return 1 if read, 0 on end of file (the child died), -1 on timeout. */
static int read_msg(int fd, calib_msg *m)
{
	char *p = (char *)m;
	size_t got = 0;
	double deadline = now() + 1e-3 * CALIB_TIMEOUT_MS;
	int rc = 0;

	while (got < sizeof(*m)) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int left = (int)((deadline - now()) * 1e3);
		ssize_t r;

		if (left <= 0) {
			rc = -1;
			goto out;
		}
		r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r == 0 ? -1 : 0;
			goto out;
		}
		r = read(fd, p + got, sizeof(*m) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto out;
		got += (size_t)r;
	}
	rc = 1;
out:
	return rc;
}

/* Times kernel set @p idx in a child. @return 0 (m->status says how it
 * went; ts = td = 0 if the child failed), or PSPACE_EIO when no child could
 * be started (reason in @p why). */
static int run_child(int idx, calib_msg *m, char *why, size_t whycap)
{
	int fds[2] = {-1, -1};
	pid_t pid;
	int rc = 0, got;

	memset(m, 0, sizeof(*m));
	m->status = 2;
	if (pipe2(fds, O_CLOEXEC) != 0) {
		snprintf(why, whycap, "pipe: %s", strerror(errno));
		rc = PSPACE_EIO;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(why, whycap, "fork: %s", strerror(errno));
		rc = PSPACE_EIO;
		goto out;
	}
	if (pid == 0) {
		close(fds[0]);
		child_run(fds[1], idx);
	}
	close(fds[1]);
	fds[1] = -1;
	got = read_msg(fds[0], m);
	if (got < 0)
		kill(pid, SIGKILL); /* hung (a lock held at fork time?): leave it out */
	if (got <= 0) {
		memset(m, 0, sizeof(*m));
		m->status = 2;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
out:
	if (fds[1] >= 0)
		close(fds[1]);
	if (fds[0] >= 0)
		close(fds[0]);
	return rc;
}

static double score(const pspace_blis_calib *c, int i)
{
	return c->ts[i] > 0.0 && c->td[i] > 0.0 ? sqrt(c->ts[i] * c->td[i]) : 0.0;
}

/* The index of the smallest positive score, or -1. */
static int fastest(const pspace_blis_calib *c)
{
	int best = -1;

	for (int i = 0; i < c->n; i++)
		if (score(c, i) > 0.0 && (best < 0 || score(c, i) < score(c, best)))
			best = i;
	return best;
}

int pspace_blis_calibrate(pspace_blis_calib *c, const char *const *names, int n, char *why,
                          size_t whycap)
{
	int failed[PSPACE_BLIS_MAX_CANDIDATES] = {0};
	double t0 = now();
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->best = -1;
	c->n = n < PSPACE_BLIS_MAX_CANDIDATES ? n : PSPACE_BLIS_MAX_CANDIDATES;
	for (int i = 0; i < c->n; i++)
		c->name[i] = names[i];
	for (int r = 0; r < CALIB_ROUNDS; r++) {
		for (int i = 0; i < c->n; i++) {
			calib_msg m;

			if (failed[i])
				continue;
			rc = run_child(pspace_blis_arch_index(names[i]), &m, why, whycap);
			if (rc != 0)
				goto out;
			if (m.status == 1) {
				snprintf(why, whycap,
				         "BLIS was initialized before pspace_init(), "
				         "its kernel set is fixed");
				rc = PSPACE_EBLIS;
				goto out;
			}
			if (m.status != 0 || !(m.ts > 0.0 && m.td > 0.0) || !isfinite(m.ts) ||
			    !isfinite(m.td)) {
				failed[i] = 1; /* crashed, hung or out of memory: left out */
				c->ts[i] = c->td[i] = 0.0;
				continue;
			}
			if (c->ts[i] == 0.0 || m.ts < c->ts[i])
				c->ts[i] = m.ts;
			if (c->td[i] == 0.0 || m.td < c->td[i])
				c->td[i] = m.td;
		}
	}
	c->best = fastest(c);
	if (c->best < 0) {
		snprintf(why, whycap, "no kernel set could be timed");
		rc = PSPACE_EBLIS;
	}
out:
	c->seconds = now() - t0;
	return rc;
}

/* ---- the cache file ---------------------------------------------------------------- */

static const char *vendor_name(const pspace_cpu *cpu)
{
	return cpu->vendor == PSPACE_CPU_INTEL ? "intel"
	       : cpu->vendor == PSPACE_CPU_AMD ? "amd"
	                                       : "other";
}

int pspace_blis_cache_path(char *out, size_t cap, const pspace_cpu *cpu, const char *version)
{
	const char *dir = getenv("PSPACE_CACHE_DIR");
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	const char *sub;
	char ver[32];
	size_t k = 0;
	int n;

	/* XDG: relative values are invalid and ignored */
	if (dir && *dir)
		sub = "";
	else if (xdg && *xdg == '/')
		dir = xdg, sub = "/pspace";
	else if (home && *home == '/')
		dir = home, sub = "/.cache/pspace";
	else
		return -1;
	for (const char *v = version; *v && k < sizeof(ver) - 1; v++)
		ver[k++] = (strchr("/ \t\n", *v) == NULL) ? *v : '_';
	ver[k] = '\0';
	n = snprintf(out, cap, "%s%s/blis-%s-%s-%x-%x-%x", dir, sub, ver, vendor_name(cpu),
	             cpu->family, cpu->model, cpu->features);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The cpu line of the file for @p cpu. */
static void cpu_line(char *out, size_t cap, const pspace_cpu *cpu)
{
	snprintf(out, cap, "cpu %s %x %x %x\n", vendor_name(cpu), cpu->family, cpu->model,
	         cpu->features);
}

int pspace_blis_cache_read(pspace_blis_calib *c, const char *path, const pspace_cpu *cpu,
                           const char *version, const char *const *names, int n)
{
	FILE *f = fopen(path, "r");
	char line[256], want[128], choice[32] = "";
	int rc = -1, lineno = 0;

	memset(c, 0, sizeof(*c));
	c->best = -1;
	if (f == NULL)
		goto out;
	while (fgets(line, sizeof(line), f)) {
		char name[32];
		double ts, td;
		int used = 0, k = -1;

		if (strchr(line, '\n') == NULL)
			goto out; /* over-long line or no final newline: not ours */
		switch (lineno++) {
		case 0:
			if (strcmp(line, CALIB_FORMAT) != 0)
				goto out;
			continue;
		case 1:
			cpu_line(want, sizeof(want), cpu);
			if (strcmp(line, want) != 0)
				goto out;
			continue;
		case 2:
			snprintf(want, sizeof(want), "blis %s\n", version);
			if (strcmp(line, want) != 0)
				goto out;
			continue;
		case 3:
			if (sscanf(line, "choice %31s %n", choice, &used) != 1 ||
			    line[used] != '\0')
				goto out;
			continue;
		default: break;
		}
		if (sscanf(line, "time %31s %lf %lf %n", name, &ts, &td, &used) != 3 ||
		    line[used] != '\0' || c->n >= PSPACE_BLIS_MAX_CANDIDATES)
			goto out;
		if (!(ts > 0.0 && ts < 100.0 && td > 0.0 && td < 100.0))
			goto out;
		for (int i = 0; i < n; i++)
			if (strcmp(names[i], name) == 0)
				k = i;
		if (k < 0)
			goto out; /* not a kernel set this CPU can run */
		for (int i = 0; i < c->n; i++)
			if (c->name[i] == names[k])
				goto out;
		c->name[c->n] = names[k];
		c->ts[c->n] = ts;
		c->td[c->n] = td;
		c->n++;
	}
	if (ferror(f) || c->n == 0)
		goto out;
	c->best = fastest(c);
	if (c->best < 0 || strcmp(c->name[c->best], choice) != 0)
		goto out;
	rc = 0;
out:
	if (f)
		fclose(f);
	if (rc != 0) {
		c->n = 0;
		c->best = -1;
	}
	return rc;
}

/* mkdir -p of the directory part of @p path (mode 0700, as XDG asks). */
static void make_parents(const char *path)
{
	char dir[4096];
	size_t len = strlen(path);

	if (len >= sizeof(dir))
		return;
	memcpy(dir, path, len + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		(void)mkdir(dir, 0700); /* EEXIST and the like: the open below says */
		*p = '/';
	}
}

int pspace_blis_cache_write(const pspace_blis_calib *c, const char *path, const pspace_cpu *cpu,
                            const char *version, char *why, size_t whycap)
{
	char tmp[4096 + 8], line[128];
	FILE *f = NULL;
	int fd = -1, rc = -1, made = 0;

	if (c->best < 0 || (size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp)) {
		snprintf(why, whycap, "nothing to save");
		goto out;
	}
	make_parents(path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		snprintf(why, whycap, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	made = 1;
	f = fdopen(fd, "w");
	if (f == NULL) {
		snprintf(why, whycap, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	cpu_line(line, sizeof(line), cpu);
	fprintf(f, CALIB_FORMAT "%sblis %s\nchoice %s\n", line, version, c->name[c->best]);
	for (int i = 0; i < c->n; i++)
		if (score(c, i) > 0.0)
			fprintf(f, "time %s %.9g %.9g\n", c->name[i], c->ts[i], c->td[i]);
	if (fflush(f) != 0 || ferror(f)) {
		snprintf(why, whycap, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(why, whycap, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		snprintf(why, whycap, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (rc != 0 && made)
		(void)unlink(tmp);
	return rc;
}

void pspace_blis_calib_describe(char *out, size_t cap, const pspace_blis_calib *c)
{
	int order[PSPACE_BLIS_MAX_CANDIDATES], n = 0;
	size_t len = 0;

	out[0] = '\0';
	if (c->best < 0)
		return;
	/* by score, failed ones last (insertion sort of a handful) */
	for (int i = 0; i < c->n; i++) {
		int j = n++;
		double si = score(c, i);

		while (j > 0 && (score(c, order[j - 1]) <= 0.0
		                     ? si > 0.0
		                     : (si > 0.0 && si < score(c, order[j - 1])))) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int k = 0; k < n && len < cap; k++) {
		int i = order[k];
		double r = score(c, i) / score(c, c->best);
		int w;

		if (i == c->best)
			w = snprintf(out + len, cap - len, "%s%s 1.00", k ? ", " : "", c->name[i]);
		else if (score(c, i) > 0.0)
			w = snprintf(out + len, cap - len, "%s%s %.2fx slower", k ? ", " : "",
			             c->name[i], r);
		else
			w = snprintf(out + len, cap - len, "%s%s failed", k ? ", " : "",
			             c->name[i]);
		if (w < 0)
			break;
		len += (size_t)w;
	}
}
