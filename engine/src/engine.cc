#include "engine.h"

#include <cmath>

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>

namespace vp {

namespace {
constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
constexpr int64_t kPollNs = 20000;  // devices that cannot say when a batch will be ready
constexpr int kSpareBatches = 4;    // per device, beyond max_in_flight: batches in post-processing

std::chrono::steady_clock::time_point at(int64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}
}  // namespace

Lane::~Lane() {
  if (staging) munmap(staging, staging_bytes);
}

Engine::Engine(std::unique_ptr<SampleStore> store, std::unique_ptr<Post> post, int batch_size)
    : store_(std::move(store)), post_(std::move(post)), batch_size_(batch_size) {
  if (batch_size_ < 1) throw Error("batch size must be at least 1");
}

Engine::~Engine() {
  stop();
  lanes_.clear();  // closes the devices before the plug-in libraries they came from
}

void Engine::add_device(std::unique_ptr<Device> device) {
  if (started_) throw Error("devices are added before the engine starts");
  auto lane = std::make_unique<Lane>();
  const DeviceInfo& info = device->info;
  lane->staging_bytes = std::max<size_t>(1, size_t(info.batch_size) * info.input_row_bytes());
  void* p = mmap(nullptr, lane->staging_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw Error("cannot allocate the staging buffer of " + info.name);
  lane->staging = static_cast<uint8_t*>(p);
  int pool = info.max_in_flight + kSpareBatches;
  for (int k = 0; k < pool; ++k) {
    auto b = std::make_unique<Batch>();
    b->ids.resize(info.batch_size);
    b->idx.resize(info.batch_size);
    b->issued.resize(info.batch_size);
    for (const vp_tensor& t : info.outputs) {
      lane->out_storage.emplace_back(size_t(info.batch_size) * tensor_bytes(t), uint8_t(0));
      b->outputs.push_back(lane->out_storage.back().data());
    }
    lane->free.push_back(b.get());
    lane->all.push_back(std::move(b));
  }
  lane->dev = std::move(device);
  lanes_.push_back(std::move(lane));
}

size_t Engine::capacity() const {
  size_t c = 0;
  for (auto& l : lanes_) c += size_t(l->dev->info.max_in_flight);
  return c;
}

void Engine::start() {
  if (started_) return;
  if (lanes_.empty()) throw Error("no devices");
  stopping_ = false;
  aborting_ = false;
  int live = 0;  // a device found stuck stays dead across restarts (the error is kept)
  for (auto& l : lanes_) live += l->dead.load() ? 0 : 1;
  live_lanes_ = live;
  // Blocking devices: a driver each. Asynchronous ones: grouped by the CPUs they are pinned
  // to, as many drivers per group as it has CPUs (never more threads than cores), devices
  // dealt round-robin.
  std::vector<std::pair<std::vector<int>, std::vector<Lane*>>> groups;
  for (auto& l : lanes_) {
    if (l->dev->blocking()) {
      auto d = std::make_unique<Driver>();
      d->lanes = {l.get()};
      d->cpus = l->dev->info.cpus;
      d->blocking = true;
      drivers_.push_back(std::move(d));
      continue;
    }
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == l->dev->info.cpus; });
    if (it == groups.end()) {
      groups.push_back({l->dev->info.cpus, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(l.get());
  }
  for (auto& [cpus, lanes] : groups) {
    size_t n = cpus.empty() ? lanes.size() : std::min(cpus.size(), lanes.size());
    for (size_t i = 0; i < n; ++i) {
      auto d = std::make_unique<Driver>();
      d->cpus = cpus;
      for (size_t k = i; k < lanes.size(); k += n) d->lanes.push_back(lanes[k]);
      drivers_.push_back(std::move(d));
    }
  }
  for (auto& d : drivers_) {
    int b = 0;
    d->min_batch = d->lanes[0]->dev->info.batch_size;
    for (Lane* l : d->lanes) {
      b += l->dev->info.batch_size;
      d->min_batch = std::min(d->min_batch, l->dev->info.batch_size);
    }
    d->chunk = size_t(std::max(1, b));
    bool all_dead = true;
    for (Lane* l : d->lanes) all_dead = all_dead && l->dead.load();
    d->dead = all_dead;
    d->responder.scratch = post_->scratch();
  }
  // Post-processing threads (detection): queue i serves drivers i, i+P, ...; thread j
  // serves queue j % Q, pinned to its first driver's CPUs.
  size_t nq = std::min(size_t(std::max(0, post_threads_)), drivers_.size());
  for (size_t q = 0; q < nq; ++q) {
    auto pq = std::make_unique<PostQueue>();
    pq->cpus = drivers_[q]->cpus;
    post_queues_.push_back(std::move(pq));
  }
  for (size_t i = 0; i < drivers_.size() && nq; ++i) drivers_[i]->post = post_queues_[i % nq].get();
  for (int j = 0; j < post_threads_ && nq; ++j) {
    PostQueue& q = *post_queues_[size_t(j) % nq];
    q.threads++;
    post_threads_list_.emplace_back([this, &q] { post_loop(q); });
  }
  for (auto& d : drivers_) {
    Driver* dp = d.get();
    d->thread = std::thread([this, dp] { drive(*dp); });
  }
  bool any_blocking = false;
  for (auto& d : drivers_) any_blocking = any_blocking || d->blocking;
  if (any_blocking) {
    watchdog_stop_ = false;
    watchdog_ = std::thread([this] { watchdog_loop(); });
  }
  started_ = true;
}

void Engine::stop() {
  if (!started_) return;
  stopping_.store(true, std::memory_order_release);
  if (watchdog_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(watchdog_mu_);
      watchdog_stop_ = true;
      watchdog_cv_.notify_all();
    }
    watchdog_.join();
  }
  notify_all_drivers();
  for (auto& d : drivers_) {
    if (d->abandoned.load()) {  // stuck in a device's run: left (engine.h)
      if (d->thread.joinable()) d->thread.detach();
    } else {
      d->thread.join();
    }
  }
  for (auto& q : post_queues_) {
    std::lock_guard<std::mutex> lk(q->mu);
    q->stop = true;
    q->cv.notify_all();
  }
  for (auto& t : post_threads_list_) t.join();
  post_threads_list_.clear();
  post_queues_.clear();
  fail_bulk();  // nothing left unanswered: any sample of a many-sample query not yet claimed
  if (!loadgen_abandoned()) drivers_.clear();  // else a late IssueQuery may still look at them
  started_ = false;
}

void Engine::notify_all_drivers() {
  for (auto& d : drivers_) {
    std::lock_guard<std::mutex> lk(d->mu);
    d->signal = true;
    d->cv.notify_one();
  }
}

// ---- LoadGen's side ---------------------------------------------------------------------

void Engine::IssueQuery(const std::vector<mlperf::QuerySample>& samples) {
  if (aborting()) {  // interrupted: LoadGen may go on issuing until its schedule ends
    std::vector<mlperf::ResponseId> ids(samples.size());
    for (size_t k = 0; k < samples.size(); ++k) ids[k] = samples[k].id;
    fail(ids.data(), int(ids.size()), "");
    return;
  }
  if (samples.size() != 1) {
    add_bulk(samples.data(), samples.size());
    return;
  }
  // One sample (Server, SingleStream): a batch's worth in a row to one driver, then the next.
  size_t k = route_single();
  if (k == drivers_.size()) {  // every device is dead
    fail(&samples[0].id, 1, "");
    return;
  }
  Driver& d = *drivers_[k];
  int64_t t = now_ns();
  {
    std::lock_guard<std::mutex> lk(d.mu);
    if (!d.dead.load()) {
      d.singles.push_back({samples[0].id, samples[0].index, t});
      if (d.singles.size() >= d.need) {
        d.signal = true;
        d.cv.notify_one();  // no system call unless the driver sleeps
      }
      return;
    }
  }
  fail(&samples[0].id, 1, "");  // it died just now
}

size_t Engine::route_single() {
  for (size_t tries = 0; tries < drivers_.size(); ++tries) {
    Driver& d = *drivers_[route_driver_];
    if (!d.dead.load(std::memory_order_relaxed)) {
      size_t k = route_driver_;
      if (++route_count_ >= d.chunk) {
        route_count_ = 0;
        route_driver_ = (route_driver_ + 1) % drivers_.size();
      }
      return k;
    }
    route_count_ = 0;
    route_driver_ = (route_driver_ + 1) % drivers_.size();
  }
  return drivers_.size();
}

void Engine::add_bulk(const mlperf::QuerySample* s, size_t n) {
  if (n == 0) return;
  auto r = std::make_shared<Range>();
  r->s = s;
  r->n = n;
  {
    std::lock_guard<std::mutex> lk(bulk_mu_);
    if (live_lanes_.load() > 0) r = (bulk_.push_back(std::move(r)), nullptr);
  }
  if (r) {  // every device is dead
    std::vector<mlperf::ResponseId> ids(n);
    for (size_t k = 0; k < n; ++k) ids[k] = s[k].id;
    fail(ids.data(), int(n), "");
    return;
  }
  notify_all_drivers();
}

void Engine::fail_bulk() {
  std::vector<mlperf::ResponseId> ids;
  {
    std::lock_guard<std::mutex> lk(bulk_mu_);
    for (auto& r : bulk_) {
      size_t i = r->next.fetch_add(r->n, std::memory_order_relaxed);
      for (size_t k = i; k < r->n; ++k) ids.push_back(r->s[k].id);
    }
    bulk_.clear();
  }
  if (!ids.empty()) fail(ids.data(), int(ids.size()), "");
}

// ---- the watchdog -------------------------------------------------------------------------

int64_t Engine::watchdog_limit(int64_t expected_ns) const {
  return std::max(watchdog_floor_ns_, int64_t(kWatchdogFactor) * std::max<int64_t>(0, expected_ns));
}

void Engine::stuck(Lane& lane, int64_t since_ns, int64_t expected_ns) {
  char msg[160];
  std::snprintf(msg, sizeof msg, "no batch completed for %.1f s (expected about %.1f ms per batch): the device is stuck",
                1e-9 * double(since_ns), 1e-6 * double(std::max<int64_t>(0, expected_ns)));
  record_error(lane.dev->info.name + ": " + msg);
  if (lane.dead.exchange(true)) return;
  if (live_lanes_.fetch_sub(1) == 1) fail_bulk();  // nobody is left to take shared work
}

void Engine::kill_lane(Driver& d, Lane& lane) {
  for (Batch* b : lane.pending) {
    fail(b->ids.data(), b->n, "");
    release(lane, b);
  }
  lane.pending.clear();
  bool all = true;
  for (Lane* l : d.lanes) all = all && l->dead.load();
  if (all) fail_routed(d, true);
}

void Engine::fail_routed(Driver& d, bool driver_thread) {
  std::vector<mlperf::ResponseId> ids;
  {
    std::lock_guard<std::mutex> lk(d.mu);
    d.dead = true;
    for (auto& s : d.singles) ids.push_back(s.id);
    d.singles.clear();
  }
  if (driver_thread) {  // FORMING is the driver thread's (and empty while a blocking run is stuck)
    for (auto& s : d.forming) ids.push_back(s.id);
    d.forming.clear();
  }
  if (!ids.empty()) fail(ids.data(), int(ids.size()), "");
}

void Engine::watchdog_loop() {
  std::unique_lock<std::mutex> lk(watchdog_mu_);
  while (!watchdog_stop_) {
    watchdog_cv_.wait_for(lk, std::chrono::milliseconds(250));
    if (watchdog_stop_) break;
    int64_t now = now_ns();
    for (auto& dp : drivers_) {
      Driver& d = *dp;
      if (!d.blocking) continue;
      Lane& l = *d.lanes[0];
      if (l.dead.load()) continue;
      int64_t t = l.run_start.load(std::memory_order_acquire);
      int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
      if (t <= 0 || now - t <= watchdog_limit(avg)) continue;
      Batch* b = l.running.load(std::memory_order_acquire);
      if (!l.run_start.compare_exchange_strong(t, -1)) continue;  // it returned just now
      d.abandoned = true;
      threads_abandoned_ = true;
      stuck(l, now - t, avg);
      if (b) fail(b->ids.data(), b->n, "");
      fail_routed(d, false);
    }
  }
}

void Engine::LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>& samples) {
  store_->load(samples.data(), samples.size());
  call_load_hook(samples.data(), samples.size());
}

void Engine::UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>&) {
  store_->unload();
  call_load_hook(nullptr, 0);
}

