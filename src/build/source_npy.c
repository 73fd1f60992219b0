/*
 * Gradient sources over .npy files (README, Input formats): Jacobian rows from one or more
 * files of shape (K, n_i, d) or (n_i, d), and layer tensors from one or
 * more directories of <layer>.acts.npy / <layer>.grads.npy, both
 * concatenated along examples. Every shape is checked against the others
 * and the layout when the source is created, so a read fails only on I/O
 * (or an embedding id out of range); reads gather examples across file
 * boundaries by pread, never loading a file whole.
 */
#include "pspace/npy.h"
#include "pspace/source.h"

#include "build/build_impl.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "(2, 3)" for error messages. */
static const char *shape_str(const pspace_npy *f, char *buf, size_t cap)
{
	pspace_npy_info in;
	size_t n;

	pspace_npy_info_get(&in, f);
	n = (size_t)snprintf(buf, cap, "(");

	for (int i = 0; i < in.ndim && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, i ? ", %llu" : "%llu",
		                      (unsigned long long)in.shape[i]);
	if (n < cap)
		snprintf(buf + n, cap - n, in.ndim == 1 ? ",)" : ")");
	return buf;
}

/* @return 1 if a * b * c fits in size_t (stored in *out), else 0. */
static int mul3(uint64_t a, uint64_t b, uint64_t c, size_t *out)
{
	uint64_t r;

	if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) ||
	    r > SIZE_MAX / sizeof(double))
		return 0;
	*out = (size_t)r;
	return 1;
}

/*
 * pspace_npy_read() refusing values pspace_values_bad() finds, naming the
 * file, the element and its index along each axis.
 */
static int read_checked(pspace_npy *f, uint64_t first, uint64_t count, double *out)
{
	int rc = pspace_npy_read(f, first, count, out);
	pspace_npy_info in;
	uint64_t e, idx[sizeof(in.shape) / sizeof(in.shape[0])];
	size_t bad, n;
	char at[160];

	if (rc != 0)
		return rc;
	bad = pspace_values_bad(out, (size_t)count);
	if (bad == count)
		return 0;
	pspace_npy_info_get(&in, f);
	e = first + bad;
	for (int i = in.ndim - 1; i >= 0; i--) {
		idx[i] = in.shape[i] ? e % in.shape[i] : 0;
		e = in.shape[i] ? e / in.shape[i] : 0;
	}
	n = (size_t)snprintf(at, sizeof(at), "[");
	for (int i = 0; i < in.ndim && n < sizeof(at); i++)
		n += (size_t)snprintf(at + n, sizeof(at) - n, i ? ", %llu" : "%llu",
		                      (unsigned long long)idx[i]);
	if (n < sizeof(at))
		snprintf(at + n, sizeof(at) - n, "]");
	return pspace_value_err(out[bad], "%s: element %llu %s", pspace_npy_path(f),
	                        (unsigned long long)(first + bad), at);
}

/* Gradients and activations are float32 or float64 (README, Input formats). */
static int expect_float(const pspace_npy *f, const char *what)
{
	pspace_npy_info in;

	pspace_npy_info_get(&in, f);
	if (in.dtype == PSPACE_F32 || in.dtype == PSPACE_F64)
		return 0;
	return pspace_err_set(PSPACE_EFORMAT, "%s: dtype %s, expected float32 or float64 (%s)",
	                      pspace_npy_path(f), pspace_dtype_name(in.dtype), what);
}

/* ---- Jacobian rows ------------------------------------------------------------------ */

typedef struct jac_npy {
	size_t nfiles;
	pspace_npy **files;
	uint64_t *first; /* first example of each file; first[nfiles] = n */
	uint32_t K;
	uint64_t d;
} jac_npy;

static void jac_free(jac_npy *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; j->files != NULL && i < j->nfiles; i++)
		pspace_npy_close(j->files[i]);
	free(j->files);
	free(j->first);
	free(j);
}

