/*
 * Kronecker-factored layer blocks (kron.h): layer geometry with the bias
 * column permutation, gathering a layer's parameters into V matrices and
 * back, the products R V C^T and U_R [W .* (U_R^T V U_C)] U_C^T for many
 * vectors at once, factor eigendecompositions, damping, eigenvalue
 * selection.
 */
#include <blis.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "mat/kron/kron.h"

int pspace_kron_geometry(const pspace_layout *layout, const char *what, pspace_kron_layer **out,
                         size_t *n)
{
	size_t nl = pspace_layout_nlayers(layout);
	pspace_kron_layer *g;
	int rc = 0;

	*out = NULL;
	*n = 0;
	g = calloc(nl ? nl : 1, sizeof(*g));
	if (!g)
		return pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < nl; i++) {
		const pspace_layer *L = pspace_layout_layer(layout, i);

		g[i].name = L->name;
		g[i].off = L->offset;
		g[i].wsize = L->weight_size;
		switch (L->kind) {
		case PSPACE_LAYER_LINEAR:
		case PSPACE_LAYER_CONV1D:
		case PSPACE_LAYER_CONV2D:
			g[i].nr = L->shape[0];
			g[i].in = L->shape[0] ? L->weight_size / L->shape[0] : 0;
			g[i].bias = L->bias;
			g[i].nc = g[i].in + (L->bias ? 1 : 0);
			break;
		case PSPACE_LAYER_EMBEDDING:
			if (L->bias) {
				rc = pspace_err_set(PSPACE_ENOTSUP,
				                    "layer %s: %s has no form for an embedding "
				                    "with a bias",
				                    L->name, what);
				goto out;
			}
			g[i].nr = L->shape[0];
			g[i].nc = g[i].in = L->shape[1];
			g[i].rdiag = 1;
			break;
		default:
			rc = pspace_err_set(PSPACE_ENOTSUP,
			                    "layer %s: %s has no form for a %s layer (use Mixed)",
			                    L->name, what, pspace_layer_kind_name(L->kind));
			goto out;
		}
	}
out:
	if (rc != 0) {
		free(g);
		return rc;
	}
	*out = g;
	*n = nl;
	return 0;
}

void pspace_kron_gather(const pspace_kron_layer *g, uint32_t k, const double *X, size_t ldx,
                        double *B)
{
	uint64_t nc = g->nc, in = g->in;

	for (uint64_t o = 0; o < g->nr; o++)
		for (uint32_t j = 0; j < k; j++) {
			const double *x = X + (size_t)j * ldx;
			double *b = B + (o * k + j) * nc;

			memcpy(b, x + o * in, in * sizeof(*b));
			if (g->bias)
				b[in] = x[g->wsize + o];
		}
}

void pspace_kron_scatter(const pspace_kron_layer *g, uint32_t k, double alpha, const double *B,
                         int add, double *Y, size_t ldy)
{
	uint64_t nc = g->nc, in = g->in;

	for (uint64_t o = 0; o < g->nr; o++)
		for (uint32_t j = 0; j < k; j++) {
			double *y = Y + (size_t)j * ldy;
			const double *b = B + (o * k + j) * nc;

			if (add) {
				for (uint64_t c = 0; c < in; c++)
					y[o * in + c] += alpha * b[c];
				if (g->bias)
					y[g->wsize + o] += alpha * b[in];
			} else {
				for (uint64_t c = 0; c < in; c++)
					y[o * in + c] = alpha * b[c];
				if (g->bias)
					y[g->wsize + o] = alpha * b[in];
			}
		}
}

void pspace_kron_gemm(int transa, int transb, uint64_t m, uint64_t n, uint64_t kk, double alpha,
                      const double *A, uint64_t lda, const double *B, uint64_t ldb, double beta,
                      double *C, uint64_t ldc, int threads)
{
	rntm_t rn;

	if (m == 0 || n == 0)
		return;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(threads > 0 ? threads : 1, &rn);
	bli_dgemm_ex(transa ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
	             transb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)kk,
	             &alpha, (double *)A, (inc_t)lda, 1, (double *)B, (inc_t)ldb, 1, &beta, C,
	             (inc_t)ldc, 1, NULL, &rn);
}

