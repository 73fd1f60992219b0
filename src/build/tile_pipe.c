/*
 * Writing a list of tiles with the encoding on worker threads: each worker
 * fills a tile (the caller's fill function) and encodes it with a codec of
 * its own into a slot of a small ring; the calling thread, which owns the
 * LMDB write transaction, stores the slots in list order as they become
 * ready. Encoding (zstd, the costly part) thus runs on every worker while
 * the stores (a copy into the map) follow, so a build's write phase is
 * bound by the slower of the two rather than by their sum on one thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build/build_impl.h"
#include "common/error.h"

#define MAX_PIPE_WORKERS 64

typedef struct slot {
	double *tile; /* T x T, filled by the fill function */
	pspace_codec *codec;
	const void *enc;
	size_t len;
	int ready, rc;
	char msg[512]; /* the worker's error detail (details are per thread) */
} slot;

typedef struct tpipe {
	pspace_writer *w;
	const pspace_tile_addr *tiles;
	size_t n, nslots;
	pspace_tile_fill_fn fill;
	void *ud;
	slot *slots;
	size_t next_claim, next_put;
	int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} tpipe;

/* A worker: the pipe and its own scratch for the fill function. */
typedef struct pworker {
	tpipe *p;
	void *scratch;
} pworker;

static void *pipe_worker(void *arg)
{
	pworker *wk = arg;
	tpipe *p = wk->p;

	for (;;) {
		size_t i;
		slot *s;
		uint32_t cols = 0;
		pspace_dtype type = PSPACE_F64;

		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->next_claim < p->n && p->next_claim - p->next_put >= p->nslots)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop || p->next_claim >= p->n) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		i = p->next_claim++;
		pthread_mutex_unlock(&p->mu);

		s = &p->slots[i % p->nslots];
		s->rc = p->fill(p->ud, i, s->tile, &cols, &type, wk->scratch);
		if (s->rc == 0)
			s->rc = pspace_writer_encode_tile(&s->enc, &s->len, p->w, s->codec,
			                                  p->tiles[i].block, p->tiles[i].row,
			                                  p->tiles[i].col, type, s->tile, cols);
		if (s->rc != 0)
			snprintf(s->msg, sizeof(s->msg), "%s", pspace_errdetail());
		pthread_mutex_lock(&p->mu);
		s->ready = 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

int pspace_write_tiles(pspace_writer *w, const pspace_tile_addr *tiles, size_t n, uint32_t edge,
                       int threads, size_t slots, size_t scratch, pspace_tile_fill_fn fill,
                       void *ud)
{
	pworker wk[MAX_PIPE_WORKERS];
	tpipe p = {w,
	           tiles,
	           n,
	           0,
	           fill,
	           ud,
	           NULL,
	           0,
	           0,
	           0,
	           PTHREAD_MUTEX_INITIALIZER,
	           PTHREAD_COND_INITIALIZER};
	pthread_t tid[MAX_PIPE_WORKERS];
	int started = 0, rc = 0;

	if (n == 0)
		return 0;
	p.nslots = slots < 1 ? 1 : slots;
	threads = threads < 1 ? 1 : (threads > MAX_PIPE_WORKERS ? MAX_PIPE_WORKERS : threads);
	threads = (size_t)threads > p.nslots ? (int)p.nslots : threads;
	p.slots = calloc(p.nslots, sizeof(*p.slots));
	if (!p.slots)
		return pspace_err_set(PSPACE_ENOMEM, "out of memory for the tile writer");
	for (size_t i = 0; rc == 0 && i < p.nslots; i++) {
		p.slots[i].tile = malloc((size_t)edge * edge * sizeof(double));
		rc = p.slots[i].tile
		         ? pspace_codec_create(&p.slots[i].codec)
		         : pspace_err_set(PSPACE_ENOMEM, "out of memory for the tile writer");
	}
	memset(wk, 0, sizeof(wk));
	for (int i = 0; rc == 0 && scratch && i < threads; i++) {
		wk[i].scratch = malloc(scratch);
		if (!wk[i].scratch)
			rc = pspace_err_set(PSPACE_ENOMEM, "out of memory for the tile writer");
	}
	for (int i = 0; rc == 0 && i < threads; i++) {
		wk[i].p = &p;
		if (pthread_create(&tid[started], NULL, pipe_worker, &wk[i]) == 0)
			started++;
	}
	if (rc == 0 && started == 0)
		rc = pspace_err_set(PSPACE_ENOMEM, "cannot start a tile encoding thread");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		slot *s = &p.slots[i % p.nslots];

		pthread_mutex_lock(&p.mu);
		while (!s->ready)
			pthread_cond_wait(&p.cv, &p.mu);
		pthread_mutex_unlock(&p.mu);
		rc = s->rc != 0 ? pspace_err_set(s->rc, "%s", s->msg)
		                : pspace_writer_put_encoded(w, tiles[i].block, tiles[i].row,
		                                            tiles[i].col, s->enc, s->len);
		pthread_mutex_lock(&p.mu);
		s->ready = 0;
		p.next_put++;
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
	}
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	for (size_t i = 0; i < p.nslots; i++) {
		pspace_codec_free(p.slots[i].codec);
		free(p.slots[i].tile);
	}
	free(p.slots);
	for (int i = 0; i < threads; i++)
		free(wk[i].scratch);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
	return rc;
}
