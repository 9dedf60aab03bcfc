// AVX2 + FMA + F16C level (compiled with those flags only; see src/engine/CMakeLists.txt).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/cpu/dispatch.h"
#include "engine/kv_block_size.h"

#define RBEE_SIMD_AVX512 0
#define RBEE_SIMD_TILE 4

namespace rbee::engine::cpu {
namespace avx2 {
#include "engine/cpu/kernels_simd.inc"
}  // namespace avx2

void fill_avx2_kernels(kernel_table& t) {
  avx2::fill_table(t);
}

}  // namespace rbee::engine::cpu
