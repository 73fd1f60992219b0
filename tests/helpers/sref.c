/*
 * Matrices written tile by tile for the store tests (see sref.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "pspace/codec.h"
#include "sref.h"

/* splitmix64 of x: a hash. */
static uint64_t mix(uint64_t x)
{
	return fx_rng_u64(&x);
}

float sref_value(uint64_t seed, int sym, uint32_t b, uint64_t i, uint64_t j)
{
	uint64_t h;

	if (sym && i > j) {
		uint64_t t = i;

		i = j;
		j = t;
	}
	h = mix(seed ^ mix((uint64_t)b << 40 ^ mix(i * 1000003ull ^ j)));
	if (seed & 1)
		return (float)(h % 16) * 0.25f;
	return (float)((double)(int64_t)(h >> 11) / 9007199254740992.0 - 0.5);
}

uint64_t sref_dim(const sref_spec *m)
{
	uint64_t d = 0;

	for (uint32_t b = 0; b < m->nblocks; b++)
		d += m->dims[b];
	return d;
}

uint32_t sref_ntiles(const sref_spec *m, uint32_t b)
{
	return (uint32_t)((m->dims[b] + m->tile - 1) / m->tile);
}

uint32_t sref_edge(const sref_spec *m, uint32_t b, uint32_t idx)
{
	uint64_t left = m->dims[b] - (uint64_t)idx * m->tile;

	return (uint32_t)(left < m->tile ? left : m->tile);
}

void sref_fill(const sref_spec *m, uint32_t b, uint32_t r, uint32_t c, float *buf, size_t ld)
{
	uint32_t rows = sref_edge(m, b, r), cols = sref_edge(m, b, c);

	for (uint32_t i = 0; i < rows; i++)
		for (uint32_t j = 0; j < cols; j++)
			buf[i * ld + j] = sref_value(m->seed, m->sym, b, (uint64_t)r * m->tile + i,
			                             (uint64_t)c * m->tile + j);
}

void sref_stats(const sref_spec *m, uint64_t *tiles, uint64_t *logical)
{
	*tiles = *logical = 0;
	for (uint32_t b = 0; b < m->nblocks; b++)
		for (uint32_t r = 0; r < sref_ntiles(m, b); r++)
			for (uint32_t c = m->sym ? r : 0; c < sref_ntiles(m, b); c++) {
				++*tiles;
				*logical += (uint64_t)sref_edge(m, b, r) * sref_edge(m, b, c) * 4;
			}
}

void sref_desc(const sref_spec *m, pspace_matrix_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->kind = m->kind;
	d->d = sref_dim(m);
	d->nblocks = m->nblocks;
	d->block_dims = m->dims;
	d->tile = m->tile;
	d->symmetric = m->sym;
	pspace_codec_opts_default(&d->codec);
	d->codec.dtype = PSPACE_F32;
	d->layout_text = m->layout;
}

int sref_put_tiles(pspace_writer *w, const sref_spec *m, long limit, long *done)
{
	float *buf = malloc((size_t)m->tile * m->tile * sizeof(float));
	long n = 0;
	int rc = 0;

	if (!buf)
		return PSPACE_ENOMEM;
	for (uint32_t b = 0; b < m->nblocks && rc == 0; b++)
		for (uint32_t r = 0; r < sref_ntiles(m, b) && rc == 0; r++)
			for (uint32_t c = m->sym ? r : 0; c < sref_ntiles(m, b) && rc == 0; c++) {
				if (limit >= 0 && n >= limit)
					goto out;
				sref_fill(m, b, r, c, buf, m->tile);
				rc = pspace_writer_put_tile(w, b, r, c, PSPACE_F32, buf, m->tile);
				if (rc == 0)
					n++;
			}
out:
	if (done)
		*done = n;
	free(buf);
	return rc;
}

int sref_write(pspace_store *s, const sref_spec *m)
{
	pspace_matrix_desc d;
	pspace_writer *w = NULL;
	int rc;

	sref_desc(m, &d);
	rc = pspace_writer_begin(&w, s, m->name, &d);
	if (rc != 0)
		return rc;
	rc = sref_put_tiles(w, m, -1, NULL);
	if (rc != 0) {
		pspace_writer_abort(w, 0);
		return rc;
	}
	return pspace_writer_finish(w);
}

