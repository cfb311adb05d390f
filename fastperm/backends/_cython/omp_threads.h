/* OpenMP queries for the Cython kernels, with serial stand-ins when built without OpenMP. */
#ifndef FASTPERM_OMP_THREADS_H
#define FASTPERM_OMP_THREADS_H
#ifdef _OPENMP
#include <omp.h>
static inline int fastperm_max_threads(void) { return omp_get_max_threads(); }
static inline int fastperm_num_procs(void) { return omp_get_num_procs(); }
static inline int fastperm_have_openmp(void) { return 1; }
#else
static inline int fastperm_max_threads(void) { return 1; }
static inline int fastperm_num_procs(void) { return 1; }
static inline int fastperm_have_openmp(void) { return 0; }
#endif
#endif
