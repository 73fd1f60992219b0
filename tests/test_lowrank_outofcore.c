/*
 * Out-of-core LowRank test: a LowRank built from R = 256 gradient rows of
 * d = 131072 parameters (f64 tiles, stored raw: 256 MiB, 4x the cap) gives,
 * under a cgroup memory cap that also bounds the page cache and within a
 * 16 MiB budget, the same products (k = 4), vTMv, trace, diagonal, top
 * eigenpairs, damped solve, log determinant and diagonal of the inverse as
 * float64 references computed here from the same rows with BLAS and
 * LAPACK: F X = D^T (D X), trace ||D||_F^2, column sums of squares,
 * dsyev of D D^T (eigenvectors checked by their residual ||F v - lambda
 * v||), the solve by Woodbury with a Cholesky factor (dposv) and its
 * residual, log det 2 sum log L_ii + (d - R) log l, and the diagonal of
 * the inverse as (1 - ||L^-1 D e_i||^2) / l (dtrsm).
 *
 * The rows D = J / sqrt(n) (J Gaussian, column blocks over three decades
 * of scale) come from a seeded generator: the parent builds the matrix,
 * frees them, runs the capped child (which hands its results back in
 * shared memory), then makes them again for the references.
 *
 * Needs root and a cgroup v1 memory controller; skipped (with the reason)
 * otherwise, and under AddressSanitizer.
 */
#define BLIS_DISABLE_BLAS_DEFS /* its BLAS prototypes clash with lapacke.h */
#include <blis.h>
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "memcap.h"
#include "pspace.h"

#define MIB    ((uint64_t)1 << 20)
#define CAP    (64 * MIB)
#define BUDGET (16 * MIB)
#define R      256
#define DIM    131072
#define NRHS   4
#define NEIG   4
#define DAMP   1.0
#define SEED   31

#define CHECK(cond, ...) MEMCAP_CHECK("lowrank-out-of-core", cond, __VA_ARGS__)

/* What the child is given and hands back (shared memory). */
typedef struct shared {
	uint64_t tiles_read;
	double seconds, peak, group;
	double trace, logdet;
	double vtmv[NRHS];
	double evals[NEIG];
	/* each NRHS x d or d: X, F X, solution, diag, diaginv, then NEIG x d eigenvectors */
	double data[];
} shared;

static char store_dir[64];

static double *sh_x(shared *sh)
{
	return sh->data;
}
static double *sh_y(shared *sh)
{
	return sh->data + NRHS * DIM;
}
static double *sh_sol(shared *sh)
{
	return sh->data + 2 * NRHS * DIM;
}
static double *sh_diag(shared *sh)
{
	return sh->data + 3 * NRHS * DIM;
}
static double *sh_dinv(shared *sh)
{
	return sh->data + 3 * NRHS * DIM + DIM;
}
static double *sh_evec(shared *sh)
{
	return sh->data + 3 * NRHS * DIM + 2 * DIM;
}

/* J (R x DIM): Gaussian, column blocks scaled over three decades as layers of gradients. */
static double *rows_make(void)
{
	double *J = fx_randv((size_t)R * DIM, SEED);

	assert_non_null(J);
	for (uint64_t i = 0; i < R; i++)
		for (uint64_t p = 0; p < DIM; p++)
			J[i * DIM + p] *= pow(10.0, -(double)(p * 4 / DIM) / 2.0);
	return J;
}

static int rows_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	const double *J = ud;

	for (uint64_t x = 0; x < nx; x++)
		memcpy(out + x * ld, J + (x0 + x) * DIM, DIM * sizeof(*out));
	return 0;
}

