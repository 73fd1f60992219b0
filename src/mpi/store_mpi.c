/*
 * libpspace_mpi: a rank's shard of a sharded store (pspace/mpi.h), its
 * sum hook over MPI, and agreeing on results across the ranks.
 *
 * The sum is MPI_Reduce to rank 0 then MPI_Bcast rather than
 * MPI_Allreduce: an allreduce may round differently on different ranks
 * (its algorithm combines partial sums in a rank-dependent order), and
 * ranks whose vectors differ in the last bit can take different branches
 * in Lanczos or CG and then wait in different collectives.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mpi/mpi_impl.h"

/* Doubles per MPI call: counts are int. */
#define CHUNK ((size_t)1 << 26)

int pspace_mpi_err(int mrc, const char *what)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;

	if (MPI_Error_string(mrc, msg, &len) != MPI_SUCCESS)
		snprintf(msg, sizeof(msg), "MPI error %d", mrc);
	return pspace_errdetail_set(PSPACE_EIO, "MPI %s: %s", what, msg);
}

int pspace_mpi_ctx_agree(pspace_mpi_ctx *c, int rc)
{
	struct {
		int code;
		char msg[1024];
	} e;
	int mine = rc ? c->rank : c->size, first = c->size, mrc;

	mrc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->comm);
	if (mrc != MPI_SUCCESS)
		return pspace_mpi_err(mrc, "agreeing on a result");
	if (first == c->size)
		return 0;
	memset(&e, 0, sizeof(e));
	if (c->rank == first) {
		const char *d = pspace_errdetail();

		e.code = rc;
		snprintf(e.msg, sizeof(e.msg), "%s", d && *d ? d : pspace_strerror(rc));
	}
	mrc = MPI_Bcast(&e, (int)sizeof(e), MPI_BYTE, first, c->comm);
	if (mrc != MPI_SUCCESS)
		return pspace_mpi_err(mrc, "passing on an error");
	/* the failed rank's own message already says what it is */
	if (c->rank == first)
		return rc;
	return pspace_errdetail_set(e.code, "rank %d: %s", first, e.msg);
}

/* The store's sum hook: agree, then reduce to rank 0 and broadcast, in chunks. */
static int mpi_sum(void *ud, double *buf, size_t n, int rc)
{
	pspace_mpi_ctx *c = ud;

	rc = pspace_mpi_ctx_agree(c, rc);
	for (size_t off = 0; rc == 0 && off < n; off += CHUNK) {
		int cnt = (int)(n - off < CHUNK ? n - off : CHUNK), mrc;

		mrc = MPI_Reduce(c->rank == 0 ? MPI_IN_PLACE : buf + off, buf + off, cnt,
		                 MPI_DOUBLE, MPI_SUM, 0, c->comm);
		if (mrc == MPI_SUCCESS)
			mrc = MPI_Bcast(buf + off, cnt, MPI_DOUBLE, 0, c->comm);
		if (mrc != MPI_SUCCESS)
			rc = pspace_mpi_err(mrc, "summing over the ranks");
	}
	return rc;
}

pspace_mpi_ctx *pspace_mpi_ctx_of(const pspace_store *s)
{
	const pspace_shard_hooks *h = pspace_store_shard(s);

	return h && h->sum == mpi_sum ? h->ud : NULL;
}

/*
 * This rank's view of @p path before opening: the shards there must be of
 * this many ranks; with none, @p path must not be a whole store.
 */
static int check_dir(const pspace_mpi_ctx *c, const char *path, const pspace_store_opts *o)
{
	uint32_t P = 0, present = 0;
	struct stat st;
	char data[4096];
	int rc;

	rc = pspace_shard_scan(&P, &present, path);
	if (rc != 0)
		return rc;
	if (P && P != (uint32_t)c->size)
		return pspace_errdetail_set(
		    PSPACE_EINVAL,
		    "store %s is sharded over %u ranks, not %d: run it with "
		    "mpirun -n %u",
		    path, P, c->size, P);
	if (P)
		return 0;
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	if (stat(data, &st) == 0)
		return pspace_errdetail_set(PSPACE_EINVAL,
		                            "store %s is a whole store, not a sharded one: use it "
		                            "without mpirun",
		                            path);
	if (!o->create || o->readonly)
		return pspace_errdetail_set(PSPACE_ENOTFOUND, "store %s holds no shards", path);
	if (mkdir(path, 0777) != 0 && errno != EEXIST)
		return pspace_errdetail_set(PSPACE_EIO, "store %s: mkdir: %s", path,
		                            strerror(errno));
	return 0;
}

