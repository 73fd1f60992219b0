/*
 * The store the CLI tests of the inspection commands (test_cli_inspect)
 * and of export (test_cli_export) read: five matrices of one small layout
 * written with the library, and their float64 references.
 */
#ifndef PSPACE_TESTS_CLISTORE_H
#define PSPACE_TESTS_CLISTORE_H

/** fc1 linear 4x3 bias (16 parameters), fc2 linear 2x4 nobias (8). */
extern const char clistore_layout_text[];

#define CLISTORE_D    24
#define CLISTORE_TILE 8

/** The references of the matrices in the store, by name. */
typedef struct clistore_refs {
	double dense[CLISTORE_D * CLISTORE_D]; /**< "dense": random SPD, f32 tiles */
	double bd[CLISTORE_D * CLISTORE_D];    /**< "bd": BlockDiag, one SPD block per layer */
	double kfac[CLISTORE_D * CLISTORE_D];  /**< "kfac", and "ekfac" (its EKFAC, not updated) */
	double diag[CLISTORE_D];               /**< "diag" */
	/** The KFAC factors A.fc1, G.fc1, A.fc2 (4 x 4 each) and G.fc2 (2 x 2). */
	double A1[16], G1[16], A2[16], G2[4];
} clistore_refs;

/**
 * Makes the store at @p path (which must not exist) holding dense, bd,
 * kfac, ekfac and diag, and fills @p r. For a cmocka group setup.
 * @return 0, or -1 with a message on stderr.
 */
int clistore_make(const char *path, clistore_refs *r);

#endif
