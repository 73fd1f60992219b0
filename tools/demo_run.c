/*
 * pspace demo, the work: builds the Fisher of a reference network in every
 * representation into the store (timed, a progress bar per build),
 * compares each with Dense on random vectors (mv, vTMv) and by its trace,
 * and writes the picture of each. Nothing d x d is held in memory: Dense
 * and BlockDiag are built and read through the store within the budget.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo.h"
#include "inspect.h"

static const demo_rep rep_table[DEMO_NREPS] = {
    {.label = "Dense",
     .name = "fisher_dense",
     .file = "dense",
     .kind = PSPACE_KIND_DENSE,
     .from_layers = 0},
    {.label = "BlockDiag",
     .name = "fisher_blockdiag",
     .file = "blockdiag",
     .kind = PSPACE_KIND_BLOCKDIAG,
     .from_layers = 0},
    {.label = "Diag",
     .name = "fisher_diag",
     .file = "diag",
     .kind = PSPACE_KIND_DIAG,
     .from_layers = 0},
    {.label = "QuasiDiag",
     .name = "fisher_quasidiag",
     .file = "quasidiag",
     .kind = PSPACE_KIND_QUASIDIAG,
     .from_layers = 0},
    {.label = "LowRank",
     .name = "fisher_lowrank",
     .file = "lowrank",
     .kind = PSPACE_KIND_LOWRANK,
     .from_layers = 0},
    {.label = "KFAC",
     .name = "fisher_kfac",
     .file = "kfac",
     .kind = PSPACE_KIND_KFAC,
     .from_layers = 1},
    {.label = "EKFAC",
     .name = "fisher_ekfac",
     .file = "ekfac",
     .kind = PSPACE_KIND_EKFAC,
     .from_layers = 1},
    {.label = "Mixed",
     .name = "fisher_mixed",
     .file = "mixed",
     .kind = PSPACE_KIND_MIXED,
     .from_layers = 1},
};

/* Matrices of the earlier demo, removed as well so that old stores stay tidy. */
static const char *const legacy_names[] = {"fisher_f32", "fisher_bf16"};

/* @return 1 if @p name is @p base or one of its parts "base/...". */
static int is_part_of(const char *name, const char *base)
{
	size_t n = strlen(base);

	return strncmp(name, base, n) == 0 && (name[n] == '\0' || name[n] == '/');
}

static int is_demo_matrix(const char *name)
{
	for (size_t i = 0; i < DEMO_NREPS; i++)
		if (is_part_of(name, rep_table[i].name))
			return 1;
	for (size_t i = 0; i < sizeof(legacy_names) / sizeof(legacy_names[0]); i++)
		if (strcmp(name, legacy_names[i]) == 0)
			return 1;
	return 0;
}

typedef struct name_list {
	char (*names)[PSPACE_NAME_MAX + 1];
	size_t n, cap;
	int nomem;
} name_list;

static int collect_demo(const pspace_matrix_info *in, void *ud)
{
	name_list *l = ud;

	if (!is_demo_matrix(in->name))
		return 0;
	if (tool_grow(&l->names, &l->cap, l->n, sizeof(*l->names)) != 0) {
		l->nomem = 1;
		return 1;
	}
	snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", in->name);
	return 0;
}

/* Removes the matrices of an earlier run, so that reruns work. */
static int remove_previous(const demo_opts *o, pspace_store *s)
{
	name_list l = {NULL, 0, 0, 0};
	int rc = pspace_store_foreach(s, collect_demo, &l);
	int ret = EXIT_OK;

	if (l.nomem)
		rc = PSPACE_ENOMEM;
	if (rc)
		ret = tool_fail(rc, "demo: reading the catalog of store %s", o->store);
	for (size_t i = 0; ret == EXIT_OK && i < l.n; i++) {
		rc = pspace_store_remove(s, l.names[i]);
		if (rc && rc != PSPACE_ENOTFOUND)
			ret = tool_fail(rc, "demo: store %s: removing the earlier demo's matrix %s",
			                o->store, l.names[i]);
	}
	free(l.names);
	return ret;
}