static int jac_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	jac_npy *j = ud;
	uint64_t n = j->first[j->nfiles], d = j->d;
	int rc = 0;

	if (x0 > n || nx > n - x0)
		return pspace_err_set(
		    PSPACE_EINVAL, "Jacobian source: examples [%llu, %llu) of %llu",
		    (unsigned long long)x0, (unsigned long long)(x0 + nx), (unsigned long long)n);
	if (ld < d || (nx > 0 && out == NULL))
		return pspace_err_set(PSPACE_EINVAL,
		                      "Jacobian source: ld %zu < d = %llu or NULL out", ld,
		                      (unsigned long long)d);
	for (size_t i = 0; i < j->nfiles && rc == 0; i++) {
		uint64_t lo = j->first[i], hi = j->first[i + 1], ni = hi - lo;
		uint64_t a = x0 > lo ? x0 : lo, b = x0 + nx < hi ? x0 + nx : hi;

		if (a >= b)
			continue;
		for (uint64_t k = 0; k < j->K && rc == 0; k++) {
			double *dst = out + (k * nx + (a - x0)) * ld;
			uint64_t src = (k * ni + (a - lo)) * d;

			if (ld == d) {
				rc = read_checked(j->files[i], src, (b - a) * d, dst);
				continue;
			}
			for (uint64_t x = 0; x < b - a && rc == 0; x++)
				rc = read_checked(j->files[i], src + x * d, d, dst + x * ld);
		}
	}
	return rc;
}

