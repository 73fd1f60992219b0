/*
 * Library initialization: the BLIS kernel set.
 *
 * Order of precedence (see README, "BLIS kernels"):
 *   1. $BLIS_ARCH_TYPE set by the user (an index, or a name pspace
 *      translates, since BLIS 0.9.0 reads only numbers);
 *   2. pspace_blis_arch_request() or $PSPACE_BLIS_ARCH ("auto" = 3.,
 *      "calibrate" = 3. without the cache);
 *   3. the fastest of the kernel sets this CPU runs, measured once per CPU
 *      and BLIS version and cached (blis_calib.c); when it cannot be
 *      measured, BLIS's own choice, unless it would fall back to "generic"
 *      on a CPU with AVX2/AVX-512, in which case pspace picks a real set.
 * An invalid id is refused here, since BLIS itself aborts the process on one.
 */
#include <blis.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/amx.h"
#include "common/blis_arch.h"
#include "common/blis_calib.h"
#include "common/error.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t request_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_done;
static int init_rc;
static char init_detail[256];
static char requested[32];
static char reason[PATH_MAX + 512];
static char cpu_desc[96];
static const char *arch_in_use = "none";

static void describe_cpu(const pspace_cpu *cpu)
{
	const char *v = cpu->vendor == PSPACE_CPU_AMD     ? "AMD"
	                : cpu->vendor == PSPACE_CPU_INTEL ? "Intel"
	                                                  : "other";

	/* amx: the CPU has it (mm of bf16 matrices runs on it; PSPACE_AMX=0 says no) */
	snprintf(cpu_desc, sizeof(cpu_desc), "%s family 0x%x model 0x%x%s%s%s", v, cpu->family,
	         cpu->model, (cpu->features & PSPACE_CPU_AVX2) ? " avx2" : "",
	         (cpu->features & PSPACE_CPU_AVX512) ? " avx512" : "",
	         pspace_amx_cpu() ? " amx" : "");
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

/* Today's rules, when nothing was measured: BLIS's choice unless it
 * would be generic on a CPU with vector units. @p note ends the reason. */
static int choose_by_rules(const pspace_cpu *cpu, const char *note)
{
	const char *fb = pspace_blis_fallback(cpu);

	if (fb == NULL) {
		snprintf(reason, sizeof(reason), "chosen by BLIS%s", note);
		return 0;
	}
	snprintf(reason, sizeof(reason),
	         "chosen by pspace: BLIS %s does not know this CPU and would use 'generic'%s",
	         bli_info_get_version_str(), note);
	return set_arch_env(fb, "pspace");
}

/* The fastest candidate, from the cache or measured now (@p fresh: never
 * from the cache), and the reason saying which. */
static int choose_measured(const pspace_cpu *cpu, int fresh)
{
	const char *names[PSPACE_BLIS_MAX_CANDIDATES];
	const char *ver = bli_info_get_version_str();
	pspace_blis_calib c;
	char path[PATH_MAX], why[PATH_MAX + 64], desc[256], note[PATH_MAX + 96];
	int n = pspace_blis_candidates(names, PSPACE_BLIS_MAX_CANDIDATES, cpu);
	int have_path = pspace_blis_cache_path(path, sizeof(path), cpu, ver) == 0;
	int rc;

	if (n <= 1) {
		rc = choose_by_rules(cpu, n == 1 ? " (no other kernel set runs on this CPU)" : "");
		goto out;
	}
	if (!fresh && have_path && pspace_blis_cache_read(&c, path, cpu, ver, names, n) == 0) {
		pspace_blis_calib_describe(desc, sizeof(desc), &c);
		snprintf(reason, sizeof(reason), "measured on this CPU: %s; cached in %s", desc,
		         path);
		rc = set_arch_env(c.name[c.best], "pspace");
		goto out;
	}
	if (pspace_blis_calibrate(&c, names, n, why, sizeof(why)) != 0) {
		snprintf(note, sizeof(note), " (not measured: %s)", why);
		rc = choose_by_rules(cpu, note);
		goto out;
	}
	pspace_blis_calib_describe(desc, sizeof(desc), &c);
	if (!have_path)
		snprintf(
		    note, sizeof(note),
		    "not saved: no cache directory ($PSPACE_CACHE_DIR, $XDG_CACHE_HOME, $HOME)");
	else if (pspace_blis_cache_write(&c, path, cpu, ver, why, sizeof(why)) != 0)
		snprintf(note, sizeof(note), "not saved: %s", why);
	else
		snprintf(note, sizeof(note), "saved to %s", path);
	snprintf(reason, sizeof(reason), "measured on this CPU in %.2f s: %s; %s", c.seconds, desc,
	         note);
	rc = set_arch_env(c.name[c.best], "pspace");
out:
	return rc;
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
	} else if (want && strcmp(want, "auto") != 0 && strcmp(want, "calibrate") != 0) {
		init_rc = set_arch_env(want, requested[0] ? "--blis-arch" : "PSPACE_BLIS_ARCH");
		snprintf(reason, sizeof(reason), "requested (%s)",
		         requested[0] ? "--blis-arch" : "PSPACE_BLIS_ARCH");
	} else {
		init_rc = choose_measured(&cpu, want != NULL && strcmp(want, "calibrate") == 0);
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

	if (name == NULL || (strcmp(name, "auto") != 0 && strcmp(name, "calibrate") != 0 &&
	                     pspace_blis_arch_index(name) < 0))
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
