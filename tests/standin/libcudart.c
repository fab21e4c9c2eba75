/* The CUDA runtime calls run.py makes, on host memory: a stand-in for tests on machines without a GPU. */
#include <stdlib.h>
#include <string.h>

int cudaStreamCreate(void **stream) { *stream = malloc(1); return 0; }
int cudaStreamSynchronize(void *stream) { (void)stream; return 0; }
int cudaEventCreate(void **event) { *event = malloc(1); return 0; }
int cudaEventRecord(void *event, void *stream) { (void)event; (void)stream; return 0; }
int cudaEventElapsedTime(float *ms, void *start, void *stop) { (void)start; (void)stop; *ms = 0.5f; return 0; }
int cudaMalloc(void **pointer, size_t size) { *pointer = malloc(size); return *pointer ? 0 : 2; }
int cudaMemcpy(void *dst, const void *src, size_t count, int kind) { (void)kind; memcpy(dst, src, count); return 0; }
