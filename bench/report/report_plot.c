/*
 * report_plot - draws bench/run.sh's plot into a PNG with libpng: lines of
 * y against x on log-log axes, one colour per series, dashed horizontal and
 * vertical reference lines, ticks, grid and a legend, lettered in a small
 * built-in 5 x 7 bitmap font (8 rows with the descenders).
 *
 * usage: report_plot IN.tsv OUT.png
 *
 * IN.tsv has one item per line, fields separated by tabs:
 *   title   TEXT
 *   xlabel  TEXT
 *   ylabel  TEXT
 *   series  NAME  X Y [X Y ...]    a line with markers (points with Y <= 0 are skipped)
 *   hline   NAME  Y                a dashed horizontal reference line
 *   vline   NAME  X                a dashed vertical reference line
 * x ticks are at the x values of the series, y ticks at 1, 2, 5 x 10^n.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG         "report_plot"
#define WIDTH        1200
#define HEIGHT       680
#define SCALE        2 /* font pixels per glyph pixel */
#define GLYPH_W      5
#define GLYPH_H      8
#define ADVANCE      ((GLYPH_W + 1) * SCALE)
#define MAX_ITEMS    32
#define MAX_POINTS   64
#define TSV_LINE_MAX 4096

/* Glyph rows for ' ' .. '~', the top row first, bit 4 = leftmost pixel; row 7 holds
 * descenders. */