void Engine::call_load_hook(const size_t* indices, size_t n) {
  if (!load_hook_) return;
  try {
    load_hook_(indices, n);
  } catch (const std::exception& e) {  // LoadGen's thread cannot take it (engine.h)
    record_error(e.what());
  }
}

// ---- taking work ----------------------------------------------------------------------

bool Engine::take_bulk(Driver& d, Batch* b, int limit) {
  for (;;) {
    if (d.bulk) {
      Range& r = *d.bulk;
      size_t i = r.next.fetch_add(size_t(limit), std::memory_order_relaxed);
      if (i < r.n) {
        int m = int(std::min(size_t(limit), r.n - i));
        for (int k = 0; k < m; ++k) {
          b->ids[k] = r.s[i + k].id;
          b->idx[k] = r.s[i + k].index;
          b->issued[k] = 0;
        }
        b->n = m;
        return true;
      }
    }
    std::shared_ptr<Range> next;
    {
      std::lock_guard<std::mutex> lk(bulk_mu_);
      while (!bulk_.empty() && bulk_.front()->next.load(std::memory_order_relaxed) >= bulk_.front()->n)
        bulk_.pop_front();
      if (!bulk_.empty()) next = bulk_.front();
    }
    if (!next || next == d.bulk) {
      d.bulk = std::move(next);
      return false;
    }
    d.bulk = std::move(next);
  }
}

