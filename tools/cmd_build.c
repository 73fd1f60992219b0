/*
 * pspace build STORE NAME --kind KIND ...: builds a matrix from Jacobian
 * rows or layer tensors in .npy files, or from a built-in reference
 * network, with a progress bar per stage and a summary at the end.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "json.h"
#include "opt.h"
#include "par.h"

#define BUILD_MAX_INPUTS 256

static const tool_cmd_doc build_doc = {
    "build",
    "Builds matrix NAME in STORE (created if missing) from per-example gradients:\n"
    "F = (1/n) sum_x sum_k J[k,x,:]^T J[k,x,:] in representation KIND. Inputs are\n"
    "streamed, never loaded whole; several files are concatenated along examples.\n"
    "One input: --jacobian FILE... or --layer-tensors DIR... (with --layout), or\n"
    "--model SPEC --examples N.\n"
    "\n"
    "KIND: dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac, or mixed:SPEC.\n"
    "  kfac and ekfac need layer tensors (--layer-tensors, or --model). ekfac with\n"
    "  --jacobian is the diagonal update of the existing EKFAC NAME, which it replaces.\n"
    "  mixed:SPEC chooses a kind per layer: clauses separated by ';', each a\n"
    "  comma-separated list of selectors, '=' and a kind; a selector is a layer name,\n"
    "  a layer kind (linear, conv1d, conv2d, embedding, norm, generic) or '*'. A layer\n"
    "  takes the kind of the clause naming it, else of the one naming its kind, else\n"
    "  of '*'. Example: --kind 'mixed:linear,conv2d=ekfac;*=blockdiag'. Each layer's\n"
    "  part is stored as NAME/<layer>.\n",
    "A build that fails on its input (malformed, non-finite or too large values)\n"
    "leaves the store as it was; an interrupted dense/blockdiag build (killed, disk\n"
    "full, I/O error) is kept as incomplete, for --resume. STORE must be a store, a\n"
    "new path or an empty directory. Exit status: 0, 1 runtime error, 2 usage.\n"
    "Under mpirun -n P, STORE is sharded: each rank R builds its tile rows of a\n"
    "dense/blockdiag matrix into STORE/shard-R-of-P (other kinds: rank 0 builds,\n"
    "every shard gets a copy; README, \"Beyond one machine\").\n",
    0};

typedef struct build_cli {
	const char *store, *name, *kind_str, *layout_path, *model, *activation;
	const char *inputs[BUILD_MAX_INPUTS];
	size_t ninputs;
	int input_kind; /* 'j' Jacobian, 'l' layer tensors, 0 none */
	uint64_t examples, seed;
	tool_variant variant;
	int precision; /* pspace_dtype; -1: the default */
	int json;
	pspace_build_opts bo;
} build_cli;

typedef struct build_progress {
	tool_progress bar;
	char stage[64];
	int started;
} build_progress;

/*
 * Test hook: PSPACE_TEST_KILL_AT=R:N makes rank R (0 without mpirun) kill
 * itself with SIGKILL at its N-th progress report, a build interrupted at
 * a known point (test_mpi).
 */
static void test_kill(void)
{
	static unsigned long calls;
	const char *v = getenv("PSPACE_TEST_KILL_AT");
	unsigned long at;
	int rank;

	if (v && sscanf(v, "%d:%lu", &rank, &at) == 2 && rank == tool_par_rank() && ++calls >= at)
		raise(SIGKILL);
}

static void on_progress(void *ud, const char *stage, uint64_t done, uint64_t total)
{
	build_progress *p = ud;

	test_kill();
	if (!p->started || strcmp(stage, p->stage) != 0 || total != p->bar.total) {
		if (p->started)
			tool_progress_end(&p->bar);
		snprintf(p->stage, sizeof(p->stage), "%s", stage);
		tool_progress_start(&p->bar, p->stage, total);
		p->started = 1;
	}
	tool_progress_update(&p->bar, done);
}

