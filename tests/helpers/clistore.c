/*
 * The store of the CLI inspection and export tests (see clistore.h).
 */
#include <stdio.h>
#include <string.h>

#include "clistore.h"
#include "kref.h"
#include "pspace.h"

#define D CLISTORE_D

const char clistore_layout_text[] = "fc1 linear 4x3 bias\nfc2 linear 2x4 nobias\n";

int clistore_make(const char *path, clistore_refs *r)
{
	pspace_store *s = NULL;
	pspace_layout *L = NULL;
	pspace_mat *k = NULL, *e = NULL, *dg = NULL;
	pspace_write_opts wo;
	double B1[16 * 16], B2[8 * 8];
	const double *blocks[2] = {B1, B2};
	double *As[2] = {r->A1, r->A2}, *Gs[2] = {r->G1, r->G2};
	int rc = -1;

	kref_spd(D, 101, 0.05, r->dense);
	kref_spd(16, 102, 0.05, B1);
	kref_spd(8, 103, 0.05, B2);
	memset(r->bd, 0, sizeof(r->bd));
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++)
			r->bd[i * D + j] = B1[i * 16 + j];
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 8; j++)
			r->bd[(16 + i) * D + 16 + j] = B2[i * 8 + j];
	kref_spd(4, 104, 0.05, r->A1);
	kref_spd(4, 105, 0.05, r->G1);
	kref_spd(4, 106, 0.05, r->A2);
	kref_spd(2, 107, 0.05, r->G2);
	for (int i = 0; i < D; i++)
		r->diag[i] = 0.5 + 0.25 * (i % 5);
	if (pspace_layout_parse(&L, clistore_layout_text, "test layout") != 0)
		goto out;
	kref_dense(L, As, Gs, 0, r->kfac);
	pspace_write_opts_default(&wo);
	wo.tile = CLISTORE_TILE;
	if (pspace_store_open(&s, path, NULL) != 0 ||
	    pspace_dense_write(s, "dense", L, D, r->dense, D, &wo) != 0 ||
	    pspace_blockdiag_write(s, "bd", L, blocks, &wo) != 0 ||
	    pspace_kfac_create(&k, L, (const double *const *)As, (const double *const *)Gs) != 0 ||
	    pspace_mat_save(k, s, "kfac") != 0 || pspace_ekfac_from_kfac(&e, k) != 0 ||
	    pspace_mat_save(e, s, "ekfac") != 0 || pspace_diag_create(&dg, L, r->diag) != 0 ||
	    pspace_mat_save(dg, s, "diag") != 0)
		goto out;
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "clistore %s: %s\n", path, pspace_errdetail());
	pspace_mat_free(dg);
	pspace_mat_free(e);
	pspace_mat_free(k);
	pspace_store_close(s);
	pspace_layout_free(L);
	return rc;
}
