/*
 * pspace export: a matrix (or one layer's block, its diagonal, its factor
 * arrays) as .npy files, or its picture as a PNG.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc export_doc = {
    "export",
    "Writes matrix NAME of STORE to a file: with --npy as a d x d float32 .npy\n"
    "(numpy.load reads it), or one layer's block, the diagonal or the arrays of\n"
    "a factored kind; with --png as the correlation picture of the NNGeometry\n"
    "docs: |F_ij|/sqrt(F_ii F_jj) (0 where a diagonal entry is 0), one pixel per\n"
    "entry, averaged over blocks of entries when d > PX; viridis colours (the\n"
    "diagonal, 1, is yellow, 0 is dark purple); red lines at layer boundaries.\n"
    "Matrices whose float64 copy does not fit in --mem are streamed band by band\n"
    "into the file (d*d*4 bytes: check the size printed first); any kind works.\n",
    NULL, 0};

typedef struct export_opts {
	const char *store, *name, *npy, *png, *block, *layer;
	int diag, factors, lines;
	uint32_t px;
	size_t mem;
} export_opts;

static int parse(int argc, char **argv, export_opts *o)
{
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &o->store, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &o->name, TOOL_OPT_REQUIRED),
	    TOOL_GROUP("The matrix as .npy:"),
	    TOOL_STR("npy", "OUT", &o->npy, "the matrix as a d x d float32 .npy"),
	    TOOL_STR("block", "LAYER", &o->block,
	             "only that layer's diagonal block (size x size, float32)"),
	    TOOL_SWITCH("diag", &o->diag, 1, "the diagonal (d, float64)"),
	    TOOL_SWITCH("factors", &o->factors, 1,
	                "the arrays of a factored kind (KFAC: A.<layer>, G.<layer>;\n"
	                "EKFAC: eigenvectors, eigenvalues, S.<layer>; Diag: diag;\n"
	                "...), each as OUT/<array>.npy, float64 (int64 flags);\n"
	                "OUT is a directory, created if missing"),
	    TOOL_GROUP("The picture as PNG:"),
	    TOOL_STR("png", "OUT", &o->png, "the correlation picture as a PNG"),
	    TOOL_NUM("size", "PX", &o->px, tool_opt_u32, 1, 16384,
	             "image edge in pixels at most (default 512)"),
	    TOOL_STR("layer", "LAYER", &o->layer, "only that layer's block"),
	    TOOL_SWITCH("no-lines", &o->lines, 0, "no layer boundary lines"),
	    TOOL_GROUP("Both:"),
	    TOOL_MEM(&o->mem, "working memory, e.g. 512M, 4G (default 1G)"),
	    TOOL_END,
	};
	int rc;

	memset(o, 0, sizeof(*o));
	o->px = 512;
	o->mem = (size_t)1 << 30;
	o->lines = 1;
	rc = tool_opt_parse(&export_doc, opts, argc, argv, NULL);
	if (rc)
		return rc;
	if (!o->npy == !o->png)
		return tool_usage_error("export", "export: give one of --npy OUT or --png OUT");
	if (o->npy && (o->layer || o->px != 512 || !o->lines))
		return tool_usage_error("export",
		                        "export: --layer, --size and --no-lines go with --png");
	if (o->png && (o->block || o->diag || o->factors))
		return tool_usage_error("export",
		                        "export: --block, --diag and --factors go with --npy");
	if (!!o->block + o->diag + o->factors > 1)
		return tool_usage_error("export",
		                        "export: --block, --diag and --factors exclude each other");
	return 0;
}

/* A version 1.0 .npy header of an n x n little-endian float32 array. */
static int write_npy_header(FILE *f, uint64_t n)
{
	char dict[128];
	unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
	int len = snprintf(dict, sizeof(dict),
	                   "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu, %llu), }",
	                   (unsigned long long)n, (unsigned long long)n);
	int total = (10 + len + 1 + 63) / 64 * 64;

	while (10 + len + 1 < total)
		dict[len++] = ' ';
	dict[len++] = '\n';
	pre[8] = (unsigned char)(len & 0xff);
	pre[9] = (unsigned char)(len >> 8);
	return fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len ? 0
	                                                                                     : -1;
}

