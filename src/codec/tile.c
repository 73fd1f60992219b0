/*
 * Tiles: header parsing and checking, encode (convert, shuffle, zstd per
 * byte plane or as one frame, checksum), decode and zero-copy views. The
 * format is in tile_format.h.
 */
#include <float.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "codec/codec.h"
#include "codec/convert.h"
#include "codec/nibble.h"
#include "codec/shuffle.h"
#include "codec/tile_format.h"
#include "common/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the tile payload is little-endian; big-endian hosts need byte swapping here"
#endif

#define HDR PSPACE_TILE_HEADER_SIZE

/* A plane's zstd frame is kept when smaller than this percentage of the plane. */
#define PLANE_KEEP_PCT 97
/*
 * zstd minimum match length for planes. A byte plane of floats (exponents,
 * high mantissa bytes) is mostly entropy-coded literals; the default 4-5
 * byte matches at level 1 are chance repeats that cost more than they save
 * and make decoding slower. On the exponent plane of f32 test tiles
 * (128..512, levels 1-3), 7 (zstd's largest) gave a 2-15% smaller frame,
 * 1.2-1.8x faster decoding and 1.6-2.5x faster encoding. Not for negative
 * levels, where literals are not entropy-coded.
 */
#define PLANE_MIN_MATCH 7
/*
 * How a plane is coded at zstd levels up to PLANE_FAST_LEVEL (nibble.h): a
 * sample of more than PLANE_NOISE_BITS of entropy a byte cannot shrink
 * below PLANE_KEEP_PCT by entropy coding (low mantissa bytes): raw, zstd
 * not tried; a nibble plane when it is kept and at most PLANE_NIBBLE_SLACK
 * times the sample's entropy bound, which no entropy coder beats (the
 * exponent plane of Fisher data: 4.3 bits a byte, zstd 4.4, decoded ~10x
 * faster); zstd otherwise (a plane of mostly equal bytes). Higher levels
 * ask for the smallest tiles: zstd on every plane.
 */
#define PLANE_FAST_LEVEL   9
#define PLANE_NOISE_BITS   7.75
#define PLANE_NIBBLE_SLACK (4.0 / 3.0)

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The codecs of byte planes by name, as the error messages call them. */
static const char *planes_name(pspace_codec_id codec)
{
	return codec == PSPACE_CODEC_PLANES ? "planes" : "zstd-planes";
}

static int is_stored_dtype(unsigned t)
{
	return t == PSPACE_F64 || t == PSPACE_F32 || t == PSPACE_BF16 || t == PSPACE_F16;
}

static int is_compute_dtype(pspace_dtype t)
{
	return t == PSPACE_F64 || t == PSPACE_F32;
}

/* @return the payload size before compression, or 0 if it does not fit a u32. */
static size_t raw_size(uint32_t rows, uint32_t cols, size_t es)
{
	uint64_t n = (uint64_t)rows * cols;

	if (es == 0 || n > UINT32_MAX / es)
		return 0;
	return (size_t)(n * es);
}

/* @return the largest payload any codec writes for @p raw bytes of @p es-byte elements. */
static size_t payload_bound(size_t raw, size_t es)
{
	size_t z = ZSTD_compressBound(raw), p = 4 * es + raw;

	if (z < raw || p < raw) /* wrapped: cannot happen for raw < 2^32 and a 64-bit size_t */
		return 0;
	return z > p ? z : p;
}

static uint32_t tile_crc(const unsigned char *tile, size_t payload_len)
{
	uint32_t crc = pspace_crc32c(0, tile, PSPACE_TILE_CRC_SPAN);

	return pspace_crc32c(crc, tile + HDR, payload_len);
}

