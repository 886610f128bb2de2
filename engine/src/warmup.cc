#include "warmup.h"

#include <algorithm>
#include <chrono>
#include <deque>

namespace vp {

void Warmup::Counter::complete(mlperf::QuerySampleResponse*, size_t n) {
  std::lock_guard<std::mutex> lk(mu);
  done += n;
  events.emplace_back(now_ns(), int(n));
  cv.notify_all();
}

void Warmup::Counter::reset() {
  std::lock_guard<std::mutex> lk(mu);
  done = 0;
  events.clear();
}

std::vector<std::pair<int64_t, int>> Warmup::measure_rate(double seconds, size_t chunk) {
  const auto& loaded = store_.loaded();
  if (loaded.empty()) throw Error("measure_rate needs loaded samples");
  std::deque<std::vector<mlperf::QuerySample>> lists;  // alive until their samples complete
  counter_.reset();
  Sink* before = completer_.set_sink(&counter_);
  uint64_t issued = 0;
  size_t cursor = 0;
  auto feed = [&] {
    std::vector<mlperf::QuerySample> q(chunk);
    for (auto& s : q) s = {mlperf::ResponseId(1), loaded[cursor++ % loaded.size()]};
    lists.push_back(std::move(q));
    issued += chunk;
    queues_.add_bulk(lists.back().data(), chunk);
  };
  const int64_t t0 = now_ns(), t_end = t0 + int64_t(seconds * 1e9);
  const int64_t t_give_up = t0 + int64_t(10 * seconds * 1e9) + 2000000000LL;
  const int64_t t_count = t0 + int64_t(0.3 * seconds * 1e9);
  feed();
  feed();
  std::unique_lock<std::mutex> lk(counter_.mu);
  for (;;) {
    counter_.cv.wait_for(lk, std::chrono::milliseconds(5));
    uint64_t done = counter_.done;
    int64_t now = now_ns();
    if (!completer_.error().empty()) break;
    // A burst (every outstanding batch finishing together after a stall) is not a rate: the
    // counted window must hold several batches per device and span most of the time asked.
    if (now >= t_end) {
      uint64_t counted = 0;
      int64_t first = 0, last = 0;
      for (auto& [t, n] : counter_.events)
        if (t >= t_count) {
          if (!first)
            first = t;
          else
            counted += uint64_t(n);
          last = t;
        }
      if ((counted >= 2 * chunk && last - first >= int64_t(0.35 * seconds * 1e9)) || now >= t_give_up) break;
    }
    if (issued - done < 2 * chunk) {
      lk.unlock();
      feed();
      lk.lock();
    }
  }
  counter_.cv.wait(lk, [&] { return counter_.done >= issued; });  // drain
  completer_.set_sink(before);
  auto events = counter_.events;
  lk.unlock();
  for (auto& e : events) e.first -= t0;
  return events;
}

std::vector<double> Warmup::measure_latency(int samples, double seconds) {
  const auto& loaded = store_.loaded();
  if (loaded.empty()) throw Error("measure_latency needs loaded samples");
  std::vector<mlperf::QuerySample> q(size_t(std::max(1, samples)));
  for (size_t k = 0; k < q.size(); ++k) q[k] = {mlperf::ResponseId(1), loaded[k % loaded.size()]};
  counter_.reset();
  Sink* before = completer_.set_sink(&counter_);
  std::vector<double> times;
  const int64_t t_end = now_ns() + int64_t(seconds * 1e9);
  uint64_t issued = 0;
  while (now_ns() < t_end || times.size() < 3) {
    int64_t t = now_ns();
    issued += q.size();
    if (q.size() == 1)
      queues_.issue(q.data(), 1);  // the one-sample path, as SingleStream takes it
    else
      queues_.add_bulk(q.data(), q.size());
    std::unique_lock<std::mutex> lk(counter_.mu);
    counter_.cv.wait(lk, [&] { return counter_.done >= issued; });
    times.push_back(1e-9 * double(now_ns() - t));
    if (!completer_.error().empty()) break;
  }
  completer_.set_sink(before);
  return times;
}

}  // namespace vp
