/*
 * Tests of `pspace build`, run through the built tool ($PSPACE_TOOL, set by
 * ctest): Jacobian rows, layer tensors and reference networks in, matrices
 * read back through the library and checked against float64 references
 * computed here; malformed inputs fail naming the file and add nothing.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "kref.h"
#include "pspace.h"

static char root[64];
static uint64_t rng_state = 12345;

static const char *path(const char *name)
{
	return fx_path(root, "%s", name);
}

static double randn(void)
{
	return fx_rng_normal(&rng_state);
}

static int count_fn(const pspace_matrix_info *info, void *ud)
{
	(void)info;
	(*(int *)ud)++;
	return 0;
}

static int store_count(const char *st)
{
	pspace_store *s = NULL;
	int n = 0;

	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_store_foreach(s, count_fn, &n), 0);
	pspace_store_close(s);
	return n;
}

static int setup(void **state)
{
	(void)state;
	fx_dir_make(root, sizeof(root), "cli-build");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (getenv("PSPACE_KEEP_TMP")) /* debugging: keep the stores and files */
		return 0;
	return fx_dir_remove(root);
}

#define BD 21 /* l1 linear 3x4 bias (15) + l2 linear 2x3 nobias (6) */
#define BK 2
#define BN 30

static const char blayout[] = "# test layout\nl1 linear 3x4 bias\nl2 linear 2x3 nobias\n";

static void write_text(const char *name, const char *text)
{
	fx_write_file(path(name), text, strlen(text));
}

static void check_built(const char *st, const char *name, pspace_kind kind, const double *want,
                        int blocks_only, int diag_only, double tol)
{
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	double got[BD * BD], ref[BD * BD];

	for (int i = 0; i < BD; i++)
		for (int j = 0; j < BD; j++) {
			int same = (i < 15) == (j < 15);
			ref[i * BD + j] = (diag_only && i != j) || (blocks_only && !same)
			                      ? 0.0
			                      : want[i * BD + j];
		}
	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	assert_int_equal(pspace_mat_open(&m, s, name), 0);
	assert_int_equal(pspace_mat_kind(m), kind);
	assert_int_equal(pspace_mat_dim(m), BD);
	assert_int_equal(pspace_mat_dense(m, NULL, got, BD), 0);
	if (fx_relerr(got, ref, BD * BD) > tol)
		fail_msg("%s: relative error %g", name, fx_relerr(got, ref, BD * BD));
	pspace_mat_free(m);
	pspace_store_close(s);
}

static void test_cli_build_jacobian(void **state)
{
	static double J[BK * BN * BD], Fr[BD * BD];
	uint64_t shape[3] = {BK, BN, BD}, s1[3] = {BK, 10, BD}, s2[3] = {BK, 20, BD};
	double *J1 = malloc(sizeof(double) * BK * 10 * BD),
	       *J2 = malloc(sizeof(double) * BK * 20 * BD);
	char st[400];
	static const struct {
		const char *kind;
		pspace_kind k;
		int blocks, diag;
	} kinds[] = {{"dense", PSPACE_KIND_DENSE, 0, 0},
	             {"blockdiag", PSPACE_KIND_BLOCKDIAG, 1, 0},
	             {"diag", PSPACE_KIND_DIAG, 0, 1},
	             {"lowrank", PSPACE_KIND_LOWRANK, 0, 0}};

	(void)state;
	snprintf(st, sizeof(st), "%s", path("build.store"));
	for (int i = 0; i < BK * BN * BD; i++)
		J[i] = randn() * (1 + i % 3);
	memset(Fr, 0, sizeof(Fr));
	for (int k = 0; k < BK; k++)
		for (int x = 0; x < BN; x++) {
			const double *r = J + ((size_t)k * BN + x) * BD;
			for (int i = 0; i < BD; i++)
				for (int j = 0; j < BD; j++)
					Fr[i * BD + j] += r[i] * r[j] / BN;
		}
	for (int k = 0; k < BK; k++) {
		memcpy(J1 + k * 10 * BD, J + ((size_t)k * BN) * BD, sizeof(double) * 10 * BD);
		memcpy(J2 + k * 20 * BD, J + ((size_t)k * BN + 10) * BD, sizeof(double) * 20 * BD);
	}
	assert_int_equal(pspace_npy_write(path("J.npy"), PSPACE_F64, 3, shape, J), 0);
	assert_int_equal(pspace_npy_write(path("J1.npy"), PSPACE_F64, 3, s1, J1), 0);
	assert_int_equal(pspace_npy_write(path("J2.npy"), PSPACE_F64, 3, s2, J2), 0);
	write_text("blayout.txt", blayout);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		assert_int_equal(fx_cli("build %s %s --kind %s --layout %s --jacobian %s --tile 8",
		                        st, kinds[i].kind, kinds[i].kind, path("blayout.txt"),
		                        path("J.npy")),
		                 0);
		fx_expect_stdout("d = 21, n = 30 examples x 2 outputs");
		check_built(st, kinds[i].kind, kinds[i].k, Fr, kinds[i].blocks, kinds[i].diag,
		            1e-6);
	}
	/* two files, concatenated along examples; f64 tiles are exact */
	assert_int_equal(fx_cli("build %s two --kind dense --layout %s --jacobian %s --jacobian "
	                        "%s --precision f64 --json",
	                        st, path("blayout.txt"), path("J1.npy"), path("J2.npy")),
	                 0);
	fx_expect_stdout("\"examples\":30");
	fx_expect_stdout("\"compression_ratio\":");
	check_built(st, "two", PSPACE_KIND_DENSE, Fr, 0, 0, 1e-12);
	/* the name exists now */
	assert_int_equal(fx_cli("build %s two --kind dense --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("J.npy")),
	                 1);
	fx_expect_stderr("'two'");
	free(J1);
	free(J2);
}

