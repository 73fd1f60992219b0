/*
 * bench_build - how fast are the builders, next to BLIS gemm peak?
 *
 * (a) Dense from Jacobian rows: an in-memory source of n examples x K
 * outputs x d parameters (Gaussian, generated once; read() copies rows),
 * built with pspace_build_jacobian into a temporary store (default codec,
 * tile 512) with a budget that holds the whole accumulator (one pass, the
 * in-RAM build) and with budgets that force 2, 4 and 8 passes: the budget
 * is the memory cap here (tests/test_build_outofcore runs a build under a
 * real cgroup cap). The budget for p passes is the largest one for which
 * the builder's greedy plan (replicated here) makes p passes, so the batch
 * gets what the accumulators leave. Useful flops are those of a symmetric
 * rank-m update, m = n K rows: m d (d + 1) (the upper triangle and the
 * diagonal, a multiply and an add each); the builder skips the rows of a
 * band that feed only lower tiles, so it executes about the useful flops.
 *
 * (b) KFAC and EKFAC from layer tensors of a reference network (default
 * mlp:1024,4096,2048,10, 12.6 M parameters, exact Fisher of the logits,
 * K = 9): a pass of pspace_refnet_layers reads alone (the cost of the
 * layer tensors), the KFAC build (factor pass + save), the eigendecomposition
 * of its factors (pspace_ekfac_from_kfac, timed alone), and the EKFAC build
 * (factor pass, eigendecomposition, diagonal update in a second pass, save),
 * split by the builder's progress callbacks. The second pass takes linear
 * layers straight from the layer tensors (pspace_ekfac_update_add_layer_batch:
 * P = [x 1] U_A, Q = G U_G, acc += (sum_k q_k^2)(p^2)^T, about
 * 2 a^2 + 2 K out^2 + 2 out a flops per example and layer, where the rows
 * path needed K 2 out a (out + a)); it runs on all --examples by default,
 * or on --ekfac-examples examples projected to --examples.
 *
 * Baselines: BLIS sgemm and dgemm, square n = 2048, all threads through an
 * rntm_t passed to bli_?gemm_ex, measured in the same run (dgemm again at
 * the end, for drift): the machine is a shared, noisy VM, the ratios are
 * the claim.
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

#define PROG   "bench_build"
#define PEAK_N 2048
#define MIB    ((uint64_t)1 << 20)

struct config {
	int quick, reps, dense_only;
	uint64_t d, n;
	uint32_t K, tile;
	const char *net, *dir, *json;
	uint64_t examples, ekfac_examples;
	pspace_variant variant;
	size_t layer_budget;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " PROG " [--quick] [--d N] [--rows M] [--dense-only] [--examples N]\n"
	    "       [--ekfac-examples N] [--net SPEC]\n"
	    "       [--variant classif_logits|empirical] [--reps N] [--dir PATH] [--json FILE]\n"
	    "  --quick             a smoke run (d = 2048, tile 128, mlp:256,1024,512,10), < 20 s\n"
	    "  --d N               Dense: parameters (8192); n K = 2048 rows (256 x 8)\n"
	    "  --rows M            Dense: M gradient rows (n = M / 8 examples of K = 8)\n"
	    "  --dense-only        only (a), the Dense builds\n"
	    "  --examples N        reference network examples for KFAC (256)\n"
	    "  --ekfac-examples N  examples of the EKFAC build (default: --examples); when\n"
	    "                      fewer, its second pass is projected to --examples\n"
	    "  --net SPEC          reference network (mlp:1024,4096,2048,10)\n"
	    "  --variant V         classif_logits (K = C - 1, default) or empirical (K = 1)\n"
	    "  --reps N            timed builds per Dense row (2)\n"
	    "  --dir PATH          where to create the temporary store ($TMPDIR or /tmp)\n"
	    "  --json FILE         also write the results as JSON\n");
}

static int parse_u64(const char *opt, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end = NULL;
	unsigned long long x = strtoull(v, &end, 10);

	if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
		fprintf(stderr, PROG ": %s must be %llu..%llu\n", opt, (unsigned long long)lo,
		        (unsigned long long)hi);
		return 2;
	}
	*out = x;
	return 0;
}

static int parse_args(int argc, char **argv, struct config *c)
{
	uint64_t v64;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->d = 8192;
	c->n = 256;
	c->K = 8;
	c->tile = PSPACE_DEFAULT_TILE;
	c->net = "mlp:1024,4096,2048,10";
	c->examples = 256;
	c->ekfac_examples = 0; /* = examples */
	c->variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	c->reps = 2;
	c->layer_budget = (size_t)4 << 30;
	for (int i = 1; rc == 0 && i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--quick") == 0) {
			c->quick = 1;
			c->d = 2048;
			c->n = 64;
			c->tile = 128;
			c->net = "mlp:256,1024,512,10";
			c->examples = 64;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (v && strcmp(a, "--d") == 0) {
			rc = parse_u64(a, v, 64, 1 << 17, &c->d);
			i++;
		} else if (v && strcmp(a, "--rows") == 0) {
			rc = parse_u64(a, v, 8, 1 << 24, &v64);
			c->n = (v64 + c->K - 1) / c->K;
			i++;
		} else if (strcmp(a, "--dense-only") == 0) {
			c->dense_only = 1;
		} else if (v && strcmp(a, "--examples") == 0) {
			rc = parse_u64(a, v, 1, 1 << 24, &c->examples);
			i++;
		} else if (v && strcmp(a, "--ekfac-examples") == 0) {
			rc = parse_u64(a, v, 1, 1 << 24, &c->ekfac_examples);
			i++;
		} else if (v && strcmp(a, "--net") == 0) {
			c->net = v;
			i++;
		} else if (v && strcmp(a, "--variant") == 0) {
			if (strcmp(v, "classif_logits") == 0)
				c->variant = PSPACE_VARIANT_CLASSIF_LOGITS;
			else if (strcmp(v, "empirical") == 0)
				c->variant = PSPACE_VARIANT_EMPIRICAL;
			else
				rc = (fprintf(stderr, PROG ": --variant is classif_logits or "
				                           "empirical\n"),
				      2);
			i++;
		} else if (v && strcmp(a, "--reps") == 0) {
			rc = parse_u64(a, v, 1, 100, &v64);
			c->reps = (int)v64;
			i++;
		} else if (v && strcmp(a, "--dir") == 0) {
			c->dir = v;
			i++;
		} else if (v && strcmp(a, "--json") == 0) {
			c->json = v;
			i++;
		} else {
			usage(stderr);
			rc = 2;
		}
	}
	if (c->ekfac_examples == 0 || c->ekfac_examples > c->examples)
		c->ekfac_examples = c->examples;
	return rc;
}

