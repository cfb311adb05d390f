/* Thread count of the Cython kernels: OpenMP's when the extension was built with it, else 1. */
#ifndef FASTPERM_OMP_THREADS_H
#define FASTPERM_OMP_THREADS_H
#ifdef _OPENMP
#include <omp.h>
static inline int fastperm_max_threads(void) { return omp_get_max_threads(); }
static inline void fastperm_set_threads(int n) { omp_set_num_threads(n); }
static inline int fastperm_have_openmp(void) { return 1; }
#else
static inline int fastperm_max_threads(void) { return 1; }
static inline void fastperm_set_threads(int n) { (void)n; }
static inline int fastperm_have_openmp(void) { return 0; }
#endif
#endif