static const unsigned char font[95][GLYPH_H] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /*   */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00}, /* ! */
    {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* " */
    {0x0a, 0x1f, 0x0a, 0x0a, 0x1f, 0x0a, 0x00, 0x00}, /* # */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00}, /* $ */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00}, /* % */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00}, /* & */
    {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00}, /* ) */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00}, /*   */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}, /* , */
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00}, /* . */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00}, /*   */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00}, /* 0 */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, /* 1 */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00}, /* 2 */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00}, /* 3 */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00}, /* 4 */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00}, /* 5 */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00}, /* 6 */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00}, /* 7 */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00}, /* 8 */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00}, /* 9 */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00}, /* : */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08, 0x00}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00}, /* < */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00}, /* > */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00}, /* ? */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e, 0x00}, /* @ */
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00}, /* A */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00}, /* B */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00}, /* C */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00}, /* D */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00}, /* E */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00}, /* F */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00}, /* G */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00}, /* H */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00}, /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00}, /* L */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00}, /* N */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00}, /* O */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00}, /* P */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00}, /* Q */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00}, /* R */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00}, /* S */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00}, /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00}, /* W */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00}, /* X */
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00}, /* Y */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00}, /* Z */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00}, /* [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00}, /*   */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00}, /* ] */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00}, /* _ */
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ` */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00}, /* b */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00}, /* c */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00}, /* d */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00}, /* e */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00}, /* f */
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* h */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00}, /* k */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00}, /* l */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11, 0x00}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* n */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00}, /* o */
    {0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10}, /* p */
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01}, /* q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00}, /* r */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e, 0x00}, /* s */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00}, /* w */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00}, /* x */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* y */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00}, /* z */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00}, /* ~ */
};

struct item {
	char kind; /* 's' series, 'h' hline, 'v' vline */
	char name[128];
	int n;
	double x[MAX_POINTS], y[MAX_POINTS];
};

struct plot {
	char title[256], xlabel[256], ylabel[256];
	struct item it[MAX_ITEMS];
	int n;
	unsigned char *px; /* WIDTH x HEIGHT RGB */
	int left, right, top, bottom;
	double x0, x1, y0, y1; /* log10 of the axis ranges */
};

typedef struct rgb {
	unsigned char r, g, b;
} rgb;

static const rgb palette[] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                              {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {23, 190, 207},
                              {188, 189, 34},  {127, 127, 127}};
static const rgb black = {0, 0, 0}, grid = {225, 225, 225}, white = {255, 255, 255};

/* ---- pixels, lines, text ------------------------------------------------------ */

static void dot(struct plot *p, int x, int y, rgb c)
{
	unsigned char *q;

	if (x < 0 || y < 0 || x >= WIDTH || y >= HEIGHT)
		return;
	q = p->px + ((size_t)y * WIDTH + (size_t)x) * 3;
	q[0] = c.r;
	q[1] = c.g;
	q[2] = c.b;
}

static void box(struct plot *p, int x0, int y0, int x1, int y1, rgb c)
{
	for (int y = y0; y <= y1; y++)
		for (int x = x0; x <= x1; x++)
			dot(p, x, y, c);
}

/* A line @p w pixels thick; with @p dash > 0, drawn @p dash pixels on, @p dash off. */
static void line(struct plot *p, double xa, double ya, double xb, double yb, int w, int dash, rgb c)
{
	double len = hypot(xb - xa, yb - ya);
	int steps = (int)ceil(len * 2) + 1;

	for (int i = 0; i <= steps; i++) {
		double t = (double)i / steps;
		int x = (int)lround(xa + t * (xb - xa)), y = (int)lround(ya + t * (yb - ya));

		if (dash > 0 && ((int)(t * len) / dash) % 2 == 1)
			continue;
		box(p, x - w / 2, y - w / 2, x - w / 2 + w - 1, y - w / 2 + w - 1, c);
	}
}

static int text_width(const char *s)
{
	return (int)strlen(s) * ADVANCE - SCALE;
}

/* Text with its top-left corner at (x, y); @p up: rotated 90 degrees counterclockwise,
 * (x, y) then being the bottom-left corner. */
static void text(struct plot *p, int x, int y, const char *s, rgb c, int up)
{
	for (; *s; s++, up ? (y -= ADVANCE) : (x += ADVANCE)) {
		unsigned char ch = (unsigned char)*s;
		const unsigned char *g = font[ch >= 32 && ch < 127 ? ch - 32 : '?' - 32];

		for (int r = 0; r < GLYPH_H; r++)
			for (int col = 0; col < GLYPH_W; col++) {
				int gx, gy;

				if (!(g[r] >> (GLYPH_W - 1 - col) & 1))
					continue;
				gx = up ? x + r * SCALE : x + col * SCALE;
				gy = up ? y - (col + 1) * SCALE + 1 : y + r * SCALE;
				box(p, gx, gy, gx + SCALE - 1, gy + SCALE - 1, c);
			}
	}
}

/* ---- input ------------------------------------------------------------------- */

static int parse(struct plot *p, FILE *f)
{
	char buf[TSV_LINE_MAX];
	int lineno = 0;

	while (fgets(buf, sizeof(buf), f)) {
		char *kind, *name, *rest, *save = NULL;
		struct item *it;

		lineno++;
		buf[strcspn(buf, "\r\n")] = '\0';
		kind = strtok_r(buf, "\t", &save);
		if (!kind || kind[0] == '#')
			continue;
		name = strtok_r(NULL, "\t", &save);
		if (!name) {
			fprintf(stderr, PROG ": line %d: no value\n", lineno);
			return -1;
		}
		if (strcmp(kind, "title") == 0 || strcmp(kind, "xlabel") == 0 ||
		    strcmp(kind, "ylabel") == 0) {
			snprintf(kind[0] == 't'   ? p->title
			         : kind[0] == 'x' ? p->xlabel
			                          : p->ylabel,
			         sizeof(p->title), "%s", name);
			continue;
		}
		if (p->n == MAX_ITEMS ||
		    (strcmp(kind, "series") != 0 && strcmp(kind, "hline") != 0 &&
		     strcmp(kind, "vline") != 0)) {
			fprintf(stderr, PROG ": line %d: unknown item or too many\n", lineno);
			return -1;
		}
		it = &p->it[p->n++];
		it->kind = kind[0];
		snprintf(it->name, sizeof(it->name), "%s", name);
		rest = strtok_r(NULL, "", &save);
		while (rest && it->n < MAX_POINTS) {
			char *end;
			double a = strtod(rest, &end), b = 0;

			if (end == rest)
				break;
			rest = end;
			if (it->kind == 's') {
				b = strtod(rest, &end);
				if (end == rest)
					break;
				rest = end;
			}
			it->x[it->n] = it->kind == 'h' ? 0 : a;
			it->y[it->n] = it->kind == 'h' ? a : b;
			if (a > 0 && (it->kind != 's' || b > 0))
				it->n++;
		}
		if (it->n == 0)
			p->n--; /* nothing to draw */
	}
	return 0;
}

/* ---- the plot ---------------------------------------------------------------- */

static double px_x(const struct plot *p, double x)
{
	return p->left + (log10(x) - p->x0) / (p->x1 - p->x0) * (p->right - p->left);
}

static double px_y(const struct plot *p, double y)
{
	return p->bottom - (log10(y) - p->y0) / (p->y1 - p->y0) * (p->bottom - p->top);
}

static void ranges(struct plot *p)
{
	double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;

	for (int i = 0; i < p->n; i++)
		for (int j = 0; j < p->it[i].n; j++) {
			const struct item *it = &p->it[i];

			if (it->kind != 'h') {
				xmin = fmin(xmin, it->x[j]);
				xmax = fmax(xmax, it->x[j]);
			}
			if (it->kind != 'v') {
				ymin = fmin(ymin, it->y[j]);
				ymax = fmax(ymax, it->y[j]);
			}
		}
	if (!isfinite(xmin)) {
		xmin = 1;
		xmax = 10;
	}
	if (!isfinite(ymin)) {
		ymin = 1;
		ymax = 10;
	}
	p->x0 = log10(xmin) - 0.08 * fmax(log10(xmax / xmin), 0.5);
	p->x1 = log10(xmax) + 0.08 * fmax(log10(xmax / xmin), 0.5);
	p->y0 = log10(ymin) - 0.1 * fmax(log10(ymax / ymin), 0.5);
	p->y1 = log10(ymax) + 0.1 * fmax(log10(ymax / ymin), 0.5);
}

static void axes(struct plot *p)
{
	char lab[64];

	/* y ticks: 1, 2, 5 x 10^n inside the range */
	for (int e = (int)floor(p->y0) - 1; e <= (int)ceil(p->y1); e++)
		for (int m = 0; m < 3; m++) {
			double v = (m == 0 ? 1 : m == 1 ? 2 : 5) * pow(10, e);
			int y;

			if (log10(v) < p->y0 || log10(v) > p->y1)
				continue;
			y = (int)lround(px_y(p, v));
			line(p, p->left, y, p->right, y, 1, 0, grid);
			line(p, p->left - 6, y, p->left, y, 2, 0, black);
			snprintf(lab, sizeof(lab), "%g", v);
			text(p, p->left - 10 - text_width(lab), y - GLYPH_H * SCALE / 2, lab, black,
			     0);
		}
	/* x ticks: every x value of the series */
	for (int i = 0; i < p->n; i++)
		for (int j = 0; p->it[i].kind == 's' && j < p->it[i].n; j++) {
			int x = (int)lround(px_x(p, p->it[i].x[j]));

			line(p, x, p->top, x, p->bottom, 1, 0, grid);
			line(p, x, p->bottom, x, p->bottom + 6, 2, 0, black);
			snprintf(lab, sizeof(lab), "%g", p->it[i].x[j]);
			text(p, x - text_width(lab) / 2, p->bottom + 12, lab, black, 0);
		}
	line(p, p->left, p->top, p->left, p->bottom, 2, 0, black);
	line(p, p->left, p->bottom, p->right, p->bottom, 2, 0, black);
	line(p, p->right, p->top, p->right, p->bottom, 1, 0, black);
	line(p, p->left, p->top, p->right, p->top, 1, 0, black);
	text(p, (p->left + p->right - text_width(p->title)) / 2, 14, p->title, black, 0);
	text(p, (p->left + p->right - text_width(p->xlabel)) / 2, p->bottom + 40, p->xlabel, black,
	     0);
	text(p, 14, (p->top + p->bottom + text_width(p->ylabel)) / 2, p->ylabel, black, 1);
}

static void draw(struct plot *p)
{
	int ly = p->top + 4, ci = 0;

	for (int i = 0; i < p->n; i++) {
		const struct item *it = &p->it[i];
		rgb c = palette[ci++ % (int)(sizeof(palette) / sizeof(palette[0]))];
		int lx = p->right + 20;

		if (it->kind == 's') {
			for (int j = 0; j + 1 < it->n; j++)
				line(p, px_x(p, it->x[j]), px_y(p, it->y[j]), px_x(p, it->x[j + 1]),
				     px_y(p, it->y[j + 1]), 3, 0, c);
			for (int j = 0; j < it->n; j++) {
				int x = (int)lround(px_x(p, it->x[j])),
				    y = (int)lround(px_y(p, it->y[j]));

				box(p, x - 4, y - 4, x + 4, y + 4, c);
			}
			line(p, lx, ly + 7, lx + 30, ly + 7, 3, 0, c);
			box(p, lx + 11, ly + 3, lx + 19, ly + 11, c);
		} else if (it->kind == 'h') {
			double y = px_y(p, it->y[0]);

			line(p, p->left, y, p->right, y, 2, 8, c);
			line(p, lx, ly + 7, lx + 30, ly + 7, 2, 8, c);
		} else {
			double x = px_x(p, it->x[0]);

			line(p, x, p->top, x, p->bottom, 2, 8, c);
			line(p, lx, ly + 7, lx + 30, ly + 7, 2, 8, c);
		}
		text(p, lx + 38, ly + 1, it->name, black, 0);
		ly += 26;
	}
}

static int write_png(const struct plot *p, const char *path)
{
	FILE *f = fopen(path, "wb");
	png_structp png = NULL;
	png_infop info = NULL;
	int rc = -1;

	if (!f) {
		perror(path);
		return -1;
	}
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	info = png ? png_create_info_struct(png) : NULL;
	if (!png || !info)
		goto out;
	if (setjmp(png_jmpbuf(png)))
		goto out;
	png_init_io(png, f);
	png_set_IHDR(png, info, WIDTH, HEIGHT, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
	             PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < HEIGHT; y++)
		png_write_row(png, p->px + (size_t)y * WIDTH * 3);
	png_write_end(png, NULL);
	rc = 0;
out:
	png_destroy_write_struct(&png, &info);
	if (fclose(f) != 0)
		rc = -1;
	if (rc != 0)
		fprintf(stderr, PROG ": cannot write %s\n", path);
	return rc;
}

int main(int argc, char **argv)
{
	struct plot *p = calloc(1, sizeof(*p));
	FILE *in = NULL;
	int rc = 1, longest = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: " PROG " IN.tsv OUT.png\n");
		rc = 2;
		goto out;
	}
	in = fopen(argv[1], "r");
	if (!p || !in || parse(p, in) != 0) {
		if (!in)
			perror(argv[1]);
		goto out;
	}
	p->px = malloc((size_t)WIDTH * HEIGHT * 3);
	if (!p->px)
		goto out;
	box(p, 0, 0, WIDTH - 1, HEIGHT - 1, white);
	for (int i = 0; i < p->n; i++)
		longest = text_width(p->it[i].name) > longest ? text_width(p->it[i].name) : longest;
	p->left = 100;
	p->top = 44;
	p->bottom = HEIGHT - 70;
	p->right = WIDTH - 70 - longest;
	ranges(p);
	axes(p);
	draw(p);
	rc = write_png(p, argv[2]) == 0 ? 0 : 1;
out:
	if (in)
		fclose(in);
	if (p)
		free(p->px);
	free(p);
	return rc;
}
