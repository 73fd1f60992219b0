/*
 * Reference networks: the forward pass, the seed vectors of each Fisher
 * variant at the logits, the K backward passes and the Jacobian rows, one
 * example at a time.
 *
 * Examples are processed one by one with the same kernel calls whatever the
 * batch they were read in, so results do not depend on the batching. Large
 * products go to BLIS (one thread, typed API), tiny ones to plain loops.
 */
#include <blis.h>
#include <math.h>
#include <string.h>

#include "build/refnet_impl.h"

/* Below this many multiply-adds a plain loop beats a BLIS call. */
#define RN_TINY 32768.0

static double act_f(rn_act a, double z)
{
	switch (a) {
	case RN_ACT_TANH: return tanh(z);
	case RN_ACT_RELU: return z > 0 ? z : 0;
	default: return z;
	}
}

static double act_df(rn_act a, double z)
{
	switch (a) {
	case RN_ACT_TANH: {
		double t = tanh(z);

		return 1.0 - t * t;
	}
	case RN_ACT_RELU: return z > 0 ? 1.0 : 0.0;
	default: return 1.0;
	}
}

/*
 * C (m x n, ldc) = A op(B), all row-major, with B (n x k) and op(B) = B^T
 * if transb, else B (k x n).
 */
static void mul(uint32_t m, uint32_t n, uint32_t k, const double *A, size_t lda, const double *B,
                size_t ldb, int transb, double *C, size_t ldc)
{
	if ((double)m * n * k < RN_TINY) {
		for (uint32_t i = 0; i < m; i++)
			for (uint32_t j = 0; j < n; j++) {
				double s = 0;

				for (uint32_t q = 0; q < k; q++)
					s += A[(size_t)i * lda + q] *
					     (transb ? B[(size_t)j * ldb + q]
					             : B[(size_t)q * ldb + j]);
				C[(size_t)i * ldc + j] = s;
			}
		return;
	}
	{
		rntm_t rn;
		double one = 1.0, b = 0.0;

		bli_rntm_init(&rn);
		bli_rntm_set_num_threads(1, &rn);
		if (m == 1 && transb)
			bli_dgemv_ex(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, n, k, &one, (double *)B,
			             (inc_t)ldb, 1, (double *)A, 1, &b, C, 1, NULL, &rn);
		else if (m == 1)
			bli_dgemv_ex(BLIS_TRANSPOSE, BLIS_NO_CONJUGATE, k, n, &one, (double *)B,
			             (inc_t)ldb, 1, (double *)A, 1, &b, C, 1, NULL, &rn);
		else
			bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one,
			             (double *)A, (inc_t)lda, 1, (double *)B,
			             transb ? 1 : (inc_t)ldb, transb ? (inc_t)ldb : 1, &b, C,
			             (inc_t)ldc, 1, NULL, &rn);
	}
}

void pspace_rn_forward(const pspace_refnet *net, const double *theta, uint64_t x, rn_work *w)
{
	pspace_rn_input(net, x, w->u);
	for (size_t l = 0; l < net->nl; l++) {
		const rn_layer *y = &net->L[l];
		const double *src = l == 0 ? w->u : w->z[l - 1];
		rn_act pa = l == 0 ? RN_ACT_NONE : net->L[l - 1].act;
		const double *W = theta + y->offset, *b = W + (size_t)y->out * y->in;
		size_t ni = (size_t)y->T * y->in;
		double *a = w->a[l], *z = w->z[l];

		for (size_t i = 0; i < ni; i++)
			a[i] = act_f(pa, src[y->map[i]]);
		mul(y->T, y->out, y->in, a, y->in, W, y->in, 1, z, y->out);
		for (uint32_t t = 0; t < y->T; t++)
			for (uint32_t o = 0; o < y->out; o++)
				z[(size_t)t * y->out + o] += b[o];
	}
}

/*
 * classif_logits: M = diag(p) - p p^T = L L^T with C - 1 columns. With the
 * classes in an order q_0..q_{C-1} and suffix sums s_i = sum_{j >= i} p_qj
 * (s_0 = 1), eliminating class q_0 from M leaves diag(p') - p' p'^T / s_1
 * on the others, and by induction step i sees diag(q) - q q^T / s_i. So the
 * Cholesky factor is, for column i and rows j > i,
 *   L[q_i, i] = sqrt(p_qi s_{i+1} / s_i),
 *   L[q_j, i] = -p_qj sqrt(p_qi / (s_i s_{i+1})),
 * and the last pivot p_qC-1 (s_C / s_C-1) is 0 (M 1 = 0): C - 1 columns
 * suffice. Putting the most probable class last keeps every s_i >= max p
 * >= 1/C, so no division by (nearly) zero happens even when some p_i
 * underflow.
 */
static void classif_seeds(uint32_t C, const double *p, double *v, double *s, uint32_t *q)
{
	uint32_t m = 0;

	for (uint32_t c = 1; c < C; c++)
		if (p[c] > p[m])
			m = c;
	for (uint32_t c = 0, i = 0; c < C; c++)
		if (c != m)
			q[i++] = c;
	q[C - 1] = m;
	s[C] = 0;
	for (uint32_t i = C; i-- > 0;)
		s[i] = s[i + 1] + p[q[i]];
	memset(v, 0, (size_t)(C - 1) * C * sizeof(*v));
	for (uint32_t i = 0; i + 1 < C; i++) {
		double *vi = v + (size_t)i * C, pi = p[q[i]];
		double f = sqrt(pi / (s[i] * s[i + 1]));

		vi[q[i]] = sqrt(pi * s[i + 1] / s[i]);
		for (uint32_t j = i + 1; j < C; j++)
			vi[q[j]] = -p[q[j]] * f;
	}
}