/* Layer tensors of the build layout: KFAC against its factors computed
 * here, BlockDiag against the per-example gradients g [a; 1]^T. */
static void test_cli_build_layers(void **state)
{
	enum { N = 12 };
	static const int outs[2] = {3, 2}, ins[2] = {4, 3}, bias[2] = {1, 0};
	static const char *names[2] = {"l1", "l2"};
	double acts[2][N * 4], grads[2][BK * N * 3], A1[5 * 5], A2[3 * 3], G1[3 * 3], G2[2 * 2];
	double *A[2] = {A1, A2}, *Gf[2] = {G1, G2}, Kref[BD * BD], Bref[BD * BD], row[BD];
	pspace_layout *lay = NULL;
	char st[400], dir[400], file[500];

	(void)state;
	snprintf(st, sizeof(st), "%s", path("layers.store"));
	snprintf(dir, sizeof(dir), "%s", path("tensors"));
	assert_int_equal(mkdir(dir, 0700), 0);
	write_text("blayout.txt", blayout);
	memset(A1, 0, sizeof(A1));
	memset(A2, 0, sizeof(A2));
	memset(G1, 0, sizeof(G1));
	memset(G2, 0, sizeof(G2));
	memset(Bref, 0, sizeof(Bref));
	for (int l = 0; l < 2; l++) {
		uint64_t sa[2] = {N, (uint64_t)ins[l]}, sg[3] = {BK, N, (uint64_t)outs[l]};
		int a = ins[l] + bias[l];

		for (int i = 0; i < N * ins[l]; i++)
			acts[l][i] = randn();
		for (int i = 0; i < BK * N * outs[l]; i++)
			grads[l][i] = randn();
		snprintf(file, sizeof(file), "%s/%s.acts.npy", dir, names[l]);
		assert_int_equal(pspace_npy_write(file, PSPACE_F64, 2, sa, acts[l]), 0);
		snprintf(file, sizeof(file), "%s/%s.grads.npy", dir, names[l]);
		assert_int_equal(pspace_npy_write(file, PSPACE_F64, 3, sg, grads[l]), 0);
		for (int x = 0; x < N; x++)
			for (int j = 0; j < a; j++)
				for (int j2 = 0; j2 < a; j2++) {
					double u = j < ins[l] ? acts[l][x * ins[l] + j] : 1.0;
					double v = j2 < ins[l] ? acts[l][x * ins[l] + j2] : 1.0;
					A[l][j * a + j2] += u * v / N;
				}
		for (int k = 0; k < BK; k++)
			for (int x = 0; x < N; x++)
				for (int o = 0; o < outs[l]; o++)
					for (int o2 = 0; o2 < outs[l]; o2++)
						Gf[l][o * outs[l] + o2] +=
						    grads[l][(k * N + x) * outs[l] + o] *
						    grads[l][(k * N + x) * outs[l] + o2] / N;
	}
	assert_int_equal(pspace_layout_parse(&lay, blayout, "blayout"), 0);
	kref_dense(lay, A, Gf, 0, Kref);
	pspace_layout_free(lay);
	/* BlockDiag: the exact per-example gradients, layer by layer */
	for (int k = 0; k < BK; k++)
		for (int x = 0; x < N; x++) {
			int off = 0;
			for (int l = 0; l < 2; l++) {
				const double *g = grads[l] + (k * N + x) * outs[l];
				for (int o = 0; o < outs[l]; o++) {
					for (int j = 0; j < ins[l]; j++)
						row[off + o * ins[l] + j] =
						    g[o] * acts[l][x * ins[l] + j];
					if (bias[l])
						row[off + outs[l] * ins[l] + o] = g[o];
				}
				off += outs[l] * ins[l] + (bias[l] ? outs[l] : 0);
			}
			for (int i = 0; i < BD; i++)
				for (int j = 0; j < BD; j++)
					Bref[i * BD + j] += row[i] * row[j] / N;
		}
	assert_int_equal(fx_cli("build %s k --kind kfac --layout %s --layer-tensors %s", st,
	                        path("blayout.txt"), dir),
	                 0);
	fx_expect_stdout("n = 12 examples x 2 outputs");
	check_built(st, "k", PSPACE_KIND_KFAC, Kref, 0, 0, 1e-10);
	assert_int_equal(fx_cli("build %s b --kind blockdiag --layout %s --layer-tensors %s "
	                        "--precision f64",
	                        st, path("blayout.txt"), dir),
	                 0);
	check_built(st, "b", PSPACE_KIND_BLOCKDIAG, Bref, 1, 0, 1e-10);
	/* a missing tensor file is named */
	snprintf(file, sizeof(file), "%s/l2.grads.npy", dir);
	assert_int_equal(unlink(file), 0);
	assert_int_equal(fx_cli("build %s c --kind kfac --layout %s --layer-tensors %s", st,
	                        path("blayout.txt"), dir),
	                 1);
	fx_expect_stderr("l2.grads.npy");
	assert_int_equal(store_count(st), 2);
}