/* memcap_run's entry point in the capped child: every operation within BUDGET. */
static void child(void *ud, const char *cgroup)
{
	shared *sh = ud;
	pspace_exec ex = {2, BUDGET};
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	double t0;
	int rc;

	CHECK(memcap_sampler_start() == 0, "sampler");
	t0 = memcap_now();
	rc = pspace_store_open(&s, store_dir, NULL);
	CHECK(rc == 0, "open store %s: %s", store_dir, pspace_strerror(rc));
	rc = pspace_mat_open(&m, s, "L");
	CHECK(rc == 0, "open L: %s", pspace_strerror(rc));
	rc = pspace_mat_mm(m, &ex, NRHS, 1.0, sh_x(sh), DIM, 0.0, sh_y(sh), DIM);
	CHECK(rc == 0, "mm: %s", pspace_strerror(rc));
	rc = pspace_mat_vtmv_batch(m, &ex, NRHS, sh_x(sh), DIM, sh->vtmv);
	CHECK(rc == 0, "vtmv: %s", pspace_strerror(rc));
	rc = pspace_mat_trace(m, &ex, &sh->trace);
	CHECK(rc == 0, "trace: %s", pspace_strerror(rc));
	rc = pspace_mat_diag(m, &ex, sh_diag(sh));
	CHECK(rc == 0, "diag: %s", pspace_strerror(rc));
	rc = pspace_mat_eig(m, &ex, NEIG, sh->evals, sh_evec(sh), DIM);
	CHECK(rc == 0, "eig: %s", pspace_strerror(rc));
	rc = pspace_mat_solve(m, &ex, DAMP, NRHS, sh_x(sh), DIM, sh_sol(sh), DIM);
	CHECK(rc == 0, "solve: %s", pspace_strerror(rc));
	rc = pspace_mat_logdet(&sh->logdet, m, &ex, DAMP);
	CHECK(rc == 0, "logdet: %s", pspace_strerror(rc));
	rc = pspace_mat_diaginv(sh_dinv(sh), m, &ex, DAMP);
	CHECK(rc == 0, "diaginv: %s", pspace_strerror(rc));
	sh->tiles_read = pspace_store_tiles_read(s);
	pspace_mat_free(m);
	pspace_store_close(s);
	sh->seconds = memcap_now() - t0;
	sh->peak = (double)memcap_sampler_stop() / MIB;
	sh->group = (double)memcap_read(cgroup, "memory.max_usage_in_bytes") / MIB;
	fflush(stdout);
	_exit(0);
}

/*
 * C (m x n) = op(A) op(B) for row-major A (ld lda) and B (ld ldb), each
 * transposed when ta / tb is set.
 */
static void mul(int ta, int tb, uint64_t m, uint64_t n, uint64_t k, const double *A, size_t lda,
                const double *B, size_t ldb, double *C)
{
	double one = 1.0, zero = 0.0;

	bli_dgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
	          (dim_t)m, (dim_t)n, (dim_t)k, &one, (double *)A, (inc_t)lda, 1, (double *)B,
	          (inc_t)ldb, 1, &zero, C, (inc_t)n, 1);
}

/* Y (k x d) = F X = D^T (D X) for k row vectors X (k x d). */
static void ref_apply(const double *D, uint32_t k, const double *X, double *Y)
{
	double *U = malloc((size_t)k * R * sizeof(*U));

	assert_non_null(U);
	/* U^T = D X^T: U (k x R) = X D^T, then Y = U D */
	for (uint32_t j = 0; j < k; j++)
		for (uint64_t i = 0; i < R; i++) {
			double s = 0;

			for (uint64_t p = 0; p < DIM; p++)
				s += D[i * DIM + p] * X[(size_t)j * DIM + p];
			U[(size_t)j * R + i] = s;
		}
	mul(0, 0, k, DIM, R, U, R, D, DIM, Y);
	free(U);
}

