/*
 * pspace demo: the main job at this stage. Makes a Fisher-like matrix
 * F = J^T J / n from synthetic per-example gradients, stores it as tiles at
 * two precisions, reads every tile back and reports sizes, speed and error.
 */
#include <blis.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

typedef struct demo_opts {
	const char *store;
	uint64_t d;
	uint64_t n;
	uint32_t tile;
	uint64_t seed;
} demo_opts;

static const char demo_help[] =
    "usage: pspace demo [STORE] [--params D] [--examples N] [--tile T] [--seed S]\n\n"
    "Builds a Fisher-like matrix F = J^T J / n of D parameters from N synthetic\n"
    "per-example gradients, writes it into STORE (default ./pspace-demo.store)\n"
    "as f32 and as bf16 tiles, reads every tile back and prints stored bytes,\n"
    "compression ratio, write/read time and the error against the original.\n"
    "Defaults: D = 4096, N = 256, T = the store default.\n";

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s)
{
	double u1 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
	double u2 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Per-example gradients with "layers" of very different scales, as in real
 * networks, so that F's entries span many orders of magnitude. */
static float *make_fisher(const demo_opts *o)
{
	float *j = malloc(sizeof(float) * o->n * o->d);
	float *f = malloc(sizeof(float) * o->d * o->d);
	float *scale = malloc(sizeof(float) * o->d);
	uint64_t s = o->seed;
	float alpha = 1.0f / (float)o->n, beta = 0.0f;

	if (!j || !f || !scale)
		goto fail;
	for (uint64_t p = 0; p < o->d; p++) {
		uint64_t layer = p * 8 / o->d;
		scale[p] = (float)(pow(10.0, -(double)layer / 2.0) * exp(0.5 * rng_normal(&s)));
	}
	for (uint64_t x = 0; x < o->n; x++)
		for (uint64_t p = 0; p < o->d; p++)
			j[x * o->d + p] = (float)rng_normal(&s) * scale[p];
	/* F = J^T J / n: J is n x d row-major. */
	bli_sgemm(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)o->d, (dim_t)o->d, (dim_t)o->n, &alpha,
	          j, (inc_t)o->d, 1, j, (inc_t)o->d, 1, &beta, f, (inc_t)o->d, 1);
	free(j);
	free(scale);
	return f;
fail:
	free(j);
	free(f);
	free(scale);
	return NULL;
}

typedef struct demo_result {
	pspace_matrix_info info;
	double write_s, read_s;
	double max_rel, fro_rel;
} demo_result;

static int write_matrix(pspace_store *s, const char *name, const float *f, const demo_opts *o,
                        pspace_dtype dtype, demo_result *res)
{
	pspace_matrix_desc desc;
	pspace_writer *w = NULL;
	tool_progress prog;
	uint32_t t, nt;
	uint64_t done = 0;
	double t0;
	int rc;

	memset(&desc, 0, sizeof(desc));
	desc.kind = PSPACE_KIND_DENSE;
	desc.d = o->d;
	desc.nblocks = 1;
	desc.tile = o->tile;
	desc.symmetric = 1;
	pspace_codec_opts_default(&desc.codec);
	desc.codec.dtype = dtype;

	rc = pspace_store_remove(s, name);
	if (rc && rc != PSPACE_ENOTFOUND)
		return rc;
	t0 = tool_now();
	rc = pspace_writer_begin(&w, s, name, &desc);
	if (rc)
		return rc;
	rc = pspace_store_info(s, name, &res->info);
	if (rc)
		goto fail;
	t = res->info.tile;
	nt = (uint32_t)((o->d + t - 1) / t);
	tool_progress_start(&prog, name, (uint64_t)nt * (nt + 1) / 2);
	for (uint32_t r = 0; r < nt; r++)
		for (uint32_t c = r; c < nt; c++) {
			const float *src = f + (uint64_t)r * t * o->d + (uint64_t)c * t;
			rc = pspace_writer_put_tile(w, 0, r, c, PSPACE_F32, src, o->d);
			if (rc)
				goto fail;
			tool_progress_update(&prog, ++done);
		}
	tool_progress_end(&prog);
	rc = pspace_writer_finish(w);
	w = NULL;
	if (rc)
		return rc;
	res->write_s = tool_now() - t0;
	return pspace_store_info(s, name, &res->info);
fail:
	pspace_writer_abort(w, 1);
	return rc;
}

static int read_back(pspace_store *s, const char *name, const float *f, const demo_opts *o,
                     demo_result *res)
{
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	pspace_tile_ref ref;
	double err2 = 0, ref2 = 0, maxerr = 0, maxref = 0;
	double t0 = tool_now();
	int done = 0, rc;

	rc = pspace_codec_create(&c);
	if (rc)
		return rc;
	rc = pspace_reader_open(&r, s, name, 0);
	if (rc)
		goto out;
	uint32_t t = pspace_reader_info(r)->tile;
	for (;;) {
		const void *data;
		pspace_tile_header h;

		rc = pspace_reader_next(r, &ref, &done);
		if (rc || done)
			break;
		rc = pspace_reader_view(r, c, &ref, PSPACE_F32, &data, &h);
		if (rc)
			break;
		const float *tile = data;
		for (uint32_t i = 0; i < h.rows; i++)
			for (uint32_t j = 0; j < h.cols; j++) {
				double want = f[((uint64_t)ref.row * t + i) * o->d +
				                (uint64_t)ref.col * t + j];
				double got = tile[(uint64_t)i * h.cols + j];
				double e = fabs(got - want);
				/* off-diagonal tiles stand for both triangles */
				double wgt = ref.row == ref.col ? 1.0 : 2.0;
				err2 += wgt * e * e;
				ref2 += wgt * want * want;
				maxerr = e > maxerr ? e : maxerr;
				maxref = fabs(want) > maxref ? fabs(want) : maxref;
			}
	}
	res->read_s = tool_now() - t0;
	res->fro_rel = ref2 > 0 ? sqrt(err2 / ref2) : 0;
	res->max_rel = maxref > 0 ? maxerr / maxref : 0;
out:
	pspace_reader_close(r);
	pspace_codec_free(c);
	return rc;
}

