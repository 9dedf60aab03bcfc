#pragma once
// NCCL is loaded at run time (dlopen), as cuBLAS is (cublas_api.h): builds need no NCCL, and
// only a tensor-parallel model across GPUs needs libnccl.so.2 on its node. Its few entry points
// are declared here as the library exports them (NCCL 2's C interface: nccl.h), since the
// build machines have no NCCL headers.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace rbee::engine::cuda {

struct nccl_comm;  // NCCL's opaque ncclComm
using nccl_comm_t = nccl_comm*;
using nccl_result_t = int;              // ncclResult_t; 0 is ncclSuccess
inline constexpr int nccl_float32 = 7;  // ncclDataType_t ncclFloat32
inline constexpr int nccl_sum = 0;      // ncclRedOp_t ncclSum

struct nccl_api {
  // ncclCommInitAll: one communicator per device of this process, rank i on devices[i].
  nccl_result_t (*comm_init_all)(nccl_comm_t* comms, int n_devices, const int* devices);
  nccl_result_t (*comm_destroy)(nccl_comm_t comm);
  nccl_result_t (*all_reduce)(const void* send, void* recv, size_t count, int data_type, int op,
                              nccl_comm_t comm, cudaStream_t stream);
  const char* (*error_string)(nccl_result_t result);
};

// Loads `soname` (dlopen) and binds the entry points; engine_error(backend_unavailable) saying
// that tensor parallelism across GPUs needs it when it cannot be loaded. The library stays
// loaded for the life of the process.
nccl_api load_nccl(const std::string& soname);
// libnccl.so.2, loaded once (a failed load is retried on the next call).
const nccl_api& nccl();

}  // namespace rbee::engine::cuda
