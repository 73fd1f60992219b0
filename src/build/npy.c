/*
 * NumPy .npy files: a strict reader of the header (format versions 1.0, 2.0
 * and 3.0; little-endian '<f4', '<f8', '<i8'; C order; at most 4 dims) and
 * element reads by pread, so files larger than RAM are never loaded whole;
 * and a writer of version 1.0 files the way numpy.save writes them (header
 * padded with spaces and a '\n' so the data starts at a multiple of 64),
 * through a temporary name, fsync and rename.
 *
 * The header is a Python dict literal, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * parsed here by a small recursive-descent reader of exactly the literals
 * numpy writes: strings, True/False, tuples of integers.
 */
#include "pspace/npy.h"

#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pspace reads and writes little-endian .npy data in place: little-endian hosts only"
#endif

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* Headers numpy writes for our dtypes are ~128 bytes; anything huge is not one. */
#define NPY_HEADER_MAX (1u << 20)
/* Bytes per pread/pwrite call: under Linux's 0x7ffff000 per-call limit. */
#define IO_CHUNK ((size_t)1 << 30)

struct pspace_npy {
	char *path;
	int fd;
	uint64_t file_size;
	pspace_npy_info info;
};

/* ---- header parsing ---------------------------------------------------------- */

typedef struct hparse {
	const char *p, *end;
	const char *path;
} hparse;

static void skip_ws(hparse *h)
{
	while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
		h->p++;
}

/* Consumes @p c after optional whitespace; @return 1 if it was there. */
static int accept(hparse *h, char c)
{
	skip_ws(h);
	if (h->p < h->end && *h->p == c) {
		h->p++;
		return 1;
	}
	return 0;
}

static int herr(const hparse *h, const char *what)
{
	return pspace_err_set(PSPACE_EFORMAT, "%s: malformed .npy header: %s", h->path, what);
}

/* A Python string literal in ' or " quotes, no escapes (numpy writes none). */
static int parse_string(hparse *h, char *buf, size_t cap)
{
	char q;
	size_t n = 0;

	skip_ws(h);
	if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
		return herr(h, "expected a quoted string");
	q = *h->p++;
	while (h->p < h->end && *h->p != q) {
		if (*h->p == '\\' || *h->p == '\n' || n + 1 >= cap)
			return herr(h, "string with an escape, a newline or too long");
		buf[n++] = *h->p++;
	}
	if (h->p >= h->end)
		return herr(h, "unterminated string");
	h->p++;
	buf[n] = '\0';
	return 0;
}

static int parse_bool(hparse *h, int *out)
{
	skip_ws(h);
	if ((size_t)(h->end - h->p) >= 4 && memcmp(h->p, "True", 4) == 0) {
		h->p += 4;
		*out = 1;
	} else if ((size_t)(h->end - h->p) >= 5 && memcmp(h->p, "False", 5) == 0) {
		h->p += 5;
		*out = 0;
	} else {
		return herr(h, "'fortran_order' is not True or False");
	}
	return 0;
}

/* A decimal integer, with the 'L' suffix Python 2 numpy wrote accepted. */
static int parse_dim(hparse *h, uint64_t *out)
{
	uint64_t v = 0;
	const char *start;

	skip_ws(h);
	start = h->p;
	while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
		unsigned dig = (unsigned)(*h->p - '0');

		if (v > (UINT64_MAX - dig) / 10)
			return pspace_err_set(PSPACE_EFORMAT, "%s: shape dimension overflows",
			                      h->path);
		v = v * 10 + dig;
		h->p++;
	}
	if (h->p == start)
		return herr(h, "'shape' is not a tuple of non-negative integers");
	if (h->p < h->end && *h->p == 'L')
		h->p++;
	*out = v;
	return 0;
}

