// The custom step kernels' bodies (internal header): the recurrent product of one step computed by
// blocks that each own a slice of hidden units, followed by the cell_elems.cuh per-element math
// of those units. One body serves two launch forms (cells.cu):
//   fused:      one launch per (step, phase); the kernel boundary is the barrier between phases.
//   persistent: one launch runs every step and phase; a grid barrier between phases (one block:
//               a block barrier); each block keeps its W_hh slice in shared memory throughout.
// The body is written against an execution context `Ctx` (block / thread indices, block and grid
// barriers, shared memory) so the SAME code runs on the GPU (cells.cu: DeviceCtx) and in the
// host emulation (tests/emu: one host thread per GPU thread, real barriers), which checks its
// partitioning, phase order and barriers against the CPU without a GPU.
//
// Ownership: block b owns hidden units [b*U, min(H, (b+1)*U)) (U = a.units) and, for them, every
// gate column g*H + j of the step's [N, G*H] products, every element n*H + j of the states and
// every per-element body call. A block reads other blocks' data only through the A operand of
// block_dot (h_prev, r*h_prev, d gates), always after a grid barrier, through L2 (ld_cg).
// Sums run over k in ascending order whatever the tiling, so results do not depend on U or on the
// number of threads.
//
// Phases per step (barrier after each; "grid" = all blocks, "block" = own data only):
//   forward:  F0 r[:, own cols] = h_prev W_hh[own rows]^T (GRU reset_after=false: r, z rows only),
//                then cell_forward_elem on own units                               -> grid
//             F1 (GRU reset_after=false) r[:, 2H + own] = (r*h_prev) W_hn[own]^T,
//                then gru_before_state_elem on own units                           -> grid
//   backward: B0 cell_backward_elem on own units (d gates of step t)                -> grid
//             B1 (GRU reset_after=false) drh[:, own] = dg_n W_hn[:, own],
//                then gru_before_backward_r_elem on own units                      -> grid
//             B_last rec[:, own] = dg W_hh[:, own] (+ dghn W_hn[:, own] for reset_after),
//                then update_dh_elem on own units                                  -> block
#pragma once
#include <cstddef>
#include <cstdint>

#include "cell_elems.cuh"

#if defined(__CUDACC__)
#define PYRNN_STEP_FN __device__ __forceinline__
#define PYRNN_UNROLL _Pragma("unroll")
#else
#define PYRNN_STEP_FN inline
#define PYRNN_UNROLL
#endif

