// The precision of the matrix products (issue 19, `--dtype bf16`): a float model's products may
// take bfloat16 operands. Both operands of every product (weights and activations forward,
// gradients and activations backward) are rounded to bfloat16, nearest even, and the products
// accumulate in float; master weights, optimizer state, cell states, the pointwise gate math, the
// loss and every gradient returned stay float. On a CPU with AVX512-BF16 (at the x86-64-v4 level,
// bptt/cpu.hpp) the products run on vdpbf16ps kernels, up to twice the float FMA rate; elsewhere
// the same sums come from float products of the rounded operands (an emulation, slower than
// float). Either way the operands are rounded into buffers per thread, grown by their first use.
// A double model refuses bf16.
//
// As a thread count (threads.hpp), the precision belongs to an object or to the calling thread:
// Workspace, Inference and Stream take the calling thread's Matmul::current() at construction
// and keep it (set_matmul changes a Workspace's); every other call reads the calling thread's.
#pragma once

#include <string_view>

namespace bptt {

enum class Matmul {
  real,  // Real's own products (float or double)
  bf16,  // bfloat16 operands, float accumulation (float models only)
};

std::string_view to_string(Matmul m);

// Calls made from this thread (and objects constructed on it) while the object lives use `m`.
class MatmulScope {
 public:
  explicit MatmulScope(Matmul m) noexcept;
  ~MatmulScope();  // restores the precision that was current before
  MatmulScope(const MatmulScope&) = delete;
  MatmulScope& operator=(const MatmulScope&) = delete;
  // The innermost live MatmulScope's precision on the calling thread, else Matmul::real.
  static Matmul current() noexcept;

 private:
  Matmul previous_;
};

// Whether this CPU executes AVX512-BF16 (vdpbf16ps): two bf16 products per float lane, twice the
// float FMA's rate on AMD Zen 4 and 5, half of it on Intel Xeons (which have AMX, below).
bool cpu_has_bf16();

// Whether bf16 products run on the AVX512-BF16 kernels now: the CPU has them, this build has them
// (GCC on x86-64), and the active CPU level (bptt/cpu.hpp) is x86-64-v4. Otherwise they are
// emulated: the same sums of the same rounded operands, in another order, slower than float.
bool bf16_products_native();

// Whether the native bf16 products run on AMX tiles (tdpbf16ps, 16 times vdpbf16ps's rate): the
// CPU has AMX-BF16 (Intel Xeon from Sapphire Rapids on), Linux granted the process the tile state,
// and the environment does not say BPTT_AMX=0 (read once). Same sums, in another order.
bool bf16_products_amx();

}  // namespace bptt
