/*
 * A pass whose combined tiles a consumer pulls in streaming order.
 *
 * A writer asks for the tiles of a new matrix one at a time, in streaming
 * order, from its own loop (and an LMDB write transaction belongs to the
 * thread that opened it), while the engine pushes tiles to a kernel from
 * its loop. So the pass runs on a thread of its own: the engine with one
 * worker (the thread running the pass does the work, so tiles reach the
 * kernel in streaming order), whose kernel combines each address into the next free
 * slot of a small ring and waits while the ring is full. The consumer
 * takes slots from the head: an address before the one asked for is a tile
 * the consumer does not want (dropped), one after it means the asked one
 * is stored in no matrix (zeros).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernel/engine.h"
#include "kernel/stream.h"

#define PULL_SLOTS 4
#define MSG_MAX    1024

typedef struct pull_slot {
	uint32_t block, row, col;
	double *c; /* edge x edge, ld = cols of the tile */
} pull_slot;

struct pspace_stream_pull {
	const pspace_tiled **t;
	double *alpha;
	size_t n;
	pspace_exec ex;
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pull_slot ring[PULL_SLOTS];
	size_t nslots, head, count;
	int done; /* the pass has ended */
	int stop; /* the consumer has gone */
	int err;
	char msg[MSG_MAX];
};

static int pull_kernel(void *ws, void *ud, const pspace_stream_tile *tiles)
{
	pspace_stream_pull *p = ud;
	pull_slot *s;

	(void)ws;
	pthread_mutex_lock(&p->mu);
	while (p->count == p->nslots && !p->stop)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->stop) {
		pthread_mutex_unlock(&p->mu);
		return pspace_err_set(PSPACE_EINVAL, "stream: the consumer stopped the pass");
	}
	s = &p->ring[(p->head + p->count) % p->nslots];
	pthread_mutex_unlock(&p->mu);
	/* The tail slot is this thread's until count covers it. */
	s->block = tiles[0].block;
	s->row = tiles[0].row;
	s->col = tiles[0].col;
	pspace_stream_combine(tiles, p->n, p->alpha, s->c);
	pthread_mutex_lock(&p->mu);
	p->count++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void *pull_main(void *arg)
{
	pspace_stream_pull *p = arg;
	pspace_stream_kernel k = {.tile = pull_kernel};
	int rc = pspace_stream_multi(p->t, p->n, &p->ex, &k, p);

	pthread_mutex_lock(&p->mu);
	p->done = 1;
	if (rc != 0 && !p->stop) {
		p->err = rc;
		snprintf(p->msg, sizeof(p->msg), "%s", pspace_errdetail());
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

void pspace_stream_pull_free(pspace_stream_pull *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stop = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
	}
	for (size_t i = 0; i < PULL_SLOTS; i++)
		free(p->ring[i].c);
	free(p->alpha);
	free(p->t);
	free(p);
}

int pspace_stream_pull_start(pspace_stream_pull **out, const pspace_tiled *const *t, size_t n,
                             const double *alpha, const pspace_exec *ex)
{
	pspace_stream_pull *p = NULL;
	size_t per, budget = pspace_stream_budget(ex);
	int rc = 0;

	*out = NULL;
	if (!t || n == 0 || !alpha)
		return pspace_err_set(PSPACE_EINVAL, "stream: no matrix to pull tiles from");
	for (size_t i = 0; i < n; i++)
		if (!t[i] || !t[i]->block_dim)
			return pspace_err_set(PSPACE_EINVAL, "stream: matrix %zu is not open", i);
	for (size_t i = 1; i < n; i++)
		if (!pspace_tiled_same(t[0], t[i]))
			return pspace_err_set(PSPACE_EDIM,
			                      "stream: matrices %s and %s are tiled "
			                      "differently",
			                      t[0]->info.name, t[i]->info.name);
	p = calloc(1, sizeof(*p));
	if (!p)
		return pspace_err_set(PSPACE_ENOMEM, "stream: out of memory");
	p->n = n;
	p->t = malloc(n * sizeof(*p->t));
	p->alpha = malloc(n * sizeof(*p->alpha));
	per = (size_t)t[0]->info.tile * t[0]->info.tile * sizeof(double);
	p->nslots = budget / per < PULL_SLOTS ? budget / per : PULL_SLOTS;
	if (p->nslots == 0)
		p->nslots = 1;
	for (size_t i = 0; i < p->nslots; i++) {
		p->ring[i].c = malloc(per);
		if (!p->ring[i].c)
			rc = PSPACE_ENOMEM;
	}
	if (!p->t || !p->alpha || rc) {
		rc = pspace_err_set(PSPACE_ENOMEM, "stream: out of memory for %zu tiles ahead",
		                    p->nslots);
		goto out;
	}
	memcpy(p->t, t, n * sizeof(*p->t));
	memcpy(p->alpha, alpha, n * sizeof(*p->alpha));
	/* One worker: the pass's own thread does the work, in streaming order. */
	p->ex.threads = 1;
	p->ex.mem_budget = budget;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->th, NULL, pull_main, p) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		rc = pspace_err_set(PSPACE_ENOMEM, "stream: cannot start the pass thread");
		goto out;
	}
	p->started = 1;
	*out = p;
	p = NULL;
out:
	pspace_stream_pull_free(p);
	return rc;
}

/* Streaming order of (block, row, col) against @p s. */
static int addr_cmp(const pull_slot *s, uint32_t block, uint32_t row, uint32_t col)
{
	if (s->block != block)
		return s->block < block ? -1 : 1;
	if (s->row != row)
		return s->row < row ? -1 : 1;
	if (s->col != col)
		return s->col < col ? -1 : 1;
	return 0;
}

int pspace_stream_pull_tile(pspace_stream_pull *p, uint32_t block, uint32_t row, uint32_t col,
                            double *tile)
{
	const pspace_tiled *t0;
	uint64_t dim, edge;
	size_t len;
	int rc = 0;

	if (!p || !tile || block >= p->t[0]->info.nblocks)
		return pspace_err_set(PSPACE_EINVAL, "stream: no pass, no tile or no block %u",
		                      block);
	t0 = p->t[0];
	dim = t0->block_dim[block];
	edge = t0->info.tile;
	if ((uint64_t)row * edge >= dim || (uint64_t)col * edge >= dim)
		return pspace_err_set(PSPACE_EINVAL, "stream: matrix %s has no tile (%u,%u,%u)",
		                      t0->info.name, block, row, col);
	len = (size_t)(dim - row * edge < edge ? dim - row * edge : edge) *
	      (size_t)(dim - col * edge < edge ? dim - col * edge : edge);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		pull_slot *s;
		int cmp;

		while (p->count == 0 && !p->done)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->count == 0) {
			if (p->err)
				rc = pspace_err_set(p->err, "%s", p->msg);
			else
				memset(tile, 0, len * sizeof(*tile));
			break;
		}
		s = &p->ring[p->head];
		cmp = addr_cmp(s, block, row, col);
		if (cmp > 0) {
			memset(tile, 0, len * sizeof(*tile));
			break;
		}
		if (cmp == 0)
			memcpy(tile, s->c, len * sizeof(*tile));
		p->head = (p->head + 1) % p->nslots;
		p->count--;
		pthread_cond_broadcast(&p->cv);
		if (cmp == 0)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}
