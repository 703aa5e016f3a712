#include "bptt/precision.hpp"

#include "kernels/bf16.hpp"

namespace bptt {

namespace {
thread_local Matmul t_matmul = Matmul::real;
}  // namespace

std::string_view to_string(Matmul m) { return m == Matmul::bf16 ? "bf16" : "real"; }

MatmulScope::MatmulScope(Matmul m) noexcept : previous_(t_matmul) { t_matmul = m; }
MatmulScope::~MatmulScope() { t_matmul = previous_; }
Matmul MatmulScope::current() noexcept { return t_matmul; }

bool cpu_has_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
}

bool bf16_products_native() { return kernels::bf16::native(); }

bool bf16_products_amx() { return kernels::bf16::amx(); }

}  // namespace bptt