static int parse(int argc, char **argv, demo_opts *o)
{
	o->store = "pspace-demo.store";
	o->d = 4096;
	o->n = 256;
	o->tile = 0;
	o->seed = 42;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		uint64_t v;

		if (tool_is_help(a)) {
			fputs(demo_help, stdout);
			return -1;
		}
		if (a[0] != '-') {
			o->store = a;
			continue;
		}
		if (i + 1 >= argc || tool_parse_size(argv[i + 1], &v) != 0 || v == 0)
			return tool_usage_error("demo", "%s needs a positive number", a);
		i++;
		if (strcmp(a, "--params") == 0)
			o->d = v;
		else if (strcmp(a, "--examples") == 0)
			o->n = v;
		else if (strcmp(a, "--tile") == 0 && v <= 65536)
			o->tile = (uint32_t)v;
		else if (strcmp(a, "--seed") == 0)
			o->seed = v;
		else
			return tool_usage_error("demo", "unknown option '%s'", a);
	}
	if (o->d > 46000)
		return tool_usage_error("demo", "--params above 46000 needs the out-of-core "
		                                "builder (not in this version)");
	return 0;
}

int cmd_demo(int argc, char **argv)
{
	static const struct {
		const char *name;
		pspace_dtype dtype;
	} runs[] = {{"fisher_f32", PSPACE_F32}, {"fisher_bf16", PSPACE_BF16}};
	demo_opts o;
	demo_result res[2];
	pspace_store *s = NULL;
	pspace_blis_info b;
	float *f = NULL;
	int rc, ret = EXIT_OK;
	char b1[32], b2[32];

	rc = parse(argc, argv, &o);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	rc = pspace_blis_info_get(&b);
	if (rc)
		return tool_fail(rc, "cannot initialize BLIS");
	printf("pspace %s demo: BLIS kernels %s (%s)\n", pspace_version(), b.arch, b.reason);
	printf("Fisher-like F = J^T J / n: d = %llu parameters, n = %llu examples, seed %llu\n",
	       (unsigned long long)o.d, (unsigned long long)o.n, (unsigned long long)o.seed);
	f = make_fisher(&o);
	if (!f)
		return tool_fail(PSPACE_ENOMEM, "cannot allocate the %llu x %llu demo matrix",
		                 (unsigned long long)o.d, (unsigned long long)o.d);
	rc = pspace_store_open(&s, o.store, NULL);
	if (rc) {
		ret = tool_fail(rc, "cannot open store '%s'", o.store);
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		rc = write_matrix(s, runs[i].name, f, &o, runs[i].dtype, &res[i]);
		if (rc) {
			ret = tool_fail(rc, "writing matrix '%s' into '%s'", runs[i].name, o.store);
			goto out;
		}
		rc = read_back(s, runs[i].name, f, &o, &res[i]);
		if (rc) {
			ret = tool_fail(rc, "reading matrix '%s' from '%s'", runs[i].name, o.store);
			goto out;
		}
	}
	printf("\nstore %s\n\n", o.store);
	printf("| matrix      | precision | tile | tiles | raw tiles | stored     | ratio vs f32 "
	       "| write s | read s | max err / max|F| | rel. Frobenius err |\n");
	printf("|-------------|-----------|------|-------|-----------|------------|-------------"
	       "-|---------|--------|------------------|--------------------|\n");
	for (size_t i = 0; i < 2; i++) {
		const pspace_matrix_info *in = &res[i].info;
		double f32_bytes =
		    (double)in->logical_bytes * 4.0 / (double)pspace_dtype_size(in->codec.dtype);
		printf("| %-11s | %-9s | %4u | %5llu | %9llu | %10s | %12.2f | %7.3f | %6.3f | "
		       "%16.3g | %18.3g |\n",
		       in->name, pspace_dtype_name(in->codec.dtype), in->tile,
		       (unsigned long long)in->tiles, (unsigned long long)in->raw_tiles,
		       tool_fmt_bytes(in->tile_bytes, b1, sizeof(b1)),
		       f32_bytes / (double)in->tile_bytes, res[i].write_s, res[i].read_s,
		       res[i].max_rel, res[i].fro_rel);
	}
	printf("\nf32 tiles are lossless (error must be 0); the dense upper triangle of %s "
	       "is stored.\n",
	       tool_fmt_bytes(o.d * o.d * 4, b2, sizeof(b2)));
	if (res[0].max_rel != 0.0) {
		fprintf(stderr, "pspace: demo: f32 round trip was not exact\n");
		ret = EXIT_RUNTIME;
	}
out:
	pspace_store_close(s);
	free(f);
	return ret;
}