int pspace_jac_source_npy(pspace_jac_source *out, const char *const *paths, size_t npaths,
                          const pspace_layout *layout)
{
	jac_npy *j = NULL;
	char sb[128];
	size_t ref = 0; /* the file K and d were taken from */
	int rc = 0;

	if (out == NULL || paths == NULL || npaths == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_jac_source_npy: no files");
	memset(out, 0, sizeof(*out));
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		goto nomem;
	j->files = calloc(npaths, sizeof(*j->files));
	j->first = calloc(npaths + 1, sizeof(*j->first));
	if (j->files == NULL || j->first == NULL)
		goto nomem;
	j->nfiles = npaths;
	for (size_t i = 0; i < npaths; i++) {
		pspace_npy_info in;
		uint64_t K, ni, d;

		rc = pspace_npy_open(&j->files[i], paths[i]);
		if (rc != 0)
			goto out;
		rc = expect_float(j->files[i], "Jacobian rows");
		if (rc != 0)
			goto out;
		pspace_npy_info_get(&in, j->files[i]);
		if (in.ndim != 2 && in.ndim != 3) {
			rc = pspace_err_set(
			    PSPACE_EFORMAT,
			    "%s: shape %s is not (K, n, d) or (n, d) (Jacobian rows)", paths[i],
			    shape_str(j->files[i], sb, sizeof(sb)));
			goto out;
		}
		K = in.ndim == 3 ? in.shape[0] : 1;
		ni = in.shape[in.ndim - 2];
		d = in.shape[in.ndim - 1];
		if (K == 0 || K > UINT32_MAX || d == 0) {
			rc = pspace_err_set(PSPACE_EFORMAT,
			                    "%s: shape %s: K = %llu outputs, d = %llu", paths[i],
			                    shape_str(j->files[i], sb, sizeof(sb)),
			                    (unsigned long long)K, (unsigned long long)d);
			goto out;
		}
		if (i == 0) {
			j->K = (uint32_t)K;
			j->d = d;
		} else if (K != j->K) {
			rc = pspace_err_set(PSPACE_EFORMAT,
			                    "%s: K = %llu outputs, but %s has K = %u", paths[i],
			                    (unsigned long long)K, paths[ref], j->K);
			goto out;
		} else if (d != j->d) {
			rc = pspace_err_set(PSPACE_EFORMAT, "%s: %llu columns, but %s has d = %llu",
			                    paths[i], (unsigned long long)d, paths[ref],
			                    (unsigned long long)j->d);
			goto out;
		}
		if (layout != NULL && d != pspace_layout_dim(layout)) {
			rc = pspace_err_set(PSPACE_EFORMAT,
			                    "%s: %llu columns, but the layout has d = %llu",
			                    paths[i], (unsigned long long)d,
			                    (unsigned long long)pspace_layout_dim(layout));
			goto out;
		}
		j->first[i + 1] = j->first[i] + ni;
	}
	out->examples = j->first[npaths];
	out->outputs = j->K;
	out->d = j->d;
	out->read = jac_read;
	out->ud = j;
	j = NULL;
	goto out;
nomem:
	rc = pspace_err_set(PSPACE_ENOMEM, "pspace_jac_source_npy: out of memory");
out:
	jac_free(j);
	return rc;
}

int pspace_jac_source_is_npy(const pspace_jac_source *src)
{
	return src->read == jac_read;
}

void pspace_jac_source_npy_close(pspace_jac_source *src)
{
	if (src == NULL)
		return;
	if (src->read == jac_read)
		jac_free(src->ud);
	memset(src, 0, sizeof(*src));
}

/* ---- layer tensors --------------------------------------------------------------------- */

typedef struct lsrc_layer {
	char name[PSPACE_LAYER_NAME_MAX + 1];
	int emb;      /* embedding: acts are ids */
	uint64_t in;  /* linear/conv: acts' last axis (in_patch) */
	uint64_t out; /* grads' last axis */
	uint64_t num; /* embedding: ids lie in [0, num) */
	uint64_t T;
	pspace_npy **acts, **grads; /* one per directory */
	double *abuf, *gbuf;
	int64_t *ibuf;
	size_t acap, gcap, icap; /* elements */
} lsrc_layer;

typedef struct lsrc {
	size_t nlayers, ndirs;
	lsrc_layer *layers;
	uint64_t *first; /* first example of each directory; first[ndirs] = n */
	uint32_t K;
} lsrc;

static void lsrc_free(lsrc *s)
{
	if (s == NULL)
		return;
	for (size_t l = 0; s->layers != NULL && l < s->nlayers; l++) {
		lsrc_layer *ly = &s->layers[l];

		for (size_t d = 0; d < s->ndirs; d++) {
			if (ly->acts != NULL)
				pspace_npy_close(ly->acts[d]);
			if (ly->grads != NULL)
				pspace_npy_close(ly->grads[d]);
		}
		free(ly->acts);
		free(ly->grads);
		free(ly->abuf);
		free(ly->gbuf);
		free(ly->ibuf);
	}
	free(s->layers);
	free(s->first);
	free(s);
}

/* Grows *buf to at least @p need elements of @p size bytes. */
static int grow(void *bufp, size_t *cap, size_t need, size_t size)
{
	void **buf = bufp, *nb;

	if (need <= *cap && *buf != NULL)
		return 0;
	nb = realloc(*buf, (need ? need : 1) * size);
	if (nb == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "layer source: out of memory (%zu elements)",
		                      need);
	*buf = nb;
	*cap = need;
	return 0;
}

/* Reads examples [a, b) (global) of directory d into layer ly's buffers at row a - x0. */
static int lsrc_read_dir(lsrc *s, lsrc_layer *ly, size_t d, uint64_t x0, uint64_t nx, uint64_t a,
                         uint64_t b)
{
	uint64_t lo = s->first[d], nd = s->first[d + 1] - lo, la = a - lo, rows = b - a;
	uint64_t T = ly->T, ox = a - x0;
	int rc = 0;

	if (ly->emb) {
		rc = pspace_npy_read_i64(ly->acts[d], la * T, rows * T, ly->ibuf + ox * T);
		for (uint64_t i = 0; rc == 0 && i < rows * T; i++) {
			int64_t id = ly->ibuf[ox * T + i];

			if (id < 0 || (uint64_t)id >= ly->num)
				rc = pspace_err_set(
				    PSPACE_EFORMAT,
				    "%s: element %llu: id %lld out of range [0, %llu) of "
				    "layer %s",
				    pspace_npy_path(ly->acts[d]), (unsigned long long)(la * T + i),
				    (long long)id, (unsigned long long)ly->num, ly->name);
		}
	} else {
		rc = read_checked(ly->acts[d], la * T * ly->in, rows * T * ly->in,
		                  ly->abuf + ox * T * ly->in);
	}
	for (uint64_t k = 0; k < s->K && rc == 0; k++)
		rc = read_checked(ly->grads[d], (k * nd + la) * T * ly->out, rows * T * ly->out,
		                  ly->gbuf + (k * nx + ox) * T * ly->out);
	return rc;
}

static int lsrc_read(void *ud, uint64_t x0, uint64_t nx, pspace_layer_batch *batch)
{
	lsrc *s = ud;
	uint64_t n = s->first[s->ndirs];
	int rc = 0;

	if (x0 > n || nx > n - x0 || batch == NULL)
		return pspace_err_set(PSPACE_EINVAL, "layer source: examples [%llu, %llu) of %llu",
		                      (unsigned long long)x0, (unsigned long long)(x0 + nx),
		                      (unsigned long long)n);
	for (size_t l = 0; l < s->nlayers && rc == 0; l++) {
		lsrc_layer *ly = &s->layers[l];
		size_t na = 0, ng = 0;

		if (!mul3(nx, ly->T, ly->emb ? 1 : ly->in, &na) ||
		    !mul3((uint64_t)s->K * nx, ly->T, ly->out, &ng))
			return pspace_err_set(PSPACE_EINVAL,
			                      "layer source: batch of %llu examples "
			                      "too large for layer %s",
			                      (unsigned long long)nx, ly->name);
		rc = ly->emb ? grow(&ly->ibuf, &ly->icap, na, sizeof(int64_t))
		             : grow(&ly->abuf, &ly->acap, na, sizeof(double));
		if (rc == 0)
			rc = grow(&ly->gbuf, &ly->gcap, ng, sizeof(double));
		for (size_t d = 0; d < s->ndirs && rc == 0; d++) {
			uint64_t lo = s->first[d], hi = s->first[d + 1];
			uint64_t a = x0 > lo ? x0 : lo, b = x0 + nx < hi ? x0 + nx : hi;

			if (a < b)
				rc = lsrc_read_dir(s, ly, d, x0, nx, a, b);
		}
		batch[l].T = ly->T;
		batch[l].acts = ly->emb ? NULL : ly->abuf;
		batch[l].ids = ly->emb ? ly->ibuf : NULL;
		batch[l].grads = ly->gbuf;
	}
	return rc;
}

/* Checks axis @p axis of @p f is @p want; @p what says where the value comes from. */
static int expect_axis(const pspace_npy *f, int axis, uint64_t want, const char *what)
{
	pspace_npy_info in;

	pspace_npy_info_get(&in, f);
	if (in.shape[axis] == want)
		return 0;
	return pspace_err_set(PSPACE_EFORMAT, "%s: axis %d is %llu, expected %llu (%s)",
	                      pspace_npy_path(f), axis, (unsigned long long)in.shape[axis],
	                      (unsigned long long)want, what);
}

static int open_in(pspace_npy **f, const char *dir, const char *name, const char *suffix)
{
	size_t len = strlen(dir);
	char *path = malloc(len + strlen(name) + strlen(suffix) + 2);
	int rc;

	if (path == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "layer source: out of memory");
	sprintf(path, "%s%s%s%s", dir, len > 0 && dir[len - 1] != '/' ? "/" : "", name, suffix);
	rc = pspace_npy_open(f, path);
	free(path);
	return rc;
}

/* Opens and checks layer ly's files in directory d; sets n (first layer) or checks it. */
static int lsrc_open_layer(lsrc *s, lsrc_layer *ly, size_t d, const char *dir, int first_layer,
                           uint64_t *n)
{
	pspace_npy_info ai, gi;
	pspace_npy *fa, *fg;
	char what[160], sb[128];
	uint64_t T;
	int rc;

	rc = open_in(&ly->acts[d], dir, ly->name, ".acts.npy");
	if (rc == 0)
		rc = open_in(&ly->grads[d], dir, ly->name, ".grads.npy");
	if (rc != 0)
		return rc;
	fa = ly->acts[d];
	fg = ly->grads[d];
	snprintf(what, sizeof(what), "layer %s", ly->name);
	rc = expect_float(fg, what);
	if (rc == 0 && !ly->emb)
		rc = expect_float(fa, what);
	if (rc != 0)
		return rc;
	pspace_npy_info_get(&ai, fa);
	pspace_npy_info_get(&gi, fg);
	if (ly->emb ? (ai.ndim != 1 && ai.ndim != 2) : (ai.ndim != 2 && ai.ndim != 3))
		return pspace_err_set(PSPACE_EFORMAT, "%s: shape %s is not %s (layer %s)",
		                      pspace_npy_path(fa), shape_str(fa, sb, sizeof(sb)),
		                      ly->emb ? "(n,) or (n, T) ids" : "(n, in) or (n, T, in)",
		                      ly->name);
	if (gi.ndim != 3 && gi.ndim != 4)
		return pspace_err_set(
		    PSPACE_EFORMAT, "%s: shape %s is not (K, n, out) or (K, n, T, out) (layer %s)",
		    pspace_npy_path(fg), shape_str(fg, sb, sizeof(sb)), ly->name);
	if (!ly->emb) {
		snprintf(what, sizeof(what), "in = weight size / out of layer %s", ly->name);
		rc = expect_axis(fa, ai.ndim - 1, ly->in, what);
		if (rc != 0)
			return rc;
	}
	snprintf(what, sizeof(what), "%s of layer %s", ly->emb ? "dim" : "out", ly->name);
	rc = expect_axis(fg, gi.ndim - 1, ly->out, what);
	if (rc != 0)
		return rc;
	if (first_layer) {
		*n = ai.shape[0];
	} else {
		snprintf(what, sizeof(what), "n of the other layers in %s", dir);
		rc = expect_axis(fa, 0, *n, what);
		if (rc != 0)
			return rc;
	}
	snprintf(what, sizeof(what), "n of %s", pspace_npy_path(fa));
	rc = expect_axis(fg, 1, *n, what);
	if (rc != 0)
		return rc;
	T = (ly->emb ? ai.ndim == 2 : ai.ndim == 3) ? ai.shape[1] : 1;
	if (d == 0) {
		ly->T = T;
	} else if (T != ly->T) {
		snprintf(what, sizeof(what), "T of layer %s in the first directory", ly->name);
		if (ai.ndim == (ly->emb ? 2 : 3))
			return expect_axis(fa, 1, ly->T, what);
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s: shape %s has no T axis, expected T = %llu (%s)",
		                      pspace_npy_path(fa), shape_str(fa, sb, sizeof(sb)),
		                      (unsigned long long)ly->T, what);
	}
	if (gi.ndim == 4) {
		snprintf(what, sizeof(what), "T of %s", pspace_npy_path(fa));
		rc = expect_axis(fg, 2, T, what);
	} else if (T != 1) {
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s: shape %s has no T axis, but %s has T = %llu (expected "
		                    "(K, n, T, out))",
		                    pspace_npy_path(fg), shape_str(fg, sb, sizeof(sb)),
		                    pspace_npy_path(fa), (unsigned long long)T);
	}
	if (rc != 0)
		return rc;
	if (s->K == 0) {
		if (gi.shape[0] == 0 || gi.shape[0] > UINT32_MAX)
			return pspace_err_set(PSPACE_EFORMAT, "%s: K = %llu outputs",
			                      pspace_npy_path(fg), (unsigned long long)gi.shape[0]);
		s->K = (uint32_t)gi.shape[0];
		return 0;
	}
	return expect_axis(fg, 0, s->K, "K of the first grads file");
}

