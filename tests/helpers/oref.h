/*
 * Test helper for the lazy operator tests (test_op.c, test_op_eval.c,
 * test_op_solve.c): two Gram matrices F (rank-deficient) and G (full
 * rank) of dimension OREF_D, their float64 dense references computed once
 * per program, and a fresh store per test holding both as Dense (f32
 * tiles of edge OREF_TILE) with an operator node on each.
 */
#ifndef PSPACE_TESTS_OREF_H
#define PSPACE_TESTS_OREF_H

#include "fixture.h"
#include "pspace/mat.h"
#include "pspace/op.h"
#include "pspace/store.h"

#define OREF_D     700 /* not a multiple of the tile edge */
#define OREF_TILE  128
#define OREF_NT    ((OREF_D + OREF_TILE - 1) / OREF_TILE)
#define OREF_TILES (OREF_NT * (OREF_NT + 1) / 2) /* stored tiles of one symmetric matrix */

/** One test's store with F and G; RF and RG are the program's references (not owned). */
typedef struct oref {
	fx_store st;
	const double *RF; /**< F = J1^T J1 / 50, J1 50 x d: rank-deficient */
	const double *RG; /**< G = J2^T J2 / 900, J2 900 x d: full rank */
	pspace_mat *F, *G;
	pspace_op *oF, *oG;
} oref;

/** cmocka group setup: computes the references of F and G. @return 0. */
int oref_group_setup(void **state);
/** cmocka group teardown: frees them. @return 0. */
int oref_group_teardown(void **state);

/** cmocka setup: an oref (in *state) with F and G written and opened. @return 0. */
int oref_setup(void **state);
/** cmocka teardown: frees the nodes, matrices and store of *state. @return 0. */
int oref_teardown(void **state);

/** The write options of F and G: defaults with tile edge OREF_TILE. */
void oref_write_opts(pspace_write_opts *o);

/** E = 2F - 0.5G + 1e-3 I built from the leaves of @p x (caller frees). */
pspace_op *oref_expr(const oref *x);

/** The dense reference of oref_expr() (d x d, malloc'd; caller frees). */
double *oref_expr_dense(const oref *x);

#endif
