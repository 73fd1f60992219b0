/*
 * Tests of LowRank stored as tiles (src/mat/lowrank_stored.c, built by
 * src/build/build_lowrank.c): every operation streamed (the test hook
 * PSPACE_TEST_LOWRANK_STREAM keeps small matrices from being read into
 * memory) against float64 references from the same rows: F = J^T J / n
 * dense, LU solves, dsyev eigenpairs; r < d with a padded last tile row,
 * r = d (exact solve without damping), f32 tiles, lazy expressions mixing
 * LowRank with a Dense, old tileless entries, a refused Gram matrix, and
 * a corrupt tile.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "lref.h"
#include "pspace.h"

typedef struct ref {
	lref_jsrc j;
	pspace_jac_source src;
	uint64_t d, rows;
	double *F; /* (1/n) J^T J */
} ref;

static void ref_init(ref *x, uint64_t n, uint32_t K, uint64_t d, uint64_t seed)
{
	lref_jsrc_init(&x->j, &x->src, n, K, d, seed);
	x->d = d;
	x->rows = (uint64_t)K * n;
	x->F = fref_rows_gram(x->j.J, x->rows, d, (double)n);
}

static void ref_free(ref *x)
{
	free(x->F);
	free(x->j.J);
}

/* Builds x's LowRank as @p name with tiles of @p dtype and edge @p tile, and opens it. */
static pspace_mat *build(fx_store *t, const char *name, ref *x, pspace_dtype dtype, uint32_t tile)
{
	pspace_build_opts o;
	pspace_layout *l;
	pspace_matrix_info info;
	pspace_mat *m;

	lref_opts_f64(&o, PSPACE_KIND_LOWRANK);
	o.write.codec.dtype = dtype;
	o.write.tile = tile;
	o.batch = 3;
	assert_int_equal(pspace_layout_flat(&l, x->d), 0);
	assert_int_equal(pspace_build_jacobian(t->s, name, l, &x->src, &o), 0);
	pspace_layout_free(l);
	assert_int_equal(pspace_matrix_info_get(&info, t->s, name), 0);
	assert_int_equal(info.kind, PSPACE_KIND_LOWRANK);
	assert_int_equal(info.nblocks, 1);
	assert_int_equal(info.symmetric, 0);
	assert_int_equal(info.codec.dtype, dtype);
	assert_int_equal(pspace_mat_open(&m, t->s, name), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_LOWRANK);
	return m;
}

/* inv = (F + l I)^-1 (d x d) by LU. */
static double *ref_inverse(const double *F, uint64_t d, double l)
{
	double *E = calloc(d * d, sizeof(*E)), *X = malloc(d * d * sizeof(*X));

	assert_non_null(E);
	assert_non_null(X);
	for (uint64_t i = 0; i < d; i++)
		E[i * d + i] = 1.0;
	fref_solve(F, d, l, d, E, X);
	free(E);
	return X;
}

/* log det, diag of the inverse and both square roots against the references. */
static void check_damped(pspace_mat *m, const double *F, uint64_t d, double l, double tol)
{
	double *w = malloc(d * sizeof(*w)), *inv = ref_inverse(F, d, l);
	double *dg = malloc(d * sizeof(*dg)), *S = malloc(d * d * sizeof(*S));
	double *Z = calloc(d * d, sizeof(*Z)), *P = malloc(d * d * sizeof(*P));
	double want = 0, got;

	assert_non_null(S);
	fref_eigh(F, d, w, NULL);
	for (uint64_t i = 0; i < d; i++)
		want += log(w[i] + l);
	assert_int_equal(pspace_mat_logdet(&got, m, NULL, l), 0);
	assert_true(fabs(got - want) <= tol * fabs(want) + tol);
	assert_int_equal(pspace_mat_diaginv(dg, m, NULL, l), 0);
	for (uint64_t i = 0; i < d; i++)
		w[i] = inv[i * d + i];
	assert_true(fx_relerr(dg, w, d) < tol);
	/* S = sqrt_mm(I): S S^T is F + l I (cov) or its inverse */
	for (uint64_t i = 0; i < d; i++)
		Z[i * d + i] = 1.0;
	for (int cov = 0; cov <= 1; cov++) {
		/* row j of X is S e_j, i.e. X = S^T */
		assert_int_equal(pspace_mat_sqrt_mm(S, d, m, NULL, l, cov, (uint32_t)d, Z, d), 0);
		for (uint64_t i = 0; i < d; i++)
			for (uint64_t j = 0; j < d; j++) {
				double s = 0;

				for (uint64_t k = 0; k < d; k++)
					s += S[k * d + i] * S[k * d + j];
				P[i * d + j] = s;
			}
		if (cov) {
			for (uint64_t i = 0; i < d * d; i++)
				inv[i] = F[i];
			for (uint64_t i = 0; i < d; i++)
				inv[i * d + i] += l;
		}
		assert_true(fx_relerr(P, inv, d * d) < tol);
	}
	free(P);
	free(Z);
	free(S);
	free(dg);
	free(inv);
	free(w);
}

