/*
 * The directories of a sharded store (pspace/shard.h): STORE/shard-R-of-P,
 * named and found. Apart from shard.c (manifests), which opens stores:
 * opening a store (env.c) looks for shards without calling back into it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "pspace/shard.h"

int pspace_shard_path(char *buf, size_t cap, const char *path, uint32_t rank, uint32_t nranks)
{
	int n = snprintf(buf, cap, "%s/shard-%u-of-%u", path, rank, nranks);

	if (n < 0 || (size_t)n >= cap)
		return pspace_err_set(PSPACE_EINVAL, "shard path of %s too long", path);
	return 0;
}

int pspace_shard_scan(uint32_t *nranks, uint32_t *present, const char *path)
{
	DIR *dir;
	struct dirent *e;
	unsigned char *seen = NULL;
	uint32_t P = 0, found = 0;
	int rc = 0;

	*nranks = 0;
	*present = 0;
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT || errno == ENOTDIR
		           ? 0
		           : pspace_err_set(pspace_err_from_errno(errno), "%s: %s", path,
		                            strerror(errno));
	while (rc == 0 && (e = readdir(dir)) != NULL) {
		unsigned r, p;
		char tail;

		if (sscanf(e->d_name, "shard-%u-of-%u%c", &r, &p, &tail) != 2 || p == 0 ||
		    p > PSPACE_SHARD_MAX || r >= p)
			continue;
		if (P && p != P) {
			rc = pspace_err_set(PSPACE_ECORRUPT,
			                    "store %s holds shards of %u and of %u ranks", path, P,
			                    p);
			break;
		}
		if (!P) {
			P = p;
			seen = calloc(P, 1);
			if (!seen) {
				rc = pspace_err_set(PSPACE_ENOMEM, "out of memory");
				break;
			}
		}
		found += !seen[r];
		seen[r] = 1;
	}
	closedir(dir);
	if (rc == 0) {
		*nranks = P;
		*present = found;
	}
	free(seen);
	return rc;
}
