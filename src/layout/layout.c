/*
 * Parameter layouts: the layout text format (README, "Layout files"), its
 * parser with errors that name the file and line, the canonical text,
 * lookups by name and by parameter index, and the layout of one layer.
 */
#include "pspace/layout.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pspace_layout {
	size_t n;             /* layers */
	uint64_t d;           /* parameters */
	pspace_layer *layers; /* n layers, offsets increasing */
};

/* Longest token quoted in an error message, so details stay readable. */
#define QUOTE_MAX 64

static const char *const kind_names[] = {
    [PSPACE_LAYER_LINEAR] = "linear", [PSPACE_LAYER_CONV1D] = "conv1d",
    [PSPACE_LAYER_CONV2D] = "conv2d", [PSPACE_LAYER_EMBEDDING] = "embedding",
    [PSPACE_LAYER_NORM] = "norm",     [PSPACE_LAYER_GENERIC] = "generic",
};

#define NKINDS ((int)(sizeof(kind_names) / sizeof(kind_names[0])))

const char *pspace_layer_kind_name(pspace_layer_kind k)
{
	if ((int)k <= 0 || (int)k >= NKINDS || kind_names[k] == NULL)
		return "?";
	return kind_names[k];
}

static int kind_parse(const char *s, pspace_layer_kind *out)
{
	for (int k = 1; k < NKINDS; k++) {
		if (kind_names[k] != NULL && strcmp(s, kind_names[k]) == 0) {
			*out = (pspace_layer_kind)k;
			return 0;
		}
	}
	return -1;
}

/* Number of weight dims a kind requires; 0 means any of 1..4. */
static int kind_ndim(pspace_layer_kind k)
{
	switch (k) {
	case PSPACE_LAYER_LINEAR: return 2;
	case PSPACE_LAYER_CONV1D: return 3;
	case PSPACE_LAYER_CONV2D: return 4;
	case PSPACE_LAYER_EMBEDDING: return 2;
	case PSPACE_LAYER_NORM: return 1;
	default: return 0;
	}
}

static const char *kind_shape_hint(pspace_layer_kind k)
{
	switch (k) {
	case PSPACE_LAYER_LINEAR: return "OUTxIN";
	case PSPACE_LAYER_CONV1D: return "OUTxINxK";
	case PSPACE_LAYER_CONV2D: return "OUTxINxKHxKW";
	case PSPACE_LAYER_EMBEDDING: return "NUMxDIM";
	case PSPACE_LAYER_NORM: return "C";
	default: return "1 to 4 dims";
	}
}

static int name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Parses "256x784" into dims; @return 0, -1 for bad syntax, -2 for > 4 dims, -3 overflow. */
static int shape_parse(const char *s, int *ndim, uint64_t shape[4])
{
	int nd = 0;
	const char *p = s;

	for (;;) {
		uint64_t v = 0;
		const char *start = p;

		while (*p >= '0' && *p <= '9') {
			unsigned dig = (unsigned)(*p - '0');

			if (v > (UINT64_MAX - dig) / 10)
				return -3;
			v = v * 10 + dig;
			p++;
		}
		if (p == start || v == 0)
			return -1;
		if (nd == 4)
			return -2;
		shape[nd++] = v;
		if (*p == '\0')
			break;
		if (*p != 'x')
			return -1;
		p++;
	}
	*ndim = nd;
	return 0;
}

/* Fills a layer's sizes from its shape; @return 0 or -1 on overflow of 64 bits. */
static int layer_sizes(pspace_layer *ly)
{
	uint64_t w = 1;

	for (int i = 0; i < ly->ndim; i++) {
		if (w > UINT64_MAX / ly->shape[i])
			return -1;
		w *= ly->shape[i];
	}
	ly->weight_size = w;
	ly->bias_size = ly->bias ? ly->shape[0] : 0;
	if (w > UINT64_MAX - ly->bias_size)
		return -1;
	ly->size = w + ly->bias_size;
	return 0;
}