static int fail(int rc, const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", what, pspace_strerror(rc), pspace_errdetail());
	return rc;
}

struct peaks {
	double s, d; /* sgemm, dgemm */
};

/* Both peaks now: the VM's speed drifts, so each measurement gets its own. */
static int peaks_now(int ncpu, int quick, struct peaks *pk)
{
	int rc;

	bench_progress("baseline: sgemm, dgemm");
	rc = bench_gemm_peak(1, ncpu, PEAK_N, quick ? 0.3 : 1.0, &pk->s);
	if (rc == 0)
		rc = bench_gemm_peak(0, ncpu, PEAK_N, quick ? 0.3 : 1.0, &pk->d);
	return rc;
}

/* ---- (a) Dense from Jacobian rows ----------------------------------------------------- */

/* The Jacobian J[k, x, :], K x n x d, row-major. */
struct jac {
	uint64_t n, d;
	uint32_t K;
	double *j;
};

static int jac_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	const struct jac *J = ud;

	for (uint32_t k = 0; k < J->K; k++)
		for (uint64_t x = 0; x < nx; x++)
			memcpy(out + ((uint64_t)k * nx + x) * ld,
			       J->j + ((uint64_t)k * J->n + x0 + x) * J->d, J->d * sizeof(double));
	return 0;
}

/*
 * The builder's plan for one block of d at a memory budget, replicated from
 * src/build/build_dense.c (plan_items, batch_reserve, plan_make) for the
 * default codec (f32: products in single precision) and an automatic batch.
 */
