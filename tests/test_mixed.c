/*
 * Tests of Mixed (src/mat/mixed.c): a representation per layer, here
 * QuasiDiag, LowRank, Identity, Diag and a stored Dense of one layer. The
 * dense reference is block-diagonal, each block built here from its part's
 * definition (README, Formulas). Every operation is checked against it, the derived
 * matrices (pow, pinv, scale, product) and the merged eigenpairs too;
 * operations a part lacks fail naming the layer; persistence saves the
 * resident parts as "<name>/<layer>" and refers to the stored one.
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
#include "kref.h"
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/mat.h"

static const char *LAYERS[] = {
    "fc1 linear 4x3 bias",      /* 16: QuasiDiag */
    "fc2 linear 3x4 bias",      /* 15: LowRank */
    "emb embedding 5x2 nobias", /* 10: Identity */
    "bn norm 3 bias",           /*  6: Diag */
    "fc3 linear 2x3 nobias",    /*  6: stored Dense */
};
#define NL 5
#define D  53

static pspace_layout *layout(void)
{
	char text[512] = "";
	pspace_layout *l;

	for (int i = 0; i < NL; i++) {
		strcat(text, LAYERS[i]);
		strcat(text, "\n");
	}
	assert_int_equal(pspace_layout_parse(&l, text, "test"), 0);
	assert_int_equal(pspace_layout_dim(l), D);
	return l;
}

static pspace_layout *layer_layout(int i)
{
	pspace_layout *l;

	assert_int_equal(pspace_layout_parse(&l, LAYERS[i], "test"), 0);
	return l;
}

/* Parts and the dense reference F (block-diagonal). */
typedef struct mix {
	pspace_layout *ly;
	pspace_mat *parts[NL];
	double *F;
} mix;

/* Copies the n x n block B into F at offset off. */
static void put_block(double *F, size_t off, size_t n, const double *B)
{
	for (size_t i = 0; i < n; i++)
		memcpy(F + (off + i) * D + off, B + i * n, n * sizeof(*F));
}

/* A Diag part with entries in [lo, lo + 1) and its block. */
static pspace_mat *make_diag(int i, uint64_t seed, double lo, double *B)
{
	pspace_layout *l = layer_layout(i);
	size_t n = pspace_layout_dim(l);
	double *v = fx_randv(n, seed);
	pspace_mat *m;

	memset(B, 0, n * n * sizeof(*B));
	for (size_t j = 0; j < n; j++) {
		v[j] = lo + 0.5 + 0.5 * v[j];
		B[j * n + j] = v[j];
	}
	assert_int_equal(pspace_diag_create(&m, l, v), 0);
	free(v);
	pspace_layout_free(l);
	return m;
}

/* A LowRank part of r rows and its block D^T D. */
static pspace_mat *make_lowrank(int i, uint64_t seed, size_t r, double *B)
{
	pspace_layout *l = layer_layout(i);
	size_t n = pspace_layout_dim(l);
	double *Dm = fx_randv(r * n, seed);
	pspace_mat *m;

	memset(B, 0, n * n * sizeof(*B));
	for (size_t k = 0; k < r; k++)
		for (size_t a = 0; a < n; a++)
			for (size_t b = 0; b < n; b++)
				B[a * n + b] += Dm[k * n + a] * Dm[k * n + b];
	assert_int_equal(pspace_lowrank_create(&m, l, r, Dm, n), 0);
	free(Dm);
	pspace_layout_free(l);
	return m;
}

/* A QuasiDiag part (diagonal in [1, 2), bias [3, 4), cross terms small) and its block. */
static pspace_mat *make_quasidiag(int i, uint64_t seed, double *B)
{
	pspace_layout *l = layer_layout(i);
	const pspace_layer *L = pspace_layout_layer(l, 0);
	size_t n = L->size, out = L->shape[0], in = L->weight_size / out;
	double *v = fx_randv(n, seed), *c = fx_randv(out * in, seed + 1);
	const double *cr[1] = {c};
	pspace_mat *m;

	memset(B, 0, n * n * sizeof(*B));
	for (size_t j = 0; j < n; j++)
		v[j] = 1.5 + 0.5 * v[j] + (j >= L->weight_size ? 2 : 0);
	for (size_t o = 0; o < out; o++)
		for (size_t j = 0; j < in; j++) {
			size_t w = o * in + j, b = L->weight_size + o;

			c[w] *= 0.3;
			B[w * n + b] = B[b * n + w] = c[w];
		}
	for (size_t j = 0; j < n; j++)
		B[j * n + j] = v[j];
	assert_int_equal(pspace_quasidiag_create(&m, l, v, cr), 0);
	free(c);
	free(v);
	pspace_layout_free(l);
	return m;
}