/* ---- builds -------------------------------------------------------------------------- */

typedef struct demo_progress {
	tool_progress bar;
	const char *rep;
	char stage[64];
	char label[96];
	uint64_t total;
	int started;
} demo_progress;

static void on_progress(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	demo_progress *p = ud;

	if (!p->started || strcmp(stage, p->stage) != 0 || total != p->total) {
		if (p->started)
			tool_progress_end(&p->bar);
		snprintf(p->stage, sizeof(p->stage), "%s", stage);
		snprintf(p->label, sizeof(p->label), "%s %s", p->rep, stage);
		p->total = total;
		tool_progress_start(&p->bar, p->label, total);
		p->started = 1;
	}
	tool_progress_update(&p->bar, done);
}

typedef struct byte_sum {
	const char *name;
	uint64_t bytes;
} byte_sum;

static int add_bytes(const pspace_matrix_info *in, void *ud)
{
	byte_sum *b = ud;

	if (is_part_of(in->name, b->name))
		b->bytes += insp_stored_bytes(in);
	return 0;
}

static int build_one(const demo_opts *o, pspace_store *s, pspace_refnet *net, demo_rep *r,
                     demo_result *res)
{
	const pspace_layout *l = pspace_refnet_layout(net);
	pspace_build_opts bo;
	pspace_jac_source js;
	pspace_layer_source ls;
	demo_progress prog;
	byte_sum sum = {r->name, 0};
	char b1[32], b2[32];
	double t0;
	int rc;

	pspace_build_opts_default(&bo);
	bo.kind = r->kind;
	bo.mixed = r->kind == PSPACE_KIND_MIXED ? o->mixed : NULL;
	bo.exec = o->ex;
	memset(&prog, 0, sizeof(prog));
	prog.rep = r->label;
	bo.progress = on_progress;
	bo.progress_ud = &prog;
	t0 = tool_now();
	if (r->from_layers) {
		rc = pspace_refnet_layers(&ls, net);
		if (rc == 0)
			rc = pspace_build_layers(s, r->name, l, &ls, &bo);
	} else {
		rc = pspace_refnet_jacobian(&js, net);
		if (rc == 0)
			rc = pspace_build_jacobian(s, r->name, l, &js, &bo);
	}
	if (prog.started)
		tool_progress_end(&prog.bar);
	r->build_s = tool_now() - t0;
	if (rc == PSPACE_ENOMEM && r->kind == PSPACE_KIND_LOWRANK) {
		/* LowRank writes its rows a band at a time: without room for one it is left out */
		snprintf(r->note, sizeof(r->note),
		         "skipped: a band of its %llu x %llu rows does not fit (%s for 8 rows), "
		         "--mem is %s",
		         (unsigned long long)res->K * res->n, (unsigned long long)res->d,
		         tool_fmt_bytes(8 * 8 * res->d, b1, sizeof(b1)),
		         tool_fmt_bytes(bo.exec.mem_budget ? bo.exec.mem_budget : (1ull << 30), b2,
		                        sizeof(b2)));
		return EXIT_OK;
	}
	if (rc)
		return tool_fail(rc, "demo: building %s matrix %s in store %s", r->label, r->name,
		                 o->store);
	rc = pspace_store_foreach(s, add_bytes, &sum);
	if (rc)
		return tool_fail(rc, "demo: reading the catalog of store %s", o->store);
	r->built = 1;
	r->bytes = sum.bytes;
	return EXIT_OK;
}

/* ---- comparison with Dense ------------------------------------------------------------ */

typedef struct demo_vecs {
	uint64_t d;
	uint32_t k;
	double *V, *FV, *MV; /* k x d each */
	double *vFv;         /* k */
	double trF;
} demo_vecs;

/* M V for the k vectors in one pass, and trace(M). */
static int apply(const demo_opts *o, pspace_store *s, const demo_rep *r, demo_vecs *v, double *Y,
                 double *trace)
{
	pspace_mat *m = NULL;
	int rc = pspace_mat_open(&m, s, r->name);

	if (rc == 0)
		rc = pspace_mat_mm(m, &o->ex, v->k, 1.0, v->V, v->d, 0.0, Y, v->d);
	if (rc == 0)
		rc = pspace_mat_trace(m, &o->ex, trace);
	pspace_mat_free(m);
	if (rc)
		return tool_fail(rc, "demo: store %s: applying %s matrix %s", o->store, r->label,
		                 r->name);
	return EXIT_OK;
}