namespace pyrnn {
namespace cuda {
namespace detail {

// Accumulators per thread in block_dot (compile time: they stay in registers).
constexpr int kStepAcc = 4;

// Everything one direction's step loop touches (device pointers), and the plan.
template <typename T>
struct StepArgs {
  int cell = 0;         // CellType
  int reset_after = 0;  // GRU form
  int N = 0, H = 0, G = 0, steps = 0, dir = 0;  // steps: T
  int s_begin = 0, s_end = 0;    // processing-order steps [s_begin, s_end)
  int ph_begin = 0, ph_end = 0;  // phases of each step run by this launch
  int units = 1;                 // U: hidden units per block
  int kc = 1;                    // K tile of block_dot
  int nc = 1;                    // row tile of block_dot
  int grid_sync = 0;             // barrier between phases: 0 none (one phase per launch),
                                 // 1 block barrier (one block), 2 grid barrier (cooperative)
  const std::int64_t* lengths = nullptr;  // [N] or null
  const T* w_hh = nullptr;                // [G*H, H]
  const T* b_hn = nullptr;                // [H] or null
  // forward
  T* g = nullptr;    // [T, N, GH] in: projections + bias; out: activations
  T* hs = nullptr;   // [T+1, N, H]
  T* cs = nullptr;   // [T+1, N, H] LSTM
  T* aux = nullptr;  // [T, N, H] GRU
  T* y = nullptr;    // [T, N, ldy] this direction's output columns (already offset by dir*H)
  int ldy = 0;
  T* r = nullptr;  // [N, GH] step products (scratch)
  // backward (g, hs, cs, aux: the forward cache, read)
  T* dg = nullptr;        // [T, N, GH]
  T* dghn = nullptr;      // [T, N, H] GRU reset_after
  T* dh = nullptr;        // [N, H] running d h
  const T* dy = nullptr;  // [T, N, ldy] (offset by dir*H)
  T* dc = nullptr;        // [N, H] LSTM running d c
  T* pw = nullptr;        // [N, H]
  T* rec = nullptr;       // [N, H]
  T* drh = nullptr;       // [N, H] GRU reset_after=false
};

PYRNN_HD inline int step_phases(int cell, int reset_after, bool backward) {
  const bool split = cell == static_cast<int>(CellType::GRU) && !reset_after;
  return backward ? (split ? 3 : 2) : (split ? 2 : 1);
}

// Blocks for the step kernels: `requested` (> 0), else one block when a step is tiny
// (N*G*H*H <= 2^15 multiply-adds: a grid barrier would cost more than the work), else enough
// units per block that its product has an output per thread (outputs per unit: N*G forward, N
// backward; fewer blocks also means fewer re-reads of the shared operand) and at most
// `max_blocks` blocks. Then units = ceil(H / blocks) and blocks = ceil(H / units), so no block
// is empty.
PYRNN_HD inline void step_blocks(int N, int G, int H, bool backward, int threads, int max_blocks,
                                 int requested, int* blocks, int* units) {
  long long b = requested;
  if (b <= 0) {
    const long long work = static_cast<long long>(N) * G * H * H;
    if (work <= (1 << 15)) {
      b = 1;
    } else {
      const long long per_unit = backward ? N : static_cast<long long>(N) * G;
      const long long u = (threads + per_unit - 1) / per_unit;
      b = (H + u - 1) / u;
      if (b > max_blocks) b = max_blocks;
    }
  }
  if (b > H) b = H;
  if (b < 1) b = 1;
  const int u = static_cast<int>((H + b - 1) / b);
  *units = u;
  *blocks = (H + u - 1) / u;
}

// Shared-memory elements (of T) the body needs: the W_hh slice, then one A tile.
PYRNN_HD inline std::size_t step_smem_elems(int G, int H, int units, int kc, int nc, bool backward) {
  const std::size_t w = backward ? std::size_t(units) * (std::size_t(G) * H + 1)
                                 : std::size_t(G) * units * (std::size_t(H) + 1);
  return w + std::size_t(nc) * (kc + 1);
}

// A load of data another block wrote (after a grid barrier): through L2, never a stale L1 line.
template <typename T>
PYRNN_STEP_FN T ld_cg(const T* p) {
#ifdef __CUDA_ARCH__
  return __ldcg(p);
#else
  return *p;
#endif
}

// For q in [q_begin, q_end) and n < N: out(n, q, sum_{k<K} A[n*lda + k] * W[q*ldw + k]).
// W: shared memory (this block's slice); A: global memory written by any block, staged through
// the shared tile [nc x (kc+1)] in K chunks. Every thread of the block must call it (barriers
// inside); out(n, q, v) is called once per output by one thread. After it returns, a block
// barrier is still needed before others read what out wrote.
template <typename T, typename Ctx, typename Out>
PYRNN_STEP_FN void block_dot(Ctx& ctx, int N, int K, const T* A, int lda, const T* W, int ldw,
                             int q_begin, int q_end, T* tile, int kc, int nc, Out out) {
  const int Q = q_end - q_begin;
  if (Q <= 0 || N <= 0) return;
  const int nt = ctx.thread_count(), tid = ctx.thread_index();
  const int per_pass = nt * kStepAcc;
  const int Qc = Q < per_pass ? Q : per_pass;
  int Nc = per_pass / Qc;
  if (Nc > nc) Nc = nc;
  if (Nc > N) Nc = N;
  if (Nc < 1) Nc = 1;
  const int ldt = kc + 1;
  for (int n0 = 0; n0 < N; n0 += Nc) {
    const int rows = N - n0 < Nc ? N - n0 : Nc;
    for (int c0 = 0; c0 < Q; c0 += Qc) {
      const int cols = Q - c0 < Qc ? Q - c0 : Qc;
      const int outs = rows * cols;
      T acc[kStepAcc];
PYRNN_UNROLL
      for (int a = 0; a < kStepAcc; ++a) acc[a] = T(0);
      for (int k0 = 0; k0 < K; k0 += kc) {
        const int kk = K - k0 < kc ? K - k0 : kc;
        ctx.sync_block();  // the previous tile's readers are done
        for (int e = tid; e < rows * kk; e += nt) {
          const int rr = e / kk, c = e - rr * kk;
          tile[rr * ldt + c] = ld_cg(A + static_cast<std::size_t>(n0 + rr) * lda + k0 + c);
        }
        ctx.sync_block();
PYRNN_UNROLL
        for (int a = 0; a < kStepAcc; ++a) {
          const int o = tid + a * nt;
          if (o < outs) {
            const int rr = o / cols;
            const int q = q_begin + c0 + (o - rr * cols);
            const T* ar = tile + rr * ldt;
            const T* wr = W + static_cast<std::size_t>(q) * ldw + k0;
            T s = acc[a];
            for (int k = 0; k < kk; ++k) s += ar[k] * wr[k];
            acc[a] = s;
          }
        }
      }
PYRNN_UNROLL
      for (int a = 0; a < kStepAcc; ++a) {
        const int o = tid + a * nt;
        if (o < outs) {
          const int rr = o / cols;
          out(n0 + rr, q_begin + c0 + (o - rr * cols), acc[a]);
        }
      }
    }
  }
}

// The barrier after a phase (none after the launch's last one: the kernel ends there).
template <typename T, typename Ctx>
PYRNN_STEP_FN void step_barrier(Ctx& ctx, const StepArgs<T>& a, bool grid, bool last) {
  if (last) return;
  if (grid && a.grid_sync == 2) ctx.sync_grid();
  else ctx.sync_block();
}

template <typename T, typename Ctx>
PYRNN_STEP_FN void step_forward_body(Ctx& ctx, const StepArgs<T>& a, T* smem) {
  const int H = a.H, G = a.G, N = a.N;
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  const int j0 = ctx.block_index() * a.units;
  const int U = j0 >= H ? 0 : (H - j0 < a.units ? H - j0 : a.units);
  const int nt = ctx.thread_count(), tid = ctx.thread_index();
  const bool split = a.cell == static_cast<int>(CellType::GRU) && !a.reset_after;
  const bool lstm = a.cell == static_cast<int>(CellType::LSTM);
  const int ldw = H + 1;
  T* Ws = smem;                                   // [G*U, H+1]: row g*U + u = W_hh[g*H + j0 + u]
  T* tile = smem + static_cast<std::size_t>(G) * a.units * ldw;  // [nc, kc+1]
  for (int e = tid; e < G * U * H; e += nt) {
    const int q = e / H, k = e - q * H;
    const int g = q / U, u = q - g * U;
    Ws[q * ldw + k] = a.w_hh[(static_cast<std::size_t>(g) * H + j0 + u) * H + k];
  }
  ctx.sync_block();
  for (int s = a.s_begin; s < a.s_end; ++s) {
    const int t = a.dir == 0 ? s : a.steps - 1 - s;
    const int prev = a.dir == 0 ? t : t + 1, cur = a.dir == 0 ? t + 1 : t;
    const T* hp = a.hs + static_cast<std::size_t>(prev) * N * H;
    T* hc = a.hs + static_cast<std::size_t>(cur) * N * H;
    T* gt = a.g + static_cast<std::size_t>(t) * N * GH;
    T* at = a.aux ? a.aux + static_cast<std::size_t>(t) * N * H : nullptr;
    T* yt = a.y + static_cast<std::size_t>(t) * N * a.ldy;
    T* r = a.r;
    for (int ph = a.ph_begin; ph < a.ph_end; ++ph) {
      const bool last = s == a.s_end - 1 && ph == a.ph_end - 1;
      if (ph == 0) {
        const int gates = split ? 2 : G;
        block_dot<T>(ctx, N, H, hp, H, Ws, ldw, 0, gates * U, tile, a.kc, a.nc,
                     [&](int n, int q, T v) {
                       const int g = q / U, u = q - g * U;
                       r[n * GH + static_cast<std::size_t>(g) * H + j0 + u] = v;
                     });
        ctx.sync_block();
        for (int e = tid; e < N * U; e += nt) {
          const int n = e / U, j = j0 + (e - n * U);
          cell_forward_elem<T>(static_cast<std::size_t>(n) * H + j, a.cell, a.reset_after != 0,
                               H, G, t, a.lengths, gt, r, a.b_hn, hp, hc,
                               lstm ? a.cs + static_cast<std::size_t>(prev) * N * H : nullptr,
                               lstm ? a.cs + static_cast<std::size_t>(cur) * N * H : nullptr, at,
                               yt, a.ldy);
        }
      } else {  // GRU reset_after=false: the n gate from r*h_prev of every unit
        block_dot<T>(ctx, N, H, at, H, Ws, ldw, 2 * U, 3 * U, tile, a.kc, a.nc,
                     [&](int n, int q, T v) {
                       r[n * GH + 2 * static_cast<std::size_t>(H) + j0 + (q - 2 * U)] = v;
                     });
        ctx.sync_block();
        for (int e = tid; e < N * U; e += nt) {
          const int n = e / U, j = j0 + (e - n * U);
          gru_before_state_elem<T>(static_cast<std::size_t>(n) * H + j, H, t, a.lengths, gt,
                                   r + 2 * static_cast<std::size_t>(H), hp, hc, yt, a.ldy);
        }
      }
      step_barrier(ctx, a, /*grid=*/true, last);
    }
  }
}

template <typename T, typename Ctx>
PYRNN_STEP_FN void step_backward_body(Ctx& ctx, const StepArgs<T>& a, T* smem) {
  const int H = a.H, G = a.G, N = a.N;
  const std::size_t GH = static_cast<std::size_t>(G) * H;
  const int j0 = ctx.block_index() * a.units;
  const int U = j0 >= H ? 0 : (H - j0 < a.units ? H - j0 : a.units);
  const int nt = ctx.thread_count(), tid = ctx.thread_index();
  const bool gru = a.cell == static_cast<int>(CellType::GRU);
  const bool split = gru && !a.reset_after, after = gru && a.reset_after;
  const bool lstm = a.cell == static_cast<int>(CellType::LSTM);
  const int ldw = static_cast<int>(GH) + 1;
  const int last_phase = step_phases(a.cell, a.reset_after, true) - 1;
  T* Wt = smem;  // [U, GH+1]: row u = column j0 + u of W_hh
  T* tile = smem + static_cast<std::size_t>(a.units) * ldw;
  for (int e = tid; e < U * static_cast<int>(GH); e += nt) {
    const int u = e / static_cast<int>(GH), m = e - u * static_cast<int>(GH);
    Wt[u * ldw + m] = a.w_hh[static_cast<std::size_t>(m) * H + j0 + u];
  }
  ctx.sync_block();
  for (int s = a.s_begin; s < a.s_end; ++s) {
    const int t = a.dir == 0 ? a.steps - 1 - s : s;
    const int prev = a.dir == 0 ? t : t + 1, cur = a.dir == 0 ? t + 1 : t;
    const T* hp = a.hs + static_cast<std::size_t>(prev) * N * H;
    const T* at = a.g + static_cast<std::size_t>(t) * N * GH;
    T* dgt = a.dg + static_cast<std::size_t>(t) * N * GH;
    T* dghnt = after ? a.dghn + static_cast<std::size_t>(t) * N * H : nullptr;
    for (int ph = a.ph_begin; ph < a.ph_end; ++ph) {
      const bool last = s == a.s_end - 1 && ph == a.ph_end - 1;
      if (ph == 0) {
        for (int e = tid; e < N * U; e += nt) {
          const int n = e / U, j = j0 + (e - n * U);
          cell_backward_elem<T>(static_cast<std::size_t>(n) * H + j, a.cell, a.reset_after != 0,
                                H, G, t, a.lengths, dgt, dghnt, a.dh,
                                a.dy + static_cast<std::size_t>(t) * N * a.ldy, a.ldy, a.dc, a.pw,
                                at, gru ? a.aux + static_cast<std::size_t>(t) * N * H : nullptr,
                                hp, lstm ? a.cs + static_cast<std::size_t>(cur) * N * H : nullptr,
                                lstm ? a.cs + static_cast<std::size_t>(prev) * N * H : nullptr);
        }
        step_barrier(ctx, a, /*grid=*/true, last);
      } else if (ph < last_phase) {  // GRU reset_after=false: d (r*h_prev), then the r gate
        T* drh = a.drh;
        block_dot<T>(ctx, N, H, dgt + 2 * static_cast<std::size_t>(H), static_cast<int>(GH),
                     Wt + 2 * static_cast<std::size_t>(H), ldw, 0, U, tile, a.kc, a.nc,
                     [&](int n, int u, T v) { drh[static_cast<std::size_t>(n) * H + j0 + u] = v; });
        ctx.sync_block();
        for (int e = tid; e < N * U; e += nt) {
          const int n = e / U, j = j0 + (e - n * U);
          gru_before_backward_r_elem<T>(static_cast<std::size_t>(n) * H + j, H, t, a.lengths, dgt,
                                        drh, a.pw, at, hp);
        }
        step_barrier(ctx, a, /*grid=*/true, last);
      } else {  // d h_prev through the recurrent weights, then the running d h
        T* rec = a.rec;
        const int K = (split || after) ? 2 * H : static_cast<int>(GH);
        block_dot<T>(ctx, N, K, dgt, static_cast<int>(GH), Wt, ldw, 0, U, tile, a.kc, a.nc,
                     [&](int n, int u, T v) { rec[static_cast<std::size_t>(n) * H + j0 + u] = v; });
        if (after)  // + dghn W_hn: added after the first sum, as the cuBLAS path's beta = 1
          block_dot<T>(ctx, N, H, dghnt, H, Wt + 2 * static_cast<std::size_t>(H), ldw, 0, U, tile,
                       a.kc, a.nc, [&](int n, int u, T v) {
                         rec[static_cast<std::size_t>(n) * H + j0 + u] += v;
                       });
        ctx.sync_block();
        for (int e = tid; e < N * U; e += nt) {
          const int n = e / U, j = j0 + (e - n * U);
          update_dh_elem<T>(static_cast<std::size_t>(n) * H + j, H, t, a.lengths, a.dh, rec,
                            gru ? a.pw : nullptr);
        }
        step_barrier(ctx, a, /*grid=*/false, last);
      }
    }
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace pyrnn