/* A tuple: (), (3,), (2, 3), (2, 3,). Python's (3) is an int, not a tuple. */
static int parse_shape(hparse *h, pspace_npy_info *info)
{
	uint64_t dims[5];
	int n = 0, rc;

	if (!accept(h, '('))
		return herr(h, "'shape' is not a tuple");
	if (accept(h, ')'))
		goto done;
	for (;;) {
		uint64_t v = 0;

		rc = parse_dim(h, &v);
		if (rc != 0)
			return rc;
		if (n == 4)
			return pspace_err_set(
			    PSPACE_EFORMAT,
			    "%s: shape has more than 4 dimensions (at most 4 supported)", h->path);
		dims[n++] = v;
		if (accept(h, ')')) {
			if (n == 1)
				return herr(h, "'shape' (N) is not a tuple: 1-d shapes are (N,)");
			break;
		}
		if (!accept(h, ','))
			return herr(h, "expected ',' or ')' in 'shape'");
		if (accept(h, ')'))
			break;
	}
done:
	info->ndim = n;
	for (int i = 0; i < 4; i++)
		info->shape[i] = i < n ? dims[i] : 0;
	return 0;
}

static int parse_descr(hparse *h, pspace_npy_info *info)
{
	char d[32];
	int rc;

	skip_ws(h);
	if (h->p < h->end && (*h->p == '[' || *h->p == '('))
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s: structured dtype not supported (expected '<f4', '<f8' "
		                      "or '<i8')",
		                      h->path);
	rc = parse_string(h, d, sizeof(d));
	if (rc != 0)
		return rc;
	/* '<' is what numpy writes on little-endian hosts; '=' is native (little) order. */
	if ((d[0] == '<' || d[0] == '=') && strcmp(d + 1, "f4") == 0)
		info->dtype = PSPACE_F32;
	else if ((d[0] == '<' || d[0] == '=') && strcmp(d + 1, "f8") == 0)
		info->dtype = PSPACE_F64;
	else if ((d[0] == '<' || d[0] == '=') && strcmp(d + 1, "i8") == 0)
		info->dtype = PSPACE_I64;
	else if (d[0] == '>')
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s: big-endian dtype '%s' not supported: save with "
		                      "array.astype('<%s')",
		                      h->path, d, d + 1);
	else
		return pspace_err_set(
		    PSPACE_EFORMAT, "%s: dtype '%s' not supported (expected '<f4', '<f8' or '<i8')",
		    h->path, d);
	return 0;
}

/* Parses the dict: the three keys exactly once each, any order, trailing comma allowed. */
static int parse_header(hparse *h, pspace_npy_info *info)
{
	int seen_descr = 0, seen_fortran = 0, seen_shape = 0, fortran = 0, rc;
	char key[32];

	if (!accept(h, '{'))
		return herr(h, "not a dict");
	while (!accept(h, '}')) {
		if (h->p >= h->end)
			return herr(h, "unterminated dict");
		rc = parse_string(h, key, sizeof(key));
		if (rc != 0)
			return rc;
		if (!accept(h, ':'))
			return herr(h, "expected ':' after a key");
		if (strcmp(key, "descr") == 0 && !seen_descr) {
			seen_descr = 1;
			rc = parse_descr(h, info);
		} else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
			seen_fortran = 1;
			rc = parse_bool(h, &fortran);
		} else if (strcmp(key, "shape") == 0 && !seen_shape) {
			seen_shape = 1;
			rc = parse_shape(h, info);
		} else if (strcmp(key, "descr") == 0 || strcmp(key, "fortran_order") == 0 ||
		           strcmp(key, "shape") == 0) {
			return pspace_err_set(PSPACE_EFORMAT,
			                      "%s: malformed .npy header: key '%s' twice", h->path,
			                      key);
		} else {
			return pspace_err_set(PSPACE_EFORMAT,
			                      "%s: malformed .npy header: unexpected key '%s'",
			                      h->path, key);
		}
		if (rc != 0)
			return rc;
		if (accept(h, '}'))
			break;
		if (!accept(h, ','))
			return herr(h,
			            h->p >= h->end ? "unterminated dict" : "expected ',' or '}'");
	}
	skip_ws(h);
	if (h->p != h->end)
		return herr(h, "text after the dict");
	if (!seen_descr || !seen_fortran || !seen_shape)
		return pspace_err_set(PSPACE_EFORMAT, "%s: malformed .npy header: missing key '%s'",
		                      h->path,
		                      !seen_descr     ? "descr"
		                      : !seen_fortran ? "fortran_order"
		                                      : "shape");
	if (fortran && info->ndim > 1)
		return pspace_err_set(PSPACE_EFORMAT,
		                      "%s: Fortran order not supported: save with "
		                      "numpy.ascontiguousarray",
		                      h->path);
	return 0;
}

