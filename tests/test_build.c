/*
 * Tests of the builders (src/build): every kind built from in-memory
 * Jacobian rows or layer tensors (sources defined here, not the npy ones)
 * against a float64 reference computed here from the same numbers:
 * F = (1/n) sum_rows r r^T, its layer blocks, its diagonal and the
 * QuasiDiag cross terms, the KFAC factors from their definitions, and the
 * EKFAC diagonal from the factors' eigenvectors (LAPACK dsyev here).
 * Out-of-core Dense (several bands; each tile written once; one source
 * pass per band), uneven batches, failing sources, a build killed with
 * SIGKILL and resumed, Mixed specifications and builds.
 */
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "build/build_impl.h"
#include "lref.h"
#include "pspace/build.h"
#include "pspace/factored.h"

/* ---- temporary stores ------------------------------------------------------- */

typedef struct tmpstore {
	char root[64];
	char path[128];
	pspace_store *s;
} tmpstore;

static void tmp_open_path(tmpstore *t)
{
	pspace_store_opts o;

	pspace_store_opts_default(&o);
	o.nosync = 1;
	assert_int_equal(pspace_store_open(&t->s, t->path, &o), 0);
}

static void tmp_open(tmpstore *t)
{
	snprintf(t->root, sizeof(t->root), "/tmp/pspace-test-build-XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->path, sizeof(t->path), "%s/s", t->root);
	tmp_open_path(t);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void tmp_close(tmpstore *t)
{
	pspace_store_close(t->s);
	nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- data ------------------------------------------------------------------------- */

static uint64_t rng_state;

static double urand(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double *randv(size_t n, uint64_t seed)
{
	double *v = malloc((n ? n : 1) * sizeof(*v));

	assert_non_null(v);
	rng_state = seed;
	for (size_t i = 0; i < n; i++)
		v[i] = urand();
	return v;
}

static pspace_layout *parse(const char *text)
{
	pspace_layout *l = NULL;

	assert_int_equal(pspace_layout_parse(&l, text, "test"), 0);
	return l;
}

/* F = (1/n) sum_rows r r^T over @p rows rows of d. */
static double *ref_gram(const double *R, uint64_t rows, uint64_t d, uint64_t n)
{
	double *F = calloc(d * d, sizeof(*F));

	assert_non_null(F);
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t i = 0; i < d; i++)
			for (uint64_t j = 0; j < d; j++)
				F[i * d + j] += R[r * d + i] * R[r * d + j] / (double)n;
	return F;
}

/* Zeroes the entries of F between different layers. */
static void keep_blocks(const pspace_layout *l, double *F)
{
	uint64_t d = pspace_layout_dim(l);

	for (uint64_t i = 0; i < d; i++)
		for (uint64_t j = 0; j < d; j++)
			if (pspace_layout_layer_of(l, i) != pspace_layout_layer_of(l, j))
				F[i * d + j] = 0;
}

static double frob_diff(const double *a, const double *b, uint64_t n)
{
	double s = 0;

	for (uint64_t i = 0; i < n; i++)
		s += (a[i] - b[i]) * (a[i] - b[i]);
	return sqrt(s);
}

static double frob(const double *a, uint64_t n)
{
	double s = 0;

	for (uint64_t i = 0; i < n; i++)
		s += a[i] * a[i];
	return sqrt(s);
}

/* The dense form of stored matrix @p name. */
static double *dense_of(pspace_store *s, const char *name, uint64_t d)
{
	pspace_mat *m = NULL;
	double *D = malloc(d * d * sizeof(*D));

	assert_non_null(D);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_dim(m), d);
	assert_int_equal(pspace_mat_dense(m, NULL, D, d), 0);
	pspace_mat_free(m);
	return D;
}

/* Relative Frobenius error of stored @p name against @p ref. */
static double rel_err(pspace_store *s, const char *name, const double *ref, uint64_t d)
{
	double *D = dense_of(s, name, d), e = frob_diff(D, ref, d * d) / frob(ref, d * d);

	free(D);
	return e;
}

/* ---- an in-memory Jacobian source --------------------------------------------------- */

typedef struct jsrc {
	uint64_t n, d;
	uint32_t K;
	double *J;        /* (K, n, d) */
	double scale;     /* rows are scale * J */
	uint64_t reads;   /* read calls */
	uint64_t passes;  /* reads at x0 = 0 */
	uint64_t fail_at; /* fail on the first read of this pass at x0 > 0 (0 = never) */
	int stop_pass;    /* pass at which to signal @p fd and wait to be killed (0 = never) */
	int fd;
} jsrc;

static int jsrc_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	jsrc *j = ud;

	j->reads++;
	if (x0 == 0)
		j->passes++;
	if (j->fail_at && j->passes == j->fail_at && x0 > 0)
		return PSPACE_EIO;
	if (j->stop_pass && (int)j->passes == j->stop_pass) {
		char c = 1;

		if (write(j->fd, &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	for (uint32_t k = 0; k < j->K; k++)
		for (uint64_t x = 0; x < nx; x++)
			for (uint64_t p = 0; p < j->d; p++)
				out[(k * nx + x) * ld + p] =
				    j->scale * j->J[(k * j->n + x0 + x) * j->d + p];
	return 0;
}

static void jsrc_init(jsrc *j, pspace_jac_source *src, uint64_t n, uint32_t K, uint64_t d,
                      uint64_t seed)
{
	memset(j, 0, sizeof(*j));
	j->n = n;
	j->K = K;
	j->d = d;
	j->scale = 1.0;
	j->J = randv(K * n * d, seed);
	/* columns of different scales */
	for (uint64_t r = 0; r < K * n; r++)
		for (uint64_t p = 0; p < d; p++)
			j->J[r * d + p] *= 1.0 + (double)(p % 7);
	src->examples = n;
	src->outputs = K;
	src->d = d;
	src->read = jsrc_read;
	src->ud = j;
}

/* Layers with and without bias, a norm layer (rows only). */
static const char *JLAYOUT = "fc1 linear 5x4 bias\n"
                             "bn  norm   5   bias\n"
                             "fc2 linear 3x5 nobias\n";
#define JD 50

static void opts_f64(pspace_build_opts *o, pspace_kind kind)
{
	pspace_build_opts_default(o);
	o->kind = kind;
	o->write.codec.dtype = PSPACE_F64;
	o->write.tile = 8;
	o->exec.threads = 2;
}

typedef struct prog {
	uint64_t total, done, calls;
} prog;

static void on_progress(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	prog *p = ud;

	(void)stage;
	p->total = total;
	p->done = done;
	p->calls++;
}

/* ---- Dense and BlockDiag ---------------------------------------------------------- */

static void test_build_dense_ram(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	pspace_matrix_info info;
	double *F;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 20, 2, JD, 1);
	F = ref_gram(j.J, 40, JD, 20);
	opts_f64(&o, PSPACE_KIND_DENSE);
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_int_equal(j.passes, 1);
	assert_int_equal(pspace_store_info(t.s, "F", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(info.tiles, 7 * 8 / 2);
	assert_true(rel_err(t.s, "F", F, JD) < 1e-13);
	/* f32 storage (the default codec) */
	o.write.codec.dtype = PSPACE_F32;
	assert_int_equal(pspace_build_jacobian(t.s, "F32", l, &src, &o), 0);
	assert_true(rel_err(t.s, "F32", F, JD) < 1e-6);
	/* the name is taken */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	free(F);
	free(j.J);
	/* d = 300 on 3 threads: column chunks of the accumulator in parallel */
	{
		pspace_layout *flat = NULL;

		assert_int_equal(pspace_layout_flat(&flat, 300), 0);
		jsrc_init(&j, &src, 10, 1, 300, 9);
		F = ref_gram(j.J, 10, 300, 10);
		o.write.codec.dtype = PSPACE_F64;
		o.write.tile = 64;
		o.exec.threads = 3;
		assert_int_equal(pspace_build_jacobian(t.s, "big", flat, &src, &o), 0);
		assert_true(rel_err(t.s, "big", F, 300) < 1e-13);
		pspace_layout_free(flat);
		free(F);
		free(j.J);
	}
	pspace_layout_free(l);
	tmp_close(&t);
}

static void test_build_dense_outofcore(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	pspace_matrix_info info;
	prog pr = {0, 0, 0};
	double *F;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 20, 2, JD, 2);
	F = ref_gram(j.J, 40, JD, 20);
	opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 20; /* one read per pass */
	/* a tile (512 B), one example (800 B) and about two tile rows of accumulator */
	o.exec.mem_budget = 512 + 2 * JD * 8 + 2 * 8 * 8 * JD;
	o.progress = on_progress;
	o.progress_ud = &pr;
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_true(j.passes >= 3);
	assert_int_equal(j.reads, j.passes);
	assert_int_equal(pr.total, j.passes * 20);
	assert_int_equal(pr.done, pr.total);
	assert_int_equal(pspace_store_info(t.s, "F", &info), 0);
	assert_int_equal(info.tiles, 28); /* each tile once */
	assert_true(rel_err(t.s, "F", F, JD) < 1e-13);
	/* a budget below one tile row: refused, nothing left behind */
	o.exec.mem_budget = 2000;
	assert_int_equal(pspace_build_jacobian(t.s, "G", l, &src, &o), PSPACE_ENOMEM);
	assert_int_equal(pspace_store_info(t.s, "G", &info), PSPACE_ENOTFOUND);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

static void test_build_blockdiag(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	double *F;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 13, 3, JD, 3);
	F = ref_gram(j.J, 39, JD, 13);
	keep_blocks(l, F);
	opts_f64(&o, PSPACE_KIND_BLOCKDIAG);
	o.write.tile = 4;
	assert_int_equal(pspace_build_jacobian(t.s, "B", l, &src, &o), 0);
	assert_int_equal(j.passes, 1);
	assert_true(rel_err(t.s, "B", F, JD) < 1e-13);
	/* out of core: blocks split over passes */
	j.passes = 0;
	o.exec.mem_budget = 128 + 3 * JD * 8 + 2 * 8 * 4 * 25;
	assert_int_equal(pspace_build_jacobian(t.s, "B2", l, &src, &o), 0);
	assert_true(j.passes >= 3);
	assert_true(rel_err(t.s, "B2", F, JD) < 1e-13);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

static void test_build_batches(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	const uint64_t sizes[3] = {1, 7, 23};
	const char *names[3] = {"b1", "b7", "bn"};
	double *F, *D[3];

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 23, 2, JD, 4);
	F = ref_gram(j.J, 46, JD, 23);
	opts_f64(&o, PSPACE_KIND_DENSE);
	for (int i = 0; i < 3; i++) {
		j.reads = 0;
		o.batch = sizes[i];
		assert_int_equal(pspace_build_jacobian(t.s, names[i], l, &src, &o), 0);
		assert_int_equal(j.reads, (23 + sizes[i] - 1) / sizes[i]);
		D[i] = dense_of(t.s, names[i], JD);
		assert_true(frob_diff(D[i], F, JD * JD) / frob(F, JD * JD) < 1e-13);
	}
	assert_true(frob_diff(D[0], D[1], JD * JD) / frob(F, JD * JD) < 1e-14);
	assert_true(frob_diff(D[0], D[2], JD * JD) / frob(F, JD * JD) < 1e-14);
	for (int i = 0; i < 3; i++)
		free(D[i]);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

/* ---- Diag, QuasiDiag, LowRank ---------------------------------------------------------- */

static void test_build_diag_quasidiag(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	double *F, *Q, *Dg;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 11, 2, JD, 5);
	F = ref_gram(j.J, 22, JD, 11);
	Dg = calloc(JD * JD, sizeof(*Dg));
	Q = calloc(JD * JD, sizeof(*Q));
	for (uint64_t p = 0; p < JD; p++)
		Dg[p * JD + p] = Q[p * JD + p] = F[p * JD + p];
	/* cross terms bias o - weight (o, j) of the layers with a bias */
	for (size_t li = 0; li < pspace_layout_nlayers(l); li++) {
		const pspace_layer *L = pspace_layout_layer(l, li);
		uint64_t out = L->shape[0], in = L->weight_size / out;

		for (uint64_t oo = 0; L->bias && oo < out; oo++)
			for (uint64_t jj = 0; jj < in; jj++) {
				uint64_t b = L->offset + L->weight_size + oo,
				         w = L->offset + oo * in + jj;

				Q[b * JD + w] = Q[w * JD + b] = F[b * JD + w];
			}
	}
	opts_f64(&o, PSPACE_KIND_DIAG);
	o.batch = 4;
	assert_int_equal(pspace_build_jacobian(t.s, "D", l, &src, &o), 0);
	assert_true(rel_err(t.s, "D", Dg, JD) < 1e-13);
	o.kind = PSPACE_KIND_QUASIDIAG;
	assert_int_equal(pspace_build_jacobian(t.s, "Q", l, &src, &o), 0);
	assert_true(rel_err(t.s, "Q", Q, JD) < 1e-13);
	o.kind = PSPACE_KIND_LOWRANK;
	assert_int_equal(pspace_build_jacobian(t.s, "L", l, &src, &o), 0);
	assert_true(rel_err(t.s, "L", F, JD) < 1e-12);
	/* LowRank beyond the budget: refused */
	o.exec.mem_budget = 22 * JD * 8 - 1;
	assert_int_equal(pspace_build_jacobian(t.s, "L2", l, &src, &o), PSPACE_ENOMEM);
	assert_non_null(strstr(pspace_errdetail(), "LowRank"));
	free(Q);
	free(Dg);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

/* ---- failures, kill and resume --------------------------------------------------------- */

static void test_build_source_fails(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	pspace_matrix_info info;
	pspace_mat *m = NULL;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 20, 2, JD, 6);
	opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 5;
	o.exec.mem_budget = 512 + 2 * JD * 8 + 2 * 8 * 8 * JD;
	j.fail_at = 2; /* second pass, second batch */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EIO);
	assert_non_null(strstr(pspace_errdetail(), "F"));
	assert_int_equal(pspace_store_info(t.s, "F", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), PSPACE_EINCOMPLETE);
	/* in RAM */
	j.passes = 0;
	j.fail_at = 1;
	o.exec.mem_budget = 0;
	assert_int_equal(pspace_build_jacobian(t.s, "G", l, &src, &o), PSPACE_EIO);
	assert_int_not_equal(pspace_mat_open(&m, t.s, "G"), 0);
	/* factored kinds leave nothing */
	j.passes = 0;
	o.kind = PSPACE_KIND_DIAG;
	assert_int_equal(pspace_build_jacobian(t.s, "D", l, &src, &o), PSPACE_EIO);
	assert_int_equal(pspace_store_info(t.s, "D", &info), PSPACE_ENOTFOUND);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

static void test_build_kill_resume(void **state)
{
	tmpstore t;
	jsrc j;
	pspace_jac_source src;
	pspace_layout *l = parse(JLAYOUT);
	pspace_build_opts o;
	pspace_matrix_info info;
	pspace_mat *m = NULL;
	int fds[2], status;
	uint64_t total;
	pid_t pid;
	double *F, *R;
	char c;

	(void)state;
	tmp_open(&t);
	jsrc_init(&j, &src, 20, 2, JD, 7);
	F = ref_gram(j.J, 40, JD, 20);
	opts_f64(&o, PSPACE_KIND_DENSE);
	o.batch = 20;
	o.exec.mem_budget = 512 + 2 * JD * 8 + 2 * 8 * 8 * JD;
	/* how many passes a whole build takes */
	assert_int_equal(pspace_build_jacobian(t.s, "ref", l, &src, &o), 0);
	total = j.passes;
	assert_true(total >= 3);
	pspace_store_close(t.s); /* no LMDB environment across fork */
	t.s = NULL;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		j.passes = 0;
		j.stop_pass = 3; /* two bands written and checkpointed */
		j.fd = fds[1];
		tmp_open_path(&t);
		pspace_build_jacobian(t.s, "F", l, &src, &o);
		_exit(2);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);
	tmp_open_path(&t);
	assert_int_equal(pspace_store_info(t.s, "F", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	assert_int_equal(pspace_mat_open(&m, t.s, "F"), PSPACE_EINCOMPLETE);
	assert_true(rel_err(t.s, "ref", F, JD) < 1e-13); /* the store is fine */
	/* without resume: refused; with: the remaining bands only */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	j.passes = 0;
	o.resume = 1;
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), 0);
	assert_int_equal(j.passes, total - 2);
	assert_int_equal(pspace_store_info(t.s, "F", &info), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	assert_int_equal(info.tiles, 28);
	R = dense_of(t.s, "ref", JD);
	assert_true(rel_err(t.s, "F", R, JD) < 1e-15);
	/* a complete matrix is not resumed */
	assert_int_equal(pspace_build_jacobian(t.s, "F", l, &src, &o), PSPACE_EEXIST);
	free(R);
	free(F);
	free(j.J);
	pspace_layout_free(l);
	tmp_close(&t);
}

/* ---- layer tensors ------------------------------------------------------------------- */

/* conv (T = 3 patches of 4), linear (T = 1), embedding (T = 2 ids). */
static const char *LLAYOUT = "c1  conv1d    3x2x2 bias\n"
                             "fc  linear    2x3   nobias\n"
                             "emb embedding 5x2   nobias\n";
#define LD 31

static void test_build_layers_rows(void **state)
{
	tmpstore t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	double *R, *F, *Dg;

	(void)state;
	assert_int_equal(pspace_layout_dim(l), LD);
	tmp_open(&t);
	lref_src_init(&ls, &src, l, 9, 2, T, 0, 11);
	R = lref_rows(&ls);
	F = ref_gram(R, 18, LD, 9);
	opts_f64(&o, PSPACE_KIND_BLOCKDIAG);
	o.batch = 4;
	assert_int_equal(pspace_build_layers(t.s, "D", l, &src, &o), 0);
	o.kind = PSPACE_KIND_DENSE;
	assert_int_equal(pspace_build_layers(t.s, "full", l, &src, &o), 0);
	assert_true(rel_err(t.s, "full", F, LD) < 1e-13);
	Dg = calloc(LD * LD, sizeof(*Dg));
	for (uint64_t p = 0; p < LD; p++)
		Dg[p * LD + p] = F[p * LD + p];
	o.kind = PSPACE_KIND_DIAG;
	assert_int_equal(pspace_build_layers(t.s, "diag", l, &src, &o), 0);
	assert_true(rel_err(t.s, "diag", Dg, LD) < 1e-13);
	keep_blocks(l, F);
	assert_true(rel_err(t.s, "D", F, LD) < 1e-13);
	/* QuasiDiag: only c1 has a bias */
	{
		const pspace_layer *L = pspace_layout_layer(l, 0);
		double *Fd = ref_gram(R, 18, LD, 9);

		for (uint64_t oo = 0; oo < 3; oo++)
			for (uint64_t jj = 0; jj < 4; jj++) {
				uint64_t b = L->weight_size + oo, w = oo * 4 + jj;

				Dg[b * LD + w] = Dg[w * LD + b] = Fd[b * LD + w];
			}
		o.kind = PSPACE_KIND_QUASIDIAG;
		assert_int_equal(pspace_build_layers(t.s, "qd", l, &src, &o), 0);
		assert_true(rel_err(t.s, "qd", Dg, LD) < 1e-13);
		free(Fd);
	}
	free(Dg);
	free(F);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	tmp_close(&t);
}

static void test_build_kfac_ekfac(void **state)
{
	tmpstore t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	pspace_mat *m = NULL;
	double *R, *K, *E;

	(void)state;
	tmp_open(&t);
	lref_src_init(&ls, &src, l, 10, 2, T, 0, 21);
	R = lref_rows(&ls);
	K = lref_kfac(&ls);
	opts_f64(&o, PSPACE_KIND_KFAC);
	o.batch = 3;
	assert_int_equal(pspace_build_layers(t.s, "K", l, &src, &o), 0);
	assert_true(rel_err(t.s, "K", K, LD) < 1e-12);
	E = lref_ekfac(&ls, R, 20);
	o.kind = PSPACE_KIND_EKFAC;
	assert_int_equal(pspace_build_layers(t.s, "E", l, &src, &o), 0);
	assert_true(rel_err(t.s, "E", E, LD) < 1e-10);
	assert_int_equal(pspace_mat_open(&m, t.s, "E"), 0);
	assert_int_equal(pspace_ekfac_is_updated(m), 1);
	pspace_mat_free(m);
	/* KFAC from Jacobian rows: not possible */
	{
		jsrc j;
		pspace_jac_source js;
		pspace_matrix_info info;
		double *E4 = malloc(LD * LD * sizeof(*E4));

		jsrc_init(&j, &js, 10, 2, LD, 1);
		memcpy(j.J, R, 20 * LD * sizeof(double));
		o.kind = PSPACE_KIND_KFAC;
		assert_int_equal(pspace_build_jacobian(t.s, "K2", l, &js, &o), PSPACE_ENOTSUP);
		/* EKFAC update from rows 2 R: S (and the matrix) times 4, in place */
		j.scale = 2.0;
		o.kind = PSPACE_KIND_EKFAC;
		assert_int_equal(pspace_build_jacobian(t.s, "E", l, &js, &o), 0);
		for (uint64_t i = 0; i < LD * LD; i++)
			E4[i] = 4 * E[i];
		assert_true(rel_err(t.s, "E", E4, LD) < 1e-10);
		assert_int_equal(pspace_store_info(t.s, "E.updating", &info), PSPACE_ENOTFOUND);
		/* the update needs an EKFAC */
		assert_int_equal(pspace_build_jacobian(t.s, "K", l, &js, &o), PSPACE_EINVAL);
		assert_int_equal(pspace_build_jacobian(t.s, "none", l, &js, &o), PSPACE_ENOTFOUND);
		free(E4);
		free(j.J);
	}
	free(E);
	free(K);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	tmp_close(&t);
}

/* Two linear layers, T = 1, every example the same input. */
static const char *SLAYOUT = "l1 linear 4x3 bias\n"
                             "l2 linear 2x4 bias\n";
#define SD 26

static void test_build_kfac_blockdiag(void **state)
{
	tmpstore t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = parse(SLAYOUT);
	const uint64_t T[2] = {1, 1};
	pspace_build_opts o;
	double *B, *K, *E, *F;

	(void)state;
	tmp_open(&t);
	/* same input: KFAC = BlockDiag */
	lref_src_init(&ls, &src, l, 12, 3, T, 1, 31);
	opts_f64(&o, PSPACE_KIND_KFAC);
	assert_int_equal(pspace_build_layers(t.s, "K", l, &src, &o), 0);
	o.kind = PSPACE_KIND_BLOCKDIAG;
	assert_int_equal(pspace_build_layers(t.s, "B", l, &src, &o), 0);
	B = dense_of(t.s, "B", SD);
	K = dense_of(t.s, "K", SD);
	assert_true(frob_diff(B, K, SD * SD) / frob(B, SD * SD) < 1e-10);
	free(B);
	free(K);
	lref_src_free(&ls);
	/* different inputs: EKFAC at least as close to BlockDiag as KFAC */
	lref_src_init(&ls, &src, l, 12, 3, T, 0, 41);
	o.kind = PSPACE_KIND_KFAC;
	assert_int_equal(pspace_build_layers(t.s, "K2", l, &src, &o), 0);
	o.kind = PSPACE_KIND_EKFAC;
	assert_int_equal(pspace_build_layers(t.s, "E2", l, &src, &o), 0);
	o.kind = PSPACE_KIND_BLOCKDIAG;
	assert_int_equal(pspace_build_layers(t.s, "B2", l, &src, &o), 0);
	B = dense_of(t.s, "B2", SD);
	K = dense_of(t.s, "K2", SD);
	E = dense_of(t.s, "E2", SD);
	{
		double *R = lref_rows(&ls);

		F = ref_gram(R, 36, SD, 12);
		keep_blocks(l, F);
		assert_true(frob_diff(B, F, SD * SD) / frob(F, SD * SD) < 1e-13);
		free(R);
	}
	assert_true(frob_diff(E, B, SD * SD) <= frob_diff(K, B, SD * SD));
	assert_true(frob_diff(K, B, SD * SD) > 1e-6); /* not trivially */
	free(F);
	free(E);
	free(K);
	free(B);
	lref_src_free(&ls);
	pspace_layout_free(l);
	tmp_close(&t);
}

/* ---- Mixed ----------------------------------------------------------------------- */

static void test_build_mixed_spec(void **state)
{
	pspace_layout *l = parse(JLAYOUT);
	pspace_kind k[3];

	(void)state;
	assert_int_equal(pspace_mixed_spec_parse("linear=ekfac;*=blockdiag", l, k), 0);
	assert_int_equal(k[0], PSPACE_KIND_EKFAC);
	assert_int_equal(k[1], PSPACE_KIND_BLOCKDIAG);
	assert_int_equal(k[2], PSPACE_KIND_EKFAC);
	/* name beats kind beats '*', whatever the order */
	assert_int_equal(pspace_mixed_spec_parse(" fc2 = diag ; linear,norm=kfac; *=dense", l, k),
	                 0);
	assert_int_equal(k[0], PSPACE_KIND_KFAC);
	assert_int_equal(k[1], PSPACE_KIND_KFAC);
	assert_int_equal(k[2], PSPACE_KIND_DIAG);
	assert_int_equal(pspace_mixed_spec_parse("linear=lowrank", l, k), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "bn"));
	assert_int_equal(pspace_mixed_spec_parse("lineer=kfac;*=diag", l, k), PSPACE_EINVAL);
	assert_non_null(strstr(pspace_errdetail(), "lineer"));
	assert_int_equal(pspace_mixed_spec_parse("*=mixed", l, k), PSPACE_EINVAL);
	assert_int_equal(pspace_mixed_spec_parse("*", l, k), PSPACE_EINVAL);
	assert_int_equal(pspace_mixed_spec_parse("", l, k), PSPACE_EINVAL);
	pspace_layout_free(l);
}

static void test_build_mixed(void **state)
{
	tmpstore t;
	lref_src ls;
	pspace_layer_source src;
	pspace_layout *l = parse(LLAYOUT);
	const uint64_t T[3] = {3, 1, 2};
	pspace_build_opts o;
	pspace_matrix_info info;
	double *R, *F, *K, *E, *M;

	(void)state;
	tmp_open(&t);
	lref_src_init(&ls, &src, l, 8, 2, T, 0, 51);
	R = lref_rows(&ls);
	F = ref_gram(R, 16, LD, 8);
	keep_blocks(l, F);
	K = lref_kfac(&ls);
	E = lref_ekfac(&ls, R, 16);
	/* c1 EKFAC, fc BlockDiag, emb Diag */
	M = calloc(LD * LD, sizeof(*M));
	for (uint64_t i = 0; i < LD; i++)
		for (uint64_t j = 0; j < LD; j++) {
			size_t li = pspace_layout_layer_of(l, i);

			if (li != pspace_layout_layer_of(l, j))
				continue;
			M[i * LD + j] = li == 0   ? E[i * LD + j]
			                : li == 1 ? F[i * LD + j]
			                          : (i == j ? F[i * LD + j] : 0);
		}
	opts_f64(&o, PSPACE_KIND_MIXED);
	o.mixed = "conv1d=ekfac;emb=diag;*=blockdiag";
	assert_int_equal(pspace_build_layers(t.s, "M", l, &src, &o), 0);
	assert_true(rel_err(t.s, "M", M, LD) < 1e-10);
	assert_int_equal(pspace_store_info(t.s, "M/fc", &info), 0);
	assert_int_equal(info.kind, PSPACE_KIND_BLOCKDIAG);
	/* KFAC everywhere through Mixed equals KFAC */
	o.mixed = "*=kfac";
	assert_int_equal(pspace_build_layers(t.s, "MK", l, &src, &o), 0);
	assert_true(rel_err(t.s, "MK", K, LD) < 1e-12);
	/* from Jacobian rows: no KFAC parts, the others work */
	{
		jsrc j;
		pspace_jac_source js;

		jsrc_init(&j, &js, 8, 2, LD, 1);
		memcpy(j.J, R, 16 * LD * sizeof(double));
		assert_int_equal(pspace_build_jacobian(t.s, "MJ", l, &js, &o), PSPACE_ENOTSUP);
		assert_int_equal(pspace_store_info(t.s, "MJ", &info), PSPACE_ENOTFOUND);
		o.mixed = "c1=dense;fc=lowrank;*=blockdiag";
		assert_int_equal(pspace_build_jacobian(t.s, "MJ", l, &js, &o), 0);
		assert_true(rel_err(t.s, "MJ", F, LD) < 1e-12);
		free(j.J);
	}
	free(M);
	free(E);
	free(K);
	free(F);
	free(R);
	lref_src_free(&ls);
	pspace_layout_free(l);
	tmp_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_dense_ram),
	    cmocka_unit_test(test_build_dense_outofcore),
	    cmocka_unit_test(test_build_blockdiag),
	    cmocka_unit_test(test_build_batches),
	    cmocka_unit_test(test_build_diag_quasidiag),
	    cmocka_unit_test(test_build_source_fails),
	    cmocka_unit_test(test_build_kill_resume),
	    cmocka_unit_test(test_build_layers_rows),
	    cmocka_unit_test(test_build_kfac_ekfac),
	    cmocka_unit_test(test_build_kfac_blockdiag),
	    cmocka_unit_test(test_build_mixed_spec),
	    cmocka_unit_test(test_build_mixed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