static void check_against_references(shared *sh)
{
	double *D = rows_make(), *G = malloc(R * R * sizeof(double));
	double *w = malloc(R * sizeof(double)), *Y = malloc(NRHS * DIM * sizeof(double));
	double *T = malloc(NRHS * R * sizeof(double)), *L = malloc(R * R * sizeof(double));
	double tr = 0, ld = 0, err = 0, one = 1.0;
	double *dg = calloc(DIM, sizeof(double));

	assert_non_null(G);
	assert_non_null(Y);
	assert_non_null(dg);
	for (uint64_t i = 0; i < (uint64_t)R * DIM; i++)
		D[i] /= 16.0; /* 1 / sqrt(n), n = R examples */
	/* products and vTMv */
	ref_apply(D, NRHS, sh_x(sh), Y);
	assert_true(fx_relerr(sh_y(sh), Y, NRHS * DIM) < 1e-12);
	for (uint32_t j = 0; j < NRHS; j++) {
		double s = 0;

		for (uint64_t p = 0; p < DIM; p++)
			s += sh_x(sh)[j * DIM + p] * Y[j * DIM + p];
		assert_true(fx_relerr1(sh->vtmv[j], s) < 1e-12);
	}
	/* trace and diagonal */
	for (uint64_t i = 0; i < R; i++)
		for (uint64_t p = 0; p < DIM; p++) {
			tr += D[i * DIM + p] * D[i * DIM + p];
			dg[p] += D[i * DIM + p] * D[i * DIM + p];
		}
	assert_true(fx_relerr1(sh->trace, tr) < 1e-12);
	assert_true(fx_relerr(sh_diag(sh), dg, DIM) < 1e-12);
	/* eigenpairs: values from dsyev of D D^T, vectors by their residual */
	mul(0, 1, R, R, DIM, D, DIM, D, DIM, G);
	memcpy(L, G, R * R * sizeof(double));
	assert_int_equal(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', R, L, R, w), 0);
	ref_apply(D, NEIG, sh_evec(sh), Y);
	for (uint32_t i = 0; i < NEIG; i++) {
		double r2 = 0, n2 = 0;

		assert_true(fx_relerr1(sh->evals[i], w[R - 1 - i]) < 1e-10);
		for (uint64_t p = 0; p < DIM; p++) {
			double v = sh_evec(sh)[i * DIM + p], e = Y[i * DIM + p] - w[R - 1 - i] * v;

			r2 += e * e;
			n2 += v * v;
		}
		assert_true(fabs(n2 - 1.0) < 1e-10);
		assert_true(sqrt(r2) < 1e-9 * w[R - 1]);
	}
	/* Woodbury with a Cholesky factor of l I + D D^T: X = (B - D^T (l I + G)^-1 D B) / l */
	memcpy(L, G, R * R * sizeof(double));
	for (uint64_t i = 0; i < R; i++)
		L[i * R + i] += DAMP;
	assert_int_equal(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', R, L, R), 0);
	for (uint32_t j = 0; j < NRHS; j++)
		for (uint64_t i = 0; i < R; i++) {
			double s = 0;

			for (uint64_t p = 0; p < DIM; p++)
				s += D[i * DIM + p] * sh_x(sh)[j * DIM + p];
			T[i * NRHS + j] = s; /* R x NRHS */
		}
	assert_int_equal(LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', R, NRHS, L, R, T, NRHS), 0);
	mul(1, 0, NRHS, DIM, R, T, NRHS, D, DIM, Y);
	for (uint64_t i = 0; i < NRHS * DIM; i++)
		Y[i] = (sh_x(sh)[i] - Y[i]) / DAMP;
	assert_true(fx_relerr(sh_sol(sh), Y, NRHS * DIM) < 1e-10);
	/* and its residual: (F + l I) x = b */
	ref_apply(D, NRHS, sh_sol(sh), Y);
	for (uint64_t i = 0; i < NRHS * DIM; i++)
		Y[i] += DAMP * sh_sol(sh)[i];
	assert_true(fx_relerr(Y, sh_x(sh), NRHS * DIM) < 1e-10);
	/* log det by the determinant lemma from the Cholesky factor */
	for (uint64_t i = 0; i < R; i++)
		ld += 2.0 * log(L[i * R + i]);
	ld += (double)(DIM - R) * log(DAMP);
	assert_true(fabs(sh->logdet - ld) <= 1e-10 * (fabs(ld) + 1));
	/* diag of the inverse: (1 - ||L^-1 D e_p||^2) / l, L^-1 D in place of D */
	bli_dtrsm(BLIS_LEFT, BLIS_LOWER, BLIS_NO_TRANSPOSE, BLIS_NONUNIT_DIAG, R, DIM, &one, L, R,
	          1, D, DIM, 1);
	for (uint64_t p = 0; p < DIM; p++)
		dg[p] = 1.0;
	for (uint64_t i = 0; i < R; i++)
		for (uint64_t p = 0; p < DIM; p++)
			dg[p] -= D[i * DIM + p] * D[i * DIM + p];
	for (uint64_t p = 0; p < DIM; p++) {
		dg[p] /= DAMP;
		err = fmax(err, fabs(sh_dinv(sh)[p] - dg[p]) / dg[p]);
	}
	assert_true(err < 1e-10);
	free(dg);
	free(L);
	free(T);
	free(Y);
	free(w);
	free(G);
	free(D);
}

static void test_lowrank_outofcore_under_cap(void **state)
{
	size_t shbytes = sizeof(shared) + sizeof(double) * (3 * NRHS + 2 + NEIG) * DIM;
	pspace_store *s = NULL;
	pspace_layout *layout = NULL;
	pspace_build_opts o;
	pspace_jac_source src;
	pspace_matrix_info info;
	shared *sh;
	double *J, t0;
	int st;

	(void)state;
	memcap_require("lowrank-out-of-core");
	fx_dir_make(store_dir, sizeof(store_dir), "lrooc");
	sh = mmap(NULL, shbytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, shbytes);
	{
		double *X = fx_randv(NRHS * DIM, 17);

		memcpy(sh_x(sh), X, NRHS * DIM * sizeof(double));
		free(X);
	}

	t0 = memcap_now();
	J = rows_make();
	src = (pspace_jac_source){R, 1, DIM, rows_read, J};
	pspace_build_opts_default(&o);
	o.kind = PSPACE_KIND_LOWRANK;
	o.write.codec.dtype = PSPACE_F64;
	o.write.codec.level = 0;
	o.exec.threads = 2;
	assert_int_equal(pspace_store_open(&s, store_dir, NULL), 0);
	assert_int_equal(pspace_layout_flat(&layout, DIM), 0);
	assert_int_equal(pspace_build_jacobian(s, "L", layout, &src, &o), 0);
	assert_int_equal(pspace_matrix_info_get(&info, s, "L"), 0);
	pspace_layout_free(layout);
	pspace_store_close(s);
	free(J);
	printf("lowrank-out-of-core: stored L (%d x %d rows, f64 tiles of %u) is %.1f MiB (%.1fx "
	       "the %llu MiB cap), built in %.1f s\n",
	       R, DIM, info.tile, (double)info.tile_bytes / MIB, (double)info.tile_bytes / CAP,
	       (unsigned long long)(CAP / MIB), memcap_now() - t0);
	assert_int_equal(info.nblocks, 1);
	assert_true(info.tile_bytes >= 4 * CAP);

	st = memcap_run(CAP, "lowrank-out-of-core", child, sh);
	memcap_expect_child(st, CAP);
	printf("lowrank-out-of-core: mm, vTMv, trace, diag, eig, solve, logdet, diaginv under the "
	       "cap in %.1f s: %.1f stored passes, peak %.1f MiB anonymous, group peak %.1f MiB "
	       "(cap %llu MiB, budget %llu MiB)\n",
	       sh->seconds, (double)sh->tiles_read / (double)info.tiles, sh->peak, sh->group,
	       (unsigned long long)(CAP / MIB), (unsigned long long)(BUDGET / MIB));
	check_against_references(sh);
	if (fx_dir_remove(store_dir) != 0)
		printf("lowrank-out-of-core: could not remove %s\n", store_dir);
	munmap(sh, shbytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lowrank_outofcore_under_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
