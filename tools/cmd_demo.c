/*
 * pspace demo: the main job. Builds the Fisher of a built-in reference
 * network in every representation into a store, prints a table (stored
 * bytes, build time, errors against Dense of mv, vTMv and trace on random
 * vectors) and writes the picture of each representation. This file has
 * the options and the output; demo_run.c does the work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"
#include "json.h"

static const char demo_help[] =
    "usage: pspace demo [STORE] [--params N] [--examples N] [--out DIR] [options]\n"
    "\n"
    "Builds the Fisher information F of a reference network (a small CNN on synthetic\n"
    "data, cnn:3x8x8,C,C,10: two 3x3 conv2d + relu layers and a linear layer, C chosen\n"
    "so that d is about N parameters) in every representation into STORE (default\n"
    "./pspace-demo.store, created if missing; the demo's matrices of an earlier run\n"
    "are removed first): dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac and\n"
    "a mixed one. Then prints a table: stored bytes and build time of each, and its\n"
    "relative error against Dense (exact up to f32 storage), as the mean over random\n"
    "normal vectors v of\n"
    "  mv     ||M v - F v|| / ||F v||\n"
    "  vTMv   |v'M v - v'F v| / |v'F v|\n"
    "  trace  |tr M - tr F| / |tr F|\n"
    "and writes the NNGeometry-style picture of each, |M_ij| / sqrt(M_ii M_jj), as\n"
    "DIR/<kind>.png. Nothing d x d is held in memory: with a large --params, Dense and\n"
    "BlockDiag are built out of core within --mem (several passes over the examples)\n"
    "and read back from the store tile by tile.\n"
    "\n"
    "Options:\n"
    "  --params N      about N parameters (default 5000; sizes like 200k work)\n"
    "  --examples N    examples n (default 500)\n"
    "  --variant V     classif_logits (exact Fisher, K = 9, default), mc:T,\n"
    "                  regression or empirical\n"
    "  --model SPEC    another network instead: mlp:IN,H1,...,C or cnn:C0xHxW,CH1,...,C\n"
    "  --mixed SPEC    the mixed representation (default 'conv2d=ekfac;*=blockdiag';\n"
    "                  see 'pspace build --help')\n"
    "  --seed S        weights, data, labels and vectors (default 1)\n"
    "  --vectors K     random vectors of the comparison (default 4)\n"
    "  --out DIR       the images (default: pspace-demo-png beside STORE)\n"
    "  --size PX       image edge in pixels at most (default 512)\n"
    "  --no-png        no images (with a large --params, the images of the resident\n"
    "                  kinds take a while: they are drawn from products with unit vectors)\n"
    "  --mem SIZE      memory budget (default 1G)\n"
    "  --threads N     worker threads (default: all cores)\n"
    "  --json          the results as JSON\n"
    "\n"
    "LowRank keeps all K n gradient rows; when they exceed --mem it is skipped.\n"
    "Exit status: 0, 1 runtime error, 2 usage error.\n";

static const char default_mixed[] = "conv2d=ekfac;*=blockdiag";

/* Parameters of cnn:3x8x8,c,c,10: conv 3->c (28c), conv c->c (9c^2 + c), linear 16c->10. */
static uint64_t cnn_params(uint64_t c)
{
	return 28 * c + 9 * c * c + c + 160 * c + 10;
}

static void choose_model(demo_opts *o)
{
	uint64_t c = 1;

	while (cnn_params(c + 1) <= o->params)
		c++;
	/* the nearer of c and c + 1 */
	if (cnn_params(c) < o->params && cnn_params(c + 1) - o->params < o->params - cnn_params(c))
		c++;
	snprintf(o->model_buf, sizeof(o->model_buf), "cnn:3x8x8,%llu,%llu,10",
	         (unsigned long long)c, (unsigned long long)c);
	o->model = o->model_buf;
}

/* The image directory beside the store: dirname(STORE)/pspace-demo-png. */
static void default_out(demo_opts *o)
{
	size_t n = strlen(o->store);
	const char *slash;

	while (n > 1 && o->store[n - 1] == '/')
		n--;
	slash = NULL;
	for (size_t i = 0; i < n; i++)
		if (o->store[i] == '/')
			slash = o->store + i;
	if (!slash)
		snprintf(o->out_buf, sizeof(o->out_buf), "pspace-demo-png");
	else
		snprintf(o->out_buf, sizeof(o->out_buf), "%.*s/pspace-demo-png",
		         (int)(slash - o->store), o->store);
	o->out_dir = o->out_buf;
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || s[0] == '-' || *out < min || *out > max)
		return tool_usage_error("demo",
		                        "demo: %s needs an integer in [%llu, %llu], not '%s'", opt,
		                        (unsigned long long)min, (unsigned long long)max, s);
	return EXIT_OK;
}