/* Grows the layer array (and the parallel line-number array) to hold one more. */
static int grow(pspace_layer **layers, size_t **lines, size_t n, size_t *cap)
{
	pspace_layer *nl;
	size_t *nli;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? 2 * *cap : 16;
	nl = realloc(*layers, c * sizeof(**layers));
	if (nl == NULL)
		return PSPACE_ENOMEM;
	*layers = nl;
	nli = realloc(*lines, c * sizeof(**lines));
	if (nli == NULL)
		return PSPACE_ENOMEM;
	*lines = nli;
	*cap = c;
	return 0;
}

/*
 * Parses one layer line already split into tokens. @return 0 or
 * PSPACE_EFORMAT with the detail "FILE:LINE: message".
 */
static int parse_layer(pspace_layer *ly, char **tok, int ntok, const char *fn, size_t line)
{
	static const char *const field[] = {"name", "kind", "weight shape", "bias flag"};
	size_t len;
	int nd, want, rc;

	memset(ly, 0, sizeof(*ly));
	if (ntok < 4)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: missing %s (a layer line is NAME KIND SHAPE BIAS)",
		                      fn, line, field[ntok]);
	if (ntok > 4)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: extra field '%.*s' (a layer line is NAME KIND SHAPE "
		                      "BIAS)",
		                      fn, line, QUOTE_MAX, tok[4]);

	len = strlen(tok[0]);
	if (len > PSPACE_LAYER_NAME_MAX)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: layer name '%.*s...' is longer than %d characters",
		                      fn, line, QUOTE_MAX, tok[0], PSPACE_LAYER_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		if (!name_char_ok(tok[0][i]))
			return pspace_err_set(PSPACE_EFORMAT,
			                      "%s:%zu: layer name '%s' has a character outside "
			                      "[A-Za-z0-9_.:/-]",
			                      fn, line, tok[0]);
	}
	memcpy(ly->name, tok[0], len + 1);

	if (kind_parse(tok[1], &ly->kind) != 0)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: unknown layer kind '%.*s' (expected linear, conv1d, "
		                      "conv2d, embedding, norm or generic)",
		                      fn, line, QUOTE_MAX, tok[1]);

	rc = shape_parse(tok[2], &nd, ly->shape);
	if (rc == -2)
		return pspace_err_set(PSPACE_EFORMAT, "%s:%zu: shape '%.*s' has more than 4 dims",
		                      fn, line, QUOTE_MAX, tok[2]);
	if (rc == -3)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: shape '%.*s' has a dim that overflows 64 bits", fn,
		                      line, QUOTE_MAX, tok[2]);
	if (rc != 0)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: shape '%.*s' is not NxMx... with positive integers",
		                      fn, line, QUOTE_MAX, tok[2]);
	ly->ndim = nd;
	want = kind_ndim(ly->kind);
	if (want != 0 && nd != want)
		return pspace_err_set(
		    PSPACE_EFORMAT, "%s:%zu: %s layer needs a %d-dim shape (%s), got '%.*s'", fn,
		    line, kind_names[ly->kind], want, kind_shape_hint(ly->kind), QUOTE_MAX, tok[2]);

	if (strcmp(tok[3], "bias") == 0)
		ly->bias = 1;
	else if (strcmp(tok[3], "nobias") == 0)
		ly->bias = 0;
	else
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: bias flag '%.*s' is neither 'bias' nor 'nobias'", fn,
		                      line, QUOTE_MAX, tok[3]);
	if (ly->bias && ly->kind == PSPACE_LAYER_EMBEDDING)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: an embedding layer has no bias (use 'nobias')", fn,
		                      line);
	if (layer_sizes(ly) != 0)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s:%zu: layer '%s' has more than 2^64-1 parameters", fn,
		                      line, ly->name);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	const pspace_layer *const *x = a, *const *y = b;
	int c = strcmp((*x)->name, (*y)->name);

	/* Ties in line order, so the first definition is found first. */
	if (c == 0)
		c = (*x < *y) ? -1 : (*x > *y);
	return c;
}

/*
 * Reports the duplicate name whose second definition comes first in the
 * file, naming both lines. Sorting is stable by line (see name_cmp), so each
 * run of equal names starts with its first definition.
 */