/* --jacobian and --layer-tensors (o->ival 'j' or 'l'), repeatable, not mixed. */
static int add_input(const tool_opt *o, const char *cmd, const char *v)
{
	build_cli *c = o->value;

	if (c->input_kind && c->input_kind != o->ival)
		return tool_usage_error(cmd, "build: --jacobian and --layer-tensors cannot be "
		                             "mixed");
	if (c->ninputs == BUILD_MAX_INPUTS)
		return tool_usage_error(cmd, "build: more than %d --%s", BUILD_MAX_INPUTS, o->name);
	c->input_kind = o->ival;
	c->inputs[c->ninputs++] = v;
	return EXIT_OK;
}

/* @return EXIT_OK, EXIT_USAGE or TOOL_HELP. */
static int parse(int argc, char **argv, build_cli *c)
{
	pspace_build_opts *o = &c->bo;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &c->store, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &c->name, TOOL_OPT_REQUIRED),
	    TOOL_GROUP("Inputs (one kind):"),
	    TOOL_FN("jacobian", "FILE", c, add_input, 'j',
	            "Jacobian rows, .npy of shape (K, n, d) or (n, d), float32/64"),
	    TOOL_FN("layer-tensors", "DIR", c, add_input, 'l',
	            "a directory with <layer>.acts.npy and <layer>.grads.npy for\n"
	            "every linear/conv/embedding layer of the layout"),
	    TOOL_STR("model", "SPEC", &c->model,
	             "a built-in reference network with synthetic data:\n"
	             "mlp:IN,H1,...,C or cnn:C0xHxW,CH1,...,C (its own layout)"),
	    TOOL_NUM("examples", "N", &c->examples, tool_opt_u64, 1, (double)UINT64_MAX,
	             "--model: number of examples"),
	    TOOL_FN("variant", "V", &c->variant, tool_opt_variant, 0,
	            "--model: classif_logits (exact Fisher, default), mc:T\n"
	            "(Monte-Carlo, T samples), regression (Gauss-Newton),\n"
	            "empirical (gradient at the true label)"),
	    TOOL_STR("activation", "A", &c->activation, "--model: tanh or relu"),
	    TOOL_SEED(&c->seed, "--model: weights, data and labels (default 1)"),
	    TOOL_STR("layout", "FILE", &c->layout_path,
	             "the parameter layout (README, \"Layout files\"); with\n"
	             "--model optional and must match the network"),
	    TOOL_GROUP("Options:"),
	    {.type = TOOL_OPT_VALUE,
	     .name = "kind",
	     .value = &c->kind_str,
	     .value_name = "KIND",
	     .help = "the representation (above)",
	     .flags = TOOL_OPT_REQUIRED},
	    TOOL_CHOICE("precision", "P", &c->precision, tool_precisions,
	                "dense/blockdiag tiles: f32 (default, lossless), f64, bf16, f16"),
	    TOOL_NUM("tile", "N", &o->write.tile, tool_opt_u32, 1, 65536,
	             "tile edge (default: the store's, 512)"),
	    TOOL_NUM("level", "Z", &o->write.codec.level, tool_opt_int, -100, 22,
	             "zstd level (default 1; 0 stores tiles raw)"),
	    TOOL_SWITCH("no-shuffle", &o->write.codec.shuffle, 0, "no byte shuffle before zstd"),
	    TOOL_MEM(&o->exec.mem_budget,
	             "memory budget (default 1G); larger dense builds run out of core"),
	    TOOL_THREADS(&o->exec.threads),
	    TOOL_NUM("batch", "N", &o->batch, tool_opt_u64, 1, (double)UINT64_MAX,
	             "examples per batch read (default: from --mem)"),
	    TOOL_SWITCH("resume", &o->resume, 1,
	                "finish an interrupted dense/blockdiag build of NAME"),
	    TOOL_JSON(&c->json, "the summary as JSON"),
	    TOOL_END,
	};
	int rc;

	memset(c, 0, sizeof(*c));
	pspace_build_opts_default(&c->bo);
	c->variant.variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	c->seed = 1;
	c->precision = -1;
	rc = tool_opt_parse(&build_doc, opts, argc, argv, NULL);
	if (rc)
		return rc;
	if (c->precision >= 0)
		o->write.codec.dtype = (pspace_dtype)c->precision;
	if (strncmp(c->kind_str, "mixed:", 6) == 0) {
		c->bo.kind = PSPACE_KIND_MIXED;
		c->bo.mixed = c->kind_str + 6;
	} else if (pspace_kind_parse(&c->bo.kind, c->kind_str) != 0 ||
	           c->bo.kind == PSPACE_KIND_IDENTITY || c->bo.kind == PSPACE_KIND_IMPLICIT ||
	           c->bo.kind == PSPACE_KIND_MIXED) {
		return tool_usage_error(
		    "build",
		    "build: --kind is dense, blockdiag, diag, quasidiag, lowrank, "
		    "kfac, ekfac or mixed:SPEC, not '%s'",
		    c->kind_str);
	}
	if (!!c->model + !!c->input_kind != 1)
		return tool_usage_error("build", "build: give one input: --jacobian, "
		                                 "--layer-tensors or --model");
	if (c->model && c->examples == 0)
		return tool_usage_error("build", "build: --model needs --examples N");
	if (!c->model && (c->examples || c->activation))
		return tool_usage_error("build", "build: --examples, --activation go with --model");
	if (!c->model && !c->layout_path)
		return tool_usage_error("build", "build: --layout is required (but with --model)");
	return EXIT_OK;
}