/* ---- I/O helpers ------------------------------------------------------------------ */

static int pread_full(const pspace_npy *f, void *buf, size_t len, uint64_t off)
{
	char *b = buf;

	while (len > 0) {
		ssize_t got = pread(f->fd, b, len < IO_CHUNK ? len : IO_CHUNK, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pspace_err_set(pspace_err_from_errno(errno),
			                      "%s: read at byte %llu: %s", f->path,
			                      (unsigned long long)off, strerror(errno));
		if (got == 0)
			return pspace_err_set(PSPACE_EFORMAT,
			                      "%s: truncated at byte %llu (file shrank?)", f->path,
			                      (unsigned long long)off);
		b += got;
		len -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, const char *path)
{
	const char *b = buf;

	while (len > 0) {
		ssize_t put = write(fd, b, len < IO_CHUNK ? len : IO_CHUNK);

		if (put < 0 && errno == EINTR)
			continue;
		if (put < 0)
			return pspace_err_set(pspace_err_from_errno(errno), "%s: write: %s", path,
			                      strerror(errno));
		b += put;
		len -= (size_t)put;
	}
	return 0;
}

/* ---- open / close / read -------------------------------------------------------- */

/* Reads the preamble and header of f; fills f->info. */
static int read_header(pspace_npy *f)
{
	unsigned char pre[12];
	uint64_t hlen, pre_len, bytes, avail;
	hparse h;
	char *text = NULL;
	int rc = 0, major, minor;

	if (f->file_size == 0) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: empty file (not an .npy file)", f->path);
		goto out;
	}
	if (f->file_size < 10) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: %llu bytes: too short for an .npy file",
		                    f->path, (unsigned long long)f->file_size);
		goto out;
	}
	rc = pread_full(f, pre, 10, 0);
	if (rc != 0)
		goto out;
	if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: not an .npy file (bad magic)", f->path);
		goto out;
	}
	major = pre[6];
	minor = pre[7];
	if (major < 1 || major > 3 || minor != 0) {
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s: unsupported .npy format version %d.%d (expected 1.0, 2.0 "
		                    "or 3.0)",
		                    f->path, major, minor);
		goto out;
	}
	if (major == 1) {
		pre_len = 10;
		hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
	} else {
		if (f->file_size < 12) {
			rc = pspace_err_set(PSPACE_EFORMAT, "%s: truncated .npy preamble", f->path);
			goto out;
		}
		rc = pread_full(f, pre + 10, 2, 10);
		if (rc != 0)
			goto out;
		pre_len = 12;
		hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
		       (uint64_t)pre[11] << 24;
	}
	if (hlen > f->file_size - pre_len) {
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s: header of %llu bytes extends beyond the end of the file "
		                    "(%llu bytes)",
		                    f->path, (unsigned long long)hlen,
		                    (unsigned long long)f->file_size);
		goto out;
	}
	if (hlen > NPY_HEADER_MAX) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: header of %llu bytes is implausibly long",
		                    f->path, (unsigned long long)hlen);
		goto out;
	}
	text = malloc(hlen + 1);
	if (text == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", f->path);
		goto out;
	}
	rc = pread_full(f, text, hlen, pre_len);
	if (rc != 0)
		goto out;
	h.p = text;
	h.end = text + hlen;
	h.path = f->path;
	f->info.version = major;
	rc = parse_header(&h, &f->info);
	if (rc != 0)
		goto out;
	f->info.data_offset = pre_len + hlen;
	f->info.count = 1;
	for (int i = 0; i < f->info.ndim; i++) {
		uint64_t s = f->info.shape[i];

		if (s != 0 && f->info.count > UINT64_MAX / s) {
			rc = pspace_err_set(PSPACE_EFORMAT,
			                    "%s: shape overflows 64-bit element counts", f->path);
			goto out;
		}
		f->info.count *= s;
	}
	if (f->info.count > (UINT64_MAX / 8) - f->info.data_offset) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: shape overflows 64-bit byte counts",
		                    f->path);
		goto out;
	}
	bytes = f->info.count * pspace_dtype_size(f->info.dtype);
	avail = f->file_size - f->info.data_offset;
	if (avail < bytes) {
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s: truncated: %llu bytes of data, expected %llu", f->path,
		                    (unsigned long long)avail, (unsigned long long)bytes);
		goto out;
	}
	if (avail > bytes) {
		/* a file appended to or of another shape: its data is not what the header says */
		rc = pspace_err_set(PSPACE_EFORMAT,
		                    "%s: %llu bytes of data, but the header's shape and dtype make "
		                    "%llu (%llu trailing bytes)",
		                    f->path, (unsigned long long)avail, (unsigned long long)bytes,
		                    (unsigned long long)(avail - bytes));
		goto out;
	}
