/*
 * bench_factored - how fast are KFAC and EKFAC products and solves on a
 * network of >= 10 million parameters, next to BLIS gemm peak?
 *
 * The layout is an MLP 1024-W-W-10 with biases (default W = 4096: fc1
 * 4096x1024, fc2 4096x4096, fc3 10x4096, d = 21.0 M parameters). Each
 * layer gets random SPD factors A (a x a, a = in + 1) and G (out x out),
 * F = X^T X / m + 1e-3 I with X (m x n) Gaussian, m = n/2 (BLIS dsyrk). On
 * the KFAC made from them (pspace_kfac_create) and the EKFAC made from that
 * (pspace_ekfac_from_kfac), products, damped solves (first call, which
 * factors, and repeated calls, which reuse the cached factorizations as a
 * CG preconditioner does) and the creation of derived matrices are timed
 * with pspace_exec {threads = all, then 1}. Each is reported in GFLOP/s
 * from a stated flop count, beside BLIS dgemm and sgemm peak (n = 2048,
 * threads through an rntm_t on the expert API) measured in the same run:
 * the ratios are the claim, the machine being a shared, noisy VM.
 *
 * A KFAC mv at W = 4096 is ~320 GFLOP (two 4096-cubed gemms per vector),
 * seconds per call on two cores, and the exact solve's first call (four
 * 4096 x 4096 dsyevd) takes over a minute: to stay near 3 minutes the
 * default run times each operation once (--reps) and the one-thread pass
 * only for KFAC mv; --all adds k = 16 and every operation at one thread
 * (about three times longer).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <blis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pspace.h"

#define PROG        "bench_factored"
#define DAMPING     1e-3
#define FACTOR_EPS  1e-3
#define PEAK_N      2048
#define MAX_K       16
#define MAX_LAYERS  3
#define INPUT_WIDTH 1024
#define EIG_WIDTH   2048 /* at most, for the factor eigendecompositions at 1 and all threads */

struct config {
	int quick, all, reps;
	uint64_t width;
	const char *json;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: " PROG " [--quick] [--width W] [--all] [--reps N] [--json FILE]\n"
	        "  --quick      a smoke run (width 512)\n"
	        "  --width W    hidden width of the MLP 1024-W-W-10 (4096: 21.0 M parameters)\n"
	        "  --all        also k = 16 and every operation with one thread (slow)\n"
	        "  --reps N     timed calls per operation (default: 1 at width >= 2048, else 3)\n"
	        "  --json FILE  also write the results as JSON\n");
}

