#include "work_queues.h"

#include <algorithm>

namespace vp {

void DriverQueue::wake() {
  std::lock_guard<std::mutex> lk(mu);
  signal = true;
  cv.notify_one();
}

DriverQueue& WorkQueues::add_queue() {
  queues_.push_back(std::make_unique<DriverQueue>());
  return *queues_.back();
}

void WorkQueues::open(int live_lanes, int64_t batch_timeout_ns) {
  stopping_ = false;
  aborting_ = false;
  live_lanes_ = live_lanes;
  batch_timeout_ns_ = batch_timeout_ns;
}

void WorkQueues::clear() {
  queues_.clear();
  route_next_ = route_count_ = 0;
}

void WorkQueues::issue(const mlperf::QuerySample* samples, size_t n) {
  if (aborting()) {  // interrupted: LoadGen may go on issuing until its schedule ends
    std::vector<mlperf::ResponseId> ids(n);
    for (size_t k = 0; k < n; ++k) ids[k] = samples[k].id;
    completer_.fail(ids.data(), int(ids.size()), "");
    return;
  }
  if (n != 1) {
    add_bulk(samples, n);
    return;
  }
  size_t k = route_single();
  if (k == queues_.size()) {  // every device is dead
    completer_.fail(&samples[0].id, 1, "");
    return;
  }
  DriverQueue& queue = *queues_[k];
  int64_t t = now_ns();
  {
    std::lock_guard<std::mutex> lk(queue.mu);
    if (!queue.dead.load()) {
      queue.singles.push_back({samples[0].id, samples[0].index, t});
      if (queue.singles.size() >= queue.need) {
        queue.signal = true;
        queue.cv.notify_one();  // no system call unless the driver sleeps
      }
      return;
    }
  }
  completer_.fail(&samples[0].id, 1, "");  // it died just now
}

size_t WorkQueues::route_single() {
  for (size_t tries = 0; tries < queues_.size(); ++tries) {
    DriverQueue& queue = *queues_[route_next_];
    if (!queue.dead.load(std::memory_order_relaxed)) {
      size_t k = route_next_;
      if (++route_count_ >= queue.chunk) {
        route_count_ = 0;
        route_next_ = (route_next_ + 1) % queues_.size();
      }
      return k;
    }
    route_count_ = 0;
    route_next_ = (route_next_ + 1) % queues_.size();
  }
  return queues_.size();
}

void WorkQueues::add_bulk(const mlperf::QuerySample* samples, size_t n) {
  if (n == 0) return;
  auto range = std::make_shared<BulkRange>();
  range->samples = samples;
  range->n = n;
  {
    std::lock_guard<std::mutex> lk(bulk_mu_);
    if (live_lanes_.load() > 0) range = (bulk_.push_back(std::move(range)), nullptr);
  }
  if (range) {  // every device is dead
    std::vector<mlperf::ResponseId> ids(n);
    for (size_t k = 0; k < n; ++k) ids[k] = samples[k].id;
    completer_.fail(ids.data(), int(n), "");
    return;
  }
  wake_all();
}

void WorkQueues::fail_bulk() {
  std::vector<mlperf::ResponseId> ids;
  {
    std::lock_guard<std::mutex> lk(bulk_mu_);
    for (auto& range : bulk_) {
      size_t i = range->next.fetch_add(range->n, std::memory_order_relaxed);
      for (size_t k = i; k < range->n; ++k) ids.push_back(range->samples[k].id);
    }
    bulk_.clear();
  }
  if (!ids.empty()) completer_.fail(ids.data(), int(ids.size()), "");
}

void WorkQueues::lane_died() {
  if (live_lanes_.fetch_sub(1) == 1) fail_bulk();
}

void WorkQueues::close(DriverQueue& queue, bool driver_thread) {
  std::vector<mlperf::ResponseId> ids;
  {
    std::lock_guard<std::mutex> lk(queue.mu);
    queue.dead = true;
    for (auto& s : queue.singles) ids.push_back(s.id);
    queue.singles.clear();
  }
  if (driver_thread) {  // FORMING is the driver thread's (and empty while a blocking run is stuck)
    for (auto& s : queue.forming) ids.push_back(s.id);
    queue.forming.clear();
  }
  if (!ids.empty()) completer_.fail(ids.data(), int(ids.size()), "");
}

void WorkQueues::abort() {
  aborting_.store(true);
  wake_all();
}

void WorkQueues::stop() {
  stopping_.store(true, std::memory_order_release);
}

void WorkQueues::wake_all() {
  for (auto& queue : queues_) queue->wake();
}

bool WorkQueues::take_bulk(DriverQueue& queue, Batch* batch, int limit) {
  for (;;) {
    if (queue.bulk) {
      BulkRange& range = *queue.bulk;
      size_t first = range.next.fetch_add(size_t(limit), std::memory_order_relaxed);
      if (first < range.n) {
        int taken = int(std::min(size_t(limit), range.n - first));
        for (int k = 0; k < taken; ++k) {
          batch->ids[k] = range.samples[first + k].id;
          batch->idx[k] = range.samples[first + k].index;
          batch->issued[k] = 0;
        }
        batch->n = taken;
        return true;
      }
    }
    std::shared_ptr<BulkRange> next;
    {
      std::lock_guard<std::mutex> lk(bulk_mu_);
      while (!bulk_.empty() && bulk_.front()->next.load(std::memory_order_relaxed) >= bulk_.front()->n)
        bulk_.pop_front();
      if (!bulk_.empty()) next = bulk_.front();
    }
    if (!next || next == queue.bulk) {
      queue.bulk = std::move(next);
      return false;
    }
    queue.bulk = std::move(next);
  }
}

bool WorkQueues::take(DriverQueue& queue, Batch* batch, int limit, int64_t now) {
  if (int(queue.forming.size()) < limit) {
    std::lock_guard<std::mutex> lk(queue.mu);
    while (!queue.singles.empty() && int(queue.forming.size()) < limit) {
      if (queue.forming.empty()) queue.forming_deadline = queue.singles.front().issued + batch_timeout_ns_;
      queue.forming.push_back(queue.singles.front());
      queue.singles.pop_front();
    }
  }
  if (!queue.forming.empty()) {
    if (int(queue.forming.size()) < limit && now < queue.forming_deadline && !stopping() && !aborting()) return false;
    // At most this device's batch (devices of one driver may take different sizes); the
    // rest stays, keeping the oldest sample's deadline.
    int taken = std::min(int(queue.forming.size()), limit);
    for (int k = 0; k < taken; ++k) {
      batch->ids[k] = queue.forming[k].id;
      batch->idx[k] = queue.forming[k].idx;
      batch->issued[k] = queue.forming[k].issued;
    }
    batch->n = taken;
    queue.forming.erase(queue.forming.begin(), queue.forming.begin() + taken);
    return true;
  }
  return take_bulk(queue, batch, limit);
}

}  // namespace vp
