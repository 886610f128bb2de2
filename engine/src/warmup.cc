#include "warmup.h"

#include <algorithm>

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

void Warmup::issue(const std::vector<mlperf::QuerySample>& kept) {
  if (kept.size() == 1)
    queues_.issue(kept.data(), 1);  // the one-sample path, as SingleStream takes it
  else
    queues_.add_bulk(kept.data(), kept.size());
}

Warmup::End Warmup::poll(std::unique_lock<std::mutex>& lk, uint64_t issued, const Stop& stop, Clock::time_point* at) {
  if (Clock::now() < *at) return End::finished;
  lk.unlock();  // the poll may take the interpreter's lock, which a device's thread may hold
  bool interrupted = stop.interrupted();
  lk.lock();
  *at = Clock::now() + kPoll;
  if (!interrupted) return End::finished;
  lk.unlock();
  stop.abort();
  lk.lock();
  const bool drained = counter_.cv.wait_for(lk, kGrace, [&] { return counter_.done >= issued; });
  return drained ? End::interrupted : End::abandoned;
}

Warmup::End Warmup::wait_done(std::unique_lock<std::mutex>& lk, uint64_t issued, const Stop& stop,
                              Clock::time_point* poll_at) {
  while (counter_.done < issued) {
    counter_.cv.wait_until(lk, *poll_at);
    if (counter_.done >= issued) break;
    if (End end = poll(lk, issued, stop, poll_at); end != End::finished) return end;
  }
  return End::finished;
}

Warmup::End Warmup::measure_rate(double seconds, size_t chunk, const Stop& stop,
                                 std::vector<std::pair<int64_t, int>>* events) {
  const auto& loaded = store_.loaded();
  if (loaded.empty()) throw Error("measure_rate needs loaded samples");
  queries_.clear();  // the last warm-up's samples all completed
  counter_.reset();
  Sink* before = completer_.set_sink(&counter_);
  uint64_t issued = 0;
  size_t cursor = 0;
  auto feed = [&] {
    std::vector<mlperf::QuerySample> q(chunk);
    for (auto& s : q) s = {mlperf::ResponseId(1), loaded[cursor++ % loaded.size()]};
    issued += chunk;
    queries_.push_back(std::move(q));
    issue(queries_.back());
  };
  const int64_t t0 = now_ns(), t_end = t0 + int64_t(seconds * 1e9);
  const int64_t t_give_up = t0 + int64_t(10 * seconds * 1e9) + 2000000000LL;
  const int64_t t_count = t0 + int64_t(0.3 * seconds * 1e9);
  feed();
  feed();
  std::unique_lock<std::mutex> lk(counter_.mu);
  End end = End::finished;
  auto poll_at = Clock::now() + kPoll;
  for (;;) {
    counter_.cv.wait_for(lk, std::chrono::milliseconds(5));
    if ((end = poll(lk, issued, stop, &poll_at)) != End::finished) break;
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
  if (end == End::finished) end = wait_done(lk, issued, stop, &poll_at);  // drain
  if (end == End::abandoned) return end;  // the drivers may still complete into this sink
  completer_.set_sink(before);
  *events = counter_.events;
  lk.unlock();
  for (auto& e : *events) e.first -= t0;
  return end;
}

Warmup::End Warmup::measure_latency(int samples, double seconds, const Stop& stop, std::vector<double>* times) {
  const auto& loaded = store_.loaded();
  if (loaded.empty()) throw Error("measure_latency needs loaded samples");
  std::vector<mlperf::QuerySample> q(size_t(std::max(1, samples)));
  for (size_t k = 0; k < q.size(); ++k) q[k] = {mlperf::ResponseId(1), loaded[k % loaded.size()]};
  queries_.clear();  // the last warm-up's samples all completed
  queries_.push_back(std::move(q));
  counter_.reset();
  Sink* before = completer_.set_sink(&counter_);
  const int64_t t_end = now_ns() + int64_t(seconds * 1e9);
  uint64_t issued = 0;
  End end = End::finished;
  auto poll_at = Clock::now() + kPoll;  // across queries: each may take less than a poll
  while (now_ns() < t_end || times->size() < 3) {
    int64_t t = now_ns();
    issued += queries_.back().size();
    issue(queries_.back());
    std::unique_lock<std::mutex> lk(counter_.mu);
    end = wait_done(lk, issued, stop, &poll_at);
    if (end != End::finished) break;
    times->push_back(1e-9 * double(now_ns() - t));
    if (!completer_.error().empty()) break;
  }
  if (end == End::abandoned) return end;  // the drivers may still complete into this sink
  completer_.set_sink(before);
  return end;
}

}  // namespace vp
