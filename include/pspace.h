/*
 * pspace.h - umbrella header of pspace, storage and computation for the
 * d x d parameter-space matrices of neural networks.
 */
#ifndef PSPACE_H
#define PSPACE_H

#include "pspace/codec.h"
#include "pspace/common.h"
#include "pspace/store.h"

#endif
