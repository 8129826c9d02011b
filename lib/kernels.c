/* kernels.c: instantiates lib/kernels_impl.h in float (GEMMs through the
 * backend of lib/gemm.h) and in double (cblas_dgemm, for the gradient checks). */
#include "kernels.h"
#include "common.h"
#include "gemm.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R float
#define S
/* float products go through the backend (fp32 OpenBLAS or bf16 oneDNN) */
#define GEMM(order, ta, tb, ...) wdl_sgemm((ta) == CblasTrans, (tb) == CblasTrans, __VA_ARGS__)
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