static int parse_args(int argc, char **argv, struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->width = 4096;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->width = 512;
		} else if (strcmp(a, "--all") == 0) {
			c->all = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (v && strcmp(a, "--width") == 0) {
			c->width = strtoull(v, &end, 10);
			if (*end != '\0' || c->width < 16 || c->width > 65536) {
				fprintf(stderr, PROG ": --width must be 16..65536\n");
				return 2;
			}
			i++;
		} else if (v && strcmp(a, "--reps") == 0) {
			c->reps = (int)strtol(v, &end, 10);
			if (*end != '\0' || c->reps < 1 || c->reps > 1000) {
				fprintf(stderr, PROG ": --reps must be 1..1000\n");
				return 2;
			}
			i++;
		} else if (v && strcmp(a, "--json") == 0) {
			c->json = v;
			i++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (c->reps == 0)
		c->reps = c->width >= 2048 ? 1 : 3;
	return 0;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

/* ---- the layout and its factors ------------------------------------------------------- */

struct layer_dims {
	const char *name;
	uint64_t out, a; /* G is out x out, A is a x a */
};

/*
 * F = X^T X / m + FACTOR_EPS I, n x n, X (m x n) Gaussian with m = n/2: an
 * SPD factor of rank-deficient-plus-ridge shape, like an empirical one.
 */
static int make_factor(uint64_t n, uint64_t seed, int threads, double **out)
{
	uint64_t m = n / 2 > 0 ? n / 2 : 1;
	double *X = malloc(m * n * sizeof(*X)), *F = malloc(n * n * sizeof(*F));
	double alpha = 1.0 / (double)m, zero = 0.0;
	rntm_t rn;

	*out = NULL;
	if (!X || !F) {
		free(X);
		free(F);
		return PSPACE_ENOMEM;
	}
	pspace_vec_randn(m * n, seed, X);
	bli_rntm_init(&rn);
	bli_rntm_set_num_threads(threads, &rn);
	/* Lower triangle of X^T X (X row-major m x n, so X^T is n x m). */
	bli_dsyrk_ex(BLIS_LOWER, BLIS_TRANSPOSE, (dim_t)n, (dim_t)m, &alpha, X, (inc_t)n, 1, &zero,
	             F, (inc_t)n, 1, NULL, &rn);
	for (uint64_t i = 0; i < n; i++) {
		F[i * n + i] += FACTOR_EPS;
		for (uint64_t j = i + 1; j < n; j++)
			F[i * n + j] = F[j * n + i];
	}
	free(X);
	*out = F;
	return 0;
}

/* ---- flop counts -------------------------------------------------------------------- */

/* sum over layers of 2 out a (out + a): one vector through G V A (two gemms). */
static double flops_kron(const struct layer_dims *L, size_t n)
{
	double s = 0;

	for (size_t l = 0; l < n; l++)
		s += 2.0 * (double)L[l].out * (double)L[l].a * (double)(L[l].out + L[l].a);
	return s;
}

/* sum over layers of (out^3 + a^3) / 3: Cholesky of both damped factors. */
static double flops_chol(const struct layer_dims *L, size_t n)
{
	double s = 0;

	for (size_t l = 0; l < n; l++)
		s += (pow((double)L[l].out, 3) + pow((double)L[l].a, 3)) / 3.0;
	return s;
}

/* sum over layers of 4 (out^3 + a^3): nominal dsyevd count with vectors. */
static double flops_eig(const struct layer_dims *L, size_t n)
{
	double s = 0;

	for (size_t l = 0; l < n; l++)
		s += 4.0 * (pow((double)L[l].out, 3) + pow((double)L[l].a, 3));
	return s;
}

/* sum over layers of (out^2 + a^2) 8: the KFAC's factors in bytes. */
static double kfac_bytes(const struct layer_dims *L, size_t n)
{
	double s = 0;

	for (size_t l = 0; l < n; l++)
		s += ((double)L[l].out * (double)L[l].out + (double)L[l].a * (double)L[l].a) * 8;
	return s;
}

/* ---- timed operations ---------------------------------------------------------------- */

enum op {
	OP_KFAC_MV,
	OP_KFAC_MM,
	OP_KFAC_PI_FIRST,
	OP_KFAC_PI,
	OP_KFAC_EXACT_FIRST,
	OP_KFAC_EXACT,
	OP_EKFAC_FROM_KFAC,
	OP_EKFAC_SOLVE,
	OP_EKFAC_MV,
	OP_EKFAC_POW,
};

static const char *const op_names[] = {
    [OP_KFAC_MV] = "KFAC mv",
    [OP_KFAC_MM] = "KFAC mm",
    [OP_KFAC_PI_FIRST] = "KFAC solve, pi damping, first call",
    [OP_KFAC_PI] = "KFAC solve, pi damping, repeated",
    [OP_KFAC_EXACT_FIRST] = "KFAC solve, exact damping, first call",
    [OP_KFAC_EXACT] = "KFAC solve, exact damping, repeated",
    [OP_EKFAC_FROM_KFAC] = "EKFAC from KFAC (bases cached)",
    [OP_EKFAC_SOLVE] = "EKFAC solve (exact damping)",
    [OP_EKFAC_MV] = "EKFAC mv",
    [OP_EKFAC_POW] = "EKFAC pow(-1) creation",
};

static const char *const op_flops[] = {
    [OP_KFAC_MV] = "K",
    [OP_KFAC_MM] = "k K",
    [OP_KFAC_PI_FIRST] = "K + C",
    [OP_KFAC_PI] = "K",
    [OP_KFAC_EXACT_FIRST] = "2K + E",
    [OP_KFAC_EXACT] = "2K",
    [OP_EKFAC_FROM_KFAC] = "-",
    [OP_EKFAC_SOLVE] = "2K",
    [OP_EKFAC_MV] = "2K",
    [OP_EKFAC_POW] = "-",
};

struct state {
	pspace_mat *kfac, *ekfac;
	uint64_t d;
	double *b, *x, *y;        /* one vector each */
	double *Xk, *Yk;          /* MAX_K vectors each */
	double *xe, *xk;          /* exact solutions (KFAC, EKFAC) for the checks */
	pspace_kfac_damping mode; /* the KFAC's damping mode as last set */
	int chol_warm;            /* its Cholesky factors are cached */
	int eig_warm;             /* its eigenbases are cached */
	double res_kfac, res_ekfac;
};

struct work {
	struct state *s;
	enum op op;
	pspace_exec ex;
	uint32_t k;
};

static int set_mode(struct state *s, pspace_kfac_damping mode)
{
	int rc = pspace_kfac_set_damping(s->kfac, mode);

	s->mode = mode;
	s->chol_warm = 0; /* setting the mode drops the cached Cholesky factors */
	return rc;
}

static int run_op(void *ctx, double *seconds)
{
	struct work *w = ctx;
	struct state *s = w->s;
	pspace_mat *tmp = NULL;
	double t0;
	int rc = 0;

	/* Untimed setup: the first-call rows start without cached factors. */
	if (w->op == OP_KFAC_PI_FIRST)
		rc = set_mode(s, PSPACE_KFAC_DAMP_PI);
	if (rc != 0)
		return rc;
	t0 = bench_clock_now();
	switch (w->op) {
	case OP_KFAC_MV: rc = pspace_mat_mv(s->kfac, &w->ex, s->xe, s->y); break;
	case OP_KFAC_MM:
		rc = pspace_mat_mm(s->kfac, &w->ex, w->k, 1.0, s->Xk, s->d, 1.0, s->Yk, s->d);
		break;
	case OP_KFAC_PI_FIRST:
	case OP_KFAC_PI:
		rc = pspace_mat_solve(s->kfac, &w->ex, DAMPING, 1, s->b, s->d, s->x, s->d);
		break;
	case OP_KFAC_EXACT_FIRST:
	case OP_KFAC_EXACT:
		rc = pspace_mat_solve(s->kfac, &w->ex, DAMPING, 1, s->b, s->d, s->xe, s->d);
		break;
	case OP_EKFAC_FROM_KFAC: rc = pspace_ekfac_from_kfac(&tmp, s->kfac); break;
	case OP_EKFAC_SOLVE:
		rc = pspace_mat_solve(s->ekfac, &w->ex, DAMPING, 1, s->b, s->d, s->xk, s->d);
		break;
	case OP_EKFAC_MV: rc = pspace_mat_mv(s->ekfac, &w->ex, s->xk, s->y); break;
	case OP_EKFAC_POW: rc = pspace_mat_pow(&tmp, s->ekfac, -1.0, DAMPING); break;
	}
	*seconds = bench_clock_now() - t0;
	pspace_mat_free(tmp);
	if (rc == 0 && (w->op == OP_KFAC_PI_FIRST || w->op == OP_KFAC_PI))
		s->chol_warm = 1;
	if (rc == 0 &&
	    (w->op == OP_KFAC_EXACT_FIRST || w->op == OP_KFAC_EXACT || w->op == OP_EKFAC_FROM_KFAC))
		s->eig_warm = 1;
	return rc;
}

/* ||F x + l x - b|| / ||b|| with y = F x: the exact-damped solve's residual. */
static double residual(const struct state *s, const double *x)
{
	double r2 = 0, b2 = 0;

	for (uint64_t i = 0; i < s->d; i++) {
		double r = s->y[i] + DAMPING * x[i] - s->b[i];

		r2 += r * r;
		b2 += s->b[i] * s->b[i];
	}
	return sqrt(r2 / b2);
}

struct row {
	enum op op;
	int one_thread; /* else all threads */
	uint32_t k;
	int all_only; /* only with --all */
};

/*
 * The order matters: caches carry over. The exact solve's first call
 * computes the eigenbases (once per KFAC, never dropped), which EKFAC
 * creation then reuses; KFAC mv and EKFAC mv are applied to the exact
 * solutions, which checks those solves for free.
 */
static const struct row rows[] = {
    {OP_KFAC_EXACT_FIRST, 0, 1, 0}, {OP_KFAC_EXACT, 0, 1, 0},      {OP_KFAC_MV, 0, 1, 0},
    {OP_KFAC_MM, 0, 4, 0},          {OP_KFAC_MM, 0, 16, 1},        {OP_KFAC_PI_FIRST, 0, 1, 0},
    {OP_KFAC_PI, 0, 1, 0},          {OP_EKFAC_FROM_KFAC, 0, 0, 0}, {OP_EKFAC_SOLVE, 0, 1, 0},
    {OP_EKFAC_MV, 0, 1, 0},         {OP_EKFAC_POW, 0, 0, 0},       {OP_KFAC_MV, 1, 1, 0},
    {OP_KFAC_MM, 1, 4, 1},          {OP_KFAC_MM, 1, 16, 1},        {OP_KFAC_PI_FIRST, 1, 1, 1},
    {OP_KFAC_PI, 1, 1, 1},          {OP_KFAC_EXACT, 1, 1, 1},      {OP_EKFAC_FROM_KFAC, 1, 0, 1},
    {OP_EKFAC_SOLVE, 1, 1, 1},      {OP_EKFAC_MV, 1, 1, 1},        {OP_EKFAC_POW, 1, 0, 1},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* A timed row, printed once the end-of-run baseline is known. */
struct done {
	const struct row *row;
	int reps;
	double median, gflops;
};

/* Medians kept for the summary: [op][one_thread], k = 1 rows only. */
struct results {
	double s[OP_EKFAC_POW + 1][2];
	double gf[OP_EKFAC_POW + 1][2];
};

static double row_flops(enum op op, uint32_t k, double K, double C, double E)
{
	switch (op) {
	case OP_KFAC_MV:
	case OP_KFAC_PI: return K;
	case OP_KFAC_MM: return k * K;
	case OP_KFAC_PI_FIRST: return K + C;
	case OP_KFAC_EXACT_FIRST: return 2 * K + E;
	case OP_KFAC_EXACT:
	case OP_EKFAC_SOLVE:
	case OP_EKFAC_MV: return 2 * K;
	default: return 0;
	}
}

static const char *env_or(const char *name)
{
	const char *v = getenv(name);

	return v ? v : "(unset)";
}

/* ---- eigendecompositions: all threads vs one ------------------------------------------ */

/* Reference LAPACK (Debian's liblapack3), whose BLAS calls go to BLIS. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/*
 * The factors of the MLP 1024-W-W-10 at width @p ew, converted to an EKFAC
 * (pspace_ekfac_from_kfac_ex: every factor eigendecomposed) with @p ncpu
 * threads and with 1, each from a fresh KFAC. secs[0], secs[1]; *diff: the
 * largest relative difference between the two EKFACs' eigenvalues.
 */
static int eig_factors(uint64_t ew, int ncpu, double secs[2], double *diff)
{
	pspace_layout *lay = NULL;
	double *A[MAX_LAYERS] = {0}, *G[MAX_LAYERS] = {0}, *ev[2] = {NULL, NULL}, big = 0;
	char text[256];
	uint64_t d = 0;
	int rc;

	*diff = 0;
	snprintf(text, sizeof(text),
	         "fc1 linear %llux%d bias\nfc2 linear %llux%llu bias\nfc3 linear 10x%llu bias\n",
	         (unsigned long long)ew, INPUT_WIDTH, (unsigned long long)ew,
	         (unsigned long long)ew, (unsigned long long)ew);
	rc = pspace_layout_parse(&lay, text, "mlp");
	for (size_t l = 0; rc == 0 && l < MAX_LAYERS; l++) {
		const pspace_layer *ly = pspace_layout_layer(lay, l);

		rc = make_factor(ly->shape[1] + 1, 300 + 2 * l, ncpu, &A[l]);
		if (rc == 0)
			rc = make_factor(ly->shape[0], 301 + 2 * l, ncpu, &G[l]);
	}
	if (rc == 0) {
		d = pspace_layout_dim(lay);
		ev[0] = malloc(d * sizeof(double));
		ev[1] = malloc(d * sizeof(double));
		if (!ev[0] || !ev[1])
			rc = PSPACE_ENOMEM;
	}
	for (int t = 0; rc == 0 && t < 2; t++) {
		pspace_exec ex = {t ? 1 : ncpu, 0};
		pspace_mat *k = NULL, *e = NULL;
		double t0;

		bench_progress("eigendecomposition of the factors (width %llu), %d thread(s)",
		               (unsigned long long)ew, ex.threads);
		rc =
		    pspace_kfac_create(&k, lay, (const double *const *)A, (const double *const *)G);
		t0 = bench_clock_now();
		if (rc == 0)
			rc = pspace_ekfac_from_kfac_ex(&e, k, &ex);
		secs[t] = bench_clock_now() - t0;
		if (rc == 0)
			rc = pspace_mat_eigvals(e, &ex, ev[t]);
		pspace_mat_free(e);
		pspace_mat_free(k);
	}
	for (uint64_t i = 0; rc == 0 && i < d; i++) {
		big = fmax(big, fabs(ev[0][i]));
		*diff = fmax(*diff, fabs(ev[0][i] - ev[1][i]));
	}
	if (big > 0)
		*diff /= big;
	free(ev[1]);
	free(ev[0]);
	for (size_t l = 0; l < MAX_LAYERS; l++) {
		free(A[l]);
		free(G[l]);
	}
	pspace_layout_free(lay);
	return rc;
}

/*
 * One n x n factor through dsyevd (with vectors) at BLIS's global thread
 * setting 1 and @p ncpu (bli_thread_set_num_threads, which LAPACK's BLAS
 * calls read; pspace never sets it), then the setting restored. secs[0]:
 * ncpu threads, secs[1]: 1; *diff as in eig_factors().
 */
static int eig_one(uint64_t n, int ncpu, double secs[2], double *diff)
{
	double *F = NULL, *M = malloc(n * n * sizeof(double)), *w[2], *work = NULL, q = 0, big = 0;
	int nn = (int)n, lwork = -1, liwork = -1, iq = 0, *iwork = NULL, info = 0, rc;
	dim_t saved = bli_thread_get_num_threads();

	w[0] = malloc(n * sizeof(double));
	w[1] = malloc(n * sizeof(double));
	rc = make_factor(n, 400, ncpu, &F);
	if (rc == 0 && (!M || !w[0] || !w[1]))
		rc = PSPACE_ENOMEM;
	if (rc == 0) {
		dsyevd_("V", "U", &nn, M, &nn, w[0], &q, &lwork, &iq, &liwork, &info, 1, 1);
		lwork = (int)q;
		liwork = iq;
		work = malloc((size_t)lwork * sizeof(double));
		iwork = malloc((size_t)liwork * sizeof(int));
		if (!work || !iwork)
			rc = PSPACE_ENOMEM;
	}
	for (int t = 1; rc == 0 && t >= 0; t--) {
		int th = t ? 1 : ncpu;
		double t0;

		bench_progress("one %llu x %llu dsyevd, BLIS threads %d", (unsigned long long)n,
		               (unsigned long long)n, th);
		memcpy(M, F, n * n * sizeof(double));
		bli_thread_set_num_threads(th);
		t0 = bench_clock_now();
		dsyevd_("V", "U", &nn, M, &nn, w[t], work, &lwork, iwork, &liwork, &info, 1, 1);
		secs[t] = bench_clock_now() - t0;
		bli_thread_set_num_threads(saved);
		if (info != 0)
			rc = PSPACE_ENUMERIC;
	}
	*diff = 0;
	for (uint64_t i = 0; rc == 0 && i < n; i++) {
		big = fmax(big, fabs(w[1][i]));
		*diff = fmax(*diff, fabs(w[0][i] - w[1][i]));
	}
	if (big > 0)
		*diff /= big;
	free(iwork);
	free(work);
	free(w[1]);
	free(w[0]);
	free(M);
	free(F);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static void print_layout_table(const pspace_layout *lay, const struct layer_dims *L, size_t n)
{
	double d = (double)pspace_layout_dim(lay), kb = 0, eb = 0, bb = 0;
	char c1[32], c2[32], c3[32];

	bench_table_header(stdout, "layout",
	                   "layer|>out|>a|>parameters|>dense f32 block|>KFAC factors|>EKFAC "
	                   "resident|>dense / KFAC");
	for (size_t l = 0; l < n; l++) {
		const pspace_layer *ly = pspace_layout_layer(lay, l);
		double o = (double)L[l].out, a = (double)L[l].a, p = (double)ly->size;
		double kf = (o * o + a * a) * 8, ek = (o * o + a * a + o + a + o * a) * 8;

		kb += kf;
		eb += ek;
		bb += p * p * 4;
		bench_table_row(stdout, "%s|%llu|%llu|%llu|%s|%s|%s|%.3g", L[l].name,
		                (unsigned long long)L[l].out, (unsigned long long)L[l].a,
		                (unsigned long long)ly->size,
		                bench_fmt_bytes(c1, sizeof(c1), p * p * 4),
		                bench_fmt_bytes(c2, sizeof(c2), kf),
		                bench_fmt_bytes(c3, sizeof(c3), ek), p * p * 4 / kf);
	}
	bench_table_row(stdout, "block-diagonal|-|-|%.0f|%s|%s|%s|%.3g", d,
	                bench_fmt_bytes(c1, sizeof(c1), bb), bench_fmt_bytes(c2, sizeof(c2), kb),
	                bench_fmt_bytes(c3, sizeof(c3), eb), bb / kb);
	bench_table_row(stdout, "dense d x d|-|-|%.0f|%s|%s|%s|%.3g", d,
	                bench_fmt_bytes(c1, sizeof(c1), d * d * 4),
	                bench_fmt_bytes(c2, sizeof(c2), kb), bench_fmt_bytes(c3, sizeof(c3), eb),
	                d * d * 4 / kb);
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct state st = {0};
	struct results res;
	struct layer_dims L[MAX_LAYERS];
	double *A[MAX_LAYERS] = {0}, *G[MAX_LAYERS] = {0};
	double peak_d[2][2] = {{0}}, peak_dmax[2] = {0}, peak_s[2] = {0}, K, C, E;
	struct done done[NROWS];
	size_t ndone = 0;
	pspace_layout *lay = NULL;
	char text[256], buf[32], buf2[32];
	int ncpu = bench_ncpus(), rc;
	double t0, eig_s[2][2] = {{0}}, eig_diff[2] = {0};
	uint64_t ew;

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	memset(&res, 0, sizeof(res));
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (cfg.json && (rc = bench_json_open(cfg.json)) != 0)
		return fail(rc, "--json"), 1;

	snprintf(text, sizeof(text),
	         "fc1 linear %llux%d bias\nfc2 linear %llux%llu bias\nfc3 linear 10x%llu bias\n",
	         (unsigned long long)cfg.width, INPUT_WIDTH, (unsigned long long)cfg.width,
	         (unsigned long long)cfg.width, (unsigned long long)cfg.width);
	rc = pspace_layout_parse(&lay, text, "mlp");
	if (rc != 0) {
		fail(rc, "layout");
		goto out;
	}
	st.d = pspace_layout_dim(lay);
	for (size_t l = 0; l < MAX_LAYERS; l++) {
		const pspace_layer *ly = pspace_layout_layer(lay, l);

		L[l].name = ly->name;
		L[l].out = ly->shape[0];
		L[l].a = ly->shape[1] + (ly->bias ? 1 : 0);
	}
	K = flops_kron(L, MAX_LAYERS);
	C = flops_chol(L, MAX_LAYERS);
	E = flops_eig(L, MAX_LAYERS);

	printf("# " PROG ": KFAC and EKFAC products and solves next to BLIS gemm peak\n\n");
	bench_machine_print(stdout);
	bench_info(stdout, "layout", "MLP %d-%llu-%llu-10 with biases, d = %llu (%.1f M)",
	           INPUT_WIDTH, (unsigned long long)cfg.width, (unsigned long long)cfg.width,
	           (unsigned long long)st.d, (double)st.d / 1e6);
	bench_info(stdout, "factors",
	           "per layer A (a x a, a = in + 1) and G (out x out), each X^T X / m + %g I, "
	           "X (m x n) standard normal, m = n/2 (BLIS dsyrk)",
	           FACTOR_EPS);
	bench_info(stdout, "damping",
	           "l = %g: pi = factor-wise (A + pi sqrt(l) I) (x) (G + "
	           "sqrt(l)/pi I); exact = (G (x) A + l I) through the factor eigenbases",
	           DAMPING);
	bench_info(stdout, "pspace_exec", "threads = %d (all) or 1, mem_budget = 0 (1 GiB default)",
	           ncpu);
	bench_info(stdout, "BLIS global threads",
	           "%ld (bli_thread_get_num_threads(), -1 = not set; BLIS_NUM_THREADS=%s, "
	           "OMP_NUM_THREADS=%s); untouched here: the LAPACK dpotrf and dsyevd in "
	           "pspace's first calls run their BLAS at this setting",
	           (long)bli_thread_get_num_threads(), env_or("BLIS_NUM_THREADS"),
	           env_or("OMP_NUM_THREADS"));
	bench_info(stdout, "timing",
	           "median of %d timed call(s) per operation (at least 0.2 s in --quick), no "
	           "warm-up call; first-call rows drop the cache before each call (untimed)",
	           cfg.reps);
	printf("\n");
	print_layout_table(lay, L, MAX_LAYERS);
	printf("\nKFAC factors only; its solves add cached Cholesky factors or eigenbases of the "
	       "same size again. EKFAC: U_G, U_A, their eigenvalues and S (out x a).\n\n");

	/* Baselines first, on a quiet process; dgemm again at the end. */
	for (int t = 0; t < 2; t++) {
		int th = t ? 1 : ncpu;

		bench_progress("baseline: sgemm, dgemm, %d thread(s)", th);
		rc = bench_gemm_peak(1, th, PEAK_N, cfg.quick ? 0.3 : 1.0, &peak_s[t]);
		if (rc == 0)
			rc = bench_gemm_peak(0, th, PEAK_N, cfg.quick ? 0.3 : 1.0, &peak_d[0][t]);
		if (rc != 0) {
			fail(rc, "gemm baseline");
			goto out;
		}
	}

	t0 = bench_clock_now();
	for (size_t l = 0; l < MAX_LAYERS; l++) {
		bench_progress("factors of %s", L[l].name);
		rc = make_factor(L[l].a, 100 + 2 * l, ncpu, &A[l]);
		if (rc == 0)
			rc = make_factor(L[l].out, 101 + 2 * l, ncpu, &G[l]);
		if (rc != 0) {
			fail(rc, "factors");
			goto out;
		}
	}
	rc = pspace_kfac_create(&st.kfac, lay, (const double *const *)A, (const double *const *)G);
	if (rc != 0) {
		fail(rc, "pspace_kfac_create");
		goto out;
	}
	for (size_t l = 0; l < MAX_LAYERS; l++) {
		free(A[l]), A[l] = NULL;
		free(G[l]), G[l] = NULL;
	}
	bench_info(stdout, "setup", "factors and KFAC made in %.1f s (untimed)",
	           bench_clock_now() - t0);
	st.mode = PSPACE_KFAC_DAMP_PI;
	st.b = malloc(st.d * sizeof(double));
	st.x = malloc(st.d * sizeof(double));
	st.y = malloc(st.d * sizeof(double));
	st.xe = calloc(st.d, sizeof(double));
	st.xk = calloc(st.d, sizeof(double));
	st.Xk = malloc((size_t)MAX_K * st.d * sizeof(double));
	st.Yk = calloc((size_t)MAX_K * st.d, sizeof(double));
	if (!st.b || !st.x || !st.y || !st.xe || !st.xk || !st.Xk || !st.Yk) {
		rc = fail(PSPACE_ENOMEM, "vectors");
		goto out;
	}
	pspace_vec_randn(st.d, 7, st.b);
	pspace_vec_randn((uint64_t)MAX_K * st.d, 8, st.Xk);

	printf("\nFlop counts per call, summed over layers (a = in + 1): K = sum 2 out a (out "
	       "+ a) = %.1f GFLOP, one vector through G V A (two gemms) or through the four "
	       "triangular solves 2 out^2 a + 2 a^2 out; exact damping and EKFAC go into the "
	       "eigenbasis and back, four gemms: 2K; C = sum (out^3 + a^3)/3 = %.1f GFLOP "
	       "(Cholesky); E = sum 4 (out^3 + a^3) = %.1f GFLOP (dsyevd with vectors, "
	       "nominal); elementwise work (the diagonal, pow) is not counted. %% dgemm and %% "
	       "sgemm: GFLOP/s over BLIS peak at the same thread count.\n\n",
	       K / 1e9, C / 1e9, E / 1e9);
	for (size_t r = 0; r < NROWS; r++) {
		const struct row *rw = &rows[r];
		struct work w = {&st, rw->op, {rw->one_thread ? 1 : ncpu, 0}, rw->k};
		int t = rw->one_thread;
		double fl = row_flops(rw->op, rw->k, K, C, E), gf;
		bench_opts o;
		bench_stats bs;

		if (rw->all_only && !cfg.all)
			continue;
		if (rw->op == OP_KFAC_EXACT_FIRST && st.eig_warm)
			continue;
		bench_progress("%s, %d thread(s), k = %u", op_names[rw->op], w.ex.threads, rw->k);
		/* Put the KFAC in the row's damping mode; warm a cache that was dropped. */
		if ((rw->op == OP_KFAC_EXACT_FIRST || rw->op == OP_KFAC_EXACT) &&
		    st.mode != PSPACE_KFAC_DAMP_EXACT)
			rc = set_mode(&st, PSPACE_KFAC_DAMP_EXACT);
		if (rw->op == OP_KFAC_PI && st.mode != PSPACE_KFAC_DAMP_PI)
			rc = set_mode(&st, PSPACE_KFAC_DAMP_PI);
		if (rc != 0) {
			fail(rc, "pspace_kfac_set_damping");
			goto out;
		}
		if (rw->op == OP_EKFAC_SOLVE || rw->op == OP_EKFAC_MV || rw->op == OP_EKFAC_POW) {
			if (!st.ekfac && (rc = pspace_ekfac_from_kfac(&st.ekfac, st.kfac)) != 0) {
				fail(rc, "pspace_ekfac_from_kfac");
				goto out;
			}
		}
		bench_opts_default(&o);
		o.min_time = cfg.quick ? 0.2 : 0;
		o.min_reps = rw->op == OP_KFAC_EXACT_FIRST ? 1 : cfg.reps;
		o.max_reps = rw->op == OP_KFAC_EXACT_FIRST ? 1 : 1000;
		o.warmup = (rw->op == OP_KFAC_PI && !st.chol_warm) ||
		                   (rw->op == OP_KFAC_EXACT && !st.eig_warm)
		               ? 1
		               : 0;
		rc = bench_run_timed(run_op, &w, &o, &bs);
		if (rc != 0) {
			fail(rc, op_names[rw->op]);
			goto out;
		}
		if (rw->op == OP_KFAC_MV)
			st.res_kfac = residual(&st, st.xe);
		if (rw->op == OP_EKFAC_MV)
			st.res_ekfac = residual(&st, st.xk);
		gf = fl / bs.median / 1e9;
		if (rw->k <= 1) {
			res.s[rw->op][t] = bs.median;
			res.gf[rw->op][t] = gf;
		}
		done[ndone].row = rw;
		done[ndone].reps = bs.reps;
		done[ndone].median = bs.median;
		done[ndone].gflops = fl > 0 ? gf : 0;
		ndone++;
	}

	for (int t = 0; t < 2; t++) {
		bench_progress("baseline again: dgemm, %d thread(s)", t ? 1 : ncpu);
		rc = bench_gemm_peak(0, t ? 1 : ncpu, PEAK_N, cfg.quick ? 0.3 : 1.0, &peak_d[1][t]);
		if (rc != 0) {
			fail(rc, "gemm baseline");
			goto out;
		}
	}
	/* Last, since eig_one() changes BLIS's global thread setting for a moment. */
	ew = cfg.width < EIG_WIDTH ? cfg.width : EIG_WIDTH;
	rc = eig_factors(ew, ncpu, eig_s[0], &eig_diff[0]);
	if (rc == 0)
		rc = eig_one(cfg.width, ncpu, eig_s[1], &eig_diff[1]);
	if (rc != 0) {
		fail(rc, "eigendecompositions");
		goto out;
	}
	bench_progress_end();
	for (int t = 0; t < 2; t++)
		peak_dmax[t] = fmax(peak_d[0][t], peak_d[1][t]);
	bench_table_header(stdout, "ops",
	                   "operation|>threads|>k|>flops|>calls|>s/call|>GFLOP/s|>% dgemm|>% "
	                   "sgemm");
	for (size_t i = 0; i < ndone; i++) {
		const struct row *rw = done[i].row;
		int t = rw->one_thread, th = t ? 1 : ncpu;
		double gf = done[i].gflops;

		if (gf > 0)
			bench_table_row(stdout, "%s|%d|%u|%s|%d|%.3f|%.1f|%.0f%%|%.0f%%",
			                op_names[rw->op], th, rw->k, op_flops[rw->op], done[i].reps,
			                done[i].median, gf, 100 * gf / peak_dmax[t],
			                100 * gf / peak_s[t]);
		else
			bench_table_row(stdout, "%s|%d|-|-|%d|%.3f|-|-|-", op_names[rw->op], th,
			                done[i].reps, done[i].median);
	}
	printf("\nBaselines: BLIS gemm, square n = %d, threads through an rntm_t passed to "
	       "bli_?gemm_ex (the global BLIS setting untouched); median of >= 3 calls. "
	       "%% dgemm above is against the better of the two dgemm measurements.\n\n",
	       PEAK_N);
	bench_table_header(stdout, "peak", "routine|>threads|>GFLOP/s|>dgemm at the end|>drift");
	for (int t = 0; t < 2; t++) {
		int th = t ? 1 : ncpu;

		bench_table_row(stdout, "sgemm|%d|%.1f|-|-", th, peak_s[t]);
		bench_table_row(stdout, "dgemm|%d|%.1f|%.1f|%+.0f%%", th, peak_d[0][t],
		                peak_d[1][t], 100 * (peak_d[1][t] / peak_d[0][t] - 1));
	}
	printf("\nChecks: exact-damped solve residual ||F x + l x - b|| / ||b||: KFAC %.2e, "
	       "EKFAC %.2e\n",
	       st.res_kfac, st.res_ekfac);

	printf("\nEigendecompositions, all threads against one in the same run: the KFAC "
	       "factors of the MLP at width %llu decomposed at once on pspace_exec.threads "
	       "threads (pspace_ekfac_from_kfac_ex, each factor by one single-threaded "
	       "dsyevd), and one %llu x %llu dsyevd of reference LAPACK with BLIS's global "
	       "thread setting at 1 and %d (what pspace does not do: the setting is "
	       "process-wide).\n\n",
	       (unsigned long long)ew, (unsigned long long)cfg.width, (unsigned long long)cfg.width,
	       ncpu);
	bench_table_header(stdout, "eig",
	                   "operation|>threads|>s|>speedup|>eigenvalues: max rel. difference");
	for (int i = 0; i < 2; i++) {
		const char *what = i ? "one dsyevd, BLIS global threads"
		                     : "EKFAC from KFAC, every factor (dsyevd)";

		bench_table_row(stdout, "%s|1|%.3f|1.00|-", what, eig_s[i][1]);
		bench_table_row(stdout, "%s|%d|%.3f|%.2f|%.1e", what, ncpu, eig_s[i][0],
		                eig_s[i][1] / eig_s[i][0], eig_diff[i]);
	}

	printf("\nSummary: d = %.1f M; with %d threads KFAC mv %.2f s = %.0f%% of dgemm peak "
	       "(%.0f%% of sgemm); cached pi-damped solve %.2fx the mv time, its first call "
	       "%.2fx; exact damping's first call %.0fx (eigendecompositions); EKFAC mv %.2fx "
	       "the KFAC mv time; one thread: KFAC mv %.0f%% of dgemm peak; a dense f32 d x d "
	       "would need %s, the KFAC factors %s.\n",
	       (double)st.d / 1e6, ncpu, res.s[OP_KFAC_MV][0],
	       100 * res.gf[OP_KFAC_MV][0] / peak_dmax[0], 100 * res.gf[OP_KFAC_MV][0] / peak_s[0],
	       res.s[OP_KFAC_PI][0] / res.s[OP_KFAC_MV][0],
	       res.s[OP_KFAC_PI_FIRST][0] / res.s[OP_KFAC_MV][0],
	       res.s[OP_KFAC_EXACT_FIRST][0] / res.s[OP_KFAC_MV][0],
	       res.s[OP_EKFAC_MV][0] / res.s[OP_KFAC_MV][0],
	       100 * res.gf[OP_KFAC_MV][1] / peak_dmax[1],
	       bench_fmt_bytes(buf, sizeof(buf), (double)st.d * (double)st.d * 4),
	       bench_fmt_bytes(buf2, sizeof(buf2), kfac_bytes(L, MAX_LAYERS)));
out:
	bench_progress_end();
	for (size_t l = 0; l < MAX_LAYERS; l++) {
		free(A[l]);
		free(G[l]);
	}
	pspace_mat_free(st.ekfac);
	pspace_mat_free(st.kfac);
	free(st.Yk);
	free(st.Xk);
	free(st.xk);
	free(st.xe);
	free(st.y);
	free(st.x);
	free(st.b);
	pspace_layout_free(lay);
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	return rc != 0 ? 1 : 0;
}