static double rel(double err, double ref)
{
	return ref != 0 ? err / fabs(ref) : (err == 0 ? 0 : INFINITY);
}

static int compare(const demo_opts *o, pspace_store *s, demo_result *res)
{
	demo_vecs v;
	tool_progress prog;
	size_t bytes;
	int ret = EXIT_OK;

	memset(&v, 0, sizeof(v));
	v.d = res->d;
	v.k = o->vectors;
	bytes = (size_t)v.k * v.d * sizeof(double);
	v.V = malloc(bytes);
	v.FV = malloc(bytes);
	v.MV = malloc(bytes);
	v.vFv = malloc(v.k * sizeof(double));
	if (!v.V || !v.FV || !v.MV || !v.vFv) {
		ret = tool_fail(PSPACE_ENOMEM, "demo: %u vectors of %llu parameters", v.k,
		                (unsigned long long)v.d);
		goto out;
	}
	for (uint32_t j = 0; j < v.k; j++)
		pspace_vec_randn(v.d, o->seed * 7919 + 1000 + j, v.V + (size_t)j * v.d);
	tool_progress_start(&prog, "compare", DEMO_NREPS);
	/* Dense is the reference: exact up to f32 storage */
	ret = apply(o, s, &res->reps[0], &v, v.FV, &v.trF);
	for (uint32_t j = 0; ret == EXIT_OK && j < v.k; j++)
		v.vFv[j] = pspace_vec_dot(v.d, v.V + (size_t)j * v.d, v.FV + (size_t)j * v.d);
	res->reps[0].trace = v.trF;
	tool_progress_update(&prog, 1);
	for (size_t i = 1; ret == EXIT_OK && i < DEMO_NREPS; i++) {
		demo_rep *r = &res->reps[i];

		tool_progress_update(&prog, i + 1);
		if (!r->built)
			continue;
		ret = apply(o, s, r, &v, v.MV, &r->trace);
		if (ret)
			break;
		r->mv_err = r->vtmv_err = 0;
		for (uint32_t j = 0; j < v.k; j++) {
			const double *x = v.V + (size_t)j * v.d, *y = v.MV + (size_t)j * v.d;
			const double *f = v.FV + (size_t)j * v.d;
			double vMv = pspace_vec_dot(v.d, x, y);

			pspace_vec_axpy(v.d, -1.0, f, v.MV + (size_t)j * v.d);
			r->mv_err += rel(pspace_vec_nrm2(v.d, y), pspace_vec_nrm2(v.d, f));
			r->vtmv_err += rel(fabs(vMv - v.vFv[j]), v.vFv[j]);
		}
		r->mv_err /= v.k;
		r->vtmv_err /= v.k;
		r->trace_err = rel(fabs(r->trace - v.trF), v.trF);
	}
	tool_progress_end(&prog);
out:
	free(v.vFv);
	free(v.MV);
	free(v.FV);
	free(v.V);
	return ret;
}

/* ---- images --------------------------------------------------------------------------- */

/* mkdir -p */
static int make_dirs(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return -1;
		buf[i] = path[i];
	}
	return 0;
}

static int images(const demo_opts *o, pspace_store *s, demo_result *res)
{
	uint64_t mem = o->ex.mem_budget ? o->ex.mem_budget : (1ull << 30);
	int ret = EXIT_OK;

	if (make_dirs(o->out_dir) != 0) {
		fprintf(stderr, "pspace: demo: cannot create the image directory %s: %s\n",
		        o->out_dir, strerror(errno));
		return EXIT_RUNTIME;
	}
	for (size_t i = 0; ret == EXIT_OK && i < DEMO_NREPS; i++) {
		demo_rep *r = &res->reps[i];
		pspace_mat *m = NULL;
		int rc;

		if (!r->built)
			continue;
		snprintf(r->png, sizeof(r->png), "%s/%s.png", o->out_dir, r->file);
		rc = pspace_mat_open(&m, s, r->name);
		if (rc)
			ret = tool_fail(rc, "demo: store %s: opening %s", o->store, r->name);
		else
			ret = insp_png_write(s, m, r->name, NULL, o->px, 1, mem, r->png, NULL);
		pspace_mat_free(m);
		if (ret)
			r->png[0] = '\0';
	}
	return ret;
}

