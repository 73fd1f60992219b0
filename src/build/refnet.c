/*
 * Reference networks (README, build): parsing the network spec, the layout, seeded
 * weights and synthetic data, and the Jacobian-row and layer-tensor sources
 * that run the passes of refnet_pass.c on the fly.
 *
 * Randomness is counter-based: every draw depends only on (seed, stream,
 * example), so any example can be recomputed alone, in any batch.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/refnet_impl.h"
#include "common/error.h"

/* ---- scratch ---------------------------------------------------------------- */

static void free_vec(double **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void pspace_rn_work_free(const pspace_refnet *net, rn_work *w)
{
	free_vec(w->a, net->nl);
	free_vec(w->z, net->nl);
	free_vec(w->g, net->nl);
	free(w->D);
	free(w->u);
	free(w->v);
	free(w->p);
	free(w->fd);
	free(w->s);
	free(w->q);
	memset(w, 0, sizeof(*w));
}

int pspace_rn_work_alloc(const pspace_refnet *net, uint32_t K, rn_work *w)
{
	size_t maxin = 1, maxout = 1;
	int ok;

	memset(w, 0, sizeof(*w));
	w->a = calloc(net->nl, sizeof(*w->a));
	w->z = calloc(net->nl, sizeof(*w->z));
	w->g = calloc(net->nl, sizeof(*w->g));
	ok = w->a && w->z && w->g;
	for (size_t l = 0; ok && l < net->nl; l++) {
		const rn_layer *y = &net->L[l];
		size_t ni = (size_t)y->T * y->in, no = (size_t)y->T * y->out;

		maxin = ni > maxin ? ni : maxin;
		maxout = no > maxout ? no : maxout;
		w->a[l] = malloc(ni * sizeof(double));
		w->z[l] = malloc(no * sizeof(double));
		w->g[l] = malloc(K * no * sizeof(double));
		ok = w->a[l] && w->z[l] && w->g[l];
	}
	if (ok) {
		w->D = malloc(K * maxin * sizeof(double));
		w->u = malloc(net->in0 * sizeof(double));
		w->v = malloc((size_t)K * net->C * sizeof(double));
		w->p = malloc(net->C * sizeof(double));
		w->fd = malloc(maxout * sizeof(double));
		w->s = malloc((net->C + 1) * sizeof(double));
		w->q = malloc(net->C * sizeof(uint32_t));
		ok = w->D && w->u && w->v && w->p && w->fd && w->s && w->q;
	}
	if (!ok) {
		pspace_rn_work_free(net, w);
		return pspace_err_set(PSPACE_ENOMEM, "refnet '%s': out of memory for pass scratch",
		                      net->spec);
	}
	return 0;
}

/* ---- network structure -------------------------------------------------------- */

/* Parses a comma list of positive integers (<= 2^31) into v. @return count or -1. */
static int parse_list(const char *s, uint64_t *v, int max)
{
	int n = 0;

	while (*s) {
		char *end;
		unsigned long long x;

		if (n == max || *s < '0' || *s > '9')
			return -1;
		errno = 0;
		x = strtoull(s, &end, 10);
		if (errno || x == 0 || x > (1ULL << 31) || (*end && *end != ','))
			return -1;
		v[n++] = x;
		s = *end ? end + 1 : end;
		if (*end && !*s)
			return -1;
	}
	return n;
}

#define RN_MAX_LAYERS 64

/* Appends a layer; its map is filled by the caller. */
static int add_layer(pspace_refnet *net, uint64_t T, uint64_t in, uint64_t out, rn_act act,
                     uint64_t prev_sz)
{
	rn_layer *y = &net->L[net->nl];

	if (T * in > UINT32_MAX || T * out > UINT32_MAX || prev_sz > UINT32_MAX)
		return pspace_err_set(PSPACE_EINVAL, "refnet '%s': layer %zu is too large",
		                      net->spec, net->nl + 1);
	y->T = (uint32_t)T;
	y->in = (uint32_t)in;
	y->out = (uint32_t)out;
	y->act = act;
	y->offset = net->d;
	y->prev_sz = (uint32_t)prev_sz;
	net->d += out * in + out;
	y->map = malloc(T * in * sizeof(*y->map));
	if (!y->map)
		return pspace_err_set(PSPACE_ENOMEM, "refnet '%s': out of memory for layer %zu",
		                      net->spec, net->nl + 1);
	net->nl++;
	return 0;
}

static int build_mlp(pspace_refnet *net, const char *list, rn_act act)
{
	uint64_t s[RN_MAX_LAYERS + 1];
	int n = parse_list(list, s, RN_MAX_LAYERS + 1), rc = 0;

	if (n < 2)
		return pspace_err_set(PSPACE_EINVAL,
		                      "refnet '%s': expected mlp:IN,H1,...,C (positive sizes)",
		                      net->spec);
	net->in0 = (uint32_t)s[0];
	net->C = (uint32_t)s[n - 1];
	for (int l = 0; rc == 0 && l + 1 < n; l++) {
		rc = add_layer(net, 1, s[l], s[l + 1], l + 2 < n ? act : RN_ACT_NONE, s[l]);
		for (uint64_t i = 0; rc == 0 && i < s[l]; i++)
			net->L[l].map[i] = (uint32_t)i;
	}
	return rc;
}

/* Unfolded 3x3 patches, channel-major: map[t][c * 9 + ky * 3 + kx]. */
static void conv_map(rn_layer *y, uint64_t cin, uint64_t h, uint64_t w, int first)
{
	uint64_t ow = w - 2, oh = h - 2;

	for (uint64_t oy = 0; oy < oh; oy++)
		for (uint64_t ox = 0; ox < ow; ox++)
			for (uint64_t c = 0; c < cin; c++)
				for (uint64_t k = 0; k < 9; k++) {
					uint64_t py = oy + k / 3, px = ox + k % 3;
					uint64_t t = oy * ow + ox, j = c * 9 + k;

					/* input image (C, H, W); conv output (T, C) */
					y->map[t * y->in + j] =
					    (uint32_t)(first ? (c * h + py) * w + px
					                     : (py * w + px) * cin + c);
				}
}

static int build_cnn(pspace_refnet *net, const char *desc, rn_act act)
{
	uint64_t s[RN_MAX_LAYERS + 1], c, h, w;
	const char *comma = strchr(desc, ',');
	char *end;
	int n, rc = 0;

	errno = 0;
	c = strtoull(desc, &end, 10);
	h = *end == 'x' ? strtoull(end + 1, &end, 10) : 0;
	w = *end == 'x' ? strtoull(end + 1, &end, 10) : 0;
	n = comma && end == comma ? parse_list(comma + 1, s, RN_MAX_LAYERS) : -1;
	if (errno || n < 2 || !c || !h || !w || c > (1u << 20) || h > (1u << 20) || w > (1u << 20))
		return pspace_err_set(PSPACE_EINVAL,
		                      "refnet '%s': expected cnn:C0xHxW,CH1,...,C with at least "
		                      "one conv layer",
		                      net->spec);
	if ((uint64_t)(n - 1) * 2 >= h || (uint64_t)(n - 1) * 2 >= w)
		return pspace_err_set(
		    PSPACE_EINVAL, "refnet '%s': %d 3x3 conv layers do not fit a %llux%llu image",
		    net->spec, n - 1, (unsigned long long)h, (unsigned long long)w);
	net->in0 = (uint32_t)(c * h * w);
	net->C = (uint32_t)s[n - 1];
	for (int l = 0; rc == 0 && l + 1 < n; l++) {
		uint64_t T = (h - 2) * (w - 2);

		rc = add_layer(net, T, c * 9, s[l], act, c * h * w);
		if (rc == 0)
			conv_map(&net->L[l], c, h, w, l == 0);
		c = s[l];
		h -= 2;
		w -= 2;
	}
	if (rc == 0)
		rc = add_layer(net, 1, c * h * w, s[n - 1], RN_ACT_NONE, c * h * w);
	/* flatten (C, H, W) of a (T, C) output: input index ch * T + t */
	for (uint64_t ch = 0; rc == 0 && ch < c; ch++)
		for (uint64_t t = 0; t < h * w; t++)
			net->L[net->nl - 1].map[ch * h * w + t] = (uint32_t)(t * c + ch);
	return rc;
}

static int make_layout(pspace_refnet *net, int cnn)
{
	size_t cap = 64 * (net->nl + 1), len = 0;
	char *text = malloc(cap);
	int rc;

	if (!text)
		return pspace_err_set(PSPACE_ENOMEM, "refnet '%s': out of memory", net->spec);
	for (size_t l = 0; l < net->nl; l++) {
		const rn_layer *y = &net->L[l];

		if (cnn && l + 1 < net->nl)
			len += (size_t)snprintf(text + len, cap - len,
			                        "conv%zu conv2d %ux%ux3x3 bias\n", l + 1, y->out,
			                        y->in / 9);
		else if (cnn)
			len += (size_t)snprintf(text + len, cap - len, "fc linear %ux%u bias\n",
			                        y->out, y->in);
		else
			len += (size_t)snprintf(text + len, cap - len, "fc%zu linear %ux%u bias\n",
			                        l + 1, y->out, y->in);
	}
	rc = pspace_layout_parse(&net->layout, text, net->spec);
	free(text);
	return rc;
}

static void init_weights(pspace_refnet *net)
{
	uint64_t r = pspace_rn_rng(net->o.seed, RN_STREAM_WEIGHTS, 0);

	for (size_t l = 0; l < net->nl; l++) {
		const rn_layer *y = &net->L[l];
		double sd = 1.0 / sqrt((double)y->in);
		uint64_t sz = (uint64_t)y->out * y->in + y->out;

		for (uint64_t i = 0; i < sz; i++)
			net->theta[y->offset + i] = sd * pspace_rn_normal(&r);
	}
}

int pspace_refnet_create(pspace_refnet **out, const pspace_refnet_opts *opts)
{
	pspace_refnet *net = NULL;
	const char *act_name;
	rn_act act;
	int rc, cnn;

	*out = NULL;
	if (!opts || !opts->spec)
		return pspace_err_set(PSPACE_EINVAL, "refnet: no network spec");
	rc = pspace_init();
	if (rc != 0)
		return rc;
	cnn = strncmp(opts->spec, "cnn:", 4) == 0;
	if (!cnn && strncmp(opts->spec, "mlp:", 4) != 0)
		return pspace_err_set(PSPACE_EINVAL,
		                      "refnet '%s': unknown network (expected mlp:... or cnn:...)",
		                      opts->spec);
	act_name = opts->activation ? opts->activation : cnn ? "relu" : "tanh";
	if (strcmp(act_name, "tanh") == 0)
		act = RN_ACT_TANH;
	else if (strcmp(act_name, "relu") == 0)
		act = RN_ACT_RELU;
	else
		return pspace_err_set(PSPACE_EINVAL,
		                      "refnet '%s': unknown activation '%s' (tanh or relu)",
		                      opts->spec, act_name);
	if (opts->examples == 0)
		return pspace_err_set(PSPACE_EINVAL, "refnet '%s': no examples", opts->spec);

	net = calloc(1, sizeof(*net));
	if (!net)
		return pspace_err_set(PSPACE_ENOMEM, "refnet: out of memory");
	net->o = *opts;
	net->spec = strdup(opts->spec);
	net->L = calloc(RN_MAX_LAYERS + 1, sizeof(*net->L));
	if (!net->spec || !net->L) {
		rc = pspace_err_set(PSPACE_ENOMEM, "refnet: out of memory");
		goto out;
	}
	net->o.spec = net->spec;
	net->o.activation = NULL;
	rc = cnn ? build_cnn(net, opts->spec + 4, act) : build_mlp(net, opts->spec + 4, act);
	if (rc != 0)
		goto out;
	switch (opts->variant) {
	case PSPACE_VARIANT_CLASSIF_LOGITS: net->K = net->C - 1; break;
	case PSPACE_VARIANT_MC: net->K = opts->mc_samples; break;
	case PSPACE_VARIANT_REGRESSION: net->K = net->C; break;
	case PSPACE_VARIANT_EMPIRICAL: net->K = 1; break;
	default:
		rc = pspace_err_set(PSPACE_EINVAL, "refnet '%s': unknown variant %d", net->spec,
		                    (int)opts->variant);
		goto out;
	}
	if (net->K == 0) {
		rc = pspace_err_set(
		    PSPACE_EINVAL, "refnet '%s': the variant has no rows (%s)", net->spec,
		    opts->variant == PSPACE_VARIANT_MC ? "mc_samples = 0" : "one class");
		goto out;
	}
	for (size_t l = 0; l < net->nl; l++)
		if ((uint64_t)net->K * net->L[l].T > INT32_MAX) {
			rc = pspace_err_set(PSPACE_EINVAL,
			                    "refnet '%s': %u rows per example are too many for "
			                    "layer %zu",
			                    net->spec, net->K, l + 1);
			goto out;
		}
	rc = make_layout(net, cnn);
	if (rc != 0)
		goto out;
	net->theta = malloc(net->d * sizeof(double));
	if (!net->theta) {
		rc = pspace_err_set(PSPACE_ENOMEM, "refnet '%s': out of memory for %llu parameters",
		                    net->spec, (unsigned long long)net->d);
		goto out;
	}
	init_weights(net);
	rc = pspace_rn_work_alloc(net, net->K, &net->w);
out:
	if (rc != 0)
		pspace_refnet_free(net);
	else
		*out = net;
	return rc;
}

static void free_layer_bufs(pspace_refnet *net)
{
	free_vec(net->acts, net->nl);
	free_vec(net->grads, net->nl);
	net->acts = net->grads = NULL;
	net->cap = 0;
}

void pspace_refnet_free(pspace_refnet *net)
{
	if (!net)
		return;
	free_layer_bufs(net);
	if (net->w.a)
		pspace_rn_work_free(net, &net->w);
	for (size_t l = 0; net->L && l < net->nl; l++)
		free(net->L[l].map);
	free(net->L);
	free(net->theta);
	pspace_layout_free(net->layout);
	free(net->spec);
	free(net);
}

const pspace_layout *pspace_refnet_layout(const pspace_refnet *net)
{
	return net->layout;
}

double *pspace_refnet_params(pspace_refnet *net)
{
	return net->theta;
}

static int check_range(const pspace_refnet *net, uint64_t x0, uint64_t nx)
{
	if (x0 > net->o.examples || nx > net->o.examples - x0)
		return pspace_err_set(
		    PSPACE_EINVAL, "refnet '%s': examples [%llu, %llu) outside 0..%llu", net->spec,
		    (unsigned long long)x0, (unsigned long long)(x0 + nx),
		    (unsigned long long)net->o.examples);
	return 0;
}

int pspace_refnet_forward(pspace_refnet *net, const double *theta, uint64_t x, double *out)
{
	rn_work w;
	int rc = check_range(net, x, 1);

	if (rc != 0)
		return rc;
	rc = pspace_rn_work_alloc(net, 1, &w);
	if (rc != 0)
		return rc;
	pspace_rn_forward(net, theta ? theta : net->theta, x, &w);
	memcpy(out, w.z[net->nl - 1], net->C * sizeof(double));
	pspace_rn_work_free(net, &w);
	return 0;
}

int pspace_refnet_label(uint32_t *out, const pspace_refnet *net, uint64_t x)
{
	int rc = check_range(net, x, 1);

	if (rc == 0)
		*out = pspace_rn_label(net, x);
	return rc;
}

/* ---- sources ------------------------------------------------------------------- */

static int jac_read(void *ud, uint64_t x0, uint64_t nx, double *out, size_t ld)
{
	pspace_refnet *net = ud;
	int rc = check_range(net, x0, nx);

	if (rc != 0)
		return rc;
	if (ld < net->d)
		return pspace_err_set(PSPACE_EINVAL, "refnet '%s': ld %zu < d %llu", net->spec, ld,
		                      (unsigned long long)net->d);
	for (uint64_t x = 0; x < nx; x++) {
		pspace_rn_forward(net, net->theta, x0 + x, &net->w);
		pspace_rn_seeds(net, x0 + x, &net->w);
		pspace_rn_backward(net, &net->w);
		pspace_rn_rows(net, &net->w, out + x * ld, nx * ld);
	}
	return 0;
}

int pspace_refnet_jacobian(pspace_jac_source *out, pspace_refnet *net)
{
	out->examples = net->o.examples;
	out->outputs = net->K;
	out->d = net->d;
	out->read = jac_read;
	out->ud = net;
	return 0;
}

/* Grows the layer-tensor buffers to nx examples. */
static int layer_bufs(pspace_refnet *net, uint64_t nx)
{
	if (nx <= net->cap)
		return 0;
	free_layer_bufs(net);
	net->acts = calloc(net->nl, sizeof(*net->acts));
	net->grads = calloc(net->nl, sizeof(*net->grads));
	if (!net->acts || !net->grads)
		goto nomem;
	for (size_t l = 0; l < net->nl; l++) {
		const rn_layer *y = &net->L[l];

		net->acts[l] = malloc(nx * y->T * y->in * sizeof(double));
		net->grads[l] = malloc(nx * net->K * y->T * y->out * sizeof(double));
		if (!net->acts[l] || !net->grads[l])
			goto nomem;
	}
	net->cap = nx;
	return 0;
nomem:
	free_layer_bufs(net);
	return pspace_err_set(PSPACE_ENOMEM, "refnet '%s': out of memory for %llu examples",
	                      net->spec, (unsigned long long)nx);
}

static int layers_read(void *ud, uint64_t x0, uint64_t nx, pspace_layer_batch *batch)
{
	pspace_refnet *net = ud;
	int rc = check_range(net, x0, nx);

	if (rc == 0)
		rc = layer_bufs(net, nx);
	if (rc != 0)
		return rc;
	for (uint64_t x = 0; x < nx; x++) {
		pspace_rn_forward(net, net->theta, x0 + x, &net->w);
		pspace_rn_seeds(net, x0 + x, &net->w);
		pspace_rn_backward(net, &net->w);
		for (size_t l = 0; l < net->nl; l++) {
			const rn_layer *y = &net->L[l];
			size_t na = (size_t)y->T * y->in, ng = (size_t)y->T * y->out;

			memcpy(net->acts[l] + x * na, net->w.a[l], na * sizeof(double));
			for (uint32_t k = 0; k < net->K; k++)
				memcpy(net->grads[l] + ((size_t)k * nx + x) * ng,
				       net->w.g[l] + (size_t)k * ng, ng * sizeof(double));
		}
	}
	for (size_t l = 0; l < net->nl; l++) {
		batch[l].T = net->L[l].T;
		batch[l].acts = net->acts[l];
		batch[l].ids = NULL;
		batch[l].grads = net->grads[l];
	}
	return 0;
}

int pspace_refnet_layers(pspace_layer_source *out, pspace_refnet *net)
{
	out->examples = net->o.examples;
	out->outputs = net->K;
	out->read = layers_read;
	out->ud = net;
	return 0;
}