struct plan {
	int ok;             /* the first tile row fits */
	uint64_t passes;    /* bands */
	uint64_t max_bytes; /* largest pass's accumulators (upper tiles, f64) */
	uint64_t fixed;     /* bytes besides them: a tile, the scratch, the batch reserve */
	uint64_t scratch;   /* the workers' scratch */
};

#define SIM_ITEM_ROWS  512
#define SIM_ITEM_COLS  2048
#define SIM_BATCH_ROWS 1024

static void plan_sim(const struct jac *J, uint32_t T, int threads, uint64_t budget, struct plan *p)
{
	uint64_t group = T >= SIM_ITEM_ROWS ? 1 : SIM_ITEM_ROWS / T;
	uint64_t cols = ((SIM_ITEM_COLS + T - 1) / T) * T, d = J->d, cur = 0, accmax;
	uint64_t per = (uint64_t)J->K * d * 12, want = (SIM_BATCH_ROWS + J->K - 1) / J->K;
	uint64_t reserve, row, cap;
	uint32_t nt = (uint32_t)((d + T - 1) / T);

	memset(p, 0, sizeof(*p));
	while (group * T * cols * 4 * (uint64_t)threads > budget / 8 && (cols > T || group > 1)) {
		if (cols > T)
			cols = ((cols / T + 1) / 2) * T;
		else
			group = (group + 1) / 2;
	}
	want = want < J->n ? want : J->n;
	p->scratch = group * T * cols * 4 * (uint64_t)threads;
	p->fixed = 8 * (uint64_t)T * T + p->scratch;
	row = 8 * (d < T ? d : T) * d;
	cap = budget / 2;
	if (budget < p->fixed + row + cap)
		cap = budget > p->fixed + row ? budget - p->fixed - row : 0;
	reserve = want <= 1 || cap <= per ? per : (want * per < cap ? want * per : cap);
	p->fixed += reserve;
	accmax = budget > p->fixed ? budget - p->fixed : 0;
	for (uint32_t tr = 0; tr < nt; tr++) {
		uint64_t r0 = (uint64_t)tr * T, rows = d - r0 < T ? d - r0 : T;
		uint64_t add = 8 * rows * (d - r0);

		if (add > accmax)
			return;
		if (cur > 0 && cur + add > accmax) {
			p->passes++;
			p->max_bytes = cur > p->max_bytes ? cur : p->max_bytes;
			cur = 0;
		}
		cur += add;
	}
	p->passes++;
	p->max_bytes = cur > p->max_bytes ? cur : p->max_bytes;
	p->ok = 1;
}

/*
 * The largest budget for which the plan has at least @p passes bands (0:
 * none: a budget a byte smaller than the one for fewer bands does not fit
 * a tile row).
 */
static uint64_t budget_for(const struct jac *J, uint32_t T, int threads, uint64_t passes)
{
	uint64_t lo = 8 * (uint64_t)T, hi = 16 * J->d * J->d + (uint64_t)J->n * J->K * J->d * 12;
	struct plan p;

	/* smallest budget with <= passes - 1 bands, by bisection (bands fall as it grows) */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		plan_sim(J, T, threads, mid, &p);
		if (p.ok && p.passes <= passes - 1)
			hi = mid;
		else
			lo = mid + 1;
	}
	plan_sim(J, T, threads, lo - 1, &p);
	return p.ok && p.passes >= passes ? lo - 1 : 0;
}

struct dense_work {
	pspace_store *s;
	const pspace_layout *layout;
	pspace_jac_source src;
	pspace_build_opts o;
	uint64_t passes; /* as the builder reported */
	uint64_t n;
};

static void count_passes(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	struct dense_work *w = ud;

	(void)stage;
	(void)done;
	w->passes = total / w->n;
}

static int run_dense(void *ctx, double *seconds)
{
	struct dense_work *w = ctx;
	pspace_matrix_info info;
	double t0;
	int rc = 0;

	if (pspace_matrix_info_get(&info, w->s, "F") == 0)
		rc = pspace_store_remove(w->s, "F");
	if (rc != 0)
		return rc;
	t0 = bench_clock_now();
	rc = pspace_build_jacobian(w->s, "F", w->layout, &w->src, &w->o);
	*seconds = bench_clock_now() - t0;
	return rc;
}

