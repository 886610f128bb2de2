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
  DriverQueue& q = *queues_[k];
  int64_t t = now_ns();
  {
    std::lock_guard<std::mutex> lk(q.mu);
    if (!q.dead.load()) {
      q.singles.push_back({samples[0].id, samples[0].index, t});
      if (q.singles.size() >= q.need) {
        q.signal = true;
        q.cv.notify_one();  // no system call unless the driver sleeps
      }
      return;
    }
  }
  completer_.fail(&samples[0].id, 1, "");  // it died just now
}

size_t WorkQueues::route_single() {
  for (size_t tries = 0; tries < queues_.size(); ++tries) {
    DriverQueue& q = *queues_[route_next_];
    if (!q.dead.load(std::memory_order_relaxed)) {
      size_t k = route_next_;
      if (++route_count_ >= q.chunk) {
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
  auto r = std::make_shared<BulkRange>();
  r->samples = samples;
  r->n = n;
  {
    std::lock_guard<std::mutex> lk(bulk_mu_);
    if (live_lanes_.load() > 0) r = (bulk_.push_back(std::move(r)), nullptr);
  }
  if (r) {  // every device is dead
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
    for (auto& r : bulk_) {
      size_t i = r->next.fetch_add(r->n, std::memory_order_relaxed);
      for (size_t k = i; k < r->n; ++k) ids.push_back(r->samples[k].id);
    }
    bulk_.clear();
  }
  if (!ids.empty()) completer_.fail(ids.data(), int(ids.size()), "");
}

void WorkQueues::lane_died() {
  if (live_lanes_.fetch_sub(1) == 1) fail_bulk();
}

void WorkQueues::close(DriverQueue& q, bool driver_thread) {
  std::vector<mlperf::ResponseId> ids;
  {
    std::lock_guard<std::mutex> lk(q.mu);
    q.dead = true;
    for (auto& s : q.singles) ids.push_back(s.id);
    q.singles.clear();
  }
  if (driver_thread) {  // FORMING is the driver thread's (and empty while a blocking run is stuck)
    for (auto& s : q.forming) ids.push_back(s.id);
    q.forming.clear();
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
  for (auto& q : queues_) q->wake();
}

bool WorkQueues::take_bulk(DriverQueue& q, Batch* b, int limit) {
  for (;;) {
    if (q.bulk) {
      BulkRange& r = *q.bulk;
      size_t i = r.next.fetch_add(size_t(limit), std::memory_order_relaxed);
      if (i < r.n) {
        int m = int(std::min(size_t(limit), r.n - i));
        for (int k = 0; k < m; ++k) {
          b->ids[k] = r.samples[i + k].id;
          b->idx[k] = r.samples[i + k].index;
          b->issued[k] = 0;
        }
        b->n = m;
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
    if (!next || next == q.bulk) {
      q.bulk = std::move(next);
      return false;
    }
    q.bulk = std::move(next);
  }
}

bool WorkQueues::take(DriverQueue& q, Batch* b, int limit, int64_t now) {
  if (int(q.forming.size()) < limit) {
    std::lock_guard<std::mutex> lk(q.mu);
    while (!q.singles.empty() && int(q.forming.size()) < limit) {
      if (q.forming.empty()) q.forming_deadline = q.singles.front().issued + batch_timeout_ns_;
      q.forming.push_back(q.singles.front());
      q.singles.pop_front();
    }
  }
  if (!q.forming.empty()) {
    if (int(q.forming.size()) < limit && now < q.forming_deadline && !stopping() && !aborting()) return false;
    // At most this device's batch (devices of one driver may take different sizes); the
    // rest stays, keeping the oldest sample's deadline.
    int m = std::min(int(q.forming.size()), limit);
    for (int k = 0; k < m; ++k) {
      b->ids[k] = q.forming[k].id;
      b->idx[k] = q.forming[k].idx;
      b->issued[k] = q.forming[k].issued;
    }
    b->n = m;
    q.forming.erase(q.forming.begin(), q.forming.begin() + m);
    return true;
  }
  return take_bulk(q, b, limit);
}

}  // namespace vp
