/*
 * Tests of src/common: error codes and detail messages, names, and the
 * BLIS kernel-set choice (against BLIS 0.9.0's documented cpuid rules).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/blis_arch.h"
#include "common/error.h"
#include "pspace.h"

static void test_common_error_codes_fixed(void **state)
{
	(void)state;
	/* The values are part of the ABI and must never change. */
	assert_int_equal(PSPACE_EINVAL, -1);
	assert_int_equal(PSPACE_ECORRUPT, -6);
	assert_int_equal(PSPACE_EVERSION, -7);
	assert_int_equal(PSPACE_EFULL, -8);
	assert_int_equal(PSPACE_EINCOMPLETE, -9);
	assert_int_equal(PSPACE_EBLIS, -18);
	for (int c = 0; c >= PSPACE_EBLIS; c--)
		assert_string_not_equal(pspace_strerror(c), "unknown error");
	assert_string_equal(pspace_strerror(-999), "unknown error");
}

static void test_common_error_detail(void **state)
{
	(void)state;
	pspace_errclear();
	assert_string_equal(pspace_errdetail(), "");
	assert_int_equal(pspace_err_set(PSPACE_ECORRUPT, "checksum %x", 0xabcu), PSPACE_ECORRUPT);
	assert_int_equal(
	    pspace_err_prefix(PSPACE_ECORRUPT, "matrix %s, tile (%d,%d,%d)", "F", 0, 1, 2),
	    PSPACE_ECORRUPT);
	assert_string_equal(pspace_errdetail(), "matrix F, tile (0,1,2): checksum abc");
	/* a prefix of success leaves the message alone */
	assert_int_equal(pspace_err_prefix(0, "ignored"), 0);
	assert_string_equal(pspace_errdetail(), "matrix F, tile (0,1,2): checksum abc");
	pspace_errclear();
	pspace_err_prefix(PSPACE_EIO, "store /x");
	assert_string_equal(pspace_errdetail(), "store /x: I/O error");
	assert_int_equal(pspace_err_from_errno(28 /* ENOSPC */), PSPACE_EFULL);
}

static void test_common_names(void **state)
{
	pspace_dtype t;
	pspace_kind k;

	(void)state;
	assert_int_equal(pspace_dtype_parse(&t, "bf16"), 0);
	assert_int_equal(t, PSPACE_BF16);
	assert_int_equal(pspace_dtype_size(PSPACE_F16), 2);
	assert_int_equal(pspace_dtype_size(PSPACE_F64), 8);
	assert_int_equal(pspace_dtype_parse(&t, "f128"), PSPACE_EINVAL);
	assert_int_equal(pspace_kind_parse(&k, "ekfac"), 0);
	assert_int_equal(k, PSPACE_KIND_EKFAC);
	assert_string_equal(pspace_kind_name(PSPACE_KIND_BLOCKDIAG), "blockdiag");
	assert_int_equal(pspace_kind_parse(&k, "nope"), PSPACE_EINVAL);
}

#define AVX2 (PSPACE_CPU_SSSE3 | PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_AVX2)

static void test_common_blis_predict(void **state)
{
	(void)state;
	/* BLIS 0.9.0: zen3 = AMD family 0x19, zen2 = 0x17 models >= 0x30. */
	pspace_cpu zen4 = {PSPACE_CPU_AMD, 0x19, 0x11, AVX2 | PSPACE_CPU_AVX512};
	pspace_cpu zen2 = {PSPACE_CPU_AMD, 0x17, 0x31, AVX2};
	pspace_cpu zen1 = {PSPACE_CPU_AMD, 0x17, 0x01, AVX2};
	pspace_cpu zen5 = {PSPACE_CPU_AMD, 0x1a, 0x44, AVX2 | PSPACE_CPU_AVX512};
	pspace_cpu zen5_noavx512 = {PSPACE_CPU_AMD, 0x1a, 0x44, AVX2};
	pspace_cpu intel = {PSPACE_CPU_INTEL, 6, 0x55, AVX2 | PSPACE_CPU_AVX512};
	pspace_cpu old = {PSPACE_CPU_INTEL, 6, 0x17, PSPACE_CPU_SSSE3};
	pspace_cpu other = {PSPACE_CPU_OTHER, 0, 0, AVX2};

	assert_string_equal(pspace_blis_predict(&zen4), "zen3");
	assert_null(pspace_blis_fallback(&zen4));
	assert_string_equal(pspace_blis_predict(&zen2), "zen2");
	assert_string_equal(pspace_blis_predict(&zen1), "zen");
	assert_string_equal(pspace_blis_predict(&zen5), "generic");
	assert_string_equal(pspace_blis_fallback(&zen5), "skx");
	assert_string_equal(pspace_blis_fallback(&zen5_noavx512), "zen3");
	assert_string_equal(pspace_blis_predict(&intel), "haswell");
	assert_null(pspace_blis_fallback(&intel));
	assert_string_equal(pspace_blis_predict(&old), "penryn");
	assert_null(pspace_blis_fallback(&old));
	/* unknown vendor with AVX2 (a VM hiding the vendor): BLIS says generic */
	assert_string_equal(pspace_blis_fallback(&other), "haswell");
}