static int bench_dense(const struct config *c, pspace_store *s, int ncpu, double *best_gf,
                       double *best_pct, double *best_spct)
{
	static const uint64_t want[] = {1, 2, 4, 8};
	struct jac J = {c->n, c->d, c->K, NULL};
	struct dense_work w;
	pspace_layout *layout = NULL;
	uint64_t m = c->n * c->K;
	double useful = (double)m * (double)c->d * (double)(c->d + 1);
	char b1[32], b2[32], b3[32];
	int rc;

	*best_gf = *best_pct = *best_spct = 0;
	J.j = malloc(c->K * c->n * c->d * sizeof(double));
	if (!J.j)
		return fail(PSPACE_ENOMEM, "the Jacobian");
	bench_progress("generating the Jacobian");
	pspace_vec_randn(c->K * c->n * c->d, 17, J.j);
	rc = pspace_layout_flat(&layout, c->d);
	if (rc != 0) {
		fail(rc, "layout");
		goto out;
	}
	memset(&w, 0, sizeof(w));
	w.s = s;
	w.layout = layout;
	w.src = (pspace_jac_source){c->n, c->K, c->d, jac_read, &J};
	w.n = c->n;
	pspace_build_opts_default(&w.o);
	w.o.kind = PSPACE_KIND_DENSE;
	w.o.write.tile = c->tile;
	w.o.exec.threads = ncpu;
	w.o.progress = count_passes;
	w.o.progress_ud = &w;

	printf("\n## (a) Dense from Jacobian rows\n\n");
	bench_info(stdout, "source",
	           "in-memory J, n = %llu examples x K = %u outputs x d = %llu (m = n K = %llu "
	           "rows, %s f64), standard normal; read() copies rows",
	           (unsigned long long)c->n, c->K, (unsigned long long)c->d, (unsigned long long)m,
	           bench_fmt_bytes(b1, sizeof(b1), 8.0 * (double)m * c->d));
	bench_info(stdout, "useful flops",
	           "m d (d + 1) = %.1f GFLOP: the upper triangle with the diagonal of J^T J, "
	           "d (d + 1) / 2 entries of m multiply-adds",
	           useful / 1e9);
	bench_info(stdout, "build",
	           "pspace_build_jacobian, kind dense, default codec (f32, shuffle, zstd 1), tile "
	           "%u, threads = %d; the budget is the memory cap; seconds = median of %d "
	           "builds, each into a fresh matrix (the previous one removed, untimed), "
	           "store opened with nosync",
	           c->tile, ncpu, c->reps);
	printf("\n");
	bench_table_header(stdout, "dense",
	                   "budget (cap)|>passes|>min batch|>accumulator|>s|>GFLOP/s "
	                   "useful|>sgemm|>dgemm|>% sgemm|>% dgemm|>stored|>stored / cap");
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint64_t budget, per = (uint64_t)c->K * c->d * 12, nxmin;
		struct plan p;
		bench_opts o;
		bench_stats st;
		pspace_matrix_info info;
		struct peaks pk;
		double gf;

		if (want[i] == 1) {
			plan_sim(&J, c->tile, ncpu, 8 * c->d * c->d + c->n * per, &p);
			budget = 8 * c->d * c->d + p.fixed + c->n * per;
		} else {
			budget = budget_for(&J, c->tile, ncpu, want[i]);
		}
		if (budget == 0) {
			printf("(no budget gives %llu passes at this d and tile edge)\n",
			       (unsigned long long)want[i]);
			continue;
		}
		plan_sim(&J, c->tile, ncpu, budget, &p);
		nxmin = (budget - p.max_bytes - 8 * (uint64_t)c->tile * c->tile - p.scratch) / per;
		nxmin = nxmin > c->n ? c->n : nxmin;
		w.o.exec.mem_budget = budget;
		rc = peaks_now(ncpu, c->quick, &pk);
		if (rc != 0) {
			fail(rc, "gemm baseline");
			goto out;
		}
		bench_progress("dense build, budget %s",
		               bench_fmt_bytes(b1, sizeof(b1), (double)budget));
		bench_opts_default(&o);
		o.min_time = 0;
		o.min_reps = c->reps;
		o.max_reps = c->reps;
		o.warmup = 0;
		rc = bench_run_timed(run_dense, &w, &o, &st);
		if (rc == 0)
			rc = pspace_matrix_info_get(&info, s, "F");
		if (rc != 0) {
			fail(rc, "dense build");
			goto out;
		}
		gf = useful / st.median / 1e9;
		if (gf > *best_gf) {
			*best_gf = gf;
			*best_pct = 100 * gf / pk.d;
			*best_spct = 100 * gf / pk.s;
		}
		bench_table_row(stdout, "%s|%llu|%llu|%s|%.2f|%.1f|%.1f|%.1f|%.0f%%|%.0f%%|%s|%.2f",
		                bench_fmt_bytes(b1, sizeof(b1), (double)budget),
		                (unsigned long long)w.passes, (unsigned long long)nxmin,
		                bench_fmt_bytes(b2, sizeof(b2), (double)p.max_bytes), st.median, gf,
		                pk.s, pk.d, 100 * gf / pk.s, 100 * gf / pk.d,
		                bench_fmt_bytes(b3, sizeof(b3), (double)info.tile_bytes),
		                (double)info.tile_bytes / (double)budget);
		if (w.passes != p.passes)
			printf("(the builder made %llu passes, the replicated plan %llu)\n",
			       (unsigned long long)w.passes, (unsigned long long)p.passes);
	}
	bench_progress_end();
	printf("\nmin batch: examples per batch in the fullest pass ((budget - accumulator - one "
	       "tile - scratch) / (K d 12): f64 rows and their f32 copy); accumulator: the largest "
	       "pass's f64 accumulators (upper tiles); sgemm, dgemm: "
	       "BLIS peak GFLOP/s measured just before the row; %% sgemm / %% dgemm: useful "
	       "GFLOP/s over them.\n");