/* Totals over matrix NAME and its parts NAME/<layer> (Mixed). */
typedef struct build_totals {
	const char *name;
	size_t len;
	uint64_t matrices, tiles, tile_bytes, logical_bytes, arrays, array_bytes;
	pspace_dtype dtype;
} build_totals;

static int add_totals(const pspace_matrix_info *in, void *ud)
{
	build_totals *t = ud;

	if (strncmp(in->name, t->name, t->len) != 0 ||
	    (in->name[t->len] != '\0' && in->name[t->len] != '/'))
		return 0;
	t->matrices++;
	t->tiles += in->tiles;
	t->tile_bytes += in->tile_bytes;
	t->logical_bytes += in->logical_bytes;
	t->arrays += in->arrays;
	t->array_bytes += in->array_bytes;
	if (in->tiles)
		t->dtype = in->codec.dtype;
	return 0;
}

/* Under mpirun: the totals of every shard, summed with the store's hook. */
static int sum_totals(pspace_store *s, build_totals *t, int rc)
{
	const pspace_shard_hooks *h = pspace_store_shard(s);
	double v[6] = {(double)t->matrices,      (double)t->tiles,  (double)t->tile_bytes,
	               (double)t->logical_bytes, (double)t->arrays, (double)t->array_bytes};

	rc = h->sum(h->ud, v, 6, rc);
	t->tiles = (uint64_t)v[1];
	t->tile_bytes = (uint64_t)v[2];
	t->logical_bytes = (uint64_t)v[3];
	t->arrays = (uint64_t)v[4];
	t->array_bytes = (uint64_t)v[5];
	return rc;
}

static int summary(const build_cli *c, pspace_store *s, uint64_t d, uint64_t n, uint32_t K,
                   double secs)
{
	build_totals t;
	json_writer w;
	double ratio;
	char b1[32], b2[32];
	int rc;

	memset(&t, 0, sizeof(t));
	t.name = c->name;
	t.len = strlen(c->name);
	rc = pspace_store_foreach(s, add_totals, &t);
	if (tool_par_active())
		rc = sum_totals(s, &t, rc);
	if (rc)
		return tool_fail(rc, "build: reading the catalog of store %s", c->store);
	ratio = t.tile_bytes ? (double)t.logical_bytes / (double)t.tile_bytes : 0.0;
	if (c->json) {
		json_init(&w, stdout, 0);
		json_begin_object(&w);
		json_kv_string(&w, "store", c->store);
		json_kv_string(&w, "name", c->name);
		json_kv_string(&w, "kind", c->kind_str);
		json_kv_uint(&w, "d", d);
		json_kv_uint(&w, "examples", n);
		json_kv_uint(&w, "outputs", K);
		json_kv_number(&w, "seconds", secs);
		json_kv_uint(&w, "matrices", t.matrices);
		json_kv_uint(&w, "stored_bytes", t.tile_bytes + t.array_bytes);
		json_kv_uint(&w, "tiles", t.tiles);
		json_kv_uint(&w, "tile_bytes", t.tile_bytes);
		json_kv_uint(&w, "arrays", t.arrays);
		json_kv_uint(&w, "array_bytes", t.array_bytes);
		if (t.tiles)
			json_kv_number(&w, "compression_ratio", ratio);
		if (tool_par_active())
			json_kv_uint(&w, "shards", (uint64_t)tool_par_size());
		json_end_object(&w);
		return json_finish(&w) ? tool_fail(PSPACE_EIO, "build: writing JSON") : EXIT_OK;
	}
	printf("built %s '%s' in %s: d = %llu, n = %llu examples x %u outputs, %.3f s\n",
	       c->kind_str, c->name, c->store, (unsigned long long)d, (unsigned long long)n, K,
	       secs);
	printf("stored %s", tool_fmt_bytes(t.tile_bytes + t.array_bytes, b1, sizeof(b1)));
	if (t.tiles)
		printf(": %llu %s tiles, %s at stored precision, compression ratio %.2f",
		       (unsigned long long)t.tiles, pspace_dtype_name(t.dtype),
		       tool_fmt_bytes(t.logical_bytes, b2, sizeof(b2)), ratio);
	if (t.arrays)
		printf("%s%llu arrays", t.tiles ? ", " : ": ", (unsigned long long)t.arrays);
	if (t.matrices > 1)
		printf(" (in %llu matrices)", (unsigned long long)t.matrices);
	if (tool_par_active())
		printf(" over %d shards", tool_par_size());
	putchar('\n');
	return EXIT_OK;
}