/* Rows [o, o + n) x columns [o, o + n), band by band, to @p out.tmp, then renamed. */
static int export_streamed(const export_opts *o, insp_band *b, uint64_t off, uint64_t n, uint64_t h)
{
	char tmp[4096];
	double *band = malloc(h * n * sizeof(double));
	float *row = malloc(n * sizeof(float));
	tool_progress prog;
	FILE *f = NULL;
	int rc = 0, ret = EXIT_OK, renamed = tool_out_tmp(tmp, sizeof(tmp), o->npy);

	if (!band || !row) {
		ret = tool_fail(PSPACE_ENOMEM, "store %s: matrix %s", o->store, o->name);
		goto out;
	}
	f = fopen(tmp, "wb");
	if (!f || write_npy_header(f, n) != 0) {
		fprintf(stderr, "pspace: cannot write %s: %s\n", tmp, strerror(errno));
		ret = EXIT_RUNTIME;
		goto out;
	}
	tool_progress_start(&prog, "export", n);
	for (uint64_t r0 = 0; r0 < n; r0 += h) {
		uint64_t hh = n - r0 < h ? n - r0 : h;

		rc = insp_band_get(b, off + r0, hh, band);
		if (rc)
			break;
		for (uint64_t a = 0; a < hh; a++) {
			for (uint64_t c = 0; c < n; c++)
				row[c] = (float)band[a * n + c];
			if (fwrite(row, sizeof(float), n, f) != n) {
				rc = PSPACE_EIO;
				break;
			}
		}
		if (rc)
			break;
		tool_progress_update(&prog, r0 + hh);
	}
	tool_progress_end(&prog);
	if (rc == 0) {
		rc = fclose(f) == 0 ? 0 : PSPACE_EIO;
		f = NULL;
	}
	if (rc == PSPACE_EIO) {
		fprintf(stderr, "pspace: cannot write %s: %s\n", tmp, strerror(errno));
		ret = EXIT_RUNTIME;
	} else if (rc) {
		ret = tool_fail(rc, "store %s: matrix %s: export", o->store, o->name);
	} else if (renamed && rename(tmp, o->npy) != 0) {
		fprintf(stderr, "pspace: cannot rename %s to %s: %s\n", tmp, o->npy,
		        strerror(errno));
		ret = EXIT_RUNTIME;
	}
out:
	if (f)
		fclose(f);
	if (ret != EXIT_OK && renamed)
		remove(tmp);
	free(row);
	free(band);
	return ret;
}

/* The whole matrix or one layer's block. */
static int export_square(const export_opts *o, pspace_store *s, pspace_mat *m)
{
	const pspace_layout *L = pspace_mat_layout(m);
	uint64_t off = 0, n = pspace_mat_dim(m), h, need, buf_bytes;
	insp_band *b = NULL;
	double *buf = NULL;
	char b1[32], b2[32];
	int rc, ret = EXIT_OK, inmem;

	if (o->block) {
		size_t li;

		if (pspace_layout_find(&li, L, o->block) != 0) {
			fprintf(stderr, "pspace: store %s: matrix %s: no layer '%s'\n", o->store,
			        o->name, o->block);
			return EXIT_RUNTIME;
		}
		off = pspace_layout_layer(L, li)->offset;
		n = pspace_layout_layer(L, li)->size;
	}
	need = insp_band_min_mem(s, m, n);
	if (o->mem < need) {
		fprintf(
		    stderr,
		    "pspace: store %s: matrix %s: exporting %llu x %llu to %s needs at least %s "
		    "of working memory (bands of rows), --mem is %s\n",
		    o->store, o->name, (unsigned long long)n, (unsigned long long)n, o->npy,
		    tool_fmt_bytes(need, b1, sizeof(b1)), tool_fmt_bytes(o->mem, b2, sizeof(b2)));
		return EXIT_RUNTIME;
	}
	/* all at once (atomic pspace_npy_write) when a float64 copy fits twice */
	buf_bytes = n * n * sizeof(double);
	inmem = n <= UINT32_MAX && buf_bytes / n == n * sizeof(double) && buf_bytes <= o->mem / 2 &&
	        o->mem - buf_bytes >= need;
	h = n;
	rc = insp_band_open(&b, s, m, off, n, inmem ? o->mem - buf_bytes : o->mem, &h);
	if (rc) {
		ret = tool_fail(rc, "store %s: matrix %s: export", o->store, o->name);
		goto out;
	}
	printf("%s: %llu x %llu float32, %s%s\n", o->npy, (unsigned long long)n,
	       (unsigned long long)n, tool_fmt_bytes(n * n * 4 + 128, b1, sizeof(b1)),
	       inmem ? "" : ", streamed in bands");
	fflush(stdout);
	if (!inmem) {
		ret = export_streamed(o, b, off, n, h);
		goto out;
	}
	buf = malloc(buf_bytes);
	if (!buf) {
		ret = tool_fail(PSPACE_ENOMEM, "store %s: matrix %s", o->store, o->name);
		goto out;
	}
	for (uint64_t r0 = 0; rc == 0 && r0 < n; r0 += h)
		rc = insp_band_get(b, off + r0, n - r0 < h ? n - r0 : h, buf + r0 * n);
	if (rc == 0) {
		uint64_t shape[2] = {n, n};
		rc = pspace_npy_write(o->npy, PSPACE_F32, 2, shape, buf);
	}
	if (rc)
		ret = tool_fail(rc, "store %s: matrix %s: export to %s", o->store, o->name, o->npy);
out:
	free(buf);
	insp_band_close(b);
	return ret;
}

