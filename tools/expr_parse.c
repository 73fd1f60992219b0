/*
 * Expressions of `pspace eval` (see expr_parse.h): the text is parsed into
 * a small tree that remembers where each part came from, the matrices it
 * names are opened, then the tree is turned into pspace_op nodes, with
 * errors pointing at the part of the text they concern.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "expr_parse.h"

typedef enum enode_type {
	E_NUM,
	E_NAME,
	E_IDENT,
	E_NEG,
	E_ADD,
	E_SUB,
	E_MUL,
	E_DIV,
	E_POW
} enode_type;

typedef struct enode {
	enode_type type;
	size_t start, end; /* the node's text is [start, end) */
	double num;        /* E_NUM */
	char *name;        /* E_NAME, owned */
	struct enode *a, *b;
} enode;

/*
 * Limits that keep the recursive parser and the walks over its tree within
 * a small stack: nesting of parentheses and signs, and operands.
 */
#define EXPR_MAX_NESTING  100
#define EXPR_MAX_OPERANDS 1000

typedef struct parser {
	const char *cmd;
	const char *text;
	pspace_store *s; /* to tell a name with '/' from a division */
	size_t pos;
	int nesting;     /* open parentheses and signs */
	size_t operands; /* numbers, names and I so far */
	int failed;      /* an error was printed */
	int rc;
} parser;

/* Opened matrices, one per distinct name. */
typedef struct mat_cache {
	size_t n;
	char **names;
	pspace_mat **mats;
} mat_cache;

typedef struct value {
	int is_op;
	double s;
	pspace_op *op;
} value;

static void node_free(enode *e)
{
	if (!e)
		return;
	node_free(e->a);
	node_free(e->b);
	free(e->name);
	free(e);
}

static void syntax_error(parser *p, size_t at, const char *what);

/* Messages show at most the first CLIP characters of an expression or part, then "...". */
#define CLIP 60

static int clip(size_t n)
{
	return n > CLIP ? CLIP : (int)n;
}

static const char *more(size_t n)
{
	return n > CLIP ? "..." : "";
}

static enode *node_new(parser *p, enode_type type, size_t start)
{
	enode *e;

	if ((type == E_NUM || type == E_NAME || type == E_IDENT) &&
	    ++p->operands > EXPR_MAX_OPERANDS) {
		syntax_error(p, start,
		             "more than 1000 numbers and names (an expression is for a few "
		             "matrices; write long sums with the library, pspace/op.h)");
		return NULL;
	}
	e = calloc(1, sizeof(*e));

	if (!e && !p->failed) {
		p->failed = 1;
		p->rc = tool_fail(PSPACE_ENOMEM, "%s: parsing the expression", p->cmd);
	}
	if (e) {
		e->type = type;
		e->start = start;
		e->end = start;
	}
	return e;
}

static void syntax_error(parser *p, size_t at, const char *what)
{
	if (p->failed)
		return;
	p->failed = 1;
	p->rc =
	    tool_usage_error(p->cmd, "%s: syntax error at column %zu in '%.*s%s': %s", p->cmd,
	                     at + 1, clip(strlen(p->text)), p->text, more(strlen(p->text)), what);
}

static void skip_space(parser *p)
{
	while (isspace((unsigned char)p->text[p->pos]))
		p->pos++;
}

static int is_name_start(int c)
{
	return isalpha(c) || c == '_';
}

static int is_name_char(int c)
{
	return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '/';
}

static enode *parse_expr(parser *p);

static enode *parse_name(parser *p, size_t start, size_t from, size_t len, size_t end)
{
	enode *e = node_new(p, E_NAME, start);

	if (!e)
		return NULL;
	e->name = strndup(p->text + from, len);
	e->end = end;
	if (!e->name) {
		node_free(e);
		e = NULL;
		p->failed = 1;
		p->rc = tool_fail(PSPACE_ENOMEM, "%s: parsing the expression", p->cmd);
	}
	return e;
}

/*
 * The end of a name scanned as [start, end): with a '/', the longest of the
 * name and its prefixes before a '/' that names a stored matrix (Mixed
 * parts are "F/layer"), else the part before the first '/', which is then
 * a division ("F/2").
 */
