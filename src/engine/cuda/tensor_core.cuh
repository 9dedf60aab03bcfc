#pragma once
// Tensor-core building blocks shared by the mma.sync kernels (flash_attention.cu,
// gemm_pipelined.cu): fragments loaded from shared memory with ldmatrix and the m16n8k16
// product of halves accumulating in floats. Compute capability 8.0 and up; callers keep these
// inside their __CUDA_ARCH__ >= 800 code.
#include <cuda_fp16.h>

#include <cstdint>

namespace rbee::engine::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 half matrices from shared memory; lanes 8i..8i+7 give the row addresses of the
// i-th, whose fragment (lane l: row l/4, halves 2(l%4), 2(l%4) + 1) lands in r[i]. trans:
// each lane gets a column pair instead of a row pair.
__device__ __forceinline__ void load_matrices(uint32_t (&r)[4], const __half* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void load_matrices_transposed(uint32_t (&r)[4], const __half* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

// c (16x8 floats) += a (16x16 halves) . b (16x8 halves). Fragment layout (PTX m16n8k16): lane
// l = 4g + t holds A rows g and g + 8, B column g, and of C columns 2t, 2t + 1 of rows g and
// g + 8 (element e: row g + 8 (e / 2), column 2t + e % 2).
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace rbee::engine::cuda