int pspace_tile_parse(pspace_tile_header *out, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	pspace_tile_header h;
	unsigned version, dtype, codec, flags;
	uint32_t reserved;
	size_t es, raw;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return pspace_err_set(PSPACE_EINVAL, "tile buffer is NULL");
	if (len < HDR)
		return pspace_err_set(PSPACE_ECORRUPT, "tile truncated: %zu bytes, header needs %d",
		                      len, HDR);
	if (p[0] != PSPACE_TILE_MAGIC0 || p[1] != PSPACE_TILE_MAGIC1 ||
	    p[2] != PSPACE_TILE_MAGIC2 || p[3] != PSPACE_TILE_MAGIC3)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile bad magic %02x %02x %02x %02x, expected \"PSTL\"", p[0],
		                      p[1], p[2], p[3]);
	version = p[4];
	dtype = p[5];
	codec = p[6];
	flags = p[7];
	if (version != PSPACE_TILE_VERSION)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile header version %u unknown (this build reads %d)",
		                      version, PSPACE_TILE_VERSION);
	if (!is_stored_dtype(dtype))
		return pspace_err_set(PSPACE_ECORRUPT, "tile dtype %u unknown", dtype);
	if (codec != PSPACE_CODEC_RAW && codec != PSPACE_CODEC_ZSTD &&
	    codec != PSPACE_CODEC_ZSTD_PLANES && codec != PSPACE_CODEC_PLANES)
		return pspace_err_set(PSPACE_ECORRUPT, "tile codec %u unknown", codec);
	if ((flags & ~PSPACE_TILE_FLAGS_KNOWN) != 0)
		return pspace_err_set(PSPACE_ECORRUPT, "tile flags 0x%02x: unknown bits 0x%02x",
		                      flags, flags & ~PSPACE_TILE_FLAGS_KNOWN);
	if (codec == PSPACE_CODEC_RAW && flags != 0)
		return pspace_err_set(PSPACE_ECORRUPT, "tile flags 0x%02x set on a raw payload",
		                      flags);
	if ((codec == PSPACE_CODEC_ZSTD_PLANES || codec == PSPACE_CODEC_PLANES) &&
	    (flags & PSPACE_TILE_FLAG_SHUFFLE) == 0)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "planes tile flags 0x%02x lack the shuffle bit", flags);

	h.dtype = (pspace_dtype)dtype;
	h.codec = (pspace_codec_id)codec;
	h.shuffle = (flags & PSPACE_TILE_FLAG_SHUFFLE) != 0;
	h.rows = get_le32(p + 8);
	h.cols = get_le32(p + 12);
	h.payload_len = get_le32(p + 16);
	h.scale_exp = (int32_t)get_le32(p + 20);
	h.checksum = get_le32(p + 24);
	reserved = get_le32(p + 28);

	if (h.rows == 0 || h.cols == 0)
		return pspace_err_set(
		    PSPACE_ECORRUPT, "tile shape %" PRIu32 "x%" PRIu32 " is empty", h.rows, h.cols);
	es = pspace_dtype_size(h.dtype);
	raw = raw_size(h.rows, h.cols, es);
	if (raw == 0)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile shape %" PRIu32 "x%" PRIu32 " of %s: size overflows",
		                      h.rows, h.cols, pspace_dtype_name(h.dtype));
	if ((uint64_t)h.payload_len != (uint64_t)(len - HDR))
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile payload length %" PRIu32
		                      " != %zu bytes after the header",
		                      h.payload_len, len - HDR);
	if (h.codec == PSPACE_CODEC_RAW && h.payload_len != raw)
		return pspace_err_set(
		    PSPACE_ECORRUPT,
		    "raw tile payload %" PRIu32 " bytes, %" PRIu32 "x%" PRIu32 " %s needs %zu",
		    h.payload_len, h.rows, h.cols, pspace_dtype_name(h.dtype), raw);
	if (h.codec == PSPACE_CODEC_ZSTD && h.payload_len == 0)
		return pspace_err_set(PSPACE_ECORRUPT, "zstd tile has an empty payload");
	/* each plane takes at least one byte and at most n, after the 4*es-byte table */
	if ((h.codec == PSPACE_CODEC_ZSTD_PLANES || h.codec == PSPACE_CODEC_PLANES) &&
	    (h.payload_len < 5 * es || (uint64_t)h.payload_len > 4 * (uint64_t)es + raw))
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "%s tile payload %" PRIu32 " bytes, %" PRIu32 "x%" PRIu32
		                      " %s needs %zu..%zu",
		                      planes_name(h.codec), h.payload_len, h.rows, h.cols,
		                      pspace_dtype_name(h.dtype), 5 * es, 4 * es + raw);
	if (h.dtype != PSPACE_F16 && h.scale_exp != 0)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile scale exponent %" PRId32 " on a %s tile", h.scale_exp,
		                      pspace_dtype_name(h.dtype));
	if (h.scale_exp > PSPACE_F16_SCALE_MAX || h.scale_exp < -PSPACE_F16_SCALE_MAX)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "f16 tile scale exponent %" PRId32 " out of range [-%d, %d]",
		                      h.scale_exp, PSPACE_F16_SCALE_MAX, PSPACE_F16_SCALE_MAX);
	if (reserved != 0)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile reserved field 0x%08" PRIx32 " is not 0", reserved);
	if (out != NULL)
		*out = h;
	return 0;
}

static int check_crc(const void *buf, const pspace_tile_header *h)
{
	uint32_t crc = tile_crc(buf, h->payload_len);

	if (crc != h->checksum)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "tile checksum mismatch: stored 0x%08" PRIx32
		                      ", computed 0x%08" PRIx32,
		                      h->checksum, crc);
	return 0;
}

