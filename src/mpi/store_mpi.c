/*
 * libpspace_mpi: a rank's shard of a sharded store (pspace/mpi.h), its
 * sum hook over MPI, and agreeing on results across the ranks.
 *
 * The sum sums every element on one rank and copies the result to the
 * others (MPI_Reduce + MPI_Bcast, or for long vectors
 * MPI_Reduce_scatter_block + MPI_Allgather) rather than MPI_Allreduce: an
 * allreduce may round differently on different ranks (its algorithm may
 * combine partial sums in a rank-dependent order), and ranks whose vectors
 * differ in the last bit can take different branches in Lanczos or CG and
 * then wait in different collectives.
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

/* Below this many doubles a rank, reduce + broadcast: fewer messages. */
#define SCATTER_MIN 4096

/*
 * A long vector: MPI_Reduce_scatter_block sums each 1/P of it on one rank,
 * MPI_Allgather copies the sums to all (every element is summed once, so
 * every rank has the same bits), moving 2 (P - 1)/P of the vector a rank
 * instead of reduce + broadcast's 2 whole vectors through rank 0.
 */
static int sum_scattered(pspace_mpi_ctx *c, double *buf, size_t n)
{
	size_t per = n / (size_t)c->size;
	int mrc;

	/* in place: this rank's sums land at buf[0, per), then go to its block */
	mrc = MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, (int)per, MPI_DOUBLE, MPI_SUM, c->comm);
	if (mrc == MPI_SUCCESS && c->rank)
		memmove(buf + (size_t)c->rank * per, buf, per * sizeof(*buf));
	if (mrc == MPI_SUCCESS)
		mrc = MPI_Allgather(MPI_IN_PLACE, (int)per, MPI_DOUBLE, buf, (int)per, MPI_DOUBLE,
		                    c->comm);
	return mrc == MPI_SUCCESS ? 0 : pspace_mpi_err(mrc, "summing over the ranks");
}

/* Reduce to rank 0, broadcast. */
static int sum_rooted(pspace_mpi_ctx *c, double *buf, size_t n)
{
	int mrc = MPI_Reduce(c->rank == 0 ? MPI_IN_PLACE : buf, buf, (int)n, MPI_DOUBLE, MPI_SUM, 0,
	                     c->comm);

	if (mrc == MPI_SUCCESS)
		mrc = MPI_Bcast(buf, (int)n, MPI_DOUBLE, 0, c->comm);
	return mrc == MPI_SUCCESS ? 0 : pspace_mpi_err(mrc, "summing over the ranks");
}

/* The store's sum hook: agree, then sum in chunks (int counts). */
static int mpi_sum(void *ud, double *buf, size_t n, int rc)
{
	pspace_mpi_ctx *c = ud;

	rc = pspace_mpi_ctx_agree(c, rc);
	for (size_t off = 0; rc == 0 && off < n;) {
		size_t len = n - off < CHUNK ? n - off : CHUNK;

		/* a multiple of P scattered, the rest (or a short vector) rooted */
		if (c->size > 1 && len >= SCATTER_MIN * (size_t)c->size)
			len -= len % (size_t)c->size;
		rc = c->size > 1 && len >= SCATTER_MIN * (size_t)c->size
		         ? sum_scattered(c, buf + off, len)
		         : sum_rooted(c, buf + off, len);
		off += len;
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
