/*
 * pspace.h - umbrella header of pspace, storage and computation for the
 * d x d parameter-space matrices of neural networks.
 *
 * Conventions: out-parameters come first (int pspace_x_y(T **out, ...));
 * computations keep BLAS order, results last; _free releases the caller's
 * handle (dropping its reference for the counted pspace_mat and
 * pspace_op), _close a handle on an open file or store; both accept NULL.
 * Each header's top comment says which of its handles may be shared
 * between threads.
 */
#ifndef PSPACE_H
#define PSPACE_H

#include "pspace/build.h"
#include "pspace/codec.h"
#include "pspace/common.h"
#include "pspace/factored.h"
#include "pspace/layout.h"
#include "pspace/mat.h"
#include "pspace/npy.h"
#include "pspace/op.h"
#include "pspace/refnet.h"
#include "pspace/shard.h"
#include "pspace/source.h"
#include "pspace/store.h"
#include "pspace/vec.h"

#endif