void pspace_kron_mul(const pspace_kron_layer *g, uint32_t k, const double *R, const double *C,
                     double *B, double *T, int threads)
{
	uint64_t nr = g->nr, nc = g->nc, w = (uint64_t)k * nc;

	/* T = [V_j C^T] stacked, then B = R T side by side. */
	pspace_kron_gemm(0, 1, nr * k, nc, nc, 1.0, B, nc, C, nc, 0.0, T, nc, threads);
	if (g->rdiag) {
		for (uint64_t o = 0; o < nr; o++)
			for (uint64_t c = 0; c < w; c++)
				B[o * w + c] = R[o] * T[o * w + c];
		return;
	}
	pspace_kron_gemm(0, 0, nr, w, nr, 1.0, R, nr, T, w, 0.0, B, w, threads);
}

void pspace_kron_to_basis(const pspace_kron_layer *g, uint32_t k, const double *UR,
                          const double *UC, double *B, double *T, int threads)
{
	uint64_t nr = g->nr, nc = g->nc, w = (uint64_t)k * nc;

	pspace_kron_gemm(0, 0, nr * k, nc, nc, 1.0, B, nc, UC, nc, 0.0, T, nc, threads);
	if (!UR) {
		memcpy(B, T, nr * w * sizeof(*B));
		return;
	}
	pspace_kron_gemm(1, 0, nr, w, nr, 1.0, UR, nr, T, w, 0.0, B, w, threads);
}

void pspace_kron_eig_mul(const pspace_kron_layer *g, uint32_t k, const double *UR, const double *UC,
                         const double *W, double *B, double *T, int threads)
{
	uint64_t nr = g->nr, nc = g->nc, w = (uint64_t)k * nc;

	pspace_kron_to_basis(g, k, UR, UC, B, T, threads);
	for (uint64_t o = 0; o < nr; o++)
		for (uint32_t j = 0; j < k; j++) {
			double *b = B + (o * k + j) * nc;
			const double *s = W + o * nc;

			for (uint64_t c = 0; c < nc; c++)
				b[c] *= s[c];
		}
	pspace_kron_gemm(0, 1, nr * k, nc, nc, 1.0, B, nc, UC, nc, 0.0, T, nc, threads);
	if (!UR) {
		memcpy(B, T, nr * w * sizeof(*B));
		return;
	}
	pspace_kron_gemm(0, 0, nr, w, nr, 1.0, UR, nr, T, w, 0.0, B, w, threads);
}

uint32_t pspace_kron_chunk(const pspace_kron_layer *g, size_t n, uint32_t k, int bufs,
                           size_t budget)
{
	uint64_t big = 1, c;

	for (size_t l = 0; l < n; l++)
		if (g[l].nr * g[l].nc > big)
			big = g[l].nr * g[l].nc;
	c = budget / ((uint64_t)bufs * big * sizeof(double));
	if (c < 1)
		c = 1;
	return c < k ? (uint32_t)c : k;
}

int pspace_kron_work(const pspace_kron_layer *g, size_t n, uint32_t k, size_t budget,
                     const char *what, uint32_t *kc, double **B, double **T)
{
	uint64_t big = 1;

	*kc = pspace_kron_chunk(g, n, k, 2, budget);
	for (size_t l = 0; l < n; l++)
		if (g[l].nr * g[l].nc > big)
			big = g[l].nr * g[l].nc;
	*B = malloc(big * *kc * sizeof(double));
	*T = malloc(big * *kc * sizeof(double));
	if (!*B || !*T) {
		free(*B);
		free(*T);
		*B = *T = NULL;
		return pspace_err_set(PSPACE_ENOMEM, "%s: out of memory for %u vectors", what, *kc);
	}
	return 0;
}