out:
	bench_progress_end();
	pspace_layout_free(layout);
	free(J.j);
	return rc;
}

/* ---- (b) KFAC and EKFAC from layer tensors --------------------------------------------- */

/* Wall-clock marks from the builder's progress callbacks. */
struct marks {
	double factors_end; /* last "kfac" report with done == total */
	double update_first, update_end;
	uint64_t update_first_done;
};

static void mark(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	struct marks *m = ud;
	double t = bench_clock_now();

	if (strcmp(stage, "kfac") == 0 && done == total)
		m->factors_end = t;
	if (strcmp(stage, "ekfac-update") == 0) {
		if (m->update_first == 0) {
			m->update_first = t;
			m->update_first_done = done;
		}
		if (done == total)
			m->update_end = t;
	}
}

/* Flop counts of one example, summed over the layers (linear, T = 1). */
struct lflops {
	double factors; /* 2 in^2 (A, gemm_tn on the activations) + 2 K out^2 (G) */
	double basis;   /* K rows x 2 out a (out + a): the rows path's two gemms per row */
	double update;  /* 2 a^2 (P) + 2 K out^2 (Q) + 2 out a (W^T P2): the tensor path */
};

static void layer_flops(const pspace_layout *l, uint32_t K, struct lflops *f)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < pspace_layout_nlayers(l); i++) {
		const pspace_layer *L = pspace_layout_layer(l, i);
		double out = (double)L->shape[0], in = (double)(L->weight_size / L->shape[0]);
		double a = in + (L->bias ? 1 : 0);

		f->factors += 2 * in * in + 2.0 * K * out * out;
		f->basis += K * 2 * out * a * (out + a);
		f->update += 2 * a * a + 2.0 * K * out * out + 2 * out * a;
	}
}

static int make_net(const struct config *c, uint64_t examples, pspace_refnet **net)
{
	pspace_refnet_opts ro;

	memset(&ro, 0, sizeof(ro));
	ro.spec = c->net;
	ro.examples = examples;
	ro.variant = c->variant;
	ro.seed = 1;
	return pspace_refnet_create(net, &ro);
}