static void test_common_blis_arch_index(void **state)
{
	(void)state;
	assert_true(pspace_blis_arch_index("zen3") >= 0);
	assert_int_equal(pspace_blis_arch_index("zen3"), pspace_blis_arch_index("6"));
	assert_int_equal(pspace_blis_arch_index("skx"), pspace_blis_arch_index("0"));
	assert_true(pspace_blis_arch_index("generic") > 0);
	assert_int_equal(pspace_blis_arch_index("armsve"), -1);
	assert_int_equal(pspace_blis_arch_index("13"), -1); /* armsve: BLIS would abort */
	assert_int_equal(pspace_blis_arch_index(""), -1);
	assert_int_equal(pspace_blis_arch_index("6x"), -1);
}

/* Runs pspace_init() in a child with the given environment; returns the
 * child's exit code: 0 if init succeeded and the arch matched @p want, 3 if
 * init failed with PSPACE_EBLIS, other values on mismatch. */
static int init_in_child(const char *blis_arch_type, const char *pspace_arch, const char *want)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		pspace_blis_info b;
		int rc;

		if (blis_arch_type)
			setenv("BLIS_ARCH_TYPE", blis_arch_type, 1);
		else
			unsetenv("BLIS_ARCH_TYPE");
		if (pspace_arch)
			setenv("PSPACE_BLIS_ARCH", pspace_arch, 1);
		else
			unsetenv("PSPACE_BLIS_ARCH");
		rc = pspace_blis_info_get(&b);
		if (rc == PSPACE_EBLIS)
			_exit(strstr(pspace_errdetail(), "not a BLIS kernel set") ? 3 : 4);
		if (rc != 0)
			_exit(5);
		if (want && strcmp(b.arch, want) != 0)
			_exit(6);
		if (!want && strcmp(b.arch, "generic") == 0) {
			pspace_cpu cpu;
			pspace_cpu_query(&cpu);
			/* generic on a CPU with AVX2 is exactly what pspace must avoid */
			_exit((cpu.features & PSPACE_CPU_AVX2) ? 7 : 0);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_common_blis_init(void **state)
{
	(void)state;
	/* auto: never the generic kernels on a CPU with AVX2 */
	assert_int_equal(init_in_child(NULL, NULL, NULL), 0);
	assert_int_equal(init_in_child(NULL, "auto", NULL), 0);
	/* user overrides, by name and by index */
	assert_int_equal(init_in_child(NULL, "haswell", "haswell"), 0);
	assert_int_equal(init_in_child("zen3", NULL, "zen3"), 0);
	assert_int_equal(init_in_child("0", NULL, "skx"), 0);
	assert_int_equal(init_in_child("generic", "skx", "generic"), 0); /* BLIS_ARCH_TYPE wins */
	/* invalid ids are refused instead of letting BLIS abort the process */
	assert_int_equal(init_in_child("13", NULL, NULL), 3);
	assert_int_equal(init_in_child(NULL, "pentium", NULL), 3);
}

static void test_common_blis_request(void **state)
{
	pspace_blis_info b;

	(void)state;
	assert_int_equal(pspace_blis_arch_request("nonsense"), PSPACE_EINVAL);
	assert_int_equal(pspace_blis_info_get(&b), 0);
	assert_non_null(strstr(b.version, "0."));
	/* after initialization the choice is fixed */
	assert_int_equal(pspace_blis_arch_request("zen3"), PSPACE_EBUSY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_common_error_codes_fixed),
	    cmocka_unit_test(test_common_error_detail),
	    cmocka_unit_test(test_common_names),
	    cmocka_unit_test(test_common_blis_predict),
	    cmocka_unit_test(test_common_blis_arch_index),
	    cmocka_unit_test(test_common_blis_init),
	    cmocka_unit_test(test_common_blis_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