static int check_unique(const pspace_layer *layers, const size_t *lines, size_t n, const char *fn)
{
	const pspace_layer **sorted;
	size_t dup = SIZE_MAX, first = 0;
	int rc = 0;

	if (n < 2)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	if (sorted == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", fn);
	for (size_t i = 0; i < n; i++)
		sorted[i] = &layers[i];
	qsort(sorted, n, sizeof(*sorted), name_cmp);
	for (size_t i = 1; i < n; i++) {
		size_t b = (size_t)(sorted[i] - layers);

		if (strcmp(sorted[i - 1]->name, sorted[i]->name) != 0)
			continue;
		if (i >= 2 && strcmp(sorted[i - 2]->name, sorted[i]->name) == 0)
			continue; /* only the second definition of a run */
		if (b < dup) {
			dup = b;
			first = (size_t)(sorted[i - 1] - layers);
		}
	}
	if (dup != SIZE_MAX)
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s:%zu: duplicate layer name '%s' (first defined on line %zu)",
		                    fn, lines[dup], layers[dup].name, lines[first]);
	free(sorted);
	return rc;
}

int pspace_layout_parse(pspace_layout **out, const char *text, const char *filename)
{
	const char *fn = filename != NULL ? filename : "<layout>";
	pspace_layout *l = NULL;
	pspace_layer *layers = NULL;
	size_t *lines = NULL;
	size_t n = 0, cap = 0, line = 0;
	uint64_t d = 0;
	char *buf = NULL, *p;
	int rc = 0;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_parse: out is NULL");
	*out = NULL;
	if (text == NULL)
		return pspace_err_set(PSPACE_EINVAL, "%s: layout text is NULL", fn);

	buf = strdup(text);
	if (buf == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", fn);
		goto out;
	}
	for (p = buf; *p != '\0';) {
		char *eol = strchr(p, '\n'), *next, *hash, *tok[5];
		int ntok = 0;

		line++;
		if (eol != NULL) {
			*eol = '\0';
			next = eol + 1;
		} else {
			next = p + strlen(p);
		}
		hash = strchr(p, '#');
		if (hash != NULL)
			*hash = '\0';
		/* Split into at most five tokens: a fifth one is an error. */
		while (*p != '\0' && ntok < 5) {
			while (is_space(*p))
				p++;
			if (*p == '\0')
				break;
			tok[ntok++] = p;
			while (*p != '\0' && !is_space(*p))
				p++;
			if (*p != '\0')
				*p++ = '\0';
		}
		p = next;
		if (ntok == 0)
			continue;
		rc = grow(&layers, &lines, n, &cap);
		if (rc != 0) {
			rc = pspace_err_set(rc, "%s: out of memory", fn);
			goto out;
		}
		rc = parse_layer(&layers[n], tok, ntok, fn, line);
		if (rc != 0)
			goto out;
		if (layers[n].size > UINT64_MAX - d) {
			rc = pspace_err_set(
			    PSPACE_EFORMAT,
			    "%s:%zu: parameter count overflows 64 bits at layer '%s'", fn, line,
			    layers[n].name);
			goto out;
		}
		layers[n].offset = d;
		d += layers[n].size;
		lines[n] = line;
		n++;
	}
	if (n == 0) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: no layers", fn);
		goto out;
	}
	rc = check_unique(layers, lines, n, fn);
	if (rc != 0)
		goto out;

	l = malloc(sizeof(*l));
	if (l == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", fn);
		goto out;
	}
	l->n = n;
	l->d = d;
	l->layers = layers;
	layers = NULL;
	*out = l;
out:
	free(lines);
	free(layers);
	free(buf);
	return rc;
}

/* The largest layout file read. */
#define PSPACE_LAYOUT_FILE_MAX (64 << 20)

