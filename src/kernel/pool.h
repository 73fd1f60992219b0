/*
 * Internal: the streaming engine's thread pool, a helper that starts and
 * joins the worker threads of one pass.
 */
#ifndef PSPACE_SRC_KERNEL_POOL_H
#define PSPACE_SRC_KERNEL_POOL_H

#include <pthread.h>
#include <stddef.h>

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