void pspace_rn_seeds(const pspace_refnet *net, uint64_t x, rn_work *w)
{
	uint32_t C = net->C, K = net->K;
	const double *z = w->z[net->nl - 1];
	double *p = w->p, *v = w->v, mx = z[0], sum = 0;

	for (uint32_t c = 1; c < C; c++)
		mx = z[c] > mx ? z[c] : mx;
	for (uint32_t c = 0; c < C; c++)
		sum += p[c] = exp(z[c] - mx);
	for (uint32_t c = 0; c < C; c++)
		p[c] /= sum;
	switch (net->o.variant) {
	case PSPACE_VARIANT_CLASSIF_LOGITS: classif_seeds(C, p, v, w->s, w->q); break;
	case PSPACE_VARIANT_MC: {
		uint64_t r = pspace_rn_rng(net->o.seed, RN_STREAM_MC, x);
		double sc = 1.0 / sqrt((double)K);

		for (uint32_t k = 0; k < K; k++) {
			double u = pspace_rn_uniform(&r), cum = 0;
			uint32_t y = C - 1;

			for (uint32_t c = 0; c < C; c++) {
				cum += p[c];
				if (u < cum) {
					y = c;
					break;
				}
			}
			for (uint32_t c = 0; c < C; c++)
				v[(size_t)k * C + c] = -p[c] * sc;
			v[(size_t)k * C + y] += sc;
		}
		break;
	}
	case PSPACE_VARIANT_REGRESSION:
		memset(v, 0, (size_t)K * C * sizeof(*v));
		for (uint32_t k = 0; k < K; k++)
			v[(size_t)k * C + k] = 1.0;
		break;
	case PSPACE_VARIANT_EMPIRICAL: {
		uint32_t y = pspace_rn_label(net, x);

		for (uint32_t c = 0; c < C; c++)
			v[c] = -p[c];
		v[y] += 1.0;
		break;
	}
	}
}

void pspace_rn_backward(const pspace_refnet *net, rn_work *w)
{
	uint32_t K = net->K;
	size_t nl = net->nl;

	memcpy(w->g[nl - 1], w->v, (size_t)K * net->C * sizeof(double));
	for (size_t l = nl - 1; l > 0; l--) {
		const rn_layer *y = &net->L[l];
		const double *W = net->theta + y->offset;
		size_t ni = (size_t)y->T * y->in, np = y->prev_sz;
		const double *zp = w->z[l - 1];
		rn_act pa = net->L[l - 1].act;

		/* D (K T x in) = G_l (K T x out) W_l */
		mul(K * y->T, y->in, y->out, w->g[l], y->out, W, y->in, 0, w->D, y->in);
		for (size_t i = 0; i < np; i++)
			w->fd[i] = act_df(pa, zp[i]);
		for (uint32_t k = 0; k < K; k++) {
			double *gp = w->g[l - 1] + (size_t)k * np;
			const double *Dk = w->D + (size_t)k * ni;

			memset(gp, 0, np * sizeof(*gp));
			for (size_t i = 0; i < ni; i++)
				gp[y->map[i]] += Dk[i];
			for (size_t i = 0; i < np; i++)
				gp[i] *= w->fd[i];
		}
	}
}

void pspace_rn_rows(const pspace_refnet *net, const rn_work *w, double *out, size_t ldk)
{
	for (uint32_t k = 0; k < net->K; k++)
		for (size_t l = 0; l < net->nl; l++) {
			const rn_layer *y = &net->L[l];
			const double *g = w->g[l] + (size_t)k * y->T * y->out, *a = w->a[l];
			double *dW = out + (size_t)k * ldk + y->offset;
			double *db = dW + (size_t)y->out * y->in;

			if (y->T == 1) {
				for (uint32_t o = 0; o < y->out; o++) {
					double go = g[o], *r = dW + (size_t)o * y->in;

					for (uint32_t j = 0; j < y->in; j++)
						r[j] = go * a[j];
					db[o] = go;
				}
				continue;
			}
			/* dW (out x in) = G^T (out x T) A (T x in): per-location sum */
			if ((double)y->out * y->in * y->T < RN_TINY) {
				memset(dW, 0, (size_t)y->out * y->in * sizeof(*dW));
				for (uint32_t t = 0; t < y->T; t++)
					for (uint32_t o = 0; o < y->out; o++) {
						double go = g[(size_t)t * y->out + o];
						double *r = dW + (size_t)o * y->in;
						const double *at = a + (size_t)t * y->in;

						for (uint32_t j = 0; j < y->in; j++)
							r[j] += go * at[j];
					}
			} else {
				rntm_t rn;
				double one = 1.0, zero = 0.0;

				bli_rntm_init(&rn);
				bli_rntm_set_num_threads(1, &rn);
				bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, y->out, y->in,
				             y->T, &one, (double *)g, 1, y->out, (double *)a, y->in,
				             1, &zero, dW, y->in, 1, NULL, &rn);
			}
			for (uint32_t o = 0; o < y->out; o++) {
				double s = 0;

				for (uint32_t t = 0; t < y->T; t++)
					s += g[(size_t)t * y->out + o];
				db[o] = s;
			}
		}
}
