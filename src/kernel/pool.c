/*
 * The streaming engine's bounded queue and worker threads.
 */
#include "kernel/pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int pspace_queue_init(pspace_queue *q, size_t cap, size_t item_size)
{
	memset(q, 0, sizeof(*q));
	q->buf = malloc(cap * item_size);
	if (!q->buf)
		return pspace_err_set(PSPACE_ENOMEM,
		                      "stream: out of memory for a queue of %zu tiles", cap);
	q->cap = cap;
	q->item_size = item_size;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	return 0;
}

void pspace_queue_destroy(pspace_queue *q)
{
	if (!q->buf)
		return;
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	pthread_mutex_destroy(&q->mu);
	free(q->buf);
	q->buf = NULL;
}

void pspace_queue_push(pspace_queue *q, const void *item)
{
	size_t tail;

	pthread_mutex_lock(&q->mu);
	while (q->count == q->cap)
		pthread_cond_wait(&q->not_full, &q->mu);
	tail = (q->head + q->count) % q->cap;
	memcpy(q->buf + tail * q->item_size, item, q->item_size);
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

int pspace_queue_pop(pspace_queue *q, void *item)
{
	int rc = 0;

	pthread_mutex_lock(&q->mu);
	while (q->count == 0 && !q->closed)
		pthread_cond_wait(&q->not_empty, &q->mu);
	if (q->count == 0) {
		rc = 1;
	} else {
		memcpy(item, q->buf + q->head * q->item_size, q->item_size);
		q->head = (q->head + 1) % q->cap;
		q->count--;
		/* the producer waits for a half-empty queue: one wake-up per cap/2 items */
		if (q->count == q->cap / 2)
			pthread_cond_signal(&q->not_full);
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void pspace_queue_close(pspace_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

int pspace_threads_start(pspace_threads *out, size_t n, void *(*fn)(void *), void *args,
                         size_t arg_size)
{
	out->started = 0;
	out->tid = calloc(n ? n : 1, sizeof(*out->tid));
	if (!out->tid)
		return pspace_err_set(PSPACE_ENOMEM, "stream: out of memory for %zu threads", n);
	for (size_t i = 0; i < n; i++) {
		if (pthread_create(&out->tid[i], NULL, fn, (unsigned char *)args + i * arg_size))
			break;
		out->started++;
	}
	if (out->started == 0) {
		free(out->tid);
		out->tid = NULL;
		return pspace_err_set(PSPACE_ENOMEM, "stream: cannot start a worker thread");
	}
	return 0;
}

void pspace_threads_join(pspace_threads *t)
{
	for (size_t i = 0; i < t->started; i++)
		pthread_join(t->tid[i], NULL);
	free(t->tid);
	t->tid = NULL;
	t->started = 0;
}