/* Copies what the source needs of layer @p L (the layout may be freed after). */
static int lsrc_init_layer(lsrc_layer *ly, const pspace_layer *L, size_t ndirs)
{
	switch (L->kind) {
	case PSPACE_LAYER_LINEAR:
	case PSPACE_LAYER_CONV1D:
	case PSPACE_LAYER_CONV2D:
		ly->in = L->weight_size / L->shape[0];
		ly->out = L->shape[0];
		break;
	case PSPACE_LAYER_EMBEDDING:
		ly->emb = 1;
		ly->num = L->shape[0];
		ly->out = L->shape[1];
		break;
	default:
		return pspace_err_set(
		    PSPACE_ENOTSUP,
		    "layer %s (%s) has no layer tensors: build it from Jacobian rows", L->name,
		    pspace_layer_kind_name(L->kind));
	}
	memcpy(ly->name, L->name, sizeof(ly->name));
	ly->acts = calloc(ndirs, sizeof(*ly->acts));
	ly->grads = calloc(ndirs, sizeof(*ly->grads));
	if (ly->acts == NULL || ly->grads == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "layer source: out of memory");
	return 0;
}

int pspace_layer_source_dirs(pspace_layer_source *out, const pspace_layout *layout,
                             const char *const *dirs, size_t ndirs)
{
	lsrc *s = NULL;
	int rc = 0;

	if (out == NULL || layout == NULL || dirs == NULL || ndirs == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layer_source_dirs: no directories");
	memset(out, 0, sizeof(*out));
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto nomem;
	s->nlayers = pspace_layout_nlayers(layout);
	s->ndirs = ndirs;
	s->layers = calloc(s->nlayers ? s->nlayers : 1, sizeof(*s->layers));
	s->first = calloc(ndirs + 1, sizeof(*s->first));
	if (s->layers == NULL || s->first == NULL)
		goto nomem;
	for (size_t l = 0; l < s->nlayers; l++) {
		rc = lsrc_init_layer(&s->layers[l], pspace_layout_layer(layout, l), ndirs);
		if (rc != 0)
			goto out;
	}
	for (size_t d = 0; d < ndirs; d++) {
		uint64_t n = 0;

		for (size_t l = 0; l < s->nlayers; l++) {
			rc = lsrc_open_layer(s, &s->layers[l], d, dirs[d], l == 0, &n);
			if (rc != 0)
				goto out;
		}
		s->first[d + 1] = s->first[d] + n;
	}
	out->examples = s->first[ndirs];
	out->outputs = s->K;
	out->read = lsrc_read;
	out->ud = s;
	s = NULL;
	goto out;
nomem:
	rc = pspace_err_set(PSPACE_ENOMEM, "pspace_layer_source_dirs: out of memory");
out:
	lsrc_free(s);
	return rc;
}

int pspace_layer_source_is_dirs(const pspace_layer_source *src)
{
	return src->read == lsrc_read;
}

void pspace_layer_source_dirs_close(pspace_layer_source *src)
{
	if (src == NULL)
		return;
	if (src->read == lsrc_read)
		lsrc_free(src->ud);
	memset(src, 0, sizeof(*src));
}