/* Parses the header of @p buf into @p h and checks the payload against its checksum. */
static int parse_verified(const void *buf, size_t len, pspace_tile_header *h)
{
	int rc = pspace_tile_parse(h, buf, len);

	if (rc == 0)
		rc = check_crc(buf, h);
	return rc;
}

int pspace_tile_verify(const void *buf, size_t len)
{
	pspace_tile_header h;

	return parse_verified(buf, len, &h);
}

static int check_opts(const pspace_codec_opts *o)
{
	if (!is_stored_dtype((unsigned)o->dtype))
		return pspace_err_set(PSPACE_EINVAL, "codec options: dtype %d cannot be stored",
		                      (int)o->dtype);
	if (o->level != 0 && (o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel()))
		return pspace_err_set(PSPACE_EINVAL, "codec options: zstd level %d not in [%d, %d]",
		                      o->level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (o->min_ratio != o->min_ratio)
		return pspace_err_set(PSPACE_EINVAL, "codec options: min_ratio is NaN");
	return 0;
}

static int zstd_cfail(size_t r, int level)
{
	return pspace_err_set(
	    ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? PSPACE_ENOMEM : PSPACE_ECODEC,
	    "zstd compression (level %d) failed: %s", level, ZSTD_getErrorName(r));
}

/*
 * Writes the codec 2 or 3 payload of the @p es planes of @p n bytes at
 * @p shuf into @p payload (room for 4*es + es*n bytes): each plane raw, a
 * zstd frame or (codec 3) a nibble plane, as PLANE_FAST_LEVEL says; with
 * @p zstd_only, zstd or raw as at higher levels.
 * @return 0, *z, the payload length, and *codec, or PSPACE_ECODEC / PSPACE_ENOMEM.
 */
static int compress_planes(pspace_codec *c, int level, int zstd_only, unsigned char *payload,
                           const unsigned char *shuf, size_t n, size_t es, size_t *z,
                           unsigned *codec)
{
	unsigned char *p = payload + 4 * es;
	/* the largest plane kept; zstd stops with dstSize_tooSmall beyond it */
	size_t keep = (size_t)(((uint64_t)n * PLANE_KEEP_PCT - 1) / 100);
	int fast = level <= PLANE_FAST_LEVEL && !zstd_only;
	size_t r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);

	*codec = PSPACE_CODEC_ZSTD_PLANES;
	/* negative levels store literals unencoded: only matches can shrink a plane */
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_minMatch,
		                           level > 0 ? PLANE_MIN_MATCH : 0);
	if (ZSTD_isError(r))
		return zstd_cfail(r, level);
	for (size_t b = 0; b < es; b++) {
		const unsigned char *plane = shuf + b * n;
		uint32_t kind = 0; /* zstd */
		int try_zstd = keep > 0;
		pspace_plane_stats st = {0};

		r = 0;
		if (fast && keep > 0) {
			pspace_plane_sample(&st, plane, n);
			try_zstd = st.bits <= PLANE_NOISE_BITS;
		}
		if (fast && try_zstd && n <= PSPACE_TILE_PLANE_LEN3) {
			size_t est;

			pspace_plane_dict(&st);
			est = pspace_nibble_size(n, (size_t)(st.escapes * (double)n));

			if (est <= keep &&
			    (double)est <= PLANE_NIBBLE_SLACK * st.bits * (double)n / 8)
				r = pspace_nibble_encode(p, keep, plane, n, st.dict, st.ncodes);
			if (r > 0) {
				kind = PSPACE_TILE_PLANE_NIBBLE;
				*codec = PSPACE_CODEC_PLANES;
				try_zstd = 0;
			}
		}
		if (try_zstd) {
			r = ZSTD_compress2(c->cctx, p, keep, plane, n);
			if (ZSTD_isError(r)) {
				ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
				if (ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall)
					return zstd_cfail(r, level);
				r = 0;
			}
		}
		if (r == 0) {
			memcpy(p, plane, n);
			put_le32(payload + 4 * b, PSPACE_TILE_PLANE_RAW | (uint32_t)n);
			p += n;
		} else {
			put_le32(payload + 4 * b, kind | (uint32_t)r);
			p += r;
		}
	}
	*z = (size_t)(p - payload);
	return 0;
}