out:
	free(text);
	return rc;
}

int pspace_npy_open(pspace_npy **out, const char *path)
{
	pspace_npy *f = NULL;
	struct stat st;
	int rc = 0;

	if (out == NULL || path == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_npy_open: NULL argument");
	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (f != NULL)
		f->fd = -1;
	if (f == NULL || (f->path = strdup(path)) == NULL) {
		rc = pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		int e = errno;

		rc = pspace_err_set(pspace_err_from_errno(e), "%s: %s", path, strerror(e));
		goto out;
	}
	if (fstat(f->fd, &st) != 0) {
		rc = pspace_err_set(PSPACE_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = pspace_err_set(PSPACE_EFORMAT, "%s: not a regular file", path);
		goto out;
	}
	f->file_size = (uint64_t)st.st_size;
	rc = read_header(f);
	if (rc != 0)
		goto out;
	*out = f;
	f = NULL;
out:
	pspace_npy_close(f);
	return rc;
}

void pspace_npy_close(pspace_npy *f)
{
	if (f == NULL)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

int pspace_npy_info_get(pspace_npy_info *out, const pspace_npy *f)
{
	if (out == NULL || f == NULL)
		return pspace_err_set(PSPACE_EINVAL, "pspace_npy_info_get: NULL argument");
	*out = f->info;
	return 0;
}

const char *pspace_npy_path(const pspace_npy *f)
{
	return f->path;
}

/* Arguments of a read of 8-byte elements by @p fn. */
static int check_read(const pspace_npy *f, const char *fn, uint64_t first, uint64_t count,
                      const void *out)
{
	if (f == NULL)
		return pspace_err_set(PSPACE_EINVAL, "%s: NULL file", fn);
	if (out == NULL && count > 0)
		return pspace_err_set(PSPACE_EINVAL, "%s: read into NULL", f->path);
	if (first > f->info.count || count > f->info.count - first)
		return pspace_err_set(
		    PSPACE_EINVAL, "%s: elements [%llu, %llu) out of range (%llu elements)",
		    f->path, (unsigned long long)first, (unsigned long long)first + count,
		    (unsigned long long)f->info.count);
	if (count > SIZE_MAX / 8)
		return pspace_err_set(PSPACE_EINVAL, "%s: read of %llu elements too large", f->path,
		                      (unsigned long long)count);
	return 0;
}

int pspace_npy_read(pspace_npy *f, uint64_t first, uint64_t count, double *out)
{
	size_t isz;
	int rc;

	rc = check_read(f, "pspace_npy_read", first, count, out);
	if (rc != 0 || count == 0)
		return rc;
	isz = pspace_dtype_size(f->info.dtype);
	if (f->info.dtype == PSPACE_F32) {
		/*
		 * Read the floats into the upper half of out and widen upwards in
		 * place: out[i] (bytes 8i..8i+8) never reaches float i+1 (byte
		 * 4count+4i+4) for i < count, so no scratch buffer is needed.
		 */
		unsigned char *base = (unsigned char *)out;
		unsigned char *src = base + count * 4;

		rc = pread_full(f, src, count * 4, f->info.data_offset + first * isz);
		if (rc != 0)
			return rc;
		for (uint64_t i = 0; i < count; i++) {
			float v;

			memcpy(&v, src + 4 * i, 4);
			out[i] = (double)v;
		}
		return 0;
	}
	rc = pread_full(f, out, count * 8, f->info.data_offset + first * isz);
	if (rc != 0 || f->info.dtype == PSPACE_F64)
		return rc;
	for (uint64_t i = 0; i < count; i++) {
		int64_t v;

		memcpy(&v, &out[i], 8);
		out[i] = (double)v;
	}
	return 0;
}

int pspace_npy_read_i64(pspace_npy *f, uint64_t first, uint64_t count, int64_t *out)
{
	double buf[512];
	uint64_t done = 0;
	int rc;

	rc = check_read(f, "pspace_npy_read_i64", first, count, out);
	if (rc != 0 || count == 0)
		return rc;
	if (f->info.dtype == PSPACE_I64)
		return pread_full(f, out, count * 8, f->info.data_offset + first * 8);
	while (done < count) {
		uint64_t n = count - done < 512 ? count - done : 512;

		rc = pspace_npy_read(f, first + done, n, buf);
		if (rc != 0)
			return rc;
		for (uint64_t i = 0; i < n; i++) {
			double v = buf[i];

			/* 2^63 is the first double above INT64_MAX. */
			if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0) ||
			    v != (double)(int64_t)v)
				return pspace_err_set(
				    PSPACE_EFORMAT, "%s: element %llu is %g, not an integer",
				    f->path, (unsigned long long)(first + done + i), v);
			out[done + i] = (int64_t)v;
		}
		done += n;
	}
	return 0;
}

/* ---- writer -------------------------------------------------------------------------- */

/* Header text as numpy writes it, padded so preamble + header is a multiple of 64. */
static size_t format_header(char *buf, size_t cap, pspace_dtype dtype, int ndim,
                            const uint64_t *shape)
{
	const char *descr = dtype == PSPACE_F32 ? "<f4" : dtype == PSPACE_F64 ? "<f8" : "<i8";
	size_t n;

	n = (size_t)snprintf(buf, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
	for (int i = 0; i < ndim; i++)
		n += (size_t)snprintf(buf + n, cap - n, i == 0 ? "%llu" : ", %llu",
		                      (unsigned long long)shape[i]);
	n += (size_t)snprintf(buf + n, cap - n, "%s), }", ndim == 1 ? "," : "");
	while ((10 + n + 1) % 64 != 0)
		buf[n++] = ' ';
	buf[n++] = '\n';
	return n;
}

/* Best effort: a crash after rename should not lose the directory entry. */
static void sync_parent_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t len;
	int fd;

	if (slash == NULL) {
		strcpy(dir, ".");
	} else {
		len = slash == path ? 1 : (size_t)(slash - path);
		if (len >= sizeof(dir))
			return;
		memcpy(dir, path, len);
		dir[len] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Creates PATH.tmp-PID-N exclusively, mode 0666 minus the umask (as numpy.save). */
static int open_temp(const char *path, char **tmp_out, int *fd_out)
{
	static _Atomic unsigned counter;
	size_t len = strlen(path) + 48;
	char *tmp = malloc(len);
	int fd = -1;

	if (tmp == NULL)
		return pspace_err_set(PSPACE_ENOMEM, "%s: out of memory", path);
	for (int attempt = 0; attempt < 100; attempt++) {
		snprintf(tmp, len, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		int e = errno;

		free(tmp);
		return pspace_err_set(pspace_err_from_errno(e),
		                      "%s: cannot create a temporary file: %s", path, strerror(e));
	}
	*tmp_out = tmp;
	*fd_out = fd;
	return 0;
}

int pspace_npy_write(const char *path, pspace_dtype dtype, int ndim, const uint64_t *shape,
                     const void *data)
{
	char header[512];
	unsigned char pre[10];
	unsigned char buf[65536];
	char *tmp = NULL;
	const char *name;
	struct stat sb;
	uint64_t count = 1, done = 0;
	size_t hlen, isz;
	int fd = -1, rc = 0;

	if (path == NULL || (ndim > 0 && shape == NULL))
		return pspace_err_set(PSPACE_EINVAL, "pspace_npy_write: NULL argument");
	if (dtype != PSPACE_F32 && dtype != PSPACE_F64 && dtype != PSPACE_I64)
		return pspace_err_set(PSPACE_EINVAL, "%s: cannot write dtype %s (f32, f64 or i64)",
		                      path, pspace_dtype_name(dtype));
	if (ndim < 0 || ndim > 4)
		return pspace_err_set(PSPACE_EINVAL, "%s: %d dimensions (0 to 4 supported)", path,
		                      ndim);
	isz = pspace_dtype_size(dtype);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] != 0 && count > UINT64_MAX / 8 / shape[i])
			return pspace_err_set(PSPACE_EINVAL, "%s: shape overflows", path);
		count *= shape[i];
	}
	if (count > 0 && data == NULL)
		return pspace_err_set(PSPACE_EINVAL, "%s: NULL data", path);
	hlen = format_header(header, sizeof(header), dtype, ndim, shape);
	memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
	pre[6] = 1;
	pre[7] = 0;
	pre[8] = (unsigned char)(hlen & 0xff);
	pre[9] = (unsigned char)(hlen >> 8);

	/* An existing non-regular file (/dev/null, a FIFO) is written in place:
	 * a rename would replace it. */
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = pspace_err_set(pspace_err_from_errno(errno), "%s: cannot open: %s",
			                    path, strerror(errno));
			goto out;
		}
		name = path;
	} else {
		rc = open_temp(path, &tmp, &fd);
		if (rc != 0)
			goto out;
		name = tmp;
	}
	rc = write_full(fd, pre, sizeof(pre), name);
	if (rc == 0)
		rc = write_full(fd, header, hlen, name);
	if (rc != 0)
		goto out;
	if (dtype == PSPACE_F64 || dtype == PSPACE_I64) {
		rc = write_full(fd, data, count * 8, name);
		if (rc != 0)
			goto out;
	} else {
		const double *src = data;

		while (done < count) {
			size_t n = count - done < sizeof(buf) / 4 ? (size_t)(count - done)
			                                          : sizeof(buf) / 4;

			for (size_t i = 0; i < n; i++) {
				float v = (float)src[done + i];

				memcpy(buf + 4 * i, &v, 4);
			}
			rc = write_full(fd, buf, n * isz, name);
			if (rc != 0)
				goto out;
			done += n;
		}
	}
	if (tmp == NULL) { /* in place: nothing to make durable or rename */
		rc = close(fd) == 0 ? 0
		                    : pspace_err_set(pspace_err_from_errno(errno), "%s: close: %s",
		                                     path, strerror(errno));
		fd = -1;
		goto out;
	}
	if (fsync(fd) != 0) {
		rc = pspace_err_set(pspace_err_from_errno(errno), "%s: fsync: %s", tmp,
		                    strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = pspace_err_set(pspace_err_from_errno(errno), "%s: close: %s", tmp,
		                    strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = pspace_err_set(pspace_err_from_errno(errno), "%s: rename from %s: %s", path,
		                    tmp, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	sync_parent_dir(path);
out:
	if (fd >= 0)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	return rc;
}
