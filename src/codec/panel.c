/*
 * Tiles handed out in row panels (see pspace_tile_panels in codec.h).
 *
 * A whole decoded tile is 1 MiB (512 x 512 f32): written out by the
 * unshuffle and read back by the kernel, it leaves the L2 cache, which
 * also holds the decoded planes and the compressed payload. A panel of a
 * few rows is unshuffled from the planes (in L2) into a small buffer and
 * used from L1. For a raw tile read in place, the checksum of a panel is
 * computed after the caller's work on it, while it is still in L1, so the
 * tile is read from memory once; or the caller folds the rows into the
 * checksum itself as it loads them (pspace_tile_panels_crc_rows()).
 */
#include <inttypes.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/convert.h"
#include "codec/crc32c.h"
#include "codec/tile_format.h"
#include "common/error.h"

enum {
	MODE_INPLACE, /* raw tile of the wanted type, read in place, checksummed by panels */
	MODE_PLANES,  /* codecs 2, 3: planes decoded and verified, unshuffled by panels */
	MODE_WHOLE    /* decoded (and verified) whole by pspace_tile_view() */
};

static int mismatch(const pspace_tile_header *h, uint32_t crc)
{
	return pspace_err_set(PSPACE_ECORRUPT,
	                      "tile checksum mismatch: stored 0x%08" PRIx32
	                      ", computed 0x%08" PRIx32,
	                      h->checksum, crc);
}

/* The checksum of the header span and @p plen payload bytes of @p buf. */
static uint32_t tile_crc(const unsigned char *buf, size_t plen)
{
	uint32_t crc = pspace_crc32c(0, buf, PSPACE_TILE_CRC_SPAN);

	return pspace_crc32c(crc, buf + PSPACE_TILE_HEADER_SIZE, plen);
}

/*
 * Decodes the zstd planes (each checksummed right after zstd read it); the
 * raw planes are checksummed as panels read them. A failed decode is
 * reported as the checksum mismatch when there is one, as
 * pspace_tile_view() does.
 */
static int open_planes(pspace_tile_panels *p, pspace_codec *c)
{
	const pspace_tile_header *h = &p->h;
	const unsigned char *payload = p->buf + PSPACE_TILE_HEADER_SIZE;
	size_t es = pspace_dtype_size(h->dtype), n = (size_t)h->rows * h->cols;
	unsigned char *t = pspace_codec_scratch(c, PSPACE_CODEC_BUF_A, n * es);
	uint32_t crc;
	int rc;

	if (t == NULL)
		return PSPACE_ENOMEM;
	rc = pspace_tile_planes_decode(c, payload, h->payload_len, h->codec, es, n, t, p->planes,
	                               p->plane_crc, p->plane_len);
	if (rc != 0) {
		crc = tile_crc(p->buf, h->payload_len);
		return crc == h->checksum ? rc : mismatch(h, crc);
	}
	p->crc = pspace_crc32c(0, p->buf, PSPACE_TILE_CRC_SPAN);
	p->crc = pspace_crc32c(p->crc, payload, 4 * es);
	return 0;
}

int pspace_tile_panels_open(pspace_tile_panels *p, pspace_codec *c, const void *buf, size_t len,
                            const pspace_tile_header *h, pspace_dtype want)
{
	const unsigned char *payload = (const unsigned char *)buf + PSPACE_TILE_HEADER_SIZE;
	size_t wes = pspace_dtype_size(want);
	const void *data = NULL;
	int rc;

	memset(p, 0, sizeof(*p));
	if (c == NULL || buf == NULL || h == NULL ||
	    (want != PSPACE_F32 && want != PSPACE_F64 && want != h->dtype))
		return pspace_err_set(PSPACE_EINVAL, "tile panels: NULL argument or type %s",
		                      pspace_dtype_name(want));
	p->h = *h;
	p->buf = buf;
	p->len = len;
	p->want = want;
	if (h->codec == PSPACE_CODEC_RAW && h->dtype == want && (uintptr_t)payload % wes == 0) {
		p->mode = MODE_INPLACE;
		p->elems = payload;
		p->crc = pspace_crc32c(0, buf, PSPACE_TILE_CRC_SPAN);
		return 0;
	}
	if ((h->codec == PSPACE_CODEC_ZSTD_PLANES || h->codec == PSPACE_CODEC_PLANES) &&
	    pspace_dtype_size(h->dtype) <= PSPACE_SHUFFLE_MAX_ES) {
		p->mode = MODE_PLANES;
		return open_planes(p, c);
	}
	p->mode = MODE_WHOLE;
	if (want == PSPACE_F32 || want == PSPACE_F64) {
		rc = pspace_tile_view(c, buf, len, want, &data, NULL);
		p->elems = data;
		return rc;
	}
	/* the stored type itself (f16, bf16), from the tile decoded to f32: exact */
	rc = pspace_tile_view(c, buf, len, PSPACE_F32, &data, NULL);
	if (rc == 0) {
		size_t n = (size_t)h->rows * h->cols;
		unsigned char *o = pspace_codec_scratch(c, PSPACE_CODEC_BUF_PANEL_OUT, n * wes);

		rc = o ? pspace_convert_block(want, o, h->cols, PSPACE_F32, data, h->cols, h->rows,
		                              h->cols, h->scale_exp)
		       : PSPACE_ENOMEM;
		p->elems = o;
	}
	return rc;
}