static size_t name_end(const parser *p, size_t start, size_t end)
{
	const char *slash = memchr(p->text + start, '/', end - start);
	pspace_matrix_info info;
	char *name;

	if (!slash)
		return end;
	name = strndup(p->text + start, end - start);
	if (!name)
		return end; /* the whole name: an unknown one is reported later */
	for (size_t n = end - start; n > 0; n--) {
		if (n < end - start && name[n] != '/')
			continue;
		name[n] = '\0';
		if (pspace_matrix_info_get(&info, p->s, name) == 0) {
			free(name);
			return start + n;
		}
	}
	free(name);
	return (size_t)(slash - p->text);
}

static enode *parse_primary(parser *p)
{
	const char *t = p->text;
	size_t start;
	enode *e;

	skip_space(p);
	start = p->pos;
	if (isdigit((unsigned char)t[start]) ||
	    (t[start] == '.' && isdigit((unsigned char)t[start + 1]))) {
		char *end;
		double v;

		errno = 0;
		v = strtod(t + start, &end);
		if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) {
			syntax_error(p, start, "number beyond the range of a double");
			return NULL;
		}
		e = node_new(p, E_NUM, start);
		if (!e)
			return NULL;
		e->num = v;
		p->pos = (size_t)(end - t);
		e->end = p->pos;
		return e;
	}
	if (t[start] == '"') {
		const char *close = strchr(t + start + 1, '"');

		if (!close) {
			syntax_error(p, start, "unterminated quoted name");
			return NULL;
		}
		if (close == t + start + 1) {
			syntax_error(p, start, "empty quoted name");
			return NULL;
		}
		p->pos = (size_t)(close - t) + 1;
		return parse_name(p, start, start + 1, (size_t)(close - t) - start - 1, p->pos);
	}
	if (is_name_start((unsigned char)t[start])) {
		while (is_name_char((unsigned char)t[p->pos]))
			p->pos++;
		p->pos = name_end(p, start, p->pos);
		if (p->pos - start == 1 && t[start] == 'I') {
			e = node_new(p, E_IDENT, start);
			if (e)
				e->end = p->pos;
			return e;
		}
		return parse_name(p, start, start, p->pos - start, p->pos);
	}
	if (t[start] == '(') {
		p->pos++;
		e = parse_expr(p);
		if (!e)
			return NULL;
		skip_space(p);
		if (t[p->pos] != ')') {
			node_free(e);
			syntax_error(p, p->pos, "expected ')'");
			return NULL;
		}
		p->pos++;
		/* the parenthesized text, for messages */
		e->start = start;
		e->end = p->pos;
		return e;
	}
	syntax_error(p, start, "expected a name, number, I or '('");
	return NULL;
}

/* power := primary ('^' ['+' | '-'] NUMBER)*: the exponent of a matrix is -1, its inverse. */
static enode *parse_power(parser *p)
{
	enode *e = parse_primary(p), *x, *pw;

	while (e) {
		size_t at, from;

		skip_space(p);
		if (p->text[p->pos] != '^')
			break;
		at = p->pos++;
		skip_space(p);
		from = p->pos;
		if (p->text[p->pos] == '-' || p->text[p->pos] == '+')
			p->pos++;
		if (!isdigit((unsigned char)p->text[p->pos]) && p->text[p->pos] != '.') {
			node_free(e);
			syntax_error(p, from,
			             "expected a number after '^' (e.g. ^-1, the inverse)");
			return NULL;
		}
		x = parse_primary(p);
		if (x && p->text[from] == '-')
			x->num = -x->num;
		pw = x ? node_new(p, E_POW, at) : NULL;
		if (!pw) {
			node_free(x);
			node_free(e);
			return NULL;
		}
		pw->a = e;
		pw->b = x;
		pw->end = x->end;
		x->start = from;
		e = pw;
	}
	return e;
}

static enode *parse_unary(parser *p)
{
	size_t start;
	enode *e = NULL, *a;

	skip_space(p);
	start = p->pos;
	if (++p->nesting > EXPR_MAX_NESTING) {
		syntax_error(p, start, "nested deeper than 100 parentheses and signs");
		goto out;
	}
	if (p->text[start] == '+') {
		p->pos++;
		e = parse_unary(p);
		goto out;
	}
	if (p->text[start] != '-') {
		e = parse_power(p);
		goto out;
	}
	p->pos++;
	a = parse_unary(p);
	if (!a)
		goto out;
	e = node_new(p, E_NEG, start);
	if (!e) {
		node_free(a);
		goto out;
	}
	e->a = a;
	e->end = a->end;
out:
	p->nesting--;
	return e;
}