int pspace_kron_apply(const pspace_kron_layer *geo, size_t n, const pspace_exec *ex,
                      const char *what, uint32_t k, const double *X, size_t ldx, double alpha,
                      int add, double *Y, size_t ldy, pspace_kron_chunk_fn op, void *ud)
{
	double *B, *T;
	uint32_t kc;
	int rc = pspace_kron_work(geo, n, k, ex->mem_budget, what, &kc, &B, &T);

	if (rc != 0)
		return rc;
	for (size_t l = 0; l < n; l++) {
		const pspace_kron_layer *g = &geo[l];

		for (uint32_t j0 = 0; j0 < k; j0 += kc) {
			uint32_t kk = k - j0 < kc ? k - j0 : kc;

			pspace_kron_gather(g, kk, X + (size_t)j0 * ldx + g->off, ldx, B);
			op(ud, g, l, kk, B, T, ex->threads);
			pspace_kron_scatter(g, kk, alpha, B, add, Y + (size_t)j0 * ldy + g->off,
			                    ldy);
		}
	}
	free(T);
	free(B);
	return 0;
}

void pspace_kron_eig_chunk(void *ud, const pspace_kron_layer *g, size_t l, uint32_t k, double *B,
                           double *T, int threads)
{
	const pspace_kron_eig_form *f = ud;

	pspace_kron_eig_mul(g, k, f->UR[l], f->UC[l], f->W[l], B, T, threads);
}

int pspace_kron_new_pair(size_t n, const char *what, double ***R, double ***C)
{
	*R = pspace_kron_new_ptrs(n);
	*C = pspace_kron_new_ptrs(n);
	if (*R && *C)
		return 0;
	free(*R);
	free(*C);
	*R = *C = NULL;
	return pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", what);
}

void pspace_kron_trsm(int right, int trans, uint64_t m, uint64_t n, const double *L, uint64_t ldl,
                      double *B, uint64_t ldb, int threads)
{
	double one = 1.0;
	rntm_t rn;

	if (m == 0 || n == 0)
		return;
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(threads > 0 ? threads : 1, &rn);
	bli_dtrsm_ex(right ? BLIS_RIGHT : BLIS_LEFT, BLIS_LOWER,
	             trans ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, BLIS_NONUNIT_DIAG, (dim_t)m,
	             (dim_t)n, &one, (double *)L, (inc_t)ldl, 1, B, (inc_t)ldb, 1, NULL, &rn);
}

int pspace_kron_damp_split(const pspace_kron_layer *g, pspace_kfac_damping mode, double damping,
                           double tr_r, double tr_c, double *cr, double *cc)
{
	double tr_a = g->rdiag ? tr_r : tr_c, tr_g = g->rdiag ? tr_c : tr_r;
	double dim_a = (double)(g->rdiag ? g->nr : g->nc),
	       dim_g = (double)(g->rdiag ? g->nc : g->nr);
	double pi = 1.0, sl, ca, cg;

	if (!(damping >= 0))
		return pspace_err_set(
		    PSPACE_EINVAL,
		    "layer %s: damping %g: factor-wise (pi or sqrt) damping needs "
		    "damping >= 0",
		    g->name, damping);
	if (mode == PSPACE_KFAC_DAMP_PI && tr_a != 0 && tr_g != 0) {
		double r = (tr_a / dim_a) / (tr_g / dim_g);

		if (r > 0 && isfinite(r))
			pi = sqrt(r);
	}
	sl = sqrt(damping);
	ca = pi * sl;
	cg = sl / pi;
	*cr = g->rdiag ? ca : cg;
	*cc = g->rdiag ? cg : ca;
	return 0;
}

/* ---- eigenvalue selection ------------------------------------------------------ */

typedef struct eig_entry {
	double v;
	size_t layer;
	uint64_t p, q;
} eig_entry;

