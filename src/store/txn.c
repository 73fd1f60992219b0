/*
 * Transactions: LMDB error mapping, the count of this process's active
 * transactions (the map may only be resized when it is zero), map growth
 * before write transactions, and the data-file size check that keeps
 * SIGBUS away.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/error.h"
#include "store/internal.h"

int pspace_store_code(int rc)
{
	switch (rc) {
	case 0: return 0;
	case MDB_MAP_FULL:
	case ENOSPC:
	case EFBIG:
	case EDQUOT: return PSPACE_EFULL;
	case MDB_NOTFOUND: return PSPACE_ENOTFOUND;
	case MDB_READERS_FULL: return PSPACE_EBUSY;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID: return PSPACE_ECORRUPT;
	case MDB_VERSION_MISMATCH: return PSPACE_EVERSION;
	case ENOMEM: return PSPACE_ENOMEM;
	default: return PSPACE_ESTORE;
	}
}

int pspace_store_err(const pspace_store *s, int rc, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return pspace_err_set(pspace_store_code(rc), "store %s: %s: %s%s", s->path, what,
	                      mdb_strerror(rc),
	                      rc == MDB_MAP_FULL && s->as_capped
	                          ? " (the address-space limit, ulimit -v, kept the map from "
	                            "growing)"
	                          : "");
}

size_t pspace_store_as_room(void)
{
	struct rlimit rl;
	unsigned long long pages = 0;
	uint64_t used;
	FILE *f;

	if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;
	f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%llu", &pages) != 1)
			pages = 0;
		fclose(f);
	}
	used = (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
	return used < (uint64_t)rl.rlim_cur ? (size_t)((uint64_t)rl.rlim_cur - used) : 0;
}

int pspace_store_file_size(pspace_store *s, uint64_t *out)
{
	struct stat st;
	int fd = -1;
	int rc;

	rc = mdb_env_get_fd(s->env, &fd);
	if (rc != 0)
		return pspace_store_err(s, rc, "data file %s", s->data_path);
	if (fstat(fd, &st) != 0)
		return pspace_err_set(pspace_err_from_errno(errno), "store %s: fstat %s: %s",
		                      s->path, s->data_path, strerror(errno));
	*out = (uint64_t)st.st_size;
	return 0;
}

/* Bytes the last committed transaction's pages span: (last_pgno + 1) x page size. */
static int used_bytes(pspace_store *s, uint64_t *used, MDB_envinfo *ei)
{
	MDB_stat st;
	int rc;

	rc = mdb_env_info(s->env, ei);
	if (rc == 0)
		rc = mdb_env_stat(s->env, &st);
	if (rc != 0)
		return pspace_store_err(s, rc, "environment info");
	*used = ((uint64_t)ei->me_last_pgno + 1) * st.ms_psize;
	return 0;
}

int pspace_store_check_size(pspace_store *s)
{
	MDB_envinfo ei;
	uint64_t used = 0, size = 0;
	int rc;

	rc = used_bytes(s, &used, &ei);
	if (rc == 0)
		rc = pspace_store_file_size(s, &size);
	if (rc != 0)
		return rc;
	if (size < used)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: data file %s is truncated: %llu bytes, but its "
		                      "last transaction needs %llu bytes",
		                      s->path, s->data_path, (unsigned long long)size,
		                      (unsigned long long)used);
	return 0;
}

/*
 * LMDB does not write pages allocated and freed again within one
 * transaction, so after a commit the file can end before the last page the
 * meta page counts. Nothing reads those pages, but the size check at open
 * could not tell that from truncation: extend the file (sparse zeros) while
 * holding the writer lock, so a pspace store's file always covers its pages.
 */
static int seal(pspace_store *s)
{
	MDB_envinfo ei;
	MDB_txn *txn = NULL;
	uint64_t used = 0, size = 0;
	int fd = -1;
	int rc;

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return pspace_store_err(s, rc, "begin write transaction");
	rc = used_bytes(s, &used, &ei);
	if (rc == 0)
		rc = pspace_store_file_size(s, &size);
	if (rc != 0 || size >= used)
		goto out;
	mdb_env_get_fd(s->env, &fd);
	if (ftruncate(fd, (off_t)used) != 0)
		rc = pspace_err_set(pspace_err_from_errno(errno),
		                    "store %s: extending %s to %llu bytes: %s", s->path,
		                    s->data_path, (unsigned long long)used, strerror(errno));
out:
	mdb_txn_abort(txn);
	return rc;
}

/* Grows the map so it has @p need bytes plus the headroom free. Called with
 * s->lock held and no transaction of this process active. */
static int grow(pspace_store *s, size_t need)
{
	MDB_envinfo ei;
	uint64_t used = 0, want;
	size_t size, room;
	int rc;

	rc = used_bytes(s, &used, &ei);
	if (rc != 0)
		return rc;
	if (ei.me_mapsize > s->mapsize)
		s->mapsize = ei.me_mapsize;
	want = used + s->headroom + need;
	if (want <= s->mapsize || (s->map_max && s->mapsize >= s->map_max))
		return 0;
	size = s->mapsize;
	while (size < want)
		size *= 2;
	if (s->map_max && size > s->map_max)
		size = s->map_max;
	/* The old map goes before the new one comes: it may count as room. A
	 * failed mmap would leave LMDB without a map, so stay within half the
	 * room (the rest is the process's) and let a full map say why. */
	room = pspace_store_as_room();
	if (room != SIZE_MAX && size > s->mapsize + room / 2) {
		size = pspace_store_map_round(s->mapsize + room / 2 - PSPACE_STORE_MAP_STEP + 1);
		s->as_capped = 1;
		if (size <= s->mapsize)
			return 0;
	}
	rc = mdb_env_set_mapsize(s->env, size);
	pspace_store_map_track(s, 1);
	if (rc != 0)
		return pspace_store_err(s, rc, "growing the map to %zu bytes", size);
	s->mapsize = size;
	return 0;
}