/* Under mpirun, the sharded builds of libpspace_mpi (tools/par.h). */
static int build_jacobian(pspace_store *s, const char *name, const pspace_layout *l,
                          const pspace_jac_source *src, const pspace_build_opts *o)
{
	return tool_par_active() ? tool_par_build_jacobian(s, name, l, src, o)
	                         : pspace_build_jacobian(s, name, l, src, o);
}

static int build_layers(pspace_store *s, const char *name, const pspace_layout *l,
                        const pspace_layer_source *src, const pspace_build_opts *o)
{
	return tool_par_active() ? tool_par_build_layers(s, name, l, src, o)
	                         : pspace_build_layers(s, name, l, src, o);
}

static int uses_layers(const build_cli *c)
{
	return c->bo.kind == PSPACE_KIND_KFAC || c->bo.kind == PSPACE_KIND_EKFAC ||
	       c->bo.kind == PSPACE_KIND_MIXED;
}

/* The build from a reference network. */
static int run_model(build_cli *c, pspace_store *s, const pspace_layout *file_layout, uint64_t *d,
                     uint64_t *n, uint32_t *K)
{
	pspace_refnet_opts ro;
	pspace_refnet *net = NULL;
	pspace_jac_source js;
	pspace_layer_source ls;
	const pspace_layout *l;
	int rc = EXIT_OK, lrc;

	memset(&ro, 0, sizeof(ro));
	ro.spec = c->model;
	ro.activation = c->activation;
	ro.examples = c->examples;
	ro.variant = c->variant.variant;
	ro.mc_samples = c->variant.mc_samples;
	ro.seed = c->seed;
	lrc = pspace_refnet_create(&net, &ro);
	if (lrc == PSPACE_EINVAL)
		return tool_usage_error("build", "build: --model %s: %s", c->model,
		                        pspace_errdetail());
	if (lrc)
		return tool_fail(lrc, "build: --model %s", c->model);
	l = pspace_refnet_layout(net);
	*d = pspace_layout_dim(l);
	if (file_layout && !pspace_layout_equal(l, file_layout)) {
		fprintf(stderr,
		        "pspace: build: layout file %s (d = %llu) does not match the network %s "
		        "(d = %llu)\n",
		        c->layout_path, (unsigned long long)pspace_layout_dim(file_layout),
		        c->model, (unsigned long long)*d);
		rc = EXIT_RUNTIME;
		goto out;
	}
	if (uses_layers(c)) {
		lrc = pspace_refnet_layers(&ls, net);
		*n = ls.examples;
		*K = ls.outputs;
		if (lrc == 0)
			lrc = build_layers(s, c->name, l, &ls, &c->bo);
	} else {
		lrc = pspace_refnet_jacobian(&js, net);
		*n = js.examples;
		*K = js.outputs;
		if (lrc == 0)
			lrc = build_jacobian(s, c->name, l, &js, &c->bo);
	}
	if (lrc)
		rc = tool_fail(lrc, "build: matrix '%s' in store %s", c->name, c->store);
out:
	pspace_refnet_free(net);
	return rc;
}

