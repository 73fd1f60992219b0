/*
 * The store environment: open (create, format and truncation checks),
 * close, statistics and compaction.
 *
 * Test hooks (environment variables, read at open):
 *   PSPACE_TEST_INITIAL_MAP  a writable handle's initial map beyond the file,
 *                            in bytes, replacing the 64 GiB (the headroom
 *                            shrinks to half of it);
 *   PSPACE_TEST_TXN_BYTES    writer checkpoint size in bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "pspace/shard.h"
#include "store/internal.h"
#include "store/keys.h"

static const char STORE_MAGIC[] = "pspace-store"; /* stored with its NUL */

#define PATH_MAX_LOCK 4200 /* "<store path>/lock.mdb" in messages */

void pspace_store_opts_default(pspace_store_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->create = 1;
}

const char *pspace_store_path(const pspace_store *s)
{
	return s->path;
}

static size_t env_size(const char *name, size_t dflt)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long n;

	if (!v || !*v)
		return dflt;
	n = strtoull(v, &end, 0);
	return (*end == '\0' && n > 0) ? (size_t)n : dflt;
}

static int meta_put(pspace_store *s, MDB_txn *txn, const char *key, const void *val, size_t len)
{
	MDB_val k = {strlen(key), (void *)key};
	MDB_val v = {len, (void *)val};
	int rc = mdb_put(txn, s->meta, &k, &v, 0);

	return rc ? pspace_store_err(s, rc, "writing meta \"%s\"", key) : 0;
}

/* Creates the databases and meta entries of a new store. */
static int init_store(pspace_store *s, MDB_txn *txn)
{
	uint8_t buf[8];
	int rc;

	pspace_put_le32(buf, PSPACE_FORMAT_VERSION);
	rc = meta_put(s, txn, "magic", STORE_MAGIC, sizeof(STORE_MAGIC));
	if (rc == 0)
		rc = meta_put(s, txn, "format", buf, 4);
	pspace_put_le64(buf, 1);
	if (rc == 0)
		rc = meta_put(s, txn, "next_id", buf, 8);
	return rc;
}

/* Checks magic and format version of an existing store. */
static int check_meta(pspace_store *s, MDB_txn *txn)
{
	MDB_val k = {5, "magic"}, v;
	uint32_t fmt;
	int rc;

	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size != sizeof(STORE_MAGIC) ||
	                                       memcmp(v.mv_data, STORE_MAGIC, v.mv_size) != 0)))
		return pspace_err_set(PSPACE_ECORRUPT, "store %s: not a pspace store (bad magic)",
		                      s->path);
	if (rc != 0)
		return pspace_store_err(s, rc, "reading meta \"magic\"");
	k = (MDB_val){6, "format"};
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != 4))
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: not a pspace store (no format version)", s->path);
	if (rc != 0)
		return pspace_store_err(s, rc, "reading meta \"format\"");
	fmt = pspace_get_le32(v.mv_data);
	if (fmt != PSPACE_FORMAT_VERSION)
		return pspace_err_set(
		    PSPACE_EVERSION, "store %s has format version %u; this pspace reads version %d",
		    s->path, fmt, PSPACE_FORMAT_VERSION);
	return 0;
}