/* One level of left-associative binary operators. */
static enode *parse_binary(parser *p, enode *(*operand)(parser *), const char *ops, enode_type t1,
                           enode_type t2)
{
	enode *lhs = operand(p), *rhs, *e;

	while (lhs) {
		char c;
		size_t at;

		skip_space(p);
		c = p->text[p->pos];
		if (c == '\0' || !strchr(ops, c))
			break;
		at = p->pos++;
		rhs = operand(p);
		e = rhs ? node_new(p, c == ops[0] ? t1 : t2, at) : NULL;
		if (!e) {
			node_free(rhs);
			node_free(lhs);
			return NULL;
		}
		/* start = the operator's position, for messages about it */
		e->a = lhs;
		e->b = rhs;
		e->end = rhs->end;
		lhs = e;
	}
	return lhs;
}

static enode *parse_term(parser *p)
{
	return parse_binary(p, parse_unary, "*/", E_MUL, E_DIV);
}

static enode *parse_expr(parser *p)
{
	return parse_binary(p, parse_term, "+-", E_ADD, E_SUB);
}

/* ---- opening the matrices ---------------------------------------------------- */

static size_t span_start(const enode *e)
{
	return e->a && e->type != E_NEG ? span_start(e->a) : e->start;
}

static int open_names(parser *p, const enode *e, pspace_store *s, mat_cache *c)
{
	int rc;

	if (!e)
		return EXIT_OK;
	if (e->type != E_NAME) {
		rc = open_names(p, e->a, s, c);
		return rc ? rc : open_names(p, e->b, s, c);
	}
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->names[i], e->name) == 0)
			return EXIT_OK;
	char **nn = realloc(c->names, (c->n + 1) * sizeof(*nn));
	if (nn)
		c->names = nn;
	pspace_mat **nm = realloc(c->mats, (c->n + 1) * sizeof(*nm));
	if (nm)
		c->mats = nm;
	if (!nn || !nm)
		return tool_fail(PSPACE_ENOMEM, "%s: opening matrices", p->cmd);
	c->names[c->n] = e->name;
	rc = pspace_mat_open(&c->mats[c->n], s, e->name);
	if (rc == PSPACE_ENOTFOUND) {
		fprintf(stderr, "pspace: %s: store %s has no matrix '%s'\n", p->cmd,
		        pspace_store_path(s), e->name);
		return EXIT_RUNTIME;
	}
	if (rc)
		return tool_fail(rc, "%s: cannot open matrix '%s' of store %s", p->cmd, e->name,
		                 pspace_store_path(s));
	c->n++;
	return EXIT_OK;
}

static pspace_mat *cache_get(const mat_cache *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->names[i], name) == 0)
			return c->mats[i];
	return NULL;
}

/* ---- building the operator ---------------------------------------------------- */

typedef struct builder {
	parser *p;
	const mat_cache *c;
	uint64_t d;
} builder;

static int semantic_error(builder *b, size_t at, const char *what)
{
	size_t n = strlen(b->p->text);

	return tool_usage_error(b->p->cmd, "%s: at column %zu in '%.*s%s': %s", b->p->cmd, at + 1,
	                        clip(n), b->p->text, more(n), what);
}

static int dim_mismatch(builder *b, const enode *e, const value *x, const value *y)
{
	const char *t = b->p->text;
	size_t as = span_start(e->a), bs = span_start(e->b);

	fprintf(stderr,
	        "pspace: %s: dimension mismatch at column %zu in '%.*s%s': '%.*s%s' is %llu x %llu "
	        "but '%.*s%s' is %llu x %llu\n",
	        b->p->cmd, e->start + 1, clip(strlen(t)), t, more(strlen(t)), clip(e->a->end - as),
	        t + as, more(e->a->end - as), (unsigned long long)pspace_op_dim(x->op),
	        (unsigned long long)pspace_op_dim(x->op), clip(e->b->end - bs), t + bs,
	        more(e->b->end - bs), (unsigned long long)pspace_op_dim(y->op),
	        (unsigned long long)pspace_op_dim(y->op));
	return EXIT_RUNTIME;
}

