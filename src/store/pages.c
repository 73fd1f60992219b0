/*
 * LMDB's pages read by hand, so a damaged store is found before LMDB trusts
 * it: the meta pages and the main database at open, and every page of
 * every database for pspace_store_check_pages().
 *
 * The layout is that of LMDB 0.9 on a 64-bit little-endian host (mdb.c:
 * MDB_page, MDB_meta, MDB_db, MDB_node), read with pread() from the data
 * file, never through the map, so a damaged page number cannot fault:
 *
 *   page header (16 bytes): pgno u64 | pad u16 | flags u16 | lower u16 |
 *     upper u16 (an overflow page: page count u32 in place of lower/upper);
 *     a branch or leaf page holds (lower - 16) / 2 u16 node offsets.
 *   node (8 bytes + key + data): lo u16 | hi u16 | flags u16 | key size u16;
 *     a branch node's child is lo | hi << 16 | flags << 32, a leaf node's
 *     data size lo | hi << 16; flag 1: data is the u64 number of the first
 *     of ceil((16 + size) / page size) overflow pages, flag 2: data is a
 *     database record (a named database in the main one).
 *   database record (48 bytes): pad u32 | flags u16 | depth u16 | branch,
 *     leaf, overflow pages u64 x 3 | entries u64 | root u64 (~0 = empty).
 *   meta page (pages 0 and 1, after the header): magic u32 0xBEEFC0DE |
 *     version u32 1 | address u64 | map size u64 | free-page database
 *     record (its pad is the page size) | main database record | last page
 *     u64 | txnid u64. The page with the larger txnid is the current one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "store/internal.h"
#include "store/keys.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ ||                       \
    UINTPTR_MAX != UINT64_MAX
#error "the page walker reads LMDB's layout of 64-bit little-endian hosts"
#endif

enum {
	PAGE_HDR = 16,
	P_BRANCH = 0x01,
	P_LEAF = 0x02,
	P_OVERFLOW = 0x04,
	P_META = 0x08,
	P_TYPES = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40, /* with LEAF2, SUBP */
	F_BIGDATA = 0x01,
	F_SUBDATA = 0x02,
	F_DUPDATA = 0x04,
	NODE_HDR = 8,
	DB_SIZE = 48,
	META_OFF = PAGE_HDR, /* the meta record follows the page header */
	META_SIZE = 152 - PAGE_HDR,
	MAX_DEPTH = 32, /* LMDB's cursor stack */
	INTEGERKEY = 0x08,
	MAGIC = 0xBEEFC0DE,
};

#define P_INVALID UINT64_MAX

/* A database record. */
typedef struct db_rec {
	uint32_t pad;
	uint16_t flags, depth;
	uint64_t branch, leaf, overflow, entries, root;
} db_rec;

/* A meta page. */
typedef struct meta_rec {
	uint32_t magic, version, psize;
	db_rec dbs[2]; /* free pages, main */
	uint64_t last, txnid;
	int flags_ok;
} meta_rec;

/* A key's bounds from the branch pages above: lo <= key < hi (NULL: none). */
typedef struct key_range {
	const uint8_t *lo, *hi;
	size_t lo_n, hi_n;
} key_range;

/*
 * Which named databases a walk enters: none (verify's whole walk enters
 * all through its own flag), all but the tiles, or one within key bounds.
 */
enum { DESCEND_NONE, DESCEND_SMALL, DESCEND_TARGET };

/* How a walk treats a branch page's children. */
enum { WALK_ALL, WALK_LIMITED, WALK_LEFTMOST };

/* State of one check: the file, the current meta, what was seen. */
typedef struct walker {
	pspace_store *s;
	int fd;
	uint64_t file_size;
	uint32_t psize;
	meta_rec m;
	uint8_t *seen; /* bitmap of reached pages (whole walk only) */
	uint8_t *buf;  /* one page per tree level: the main database's, then a named one's */
	unsigned base; /* the first of buf's levels the current database uses */
	pspace_page_check *out;
	/* per database */
	const char *db;
	uint64_t branch, leaf, overflow, entries;
	uint8_t last_key[512];
	size_t last_len;
	int have_last;
	int integer_keys;
	/* a walk for LMDB's readers rather than verify: */
	int descend;        /* DESCEND_* */
	const char *target; /* DESCEND_TARGET: the named database ... */
	key_range limit;    /* ... and the keys to be read (inclusive bounds) */
	int limited;        /* walking the target now */
	int headers;        /* read overflow headers, as a writer frees runs by them */
} walker;