/* Min-heap on v: the root is the smallest of the k kept. */
static void heap_down(eig_entry *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		eig_entry t;

		if (l < n && h[l].v < h[m].v)
			m = l;
		if (r < n && h[r].v < h[m].v)
			m = r;
		if (m == i)
			return;
		t = h[i], h[i] = h[m], h[m] = t;
		i = m;
	}
}

static void heap_up(eig_entry *h, uint32_t i)
{
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		eig_entry t;

		if (h[p].v <= h[i].v)
			return;
		t = h[i], h[i] = h[p], h[p] = t;
		i = p;
	}
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

static int entry_desc(const void *a, const void *b)
{
	return cmp_desc(&((const eig_entry *)a)->v, &((const eig_entry *)b)->v);
}

int pspace_kron_eig_top(const pspace_kron_layer *geo, size_t n, uint64_t d, const double *const *UR,
                        const double *const *UC, const double *const *W, uint32_t k, double *evals,
                        double *evecs, size_t ld)
{
	eig_entry *h = malloc((size_t)k * sizeof(*h));
	uint32_t m = 0;

	if (!h)
		return pspace_err_set(PSPACE_ENOMEM, "eig: out of memory for %u eigenpairs", k);
	for (size_t l = 0; l < n; l++)
		for (uint64_t p = 0; p < geo[l].nr; p++)
			for (uint64_t q = 0; q < geo[l].nc; q++) {
				eig_entry e = {W[l][p * geo[l].nc + q], l, p, q};

				if (m < k) {
					h[m] = e;
					heap_up(h, m++);
				} else if (e.v > h[0].v) {
					h[0] = e;
					heap_down(h, m, 0);
				}
			}
	qsort(h, m, sizeof(*h), entry_desc);
	for (uint32_t i = 0; i < m; i++) {
		const pspace_kron_layer *g = &geo[h[i].layer];
		const double *ur = UR[h[i].layer], *uc = UC[h[i].layer];
		double *v;

		evals[i] = h[i].v;
		if (!evecs)
			continue;
		v = evecs + (size_t)i * ld;
		memset(v, 0, d * sizeof(*v));
		for (uint64_t o = 0; o < g->nr; o++) {
			double a = ur ? ur[o * g->nr + h[i].p] : (o == h[i].p ? 1.0 : 0.0);

			if (a == 0)
				continue;
			for (uint64_t c = 0; c < g->nc; c++)
				v[g->off + pspace_kron_index(g, o, c)] = a * uc[c * g->nc + h[i].q];
		}
	}
	free(h);
	return 0;
}

int pspace_kron_eig_all(const pspace_kron_layer *geo, size_t n, uint64_t d, const double *const *W,
                        double *evals)
{
	uint64_t i = 0;

	for (size_t l = 0; l < n; l++) {
		uint64_t c = geo[l].nr * geo[l].nc;

		memcpy(evals + i, W[l], c * sizeof(*evals));
		i += c;
	}
	qsort(evals, d, sizeof(*evals), cmp_desc);
	return 0;
}

/* Square blocks of the transposed walks below: M[i][j] against M[j][i] stays in cache. */
#define SYM_BLOCK 64

double pspace_kron_asym(uint64_t n, const double *M)
{
	double big = 0, diff = 0;

	for (uint64_t i0 = 0; i0 < n; i0 += SYM_BLOCK)
		for (uint64_t j0 = i0; j0 < n; j0 += SYM_BLOCK) {
			uint64_t i1 = i0 + SYM_BLOCK < n ? i0 + SYM_BLOCK : n;
			uint64_t j1 = j0 + SYM_BLOCK < n ? j0 + SYM_BLOCK : n;

			for (uint64_t i = i0; i < i1; i++)
				for (uint64_t j = j0 > i ? j0 : i; j < j1; j++) {
					double a = fabs(M[i * n + j]), b = fabs(M[j * n + i]);
					double e = fabs(M[i * n + j] - M[j * n + i]);

					big = a > big ? a : big;
					big = b > big ? b : big;
					diff = e > diff ? e : diff;
				}
		}
	return big > 0 ? diff / big : 0;
}

