// The gather's copy, measured (benchmarks/gather.py runs it; not part of visionperf): batches
// of B random rows from a sample buffer into a staging buffer, with glibc's memcpy against
// non-temporal stores (AVX-512 where the build machine has it, else SSE2), on T threads.
//
// usage: gather_bench ROW_BYTES ROWS BATCH THREADS SECONDS   -> "memcpy GB/s" and "stream GB/s"
#include <immintrin.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

void copy_stream(uint8_t* dst, const uint8_t* src, size_t n) {
  size_t i = 0;
  // Destination alignment for the streaming stores (staging buffers are page-aligned; rows
  // of 150,528 bytes are 64-byte multiples, so every row starts aligned).
#if defined(__AVX512F__)
  for (; i + 64 <= n; i += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), _mm512_loadu_si512(src + i));
#else
  for (; i + 16 <= n; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
#endif
  std::memcpy(dst + i, src + i, n - i);
}

double run(bool stream, size_t row, size_t rows, size_t batch, int threads, double seconds, const uint8_t* buf) {
  std::atomic<uint64_t> total{0};
  auto t0 = std::chrono::steady_clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      void* p = mmap(nullptr, row * batch, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      auto* staging = static_cast<uint8_t*>(p);
      std::mt19937_64 rng(t);
      uint64_t n = 0;
      while (std::chrono::steady_clock::now() < end) {
        for (int k = 0; k < 64; ++k)
          for (size_t b = 0; b < batch; ++b) {
            const uint8_t* src = buf + (rng() % rows) * row;
            if (stream)
              copy_stream(staging + b * row, src, row);
            else
              std::memcpy(staging + b * row, src, row);
          }
        if (stream) _mm_sfence();
        n += 64 * batch;
      }
      total += n;
      munmap(p, row * batch);
    });
  for (auto& t : ts) t.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(total.load()) * double(row) / s / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: gather_bench ROW_BYTES ROWS BATCH THREADS SECONDS\n");
    return 2;
  }
  size_t row = std::strtoull(argv[1], nullptr, 10), rows = std::strtoull(argv[2], nullptr, 10);
  size_t batch = std::strtoull(argv[3], nullptr, 10);
  int threads = std::atoi(argv[4]);
  double seconds = std::atof(argv[5]);
  std::vector<uint8_t> buf(row * rows);
  for (size_t i = 0; i < buf.size(); i += 4096) buf[i] = uint8_t(i);
  std::printf("memcpy %.2f\n", run(false, row, rows, batch, threads, seconds, buf.data()));
  std::printf("stream %.2f\n", run(true, row, rows, batch, threads, seconds, buf.data()));
  return 0;
}
