/* Write a Fisher matrix into a store, then solve with a lazy expression. */
#include <pspace.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                                \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		if (rc_) {                                                                         \
			fprintf(stderr, "%s: %s\n", pspace_strerror(rc_), pspace_errdetail());     \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "example.store";
	enum { D = 300, N = 40 };
	static double J[N * D], F[D * D], x[D], y[D], z[D];
	pspace_store *s;
	pspace_mat *f;
	pspace_op *leaf, *twice, *shift, *expr;
	double tr;

	/* F = J^T J / n from n per-example gradients */
	pspace_vec_randn(N * D, 1, J);
	for (int i = 0; i < D; i++)
		for (int j = 0; j < D; j++) {
			double acc = 0;
			for (int e = 0; e < N; e++)
				acc += J[e * D + i] * J[e * D + j];
			F[i * D + j] = acc / N;
		}

	CHECK(pspace_store_open(&s, path, NULL));
	pspace_store_remove(s, "F"); /* start afresh */
	CHECK(pspace_dense_write(s, "F", NULL, D, F, D, NULL));
	CHECK(pspace_mat_open(&f, s, "F"));

	/* 2 F + 0.1 I: nothing is read until a result is asked for */
	CHECK(pspace_op_mat(&leaf, f));
	CHECK(pspace_op_scale(&twice, 2.0, leaf));
	CHECK(pspace_op_identity(&shift, D, 0.1));
	CHECK(pspace_op_add(&expr, twice, shift));

	pspace_vec_randn(D, 2, x);
	CHECK(pspace_op_trace(expr, NULL, NULL, &tr));
	CHECK(pspace_op_solve(expr, NULL, 0.0, 1, x, D, NULL, y, D)); /* y = expr^-1 x */
	CHECK(pspace_op_mv(expr, NULL, y, z));                        /* z = expr y = x */
	pspace_vec_axpy(D, -1.0, x, z);
	printf("trace %.6g, solve residual %.2e\n", tr,
	       pspace_vec_nrm2(D, z) / pspace_vec_nrm2(D, x));

	pspace_op_free(expr);
	pspace_op_free(shift);
	pspace_op_free(twice);
	pspace_op_free(leaf);
	pspace_mat_free(f);
	pspace_store_close(s);
	return 0;
}
