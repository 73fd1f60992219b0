/*
 * fuzz_expr: any text as a `pspace eval` expression over a small store
 * made once per process (Dense F, Diag G, KFAC K, Mixed M with parts
 * M/fc1 (d = 8) and M/fc2 (d = 6), the others of d = 14). The tool's
 * parser (tools/expr_parse.c) either refuses the text with a message or
 * builds a lazy operator of one of these dimensions; nothing is evaluated.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "expr_parse.h"
#include "fuzz_util.h"
#include "pspace/refnet.h"

#define FUZZ_D 14

static pspace_store *store;

static void build(pspace_refnet *net, const char *name, pspace_kind kind, const char *mixed)
{
	pspace_build_opts o;
	pspace_layer_source src;

	pspace_build_opts_default(&o);
	o.kind = kind;
	o.mixed = mixed;
	o.exec.threads = 1;
	if (pspace_refnet_layers(&src, net) != 0 ||
	    pspace_build_layers(store, name, pspace_refnet_layout(net), &src, &o) != 0)
		abort();
}

static void make_store(void)
{
	pspace_refnet_opts ro = {"mlp:3,2,2", NULL, 16, PSPACE_VARIANT_CLASSIF_LOGITS, 0, 5, 0};
	pspace_store_opts so;
	pspace_refnet *net = NULL;
	char path[96];

	snprintf(path, sizeof(path), "%s/s", fuzz_dir());
	pspace_store_opts_default(&so);
	so.nosync = 1;
	if (pspace_store_open(&store, path, &so) != 0 || pspace_refnet_create(&net, &ro) != 0)
		abort();
	build(net, "F", PSPACE_KIND_DENSE, NULL);
	build(net, "G", PSPACE_KIND_DIAG, NULL);
	build(net, "K", PSPACE_KIND_KFAC, NULL);
	build(net, "M", PSPACE_KIND_MIXED, "fc1=kfac;*=diag");
	pspace_refnet_free(net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pspace_op *op = NULL;
	char *text;
	int rc;

	if (!store)
		make_store();
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	rc = expr_build("eval", text, store, &op);
	if ((rc == EXIT_OK) != (op != NULL) ||
	    (op &&
	     (pspace_op_dim(op) != FUZZ_D && pspace_op_dim(op) != 8 && pspace_op_dim(op) != 6)))
		abort();
	pspace_op_free(op);
	free(text);
	return 0;
}