static void test_lowrank_stored_ops(void **state)
{
	/* r < d, last tile row padded (r = 22, tile 8); one tile row; r = d */
	const struct {
		uint64_t n;
		uint32_t K;
		uint64_t d;
		uint32_t tile;
	} cs[] = {{11, 2, 45, 8}, {5, 1, 30, 16}, {12, 3, 36, 8}};
	fx_store t;

	(void)state;
	setenv("PSPACE_TEST_LOWRANK_STREAM", "1", 1);
	fx_store_open(&t, "lr");
	for (size_t c = 0; c < sizeof(cs) / sizeof(cs[0]); c++) {
		ref x;
		pspace_mat *m;
		char name[32];
		uint64_t before;
		double y[64];

		ref_init(&x, cs[c].n, cs[c].K, cs[c].d, 100 + c);
		snprintf(name, sizeof(name), "L%zu", c);
		m = build(&t, name, &x, PSPACE_F64, cs[c].tile);
		/* an mv streams the tiles twice */
		before = pspace_store_tiles_read(t.s);
		assert_int_equal(pspace_mat_mv(m, NULL, x.F, y), 0);
		assert_true(pspace_store_tiles_read(t.s) > before);
		fref_check_ops(m, x.F, x.d, 1e-11);
		fref_check_solve(m, x.F, x.d, 0.3, 1e-9);
		fref_check_solve(m, x.F, x.d, 5.0, 1e-10);
		fref_check_eig(m, x.F, x.d, (uint32_t)(x.rows < 6 ? x.rows + 2 : 6), 1e-9);
		check_damped(m, x.F, x.d, 0.25, 1e-9);
		if (x.rows == x.d) {
			/* square D: F is invertible without damping */
			fref_check_solve(m, x.F, x.d, 0.0, 1e-6);
		} else {
			assert_int_equal(pspace_mat_solve(m, NULL, 0.0, 1, x.F, x.d, y, x.d),
			                 PSPACE_ENUMERIC);
			assert_int_equal(pspace_mat_logdet(&y[0], m, NULL, 0.0), PSPACE_ENUMERIC);
		}
		pspace_mat_free(m);
		ref_free(&x);
	}
	fx_store_close(&t);
	unsetenv("PSPACE_TEST_LOWRANK_STREAM");
}

static void test_lowrank_stored_f32(void **state)
{
	fx_store t;
	ref x;
	pspace_mat *m;

	(void)state;
	setenv("PSPACE_TEST_LOWRANK_STREAM", "1", 1);
	fx_store_open(&t, "lr32");
	ref_init(&x, 20, 2, 70, 7);
	m = build(&t, "L", &x, PSPACE_F32, 16);
	fref_check_ops(m, x.F, x.d, 1e-5);
	fref_check_solve(m, x.F, x.d, 0.5, 1e-4);
	check_damped(m, x.F, x.d, 0.5, 1e-4);
	pspace_mat_free(m);
	/* the resident copy (no hook) gives the same within rounding */
	unsetenv("PSPACE_TEST_LOWRANK_STREAM");
	assert_int_equal(pspace_mat_open(&m, t.s, "L"), 0);
	fref_check_ops(m, x.F, x.d, 1e-5);
	fref_check_solve(m, x.F, x.d, 0.5, 1e-4);
	pspace_mat_free(m);
	ref_free(&x);
	fx_store_close(&t);
}

