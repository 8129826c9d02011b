/* kernels.c: instantiates lib/kernels_impl.h in float and in double. */
#include "kernels.h"
#include "common.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R float
#define S
#define GEMM cblas_sgemm
#define EXP expf
#include "kernels_impl.h"
#undef R
#undef S
#undef GEMM
#undef EXP

#define R double
#define S _f64
#define GEMM cblas_dgemm
#define EXP exp
#include "kernels_impl.h"