/* A stored Dense part (f64 tiles) written with the layer's layout. */
static pspace_mat *make_stored(fx_store *t, const char *name, int i, uint64_t seed, double *B)
{
	pspace_layout *l = layer_layout(i);
	size_t n = pspace_layout_dim(l);
	double *J = fx_randv(2 * n * n, seed);
	pspace_write_opts wo;
	pspace_mat *m;

	memset(B, 0, n * n * sizeof(*B));
	for (size_t x = 0; x < 2 * n; x++)
		for (size_t a = 0; a < n; a++)
			for (size_t b = 0; b < n; b++)
				B[a * n + b] += J[x * n + a] * J[x * n + b] / (double)(2 * n);
	for (size_t a = 0; a < n; a++)
		B[a * n + a] += 0.1;
	pspace_write_opts_default(&wo);
	wo.codec.dtype = PSPACE_F64;
	assert_int_equal(pspace_dense_write(t->s, name, l, n, B, n, &wo), 0);
	assert_int_equal(pspace_mat_open(&m, t->s, name), 0);
	free(J);
	pspace_layout_free(l);
	return m;
}

/* The standard five parts; the stored one lives in @p t as "F3". */
static void mix_init(mix *x, fx_store *t)
{
	double B[16 * 16];
	size_t off = 0, n;

	x->ly = layout();
	x->F = calloc(D * D, sizeof(double));
	assert_non_null(x->F);
	x->parts[0] = make_quasidiag(0, 1, B);
	put_block(x->F, off, 16, B);
	off += 16;
	x->parts[1] = make_lowrank(1, 2, 5, B);
	put_block(x->F, off, 15, B);
	off += 15;
	assert_int_equal(pspace_identity_create(&x->parts[2], 10, 0.7), 0);
	for (size_t j = 0; j < 10; j++)
		x->F[(off + j) * D + off + j] = 0.7;
	off += 10;
	x->parts[3] = make_diag(3, 4, 0.1, B);
	put_block(x->F, off, 6, B);
	off += 6;
	x->parts[4] = make_stored(t, "F3", 4, 5, B);
	n = 6;
	put_block(x->F, off, n, B);
}

static void mix_free(mix *x)
{
	for (int i = 0; i < NL; i++)
		pspace_mat_free(x->parts[i]);
	free(x->F);
	pspace_layout_free(x->ly);
}

static void test_mixed_ops(void **state)
{
	fx_store t;
	mix x;
	pspace_mat *m;

	(void)state;
	fx_store_open(&t, "mixed");
	mix_init(&x, &t);
	assert_int_equal(pspace_mixed_create(&m, x.ly, x.parts), 0);
	assert_int_equal(pspace_mat_kind(m), PSPACE_KIND_MIXED);
	assert_int_equal(pspace_mat_dim(m), D);
	for (int i = 0; i < NL; i++)
		assert_ptr_equal(pspace_mixed_part(m, i), x.parts[i]);
	assert_null(pspace_mixed_part(m, NL));
	assert_null(pspace_mixed_part(x.parts[0], 0));
	assert_null(pspace_mixed_part(NULL, 0));
	fref_check_ops(m, x.F, D, 1e-12);
	fref_check_solve(m, x.F, D, 0.2, 1e-11);
	fref_check_solve(m, x.F, D, 1.5, 1e-11);
	pspace_mat_free(m);
	mix_free(&x);
	fx_store_close(&t);
}

/* Operations a part lacks fail naming its layer. */
static int implicit_mv(void *ud, const double *xv, double *y)
{
	(void)ud;
	for (size_t i = 0; i < 6; i++)
		y[i] = 2 * xv[i];
	return 0;
}

