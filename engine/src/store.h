// The QSL's memory: the performance sample set in contiguous buffers, one per replica, and
// the batch gather (the paper's section II-C).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace vp {

class SampleStore {
 public:
  // SOURCE: the preprocessed cache, TOTAL rows of ROW_BYTES (usually a read-only memory map,
  // kept alive by the caller). One replica per FILL_CPUS entry, filled by a thread pinned
  // there, so first touch puts its pages on that NUMA node.
  SampleStore(const uint8_t* source, size_t total, size_t row_bytes,
              std::vector<std::vector<int>> fill_cpus);
  ~SampleStore();
  SampleStore(const SampleStore&) = delete;
  SampleStore& operator=(const SampleStore&) = delete;

  // LoadGen's load_samples_to_ram: copy these rows into fresh buffers, every replica at once.
  // Never called while a gather runs (LoadGen loads with no query in flight).
  void load(const size_t* indices, size_t n);
  // LoadGen's unload_samples_from_ram: free every replica.
  void unload();

  // Copy the rows of these dataset indices from replica R into DST, contiguous.
  void gather(int r, const size_t* indices, size_t n, uint8_t* dst) const;
  // Device fetch: the addresses of these dataset indices' rows in replica R, into OUT (no copy).
  void rows(int r, const size_t* indices, size_t n, const void** out) const {
    const uint8_t* buf = buffers_[r];
    for (size_t k = 0; k < n; ++k) out[k] = buf + size_t(row_of_[indices[k]]) * row_bytes_;
  }

  // A reader of replica R in place (a fetch device): ATTACH (base, bytes) after every load,
  // DETACH before that memory is freed (the next load, unload, forget_readers). A replica
  // loaded already is attached at once. Never while a batch is in flight (as load).
  struct Reader {
    int replica;
    std::function<void(const uint8_t* base, size_t bytes)> attach;
    std::function<void()> detach;
  };
  void add_reader(Reader reader);
  // Detaches every reader and forgets them (their devices are about to close).
  void forget_readers();

  size_t total() const { return total_; }
  size_t row_bytes() const { return row_bytes_; }
  size_t replicas() const { return fill_cpus_.size(); }
  const std::vector<size_t>& loaded() const { return loaded_; }
  double load_cpu_s = 0.0;  // process CPU inside load/unload (one-off, reported apart)

 private:
  void free_buffers();
  void detach_readers();
  void attach_readers();
  std::vector<Reader> readers_;
  const uint8_t* source_;
  size_t total_, row_bytes_;
  std::vector<std::vector<int>> fill_cpus_;
  std::vector<uint8_t*> buffers_;
  size_t buffer_bytes_ = 0;
  std::vector<uint32_t> row_of_;  // dataset index -> row of every replica
  std::vector<size_t> loaded_;
};

}  // namespace vp