/* Opens the named databases (creating them in a new store) and checks meta. */
static int open_dbs(pspace_store *s)
{
	static const char *names[] = {"catalog", "layouts", "tiles", "arrays"};
	MDB_dbi *dbis[] = {&s->catalog, &s->layouts, &s->tiles, &s->arrays};
	MDB_txn *txn = NULL;
	MDB_dbi main_dbi;
	MDB_stat st;
	unsigned flags = 0;
	int fresh = 0;
	int rc;

	rc = pspace_store_txn_begin(s, !s->readonly, PSPACE_STORE_SMALL_TXN, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
	if (rc == MDB_NOTFOUND) {
		rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
		if (rc == 0)
			rc = mdb_stat(txn, main_dbi, &st);
		if (rc != 0) {
			rc = pspace_store_err(s, rc, "reading the main database");
			goto out;
		}
		if (st.ms_entries != 0 || s->readonly) {
			rc = pspace_err_set(PSPACE_ECORRUPT,
			                    "store %s: not a pspace store (no meta database)",
			                    s->path);
			goto out;
		}
		fresh = 1;
		flags = MDB_CREATE;
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
	}
	if (rc != 0) {
		rc = pspace_store_err(s, rc, "opening database \"meta\"");
		goto out;
	}
	rc = fresh ? init_store(s, txn) : check_meta(s, txn);
	if (rc != 0)
		goto out;
	for (size_t i = 0; i < 4; i++) {
		rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
		if (rc == MDB_NOTFOUND) {
			rc = pspace_err_set(PSPACE_ECORRUPT, "store %s: database \"%s\" is missing",
			                    s->path, names[i]);
			goto out;
		}
		if (rc != 0) {
			rc = pspace_store_err(s, rc, "opening database \"%s\"", names[i]);
			goto out;
		}
	}
	/* Committing (a read transaction too) keeps the database handles. */
	rc = pspace_store_txn_commit(s, txn, "opening the store");
	txn = NULL;
out:
	pspace_store_txn_abort(s, txn);
	return rc;
}

/* Checks the directory and data file before LMDB maps anything. */
static int check_paths(pspace_store *s, const pspace_store_opts *o, uint64_t *file_size)
{
	uint32_t nranks = 0, present = 0;
	struct stat st;

	*file_size = 0;
	if (stat(s->path, &st) != 0) {
		if (errno != ENOENT)
			return pspace_err_set(pspace_err_from_errno(errno), "store %s: %s", s->path,
			                      strerror(errno));
		if (!o->create || o->readonly)
			return pspace_err_set(PSPACE_ENOTFOUND,
			                      "store %s: no such directory (and create is off)",
			                      s->path);
		if (mkdir(s->path, 0777) != 0 && errno != EEXIST)
			return pspace_err_set(pspace_err_from_errno(errno),
			                      "store %s: cannot create the directory: %s", s->path,
			                      strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		return pspace_err_set(PSPACE_EINVAL, "store %s: not a directory", s->path);
	}
	if (stat(s->data_path, &st) != 0) {
		if (errno != ENOENT)
			return pspace_err_set(pspace_err_from_errno(errno), "store %s: %s: %s",
			                      s->path, s->data_path, strerror(errno));
		/* A sharded store's directory holds a store per rank, none of its own:
		 * neither read nor create one there. */
		if (pspace_shard_scan(&nranks, &present, s->path) == 0 && nranks > 0)
			return pspace_err_set(
			    PSPACE_EINVAL,
			    "store %s is sharded over %u ranks (%s/shard-R-of-%u): "
			    "build and evaluate it under mpirun -n %u; ls, info, "
			    "verify and stat read it whole without mpirun",
			    s->path, nranks, s->path, nranks, nranks);
		pspace_errclear();
		if (!o->create || o->readonly)
			return pspace_err_set(PSPACE_ENOTFOUND, "store %s: no store there (no %s)",
			                      s->path, s->data_path);
		return 0;
	}
	/* LMDB would silently initialize an empty file as a new environment. */
	if (st.st_size == 0)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: data file %s is empty (0 bytes): truncated or "
		                      "not a store",
		                      s->path, s->data_path);
	*file_size = (uint64_t)st.st_size;
	return 0;
}

/*
 * The map of a new handle. A read-only one maps the file and a margin for
 * what other processes add while it is open; a writable one reserves
 * PSPACE_STORE_MIN_MAP beyond the file (map growth needs a moment without
 * transactions). Under an address-space limit either takes at most half of
 * the room left, but never less than the file.
 */
static size_t initial_map(pspace_store *s, const pspace_store_opts *o, uint64_t file_size)
{
	size_t room = pspace_store_as_room();
	uint64_t extra, map;

	if (o->readonly) {
		extra = file_size / 4;
		if (extra < PSPACE_STORE_MAP_HEADROOM)
			extra = PSPACE_STORE_MAP_HEADROOM;
		if (extra > ((uint64_t)1 << 30))
			extra = (uint64_t)1 << 30;
	} else {
		extra = env_size("PSPACE_TEST_INITIAL_MAP", PSPACE_STORE_MIN_MAP);
		if (extra < file_size)
			extra = file_size;
	}
	if (room != SIZE_MAX && extra > room / 2) {
		extra = room / 2;
		s->as_capped = 1;
	}
	map = pspace_store_map_round(file_size + extra);
	if (o->map_max && map > o->map_max)
		map = o->map_max;
	return (size_t)map;
}

/* Names the file a permission error of mdb_env_open() is about. */
static const char *denied_file(const pspace_store *s, char *lock, size_t cap, int readonly)
{
	snprintf(lock, cap, "%s/lock.mdb", s->path);
	if (access(s->data_path, readonly ? R_OK : R_OK | W_OK) != 0)
		return s->data_path;
	if (access(lock, F_OK) != 0)
		return s->path; /* lock.mdb cannot be created in the directory */
	return lock;
}

/* mdb_env_open() errors, each naming the file. */
static int open_error(pspace_store *s, int rc, uint64_t file_size, size_t map, int readonly)
{
	char lock[PATH_MAX_LOCK];
	size_t room;

	if (rc == MDB_INVALID || rc == EINVAL)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "store %s: data file %s (%llu bytes) is truncated or not an "
		                      "LMDB file: %s",
		                      s->path, s->data_path, (unsigned long long)file_size,
		                      mdb_strerror(rc));
	if (rc == ENOENT)
		return pspace_err_set(PSPACE_ENOTFOUND, "store %s: %s", s->path, mdb_strerror(rc));
	if (rc == EACCES || rc == EPERM || rc == EROFS)
		return pspace_err_set(PSPACE_EIO, "store %s: %s: %s%s", s->path,
		                      denied_file(s, lock, sizeof(lock), readonly), strerror(rc),
		                      readonly ? "" : " (a read-only store can only be read)");
	room = pspace_store_as_room();
	if (rc == ENOMEM && room != SIZE_MAX)
		return pspace_err_set(
		    PSPACE_ENOMEM,
		    "store %s: cannot map %zu bytes of %s: the address-space limit "
		    "(ulimit -v) leaves %zu bytes",
		    s->path, map, s->data_path, room);
	return pspace_store_err(s, rc, "opening the LMDB environment");
}