/* The build from .npy files. */
static int run_files(build_cli *c, pspace_store *s, const pspace_layout *l, uint64_t *n,
                     uint32_t *K)
{
	pspace_jac_source js;
	pspace_layer_source ls;
	int lrc;

	if (c->input_kind == 'j') {
		lrc = pspace_jac_source_npy(&js, c->inputs, c->ninputs, l);
		if (lrc)
			return tool_fail(lrc, "build: Jacobian input");
		*n = js.examples;
		*K = js.outputs;
		lrc = build_jacobian(s, c->name, l, &js, &c->bo);
		pspace_jac_source_npy_close(&js);
	} else {
		lrc = pspace_layer_source_dirs(&ls, l, c->inputs, c->ninputs);
		if (lrc)
			return tool_fail(lrc, "build: layer-tensor input");
		*n = ls.examples;
		*K = ls.outputs;
		lrc = build_layers(s, c->name, l, &ls, &c->bo);
		pspace_layer_source_dirs_close(&ls);
	}
	if (lrc)
		return tool_fail(lrc, "build: matrix '%s' in store %s", c->name, c->store);
	return EXIT_OK;
}

/*
 * A store is built into a new or empty directory, or a store (data.mdb):
 * anything else is refused rather than filled with a store's files.
 */
static int check_store_dir(const char *path)
{
	struct stat st;
	struct dirent *e;
	DIR *dir;
	char *data;
	uint32_t nranks = 0, present = 0;
	int is_store, other = 0;

	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return EXIT_OK; /* made, or refused, by the store */
	data = malloc(strlen(path) + sizeof("/data.mdb"));
	if (!data)
		return tool_fail(PSPACE_ENOMEM, "build: store %s", path);
	sprintf(data, "%s/data.mdb", path);
	is_store = stat(data, &st) == 0;
	free(data);
	dir = is_store ? NULL : opendir(path);
	while (dir && (e = readdir(dir)) != NULL)
		other |= strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
		         strcmp(e->d_name, "lock.mdb") != 0;
	if (dir)
		closedir(dir);
	/* a sharded store: opening it says so (and what to run) */
	if (!other || (pspace_shard_scan(&nranks, &present, path) == 0 && nranks > 0))
		return EXIT_OK;
	fprintf(stderr,
	        "pspace: build: %s is a directory that is neither empty nor a pspace store (no "
	        "data.mdb): give a new or empty directory\n",
	        path);
	return EXIT_RUNTIME;
}

int cmd_build(int argc, char **argv)
{
	build_cli c;
	build_progress prog;
	pspace_store *s = NULL;
	pspace_layout *layout = NULL;
	uint64_t d = 0, n = 0;
	uint32_t K = 0;
	double t0;
	int rc, lrc;

	rc = parse(argc, argv, &c);
	if (rc)
		return rc == TOOL_HELP ? EXIT_OK : rc;
	/* a sharded store is a directory of shards, checked by tool_par_open */
	rc = tool_par_active() ? EXIT_OK : check_store_dir(c.store);
	if (rc)
		return rc;
	if (c.layout_path) {
		lrc = pspace_layout_load(&layout, c.layout_path);
		if (lrc)
			return tool_fail(lrc, "build: layout %s", c.layout_path);
		d = pspace_layout_dim(layout);
	}
	memset(&prog, 0, sizeof(prog));
	c.bo.progress = on_progress;
	c.bo.progress_ud = &prog;
	lrc = tool_par_active() ? tool_par_open(&s, c.store, 0)
	                        : pspace_store_open(&s, c.store, NULL);
	if (lrc) {
		rc = tool_fail(lrc, "build: cannot open store %s", c.store);
		goto out;
	}
	t0 = tool_now();
	if (c.model)
		rc = run_model(&c, s, layout, &d, &n, &K);
	else
		rc = run_files(&c, s, layout, &n, &K);
	if (prog.started)
		tool_progress_end(&prog.bar);
	if (rc == EXIT_OK)
		rc = summary(&c, s, d, n, K, tool_now() - t0);
out:
	if (tool_par_active())
		tool_par_close(s);
	else
		pspace_store_close(s);
	pspace_layout_free(layout);
	return rc;
}
