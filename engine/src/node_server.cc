#include "node_server.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

namespace vp {

namespace {
// One serve() call: its rows, and how many samples are still to come. Each sample's response
// id is the address of its ServeEntry (as LoadGen's own ids point at its sample records), so a
// completion finds its row without a lookup or a lock.
struct ServeSlot {
  std::string rows;
  size_t stride = 8;
  std::atomic<size_t> left{0}, failed{0};
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};
struct ServeEntry {
  ServeSlot* slot;
  size_t row;
};
}  // namespace

std::string NodeServer::serve(const size_t* indices, size_t n) {
  ServeSlot slot;
  slot.stride = 8 + completer_.max_response_bytes();
  if (n == 0) return {};
  slot.rows.assign(n * slot.stride, '\0');
  slot.left = n;
  std::vector<ServeEntry> entries(n);
  std::vector<mlperf::QuerySample> q(n);  // read by the drivers until every sample is claimed
  for (size_t k = 0; k < n; ++k) {
    entries[k] = {&slot, k};
    q[k] = {mlperf::ResponseId(&entries[k]), indices[k]};
  }
  completer_.set_sink(&rows_);
  queues_.add_bulk(q.data(), n);
  {
    std::unique_lock<std::mutex> lk(slot.mu);
    slot.cv.wait(lk, [&] { return slot.done; });
  }
  if (size_t f = slot.failed.load()) {
    std::string why = completer_.error();
    throw Error(std::to_string(f) + " of " + std::to_string(n) + " samples failed: " +
                (why.empty() ? std::string("the engine stopped") : why));
  }
  return std::move(slot.rows);
}

void NodeServer::Rows::complete(mlperf::QuerySampleResponse* r, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    auto* e = reinterpret_cast<ServeEntry*>(r[i].id);
    ServeSlot& s = *e->slot;
    if (r[i].data == 0) {  // a failure answers with no data; an empty detection list has some
      s.failed++;
    } else {
      uint64_t size = std::min<uint64_t>(r[i].size, s.stride - 8);
      char* row = s.rows.data() + e->row * s.stride;
      std::memcpy(row, &size, 8);
      std::memcpy(row + 8, reinterpret_cast<const void*>(r[i].data), size);
    }
    if (s.left.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lk(s.mu);  // S is gone once its caller wakes: touch nothing after
      s.done = true;
      s.cv.notify_all();
    }
  }
}

}  // namespace vp
