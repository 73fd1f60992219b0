/*
 * Names of element types and representation kinds.
 */
#include <string.h>

#include "pspace/common.h"

static const struct {
	pspace_dtype t;
	const char *name;
	size_t size;
} dtypes[] = {
    {PSPACE_F64, "f64", 8}, {PSPACE_F32, "f32", 4}, {PSPACE_BF16, "bf16", 2},
    {PSPACE_F16, "f16", 2}, {PSPACE_I64, "i64", 8},
};

static const struct {
	pspace_kind k;
	const char *name;
} kinds[] = {
    {PSPACE_KIND_DENSE, "dense"},     {PSPACE_KIND_BLOCKDIAG, "blockdiag"},
    {PSPACE_KIND_DIAG, "diag"},       {PSPACE_KIND_QUASIDIAG, "quasidiag"},
    {PSPACE_KIND_KFAC, "kfac"},       {PSPACE_KIND_EKFAC, "ekfac"},
    {PSPACE_KIND_LOWRANK, "lowrank"}, {PSPACE_KIND_IDENTITY, "identity"},
    {PSPACE_KIND_MIXED, "mixed"},     {PSPACE_KIND_IMPLICIT, "implicit"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

size_t pspace_dtype_size(pspace_dtype t)
{
	for (size_t i = 0; i < COUNT(dtypes); i++)
		if (dtypes[i].t == t)
			return dtypes[i].size;
	return 0;
}

const char *pspace_dtype_name(pspace_dtype t)
{
	for (size_t i = 0; i < COUNT(dtypes); i++)
		if (dtypes[i].t == t)
			return dtypes[i].name;
	return "?";
}

int pspace_dtype_parse(pspace_dtype *out, const char *s)
{
	for (size_t i = 0; s && i < COUNT(dtypes); i++)
		if (strcmp(dtypes[i].name, s) == 0) {
			*out = dtypes[i].t;
			return 0;
		}
	return PSPACE_EINVAL;
}

const char *pspace_kind_name(pspace_kind k)
{
	for (size_t i = 0; i < COUNT(kinds); i++)
		if (kinds[i].k == k)
			return kinds[i].name;
	return "?";
}

int pspace_kind_parse(pspace_kind *out, const char *s)
{
	for (size_t i = 0; s && i < COUNT(kinds); i++)
		if (strcmp(kinds[i].name, s) == 0) {
			*out = kinds[i].k;
			return 0;
		}
	return PSPACE_EINVAL;
}

const char *pspace_version(void)
{
	return PSPACE_VERSION_STRING;
}