/*
 * Another process grew the data file past this map: map what the last
 * commit uses (a read-only handle) or that and the headroom. Called with
 * s->lock held and this the process's only transaction (being opened).
 */
static int remap(pspace_store *s)
{
	MDB_envinfo ei;
	uint64_t used = 0;
	size_t size;
	int rc;

	rc = used_bytes(s, &used, &ei);
	if (rc != 0)
		return rc;
	size = pspace_store_map_round(used + (s->readonly ? 0 : s->headroom));
	if (size < s->mapsize)
		size = s->mapsize;
	rc = mdb_env_set_mapsize(s->env, size);
	pspace_store_map_track(s, 1);
	if (rc != 0)
		return pspace_store_err(s, rc, "mapping %zu bytes of the grown data file %s", size,
		                        s->data_path);
	s->mapsize = size;
	return 0;
}

int pspace_store_txn_begin(pspace_store *s, int write, size_t need, MDB_txn **out)
{
	MDB_txn *txn = NULL;
	int rc = 0;

	*out = NULL;
	pthread_mutex_lock(&s->lock);
	if (write && s->write_txn && pthread_equal(s->write_owner, pthread_self())) {
		pthread_mutex_unlock(&s->lock);
		return pspace_err_set(PSPACE_EBUSY,
		                      "store %s: this thread already holds the store's write "
		                      "transaction (an open writer); finish or abort it first",
		                      s->path);
	}
	if (write && s->active == 0)
		rc = grow(s, need);
	if (rc == 0)
		s->active++;
	pthread_mutex_unlock(&s->lock);
	if (rc != 0)
		return rc;

	for (int tries = 0;; tries++) {
		int prc = 0;

		rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &txn);
		if (rc != MDB_MAP_RESIZED || tries == 3)
			break;
		/* Another process grew the data file past this map: map it
		 * again, legal only when this is the process's only transaction. */
		pthread_mutex_lock(&s->lock);
		if (s->active == 1)
			prc = remap(s);
		if (prc != 0)
			s->active--;
		pthread_mutex_unlock(&s->lock);
		if (prc != 0)
			return prc;
	}

	pthread_mutex_lock(&s->lock);
	if (rc != 0) {
		s->active--;
	} else if (write) {
		s->write_txn = txn;
		s->write_owner = pthread_self();
	}
	pthread_mutex_unlock(&s->lock);
	if (rc == MDB_MAP_RESIZED)
		return pspace_err_set(PSPACE_EBUSY,
		                      "store %s: another process grew the map while this process "
		                      "has transactions open; close readers and retry",
		                      s->path);
	if (rc != 0)
		return pspace_store_err(s, rc, "begin %s transaction", write ? "write" : "read");
	*out = txn;
	return 0;
}

static void txn_done(pspace_store *s, MDB_txn *txn)
{
	pthread_mutex_lock(&s->lock);
	if (s->write_txn == txn)
		s->write_txn = NULL;
	s->active--;
	pthread_mutex_unlock(&s->lock);
}

/*
 * LMDB reports a short write as EIO ("short write, filesystem full?"). Tell
 * a full disk or a file size limit from a real I/O error.
 */
static int commit_code(pspace_store *s, int rc, const char **why)
{
	struct statvfs vfs;
	struct rlimit rl;
	uint64_t size = 0;

	*why = "";
	if (rc != EIO)
		return pspace_store_code(rc);
	pspace_store_file_size(s, &size);
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    size + s->txn_bytes + PSPACE_STORE_SMALL_TXN >= (uint64_t)rl.rlim_cur) {
		*why = " (file size limit reached)";
		return PSPACE_EFULL;
	}
	if (statvfs(s->path, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < s->txn_bytes + PSPACE_STORE_SMALL_TXN) {
		*why = " (file system full)";
		return PSPACE_EFULL;
	}
	return PSPACE_EIO;
}

int pspace_store_txn_commit(pspace_store *s, MDB_txn *txn, const char *what)
{
	const char *why;
	int write;
	int rc;

	pthread_mutex_lock(&s->lock);
	write = s->write_txn == txn;
	pthread_mutex_unlock(&s->lock);
	rc = mdb_txn_commit(txn);
	if (rc != 0) {
		int code = commit_code(s, rc, &why);

		pspace_err_set(code, "store %s: commit (%s): %s%s", s->path, what, mdb_strerror(rc),
		               why);
		rc = code;
	} else if (write) {
		rc = seal(s);
	}
	txn_done(s, txn);
	return rc;
}

void pspace_store_txn_abort(pspace_store *s, MDB_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_abort(txn);
	txn_done(s, txn);
}