void pspace_kron_symmetrize(uint64_t n, double *M)
{
	for (uint64_t i0 = 0; i0 < n; i0 += SYM_BLOCK)
		for (uint64_t j0 = i0; j0 < n; j0 += SYM_BLOCK) {
			uint64_t i1 = i0 + SYM_BLOCK < n ? i0 + SYM_BLOCK : n;
			uint64_t j1 = j0 + SYM_BLOCK < n ? j0 + SYM_BLOCK : n;

			for (uint64_t i = i0; i < i1; i++)
				for (uint64_t j = j0 > i + 1 ? j0 : i + 1; j < j1; j++) {
					double v = 0.5 * (M[i * n + j] + M[j * n + i]);

					M[i * n + j] = M[j * n + i] = v;
				}
		}
}

/* ---- factors on several threads ----------------------------------------------------- */

typedef struct each_run {
	pthread_mutex_t mu;
	size_t next, n;
	const size_t *order;
	pspace_kron_task_fn fn;
	void *ud;
	int *rc;    /* per task */
	char **msg; /* per failed task: its detail message (NULL if out of memory) */
} each_run;

static void *each_worker(void *arg)
{
	each_run *r = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&r->mu);
		i = r->next < r->n ? r->order[r->next++] : r->n;
		pthread_mutex_unlock(&r->mu);
		if (i == r->n)
			break;
		r->rc[i] = r->fn(r->ud, i);
		if (r->rc[i] != 0)
			r->msg[i] = strdup(pspace_errdetail());
	}
	return NULL;
}

int pspace_kron_each(size_t n, const size_t *order, int threads, pspace_kron_task_fn fn, void *ud)
{
	each_run r = {.n = n, .fn = fn, .ud = ud};
	pthread_t *tid = NULL;
	size_t *seq = NULL, started = 0, want;
	int rc = 0;

	if (n == 0)
		return 0;
	r.rc = calloc(n, sizeof(*r.rc));
	r.msg = calloc(n, sizeof(*r.msg));
	want = threads > 1 ? ((size_t)threads < n ? (size_t)threads : n) - 1 : 0;
	tid = calloc(want ? want : 1, sizeof(*tid));
	if (!order) {
		seq = malloc(n * sizeof(*seq));
		for (size_t i = 0; seq && i < n; i++)
			seq[i] = i;
		order = seq;
	}
	if (!r.rc || !r.msg || !tid || !order) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
		goto out;
	}
	r.order = order;
	pthread_mutex_init(&r.mu, NULL);
	while (started < want && pthread_create(&tid[started], NULL, each_worker, &r) == 0)
		started++;
	each_worker(&r);
	for (size_t t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	pthread_mutex_destroy(&r.mu);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (r.rc[i] != 0)
			rc = r.msg[i] ? pspace_err_set(r.rc[i], "%s", r.msg[i])
			              : pspace_err_set(r.rc[i], "out of memory");
out:
	for (size_t i = 0; r.msg && i < n; i++)
		free(r.msg[i]);
	free(seq);
	free(tid);
	free(r.msg);
	free(r.rc);
	return rc;
}

typedef struct order_entry {
	uint64_t size;
	size_t i;
} order_entry;

static int order_desc(const void *a, const void *b)
{
	const order_entry *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return x->i < y->i ? -1 : x->i > y->i;
}

void pspace_kron_order(size_t n, const uint64_t *size, size_t *order)
{
	order_entry *e = malloc((n ? n : 1) * sizeof(*e));

	if (!e) { /* the given order still decomposes every factor */
		for (size_t i = 0; i < n; i++)
			order[i] = i;
		return;
	}
	for (size_t i = 0; i < n; i++)
		e[i] = (order_entry){size[i], i};
	qsort(e, n, sizeof(*e), order_desc);
	for (size_t i = 0; i < n; i++)
		order[i] = e[i].i;
	free(e);
}

