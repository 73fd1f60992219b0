/*
 * Test fixtures shared by the test programs (see fixture.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace/common.h"

/* ---- temporary directories and stores ------------------------------------------- */

void fx_dir_make(char *root, size_t cap, const char *tag)
{
	int n = snprintf(root, cap, "/tmp/pspace-test-%s-XXXXXX", tag);

	assert_true(n > 0 && (size_t)n < cap);
	assert_non_null(mkdtemp(root));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

int fx_dir_remove(const char *root)
{
	return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

const char *fx_path(const char *root, const char *fmt, ...)
{
	static char bufs[8][512];
	static unsigned next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, sizeof(bufs[0]), "%s/", root);
	va_list ap;

	assert_true(n > 0 && (size_t)n < sizeof(bufs[0]));
	va_start(ap, fmt);
	n += vsnprintf(b + n, sizeof(bufs[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	assert_true((size_t)n < sizeof(bufs[0]));
	return b;
}

static char group_dir[128];

int fx_group_setup(void **state)
{
	(void)state;
	snprintf(group_dir, sizeof(group_dir), "/tmp/pspace-test-%s-XXXXXX",
	         program_invocation_short_name);
	return mkdtemp(group_dir) ? 0 : -1;
}

int fx_group_teardown(void **state)
{
	(void)state;
	return fx_dir_remove(group_dir);
}

const char *fx_group_dir(void)
{
	return group_dir;
}

void fx_store_dir(fx_store *t, const char *tag)
{
	fx_dir_make(t->root, sizeof(t->root), tag);
	snprintf(t->path, sizeof(t->path), "%s/s", t->root);
	t->s = NULL;
}

void fx_store_open(fx_store *t, const char *tag)
{
	fx_store_dir(t, tag);
	fx_store_reopen(t);
}

void fx_store_reopen(fx_store *t)
{
	pspace_store_opts o;

	pspace_store_close(t->s);
	t->s = NULL;
	pspace_store_opts_default(&o);
	o.nosync = 1;
	assert_int_equal(pspace_store_open(&t->s, t->path, &o), 0);
}

void fx_store_close(fx_store *t)
{
	pspace_store_close(t->s);
	t->s = NULL;
	fx_dir_remove(t->root);
}

/* ---- seeded data -------------------------------------------------------------------- */

uint64_t fx_rng_u64(uint64_t *state)
{
	uint64_t x = (*state += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

double fx_rng_unif(uint64_t *state)
{
	return (double)(fx_rng_u64(state) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

double fx_rng_open01(uint64_t *state)
{
	return ((double)(fx_rng_u64(state) >> 11) + 0.5) / 9007199254740992.0;
}

double fx_rng_normal(uint64_t *state)
{
	double u1 = fx_rng_open01(state), u2 = fx_rng_open01(state);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double *fx_randv(size_t n, uint64_t seed)
{
	double *v = malloc((n ? n : 1) * sizeof(*v));
	uint64_t st = seed;

	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = fx_rng_unif(&st);
	return v;
}

double fx_relerr(const double *got, const double *want, size_t n)
{
	double e = 0, w = 0;

	for (size_t i = 0; i < n; i++) {
		e += (got[i] - want[i]) * (got[i] - want[i]);
		w += want[i] * want[i];
	}
	return w > 0 ? sqrt(e / w) : sqrt(e);
}

double fx_relerr1(double got, double want)
{
	return fabs(got - want) / (fabs(want) > 0 ? fabs(want) : 1.0);
}

void fx_expect_err(int rc, int code, const char *path, const char *substr)
{
	if (rc != code)
		fail_msg("expected %s, got %d (%s); detail: %s", pspace_strerror(code), rc,
		         pspace_strerror(rc), pspace_errdetail());
	if (path != NULL && strstr(pspace_errdetail(), path) == NULL)
		fail_msg("detail does not name %s: %s", path, pspace_errdetail());
	if (substr != NULL && strstr(pspace_errdetail(), substr) == NULL)
		fail_msg("detail lacks '%s': %s", substr, pspace_errdetail());
}

/* ---- the tool ----------------------------------------------------------------------- */

/* Reads what is left of @p f into @p buf (NUL-terminated; the rest is drained). */
static void read_all(FILE *f, char *buf, size_t cap)
{
	char sink[4096];
	size_t n = 0;

	if (cap > 0) {
		n = fread(buf, 1, cap - 1, f);
		buf[n] = '\0';
	}
	while (fread(sink, 1, sizeof(sink), f) > 0)
		;
}

int fx_run_tool(char *out, size_t outcap, char *err, size_t errcap, const char *fmt, ...)
{
	const char *tool = getenv("PSPACE_TOOL");
	char errpath[64] = "";
	char *args, *cmd;
	va_list ap;
	FILE *p;
	int n, st;

	assert_non_null(tool);
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	args = malloc((size_t)n + 1);
	assert_non_null(args);
	va_start(ap, fmt);
	vsnprintf(args, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (err != NULL) {
		int fd;

		snprintf(errpath, sizeof(errpath), "/tmp/pspace-test-stderr-XXXXXX");
		fd = mkstemp(errpath);
		assert_true(fd >= 0);
		close(fd);
	}
	n = snprintf(NULL, 0, "'%s' %s 2>%s", tool, args, err ? errpath : "&1");
	cmd = malloc((size_t)n + 1);
	assert_non_null(cmd);
	snprintf(cmd, (size_t)n + 1, "'%s' %s 2>%s", tool, args, err ? errpath : "&1");
	free(args);
	p = popen(cmd, "r");
	free(cmd);
	assert_non_null(p);
	read_all(p, out, outcap);
	st = pclose(p);
	if (err != NULL) {
		FILE *f = fopen(errpath, "r");

		assert_non_null(f);
		read_all(f, err, errcap);
		fclose(f);
		unlink(errpath);
	}
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* ---- files -------------------------------------------------------------------------- */

void fx_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	if (len > 0)
		assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

unsigned fx_flip_in_file(const char *file, const void *needle, size_t n)
{
	struct stat st;
	uint8_t *map, *hit, *first;
	unsigned count = 0;
	size_t size;
	int fd = open(file, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	size = (size_t)st.st_size;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	first = memmem(map, size, needle, n);
	assert_non_null(first);
	for (hit = first; hit != NULL; count++)
		hit = memmem(hit + 1, size - (size_t)(hit + 1 - map), needle, n);
	first[n / 2] ^= 0x40;
	munmap(map, size);
	close(fd);
	return count;
}

char fx_out[FX_OUT_CAP], fx_err[FX_OUT_CAP];

int fx_cli(const char *fmt, ...)
{
	char args[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return fx_run_tool(fx_out, sizeof(fx_out), fx_err, sizeof(fx_err), "%s", args);
}

void fx_expect_stdout(const char *needle)
{
	if (!strstr(fx_out, needle))
		fail_msg("stdout lacks \"%s\":\n%s", needle, fx_out);
}

void fx_expect_stderr(const char *needle)
{
	if (!strstr(fx_err, needle))
		fail_msg("stderr lacks \"%s\":\n%s", needle, fx_err);
}