bool Engine::take(Driver& d, Batch* b, int limit, int64_t now) {
  if (int(d.forming.size()) < limit) {
    std::lock_guard<std::mutex> lk(d.mu);
    while (!d.singles.empty() && int(d.forming.size()) < limit) {
      if (d.forming.empty()) d.forming_deadline = d.singles.front().t + batch_timeout_ns_;
      d.forming.push_back(d.singles.front());
      d.singles.pop_front();
    }
  }
  if (!d.forming.empty()) {
    if (int(d.forming.size()) < limit && now < d.forming_deadline && !stopping() && !aborting()) return false;
    // At most this device's batch (devices of one driver may take different sizes); the
    // rest stays, keeping the oldest sample's deadline.
    int m = std::min(int(d.forming.size()), limit);
    for (int k = 0; k < m; ++k) {
      b->ids[k] = d.forming[k].id;
      b->idx[k] = d.forming[k].idx;
      b->issued[k] = d.forming[k].t;
    }
    b->n = m;
    d.forming.erase(d.forming.begin(), d.forming.begin() + m);
    return true;
  }
  return take_bulk(d, b, limit);
}

// ---- completing ---------------------------------------------------------------------------

void LatencyLog::start(int64_t t0_ns) {
  if (!counts_) counts_.reset(new std::atomic<uint32_t>[size_t(kMinutes) * kBins]);
  for (size_t i = 0; i < size_t(kMinutes) * kBins; ++i) counts_[i].store(0, std::memory_order_relaxed);
  t0_ = t0_ns;
  on_.store(true, std::memory_order_release);
}