/*
 * Checksums the rows of an in-place tile, or of the raw planes of a codec 2
 * tile, up to row @p end.
 */
static void fold(pspace_tile_panels *p, uint32_t end)
{
	size_t es = pspace_dtype_size(p->h.dtype), cols = p->h.cols;

	if (end <= p->crc_rows)
		return;
	if (p->mode == MODE_INPLACE) {
		p->crc = pspace_crc32c(p->crc, p->elems + p->crc_rows * cols * es,
		                       (end - p->crc_rows) * cols * es);
	} else {
		for (size_t b = 0; b < es; b++)
			if (p->plane_len[b] & PSPACE_TILE_PLANE_RAW)
				p->plane_crc[b] = pspace_crc32c(
				    p->plane_crc[b],
				    (const unsigned char *)p->planes[b] + p->crc_rows * cols,
				    (end - p->crc_rows) * cols);
	}
	p->crc_rows = end;
}

/*
 * Asks for rows [@p r0, @p r0 + @p rows) of an in-place tile (their first
 * PREFETCH_MAX bytes), or of the raw planes of a codec 2 tile, ahead of
 * their panel: they come from memory, in pieces too short for the hardware
 * prefetcher to run ahead on its own, and the checksum of the panel before
 * (from L1) would leave the memory idle meanwhile. Warm raw mv, d = 32768
 * (Zen 5, 16 KiB panels): 5-13% faster, alternated over six runs. More
 * than about L1 evicts what the kernel is using: 128 KiB panels of the
 * 16-lane kernel asked for whole ran 12% slower; their first 16 KiB cost
 * nothing.
 */
#define PREFETCH_MAX ((size_t)16 << 10)

static void prefetch_rows(const pspace_tile_panels *p, uint32_t r0, uint32_t rows)
{
	size_t cols = p->h.cols, es = pspace_dtype_size(p->h.dtype);

	if (r0 >= p->h.rows)
		return;
	if (rows > p->h.rows - r0)
		rows = p->h.rows - r0;
	if (p->mode == MODE_INPLACE) {
		const unsigned char *q = p->elems + r0 * cols * es;
		size_t n = rows * cols * es < PREFETCH_MAX ? rows * cols * es : PREFETCH_MAX;

		for (size_t o = 0; o < n; o += 64)
			__builtin_prefetch(q + o);
		return;
	}
	for (size_t b = 0; b < es; b++) {
		const unsigned char *q = (const unsigned char *)p->planes[b] + r0 * cols;

		if (!(p->plane_len[b] & PSPACE_TILE_PLANE_RAW))
			continue;
		for (size_t o = 0; o < rows * cols; o += 64)
			__builtin_prefetch(q + o);
	}
}