/* Creates, configures and opens the LMDB environment with @p flags. */
static int env_try(pspace_store *s, const pspace_store_opts *o, size_t map, unsigned flags)
{
	int rc;

	rc = mdb_env_create(&s->env);
	if (rc != 0)
		return rc;
	pspace_store_fault_env(s->env);
	rc = mdb_env_set_maxdbs(s->env, 8);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : 126);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, map);
	if (rc == 0)
		rc = mdb_env_open(s->env, s->path, flags, 0664);
	if (rc != 0) {
		mdb_env_close(s->env);
		s->env = NULL;
	}
	return rc;
}

static int open_env(pspace_store *s, const pspace_store_opts *o, uint64_t file_size)
{
	size_t map;
	unsigned flags = MDB_NOTLS;
	MDB_envinfo ei;
	int rc;

	map = initial_map(s, o, file_size);
	s->headroom = PSPACE_STORE_MAP_HEADROOM;
	if (!o->readonly) {
		size_t first = env_size("PSPACE_TEST_INITIAL_MAP", PSPACE_STORE_MIN_MAP);

		if (first / 2 < s->headroom)
			s->headroom = first / 2;
	}
	if (o->readonly)
		flags |= MDB_RDONLY;
	if (o->nosync)
		flags |= MDB_NOSYNC;
	rc = env_try(s, o, map, flags);
	/* Read-only files (chmod a-w): lock.mdb cannot be opened for writing.
	 * Nothing can write such a store, so read it without the lock file. */
	if ((rc == EACCES || rc == EPERM) && o->readonly && access(s->data_path, R_OK) == 0) {
		rc = env_try(s, o, map, flags | MDB_NOLOCK);
		s->nolock = rc == 0;
	}
	if (rc != 0)
		return open_error(s, rc, file_size, map, o->readonly);
	pspace_store_map_track(s, 1);
	rc = pspace_store_check_size(s);
	if (rc != 0)
		return rc;
	rc = mdb_env_info(s->env, &ei);
	if (rc != 0)
		return pspace_store_err(s, rc, "environment info");
	s->mapsize = ei.me_mapsize;
	return 0;
}

int pspace_store_open(pspace_store **out, const char *path, const pspace_store_opts *opts)
{
	pspace_store_opts o;
	pspace_store *s = NULL;
	uint64_t file_size;
	size_t n;
	int rc;

	*out = NULL;
	(void)pspace_init(); /* a BLIS problem surfaces where kernels run */
	if (opts)
		o = *opts;
	else
		pspace_store_opts_default(&o);
	if (!path || !*path)
		return pspace_err_set(PSPACE_EINVAL, "store path is empty");

	s = calloc(1, sizeof(*s));
	if (!s)
		return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", path);
	pthread_mutex_init(&s->lock, NULL);
	n = strlen(path);
	s->path = strdup(path);
	s->data_path = malloc(n + sizeof("/data.mdb"));
	if (!s->path || !s->data_path) {
		rc = pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", path);
		goto out;
	}
	memcpy(s->data_path, path, n);
	memcpy(s->data_path + n, "/data.mdb", sizeof("/data.mdb"));
	s->readonly = o.readonly != 0;
	s->map_max = o.map_max;
	s->txn_bytes = env_size("PSPACE_TEST_TXN_BYTES", PSPACE_WRITER_TXN_BYTES);

	rc = check_paths(s, &o, &file_size);
	if (rc == 0 && file_size > 0)
		rc = pspace_store_check_open(s, file_size);
	if (rc == 0)
		rc = open_env(s, &o, file_size);
	if (rc == 0)
		rc = open_dbs(s);
	if (rc == 0) {
		*out = s;
		s = NULL;
	}
out:
	pspace_store_close(s);
	return rc;
}

