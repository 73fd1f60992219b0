/*
 * The streaming engine's worker threads.
 */
#include "kernel/pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

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