/* Compresses @p raw bytes at @p data into @p dst; @return 0 and *z, or PSPACE_ECODEC. */
static int compress(pspace_codec *c, int level, unsigned char *dst, size_t cap, const void *data,
                    size_t raw, size_t *z)
{
	size_t r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, level);

	if (!ZSTD_isError(r)) /* the level's own match length (planes set their own) */
		r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_minMatch, 0);
	if (!ZSTD_isError(r))
		r = ZSTD_compress2(c->cctx, dst, cap, data, raw);
	if (ZSTD_isError(r)) {
		ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
		return zstd_cfail(r, level);
	}
	*z = r;
	return 0;
}

static int out_of_range(pspace_dtype dtype, double m, double max)
{
	return pspace_err_set(PSPACE_ENUMERIC,
	                      "a value of magnitude %.6g is beyond the %s range (%.6g): store "
	                      "the matrix at f64 precision (pspace build --precision f64)",
	                      m, pspace_dtype_name(dtype), max);
}

/*
 * The f16 scale exponent, and the refusal of finite values that the stored
 * type cannot hold (f32, bf16: they would turn into infinities; f16 tiles
 * are scaled to fit). Inf and NaN in the source are stored as they are.
 * f64 to f32 is checked after the conversion instead (check_converted):
 * one scan of the floats in the cache, not one of the doubles in memory.
 */
static int check_range(pspace_dtype dtype, pspace_dtype src_type, const void *src, size_t ld,
                       uint32_t rows, uint32_t cols, int32_t *scale_exp)
{
	/* the largest finite bf16, 0x7f7f */
	const double max = dtype == PSPACE_BF16 ? 0x1.fep127 : FLT_MAX;
	double m;

	*scale_exp = 0;
	if (dtype == PSPACE_F64 || dtype == PSPACE_F32)
		return 0;
	m = pspace_convert_maxabs(src_type, src, ld, rows, cols);
	if (dtype == PSPACE_F16) {
		*scale_exp = pspace_f16_scale_exp(m);
		return 0;
	}
	return m <= max ? 0 : out_of_range(dtype, m, max);
}

/*
 * After f64 -> f32 into @p elems (contiguous): an infinity there came from
 * an infinite source or a finite value beyond the f32 range, which the
 * source's largest finite magnitude tells apart (values that round to
 * FLT_MAX are kept).
 */
static int check_converted(pspace_dtype dtype, pspace_dtype src_type, const void *src, size_t ld,
                           uint32_t rows, uint32_t cols, const void *elems)
{
	double m;

	if (dtype != PSPACE_F32 || src_type != PSPACE_F64 ||
	    !pspace_convert_has_inf_f32(elems, (size_t)rows * cols))
		return 0;
	m = pspace_convert_maxabs(src_type, src, ld, rows, cols);
	return (float)m <= FLT_MAX ? 0 : out_of_range(dtype, m, FLT_MAX);
}

int pspace_tile_encode(pspace_codec *c, const pspace_codec_opts *opts, pspace_dtype src_type,
                       const void *src, uint32_t rows, uint32_t cols, size_t ld, const void **out,
                       size_t *out_len)
{
	return pspace_tile_encode_ex(c, opts, 0, src_type, src, rows, cols, ld, out, out_len);
}