/* (L + A - 0.5 L) x and its trace through the lazy operators, A a stored Dense. */
static void test_lowrank_stored_lazy(void **state)
{
	fx_store t;
	ref x;
	pspace_mat *m, *a;
	pspace_op *ol, *oa, *sum, *half, *e;
	double *A, *C, *X, *Y, *W, tr, want = 0;
	pspace_write_opts wo;

	(void)state;
	setenv("PSPACE_TEST_LOWRANK_STREAM", "1", 1);
	fx_store_open(&t, "lazy");
	ref_init(&x, 9, 2, 40, 3);
	m = build(&t, "L", &x, PSPACE_F64, 8);
	A = fref_gram(x.d, 5, 0.1, 9);
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	wo.tile = 16;
	assert_int_equal(pspace_dense_write(t.s, "A", NULL, x.d, A, x.d, &wo), 0);
	assert_int_equal(pspace_mat_open(&a, t.s, "A"), 0);
	assert_int_equal(pspace_op_mat(&ol, m), 0);
	assert_int_equal(pspace_op_mat(&oa, a), 0);
	assert_int_equal(pspace_op_add(&sum, ol, oa), 0);
	assert_int_equal(pspace_op_scale(&half, 0.5, ol), 0);
	assert_int_equal(pspace_op_sub(&e, sum, half), 0);
	C = malloc(x.d * x.d * sizeof(*C));
	X = fx_randv(3 * x.d, 5);
	Y = calloc(3 * x.d, sizeof(*Y));
	W = malloc(3 * x.d * sizeof(*W));
	for (uint64_t i = 0; i < x.d * x.d; i++)
		C[i] = 0.5 * x.F[i] + A[i];
	for (uint64_t i = 0; i < x.d; i++)
		want += C[i * x.d + i];
	assert_int_equal(pspace_op_mm(e, NULL, 3, 1.0, X, x.d, 0.0, Y, x.d), 0);
	fref_mm(C, x.d, 3, X, W);
	assert_true(fx_relerr(Y, W, 3 * x.d) < 1e-11);
	assert_int_equal(pspace_op_trace(e, NULL, NULL, &tr), 0);
	assert_true(fx_relerr1(tr, want) < 1e-11);
	pspace_op_free(e);
	pspace_op_free(half);
	pspace_op_free(sum);
	pspace_op_free(oa);
	pspace_op_free(ol);
	pspace_mat_free(a);
	pspace_mat_free(m);
	free(W);
	free(Y);
	free(X);
	free(C);
	free(A);
	ref_free(&x);
	fx_store_close(&t);
	unsetenv("PSPACE_TEST_LOWRANK_STREAM");
}

/* D (rows x d) for pspace_lowrank_write's tiles. */
typedef struct rowsrc {
	const double *D;
	uint64_t d;
} rowsrc;

static int rows_tile(void *ud, uint64_t r0, uint64_t c0, uint32_t rows, uint32_t cols, double *tile)
{
	const rowsrc *x = ud;

	for (uint32_t i = 0; i < rows; i++)
		memcpy(tile + (size_t)i * cols, x->D + (r0 + i) * x->d + c0, cols * sizeof(*tile));
	return 0;
}

/* pspace_lowrank_write: rows from a function, tile by tile. */
static void test_lowrank_stored_write(void **state)
{
	fx_store t;
	ref x;
	rowsrc rs;
	pspace_layout *l;
	pspace_write_opts wo;
	pspace_mat *m;

	(void)state;
	setenv("PSPACE_TEST_LOWRANK_STREAM", "1", 1);
	fx_store_open(&t, "write");
	ref_init(&x, 13, 1, 50, 12);
	for (uint64_t i = 0; i < x.rows * x.d; i++)
		x.j.J[i] /= sqrt((double)x.j.n);
	rs = (rowsrc){x.j.J, x.d};
	assert_int_equal(pspace_layout_flat(&l, x.d), 0);
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	wo.tile = 8;
	assert_int_equal(pspace_lowrank_write(t.s, "W", l, x.rows, rows_tile, &rs, &wo), 0);
	assert_int_equal(pspace_mat_open(&m, t.s, "W"), 0);
	fref_check_ops(m, x.F, x.d, 1e-12);
	fref_check_solve(m, x.F, x.d, 0.5, 1e-10);
	pspace_mat_free(m);
	fx_expect_err(pspace_lowrank_write(t.s, "X", l, x.d + 1, rows_tile, &rs, &wo),
	              PSPACE_EINVAL, NULL, "rows");
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, t.s, "X"),
	                 PSPACE_ENOTFOUND);
	pspace_layout_free(l);
	ref_free(&x);
	fx_store_close(&t);
	unsetenv("PSPACE_TEST_LOWRANK_STREAM");
}

/* Tileless entries (pspace_mat_save, builds with r > d) still open as LowRank. */
static void test_lowrank_stored_tileless(void **state)
{
	fx_store t;
	ref x, y;
	pspace_layout *l;
	pspace_mat *m, *o;
	pspace_matrix_info info;
	pspace_build_opts bo;

	(void)state;
	fx_store_open(&t, "old");
	ref_init(&x, 6, 1, 20, 4);
	assert_int_equal(pspace_layout_flat(&l, x.d), 0);
	for (uint64_t i = 0; i < x.rows * x.d; i++)
		x.j.J[i] /= sqrt((double)x.j.n);
	assert_int_equal(pspace_lowrank_create(&m, l, x.rows, x.j.J, x.d), 0);
	assert_int_equal(pspace_mat_save(m, t.s, "old"), 0);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "old"), 0);
	assert_int_equal(info.nblocks, 0);
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&o, t.s, "old"), 0);
	assert_int_equal(pspace_mat_kind(o), PSPACE_KIND_LOWRANK);
	fref_check_ops(o, x.F, x.d, 1e-12);
	pspace_mat_free(o);
	pspace_mat_free(m);
	/* more rows than parameters: built as a tileless entry */
	ref_init(&y, 15, 2, 12, 5);
	lref_opts_f64(&bo, PSPACE_KIND_LOWRANK);
	assert_int_equal(pspace_build_jacobian(t.s, "wide", l, &y.src, &bo), PSPACE_EDIM);
	pspace_layout_free(l);
	assert_int_equal(pspace_layout_flat(&l, y.d), 0);
	assert_int_equal(pspace_build_jacobian(t.s, "wide", l, &y.src, &bo), 0);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "wide"), 0);
	assert_int_equal(info.nblocks, 0);
	assert_int_equal(pspace_mat_open(&o, t.s, "wide"), 0);
	fref_check_ops(o, y.F, y.d, 1e-12);
	pspace_mat_free(o);
	pspace_layout_free(l);
	ref_free(&y);
	ref_free(&x);
	fx_store_close(&t);
}

