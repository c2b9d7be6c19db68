// 64-byte aligned owning buffer: one cache line, and the widest SIMD load (AVX-512).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

namespace pyrnn {

constexpr std::size_t kAlignment = 64;

template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.size_) {
    if (size_) std::memcpy(ptr_, o.ptr_, size_ * sizeof(T));
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept { swap(o); }
  AlignedBuffer& operator=(AlignedBuffer o) noexcept {
    swap(o);
    return *this;
  }
  ~AlignedBuffer() { std::free(ptr_); }

  // Zero-filled; contents are not preserved (buffers here are always rewritten).
  void resize(std::size_t n) {
    if (n == size_) return;
    std::free(ptr_);
    ptr_ = nullptr;
    size_ = 0;
    if (n == 0) return;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T) - kAlignment) throw std::bad_alloc();
    std::size_t bytes = (n * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    ptr_ = static_cast<T*>(std::aligned_alloc(kAlignment, bytes));
    if (!ptr_) throw std::bad_alloc();
    std::memset(ptr_, 0, bytes);
    size_ = n;
  }
  void zero() {
    if (size_) std::memset(ptr_, 0, size_ * sizeof(T));
  }
  void swap(AlignedBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return ptr_[i]; }
  const T& operator[](std::size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pyrnn