int pspace_layout_load(pspace_layout **out, const char *path)
{
	FILE *f = NULL;
	char *text = NULL, *nt;
	size_t len = 0, cap = 0, got;
	int rc = 0;

	if (out == NULL || path == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_load: NULL argument");
	*out = NULL;
	f = fopen(path, "rb");
	if (f == NULL) {
		int e = errno;

		rc = e == ENOENT ? PSPACE_ENOTFOUND : pspace_err_from_errno(e);
		rc = pspace_err_set(rc, "layout file %s: %s", path, strerror(e));
		goto out;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? 2 * cap : 16384;
			nt = realloc(text, cap + 1);
			if (nt == NULL) {
				rc = pspace_err_set(PSPACE_ENOMEM, "layout file %s: out of memory",
				                    path);
				goto out;
			}
			text = nt;
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (len > PSPACE_LAYOUT_FILE_MAX) {
			/* a device or a wrong file: layouts of millions of layers stay far below */
			rc = pspace_err_set(PSPACE_EFORMAT,
			                    "layout file %s: more than %d MiB (not a layout file)",
			                    path, PSPACE_LAYOUT_FILE_MAX >> 20);
			goto out;
		}
		if (got == 0) {
			if (ferror(f)) {
				rc = pspace_err_set(PSPACE_EIO, "layout file %s: read error", path);
				goto out;
			}
			break;
		}
	}
	text[len] = '\0';
	if (memchr(text, '\0', len) != NULL) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: contains a NUL byte (not a text file)",
		                    path);
		goto out;
	}
	rc = pspace_layout_parse(out, text, path);
out:
	free(text);
	if (f != NULL)
		fclose(f);
	return rc;
}

int pspace_layout_flat(pspace_layout **out, uint64_t d)
{
	pspace_layout *l;
	pspace_layer *ly;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_flat: out is NULL");
	*out = NULL;
	if (d == 0)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_flat: d must be at least 1");
	l = malloc(sizeof(*l));
	ly = calloc(1, sizeof(*ly));
	if (l == NULL || ly == NULL) {
		free(ly);
		free(l);
		return pspace_err_set(PSPACE_ENOMEM, "pspace_layout_flat: out of memory");
	}
	strcpy(ly->name, "params");
	ly->kind = PSPACE_LAYER_GENERIC;
	ly->ndim = 1;
	ly->shape[0] = d;
	ly->bias = 0;
	ly->offset = 0;
	ly->weight_size = d;
	ly->bias_size = 0;
	ly->size = d;
	l->n = 1;
	l->d = d;
	l->layers = ly;
	*out = l;
	return 0;
}

void pspace_layout_free(pspace_layout *l)
{
	if (l == NULL)
		return;
	free(l->layers);
	free(l);
}

int pspace_layout_copy(pspace_layout **out, const pspace_layout *l)
{
	pspace_layout *c = NULL;
	int rc = 0;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_copy: out is NULL");
	*out = NULL;
	if (l == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_copy: layout is NULL");
	c = malloc(sizeof(*c));
	if (c)
		c->layers = malloc((l->n ? l->n : 1) * sizeof(*c->layers));
	if (c == NULL || c->layers == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "out of memory copying a layout of %zu layers",
		                    l->n);
		goto out;
	}
	memcpy(c->layers, l->layers, l->n * sizeof(*c->layers));
	c->n = l->n;
	c->d = l->d;
	*out = c;
	c = NULL;
out:
	free(c);
	return rc;
}

int pspace_layout_sub(pspace_layout **out, const pspace_layout *l, size_t i)
{
	pspace_layout *s;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_sub: NULL argument");
	*out = NULL;
	if (l == NULL || i >= l->n)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_sub: layer %zu out of range",
		                      i);
	s = malloc(sizeof(*s));
	if (s != NULL && (s->layers = malloc(sizeof(*s->layers))) == NULL) {
		free(s);
		s = NULL;
	}
	if (s == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "layer %s: out of memory", l->layers[i].name);
	s->layers[0] = l->layers[i];
	s->layers[0].offset = 0;
	s->n = 1;
	s->d = s->layers[0].size;
	*out = s;
	return 0;
}

uint64_t pspace_layout_dim(const pspace_layout *l)
{
	return l != NULL ? l->d : 0;
}

size_t pspace_layout_nlayers(const pspace_layout *l)
{
	return l != NULL ? l->n : 0;
}

const pspace_layer *pspace_layout_layer(const pspace_layout *l, size_t i)
{
	if (l == NULL || i >= l->n)
		return NULL;
	return &l->layers[i];
}

