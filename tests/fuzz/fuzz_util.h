/*
 * What the fuzz targets share: a scratch directory made once per process
 * (removed at exit) and writing an input to a file in it, for the APIs
 * that read files by path.
 */
#ifndef PSPACE_FUZZ_UTIL_H
#define PSPACE_FUZZ_UTIL_H

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[64];

static inline void fuzz_dir_remove(void)
{
	char cmd[96];

	if (fuzz_dir_path[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir_path);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
	}
}

/**
 * The process's scratch directory "pspace-fuzz-XXXXXX" (made on first
 * use) in $PSPACE_FUZZ_TMP, else /dev/shm when there is one: rewriting a
 * file on a disk file system costs milliseconds (the truncate flushes), on
 * tmpfs microseconds. A crash leaves it behind (run.sh removes its own).
 */
static inline const char *fuzz_dir(void)
{
	const char *base = getenv("PSPACE_FUZZ_TMP");

	if (!fuzz_dir_path[0]) {
		if (!base || snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/pspace-fuzz-XXXXXX",
		                      base) >= (int)sizeof(fuzz_dir_path))
			strcpy(fuzz_dir_path, "/dev/shm/pspace-fuzz-XXXXXX");
		if (!mkdtemp(fuzz_dir_path)) {
			strcpy(fuzz_dir_path, "/tmp/pspace-fuzz-XXXXXX");
			if (!mkdtemp(fuzz_dir_path))
				abort();
		}
		atexit(fuzz_dir_remove);
	}
	return fuzz_dir_path;
}

/** Writes @p size bytes of @p data to @p path (created or truncated); aborts on failure. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t done = 0;

	if (fd < 0)
		abort();
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	close(fd);
}

#endif