static void test_mixed_unsupported(void **state)
{
	fx_store t;
	mix x;
	pspace_mat *m, *r, *imp, *save4;
	double ev[3], B[D], X[D];

	(void)state;
	fx_store_open(&t, "mixed");
	mix_init(&x, &t);
	assert_int_equal(pspace_mixed_create(&m, x.ly, x.parts), 0);
	assert_int_equal(pspace_mat_inverse(&r, m, 0.1), PSPACE_ENOTSUP);
	assert_null(r);
	assert_non_null(strstr(pspace_errdetail(), "layer fc1"));
	assert_int_equal(pspace_mat_eig(m, NULL, 3, ev, NULL, 0), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer emb"));
	assert_int_equal(pspace_mat_eigvals(m, NULL, B), PSPACE_ENOTSUP);
	assert_int_equal(pspace_mat_scale(&r, m, 2), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer emb"));
	pspace_mat_free(m);
	/* An Implicit part: mv-based operations work, a direct solve does not. */
	assert_int_equal(pspace_implicit_create(&imp, 6, implicit_mv, NULL, NULL), 0);
	save4 = x.parts[4];
	x.parts[4] = imp;
	assert_int_equal(pspace_mixed_create(&m, x.ly, x.parts), 0);
	x.parts[4] = save4;
	pspace_mat_free(imp);
	for (size_t i = 0; i < D; i++)
		B[i] = 1;
	assert_int_equal(pspace_mat_mv(m, NULL, B, X), 0);
	assert_true(X[D - 1] == 2);
	assert_int_equal(pspace_mat_solve(m, NULL, 0.1, 1, B, D, X, D), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer fc3"));
	assert_int_equal(pspace_mat_save(m, t.s, "M2"), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer fc3"));
	/* nothing left behind */
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, t.s, "M2"),
	                 PSPACE_ENOTFOUND);
	assert_int_equal(pspace_matrix_info_get(&(pspace_matrix_info){0}, t.s, "M2/fc1"),
	                 PSPACE_ENOTFOUND);
	pspace_mat_free(m);
	mix_free(&x);
	fx_store_close(&t);
}

static void test_mixed_transforms(void **state)
{
	pspace_layout *ly = layout();
	pspace_mat *pa[NL], *pb[NL], *a, *b, *r;
	double *Fa = calloc(D * D, sizeof(double)), *Fb = calloc(D * D, sizeof(double));
	double *P = malloc(D * D * sizeof(double)), B[16 * 16];
	size_t off = 0;

	(void)state;
	assert_non_null(Fa);
	assert_non_null(Fb);
	assert_non_null(P);
	/* a: Diag and full-rank LowRank parts, all with any power; b: all Diag. */
	for (int i = 0; i < NL; i++) {
		size_t n = pspace_layout_layer(ly, i)->size;

		if (i % 2)
			pa[i] = make_lowrank(i, 10 + i, n + 3, B);
		else
			pa[i] = make_diag(i, 10 + i, 0.5, B);
		put_block(Fa, off, n, B);
		pb[i] = make_diag(i, 20 + i, -0.5, B);
		put_block(Fb, off, n, B);
		off += n;
	}
	assert_int_equal(pspace_mixed_create(&a, ly, pa), 0);
	assert_int_equal(pspace_mixed_create(&b, ly, pb), 0);
	fref_check_eig(a, Fa, D, 8, 1e-10);

	assert_int_equal(pspace_mat_inverse(&r, a, 0.2), 0);
	assert_int_equal(pspace_mat_kind(r), PSPACE_KIND_MIXED);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(r, 1)), PSPACE_KIND_LOWRANK);
	fref_pow(Fa, D, -1, 0.2, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pow(&r, a, 0.5, 0), 0);
	fref_pow(Fa, D, 0.5, 0, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_pinv(&r, a, 0), 0);
	fref_pinv(Fa, D, 0, P);
	fref_check_dense(r, P, D, 1e-10);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_scale(&r, a, 3), 0);
	for (size_t i = 0; i < D * D; i++)
		P[i] = 3 * Fa[i];
	fref_check_dense(r, P, D, 1e-14);
	pspace_mat_free(r);
	/* product: parts of the same kind only */
	assert_int_equal(pspace_mat_product(&r, b, b), 0);
	kref_matmul(D, Fb, Fb, P);
	fref_check_dense(r, P, D, 1e-14);
	pspace_mat_free(r);
	assert_int_equal(pspace_mat_product(&r, a, b), PSPACE_ENOTSUP);
	assert_non_null(strstr(pspace_errdetail(), "layer fc2"));

	pspace_mat_free(b);
	pspace_mat_free(a);
	for (int i = 0; i < NL; i++) {
		pspace_mat_free(pa[i]);
		pspace_mat_free(pb[i]);
	}
	free(P);
	free(Fb);
	free(Fa);
	pspace_layout_free(ly);
}

