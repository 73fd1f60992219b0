/*
 * Kill test: the pspace tool building (Dense and BlockDiag out of core,
 * f64, small checkpoints), removing and compacting one store is SIGKILLed
 * at seeded random points; after every kill the store verifies and every
 * complete matrix equals the float64 reference F = (1/n) J^T J (and its
 * layer blocks); finally the interrupted builds are resumed and checked.
 * An interrupted KFAC build is refused by --resume with a clear message.
 * The long version is tests/torture_kill.sh (not in ctest).
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "fref.h"
#include "pspace/build.h"
#include "pspace/npy.h"
#include "pspace/refnet.h"

/* fc1 linear 16x20 bias (336 parameters), fc2 linear 8x16 bias (136): d = 472. */
static const char kill_layout[] = "fc1 linear 16x20 bias\nfc2 linear 8x16 bias\n";
#define KILL_D  472
#define KILL_D1 336
#define KILL_N  2000
#define KILLS   12

typedef struct kill_env {
	fx_store t;
	const char *tool, *layout, *jac, *compacted;
	double F[KILL_D * KILL_D], B[KILL_D * KILL_D];
} kill_env;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Starts the tool with the NULL-terminated arguments, stdout and stderr to /dev/null. */
static pid_t start_tool(const kill_env *e, const char *const *args)
{
	const char *argv[24];
	size_t n = 0;
	pid_t pid;

	argv[n++] = e->tool;
	while (*args && n < 23)
		argv[n++] = *args++;
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(126);
		setenv("PSPACE_TEST_TXN_BYTES", "16384", 1);
		execv(e->tool, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Waits for @p pid; @return its exit status, or -1 if a signal ended it. */
static int wait_tool(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void build_args(const kill_env *e, const char *name, const char **a)
{
	const char *kind = strcmp(name, "F") == 0 ? "dense" : "blockdiag";
	const char *v[] = {"build",   e->t.path,    name,   "--kind",      kind,  "--layout",
	                   e->layout, "--jacobian", e->jac, "--precision", "f64", "--tile",
	                   "16",      "--mem",      "256K", "--threads",   "1",   "--batch",
	                   "500",     "--resume",   NULL};

	memcpy(a, v, sizeof(v));
}

static int is_complete(const kill_env *e, const char *name)
{
	pspace_store *s = NULL;
	pspace_matrix_info info;
	int complete;

	assert_int_equal(pspace_store_open(&s, e->t.path, NULL), 0);
	complete =
	    pspace_matrix_info_get(&info, s, name) == 0 && info.state == PSPACE_STATE_COMPLETE;
	pspace_store_close(s);
	return complete;
}

/*
 * The store verifies, and each complete matrix equals its reference;
 * @return how many are complete.
 */
static int check(kill_env *e, const char *path)
{
	const char *names[2] = {"F", "B"};
	const double *refs[2] = {e->F, e->B};
	pspace_store *s = NULL;
	pspace_matrix_info info;
	int complete = 0;

	if (fx_cli("verify %s", path) != 0)
		fail_msg("verify %s: %s%s", path, fx_out, fx_err);
	assert_int_equal(pspace_store_open(&s, path, NULL), 0);
	for (int i = 0; i < 2; i++) {
		if (pspace_matrix_info_get(&info, s, names[i]) != 0 ||
		    info.state != PSPACE_STATE_COMPLETE)
			continue;
		complete++;
		assert_true(fref_stored_relerr(s, names[i], refs[i], KILL_D) < 1e-13);
	}
	pspace_store_close(s);
	return complete;
}

static void test_kill_random_points(void **state)
{
	kill_env *e = calloc(1, sizeof(*e));
	uint64_t shape[2] = {KILL_N, KILL_D}, rng = 0x6b696c6cULL;
	const char *args[24];
	double *J, *F, span;
	int killed = 0, finished = 0;

	(void)state;
	assert_non_null(e);
	e->tool = getenv("PSPACE_TOOL");
	assert_non_null(e->tool);
	fx_store_dir(&e->t, "kill");
	e->layout = strdup(fx_path(e->t.root, "layout.txt"));
	e->jac = strdup(fx_path(e->t.root, "J.npy"));
	e->compacted = strdup(fx_path(e->t.root, "c"));
	fx_write_file(e->layout, kill_layout, strlen(kill_layout));
	J = fx_randv((size_t)KILL_N * KILL_D, 11);
	assert_int_equal(pspace_npy_write(e->jac, PSPACE_F64, 2, shape, J), 0);
	F = fref_rows_gram(J, KILL_N, KILL_D, KILL_N);
	memcpy(e->F, F, sizeof(e->F));
	for (size_t i = 0; i < KILL_D; i++)
		for (size_t j = 0; j < KILL_D; j++)
			e->B[i * KILL_D + j] =
			    (i < KILL_D1) == (j < KILL_D1) ? F[i * KILL_D + j] : 0.0;
	free(F);
	free(J);

	/*
	 * How long an uninterrupted build takes (the second: the first may
	 * measure the BLIS kernels): kills land within 1.2 times that.
	 */
	build_args(e, "F", args);
	assert_int_equal(wait_tool(start_tool(e, args)), 0);
	span = now_ms();
	build_args(e, "B", args);
	assert_int_equal(wait_tool(start_tool(e, args)), 0);
	span = now_ms() - span;
	assert_int_equal(check(e, e->t.path), 2);

	/*
	 * Build (or resume) a matrix, or remove it when it is complete; remove
	 * one; compact the store into a new one.
	 */
	for (int k = 0; killed < KILLS && k < 10 * KILLS; k++) {
		const char *name = fx_rng_u64(&rng) % 2 ? "F" : "B";
		const char *rm[] = {"rm", e->t.path, name, NULL};
		const char *compact[] = {"compact", e->t.path, e->compacted, NULL};
		const char *const *run = args;
		int op = (int)(fx_rng_u64(&rng) % 4), rc;
		pid_t pid;

		if (op <= 1 && !is_complete(e, name))
			build_args(e, name, args);
		else if (op <= 2)
			run = rm;
		else
			run = compact;
		if (run == compact)
			(void)fx_dir_remove(e->compacted);
		pid = start_tool(e, run);
		usleep((useconds_t)(fx_rng_open01(&rng) * 1.2 * span * 1e3));
		kill(pid, SIGKILL);
		rc = wait_tool(pid);
		killed += rc == -1;
		finished += rc != -1;
		/* what finished succeeded, but rm of a missing matrix */
		if (rc != -1 && run != rm)
			assert_int_equal(rc, 0);
		check(e, e->t.path);
		if (run == compact && rc == 0)
			check(e, e->compacted);
	}
	assert_int_equal(killed, KILLS);
	/* resumed (or begun) without a kill, both matrices end complete and right */
	for (int i = 0; i < 2; i++)
		if (!is_complete(e, i ? "B" : "F")) {
			build_args(e, i ? "B" : "F", args);
			assert_int_equal(wait_tool(start_tool(e, args)), 0);
		}
	assert_int_equal(check(e, e->t.path), 2);
	print_message("kill: %d kills, %d runs finished first, a build takes %.0f ms\n", killed,
	              finished, span);
	fx_dir_remove(e->compacted);
	free((void *)e->compacted);
	free((void *)e->jac);
	free((void *)e->layout);
	fx_store_close(&e->t);
	free(e);
}

/*
 * A KFAC build killed after it began leaves its matrix building; KFAC
 * cannot resume, so --resume is refused with a message that says to
 * remove it (found by tests/torture_kill.sh), and after removal the build
 * succeeds.
 */
static void test_kill_kfac_no_resume(void **state)
{
	pspace_refnet_opts ro = {"mlp:3,2,2", NULL, 8, PSPACE_VARIANT_CLASSIF_LOGITS, 0, 3, 0};
	pspace_matrix_desc d = {PSPACE_KIND_KFAC, 14, 0, NULL, 0, 0, {0}, NULL};
	pspace_matrix_info info;
	pspace_layer_source src;
	pspace_build_opts o;
	pspace_refnet *net = NULL;
	pspace_writer *w = NULL;
	fx_store t;

	(void)state;
	fx_store_open(&t, "kill");
	assert_int_equal(pspace_refnet_create(&net, &ro), 0);
	assert_int_equal(pspace_refnet_layers(&src, net), 0);
	pspace_codec_opts_default(&d.codec);
	/* what a kill between the writer's begin and finish leaves */
	assert_int_equal(pspace_writer_begin(&w, t.s, "K", &d), 0);
	pspace_writer_abort(w, 0);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "K"), 0);
	assert_int_equal(info.state, PSPACE_STATE_BUILDING);
	pspace_build_opts_default(&o);
	o.kind = PSPACE_KIND_KFAC;
	o.resume = 1;
	o.exec.threads = 1;
	fx_expect_err(pspace_build_layers(t.s, "K", pspace_refnet_layout(net), &src, &o),
	              PSPACE_EEXIST, NULL,
	              "interrupted kfac build, which cannot resume: remove it");
	assert_int_equal(pspace_store_remove(t.s, "K"), 0);
	assert_int_equal(pspace_build_layers(t.s, "K", pspace_refnet_layout(net), &src, &o), 0);
	assert_int_equal(pspace_matrix_info_get(&info, t.s, "K"), 0);
	assert_int_equal(info.state, PSPACE_STATE_COMPLETE);
	pspace_refnet_free(net);
	fx_store_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill_random_points),
	    cmocka_unit_test(test_kill_kfac_no_resume),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
