/*
 * pspace.h - umbrella header of pspace, storage and computation for the
 * d x d parameter-space matrices of neural networks.
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
#include "pspace/source.h"
#include "pspace/store.h"
#include "pspace/vec.h"

#endif