/* One pass of layer-tensor reads in the batches the factor pass uses. */
static int time_layers(pspace_refnet *net, size_t budget, double *seconds, uint64_t *batch)
{
	pspace_layer_source src;
	const pspace_layout *l = pspace_refnet_layout(net);
	pspace_layer_batch *b = calloc(pspace_layout_nlayers(l), sizeof(*b));
	uint64_t per, nx;
	double t0;
	int rc = b ? pspace_refnet_layers(&src, net) : PSPACE_ENOMEM;

	if (rc != 0)
		goto out;
	/* as pspace_build_kfac_factors: half the budget over K d doubles per example */
	per = (uint64_t)src.outputs * pspace_layout_dim(l) * 8;
	nx = budget / 2 / per;
	nx = nx == 0 ? 1 : (nx > src.examples ? src.examples : nx);
	*batch = nx;
	t0 = bench_clock_now();
	for (uint64_t x0 = 0; rc == 0 && x0 < src.examples; x0 += nx) {
		bench_progress("layer tensors: %llu / %llu", (unsigned long long)x0,
		               (unsigned long long)src.examples);
		rc = src.read(src.ud, x0, src.examples - x0 < nx ? src.examples - x0 : nx, b);
	}
	*seconds = bench_clock_now() - t0;
out:
	free(b);
	return rc;
}

static int build_layers(pspace_store *s, pspace_refnet *net, const char *name, pspace_kind kind,
                        int ncpu, size_t budget, uint64_t batch, struct marks *m, double *seconds)
{
	pspace_layer_source src;
	pspace_build_opts o;
	double t0;
	int rc = pspace_refnet_layers(&src, net);

	if (rc != 0)
		return rc;
	memset(m, 0, sizeof(*m));
	pspace_build_opts_default(&o);
	o.kind = kind;
	o.exec.threads = ncpu;
	o.exec.mem_budget = budget;
	o.batch = batch;
	o.progress = mark;
	o.progress_ud = m;
	bench_progress("%s build", pspace_kind_name(kind));
	t0 = bench_clock_now();
	rc = pspace_build_layers(s, name, pspace_refnet_layout(net), &src, &o);
	*seconds = bench_clock_now() - t0;
	m->factors_end -= t0;
	m->update_first -= m->update_first ? t0 : 0;
	m->update_end -= m->update_end ? t0 : 0;
	return rc;
}