int pspace_layout_find(size_t *index, const pspace_layout *l, const char *name)
{
	if (l == NULL || name == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_find: NULL argument");
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->layers[i].name, name) == 0) {
			if (index != NULL)
				*index = i;
			return 0;
		}
	}
	return pspace_err_set(PSPACE_ENOTFOUND, "layout has no layer named '%.*s'", QUOTE_MAX,
	                      name);
}

/* Out of range (p >= d) gives nlayers, which no caller can dereference by accident. */
size_t pspace_layout_layer_of(const pspace_layout *l, uint64_t p)
{
	size_t lo = 0, hi;

	if (l == NULL || p >= l->d)
		return l != NULL ? l->n : 0;
	/* Largest i with offset <= p: every layer has size >= 1, so it holds p. */
	hi = l->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->layers[mid].offset <= p)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int shape_format(char *dst, size_t cap, const pspace_layer *ly)
{
	int len = 0;

	for (int i = 0; i < ly->ndim; i++) {
		int w = snprintf(dst + len, cap - (size_t)len, "%s%llu", i ? "x" : "",
		                 (unsigned long long)ly->shape[i]);

		if (w < 0 || (size_t)w >= cap - (size_t)len)
			return -1;
		len += w;
	}
	return len;
}

/* Room for 4 dims of 20 digits and 3 'x'. */
#define SHAPE_TEXT_MAX 96

int pspace_layout_text(char **out, const pspace_layout *l)
{
	static const char h0[] = "# name", h1[] = "kind", h2[] = "weight-shape", h3[] = "bias";
	char shape[SHAPE_TEXT_MAX];
	size_t w0 = sizeof(h0) - 1, w1 = sizeof(h1) - 1, w2 = sizeof(h2) - 1, cap, len;
	char *t = NULL;
	int w, rc = 0;

	if (out == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_text: out is NULL");
	*out = NULL;
	if (l == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_layout_text: layout is NULL");
	for (size_t i = 0; i < l->n; i++) {
		const pspace_layer *ly = &l->layers[i];
		size_t a = strlen(ly->name), b = strlen(pspace_layer_kind_name(ly->kind));
		int c = shape_format(shape, sizeof(shape), ly);

		if (c < 0)
			return pspace_err_set(PSPACE_EINVAL, "layer %s: shape cannot be written",
			                      ly->name);
		w0 = a > w0 ? a : w0;
		w1 = b > w1 ? b : w1;
		w2 = (size_t)c > w2 ? (size_t)c : w2;
	}
	cap = (l->n + 1) * (w0 + w1 + w2 + 16) + 1;
	t = malloc(cap);
	if (t == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for a layout's text");
	w = snprintf(t, cap, "%-*s  %-*s  %-*s  %s\n", (int)w0, h0, (int)w1, h1, (int)w2, h2, h3);
	len = (size_t)w;
	for (size_t i = 0; i < l->n; i++) {
		const pspace_layer *ly = &l->layers[i];

		shape_format(shape, sizeof(shape), ly);
		w = snprintf(t + len, cap - len, "%-*s  %-*s  %-*s  %s\n", (int)w0, ly->name,
		             (int)w1, pspace_layer_kind_name(ly->kind), (int)w2, shape,
		             ly->bias ? "bias" : "nobias");
		if (w < 0 || (size_t)w >= cap - len) {
			rc = pspace_err_set(PSPACE_EINVAL, "layer %s: text does not fit", ly->name);
			goto out;
		}
		len += (size_t)w;
	}
	*out = t;
	t = NULL;
out:
	free(t);
	return rc;
}

int pspace_layout_equal(const pspace_layout *a, const pspace_layout *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->n != b->n || a->d != b->d)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		const pspace_layer *x = &a->layers[i], *y = &b->layers[i];

		if (strcmp(x->name, y->name) != 0 || x->kind != y->kind || x->ndim != y->ndim ||
		    x->bias != y->bias)
			return 0;
		for (int j = 0; j < x->ndim; j++) {
			if (x->shape[j] != y->shape[j])
				return 0;
		}
	}
	return 1;
}