int pspace_tile_encode_ex(pspace_codec *c, const pspace_codec_opts *opts, unsigned eflags,
                          pspace_dtype src_type, const void *src, uint32_t rows, uint32_t cols,
                          size_t ld, const void **out, size_t *out_len)
{
	pspace_codec_opts def;
	const pspace_codec_opts *o = opts;
	size_t es, raw, cap, plen, z = 0;
	int32_t scale_exp = 0;
	unsigned codec = PSPACE_CODEC_RAW, flags = 0, planes_codec = PSPACE_CODEC_ZSTD_PLANES;
	int planes = 0;
	unsigned char *tile = NULL;
	const unsigned char *elems = NULL;
	int rc = 0;

	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (o == NULL) {
		pspace_codec_opts_default(&def);
		o = &def;
	}
	if (c == NULL || src == NULL || out == NULL || out_len == NULL) {
		rc = pspace_err_set(PSPACE_EINVAL, "tile encode: NULL argument");
		goto out;
	}
	rc = check_opts(o);
	if (rc != 0)
		goto out;
	if (!is_compute_dtype(src_type)) {
		rc = pspace_err_set(PSPACE_EINVAL, "tile encode: source type %s is not f32 or f64",
		                    pspace_dtype_name(src_type));
		goto out;
	}
	es = pspace_dtype_size(o->dtype);
	raw = raw_size(rows, cols, es);
	if (rows == 0 || cols == 0 || ld < cols || raw == 0) {
		rc = pspace_err_set(PSPACE_EINVAL,
		                    "tile encode: bad shape %" PRIu32 "x%" PRIu32
		                    " (ld %zu) for %s tiles",
		                    rows, cols, ld, pspace_dtype_name(o->dtype));
		goto out;
	}
	rc = check_range(o->dtype, src_type, src, ld, rows, cols, &scale_exp);
	if (rc != 0)
		goto out;

	if (o->level == 0) {
		tile = pspace_codec_scratch(c, PSPACE_CODEC_BUF_OUT, HDR + raw);
		if (tile == NULL) {
			rc = PSPACE_ENOMEM;
			goto out;
		}
		rc = pspace_convert_block(o->dtype, tile + HDR, cols, src_type, src, ld, rows, cols,
		                          scale_exp);
		if (rc == 0)
			rc = check_converted(o->dtype, src_type, src, ld, rows, cols, tile + HDR);
		if (rc != 0)
			goto out;
		goto header;
	}

	/* elements at the stored precision, contiguous */
	if (o->dtype == src_type && ld == cols) {
		elems = src;
	} else {
		unsigned char *a = pspace_codec_scratch(c, PSPACE_CODEC_BUF_A, raw);

		if (a == NULL) {
			rc = PSPACE_ENOMEM;
			goto out;
		}
		rc = pspace_convert_block(o->dtype, a, cols, src_type, src, ld, rows, cols,
		                          scale_exp);
		if (rc == 0)
			rc = check_converted(o->dtype, src_type, src, ld, rows, cols, a);
		if (rc != 0)
			goto out;
		elems = a;
	}
	cap = ZSTD_compressBound(raw);
	tile = pspace_codec_scratch(c, PSPACE_CODEC_BUF_OUT, HDR + payload_bound(raw, es));
	if (tile == NULL) {
		rc = PSPACE_ENOMEM;
		goto out;
	}
	planes = o->shuffle && (eflags & PSPACE_TILE_ENCODE_ONE_FRAME) == 0;
	if (o->shuffle) {
		unsigned char *b = pspace_codec_scratch(c, PSPACE_CODEC_BUF_B, raw);

		if (b == NULL) {
			rc = PSPACE_ENOMEM;
			goto out;
		}
		pspace_shuffle(b, elems, raw / es, es);
		if (planes)
			rc = compress_planes(c, o->level,
			                     (eflags & PSPACE_TILE_ENCODE_ZSTD_ONLY) != 0,
			                     tile + HDR, b, raw / es, es, &z, &planes_codec);
		else
			rc = compress(c, o->level, tile + HDR, cap, b, raw, &z);
	} else {
		rc = compress(c, o->level, tile + HDR, cap, elems, raw, &z);
	}
	if (rc != 0)
		goto out;
	if (z <= UINT32_MAX && (double)raw >= o->min_ratio * (double)z) {
		codec = planes ? planes_codec : PSPACE_CODEC_ZSTD;
		flags = o->shuffle ? PSPACE_TILE_FLAG_SHUFFLE : 0;
	} else {
		/* compression does not pay: store the elements as they are */
		memcpy(tile + HDR, elems, raw);
	}

header:
	plen = codec == PSPACE_CODEC_RAW ? raw : z;
	tile[0] = PSPACE_TILE_MAGIC0;
	tile[1] = PSPACE_TILE_MAGIC1;
	tile[2] = PSPACE_TILE_MAGIC2;
	tile[3] = PSPACE_TILE_MAGIC3;
	tile[4] = PSPACE_TILE_VERSION;
	tile[5] = (unsigned char)o->dtype;
	tile[6] = (unsigned char)codec;
	tile[7] = (unsigned char)flags;
	put_le32(tile + 8, rows);
	put_le32(tile + 12, cols);
	put_le32(tile + 16, (uint32_t)plen);
	put_le32(tile + 20, (uint32_t)scale_exp);
	put_le32(tile + 24, tile_crc(tile, plen));
	put_le32(tile + 28, 0);
	*out = tile;
	*out_len = HDR + plen;
out:
	return rc;
}

static int zstd_dfail(size_t r, size_t plane)
{
	int rc =
	    ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? PSPACE_ENOMEM : PSPACE_ECORRUPT;

	if (plane == SIZE_MAX)
		return pspace_err_set(rc, "zstd decompression failed: %s", ZSTD_getErrorName(r));
	return pspace_err_set(rc, "tile plane %zu: decompression failed (zstd): %s", plane,
	                      ZSTD_getErrorName(r));
}

/*
 * Reads and checks the plane length table of a codec 2 or 3 payload of
 * @p plen bytes: @p es planes of @p n bytes. @return 0, lens[b] (the
 * stored length) and kinds[b] (0 zstd, PSPACE_TILE_PLANE_RAW or
 * PSPACE_TILE_PLANE_NIBBLE), or PSPACE_ECORRUPT.
 */