static int bench_layers(const struct config *c, pspace_store *s, int ncpu, struct peaks *pk)
{
	pspace_refnet *net = NULL, *enet = NULL;
	pspace_mat *kfac = NULL, *ekfac = NULL;
	const pspace_layout *l;
	struct marks km, em;
	struct lflops f;
	double t_layers, t_kfac, t_eig, t_ekfac, t0, dmax, kgf;
	double e_pass2, e_save, per_ex, proj, ne = (double)c->ekfac_examples;
	double n = (double)c->examples;
	uint64_t batch;
	uint32_t K;
	pspace_layer_source src;
	char b1[32];
	int rc;

	rc = make_net(c, c->examples, &net);
	if (rc == 0 && c->ekfac_examples < c->examples)
		rc = make_net(c, c->ekfac_examples, &enet);
	else
		enet = net;
	if (rc == 0)
		rc = pspace_refnet_layers(&src, net);
	if (rc != 0)
		return fail(rc, "reference network");
	l = pspace_refnet_layout(net);
	K = src.outputs;
	layer_flops(l, K, &f);

	printf("\n## (b) KFAC and EKFAC from layer tensors\n\n");
	bench_info(stdout, "network",
	           "%s, %s, d = %llu (%.1f M parameters), K = %u outputs per example, %llu "
	           "examples (EKFAC: %llu)",
	           c->net,
	           c->variant == PSPACE_VARIANT_EMPIRICAL ? "empirical Fisher"
	                                                  : "exact Fisher of the logits",
	           (unsigned long long)pspace_layout_dim(l), (double)pspace_layout_dim(l) / 1e6, K,
	           (unsigned long long)c->examples, (unsigned long long)c->ekfac_examples);
	bench_info(stdout, "build",
	           "pspace_build_layers, threads = %d, mem_budget = %s (a batch of per-example "
	           "gradient rows is K d doubles per example)",
	           ncpu, bench_fmt_bytes(b1, sizeof(b1), (double)c->layer_budget));
	bench_info(stdout, "flops per example",
	           "factors sum 2 in^2 + 2 K out^2 = %.2f GFLOP; EKFAC second pass from the "
	           "tensors sum 2 a^2 + 2 K out^2 + 2 out a = %.2f GFLOP (a = in + 1; from "
	           "gradient rows it was sum K 2 out a (out + a) = %.1f GFLOP)",
	           f.factors / 1e9, f.update / 1e9, f.basis / 1e9);

	rc = peaks_now(ncpu, c->quick, pk);
	if (rc != 0) {
		fail(rc, "gemm baseline");
		goto out;
	}
	dmax = pk->d;
	rc = time_layers(net, c->layer_budget, &t_layers, &batch);
	if (rc != 0) {
		fail(rc, "layer tensors");
		goto out;
	}
	rc = build_layers(s, net, "kfac", PSPACE_KIND_KFAC, ncpu, c->layer_budget, 0, &km, &t_kfac);
	if (rc != 0) {
		fail(rc, "KFAC build");
		goto out;
	}
	bench_progress("eigendecomposition");
	rc = pspace_mat_open(&kfac, s, "kfac");
	if (rc == 0) {
		t0 = bench_clock_now();
		rc = pspace_ekfac_from_kfac(&ekfac, kfac);
		t_eig = bench_clock_now() - t0;
	}
	pspace_mat_free(ekfac);
	pspace_mat_free(kfac);
	if (rc != 0) {
		fail(rc, "eigendecomposition");
		goto out;
	}
	rc = build_layers(s, enet, "ekfac", PSPACE_KIND_EKFAC, ncpu, c->layer_budget, 0, &em,
	                  &t_ekfac);
	bench_progress_end();
	if (rc != 0) {
		fail(rc, "EKFAC build");
		goto out;
	}
	/* The gap between the factor pass and the update's end is the eigendecomposition
	 * (timed alone above) and the second pass. */
	e_pass2 = em.update_end - em.factors_end - t_eig;
	e_save = t_ekfac - em.update_end;
	per_ex = e_pass2 / ne;
	proj = km.factors_end + t_eig + per_ex * n + e_save;

	printf("\n");
	bench_table_header(stdout, "layers",
	                   "step|>examples|>s|>examples/s|>GFLOP/s|>% dgemm|>% sgemm");
	bench_table_row(
	    stdout, "layer tensors alone (refnet reads, batch %llu)|%llu|%.2f|%.1f|-|-|-",
	    (unsigned long long)batch, (unsigned long long)c->examples, t_layers, n / t_layers);
	kgf = km.factors_end > t_layers ? f.factors * n / (km.factors_end - t_layers) / 1e9 : 0;
	bench_table_row(stdout,
	                "KFAC: factor pass (incl. layer tensors)|%llu|%.2f|%.1f|%.1f|%.0f%%|%.0f%%",
	                (unsigned long long)c->examples, km.factors_end, n / km.factors_end, kgf,
	                100 * kgf / dmax, 100 * kgf / pk->s);
	bench_table_row(stdout, "KFAC: save|-|%.2f|-|-|-|-", t_kfac - km.factors_end);
	bench_table_row(stdout, "**KFAC build**|%llu|%.2f|%.1f|-|-|-",
	                (unsigned long long)c->examples, t_kfac, n / t_kfac);
	bench_table_row(stdout, "eigendecomposition of the factors (alone)|-|%.2f|-|-|-|-", t_eig);
	bench_table_row(stdout, "EKFAC: factor pass|%llu|%.2f|%.1f|-|-|-",
	                (unsigned long long)c->ekfac_examples, em.factors_end, ne / em.factors_end);
	bench_table_row(stdout, "EKFAC: eigendecomposition + second pass|%llu|%.2f|-|-|-|-",
	                (unsigned long long)c->ekfac_examples, em.update_end - em.factors_end);
	bench_table_row(
	    stdout, "EKFAC: second pass (the above - eig. alone)|%llu|%.2f|%.3f|%.1f|%.0f%%|%.0f%%",
	    (unsigned long long)c->ekfac_examples, e_pass2, ne / e_pass2,
	    f.update * ne / e_pass2 / 1e9, 100 * f.update * ne / e_pass2 / 1e9 / dmax,
	    100 * f.update * ne / e_pass2 / 1e9 / pk->s);
	bench_table_row(stdout, "EKFAC: save|-|%.2f|-|-|-|-", e_save);
	bench_table_row(stdout, "**EKFAC build**|%llu|%.2f|-|-|-|-",
	                (unsigned long long)c->ekfac_examples, t_ekfac);
	if (c->ekfac_examples < c->examples)
		bench_table_row(stdout, "**EKFAC build, projected**|%llu|%.1f|-|-|-|-",
		                (unsigned long long)c->examples, proj);
	printf("\nKFAC factor pass GFLOP/s: the factor flops over the pass time less the layer "
	       "tensors alone. EKFAC second pass GFLOP/s: the tensor path's flops (above).");
	if (c->ekfac_examples < c->examples)
		printf(" EKFAC projected to %llu examples: KFAC factor pass + eigendecomposition + "
		       "%llu x the second pass per example + save.",
		       (unsigned long long)c->examples, (unsigned long long)c->examples);
	printf("\n");
out:
	if (enet != net)
		pspace_refnet_free(enet);
	pspace_refnet_free(net);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct config cfg;
	struct peaks pk = {0, 0};
	double d_end = 0, best_pct = 0;
	char root[4096], path[4200];
	pspace_store *s = NULL;
	pspace_store_opts so;
	int ncpu = bench_ncpus(), rc;
	double best = 0, best_spct = 0, t_start = bench_clock_now();

	rc = parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc;
	rc = pspace_init();
	if (rc != 0)
		return fail(rc, "init"), 1;
	if (cfg.json && (rc = bench_json_open(cfg.json)) != 0)
		return fail(rc, "--json"), 1;
	rc = bench_tmpdir_create(cfg.dir, "bench-build", root, sizeof(root));
	if (rc != 0)
		return fail(rc, "tmpdir"), 1;
	snprintf(path, sizeof(path), "%s/s", root);

	printf("# " PROG ": builders' throughput next to BLIS gemm peak\n\n");
	bench_machine_print(stdout);

	pspace_store_opts_default(&so);
	so.nosync = 1;
	rc = pspace_store_open(&s, path, &so);
	if (rc != 0) {
		fail(rc, "store");
		goto out;
	}
	rc = bench_dense(&cfg, s, ncpu, &best, &best_pct, &best_spct);
	if (rc == 0 && !cfg.dense_only)
		rc = bench_layers(&cfg, s, ncpu, &pk);
	if (rc != 0)
		goto out;
	bench_progress("baseline again: dgemm");
	rc = bench_gemm_peak(0, ncpu, PEAK_N, cfg.quick ? 0.3 : 1.0, &d_end);
	bench_progress_end();
	if (rc != 0) {
		fail(rc, "gemm baseline");
		goto out;
	}
	if (!cfg.dense_only)
		printf("\nBaselines: BLIS gemm, square n = %d, %d threads through an rntm_t passed "
		       "to bli_?gemm_ex, median of >= 3 calls, measured before each row of (a) and "
		       "before (b); (b) used sgemm %.1f and dgemm %.1f GFLOP/s; dgemm at the end of "
		       "the run %.1f GFLOP/s (%+.0f%%: the drift).\n",
		       PEAK_N, ncpu, pk.s, pk.d, d_end, 100 * (d_end / pk.d - 1));
	printf("\nSummary: the best Dense build ran at %.1f useful GFLOP/s = %.0f%% of the sgemm "
	       "and %.0f%% of the dgemm peak measured before it; whole run %.0f s.\n",
	       best, best_spct, best_pct, bench_clock_now() - t_start);
out:
	bench_progress_end();
	pspace_store_close(s);
	bench_path_remove(root);
	if (bench_json_close() != 0 && rc == 0)
		rc = fail(PSPACE_EIO, "--json");
	return rc != 0 ? 1 : 0;
}