void pspace_store_close(pspace_store *s)
{
	if (!s)
		return;
	pspace_store_map_track(s, 0);
	if (s->env)
		mdb_env_close(s->env);
	pthread_mutex_destroy(&s->lock);
	free(s->data_path);
	free(s->path);
	free(s);
}

static int count_reader(const char *msg, void *ctx)
{
	unsigned long pid, thr;
	char txnid[32];

	/* Lines are "pid thread txnid"; an idle slot shows txnid "-". */
	if (sscanf(msg, " %lu %lx %31s", &pid, &thr, txnid) == 3 && strcmp(txnid, "-") != 0)
		++*(unsigned *)ctx;
	return 0;
}

int pspace_store_stat_get(pspace_store_stat *out, pspace_store *s)
{
	MDB_txn *txn = NULL;
	MDB_stat tst, cst, est;
	MDB_envinfo ei;
	unsigned readers = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = pspace_store_txn_begin(s, 0, 0, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_stat(txn, s->tiles, &tst);
	if (rc == 0)
		rc = mdb_stat(txn, s->catalog, &cst);
	if (rc == 0)
		rc = mdb_env_stat(s->env, &est);
	if (rc == 0)
		rc = mdb_env_info(s->env, &ei);
	if (rc != 0) {
		rc = pspace_store_err(s, rc, "statistics");
		goto out;
	}
	mdb_reader_list(s->env, count_reader, &readers);
	rc = pspace_store_file_size(s, &out->file_bytes);
	if (rc != 0)
		goto out;
	out->format_version = PSPACE_FORMAT_VERSION;
	out->map_bytes = ei.me_mapsize;
	out->page_size = est.ms_psize;
	out->used_bytes = ((uint64_t)ei.me_last_pgno + 1) * est.ms_psize;
	out->tile_entries = tst.ms_entries;
	out->tile_branch_pages = tst.ms_branch_pages;
	out->tile_leaf_pages = tst.ms_leaf_pages;
	out->tile_overflow_pages = tst.ms_overflow_pages;
	out->tree_depth = tst.ms_depth;
	out->readers_max = ei.me_maxreaders;
	out->readers_used = readers;
	out->matrices = cst.ms_entries;
out:
	pspace_store_txn_abort(s, txn);
	return rc;
}

int pspace_store_compact(pspace_store *s, const char *out_path)
{
	struct stat st;
	char *data = NULL;
	size_t n;
	int rc = 0;

	if (!out_path || !*out_path)
		return pspace_err_set(PSPACE_EINVAL, "store %s: compact: empty output path",
		                      s->path);
	n = strlen(out_path);
	data = malloc(n + sizeof("/data.mdb"));
	if (!data)
		return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
	memcpy(data, out_path, n);
	memcpy(data + n, "/data.mdb", sizeof("/data.mdb"));
	if (stat(data, &st) == 0) {
		rc = pspace_err_set(PSPACE_EEXIST, "store %s: compact: %s already holds a store",
		                    s->path, out_path);
		goto out;
	}
	if (mkdir(out_path, 0777) != 0 && errno != EEXIST) {
		rc = pspace_err_set(pspace_err_from_errno(errno), "store %s: compact: mkdir %s: %s",
		                    s->path, out_path, strerror(errno));
		goto out;
	}
	/* The copy runs a read transaction: keep the map from being resized. */
	pthread_mutex_lock(&s->lock);
	s->active++;
	pthread_mutex_unlock(&s->lock);
	rc = mdb_env_copy2(s->env, out_path, MDB_CP_COMPACT);
	pthread_mutex_lock(&s->lock);
	s->active--;
	pthread_mutex_unlock(&s->lock);
	if (rc != 0)
		rc = pspace_store_err(s, rc, "compacting into %s", out_path);
out:
	free(data);
	return rc;
}