static void test_cli_build_model(void **state)
{
	char st[400];
	pspace_refnet_opts ro;
	pspace_refnet *net = NULL;
	pspace_jac_source js;
	pspace_store *s = NULL;
	pspace_mat *m = NULL;
	uint64_t d;
	double *Jr, *Fr, *got, tr = 0;

	(void)state;
	snprintf(st, sizeof(st), "%s", path("model.store"));
	memset(&ro, 0, sizeof(ro));
	ro.spec = "mlp:6,5,3";
	ro.examples = 20;
	ro.variant = PSPACE_VARIANT_CLASSIF_LOGITS;
	ro.seed = 1;
	assert_int_equal(pspace_refnet_create(&net, &ro), 0);
	d = pspace_layout_dim(pspace_refnet_layout(net));
	assert_int_equal(d, 6 * 5 + 5 + 5 * 3 + 3);
	assert_int_equal(pspace_refnet_jacobian(&js, net), 0);
	Jr = malloc(sizeof(double) * js.outputs * js.examples * d);
	Fr = calloc(d * d, sizeof(double));
	got = malloc(sizeof(double) * d * d);
	assert_int_equal(js.read(js.ud, 0, js.examples, Jr, d), 0);
	for (uint64_t r = 0; r < js.outputs * js.examples; r++)
		for (uint64_t i = 0; i < d; i++)
			for (uint64_t j = 0; j < d; j++)
				Fr[i * d + j] += Jr[r * d + i] * Jr[r * d + j] / 20.0;

	static const char *kinds[] = {"kfac", "ekfac", "dense"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(fx_cli("build %s %s --kind %s --model mlp:6,5,3 --examples 20 "
		                        "--variant classif_logits --seed 1",
		                        st, kinds[i], kinds[i]),
		                 0);
		fx_expect_stdout("d = 53, n = 20 examples");
	}
	assert_int_equal(pspace_store_open(&s, st, NULL), 0);
	for (int i = 0; i < 3; i++) {
		pspace_kind k;
		assert_int_equal(pspace_mat_open(&m, s, kinds[i]), 0);
		assert_int_equal(pspace_kind_parse(&k, kinds[i]), 0);
		assert_int_equal(pspace_mat_kind(m), k);
		assert_int_equal(pspace_mat_dim(m), d);
		assert_true(pspace_layout_equal(pspace_mat_layout(m), pspace_refnet_layout(net)));
		if (i == 2) {
			assert_int_equal(pspace_mat_dense(m, NULL, got, d), 0);
			for (uint64_t p = 0; p < d; p++)
				tr += got[p * d + p];
			assert_true(tr > 0);
			for (uint64_t p = 0; p < d; p++)
				for (uint64_t q = 0; q < d; q++)
					assert_true(got[p * d + q] == got[q * d + p]);
			assert_true(fx_relerr(got, Fr, d * d) < 1e-6);
		}
		pspace_mat_free(m);
	}
	pspace_store_close(s);
	/* a layout file that is not the network's */
	write_text("other.txt", "fc1 linear 5x6 bias\n");
	assert_int_equal(fx_cli("build %s bad --kind dense --model mlp:6,5,3 --examples 20 "
	                        "--layout %s",
	                        st, path("other.txt")),
	                 1);
	fx_expect_stderr(path("other.txt"));
	assert_int_equal(store_count(st), 3);
	free(got);
	free(Fr);
	free(Jr);
	pspace_refnet_free(net);
}

