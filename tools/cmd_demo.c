/*
 * pspace demo: the main job. Builds the Fisher of a built-in reference
 * network in every representation into a store, prints a table (stored
 * bytes, build time, errors against Dense of mv, vTMv and trace on random
 * vectors) and writes the picture of each representation. This file has
 * the options and the output; demo_run.c does the work.
 */
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "json.h"

static const tool_cmd_doc demo_doc = {
    "demo",
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
    "and read back from the store tile by tile.\n",
    "LowRank stores its K n gradient rows as tiles and streams them; it is skipped\n"
    "only when a band of 8 of its rows does not fit --mem.\n"
    "Exit status: 0, 1 runtime error, 2 usage error.\n",
    0};

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

/* @return EXIT_OK, EXIT_USAGE or TOOL_HELP. */
static int parse(int argc, char **argv, demo_opts *o)
{
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &o->store, 0),
	    TOOL_NUM("params", "N", &o->params, tool_opt_count, 1, 1e12,
	             "about N parameters (default 5000; sizes like 200k work)"),
	    TOOL_NUM("examples", "N", &o->examples, tool_opt_u64, 1, UINT32_MAX,
	             "examples n (default 500)"),
	    TOOL_FN("variant", "V", &o->variant, tool_opt_variant, 0,
	            "classif_logits (exact Fisher, K = 9, default), mc:T,\n"
	            "regression or empirical"),
	    TOOL_STR("model", "SPEC", &o->model,
	             "another network instead: mlp:IN,H1,...,C or cnn:C0xHxW,CH1,...,C"),
	    TOOL_STR("mixed", "SPEC", &o->mixed,
	             "the mixed representation (default 'conv2d=ekfac;*=blockdiag';\n"
	             "see 'pspace build --help')"),
	    TOOL_SEED(&o->seed, "weights, data, labels and vectors (default 1)"),
	    TOOL_NUM("vectors", "K", &o->vectors, tool_opt_u32, 1, 64,
	             "random vectors of the comparison (default 4)"),
	    TOOL_STR("out", "DIR", &o->out_dir,
	             "the images (default: pspace-demo-png beside STORE)"),
	    TOOL_NUM("size", "PX", &o->px, tool_opt_u32, 1, 16384,
	             "image edge in pixels at most (default 512)"),
	    TOOL_SWITCH("no-png", &o->png, 0,
	                "no images (with a large --params, the images of the resident\n"
	                "kinds take a while: they are drawn from products with unit vectors)"),
	    TOOL_MEM(&o->ex.mem_budget, "memory budget (default 1G)"),
	    TOOL_THREADS(&o->ex.threads),
	    TOOL_JSON(&o->json, "the results as JSON"),
	    TOOL_END,
	};
	int rc;

	memset(o, 0, sizeof(*o));
	o->store = "pspace-demo.store";
	o->params = 5000;
	o->examples = 500;
	o->variant.variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	o->variant.name = "classif_logits";
	o->mixed = default_mixed;
	o->seed = 1;
	o->vectors = 4;
	o->px = 512;
	o->png = 1;
	rc = tool_opt_parse(&demo_doc, opts, argc, argv, NULL);
	if (rc)
		return rc;
	if (!o->model)
		choose_model(o);
	if (!o->out_dir)
		default_out(o);
	return EXIT_OK;
}

/* ---- output ----------------------------------------------------------------------------- */

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
	json_kv_string(&w, "variant", o->variant.name);
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
		return rc == TOOL_HELP ? EXIT_OK : rc;
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