/* A count like 5000, 200k, 1.5M (decimal multiples); @return 0 or -1. */
static int parse_count(const char *s, uint64_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !(v >= 1))
		return -1;
	if (*end == 'k' || *end == 'K') {
		v *= 1e3;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v *= 1e6;
		end++;
	}
	if (*end != '\0' || v > 1e12)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int parse_variant(demo_opts *o, const char *v)
{
	uint64_t t;

	o->variant_name = v;
	if (strcmp(v, "classif_logits") == 0)
		o->variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	else if (strcmp(v, "regression") == 0)
		o->variant = PSPACE_VARIANT_REGRESSION;
	else if (strcmp(v, "empirical") == 0)
		o->variant = PSPACE_VARIANT_EMPIRICAL;
	else if (strncmp(v, "mc:", 3) == 0 &&
	         parse_u64("--variant mc:T", v + 3, 1, UINT32_MAX, &t) == 0) {
		o->variant = PSPACE_VARIANT_MC;
		o->mc_samples = (uint32_t)t;
	} else
		return tool_usage_error("demo",
		                        "demo: --variant is classif_logits, mc:T, regression or "
		                        "empirical, not '%s'",
		                        v);
	return EXIT_OK;
}

/* Options with a value (NULL: missing); @return EXIT_OK, EXIT_USAGE, or -1 if unknown. */
static int parse_valued(demo_opts *o, const char *a, const char *v)
{
	static const char *const known[] = {"--params", "--examples", "--variant", "--model",
	                                    "--mixed",  "--seed",     "--vectors", "--out",
	                                    "--size",   "--mem",      "--threads"};
	uint64_t u = 0;
	int rc = EXIT_OK, found = 0;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		found |= strcmp(a, known[i]) == 0;
	if (!found)
		return -1;
	if (!v)
		return tool_usage_error("demo", "demo: %s needs a value", a);
	if (strcmp(a, "--params") == 0) {
		if (parse_count(v, &o->params) != 0)
			return tool_usage_error("demo",
			                        "demo: --params needs a positive number "
			                        "like 5000 or 200k, not '%s'",
			                        v);
	} else if (strcmp(a, "--examples") == 0) {
		rc = parse_u64(a, v, 1, UINT32_MAX, &o->examples);
	} else if (strcmp(a, "--variant") == 0) {
		rc = parse_variant(o, v);
	} else if (strcmp(a, "--model") == 0) {
		o->model = v;
	} else if (strcmp(a, "--mixed") == 0) {
		o->mixed = v;
	} else if (strcmp(a, "--seed") == 0) {
		rc = parse_u64(a, v, 0, UINT64_MAX, &o->seed);
	} else if (strcmp(a, "--vectors") == 0) {
		rc = parse_u64(a, v, 1, 64, &u);
		o->vectors = (uint32_t)u;
	} else if (strcmp(a, "--out") == 0) {
		o->out_dir = v;
	} else if (strcmp(a, "--size") == 0) {
		rc = parse_u64(a, v, 1, 16384, &u);
		o->px = (uint32_t)u;
	} else if (strcmp(a, "--mem") == 0) {
		if (tool_parse_size(v, &u) != 0 || u == 0)
			return tool_usage_error("demo",
			                        "demo: --mem needs a size like 512M, not '%s'", v);
		o->ex.mem_budget = (size_t)u;
	} else if (strcmp(a, "--threads") == 0) {
		rc = parse_u64(a, v, 0, 1024, &u);
		o->ex.threads = (int)u;
	} else {
		return -1;
	}
	return rc;
}

/* @return EXIT_OK, EXIT_USAGE, or -1 after --help. */
static int parse(int argc, char **argv, demo_opts *o)
{
	int npos = 0, rc;

	memset(o, 0, sizeof(*o));
	o->store = "pspace-demo.store";
	o->params = 5000;
	o->examples = 500;
	o->variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	o->variant_name = "classif_logits";
	o->mixed = default_mixed;
	o->seed = 1;
	o->vectors = 4;
	o->px = 512;
	o->png = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (tool_is_help(a)) {
			fputs(demo_help, stdout);
			return -1;
		}
		if (a[0] != '-') {
			if (npos++)
				return tool_usage_error("demo", "demo: unexpected argument '%s'",
				                        a);
			o->store = a;
		} else if (strcmp(a, "--json") == 0) {
			o->json = 1;
		} else if (strcmp(a, "--no-png") == 0) {
			o->png = 0;
		} else {
			rc = parse_valued(o, a, i + 1 < argc ? argv[i + 1] : NULL);
			if (rc < 0)
				return tool_usage_error("demo", "demo: unknown option '%s'", a);
			if (rc)
				return rc;
			i++;
		}
	}
	if (!o->model)
		choose_model(o);
	if (!o->out_dir)
		default_out(o);
	return EXIT_OK;
}

/* ---- output ----------------------------------------------------------------------------- */

static int threads_of(const demo_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return o->ex.threads > 0 ? o->ex.threads : n > 0 ? (int)n : 1;
}