static int parse_planes(const unsigned char *payload, uint32_t plen, pspace_codec_id codec,
                        size_t es, size_t n, uint32_t *lens, uint32_t *kinds)
{
	const char *name = planes_name(codec);
	uint64_t sum = 0;

	if (plen < 4 * es)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "%s payload of %" PRIu32
		                      " bytes is shorter than its %zu-byte plane table",
		                      name, plen, 4 * es);
	for (size_t b = 0; b < es; b++) {
		uint32_t v = get_le32(payload + 4 * b), l = v & PSPACE_TILE_PLANE_LEN;

		kinds[b] = 0;
		if ((v & PSPACE_TILE_PLANE_RAW) != 0) {
			kinds[b] = PSPACE_TILE_PLANE_RAW;
		} else if (codec == PSPACE_CODEC_PLANES && (v & PSPACE_TILE_PLANE_NIBBLE) != 0) {
			kinds[b] = PSPACE_TILE_PLANE_NIBBLE;
			l = v & PSPACE_TILE_PLANE_LEN3;
		}
		if (kinds[b] == PSPACE_TILE_PLANE_RAW && l != n)
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "%s tile plane %zu: stored raw with %" PRIu32
			                      " bytes, planes hold %zu",
			                      name, b, l, n);
		if (kinds[b] == PSPACE_TILE_PLANE_NIBBLE &&
		    (l < pspace_nibble_size(n, 0) || l >= n))
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "%s tile plane %zu: nibble plane of %" PRIu32
			                      " bytes, must be %zu..%zu",
			                      name, b, l, pspace_nibble_size(n, 0), n - 1);
		if (kinds[b] == 0 && (l == 0 || l >= n))
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "%s tile plane %zu: zstd frame of %" PRIu32
			                      " bytes, must be 1..%zu",
			                      name, b, l, n - 1);
		lens[b] = l;
		sum += l;
	}
	if (sum != plen - 4 * es)
		return pspace_err_set(PSPACE_ECORRUPT,
		                      "%s tile plane lengths sum to %" PRIu64
		                      " bytes, the payload holds %zu after the plane table",
		                      name, sum, (size_t)plen - 4 * es);
	return 0;
}

int pspace_tile_planes_decode(pspace_codec *c, const unsigned char *payload, uint32_t plen,
                              pspace_codec_id codec, size_t es, size_t n, unsigned char *t,
                              const void **pl, uint32_t *plane_crc, uint32_t *plane_len)
{
	uint32_t lens[PSPACE_SHUFFLE_MAX_ES], kinds[PSPACE_SHUFFLE_MAX_ES];
	const char *name = planes_name(codec);
	size_t off = 4 * es, r;
	int rc;

	if (es > PSPACE_SHUFFLE_MAX_ES) /* the stored types have 2, 4 or 8 bytes */
		return pspace_err_set(PSPACE_ECORRUPT, "%s tile of %zu-byte elements", name, es);
	rc = parse_planes(payload, plen, codec, es, n, lens, kinds);
	if (rc != 0)
		return rc;
	for (size_t b = 0; b < es; b++) {
		const unsigned char *src = payload + off;
		size_t l = lens[b];

		off += l;
		if (plane_crc != NULL)
			plane_crc[b] = 0;
		if (plane_len != NULL)
			plane_len[b] = kinds[b] == PSPACE_TILE_PLANE_RAW
			                   ? PSPACE_TILE_PLANE_RAW | lens[b]
			                   : lens[b];
		if (kinds[b] == PSPACE_TILE_PLANE_RAW) {
			pl[b] = src;
			continue;
		}
		if (kinds[b] == PSPACE_TILE_PLANE_NIBBLE) {
			if (pspace_nibble_decode(t + b * n, n, src, l) != 0)
				return pspace_err_set(
				    PSPACE_ECORRUPT,
				    "%s tile plane %zu: nibble plane of %zu bytes "
				    "is malformed (reserved byte, padding or "
				    "escape count)",
				    name, b, l);
		} else {
			r = ZSTD_findFrameCompressedSize(src, l);
			if (ZSTD_isError(r) || r != l)
				return pspace_err_set(PSPACE_ECORRUPT,
				                      "%s tile plane %zu: its %zu bytes are not "
				                      "exactly one zstd frame",
				                      name, b, l);
			r = ZSTD_decompressDCtx(c->dctx, t + b * n, n, src, l);
			if (ZSTD_isError(r))
				return zstd_dfail(r, b);
			if (r != n)
				return pspace_err_set(
				    PSPACE_ECORRUPT,
				    "%s tile plane %zu decompressed to %zu bytes, "
				    "planes hold %zu",
				    name, b, r, n);
		}
		pl[b] = t + b * n;
		/* the plane just read is in the cache */
		if (plane_crc != NULL)
			plane_crc[b] = pspace_crc32c(0, src, l);
	}
	return 0;
}