int pspace_store_open_mpi(pspace_store **out, const char *path, MPI_Comm comm,
                          const pspace_store_opts *opts)
{
	pspace_store_opts o;
	pspace_shard_hooks h;
	pspace_mpi_ctx *c = NULL;
	pspace_store *s = NULL;
	char shard[4096];
	int mrc, rc;

	*out = NULL;
	if (opts)
		o = *opts;
	else
		pspace_store_opts_default(&o);
	if (!path)
		return pspace_errdetail_set(PSPACE_EINVAL, "pspace_store_open_mpi: no path");
	c = calloc(1, sizeof(*c));
	if (!c)
		return pspace_errdetail_set(PSPACE_ENOMEM, "out of memory");
	c->comm = MPI_COMM_NULL;
	mrc = MPI_Comm_dup(comm, &c->comm);
	if (mrc == MPI_SUCCESS)
		mrc = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
	if (mrc == MPI_SUCCESS)
		mrc = MPI_Comm_rank(c->comm, &c->rank);
	if (mrc == MPI_SUCCESS)
		mrc = MPI_Comm_size(c->comm, &c->size);
	if (mrc != MPI_SUCCESS) {
		rc = pspace_mpi_err(mrc, "opening a sharded store");
		goto out;
	}
	rc = check_dir(c, path, &o);
	rc = pspace_mpi_ctx_agree(c, rc);
	if (rc == 0)
		rc = pspace_shard_path(shard, sizeof(shard), path, (uint32_t)c->rank,
		                       (uint32_t)c->size);
	if (rc == 0)
		rc = pspace_store_open(&s, shard, &o);
	rc = pspace_mpi_ctx_agree(c, rc);
	if (rc == 0) {
		h = (pspace_shard_hooks){(uint32_t)c->rank, (uint32_t)c->size, mpi_sum, c};
		rc = pspace_store_set_shard(s, &h);
	}
out:
	if (rc != 0) {
		pspace_store_close(s);
		if (c->comm != MPI_COMM_NULL)
			MPI_Comm_free(&c->comm);
		free(c);
		return rc;
	}
	*out = s;
	return 0;
}

void pspace_store_close_mpi(pspace_store *s)
{
	pspace_mpi_ctx *c = pspace_mpi_ctx_of(s);

	pspace_store_close(s);
	if (c) {
		MPI_Comm_free(&c->comm);
		free(c);
	}
}

int pspace_mpi_agree(pspace_store *s, int rc)
{
	pspace_mpi_ctx *c = pspace_mpi_ctx_of(s);

	if (!c)
		return rc ? rc
		          : pspace_errdetail_set(PSPACE_EINVAL, "store %s: not opened over MPI",
		                                 s ? pspace_store_path(s) : "(null)");
	return pspace_mpi_ctx_agree(c, rc);
}

uint32_t pspace_mpi_rank(const pspace_store *s, uint32_t *nranks)
{
	const pspace_shard_hooks *h = pspace_store_shard(s);

	if (nranks)
		*nranks = h ? h->nranks : 0;
	return h ? h->rank : 0;
}

int pspace_mpi_ctx_bcast(pspace_mpi_ctx *c, void *buf, size_t n, int root)
{
	for (size_t off = 0; off < n; off += (size_t)INT_MAX / 2) {
		size_t cnt = n - off < (size_t)INT_MAX / 2 ? n - off : (size_t)INT_MAX / 2;
		int mrc = MPI_Bcast((char *)buf + off, (int)cnt, MPI_BYTE, root, c->comm);

		if (mrc != MPI_SUCCESS)
			return pspace_mpi_err(mrc, "broadcast");
	}
	return 0;
}

int pspace_mpi_bcast(pspace_store *s, void *buf, size_t n)
{
	pspace_mpi_ctx *c = pspace_mpi_ctx_of(s);

	if (!c)
		return pspace_errdetail_set(PSPACE_EINVAL, "store %s: not opened over MPI",
		                            s ? pspace_store_path(s) : "(null)");
	return pspace_mpi_ctx_bcast(c, buf, n, 0);
}