static void test_mixed_eig(void **state)
{
	pspace_layout *ly = layout();
	pspace_mat *p[NL], *m;
	double *F = calloc(D * D, sizeof(double)), B[16 * 16];
	size_t off = 0;

	(void)state;
	assert_non_null(F);
	for (int i = 0; i < NL; i++) {
		size_t n = pspace_layout_layer(ly, i)->size;

		if (i == 0)
			p[i] = make_quasidiag(i, 31, B);
		else if (i == 1)
			p[i] = make_lowrank(i, 32, 4, B); /* 11 zero eigenvalues */
		else if (i == 4)
			p[i] = make_lowrank(i, 34, 2, B);
		else
			p[i] = make_diag(i, 30 + i, 0.2 * i, B);
		put_block(F, off, n, B);
		off += n;
	}
	assert_int_equal(pspace_mixed_create(&m, ly, p), 0);
	fref_check_eig(m, F, D, 14, 1e-10);
	fref_check_eig(m, F, D, D, 1e-10); /* every eigenpair, the null spaces included */
	pspace_mat_free(m);
	for (int i = 0; i < NL; i++)
		pspace_mat_free(p[i]);
	free(F);
	pspace_layout_free(ly);
}

static void test_mixed_persist(void **state)
{
	fx_store t;
	mix x;
	pspace_matrix_info info;
	pspace_mat *m, *o;
	double *G1 = malloc(D * D * sizeof(double)), *G2 = malloc(D * D * sizeof(double));
	double *J = fx_randv(D, 41);

	(void)state;
	assert_non_null(G1);
	assert_non_null(G2);
	fx_store_open(&t, "mixed");
	mix_init(&x, &t);
	assert_int_equal(pspace_mixed_create(&m, x.ly, x.parts), 0);
	/* The stored part belongs to this handle: no reopening in between. */
	o = fref_check_roundtrip(m, &t, "M", 0.2, 0);
	fref_check_ops(o, x.F, D, 1e-12);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 0)), PSPACE_KIND_QUASIDIAG);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 1)), PSPACE_KIND_LOWRANK);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 2)), PSPACE_KIND_IDENTITY);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 3)), PSPACE_KIND_DIAG);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 4)), PSPACE_KIND_DENSE);
	assert_string_equal(pspace_mat_name(pspace_mixed_part(o, 0)), "M/fc1");
	assert_string_equal(pspace_mat_name(pspace_mixed_part(o, 4)), "F3");
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "M/emb"), 0);
	assert_int_equal(info.kind, PSPACE_KIND_IDENTITY);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "M/fc3"), PSPACE_ENOTFOUND);
	assert_int_equal(pspace_mat_dense(m, NULL, G1, D), 0);
	pspace_mat_free(o);

	/* As a preconditioner for F + a rank-1 coupling across layers. */
	for (size_t i = 0; i < D; i++)
		for (size_t j = 0; j < D; j++)
			x.F[i * D + j] += 0.3 * J[i] * J[j];
	assert_true(fref_check_precond(m, &t, "dense", x.F, D, 0.05) <= 6);
	pspace_mat_free(m);
	mix_free(&x);

	/* A fresh handle: everything reopens by name. */
	fx_store_reopen(&t);
	assert_int_equal(pspace_mat_open(&o, t.s, "M"), 0);
	assert_int_equal(pspace_mat_dense(o, NULL, G2, D), 0);
	assert_memory_equal(G1, G2, D * D * sizeof(double));
	pspace_mat_free(o);
	/* A removed stored part: opening fails naming the layer. */
	assert_int_equal(pspace_store_remove(t.s, "F3"), 0);
	assert_int_equal(pspace_mat_open(&o, t.s, "M"), PSPACE_ENOTFOUND);
	assert_null(o);
	assert_non_null(strstr(pspace_errdetail(), "layer fc3"));
	fx_store_close(&t);
	free(J);
	free(G2);
	free(G1);
}