void demo_header(const demo_opts *o, const demo_result *res)
{
	pspace_blis_info b;
	char buf[32];

	if (o->json)
		return;
	if (pspace_blis_info_get(&b) != 0)
		b.arch = b.reason = "?";
	printf("pspace %s demo: the Fisher (%s) of %s in every representation\n", pspace_version(),
	       o->variant_name, o->model);
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

static const char *fmt_err(double v, char *buf, size_t cap)
{
	snprintf(buf, cap, "%.3g", v);
	return buf;
}

static void print_table(const demo_opts *o, const demo_result *res)
{
	char b[32];

	printf("\n| representation | stored bytes | build s |   mv rel.err | vTMv rel.err | trace "
	       "rel.err |\n");
	printf("|----------------|--------------|---------|--------------|--------------|-------"
	       "--------|\n");
	for (size_t i = 0; i < DEMO_NREPS; i++) {
		const demo_rep *r = &res->reps[i];

		char e1[32], e2[32], e3[32];

		if (r->built)
			printf("| %-14s | %12s | %7.2f | %12s | %12s | %13s |\n", r->label,
			       tool_fmt_bytes(r->bytes, b, sizeof(b)), r->build_s,
			       fmt_err(r->mv_err, e1, sizeof(e1)),
			       fmt_err(r->vtmv_err, e2, sizeof(e2)),
			       fmt_err(r->trace_err, e3, sizeof(e3)));
		else
			printf("| %-14s | %12s | %7.2f | %12s | %12s | %13s |\n", r->label, "-",
			       r->build_s, "skipped", "-", "-");
	}
	printf("\nerrors against Dense, mean over %u random normal vectors v; Mixed is '%s'\n",
	       o->vectors, o->mixed);
	for (size_t i = 0; i < DEMO_NREPS; i++)
		if (res->reps[i].note[0])
			printf("%s: %s\n", res->reps[i].label, res->reps[i].note);
	if (o->png) {
		printf("images (|F_ij| / sqrt(F_ii F_jj), at most %u px) in %s:", o->px,
		       o->out_dir);
		for (size_t i = 0; i < DEMO_NREPS; i++)
			if (res->reps[i].png[0])
				printf(" %s.png", res->reps[i].file);
		putchar('\n');
	}
}

static int print_json(const demo_opts *o, const demo_result *res)
{
	pspace_blis_info b;
	json_writer w;

	if (pspace_blis_info_get(&b) != 0)
		b.arch = "?";
	json_init(&w, stdout, 1);
	json_begin_object(&w);
	json_kv_string(&w, "store", o->store);
	json_kv_string(&w, "model", o->model);
	json_kv_string(&w, "variant", o->variant_name);
	json_kv_uint(&w, "d", res->d);
	json_kv_uint(&w, "examples", res->n);
	json_kv_uint(&w, "outputs", res->K);
	json_kv_uint(&w, "layers", res->nlayers);
	json_kv_uint(&w, "seed", o->seed);
	json_kv_uint(&w, "vectors", o->vectors);
	json_kv_string(&w, "mixed", o->mixed);
	json_kv_string(&w, "blis_arch", b.arch);
	json_kv_bool(&w, "out_of_core", res->out_of_core);
	json_kv_string(&w, "png_dir", o->png ? o->out_dir : NULL);
	json_key(&w, "representations");
	json_begin_array(&w);
	for (size_t i = 0; i < DEMO_NREPS; i++) {
		const demo_rep *r = &res->reps[i];

		json_begin_object(&w);
		json_kv_string(&w, "representation", r->label);
		json_kv_string(&w, "kind", pspace_kind_name(r->kind));
		json_kv_string(&w, "matrix", r->name);
		json_kv_bool(&w, "built", r->built);
		json_kv_number(&w, "build_seconds", r->build_s);
		if (r->built) {
			json_kv_uint(&w, "stored_bytes", r->bytes);
			json_kv_number(&w, "mv_rel_err", r->mv_err);
			json_kv_number(&w, "vtmv_rel_err", r->vtmv_err);
			json_kv_number(&w, "trace_rel_err", r->trace_err);
			json_kv_number(&w, "trace", r->trace);
			json_kv_string(&w, "png", r->png[0] ? r->png : NULL);
		} else {
			json_kv_string(&w, "note", r->note);
		}
		json_end_object(&w);
	}
	json_end_array(&w);
	json_end_object(&w);
	return json_finish(&w) ? tool_fail(PSPACE_EIO, "demo: writing JSON") : EXIT_OK;
}

int cmd_demo(int argc, char **argv)
{
	demo_opts o;
	demo_result *res;
	int rc;

	rc = parse(argc, argv, &o);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	res = malloc(sizeof(*res));
	if (!res)
		return tool_fail(PSPACE_ENOMEM, "demo");
	rc = demo_run(&o, res);
	if (rc == EXIT_OK) {
		if (o.json)
			rc = print_json(&o, res);
		else
			print_table(&o, res);
	}
	free(res);
	return rc;
}
