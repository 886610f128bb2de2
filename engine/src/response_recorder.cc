#include "response_recorder.h"

#include <chrono>

namespace vp {

void ResponseRecorder::Record::complete(mlperf::QuerySampleResponse* r, size_t n) {
  std::lock_guard<std::mutex> lk(mu);
  for (size_t i = 0; i < n; ++i)
    responses.emplace_back(uint64_t(r[i].id), std::string(reinterpret_cast<const char*>(r[i].data), r[i].size));
  cv.notify_all();
}

void ResponseRecorder::start() {
  {
    std::lock_guard<std::mutex> lk(record_.mu);
    record_.responses.clear();
  }
  completer_.set_sink(&record_);
}

void ResponseRecorder::issue(std::vector<mlperf::QuerySample> query) {
  const std::vector<mlperf::QuerySample>* list;
  {
    std::lock_guard<std::mutex> lk(lists_mu_);
    // Without it the responses would go to LoadGen, which has no test running: refuse.
    if (completer_.to_loadgen()) throw Error("issue() outside a LoadGen test: call record_responses() first");
    lists_.push_back(std::move(query));
    list = &lists_.back();
  }
  queues_.issue(list->data(), list->size());
}

std::vector<std::pair<uint64_t, std::string>> ResponseRecorder::wait(size_t count, double timeout_s) {
  std::unique_lock<std::mutex> lk(record_.mu);
  record_.cv.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return record_.responses.size() >= count; });
  return record_.responses;
}

}  // namespace vp