static void test_mixed_errors(void **state)
{
	pspace_layout *ly = layout();
	pspace_mat *p[NL], *m = (pspace_mat *)&m;
	double B[16 * 16];

	(void)state;
	for (int i = 0; i < NL; i++)
		p[i] = make_diag(i, 50 + i, 0, B);
	assert_int_equal(pspace_mixed_create(&m, NULL, p), PSPACE_EINVAL);
	assert_null(m);
	assert_int_equal(pspace_mixed_create(&m, ly, NULL), PSPACE_EINVAL);
	pspace_mat_free(p[2]);
	p[2] = make_diag(3, 1, 0, B); /* 6 parameters for emb's 10 */
	assert_int_equal(pspace_mixed_create(&m, ly, p), PSPACE_EDIM);
	assert_non_null(strstr(pspace_errdetail(), "layer emb"));
	pspace_mat_free(p[2]);
	p[2] = NULL;
	assert_int_equal(pspace_mixed_create(&m, ly, p), PSPACE_EINVAL);
	p[2] = make_diag(2, 1, 0, B);
	/* Parts are referenced, not copied: the Mixed outlives the caller's handles. */
	assert_int_equal(pspace_mixed_create(&m, ly, p), 0);
	for (int i = 0; i < NL; i++)
		pspace_mat_free(p[i]);
	assert_int_equal(pspace_mat_trace(m, NULL, B), 0);
	pspace_mat_free(m);
	pspace_layout_free(ly);
}

/*
 * The typical Mixed: EKFAC on a linear layer (equal to its KFAC before any
 * diagonal update; reference from kref's Kronecker products), Diag and
 * LowRank elsewhere.
 */
static void test_mixed_ekfac(void **state)
{
	pspace_layout *ly = layout(), *l0 = layer_layout(0);
	pspace_mat *p[NL], *kf, *m, *o;
	double *F = calloc(D * D, sizeof(double)), B[16 * 16], A[4 * 4], G[4 * 4];
	double *Ap[1] = {A}, *Gp[1] = {G};
	const double *Ac[1] = {A}, *Gc[1] = {G};
	fx_store t;
	size_t off = 0;

	(void)state;
	assert_non_null(F);
	fx_store_open(&t, "mixed");
	kref_spd(4, 61, 0.2, A); /* a = in + 1 = 4 */
	kref_spd(4, 62, 0.3, G); /* out = 4 */
	assert_int_equal(pspace_kfac_create(&kf, l0, Ac, Gc), 0);
	assert_int_equal(pspace_ekfac_from_kfac(&p[0], kf), 0);
	pspace_mat_free(kf);
	kref_dense(l0, Ap, Gp, 0, B);
	put_block(F, 0, 16, B);
	off = 16;
	for (int i = 1; i < NL; i++) {
		size_t n = pspace_layout_layer(ly, i)->size;

		if (i == 1)
			p[i] = make_lowrank(i, 63, 4, B);
		else
			p[i] = make_diag(i, 60 + i, 0.3, B);
		put_block(F, off, n, B);
		off += n;
	}
	assert_int_equal(pspace_mixed_create(&m, ly, p), 0);
	fref_check_ops(m, F, D, 1e-11);
	fref_check_solve(m, F, D, 0.1, 1e-10);
	fref_check_eig(m, F, D, 10, 1e-10);
	o = fref_check_roundtrip(m, &t, "ME", 0.1, 1);
	assert_int_equal(pspace_mat_kind(pspace_mixed_part(o, 0)), PSPACE_KIND_EKFAC);
	pspace_mat_free(o);
	pspace_mat_free(m);
	for (int i = 0; i < NL; i++)
		pspace_mat_free(p[i]);
	fx_store_close(&t);
	free(F);
	pspace_layout_free(l0);
	pspace_layout_free(ly);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mixed_ops),        cmocka_unit_test(test_mixed_unsupported),
	    cmocka_unit_test(test_mixed_transforms), cmocka_unit_test(test_mixed_eig),
	    cmocka_unit_test(test_mixed_persist),    cmocka_unit_test(test_mixed_errors),
	    cmocka_unit_test(test_mixed_ekfac),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