/*
 * Decodes a codec 2 or 3 payload: the coded planes into @p t (plane b at
 * b*n), then unshuffles them and the raw planes, read in place, into @p u.
 */
static int decode_planes(pspace_codec *c, const unsigned char *payload, uint32_t plen,
                         pspace_codec_id codec, size_t es, size_t n, unsigned char *t,
                         unsigned char *u)
{
	const void *pl[PSPACE_SHUFFLE_MAX_ES];
	int rc = pspace_tile_planes_decode(c, payload, plen, codec, es, n, t, pl, NULL, NULL);

	if (rc == 0)
		pspace_unshuffle_planes(u, pl, n, es);
	return rc;
}

/*
 * Decodes the payload of a parsed, checksummed tile into @p dst (type
 * @p want, leading dimension @p ld). Stages are skipped or written
 * straight into @p dst when no conversion is needed.
 */
static int decode_payload(pspace_codec *c, const unsigned char *buf, const pspace_tile_header *h,
                          pspace_dtype want, void *dst, size_t ld)
{
	const unsigned char *payload = buf + HDR;
	size_t es = pspace_dtype_size(h->dtype);
	size_t raw = raw_size(h->rows, h->cols, es);
	size_t n = raw / es;
	int direct = h->dtype == want && ld == h->cols;
	const unsigned char *elems = payload;
	unsigned long long fcs;
	size_t r;
	int rc;

	if (h->codec == PSPACE_CODEC_ZSTD_PLANES || h->codec == PSPACE_CODEC_PLANES) {
		unsigned char *t = pspace_codec_scratch(c, PSPACE_CODEC_BUF_A, raw);
		unsigned char *u = direct ? dst : pspace_codec_scratch(c, PSPACE_CODEC_BUF_B, raw);

		if (t == NULL || u == NULL)
			return PSPACE_ENOMEM;
		rc = decode_planes(c, payload, h->payload_len, h->codec, es, n, t, u);
		if (rc != 0)
			return rc;
		elems = u;
	} else if (h->codec == PSPACE_CODEC_ZSTD) {
		unsigned char *t =
		    direct && !h->shuffle ? dst : pspace_codec_scratch(c, PSPACE_CODEC_BUF_A, raw);

		if (t == NULL)
			return PSPACE_ENOMEM;
		fcs = ZSTD_getFrameContentSize(payload, h->payload_len);
		if (fcs == ZSTD_CONTENTSIZE_ERROR)
			return pspace_err_set(PSPACE_ECORRUPT, "tile payload is not a zstd frame");
		if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != raw)
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "zstd frame holds %llu bytes, tile needs %zu", fcs,
			                      raw);
		r = ZSTD_findFrameCompressedSize(payload, h->payload_len);
		if (ZSTD_isError(r) || r != h->payload_len)
			return pspace_err_set(PSPACE_ECORRUPT,
			                      "tile payload of %" PRIu32
			                      " bytes is not exactly one zstd frame",
			                      h->payload_len);
		r = ZSTD_decompressDCtx(c->dctx, t, raw, payload, h->payload_len);
		if (ZSTD_isError(r))
			return zstd_dfail(r, SIZE_MAX);
		if (r != raw)
			return pspace_err_set(
			    PSPACE_ECORRUPT,
			    "zstd payload decompressed to %zu bytes, tile needs %zu", r, raw);
		elems = t;
		if (h->shuffle) {
			unsigned char *u =
			    direct ? dst : pspace_codec_scratch(c, PSPACE_CODEC_BUF_B, raw);

			if (u == NULL)
				return PSPACE_ENOMEM;
			pspace_unshuffle(u, elems, n, es);
			elems = u;
		}
	} else if (h->dtype != want && ((uintptr_t)payload % es) != 0) {
		/* the conversion kernels read whole elements: align them first */
		unsigned char *t = pspace_codec_scratch(c, PSPACE_CODEC_BUF_A, raw);

		if (t == NULL)
			return PSPACE_ENOMEM;
		memcpy(t, payload, raw);
		elems = t;
	}
	if (elems == dst)
		return 0;
	return pspace_convert_block(want, dst, ld, h->dtype, elems, h->cols, h->rows, h->cols,
	                            h->scale_exp);
}

