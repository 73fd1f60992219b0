/*
 * Names of element types and representation kinds.
 */
#include <string.h>

#include "pspace/common.h"

/* An enum value and its name; the dtype and kind tables share the lookups. */
typedef struct named {
	int id;
	const char *name;
} named;

static const named dtypes[] = {
    {PSPACE_F64, "f64"}, {PSPACE_F32, "f32"}, {PSPACE_BF16, "bf16"},
    {PSPACE_F16, "f16"}, {PSPACE_I64, "i64"},
};

static const named kinds[] = {
    {PSPACE_KIND_DENSE, "dense"},       {PSPACE_KIND_BLOCKDIAG, "blockdiag"},
    {PSPACE_KIND_DIAG, "diag"},         {PSPACE_KIND_QUASIDIAG, "quasidiag"},
    {PSPACE_KIND_KFAC, "kfac"},         {PSPACE_KIND_EKFAC, "ekfac"},
    {PSPACE_KIND_LOWRANK, "lowrank"},   {PSPACE_KIND_IDENTITY, "identity"},
    {PSPACE_KIND_MIXED, "mixed"},       {PSPACE_KIND_IMPLICIT, "implicit"},
    {PSPACE_KIND_CHOLESKY, "cholesky"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* @return the name of @p id in table @p t of @p n entries, "?" if it has none. */
static const char *name_of(const named *t, size_t n, int id)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].id == id)
			return t[i].name;
	return "?";
}

/* Sets *id to the value named @p s in @p t. @return 0, or PSPACE_EINVAL for no such name. */
static int parse_name(const named *t, size_t n, const char *s, int *id)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(t[i].name, s) == 0) {
			*id = t[i].id;
			return 0;
		}
	return PSPACE_EINVAL;
}

size_t pspace_dtype_size(pspace_dtype t)
{
	switch (t) {
	case PSPACE_F64:
	case PSPACE_I64: return 8;
	case PSPACE_F32: return 4;
	case PSPACE_BF16:
	case PSPACE_F16: return 2;
	}
	return 0;
}

const char *pspace_dtype_name(pspace_dtype t)
{
	return name_of(dtypes, COUNT(dtypes), (int)t);
}

int pspace_dtype_parse(pspace_dtype *out, const char *s)
{
	int id = 0;
	int rc = parse_name(dtypes, COUNT(dtypes), s, &id);

	if (rc == 0)
		*out = (pspace_dtype)id;
	return rc;
}

const char *pspace_kind_name(pspace_kind k)
{
	return name_of(kinds, COUNT(kinds), (int)k);
}

int pspace_kind_parse(pspace_kind *out, const char *s)
{
	int id = 0;
	int rc = parse_name(kinds, COUNT(kinds), s, &id);

	if (rc == 0)
		*out = (pspace_kind)id;
	return rc;
}

const char *pspace_version(void)
{
	return PSPACE_VERSION_STRING;
}