int sref_check(pspace_store *s, const sref_spec *m, int flags, char *why, size_t whylen)
{
	pspace_reader *r = NULL;
	pspace_codec *c = NULL;
	const pspace_matrix_info *in;
	float *got = NULL, *want = NULL;
	uint64_t tiles, logical, count = 0, bytes = 0, lb = 0;
	long last = -1;
	int rc, done = 0, ret = -1;

	sref_stats(m, &tiles, &logical);
	rc = pspace_reader_open(&r, s, m->name, flags);
	if (rc != 0) {
		snprintf(why, whylen, "reader_open %s: %d %s", m->name, rc, pspace_errdetail());
		return -1;
	}
	in = pspace_reader_info(r);
	got = malloc((size_t)m->tile * m->tile * sizeof(float));
	want = malloc((size_t)m->tile * m->tile * sizeof(float));
	if (!got || !want || pspace_codec_create(&c) != 0)
		goto out;
	if (in->nblocks != m->nblocks || in->tile != m->tile || in->d != sref_dim(m) ||
	    in->kind != m->kind || in->symmetric != m->sym) {
		snprintf(why, whylen, "%s: info does not match the spec", m->name);
		goto out;
	}
	for (uint32_t b = 0; b < m->nblocks; b++)
		if (pspace_reader_block_dim(r, b) != m->dims[b]) {
			snprintf(why, whylen, "%s: block %u dim", m->name, b);
			goto out;
		}
	for (;;) {
		pspace_tile_ref t, t2;
		long key;
		uint32_t rows, cols;

		rc = pspace_reader_next(&t, &done, r);
		if (rc != 0) {
			snprintf(why, whylen, "next: %s", pspace_errdetail());
			goto out;
		}
		if (done)
			break;
		key = ((long)t.block << 40) | ((long)t.row << 20) | t.col;
		if (key <= last || (m->sym && t.row > t.col) || t.block >= m->nblocks) {
			snprintf(why, whylen, "%s: tile (%u,%u,%u) out of order or below diagonal",
			         m->name, t.block, t.row, t.col);
			goto out;
		}
		last = key;
		rows = sref_edge(m, t.block, t.row);
		cols = sref_edge(m, t.block, t.col);
		rc = pspace_reader_decode(r, c, &t, PSPACE_F32, got, cols);
		if (rc != 0) {
			snprintf(why, whylen, "decode: %s", pspace_errdetail());
			goto out;
		}
		sref_fill(m, t.block, t.row, t.col, want, cols);
		if (memcmp(got, want, (size_t)rows * cols * sizeof(float)) != 0) {
			snprintf(why, whylen, "%s: tile (%u,%u,%u) differs", m->name, t.block,
			         t.row, t.col);
			goto out;
		}
		rc = pspace_reader_tile(&t2, r, t.block, t.row, t.col);
		if (rc != 0 || t2.data != t.data || t2.len != t.len) {
			snprintf(why, whylen, "reader_tile (%u,%u,%u) disagrees with next", t.block,
			         t.row, t.col);
			goto out;
		}
		count++;
		bytes += t.len;
		lb += (uint64_t)rows * cols * 4;
	}
	if (!(flags & PSPACE_READ_INCOMPLETE) &&
	    (count != tiles || in->tiles != tiles || in->logical_bytes != logical ||
	     lb != logical || in->tile_bytes != bytes)) {
		snprintf(why, whylen,
		         "%s: %llu tiles read, %llu recorded, %llu expected; logical %llu/%llu",
		         m->name, (unsigned long long)count, (unsigned long long)in->tiles,
		         (unsigned long long)tiles, (unsigned long long)in->logical_bytes,
		         (unsigned long long)logical);
		goto out;
	}
	ret = 0;
out:
	pspace_codec_free(c);
	free(got);
	free(want);
	pspace_reader_close(r);
	return ret;
}

pspace_store *sref_open(const char *path, size_t map_max)
{
	pspace_store_opts o;
	pspace_store *s = NULL;
	int rc;

	pspace_store_opts_default(&o);
	o.nosync = 1;
	o.map_max = map_max;
	rc = pspace_store_open(&s, path, &o);
	if (rc != 0)
		print_error("open %s: %s\n", path, pspace_errdetail());
	assert_int_equal(rc, 0);
	return s;
}
