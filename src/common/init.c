/*
 * Library initialization: the BLIS kernel set.
 *
 * Order of precedence (see README, "BLIS kernels"):
 *   1. $BLIS_ARCH_TYPE set by the user (an index, or a name pspace
 *      translates, since BLIS 0.9.0 reads only numbers);
 *   2. pspace_blis_arch_request() or $PSPACE_BLIS_ARCH ("auto" = 3.);
 *   3. BLIS's own choice, unless it would fall back to "generic" on a CPU
 *      with AVX2/AVX-512, in which case pspace picks a real kernel set.
 * An invalid id is refused here, since BLIS itself aborts the process on one.
 */
#include <blis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/blis_arch.h"
#include "common/error.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t request_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_done;
static int init_rc;
static char init_detail[256];
static char requested[32];
static char reason[160];
static char cpu_desc[96];
static const char *arch_in_use = "none";

static void describe_cpu(const pspace_cpu *cpu)
{
	const char *v = cpu->vendor == PSPACE_CPU_AMD     ? "AMD"
	                : cpu->vendor == PSPACE_CPU_INTEL ? "Intel"
	                                                  : "other";

	snprintf(cpu_desc, sizeof(cpu_desc), "%s family 0x%x model 0x%x%s%s", v, cpu->family,
	         cpu->model, (cpu->features & PSPACE_CPU_AVX2) ? " avx2" : "",
	         (cpu->features & PSPACE_CPU_AVX512) ? " avx512" : "");
}

static int set_arch_env(const char *name, const char *why)
{
	char num[16];
	int idx = pspace_blis_arch_index(name);

	if (idx < 0) {
		snprintf(init_detail, sizeof(init_detail),
		         "%s: '%s' is not a BLIS kernel set of this build (try zen3, skx, haswell, "
		         "generic, or an index)",
		         why, name);
		return PSPACE_EBLIS;
	}
	snprintf(num, sizeof(num), "%d", idx);
	setenv("BLIS_ARCH_TYPE", num, 1);
	return 0;
}

static void do_init(void)
{
	pspace_cpu cpu;
	const char *user = getenv("BLIS_ARCH_TYPE");
	const char *want;

	pspace_cpu_query(&cpu);
	describe_cpu(&cpu);

	pthread_mutex_lock(&request_lock);
	want = requested[0] ? requested : getenv("PSPACE_BLIS_ARCH");
	if (want && requested[0] == '\0' && *want == '\0')
		want = NULL;

	if (user && *user) {
		init_rc = set_arch_env(user, "BLIS_ARCH_TYPE");
		snprintf(reason, sizeof(reason), "set by BLIS_ARCH_TYPE=%s", user);
	} else if (want && strcmp(want, "auto") != 0) {
		init_rc = set_arch_env(want, requested[0] ? "--blis-arch" : "PSPACE_BLIS_ARCH");
		snprintf(reason, sizeof(reason), "requested (%s)",
		         requested[0] ? "--blis-arch" : "PSPACE_BLIS_ARCH");
	} else {
		const char *fb = pspace_blis_fallback(&cpu);

		if (fb) {
			init_rc = set_arch_env(fb, "pspace");
			snprintf(reason, sizeof(reason),
			         "chosen by pspace: BLIS %s does not know this CPU and would use "
			         "'generic'",
			         bli_info_get_version_str());
		} else {
			snprintf(reason, sizeof(reason), "chosen by BLIS");
		}
	}
	init_done = 1; /* later requests are refused: the choice is made */
	pthread_mutex_unlock(&request_lock);

	if (init_rc == 0) {
		bli_init();
		arch_in_use = bli_arch_string(bli_arch_query_id());
	}
}

int pspace_init(void)
{
	pthread_once(&init_once, do_init);
	if (init_rc != 0)
		return pspace_err_set(init_rc, "%s", init_detail);
	return 0;
}

int pspace_blis_arch_request(const char *name)
{
	int rc = 0;

	if (name == NULL || (strcmp(name, "auto") != 0 && pspace_blis_arch_index(name) < 0))
		return pspace_err_set(PSPACE_EINVAL, "unknown BLIS kernel set '%s'",
		                      name ? name : "(null)");
	pthread_mutex_lock(&request_lock);
	if (init_done)
		rc = pspace_err_set(PSPACE_EBUSY, "BLIS is already initialized (kernel set %s)",
		                    arch_in_use);
	else
		snprintf(requested, sizeof(requested), "%s", name);
	pthread_mutex_unlock(&request_lock);
	return rc;
}

int pspace_blis_info_get(pspace_blis_info *out)
{
	int rc = pspace_init();

	out->arch = arch_in_use;
	out->reason = reason;
	out->version = bli_info_get_version_str();
	out->cpu = cpu_desc;
	return rc;
}