/*
 * What decode and view check first: the arguments (@p args_ok: none is
 * NULL), then the header of @p buf, parsed into @p h, and its checksum
 * unless @p verify is 0.
 */
static int open_tile(const void *buf, size_t len, int args_ok, pspace_dtype want, const char *op,
                     pspace_tile_header *h, int verify)
{
	if (!args_ok || !is_compute_dtype(want))
		return pspace_err_set(PSPACE_EINVAL, "%s: NULL argument or type %s not f32/f64", op,
		                      pspace_dtype_name(want));
	return verify ? parse_verified(buf, len, h) : pspace_tile_parse(h, buf, len);
}

int pspace_tile_decode(pspace_codec *c, const void *buf, size_t len, pspace_dtype want, void *dst,
                       size_t ld)
{
	pspace_tile_header h;
	int rc = 0;

	rc = open_tile(buf, len, c != NULL && dst != NULL, want, "tile decode", &h, 1);
	if (rc != 0)
		goto out;
	if (ld < h.cols) {
		rc = pspace_err_set(PSPACE_EINVAL, "tile decode: ld %zu < %" PRIu32 " columns", ld,
		                    h.cols);
		goto out;
	}
	rc = decode_payload(c, buf, &h, want, dst, ld);
out:
	return rc;
}

/* View: @p verified NULL means verify always; else a zero-copy view is left unverified. */
static int view(pspace_codec *c, const void *buf, size_t len, pspace_dtype want, const void **data,
                pspace_tile_header *hdr, int *verified)
{
	pspace_tile_header h;
	const unsigned char *payload = (const unsigned char *)buf + HDR;
	unsigned char *dst = NULL;
	size_t wes = pspace_dtype_size(want);
	int rc = 0;

	if (data != NULL)
		*data = NULL;
	if (hdr != NULL)
		memset(hdr, 0, sizeof(*hdr));
	rc = open_tile(buf, len, c != NULL && data != NULL, want, "tile view", &h, 0);
	if (rc != 0)
		goto out;
	if (hdr != NULL)
		*hdr = h;
	if (h.codec == PSPACE_CODEC_RAW && h.dtype == want && ((uintptr_t)payload % wes) == 0) {
		*data = payload;
		if (verified != NULL)
			*verified = 0;
		else
			rc = check_crc(buf, &h);
		goto out;
	}
	if (verified != NULL)
		*verified = 1;
	/* up to four times the stored size (f16 -> f64): may not fit a 32-bit size_t */
	if ((uint64_t)h.rows * h.cols > SIZE_MAX / wes) {
		rc = pspace_err_set(PSPACE_ENOMEM,
		                    "tile view: %" PRIu32 "x%" PRIu32
		                    " tile too large for this address space",
		                    h.rows, h.cols);
		goto out;
	}
	dst = pspace_codec_scratch(c, PSPACE_CODEC_BUF_VIEW, (size_t)h.rows * h.cols * wes);
	if (dst == NULL) {
		rc = PSPACE_ENOMEM;
		goto out;
	}
	/*
	 * Decode first, then checksum the payload while it is still in the cache:
	 * zstd reads it from memory at its own pace (zstd checks its input and
	 * never writes past its output), where a checksum first would wait on
	 * memory. A tile that fails either way is reported as its checksum
	 * mismatch when there is one.
	 */
	rc = decode_payload(c, buf, &h, want, dst, h.cols);
	if (rc == 0 || tile_crc(buf, h.payload_len) != h.checksum)
		rc = check_crc(buf, &h);
	if (rc == 0)
		*data = dst;
out:
	if (rc != 0 && data != NULL)
		*data = NULL;
	return rc;
}

int pspace_tile_view(pspace_codec *c, const void *buf, size_t len, pspace_dtype want,
                     const void **data, pspace_tile_header *hdr)
{
	return view(c, buf, len, want, data, hdr, NULL);
}

int pspace_tile_view_unverified(pspace_codec *c, const void *buf, size_t len, pspace_dtype want,
                                const void **data, pspace_tile_header *hdr, int *verified)
{
	return view(c, buf, len, want, data, hdr, verified);
}

size_t pspace_tile_bound(const pspace_codec_opts *opts, uint32_t rows, uint32_t cols)
{
	pspace_codec_opts def;
	size_t raw;

	if (opts == NULL) {
		pspace_codec_opts_default(&def);
		opts = &def;
	}
	raw = raw_size(rows, cols, pspace_dtype_size(opts->dtype));
	if (raw == 0 || !is_stored_dtype((unsigned)opts->dtype))
		return 0;
	if (opts->level == 0)
		return HDR + raw;
	return HDR + payload_bound(raw, pspace_dtype_size(opts->dtype));
}
