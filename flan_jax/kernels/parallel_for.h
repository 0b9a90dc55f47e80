// Work sharing on XLA:CPU's intra-op thread pool for the flan_jax FFI kernels.
#ifndef FLAN_JAX_KERNELS_PARALLEL_FOR_H_
#define FLAN_JAX_KERNELS_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace flan_jax {

// Runs f(0..n-1) on the calling thread and on XLA's pool. Each index is claimed once; the
// caller works until none is left and then waits only for indices already being run, so a
// busy pool (or one whose threads are all inside other custom calls) cannot deadlock it.
template <typename F>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const F& f) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, n, &f]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      f(i);
      state->done.fetch_add(1);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load() < n) std::this_thread::yield();
}

}  // namespace flan_jax

#endif  // FLAN_JAX_KERNELS_PARALLEL_FOR_H_
