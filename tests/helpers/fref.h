/*
 * Test helper for the resident representations: float64 dense references
 * computed here (plain loops and LAPACK's dgesv / dsyev on the dense
 * reference), independent of the code under test. The fref_check_*
 * functions compare every operation of a matrix against its dense
 * reference F and assert (cmocka) on mismatch.
 */
#ifndef PSPACE_TESTS_FREF_H
#define PSPACE_TESTS_FREF_H

#include <stddef.h>
#include <stdint.h>

#include "fixture.h"
#include "pspace/mat.h"

/** F = J^T J / n + shift I (d x d, malloc'd), J n x d from fx_randv(n d, @p seed). */
double *fref_gram(size_t d, size_t n, double shift, uint64_t seed);
/** F = (1/n) R^T R (d x d, malloc'd) for @p m rows R (m, d). */
double *fref_rows_gram(const double *R, size_t m, size_t d, double n);
/** ||a|| (Euclidean, over @p n entries). */
double fref_norm(const double *a, size_t n);
/** ||a - b|| (Euclidean, over @p n entries). */
double fref_dist(const double *a, const double *b, size_t n);
/** The dense form (d x d, malloc'd) of the stored matrix @p name of @p s (asserts its dimension).
 */
double *fref_stored_dense(pspace_store *s, const char *name, size_t d);
/** Relative Frobenius error of the stored matrix @p name against @p F (d x d). */
double fref_stored_relerr(pspace_store *s, const char *name, const double *F, size_t d);
/** Y = F X for k vectors ((k, d) row-major, ld d). */
void fref_mm(const double *F, size_t d, size_t k, const double *X, double *Y);
/** X = (F + l I)^-1 B by LU with partial pivoting (LAPACKE_dgesv) on a copy. */
void fref_solve(const double *F, size_t d, double l, size_t k, const double *B, double *X);
/** All eigenvalues of symmetric F, decreasing; V (optional) gets the eigenvectors as rows. */
void fref_eigh(const double *F, size_t d, double *w, double *V);
/** P = (F + l I)^p through the eigendecomposition (eigenvalues <= 0 map to 0 when p > 0). */
void fref_pow(const double *F, size_t d, double p, double l, double *P);
/** P = pseudo-inverse of F, eigenvalues <= max(thr, tiny) dropped. */
void fref_pinv(const double *F, size_t d, double thr, double *P);

/**
 * Checks mm (k = 1, 3, with ld > d and accumulation), mv, vTMv, batched
 * vTMv, trace, diag, Frobenius norm and dense of @p m against F, and
 * mm's gemm contract (fref_check_gemm).
 */
void fref_check_ops(pspace_mat *m, const double *F, size_t d, double tol);
/**
 * Checks pspace_mat_mm's gemm contract Y = alpha M X + beta Y against F for
 * several (alpha, beta), with ld > d: beta = 0 ignores NaN in Y, alpha = 0
 * gives beta Y exactly, and the padding of Y is never written.
 */
void fref_check_gemm(pspace_mat *m, const double *F, size_t d, double tol);
/** Checks that pspace_mat_dense of @p m is F within relative Frobenius error @p tol. */
void fref_check_dense(pspace_mat *m, const double *F, size_t d, double tol);
/** Checks pspace_mat_solve with @p damping against fref_solve (k = 1 and 4). */
void fref_check_solve(pspace_mat *m, const double *F, size_t d, double damping, double tol);
/**
 * Checks eigvals against dsyev on F, and eig top-k (k = 1, kmax): values,
 * residuals ||F v - lambda v|| and orthonormality of the vectors.
 */
void fref_check_eig(pspace_mat *m, const double *F, size_t d, uint32_t kmax, double tol);
/**
 * Saves @p m as @p name, reopens the store (if @p reopen: not when @p m
 * refers to stored matrices of this handle), opens it and checks that mm,
 * vTMv, trace, Frobenius, diag, dense (and solve with @p damping if >= 0)
 * give bit-identical results. Returns the opened matrix (caller frees).
 */
pspace_mat *fref_check_roundtrip(pspace_mat *m, fx_store *t, const char *name, double damping,
                                 int reopen);
/**
 * Writes F as a stored Dense matrix @p name (f64 tiles), solves
 * (F + damping I) X = B by CG preconditioned with @p m, and checks the
 * result against the direct solve of the stored Dense. @return iterations.
 */
uint32_t fref_check_precond(pspace_mat *m, fx_store *t, const char *name, const double *F, size_t d,
                            double damping);

#endif