/* The Gram matrix beyond the budget is refused; a damaged tile names itself. */
static void test_lowrank_stored_errors(void **state)
{
	fx_store t;
	ref x;
	pspace_mat *m;
	pspace_exec ex = {1, 3000};
	pspace_reader *r;
	pspace_tile_ref tr;
	pspace_build_opts o;
	pspace_layout *l;
	uint8_t needle[128];
	char data[512];
	double ev[2], *y;

	(void)state;
	setenv("PSPACE_TEST_LOWRANK_STREAM", "1", 1);
	fx_store_open(&t, "err");
	ref_init(&x, 30, 1, 64, 8);
	m = build(&t, "L", &x, PSPACE_F64, 8);
	/* 30 x 30 doubles twice: 14400 bytes */
	fx_expect_err(pspace_mat_eig(m, &ex, 2, ev, NULL, 0), PSPACE_ENOMEM, NULL, "Gram");
	pspace_mat_free(m);
	fx_store_close(&t);
	/* a store of its own: its tiles' bytes are in the file once */
	fx_store_open(&t, "crp");
	/* a value beyond f32: refused, naming its row, and nothing is left */
	lref_opts_f64(&o, PSPACE_KIND_LOWRANK);
	o.write.codec.dtype = PSPACE_F32;
	x.j.scale = 1e39;
	assert_int_equal(pspace_layout_flat(&l, x.d), 0);
	fx_expect_err(pspace_build_jacobian(t.s, "big", l, &x.src, &o), PSPACE_ENUMERIC, NULL,
	              "f32 range");
	assert_non_null(strstr(pspace_errdetail(), "row "));
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, t.s, "big"),
	                 PSPACE_ENOTFOUND);
	pspace_layout_free(l);
	x.j.scale = 1.0;
	/* raw tiles (no compression), so that the bytes are in the file as written */
	lref_opts_f64(&o, PSPACE_KIND_LOWRANK);
	o.write.codec.level = 0;
	o.write.codec.shuffle = 0;
	o.write.tile = 32; /* 8 KiB: a tile of its own pages, written once */
	assert_int_equal(pspace_layout_flat(&l, x.d), 0);
	assert_int_equal(pspace_build_jacobian(t.s, "R", l, &x.src, &o), 0);
	pspace_layout_free(l);
	assert_int_equal(pspace_reader_open(&r, t.s, "R", 0), 0);
	assert_int_equal(pspace_reader_tile(&tr, r, 0, 0, 1), 0);
	memcpy(needle, (const uint8_t *)tr.data + PSPACE_TILE_HEADER_SIZE + 64, sizeof(needle));
	pspace_reader_close(r);
	pspace_store_close(t.s);
	t.s = NULL;
	snprintf(data, sizeof(data), "%s/data.mdb", t.path);
	assert_int_equal(fx_flip_in_file(data, needle, sizeof(needle)), 1);
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&m, t.s, "R"), 0);
	y = calloc(x.d, sizeof(*y));
	fx_expect_err(pspace_mat_mv(m, NULL, x.F, y), PSPACE_ECORRUPT, NULL, "(0,0,1)");
	assert_non_null(strstr(pspace_errdetail(), "matrix R"));
	fx_expect_err(pspace_mat_diaginv(y, m, NULL, 1.0), PSPACE_ECORRUPT, NULL, "(0,0,1)");
	free(y);
	pspace_mat_free(m);
	ref_free(&x);
	fx_store_close(&t);
	unsetenv("PSPACE_TEST_LOWRANK_STREAM");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lowrank_stored_ops),
	    cmocka_unit_test(test_lowrank_stored_f32),
	    cmocka_unit_test(test_lowrank_stored_lazy),
	    cmocka_unit_test(test_lowrank_stored_write),
	    cmocka_unit_test(test_lowrank_stored_tileless),
	    cmocka_unit_test(test_lowrank_stored_errors),
	};

	return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