static int threads_of(const demo_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return o->ex.threads > 0 ? o->ex.threads : n > 0 ? (int)n : 1;
}

/* The lines before the table: what runs, on what, where. */
static void demo_header(const demo_opts *o, const demo_result *res)
{
	pspace_blis_info b;
	char buf[32];

	if (o->json)
		return;
	if (pspace_blis_info_get(&b) != 0)
		b.arch = b.reason = "?";
	printf("pspace %s demo: the Fisher (%s) of %s in every representation\n", pspace_version(),
	       o->variant.name, o->model);
	printf("d = %llu parameters in %zu layers, n = %llu examples, K = %u outputs, seed %llu\n",
	       (unsigned long long)res->d, res->nlayers, (unsigned long long)res->n, res->K,
	       (unsigned long long)o->seed);
	printf(
	    "BLIS kernels %s (%s), %d threads, memory budget %s\n", b.arch, b.reason, threads_of(o),
	    tool_fmt_bytes(o->ex.mem_budget ? o->ex.mem_budget : (1ull << 30), buf, sizeof(buf)));
	printf("store %s\n", o->store);
	if (res->out_of_core)
		puts("F (d x d) exceeds the memory budget: Dense and BlockDiag are built out of "
		     "core, band by band");
	fflush(stdout);
}

/* ---- the run -------------------------------------------------------------------------- */

static int make_net(const demo_opts *o, pspace_refnet **net)
{
	pspace_refnet_opts ro;
	int rc;

	memset(&ro, 0, sizeof(ro));
	ro.spec = o->model;
	ro.examples = o->examples;
	ro.variant = o->variant.variant;
	ro.mc_samples = o->variant.mc_samples;
	ro.seed = o->seed;
	rc = pspace_refnet_create(net, &ro);
	if (rc == PSPACE_EINVAL)
		return tool_usage_error("demo", "demo: network %s: %s", o->model,
		                        pspace_errdetail());
	if (rc)
		return tool_fail(rc, "demo: network %s", o->model);
	return EXIT_OK;
}

int demo_run(const demo_opts *o, demo_result *res)
{
	pspace_refnet *net = NULL;
	pspace_store *s = NULL;
	pspace_jac_source js;
	uint64_t budget = o->ex.mem_budget ? o->ex.mem_budget : (1ull << 30);
	int ret, rc;

	memset(res, 0, sizeof(*res));
	memcpy(res->reps, rep_table, sizeof(rep_table));
	ret = make_net(o, &net);
	if (ret)
		return ret;
	rc = pspace_refnet_jacobian(&js, net);
	if (rc) {
		ret = tool_fail(rc, "demo: network %s", o->model);
		goto out;
	}
	res->d = js.d;
	res->n = js.examples;
	res->K = js.outputs;
	res->nlayers = pspace_layout_nlayers(pspace_refnet_layout(net));
	res->out_of_core = (double)res->d * ((double)res->d + 1) * 4.0 > (double)budget;
	demo_header(o, res);
	rc = pspace_store_open(&s, o->store, NULL);
	if (rc) {
		ret = tool_fail(rc, "demo: cannot open store %s", o->store);
		goto out;
	}
	ret = remove_previous(o, s);
	for (size_t i = 0; ret == EXIT_OK && i < DEMO_NREPS; i++)
		ret = build_one(o, s, net, &res->reps[i], res);
	if (ret == EXIT_OK)
		ret = compare(o, s, res);
	if (ret == EXIT_OK && o->png)
		ret = images(o, s, res);
out:
	pspace_store_close(s);
	pspace_refnet_free(net);
	return ret;
}