static void db_decode(db_rec *d, const uint8_t *p)
{
	d->pad = pspace_get_le32(p);
	d->flags = (uint16_t)(p[4] | p[5] << 8);
	d->depth = (uint16_t)(p[6] | p[7] << 8);
	d->branch = pspace_get_le64(p + 8);
	d->leaf = pspace_get_le64(p + 16);
	d->overflow = pspace_get_le64(p + 24);
	d->entries = pspace_get_le64(p + 32);
	d->root = pspace_get_le64(p + 40);
}

static uint16_t u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* A damaged structure: ECORRUPT naming the data file and what is wrong. */
static int bad(const walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(const walker *w, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return pspace_err_set(PSPACE_ECORRUPT, "store %s: data file %s is corrupt: %s", w->s->path,
	                      w->s->data_path, what);
}

static int read_at(const walker *w, void *dst, size_t len, uint64_t off)
{
	ssize_t n = pread(w->fd, dst, len, (off_t)off);

	if (n == (ssize_t)len)
		return 0;
	if (n < 0)
		return pspace_err_set(pspace_err_from_errno(errno), "store %s: reading %s: %s",
		                      w->s->path, w->s->data_path, strerror(errno));
	return bad(w, "%zu bytes at offset %llu lie past its end", len, (unsigned long long)off);
}

/* Reads meta page @p i (its page size known from page 0). */
static int read_meta(walker *w, int i, meta_rec *m)
{
	uint8_t p[PAGE_HDR + META_SIZE];
	const uint8_t *r = p + META_OFF;
	int rc;

	rc = read_at(w, p, sizeof(p), (uint64_t)i * w->psize);
	if (rc != 0)
		return rc;
	memset(m, 0, sizeof(*m));
	if (!(u16(p + 10) & P_META))
		return bad(w, "page %d is not a meta page", i);
	m->magic = pspace_get_le32(r);
	m->version = pspace_get_le32(r + 4);
	db_decode(&m->dbs[0], r + 24);
	db_decode(&m->dbs[1], r + 24 + DB_SIZE);
	m->psize = m->dbs[0].pad;
	m->last = pspace_get_le64(r + 24 + 2 * DB_SIZE);
	m->txnid = pspace_get_le64(r + 24 + 2 * DB_SIZE + 8);
	if (m->magic != MAGIC)
		return bad(w, "meta page %d has no LMDB magic", i);
	if (m->version != 1)
		return bad(w, "meta page %d has LMDB data version %u (expected 1)", i, m->version);
	return 0;
}

/* A database record's root and depth fit the file (@p last: its last page). */
static int check_db(const walker *w, const db_rec *d, uint64_t last, const char *what)
{
	if (d->root == P_INVALID)
		return d->depth == 0 && d->entries == 0
		           ? 0
		           : bad(w, "%s: empty database with depth %u and %llu entries", what,
		                 d->depth, (unsigned long long)d->entries);
	if (d->root < 2 || d->root > last)
		return bad(w, "%s: root page %llu outside pages 2..%llu", what,
		           (unsigned long long)d->root, (unsigned long long)last);
	if (d->depth == 0 || d->depth > MAX_DEPTH)
		return bad(w, "%s: tree depth %u", what, d->depth);
	return 0;
}

/* Checks one meta page's fields against the file. */
static int check_meta_rec(const walker *w, const meta_rec *m, int i)
{
	char what[64];
	int rc;

	if (m->psize != w->psize)
		return bad(w, "meta page %d gives page size %u, meta page 0 %u", i, m->psize,
		           w->psize);
	if (m->last < 1 || m->last >= w->file_size / w->psize)
		return bad(w,
		           "meta page %d: last page %llu, but the file holds %llu pages "
		           "(truncated or damaged)",
		           i, (unsigned long long)m->last,
		           (unsigned long long)(w->file_size / w->psize));
	/* LMDB reads the meta page of index txnid & 1, whatever the other says */
	if (m->txnid != 0 && (m->txnid & 1) != (uint64_t)i)
		return bad(w, "meta page %d: transaction id %llu belongs in meta page %d", i,
		           (unsigned long long)m->txnid, (int)(m->txnid & 1));
	if (m->dbs[0].flags != INTEGERKEY || m->dbs[1].flags != 0)
		return bad(w, "meta page %d: database flags %#x/%#x (expected %#x/0)", i,
		           m->dbs[0].flags, m->dbs[1].flags, INTEGERKEY);
	snprintf(what, sizeof(what), "meta page %d, free-page database", i);
	rc = check_db(w, &m->dbs[0], m->last, what);
	if (rc == 0) {
		snprintf(what, sizeof(what), "meta page %d, main database", i);
		rc = check_db(w, &m->dbs[1], m->last, what);
	}
	return rc;
}

/*
 * Reads and checks both meta pages as LMDB reads them, and picks the
 * current one (the larger txnid; with @p txnid nonzero, the one of that
 * transaction).
 */
static int load_metas(walker *w, uint64_t txnid)
{
	uint8_t p0[PAGE_HDR + META_SIZE];
	meta_rec m[2];
	struct stat st;
	int rc, cur;

	if (w->file_size < 2 * 512)
		return bad(w, "%llu bytes are too few for LMDB's two meta pages",
		           (unsigned long long)w->file_size);
	rc = read_at(w, p0, sizeof(p0), 0);
	if (rc != 0)
		return rc;
	w->psize = pspace_get_le32(p0 + META_OFF + 24);
	if (w->psize < 512 || w->psize > 65536 || (w->psize & (w->psize - 1)) ||
	    w->file_size < 2 * (uint64_t)w->psize)
		return bad(w, "meta page 0 gives page size %u", w->psize);
	for (int i = 0; i < 2; i++) {
		rc = read_meta(w, i, &m[i]);
		if (rc != 0)
			return rc;
	}
	/*
	 * The file's size now: a writer (another thread or process) may have
	 * committed since the caller took it, and its meta page names pages
	 * past that size. LMDB writes the pages before the meta page and never
	 * shrinks the file, so a size taken after reading the meta pages covers
	 * every page they name unless the file was damaged.
	 */
	if (fstat(w->fd, &st) == 0 && (uint64_t)st.st_size > w->file_size)
		w->file_size = (uint64_t)st.st_size;
	for (int i = 0; i < 2; i++) {
		rc = check_meta_rec(w, &m[i], i);
		if (rc != 0)
			return rc;
	}
	cur = m[0].txnid < m[1].txnid;
	if (txnid && m[cur].txnid != txnid)
		cur = m[!cur].txnid == txnid ? !cur : -1;
	if (cur < 0)
		return PSPACE_EBUSY; /* overwritten by newer commits: try again */
	w->m = m[cur];
	return 0;
}

/* LMDB's key order: memcmp, then length; native u64 for integer keys. */
static int key_cmp(const walker *w, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
	size_t m = an < bn ? an : bn;
	int c;

	if (w->integer_keys && an == 8 && bn == 8) {
		uint64_t x = pspace_get_le64(a), y = pspace_get_le64(b);

		return x < y ? -1 : x > y;
	}
	c = memcmp(a, b, m);
	return c ? c : (an > bn) - (an < bn);
}

static int in_range(const walker *w, const key_range *r, const uint8_t *k, size_t n)
{
	return (!r->lo || key_cmp(w, k, n, r->lo, r->lo_n) >= 0) &&
	       (!r->hi || key_cmp(w, k, n, r->hi, r->hi_n) < 0);
}

/* Key order: memcmp, then length (LMDB's default); native u64 for integer keys. */
static int key_after(walker *w, const uint8_t *k, size_t n)
{
	int after = 1;

	if (w->integer_keys) {
		if (n != 8)
			return 0;
		after = !w->have_last || pspace_get_le64(k) > pspace_get_le64(w->last_key);
	} else if (w->have_last) {
		size_t m = n < w->last_len ? n : w->last_len;
		int c = memcmp(k, w->last_key, m);

		after = c > 0 || (c == 0 && n > w->last_len);
	}
	w->last_len = n < sizeof(w->last_key) ? n : sizeof(w->last_key);
	memcpy(w->last_key, k, w->last_len);
	w->have_last = 1;
	return after;
}

/* Marks @p n pages from @p pgno as reached; each must be new and in range. */
static int reach(walker *w, uint64_t pgno, uint64_t n, const char *what)
{
	if (pgno < 2 || pgno > w->m.last || n > w->m.last - pgno + 1)
		return bad(w, "%s: %s page %llu (+%llu) outside pages 2..%llu", w->db, what,
		           (unsigned long long)pgno, (unsigned long long)n,
		           (unsigned long long)w->m.last);
	if (!w->seen)
		return 0;
	for (uint64_t p = pgno; p < pgno + n; p++) {
		if (w->seen[p >> 3] & (1u << (p & 7)))
			return bad(w, "%s: page %llu is reached twice", w->db,
			           (unsigned long long)p);
		w->seen[p >> 3] |= (uint8_t)(1u << (p & 7));
	}
	w->out->reachable += n;
	return 0;
}

static int walk_db(walker *w, const db_rec *d, const char *name, int whole);

/*
 * A free-page database value: a count and that many page numbers (u64),
 * inline or in overflow pages. Free pages are marked reached, so a page
 * both free and in a tree is found.
 */
static int free_list(walker *w, const uint8_t *data, uint32_t dsize, uint16_t nflags)
{
	uint8_t *copy = NULL;
	const uint8_t *ids = data;
	uint64_t n;
	int rc = 0;

	if (nflags & F_BIGDATA) {
		uint64_t ov = pspace_get_le64(data);

		if (ov < 2 || ov > w->m.last)
			return 0; /* leaf_data reports it */
		copy = malloc(dsize ? dsize : 1);
		if (!copy)
			return pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", w->s->path);
		rc = read_at(w, copy, dsize, ov * w->psize + PAGE_HDR);
		ids = copy;
	}
	if (rc == 0 && (dsize < 8 || (n = pspace_get_le64(ids)) != dsize / 8 - 1 || dsize % 8))
		rc = bad(w, "%s: a free list of %u bytes", w->db, dsize);
	for (uint64_t i = 1; rc == 0 && i <= dsize / 8 - 1; i++) {
		rc = reach(w, pspace_get_le64(ids + 8 * i), 1, "free");
		w->out->free++;
		w->out->reachable--;
	}
	free(copy);
	return rc;
}

/* A leaf node's data: an overflow run, a named database, or inline bytes. */
static int leaf_data(walker *w, const uint8_t *node, const uint8_t *data, uint32_t dsize,
                     uint16_t nflags, int whole)
{
	uint8_t hdr[PAGE_HDR];
	uint64_t ov, n;
	int rc;

	if (nflags & F_DUPDATA)
		return bad(w, "%s: a duplicate-data node (pspace has none)", w->db);
	if (w->integer_keys && whole) {
		rc = free_list(w, data, dsize, nflags);
		if (rc != 0)
			return rc;
	}
	if (nflags & F_BIGDATA) {
		ov = pspace_get_le64(data);
		n = ((uint64_t)PAGE_HDR - 1 + dsize) / w->psize + 1;
		rc = reach(w, ov, n, "overflow");
		/* LMDB's readers use only the run's place and the node's size;
		 * the header costs a read per value, so verify alone reads it. */
		if (rc == 0 && !whole && !w->headers)
			return 0;
		if (rc == 0)
			rc = read_at(w, hdr, sizeof(hdr), ov * w->psize);
		if (rc != 0)
			return rc;
		if (pspace_get_le64(hdr) != ov || (u16(hdr + 10) & P_TYPES) != P_OVERFLOW ||
		    pspace_get_le32(hdr + 12) != n)
			return bad(w,
			           "%s: overflow page %llu: header says page %llu, flags %#x, "
			           "%u pages (expected %llu)",
			           w->db, (unsigned long long)ov,
			           (unsigned long long)pspace_get_le64(hdr), u16(hdr + 10),
			           pspace_get_le32(hdr + 12), (unsigned long long)n);
		w->overflow += n;
		if (w->out)
			w->out->overflow_pages += n;
		return 0;
	}
	if (nflags & F_SUBDATA) {
		char name[64];
		size_t kn = u16(node + 6) < sizeof(name) - 1 ? u16(node + 6) : sizeof(name) - 1;
		db_rec sub;

		if (dsize != DB_SIZE)
			return bad(w, "%s: a database record of %u bytes", w->db, dsize);
		memcpy(name, node + NODE_HDR, kn);
		name[kn] = '\0';
		db_decode(&sub, data);
		if (sub.flags != 0)
			return bad(w, "database \"%s\": flags %#x (pspace sets none)", name,
			           sub.flags);
		rc = check_db(w, &sub, w->m.last, name);
		if (rc != 0 || whole)
			return rc == 0 ? walk_db(w, &sub, name, whole) : rc;
		if (w->descend == DESCEND_SMALL && strcmp(name, "tiles") != 0)
			return walk_db(w, &sub, name, 0);
		if (w->descend == DESCEND_TARGET && strcmp(name, w->target) == 0) {
			w->limited = 1;
			rc = walk_db(w, &sub, name, 0);
			w->limited = 0;
		}
		return rc;
	}
	return 0;
}

/*
 * Reads and checks page @p pgno at @p level of a tree of depth @p depth,
 * and below it the children @p mode selects: all; those whose keys meet
 * w->limit, and then the leftmost path of the next one (where LMDB's
 * cursor steps when it leaves the limit); or the leftmost path only.
 */
static int walk_page(walker *w, uint64_t pgno, unsigned level, unsigned depth, int whole,
                     const key_range *range, int mode)
{
	uint8_t *p = w->buf + (size_t)(w->base + level) * w->psize;
	int leaf = level + 1 == depth;
	uint16_t flags, lower, upper, nkeys;
	int rc;

	rc = reach(w, pgno, 1, leaf ? "leaf" : "branch");
	if (rc == 0)
		rc = read_at(w, p, w->psize, pgno * w->psize);
	if (rc != 0)
		return rc;
	flags = u16(p + 10);
	lower = u16(p + 12);
	upper = u16(p + 14);
	if (pspace_get_le64(p) != pgno)
		return bad(w, "%s: page %llu says it is page %llu", w->db, (unsigned long long)pgno,
		           (unsigned long long)pspace_get_le64(p));
	if ((flags & P_TYPES) != (leaf ? P_LEAF : P_BRANCH))
		return bad(w, "%s: page %llu at level %u of %u has flags %#x (expected a %s page)",
		           w->db, (unsigned long long)pgno, level + 1, depth, flags,
		           leaf ? "leaf" : "branch");
	if (lower < PAGE_HDR || lower > upper || upper > w->psize || (lower - PAGE_HDR) % 2)
		return bad(w, "%s: page %llu has free space bounds %u..%u", w->db,
		           (unsigned long long)pgno, lower, upper);
	nkeys = (uint16_t)((lower - PAGE_HDR) / 2);
	if (nkeys < (leaf || w->integer_keys ? 1 : 2))
		return bad(w, "%s: %s page %llu holds %u keys", w->db, leaf ? "leaf" : "branch",
		           (unsigned long long)pgno, nkeys);
	if (leaf)
		w->leaf++;
	else
		w->branch++;
	for (uint16_t i = 0; i < nkeys && rc == 0; i++) {
		uint16_t off = u16(p + PAGE_HDR + 2 * i);
		const uint8_t *node = p + off;
		uint16_t nflags, ksize;
		uint32_t lo_hi;
		uint64_t need;

		if (off < upper || (uint32_t)off + NODE_HDR > w->psize)
			return bad(w, "%s: page %llu, node %u at offset %u outside %u..%u", w->db,
			           (unsigned long long)pgno, i, off, upper, w->psize);
		lo_hi = (uint32_t)u16(node) | (uint32_t)u16(node + 2) << 16;
		nflags = u16(node + 4);
		ksize = u16(node + 6);
		need = (uint64_t)off + NODE_HDR + ksize;
		if (leaf)
			need += nflags & F_BIGDATA ? 8 : lo_hi;
		if (need > w->psize)
			return bad(w, "%s: page %llu, node %u (key %u bytes) overruns the page",
			           w->db, (unsigned long long)pgno, i, ksize);
		if ((leaf && !key_after(w, node + NODE_HDR, ksize)) ||
		    ((leaf || i > 0) && !in_range(w, range, node + NODE_HDR, ksize)))
			return bad(w, "%s: page %llu, node %u: keys out of order", w->db,
			           (unsigned long long)pgno, i);
		if (leaf) {
			w->entries++;
			rc = leaf_data(w, node, node + NODE_HDR + ksize, lo_hi, nflags, whole);
		} else {
			uint64_t child = lo_hi | (uint64_t)nflags << 32;
			key_range sub = *range;

			/* Child i holds keys from key i (the first key is unused) to
			 * key i + 1; it overwrites deeper buffers only, not this page. */
			if (i > 0) {
				sub.lo = node + NODE_HDR;
				sub.lo_n = ksize;
			}
			if (i + 1 < nkeys) {
				const uint8_t *next = p + u16(p + PAGE_HDR + 2 * (i + 1));

				if (next + NODE_HDR > p + w->psize ||
				    next + NODE_HDR + u16(next + 6) > p + w->psize)
					return bad(w, "%s: page %llu, node %u overruns the page",
					           w->db, (unsigned long long)pgno, i + 1);
				sub.hi = next + NODE_HDR;
				sub.hi_n = u16(next + 6);
			}
			if (mode == WALK_LEFTMOST && i > 0)
				break;
			if (mode == WALK_LIMITED) {
				const key_range *l = &w->limit;

				/* keys below sub.hi <= l->lo: LMDB never reads this child */
				if (sub.hi && key_cmp(w, sub.hi, sub.hi_n, l->lo, l->lo_n) <= 0)
					continue;
				if (i > 0 && key_cmp(w, sub.lo, sub.lo_n, l->hi, l->hi_n) > 0) {
					rc = walk_page(w, child, level + 1, depth, whole, &sub,
					               WALK_LEFTMOST);
					break;
				}
			}
			rc = walk_page(w, child, level + 1, depth, whole, &sub, mode);
		}
	}
	return rc;
}

/* Walks database @p d (@p name) and compares its statistics with the record. */
static int walk_db(walker *w, const db_rec *d, const char *name, int whole)
{
	walker saved = *w;
	int rc;

	if (d->root == P_INVALID)
		return 0;
	w->db = name;
	w->base = saved.db ? MAX_DEPTH : 0;
	w->branch = w->leaf = w->overflow = w->entries = 0;
	w->have_last = 0;
	w->integer_keys = strcmp(name, "free-page database") == 0;
	rc = walk_page(w, d->root, 0, d->depth, whole, &(key_range){NULL, NULL, 0, 0},
	               w->limited ? WALK_LIMITED : WALK_ALL);
	if (rc == 0 && whole &&
	    (w->branch != d->branch || w->leaf != d->leaf || w->overflow != d->overflow ||
	     w->entries != d->entries))
		rc = bad(w,
		         "%s: found %llu branch, %llu leaf, %llu overflow pages and %llu "
		         "entries; its record says %llu, %llu, %llu and %llu",
		         name, (unsigned long long)w->branch, (unsigned long long)w->leaf,
		         (unsigned long long)w->overflow, (unsigned long long)w->entries,
		         (unsigned long long)d->branch, (unsigned long long)d->leaf,
		         (unsigned long long)d->overflow, (unsigned long long)d->entries);
	/* restore the caller's database (the main one, around a named one) */
	w->db = saved.db;
	w->base = saved.base;
	w->branch = saved.branch;
	w->leaf = saved.leaf;
	w->overflow = saved.overflow;
	w->entries = saved.entries;
	memcpy(w->last_key, saved.last_key, sizeof(w->last_key));
	w->last_len = saved.last_len;
	w->have_last = saved.have_last;
	w->integer_keys = saved.integer_keys;
	return rc;
}

/* Opens the data file for pread(); -1 (and errno) if it cannot. */
static int open_data(const pspace_store *s)
{
	return open(s->data_path, O_RDONLY | O_CLOEXEC);
}

/* A hash of the file's first two pages, to tell whether a writer committed meanwhile. */
static uint64_t head_hash(int fd)
{
	uint8_t b[8192];
	ssize_t n = pread(fd, b, sizeof(b), 0);
	uint64_t h = 0xcbf29ce484222325ull;

	for (ssize_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

int pspace_store_check_open(pspace_store *s, uint64_t file_size)
{
	walker w;
	uint64_t head;
	int fd, rc = 0;

	fd = open_data(s);
	if (fd < 0)
		return 0; /* LMDB says why, naming the file */
	for (int attempt = 0; attempt < 3; attempt++) {
		head = head_hash(fd);
		memset(&w, 0, sizeof(w));
		w.s = s;
		w.fd = fd;
		w.file_size = file_size;
		w.descend = DESCEND_SMALL;
		rc = load_metas(&w, 0);
		if (rc == 0) {
			w.buf = malloc((size_t)2 * MAX_DEPTH * w.psize);
			rc = w.buf ? walk_db(&w, &w.m.dbs[1], "main database", 0)
			           : pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory",
			                            s->path);
			free(w.buf);
		}
		/* Damage, unless a writer of another process committed meanwhile. */
		if (rc != PSPACE_ECORRUPT || head_hash(fd) == head)
			break;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	close(fd);
	return rc;
}

int pspace_store_check_range(pspace_store *s, MDB_txn *txn, int write, const char *db,
                             const void *lo, size_t lo_n, const void *hi, size_t hi_n)
{
	walker w;
	uint64_t size = 0;
	int fd, rc;

	fd = open_data(s);
	if (fd < 0)
		return pspace_err_set(pspace_err_from_errno(errno), "store %s: opening %s: %s",
		                      s->path, s->data_path, strerror(errno));
	memset(&w, 0, sizeof(w));
	w.s = s;
	w.fd = fd;
	w.descend = DESCEND_TARGET;
	w.target = db;
	w.limit = (key_range){lo, hi, lo_n, hi_n};
	w.headers = write;
	rc = pspace_store_file_size(s, &size);
	w.file_size = size;
	/* a write transaction works on the last commit's snapshot */
	if (rc == 0)
		rc = load_metas(&w, (uint64_t)mdb_txn_id(txn) - (write ? 1 : 0));
	if (rc == 0) {
		w.buf = malloc((size_t)2 * MAX_DEPTH * w.psize);
		rc = w.buf ? walk_db(&w, &w.m.dbs[1], "main database", 0)
		           : pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
	}
	free(w.buf);
	close(fd);
	return rc;
}

int pspace_store_check_matrix(pspace_store *s, MDB_txn *txn, int write, uint64_t id)
{
	uint8_t lo[PSPACE_TILE_KEY_SIZE], hi[PSPACE_TILE_KEY_SIZE];

	pspace_tile_key(lo, id, 0, 0, 0);
	pspace_tile_key(hi, id, UINT32_MAX, UINT32_MAX, UINT32_MAX);
	return pspace_store_check_range(s, txn, write, "tiles", lo, sizeof(lo), hi, sizeof(hi));
}

int pspace_store_check_pages(pspace_page_check *out, pspace_store *s)
{
	MDB_txn *txn = NULL;
	walker w;
	uint64_t size = 0;
	int fd = -1, rc = 0;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	fd = open_data(s);
	if (fd < 0)
		return pspace_err_set(pspace_err_from_errno(errno), "store %s: opening %s: %s",
		                      s->path, s->data_path, strerror(errno));
	for (int attempt = 0; attempt < 3; attempt++) {
		/* The read transaction keeps its snapshot's pages from reuse. */
		rc = pspace_store_txn_begin(s, 0, 0, &txn);
		if (rc == 0)
			rc = pspace_store_file_size(s, &size);
		if (rc != 0)
			goto out;
		memset(&w, 0, sizeof(w));
		w.s = s;
		w.fd = fd;
		w.file_size = size;
		w.out = out;
		rc = load_metas(&w, (uint64_t)mdb_txn_id(txn));
		if (rc != PSPACE_EBUSY)
			break;
		pspace_store_txn_abort(s, txn);
		txn = NULL;
	}
	if (rc == PSPACE_EBUSY)
		rc = pspace_err_set(rc,
		                    "store %s: the store kept changing while its pages were "
		                    "checked; try again",
		                    s->path);
	if (rc != 0)
		goto out;
	out->page_size = w.psize;
	out->pages = w.m.last + 1;
	w.seen = calloc((size_t)(w.m.last / 8 + 1), 1);
	w.buf = malloc((size_t)2 * MAX_DEPTH * w.psize);
	if (!w.seen || !w.buf) {
		rc = pspace_err_set(PSPACE_ENOMEM, "store %s: out of memory", s->path);
		goto out;
	}
	rc = walk_db(&w, &w.m.dbs[0], "free-page database", 1);
	if (rc == 0)
		rc = walk_db(&w, &w.m.dbs[1], "main database", 1);
	if (rc == 0 && out->reachable + out->free + 2 != out->pages)
		rc = bad(&w, "of its %llu pages, %llu are in trees and %llu free: %llu lost",
		         (unsigned long long)out->pages, (unsigned long long)out->reachable,
		         (unsigned long long)out->free,
		         (unsigned long long)(out->pages - 2 - out->reachable - out->free));
out:
	free(w.buf);
	free(w.seen);
	pspace_store_txn_abort(s, txn);
	close(fd);
	return rc;
}
