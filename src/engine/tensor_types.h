#pragma once
// The engine computes on the GGUF format's tensor types and block layouts (gguf/tensor_types.h)
// and names them unqualified: the names it uses, brought into rbee::engine.
#include "gguf/tensor_types.h"

namespace rbee::engine {

using gguf::bf16_t;
using gguf::fp16_t;
using gguf::row_size;
using gguf::tensor_type;
using gguf::to_string;
using gguf::traits_of;
using gguf::type_traits;

using gguf::iq4_levels;
using gguf::k_scale_size;
using gguf::qk4_0;
using gguf::qk4_1;
using gguf::qk4_nl;
using gguf::qk5_0;
using gguf::qk5_1;
using gguf::qk8_0;
using gguf::qk8_1;
using gguf::qk_k;

using gguf::block_iq4_nl;
using gguf::block_iq4_xs;
using gguf::block_q2_k;
using gguf::block_q3_k;
using gguf::block_q4_0;
using gguf::block_q4_1;
using gguf::block_q4_k;
using gguf::block_q5_0;
using gguf::block_q5_1;
using gguf::block_q5_k;
using gguf::block_q6_k;
using gguf::block_q8_0;
using gguf::block_q8_1;
using gguf::block_q8_k;

}  // namespace rbee::engine