static int export_diag(const export_opts *o, pspace_mat *m)
{
	uint64_t d = pspace_mat_dim(m);
	pspace_exec ex = {0, 0};
	double *v;
	int rc;

	if (d * sizeof(double) >= o->mem) {
		fprintf(stderr,
		        "pspace: store %s: matrix %s: the diagonal (d = %llu) does not fit "
		        "in --mem\n",
		        o->store, o->name, (unsigned long long)d);
		return EXIT_RUNTIME;
	}
	v = malloc(d * sizeof(double));
	if (!v)
		return tool_fail(PSPACE_ENOMEM, "store %s: matrix %s", o->store, o->name);
	ex.mem_budget = (size_t)(o->mem - d * sizeof(double));
	rc = pspace_mat_diag(m, &ex, v);
	if (rc == 0)
		rc = pspace_npy_write(o->npy, PSPACE_F64, 1, &d, v);
	free(v);
	if (rc)
		return tool_fail(rc, "store %s: matrix %s: diagonal to %s", o->store, o->name,
		                 o->npy);
	printf("%s: diagonal, %llu float64\n", o->npy, (unsigned long long)d);
	return EXIT_OK;
}

typedef struct factor_job {
	const export_opts *o;
	pspace_reader *r;
	int ret;
	uint64_t files;
} factor_job;

static int write_factor(const char *name, const pspace_array_info *ai, void *ud)
{
	factor_job *j = ud;
	const export_opts *o = j->o;
	pspace_dtype t = ai->dtype == PSPACE_I64 ? PSPACE_I64 : PSPACE_F64;
	uint64_t cnt = ai->count ? ai->count : 1;
	char path[4096];
	void *buf;
	size_t n;
	int rc;

	n = (size_t)snprintf(path, sizeof(path), "%s/", o->npy);
	for (const char *p = name; *p && n + 5 < sizeof(path); p++)
		path[n++] = *p == '/' ? '_' : *p;
	memcpy(path + n, ".npy", 5);
	if (cnt * 8 > o->mem) {
		fprintf(stderr, "pspace: store %s: matrix %s: array %s does not fit in --mem\n",
		        o->store, o->name, name);
		j->ret = EXIT_RUNTIME;
		return 1;
	}
	buf = malloc(cnt * 8);
	if (!buf) {
		j->ret = tool_fail(PSPACE_ENOMEM, "store %s: matrix %s", o->store, o->name);
		return 1;
	}
	rc = pspace_reader_array(j->r, name, t, buf, cnt);
	if (rc == 0)
		rc = pspace_npy_write(path, t, ai->ndim, ai->shape, buf);
	free(buf);
	if (rc) {
		j->ret = tool_fail(rc, "store %s: matrix %s: array %s to %s", o->store, o->name,
		                   name, path);
		return 1;
	}
	printf("%s\n", path);
	j->files++;
	return 0;
}

static int export_factors(const export_opts *o, pspace_store *s, pspace_mat *m)
{
	factor_job j = {o, NULL, EXIT_OK, 0};
	int rc;

	if (insp_is_tiled(pspace_mat_kind(m))) {
		fprintf(stderr,
		        "pspace: store %s: matrix %s is %s (stored tiles): --factors exports the "
		        "arrays of factored kinds; use --npy alone, --block or --diag\n",
		        o->store, o->name, pspace_kind_name(pspace_mat_kind(m)));
		return EXIT_RUNTIME;
	}
	if (mkdir(o->npy, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "pspace: cannot create directory %s: %s\n", o->npy,
		        strerror(errno));
		return EXIT_RUNTIME;
	}
	rc = pspace_reader_open(&j.r, s, o->name, 0);
	if (rc == 0)
		rc = pspace_reader_foreach_array(j.r, write_factor, &j);
	pspace_reader_close(j.r);
	if (j.ret)
		return j.ret;
	if (rc)
		return tool_fail(rc, "store %s: matrix %s: factors", o->store, o->name);
	/* the paths on stdout are the result; the count is commentary */
	fflush(stdout);
	fprintf(stderr, "pspace: export: %llu arrays written to %s/\n", (unsigned long long)j.files,
	        o->npy);
	return EXIT_OK;
}

int cmd_export(int argc, char **argv)
{
	export_opts o;
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	int ret, rc;

	ret = parse(argc, argv, &o);
	if (ret)
		return ret == TOOL_HELP ? EXIT_OK : ret;
	ret = insp_open_store(o.store, 1, &s);
	if (ret)
		return ret;
	rc = pspace_mat_open(&m, s, o.name);
	if (rc == PSPACE_ENOTFOUND &&
	    pspace_matrix_info_get(&(pspace_matrix_info){0}, s, o.name) != 0) {
		fprintf(stderr, "pspace: store %s: no matrix '%s'\n", o.store, o.name);
		ret = EXIT_RUNTIME;
		goto out;
	}
	if (rc) {
		ret = tool_fail(rc, "store %s: cannot open matrix %s", o.store, o.name);
		goto out;
	}
	if (o.png)
		ret = insp_png_export(s, m, o.name, o.layer, o.px, o.lines, o.mem, o.png);
	else if (o.diag)
		ret = export_diag(&o, m);
	else if (o.factors)
		ret = export_factors(&o, s, m);
	else
		ret = export_square(&o, s, m);
out:
	pspace_mat_free(m);
	pspace_store_close(s);
	return ret;
}