int pspace_tile_panels_rows(pspace_tile_panels *p, pspace_codec *c, uint32_t r0, uint32_t rows,
                            const void **data)
{
	const pspace_tile_header *h = &p->h;
	size_t es = pspace_dtype_size(h->dtype), n = (size_t)rows * h->cols;
	const void *pl[PSPACE_SHUFFLE_MAX_ES];
	unsigned char *u, *o;
	int rc;

	*data = NULL;
	if (rows == 0 || r0 > h->rows || rows > h->rows - r0)
		return pspace_err_set(PSPACE_EINVAL,
		                      "tile panels: rows %" PRIu32 "..%" PRIu32 " of a %" PRIu32
		                      "-row tile",
		                      r0, r0 + rows, h->rows);
	if (p->mode != MODE_WHOLE && r0 != p->next)
		return pspace_err_set(PSPACE_EINVAL, "tile panels: rows asked out of order");
	p->next = r0 + rows;
	/*
	 * The caller is done with the rows before r0: checksum them from L1
	 * (unless it did as it read them), while the rows it asks for now
	 * come in from memory.
	 */
	if (p->mode == MODE_INPLACE) {
		prefetch_rows(p, r0, rows);
		if (!p->by_rows)
			fold(p, r0);
	}
	if (p->mode != MODE_PLANES) {
		*data = p->elems + (size_t)r0 * h->cols * pspace_dtype_size(p->want);
		return 0;
	}
	for (size_t b = 0; b < es; b++)
		pl[b] = (const unsigned char *)p->planes[b] + (size_t)r0 * h->cols;
	if (h->dtype == PSPACE_BF16 && p->want == PSPACE_F32) { /* widened as unshuffled */
		o = pspace_codec_scratch(c, PSPACE_CODEC_BUF_PANEL_OUT, n * sizeof(float));
		if (o == NULL)
			return PSPACE_ENOMEM;
		pspace_unshuffle_bf16_f32((float *)(void *)o, pl, n);
		fold(p, r0 + rows);
		prefetch_rows(p, r0 + rows, rows);
		*data = o;
		return 0;
	}
	u = pspace_codec_scratch(c, PSPACE_CODEC_BUF_PANEL, n * es);
	if (u == NULL)
		return PSPACE_ENOMEM;
	pspace_unshuffle_planes(u, pl, n, es);
	/* the raw planes' rows were just read: checksum them from L1 */
	fold(p, r0 + rows);
	prefetch_rows(p, r0 + rows, rows);
	if (h->dtype == p->want) {
		*data = u;
		return 0;
	}
	o = pspace_codec_scratch(c, PSPACE_CODEC_BUF_PANEL_OUT, n * pspace_dtype_size(p->want));
	if (o == NULL)
		return PSPACE_ENOMEM;
	rc = pspace_convert_block(p->want, o, h->cols, h->dtype, u, h->cols, rows, h->cols,
	                          h->scale_exp);
	if (rc == 0)
		*data = o;
	return rc;
}

pspace_crc32c_rows *pspace_tile_panels_crc_rows(pspace_tile_panels *p)
{
	size_t row_bytes = (size_t)p->h.cols * pspace_dtype_size(p->h.dtype);

	if (p->mode != MODE_INPLACE || p->next != 0 || p->h.rows % 4 != 0 || row_bytes == 0 ||
	    row_bytes % 64 != 0 || !pspace_crc32c_rows_available())
		return NULL;
	p->by_rows = 1;
	pspace_crc32c_rows_init(&p->rows_crc, row_bytes);
	return &p->rows_crc;
}

int pspace_tile_panels_finish(pspace_tile_panels *p)
{
	uint32_t crc;

	if (p->mode == MODE_WHOLE)
		return 0;
	if (p->by_rows) {
		if (p->rows_crc.groups * 4 != p->h.rows)
			return pspace_err_set(PSPACE_EINVAL,
			                      "tile panels: %" PRIu64 " of %" PRIu32
			                      " rows checksummed by the caller",
			                      p->rows_crc.groups * 4, p->h.rows);
		crc = pspace_crc32c_rows_finish(&p->rows_crc, p->crc);
		return crc == p->h.checksum ? 0 : mismatch(&p->h, crc);
	}
	fold(p, p->h.rows);
	crc = p->crc;
	for (size_t b = 0; p->mode == MODE_PLANES && b < pspace_dtype_size(p->h.dtype); b++)
		crc = pspace_crc32c_combine(crc, p->plane_crc[b],
		                            p->plane_len[b] & PSPACE_TILE_PLANE_LEN);
	return crc == p->h.checksum ? 0 : mismatch(&p->h, crc);
}
