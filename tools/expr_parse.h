/*
 * Expressions of `pspace eval`: a small recursive-descent parser turning
 * "2*F - G + 1e-3*I" into a lazy operator (pspace_op) over the matrices of
 * a store.
 *
 *	expr    := term (('+' | '-') term)*
 *	term    := unary (('*' | '/') unary)*
 *	unary   := ('-' | '+') unary | power
 *	power   := primary ('^' ['-' | '+'] NUMBER)*
 *	primary := NUMBER | NAME | "QUOTED NAME" | 'I' | '(' expr ')'
 *
 * NUMBER is C syntax (2, .5, 1e-3) and finite; NAME is
 * [A-Za-z_][A-Za-z0-9_.:/]* (other names in double quotes); a NAME with '/'
 * is the longest stored matrix name it starts with that ends before a '/'
 * or at its end ("F/fc1", a Mixed part), else the part before the first
 * '/', a division ("F/2"). I is the identity of the dimension of the
 * other operands. number * matrix scales, matrix * matrix is the product,
 * matrix / number scales by the inverse, matrix^-1 is the inverse (a
 * matrix takes no other exponent); a number cannot be added to a matrix
 * (write 2*I). Numbers computed from numbers must be finite, and division
 * by zero is an error. At most 1000 numbers and names and 100 nested
 * parentheses and signs (the parser recurses).
 */
#ifndef PSPACE_TOOLS_EXPR_PARSE_H
#define PSPACE_TOOLS_EXPR_PARSE_H

#include "pspace.h"

/**
 * Parses @p text and builds its operator over the matrices of store @p s
 * (opened by name, each once). Errors are printed as "pspace: <cmd>: ...":
 * syntax errors with their column (@return EXIT_USAGE), unknown matrices,
 * dimension mismatches naming both operands and store errors (@return
 * EXIT_RUNTIME). @return EXIT_OK with *out set (the caller frees it).
 */
int expr_build(const char *cmd, const char *text, pspace_store *s, pspace_op **out);

#endif