int pspace_kron_threads(const pspace_exec *ex)
{
	pspace_exec x;

	pspace_exec_resolve(ex, &x);
	return x.threads;
}

/* ---- the damped eigen form: log det, diag of the inverse, square roots ------------- */

static int not_positive(const pspace_kron_layer *g, uint64_t i, double v)
{
	return pspace_err_set(PSPACE_ENUMERIC,
	                      "layer %s: damped eigenvalue %g (entry %llu) is not positive; "
	                      "add damping",
	                      g->name, v, (unsigned long long)i);
}

int pspace_kron_logdet(const pspace_kron_layer *geo, size_t n, const double *const *W, double *out)
{
	double s = 0;

	for (size_t l = 0; l < n; l++)
		for (uint64_t i = 0; i < geo[l].nr * geo[l].nc; i++) {
			if (!(W[l][i] > 0))
				return not_positive(&geo[l], i, W[l][i]);
			s += log(W[l][i]);
		}
	*out = s;
	return 0;
}

int pspace_kron_diaginv(const pspace_kron_layer *geo, size_t n, const double *const *UR,
                        const double *const *UC, const double *const *W, double *out)
{
	int rc = 0;

	for (size_t l = 0; rc == 0 && l < n; l++) {
		const pspace_kron_layer *g = &geo[l];
		uint64_t nr = g->nr, nc = g->nc;
		double *P = pspace_kron_alloc(UR[l] ? nr * nr : 1), *Q = pspace_kron_alloc(nc * nc);
		double *V = pspace_kron_alloc(nr * nc), *D = pspace_kron_alloc(nr * nc);

		if (!P || !Q || !V || !D)
			rc = pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", g->name);
		for (uint64_t i = 0; rc == 0 && i < nr * nc; i++) {
			if (!(W[l][i] > 0))
				rc = not_positive(g, i, W[l][i]);
			else
				V[i] = 1.0 / W[l][i];
		}
		if (rc == 0) {
			/* D[o][c] = sum_ij UR[o][i]^2 V[i][j] UC[c][j]^2 */
			for (uint64_t i = 0; i < nc * nc; i++)
				Q[i] = UC[l][i] * UC[l][i];
			pspace_kron_gemm(0, 1, nr, nc, nc, 1.0, V, nc, Q, nc, 0.0, D, nc, 1);
			if (UR[l]) {
				for (uint64_t i = 0; i < nr * nr; i++)
					P[i] = UR[l][i] * UR[l][i];
				pspace_kron_gemm(0, 0, nr, nc, nr, 1.0, P, nr, D, nc, 0.0, V, nc,
				                 1);
				memcpy(D, V, nr * nc * sizeof(*D));
			}
			for (uint64_t o = 0; o < nr; o++)
				for (uint64_t c = 0; c < nc; c++)
					out[g->off + pspace_kron_index(g, o, c)] = D[o * nc + c];
		}
		free(D);
		free(V);
		free(Q);
		free(P);
	}
	return rc;
}

int pspace_kron_sqrt_weights(const pspace_kron_layer *geo, size_t n, int cov, double **W)
{
	for (size_t l = 0; l < n; l++) {
		uint64_t cnt = geo[l].nr * geo[l].nc;
		double big = 0;

		for (uint64_t i = 0; i < cnt; i++)
			big = fabs(W[l][i]) > big ? fabs(W[l][i]) : big;
		for (uint64_t i = 0; i < cnt; i++) {
			double v = W[l][i];

			if (cov && v < 0 && v >= -1e-13 * big)
				v = 0;
			if (cov ? !(v >= 0) : !(v > 0))
				return not_positive(&geo[l], i, v);
			W[l][i] = cov ? sqrt(v) : 1.0 / sqrt(v);
		}
	}
	return 0;
}