static void test_cli_build_malformed(void **state)
{
	char st[400];
	static const char fortran[] =
	    "{'descr': '<f8', 'fortran_order': True, 'shape': (30, 21), }";
	double J[30 * 21], *J20 = calloc(30 * 20, sizeof(double));
	uint64_t shape[2] = {30, 21}, shape20[2] = {30, 20};
	char hdr[128];
	FILE *f;
	int before;

	(void)state;
	snprintf(st, sizeof(st), "%s", path("bad.store"));
	for (int i = 0; i < 30 * 21; i++)
		J[i] = randn();
	write_text("blayout.txt", blayout);
	/* a store holding one matrix already */
	assert_int_equal(pspace_npy_write(path("ok.npy"), PSPACE_F64, 2, shape, J), 0);
	assert_int_equal(fx_cli("build %s ok --kind diag --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("ok.npy")),
	                 0);
	before = store_count(st);
	assert_int_equal(before, 1);

	/* Fortran order, header written by hand */
	memset(hdr, ' ', sizeof(hdr));
	memcpy(hdr, "\x93NUMPY\x01\x00", 8);
	hdr[8] = 118;
	hdr[9] = 0;
	memcpy(hdr + 10, fortran, strlen(fortran));
	hdr[127] = '\n';
	f = fopen(path("fortran.npy"), "wb");
	assert_int_equal(fwrite(hdr, 1, 128, f), 128);
	assert_int_equal(fwrite(J, sizeof(double), 30 * 21, f), 30 * 21);
	fclose(f);
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("fortran.npy")),
	                 1);
	fx_expect_stderr(path("fortran.npy"));
	fx_expect_stderr("pspace: build: ");

	/* truncated: the header promises 30 x 21 doubles */
	assert_int_equal(truncate(path("ok.npy"), 128 + 8 * 100), 0);
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("ok.npy")),
	                 1);
	fx_expect_stderr(path("ok.npy"));

	/* d = 20 for a layout of 21 */
	assert_int_equal(pspace_npy_write(path("d20.npy"), PSPACE_F64, 2, shape20, J20), 0);
	assert_int_equal(fx_cli("build %s m --kind blockdiag --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("d20.npy")),
	                 1);
	fx_expect_stderr(path("d20.npy"));

	/* a layout file with a bad line */
	write_text("badlayout.txt", "l1 linear 3x4 bias\nl2 lineer 2x3 nobias\n");
	assert_int_equal(fx_cli("build %s m --kind dense --layout %s --jacobian %s", st,
	                        path("badlayout.txt"), path("J.npy")),
	                 1);
	fx_expect_stderr("badlayout.txt:2");

	/* usage errors */
	assert_int_equal(
	    fx_cli("build %s m --layout %s --jacobian %s", st, path("blayout.txt"), path("J.npy")),
	    2);
	fx_expect_stderr("--kind");
	assert_int_equal(fx_cli("build %s m --kind dense --model mlp:6,5,3 --examples 5 "
	                        "--jacobian %s",
	                        st, path("J.npy")),
	                 2);
	assert_int_equal(fx_cli("build %s m --kind sparse --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("J.npy")),
	                 2);
	assert_int_equal(fx_cli("build %s m --kind kfac --layout %s --jacobian %s", st,
	                        path("blayout.txt"), path("J.npy")),
	                 1);
	fx_expect_stderr("layer tensors");
	assert_int_equal(fx_cli("build --help"), 0);
	fx_expect_stdout("mixed:SPEC");

	/* none of the failures added a matrix */
	assert_int_equal(store_count(st), before);
	free(J20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_build_jacobian),
	    cmocka_unit_test(test_cli_build_layers),
	    cmocka_unit_test(test_cli_build_model),
	    cmocka_unit_test(test_cli_build_malformed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
