/*
 * Prints the size of every public struct the Python package mirrors with
 * ctypes (tools/python/pspace/_lib.py) and the offset of each field, one
 * "struct.field offset" line each; tests/python/test_abi.py compares them
 * with the mirrors, which ctypes cannot check against the headers itself.
 */
#include <stddef.h>
#include <stdio.h>

#include "pspace.h"

#define SIZE(T)   printf("%s %zu\n", #T, sizeof(T))
#define OFF(T, f) printf("%s.%s %zu\n", #T, #f, offsetof(T, f))

int main(void)
{
	SIZE(pspace_exec);
	OFF(pspace_exec, mem_budget);
	SIZE(pspace_store_opts);
	OFF(pspace_store_opts, nosync);
	SIZE(pspace_codec_opts);
	OFF(pspace_codec_opts, min_ratio);
	SIZE(pspace_write_opts);
	OFF(pspace_write_opts, tile);
	SIZE(pspace_build_opts);
	OFF(pspace_build_opts, exec);
	OFF(pspace_build_opts, progress_ud);
	OFF(pspace_build_opts, shard_count);
	SIZE(pspace_matrix_info);
	OFF(pspace_matrix_info, codec);
	OFF(pspace_matrix_info, array_bytes);
	OFF(pspace_matrix_info, tile_digest);
	SIZE(pspace_layer);
	OFF(pspace_layer, size);
	SIZE(pspace_solve_opts);
	OFF(pspace_solve_opts, residual);
	SIZE(pspace_trace_opts);
	OFF(pspace_trace_opts, stderr_);
	SIZE(pspace_est_opts);
	OFF(pspace_est_opts, stderr_);
	SIZE(pspace_sample_opts);
	OFF(pspace_sample_opts, cov);
	SIZE(pspace_eig_opts);
	OFF(pspace_eig_opts, iterations);
	SIZE(pspace_jac_source);
	OFF(pspace_jac_source, ud);
	SIZE(pspace_layer_batch);
	OFF(pspace_layer_batch, rows);
	SIZE(pspace_layer_source);
	OFF(pspace_layer_source, ud);
	return 0;
}