static int build(builder *b, const enode *e, value *out)
{
	value x = {0, 0, NULL}, y = {0, 0, NULL};
	int rc = EXIT_OK, lrc = 0;

	memset(out, 0, sizeof(*out));
	switch (e->type) {
	case E_NUM: out->s = e->num; return EXIT_OK;
	case E_IDENT:
		if (b->d == 0)
			return semantic_error(b, e->start,
			                      "I needs a matrix in the expression to take its "
			                      "dimension from");
		out->is_op = 1;
		lrc = pspace_op_identity(&out->op, b->d, 1.0);
		break;
	case E_NAME:
		out->is_op = 1;
		lrc = pspace_op_mat(&out->op, cache_get(b->c, e->name));
		break;
	case E_NEG:
		rc = build(b, e->a, &x);
		if (rc)
			break;
		if (!x.is_op) {
			out->s = -x.s;
			break;
		}
		out->is_op = 1;
		lrc = pspace_op_scale(&out->op, -1.0, x.op);
		break;
	default:
		rc = build(b, e->a, &x);
		if (rc == EXIT_OK)
			rc = build(b, e->b, &y);
		if (rc)
			break;
		if (e->type == E_DIV && !y.is_op && y.s == 0.0) {
			rc = semantic_error(b, e->start, "division by zero");
			break;
		}
		if (!x.is_op && !y.is_op) {
			out->s = e->type == E_ADD   ? x.s + y.s
			         : e->type == E_SUB ? x.s - y.s
			         : e->type == E_MUL ? x.s * y.s
			         : e->type == E_DIV ? x.s / y.s
			                            : pow(x.s, y.s);
			if (!isfinite(out->s))
				rc = semantic_error(b, e->start,
				                    "the result is not a finite number");
			break;
		}
		out->is_op = 1;
		if (e->type == E_POW) {
			if (y.s != -1.0) {
				rc = semantic_error(b, e->start,
				                    "a matrix takes only the exponent -1 (its "
				                    "inverse)");
				break;
			}
			lrc = pspace_op_inverse(&out->op, x.op, 0.0, NULL);
		} else if (e->type == E_DIV) {
			if (y.is_op) {
				rc = semantic_error(b, e->start, "can only divide by a number");
				break;
			}
			lrc = pspace_op_scale(&out->op, 1.0 / y.s, x.op);
		} else if (e->type == E_MUL && (!x.is_op || !y.is_op)) {
			lrc = pspace_op_scale(&out->op, x.is_op ? y.s : x.s, x.is_op ? x.op : y.op);
		} else if (!x.is_op || !y.is_op) {
			rc = semantic_error(b, e->start,
			                    "cannot add a number and a matrix (write c*I for a "
			                    "multiple of the identity)");
		} else if (pspace_op_dim(x.op) != pspace_op_dim(y.op)) {
			rc = dim_mismatch(b, e, &x, &y);
		} else if (e->type == E_ADD) {
			lrc = pspace_op_add(&out->op, x.op, y.op);
		} else if (e->type == E_SUB) {
			lrc = pspace_op_sub(&out->op, x.op, y.op);
		} else {
			lrc = pspace_op_product(&out->op, x.op, y.op);
		}
		break;
	}
	if (lrc)
		rc =
		    tool_fail(lrc, "%s: building '%.*s%s'", b->p->cmd, clip(e->end - span_start(e)),
		              b->p->text + span_start(e), more(e->end - span_start(e)));
	pspace_op_free(x.op);
	pspace_op_free(y.op);
	if (rc) {
		pspace_op_free(out->op);
		out->op = NULL;
	}
	return rc;
}

int expr_build(const char *cmd, const char *text, pspace_store *s, pspace_op **out)
{
	parser p = {cmd, text, s, 0, 0, 0, 0, EXIT_OK};
	mat_cache c = {0, NULL, NULL};
	builder b = {&p, &c, 0};
	value v = {0, 0, NULL};
	enode *root;
	int rc;

	*out = NULL;
	root = parse_expr(&p);
	if (root) {
		skip_space(&p);
		if (text[p.pos] != '\0') {
			syntax_error(&p, p.pos,
			             text[p.pos] == ')'
			                 ? "unbalanced ')'"
			                 : "expected an operator (+ - * /) or the end");
		}
	}
	if (p.failed) {
		rc = p.rc;
		goto out;
	}
	rc = open_names(&p, root, s, &c);
	if (rc)
		goto out;
	if (c.n == 0) {
		rc = tool_usage_error(cmd, "%s: '%.*s%s' names no matrix", cmd, clip(strlen(text)),
		                      text, more(strlen(text)));
		goto out;
	}
	b.d = pspace_mat_dim(c.mats[0]);
	rc = build(&b, root, &v);
	if (rc == EXIT_OK)
		*out = v.op;
out:
	for (size_t i = 0; i < c.n; i++)
		pspace_mat_free(c.mats[i]);
	free(c.mats);
	free(c.names);
	node_free(root);
	return rc;
}