void LatencyLog::add(int64_t now_ns, int64_t latency_ns) {
  int64_t minute = (now_ns - t0_) / 60'000'000'000LL;
  if (minute < 0 || minute >= kMinutes) return;
  double us = double(latency_ns) * 1e-3;
  int b = us <= 1 ? 0 : std::min(kBins - 1, int(16 * std::log2(us)));
  counts_[size_t(minute) * kBins + size_t(b)].fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::pair<int, std::vector<uint32_t>>> LatencyLog::minutes() const {
  std::vector<std::pair<int, std::vector<uint32_t>>> out;
  if (!counts_) return out;
  for (int m = 0; m < kMinutes; ++m) {
    std::vector<uint32_t> row(kBins);
    bool any = false;
    for (int b = 0; b < kBins; ++b) any |= (row[size_t(b)] = counts_[size_t(m) * kBins + size_t(b)].load()) != 0;
    if (any) out.emplace_back(m, std::move(row));
  }
  return out;
}

double LatencyLog::bin_upper_s(int b) { return std::exp2(double(b + 1) / 16) * 1e-6; }

void Engine::live_latency(bool on) {
  live_latency_on_.store(false, std::memory_order_relaxed);
  if (!on) return;
  for (auto& l : lanes_) l->live.clear();
  live_latency_on_.store(true, std::memory_order_release);
}

void Engine::complete(mlperf::QuerySampleResponse* r, size_t n) {
  if (serving_.load(std::memory_order_relaxed)) {
    serve_complete(r, n);
    return;
  }
  if (sink_.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lk(sink_mu_);
    sink_done_ += n;
    sink_events_.emplace_back(now_ns(), int(n));
    if (record_)
      for (size_t i = 0; i < n; ++i)
        recorded_.emplace_back(uint64_t(r[i].id), std::string(reinterpret_cast<const char*>(r[i].data), r[i].size));
    sink_cv_.notify_all();
    return;
  }
  mlperf::QuerySamplesComplete(r, n);
}

void Engine::record_error(const std::string& e) {
  std::lock_guard<std::mutex> lk(error_mu_);
  if (error_.empty()) error_ = e;
}

std::string Engine::error() {
  std::lock_guard<std::mutex> lk(error_mu_);
  return error_;
}

void Engine::fail(const mlperf::ResponseId* ids, int n, const std::string& why) {
  if (!why.empty()) record_error(why);
  std::vector<mlperf::QuerySampleResponse> r(size_t(std::max(0, n)));
  for (int i = 0; i < n; ++i) r[i] = mlperf::QuerySampleResponse(ids[i], 0, 0);
  if (n > 0) complete(r.data(), size_t(n));
}

void Engine::release(Lane& lane, Batch* b) {
  std::lock_guard<std::mutex> lk(lane.mu);
  lane.free.push_back(b);
}

void Engine::finish(Lane& lane, Batch* b, Responder& r) {
  int64_t t0 = now_ns();
  size_t n = size_t(b->n);
  size_t need = n * std::max<size_t>(1, post_->max_response_bytes());
  if (r.data.size() < need) r.data.resize(need);
  if (r.offset.size() < n) {
    r.offset.resize(n);
    r.size.resize(n);
    r.qsr.resize(n);
  }
  std::string err;
  bool ok = false;
  try {
    ok = post_->run(const_cast<const void* const*>(b->outputs.data()), b->n, b->idx.data(), r.data.data(),
                    r.offset.data(), r.size.data(), r.scratch.get(), &err);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!ok) {
    fail(b->ids.data(), b->n, "post-processing on " + lane.dev->info.name + ": " + err);
    return;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(r.data.data());
  for (size_t i = 0; i < n; ++i) r.qsr[i] = mlperf::QuerySampleResponse(b->ids[i], base + r.offset[i], r.size[i]);
  // Before LoadGen takes its own completion time, so that the live latency is never above
  // LoadGen's (which also counts from the scheduled issue, at or before IssueQuery).
  const int64_t t_live = live_latency_on() ? now_ns() : 0;
  complete(r.qsr.data(), n);  // R's buffers are reused only after this returns
  int64_t t1 = now_ns();
  if (latency_log.on())
    for (size_t i = 0; i < n; ++i)
      if (b->issued[i]) latency_log.add(t1, t1 - b->issued[i]);
  if (t_live)
    for (size_t i = 0; i < n; ++i)
      if (b->issued[i]) lane.live.add(t_live - b->issued[i]);
  lane.stats.post_ns.fetch_add(t1 - t0, std::memory_order_relaxed);
}

void Engine::deliver(Driver& d, Lane& lane, Batch* b, int status) {
  if (status != VP_OK) {
    fail(b->ids.data(), b->n, lane.dev->info.name + ": " + lane.dev->last_error());
    release(lane, b);
    return;
  }
  lane.stats.batches++;
  lane.stats.samples += uint64_t(b->n);
  if (d.post) {
    std::unique_lock<std::mutex> lk(d.post->mu);
    if (d.post->q.size() < 4 * d.post->threads) {  // else post-processing is behind: help it
      d.post->q.emplace_back(&lane, b);
      d.post->cv.notify_one();
      return;
    }
  }
  finish(lane, b, d.responder);
  release(lane, b);
}

void Engine::post_loop(PostQueue& q) {
  pin_thread(q.cpus);
  Responder r;
  r.scratch = post_->scratch();
  for (;;) {
    std::pair<Lane*, Batch*> item;
    {
      std::unique_lock<std::mutex> lk(q.mu);
      q.cv.wait(lk, [&] { return q.stop || !q.q.empty(); });
      if (q.q.empty()) return;
      item = q.q.front();
      q.q.pop_front();
    }
    finish(*item.first, item.second, r);
    release(*item.first, item.second);
  }
}

// ---- the driver ---------------------------------------------------------------------------

void Engine::drive(Driver& d) {
  pin_thread(d.cpus);
  std::vector<Lane*> order = d.lanes;
  auto acquire = [&](Lane& l) -> Batch* {
    for (int tries = 0; tries < 2; ++tries) {
      {
        std::lock_guard<std::mutex> lk(l.mu);
        if (!l.free.empty()) {
          Batch* b = l.free.back();
          l.free.pop_back();
          return b;
        }
      }
      // Every spare batch sits in post-processing: do one of those here, then retry.
      if (!d.post) return nullptr;
      std::pair<Lane*, Batch*> item{nullptr, nullptr};
      {
        std::lock_guard<std::mutex> lk(d.post->mu);
        if (!d.post->q.empty()) {
          item = d.post->q.front();
          d.post->q.pop_front();
        }
      }
      if (!item.first) return nullptr;
      finish(*item.first, item.second, d.responder);
      release(*item.first, item.second);
    }
    return nullptr;
  };
  auto fail_all_queued = [&]() {  // aborting: nothing new starts, queued samples fail at once
    Batch tmp;
    tmp.ids.resize(size_t(batch_size_) * 64);
    tmp.idx.resize(tmp.ids.size());
    tmp.issued.resize(tmp.ids.size());
    while (take(d, &tmp, int(tmp.ids.size()), kInf)) fail(tmp.ids.data(), tmp.n, "");
  };

  for (;;) {
    int64_t now = now_ns();
    int64_t wake = kInf;
    bool room = false, fed = false, starved = false;
    if (d.dead.load()) {  // every device of this driver is stuck: fail what is routed here
      fail_routed(d, true);
      if (stopping()) return;
      std::unique_lock<std::mutex> lk(d.mu);
      d.need = 1;
      d.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return d.signal; });
      d.signal = false;
      continue;
    }
    if (aborting()) fail_all_queued();
    if (order.size() > 1)  // most urgent first: idle devices, then the one whose newest batch ends soonest
      std::sort(order.begin(), order.end(), [](Lane* a, Lane* b) {
        int64_t ka = a->pending.empty() ? -1 : a->pending.back()->ready;
        int64_t kb = b->pending.empty() ? -1 : b->pending.back()->ready;
        return ka < kb;
      });
    for (size_t li = 0; li < order.size(); ++li) {
      Lane& l = *order[li];
      if (l.dead.load(std::memory_order_relaxed)) continue;
      Device& dev = *l.dev;
      auto& p = l.pending;
      int64_t poll_at = 0;
      while (!p.empty()) {
        Batch* b = p.front();
        if (b->ready && now < b->ready) break;
        int s = dev.collect(b->ticket, b->outputs.data(), 0);
        if (s == VP_NOT_READY) {
          // The watchdog: overdue past its announced time, or (none announced) running for
          // far longer than the device's batches take.
          int64_t since = std::max(b->start, l.last_done);
          int64_t expected = b->ready ? b->ready - b->start : l.batch_ns.load(std::memory_order_relaxed);
          if ((b->ready ? now - b->ready : now - since) > watchdog_limit(expected)) {
            stuck(l, now - since, expected);
            kill_lane(d, l);
            break;
          }
          // A device that only estimates its ready time (a GPU, a remote node) is looked at
          // again within 1/32 of a batch's time: each look may cost it a lock (a Python
          // device's takes the GIL), and 3% of a batch is all the delay it adds.
          poll_at = now + (dev.info.exact_ready ? kPollNs
                                                : std::clamp<int64_t>(expected / 32, kPollNs, 1000000));
          break;
        }
        p.pop_front();
        int64_t done = (b->ready && dev.info.exact_ready) ? b->ready : now;
        l.stats.busy_s += 1e-9 * double(std::max<int64_t>(0, done - b->start));
        int64_t took = std::max<int64_t>(0, done - std::max(b->start, l.last_done));
        int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
        l.batch_ns.store(avg ? avg + (took - avg) / 8 : took, std::memory_order_relaxed);
        l.last_done = done;
        deliver(d, l, b, s);
        now = now_ns();
      }
      if (l.dead.load(std::memory_order_relaxed)) continue;
      const int cap = dev.info.max_in_flight;
      while (int(p.size()) < cap && !aborting() && !l.dead.load(std::memory_order_relaxed)) {
        Batch* b = acquire(l);
        if (!b) {
          starved = true;
          break;
        }
        if (!take(d, b, dev.info.batch_size, now)) {
          release(l, b);
          break;
        }
        int64_t t0 = now_ns();
        if (dev.info.reads_input) store_->gather(dev.info.replica, b->idx.data(), size_t(b->n), l.staging);
        int rows = dev.info.fixed_batch ? dev.info.batch_size : b->n;
        if (dev.blocking()) {
          int64_t t1 = now_ns();
          l.running.store(b, std::memory_order_relaxed);
          l.run_start.store(std::max<int64_t>(1, t1), std::memory_order_release);
          int s = dev.run(l.staging, rows, b->idx.data(), b->outputs.data());
          if (l.run_start.exchange(0) < 0) {  // the watchdog failed it and this device meanwhile
            l.running.store(nullptr);
            release(l, b);
            continue;
          }
          l.running.store(nullptr);
          now = now_ns();
          l.stats.host_s += 1e-9 * double(t1 - t0);
          l.stats.busy_s += 1e-9 * double(now - t1);
          int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
          l.batch_ns.store(avg ? avg + (now - t1 - avg) / 8 : now - t1, std::memory_order_relaxed);
          deliver(d, l, b, s);
          fed = true;
          continue;
        }
        uint64_t ticket = 0;
        int64_t ready = 0;
        int s = dev.submit_indexed(l.staging, rows, b->idx.data(), b->n, &ticket, &ready);
        now = now_ns();
        l.stats.host_s += 1e-9 * double(now - t0);
        l.refill_ns += (now - t0 - l.refill_ns) / 8;
        if (s != VP_OK) {
          fail(b->ids.data(), b->n, dev.info.name + ": " + dev.last_error());
          release(l, b);
          continue;
        }
        b->ticket = ticket;
        b->start = std::max(now, p.empty() ? 0 : p.back()->ready);  // the device's own start
        b->ready = ready;
        p.push_back(b);
        fed = true;
      }
      room = room || int(p.size()) < cap;
      if (!p.empty()) {
        Batch* f = p.front();
        int64_t due = poll_at ? poll_at : (f->ready ? f->ready : now + kPollNs);
        if (throughput_only_ && !poll_at) {
          // Offline: a device is fed in time as long as its next batch is submitted before
          // its newest one ends, so wake with half of that one's run time to spare (or, when
          // gathering and submitting a batch takes longer, twice that time); devices then
          // share wake-ups and complete several batches each time.
          Batch* last = p.back();
          int64_t spare = std::max((last->ready - last->start) / 2, 2 * l.refill_ns);
          if (last->ready) due = std::max(due, last->ready - spare);
        }
        wake = std::min(wake, due);
      }
    }
    if (fed) continue;
    if (starved) wake = std::min(wake, now_ns() + 50000);
    bool idle = true;
    for (Lane* l : d.lanes) idle = idle && l->pending.empty();
    if (stopping() && idle && d.forming.empty()) {
      std::lock_guard<std::mutex> lk(d.mu);
      if (d.singles.empty()) return;
      continue;
    }
    if (!d.forming.empty()) wake = std::min(wake, d.forming_deadline);
    std::unique_lock<std::mutex> lk(d.mu);
    d.need = d.forming.empty() ? 1 : size_t(std::max<int>(1, d.min_batch - int(d.forming.size())));
    if (d.signal && room) {
      d.signal = false;
      continue;
    }
    if (!room) {  // nothing could be fed before a batch completes: sleep until one does
      lk.unlock();
      if (wake != kInf) sleep_until_ns(wake);
      continue;
    }
    if (wake == kInf)
      d.cv.wait(lk, [&] { return d.signal; });
    else
      d.cv.wait_until(lk, at(wake), [&] { return d.signal; });
    d.signal = false;
  }
}

