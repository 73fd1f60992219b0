/*
 * Internal: the pieces of the streaming engine's thread pool. A bounded
 * FIFO of fixed-size items (one producer, many consumers) and a helper that
 * starts and joins the worker threads of one pass.
 */
#ifndef PSPACE_SRC_KERNEL_POOL_H
#define PSPACE_SRC_KERNEL_POOL_H

#include <pthread.h>
#include <stddef.h>

/** A bounded queue of @c cap items of @c item_size bytes each. */
typedef struct pspace_queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	unsigned char *buf;
	size_t cap, item_size, head, count;
	int closed; /**< no more pushes: pop returns 1 once empty */
} pspace_queue;

/** Allocates the ring. @return 0 or PSPACE_ENOMEM (detail set). */
int pspace_queue_init(pspace_queue *q, size_t cap, size_t item_size);
/** Frees the ring; a zeroed struct is accepted. */
void pspace_queue_destroy(pspace_queue *q);
/** Copies @p item in; when the queue is full, waits until it is half empty (one producer). */
void pspace_queue_push(pspace_queue *q, const void *item);
/** Copies the oldest item out, waiting while empty. @return 0, or 1 when closed and empty. */
int pspace_queue_pop(pspace_queue *q, void *item);
/** Marks the end of the stream and wakes every waiting consumer. */
void pspace_queue_close(pspace_queue *q);

/** Worker threads of one pass. */
typedef struct pspace_threads {
	pthread_t *tid;
	size_t started;
} pspace_threads;

/**
 * Starts up to @p n threads running @p fn(args + i * arg_size), i = 0..n-1.
 * Stops at the first thread that cannot be created; @p out->started tells
 * how many run. @return 0 if at least one started, else PSPACE_ENOMEM.
 */
int pspace_threads_start(pspace_threads *out, size_t n, void *(*fn)(void *), void *args,
                         size_t arg_size);
/** Joins every started thread and frees @p t. */
void pspace_threads_join(pspace_threads *t);

#endif