// ---- a LoadGen test -----------------------------------------------------------------------

bool Engine::run_test(const TestConfig& c, const std::function<bool()>& interrupted) {
  mlperf::TestSettings s;
  if (s.FromConfig(c.user_conf, c.model, c.scenario) != 0)
    throw Error("LoadGen rejected " + c.user_conf + ": check its keys against mlperf.conf");
  if (c.scenario == "Offline")
    s.scenario = mlperf::TestScenario::Offline;
  else if (c.scenario == "Server")
    s.scenario = mlperf::TestScenario::Server;
  else if (c.scenario == "SingleStream")
    s.scenario = mlperf::TestScenario::SingleStream;
  else if (c.scenario == "MultiStream")
    s.scenario = mlperf::TestScenario::MultiStream;
  else
    throw Error("unknown scenario " + c.scenario);
  s.mode = c.mode == "accuracy" ? mlperf::TestMode::AccuracyOnly : mlperf::TestMode::PerformanceOnly;
  mlperf::LogSettings ls;
  ls.log_output.outdir = c.outdir;
  ls.log_output.copy_summary_to_stdout = false;
  ls.enable_trace = false;
  total_ = c.total;
  performance_count_ = c.performance_count;

  // Shared with LoadGen's thread, which may outlive this call (see engine.h).
  struct Shared {
    mlperf::TestSettings settings;
    mlperf::LogSettings log;
    std::string audit;
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::string failure;
  };
  auto sh = std::make_shared<Shared>();
  sh->settings = s;
  sh->log = ls;
  sh->audit = c.audit_config;
  std::thread t([this, sh] {
    std::string failure;
    try {
      mlperf::StartTest(this, this, sh->settings, sh->log, sh->audit);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    std::lock_guard<std::mutex> lk(sh->m);
    sh->failure = failure;
    sh->done = true;
    sh->cv.notify_all();
  });
  constexpr auto kGrace = std::chrono::milliseconds(1000);  // for StartTest to end once aborted
  bool was_interrupted = false;
  {
    std::unique_lock<std::mutex> lk(sh->m);
    std::chrono::steady_clock::time_point give_up{};
    while (!sh->done) {
      if (was_interrupted) {
        if (!sh->cv.wait_until(lk, give_up, [&] { return sh->done; })) break;
        continue;
      }
      sh->cv.wait_for(lk, std::chrono::milliseconds(100));
      if (sh->done) break;
      lk.unlock();
      if (interrupted()) {
        was_interrupted = true;
        give_up = std::chrono::steady_clock::now() + kGrace;
        abort();
      }
      lk.lock();
    }
    if (!sh->done) {  // LoadGen is still issuing on its schedule: leave it (engine.h)
      loadgen_abandoned_ = true;
      lk.unlock();
      t.detach();
      return false;
    }
  }
  t.join();
  if (!sh->failure.empty()) throw Error("LoadGen: " + sh->failure);
  return !was_interrupted;
}

void Engine::abort() {
  // Not mlperf::AbortTest(): it stops LoadGen's log thread, and StartTest then waits forever
  // for latencies that thread would have recorded. Failing every sample ends an Offline test.
  aborting_.store(true);
  notify_all_drivers();
}

// ---- warm-up --------------------------------------------------------------------------------

std::vector<std::pair<int64_t, int>> Engine::measure_rate(double seconds) {
  const auto& loaded = store_->loaded();
  if (loaded.empty()) throw Error("measure_rate needs loaded samples");
  size_t chunk = std::max<size_t>(1, capacity()) * size_t(batch_size_);
  std::deque<std::vector<mlperf::QuerySample>> lists;  // alive until their samples complete
  {
    std::lock_guard<std::mutex> lk(sink_mu_);
    sink_done_ = 0;
    sink_events_.clear();
  }
  sink_ = true;
  uint64_t issued = 0;
  size_t cursor = 0;
  auto feed = [&] {
    std::vector<mlperf::QuerySample> q(chunk);
    for (auto& s : q) s = {mlperf::ResponseId(1), loaded[cursor++ % loaded.size()]};
    lists.push_back(std::move(q));
    issued += chunk;
    add_bulk(lists.back().data(), chunk);
  };
  const int64_t t0 = now_ns(), t_end = t0 + int64_t(seconds * 1e9), t_give_up = t0 + int64_t(10 * seconds * 1e9) + 2000000000LL;
  const int64_t t_count = t0 + int64_t(0.3 * seconds * 1e9);
  feed();
  feed();
  std::unique_lock<std::mutex> lk(sink_mu_);
  for (;;) {
    sink_cv_.wait_for(lk, std::chrono::milliseconds(5));
    uint64_t done = sink_done_;
    int64_t now = now_ns();
    if (!error().empty()) break;
    // A burst (every outstanding batch finishing together after a stall) is not a rate: the
    // counted window must hold several batches per device and span most of the time asked.
    if (now >= t_end) {
      uint64_t counted = 0;
      int64_t first = 0, last = 0;
      for (auto& [t, n] : sink_events_)
        if (t >= t_count) {
          if (!first) first = t;
          else counted += uint64_t(n);
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
  sink_cv_.wait(lk, [&] { return sink_done_ >= issued; });  // drain
  sink_ = false;
  auto events = sink_events_;
  lk.unlock();
  for (auto& e : events) e.first -= t0;
  return events;
}

std::vector<double> Engine::measure_latency(int samples, double seconds) {
  const auto& loaded = store_->loaded();
  if (loaded.empty()) throw Error("measure_latency needs loaded samples");
  std::vector<mlperf::QuerySample> q(size_t(std::max(1, samples)));
  for (size_t k = 0; k < q.size(); ++k) q[k] = {mlperf::ResponseId(1), loaded[k % loaded.size()]};
  {
    std::lock_guard<std::mutex> lk(sink_mu_);
    sink_done_ = 0;
    sink_events_.clear();
  }
  sink_ = true;
  std::vector<double> times;
  const int64_t t_end = now_ns() + int64_t(seconds * 1e9);
  uint64_t issued = 0;
  while (now_ns() < t_end || times.size() < 3) {
    int64_t t = now_ns();
    issued += q.size();
    if (q.size() == 1) {
      IssueQuery(q);  // the one-sample path, as SingleStream takes it
    } else {
      add_bulk(q.data(), q.size());
    }
    std::unique_lock<std::mutex> lk(sink_mu_);
    sink_cv_.wait(lk, [&] { return sink_done_ >= issued; });
    times.push_back(1e-9 * double(now_ns() - t));
    if (!error().empty()) break;
  }
  sink_ = false;
  return times;
}

void Engine::record_responses() {
  std::lock_guard<std::mutex> lk(sink_mu_);
  record_ = true;
  recorded_.clear();
  sink_ = true;
}

void Engine::issue_direct(std::vector<mlperf::QuerySample> q) {
  const std::vector<mlperf::QuerySample>* list;
  {
    std::lock_guard<std::mutex> lk(sink_mu_);
    // Without a sink the responses would go to LoadGen, which has no test running: refuse.
    if (!sink_.load()) throw Error("issue() outside a LoadGen test: call record_responses() first");
    direct_lists_.push_back(std::move(q));
    list = &direct_lists_.back();
  }
  IssueQuery(*list);
}

std::vector<std::pair<uint64_t, std::string>> Engine::wait_responses(size_t count, double timeout_s) {
  std::unique_lock<std::mutex> lk(sink_mu_);
  sink_cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return recorded_.size() >= count; });
  return recorded_;
}

// ---- a cluster node: forwarded batches ------------------------------------------------------

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

std::string Engine::serve(const size_t* indices, size_t n) {
  ServeSlot slot;
  slot.stride = 8 + post_->max_response_bytes();
  if (n == 0) return {};
  slot.rows.assign(n * slot.stride, '\0');
  slot.left = n;
  std::vector<ServeEntry> entries(n);
  std::vector<mlperf::QuerySample> q(n);  // read by the drivers until every sample is claimed
  for (size_t k = 0; k < n; ++k) {
    entries[k] = {&slot, k};
    q[k] = {mlperf::ResponseId(&entries[k]), indices[k]};
  }
  serving_.store(true);
  add_bulk(q.data(), n);
  {
    std::unique_lock<std::mutex> lk(slot.mu);
    slot.cv.wait(lk, [&] { return slot.done; });
  }
  if (size_t f = slot.failed.load()) {
    std::string why = error();
    throw Error(std::to_string(f) + " of " + std::to_string(n) + " samples failed: " +
                (why.empty() ? std::string("the engine stopped") : why));
  }
  return std::move(slot.rows);
}

void Engine::serve_complete(mlperf::QuerySampleResponse* r, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    auto* e = reinterpret_cast<ServeEntry*>(r[i].id);
    ServeSlot& s = *e->slot;
    if (r[i].data == 0) {  // fail() answers with no data; an empty detection list has some
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

void Engine::reset_stats() {
  for (auto& l : lanes_) {
    l->stats.batches = l->stats.samples = 0;
    l->stats.busy_s = l->stats.host_s = 0;
    l->stats.post_ns = 0;
    l->counters_base = l->dev->counters();  // the device's counters run from its open
  }
}

}  // namespace vp
