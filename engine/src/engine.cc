#include "engine.h"

#include <algorithm>
#include <atomic>

#include "completer.h"
#include "driver.h"
#include "lane.h"
#include "loadgen_test.h"
#include "node_server.h"
#include "response_recorder.h"
#include "warmup.h"
#include "watchdog.h"
#include "work_queues.h"

namespace vp {

namespace {
constexpr int kSpareBatches = 4;  // per device, beyond max_in_flight: batches in post-processing

struct DriverPlan {
  std::vector<Lane*> lanes;
  std::vector<int> cpus;
  bool blocking = false;
};

// Blocking devices: a driver each. Asynchronous ones: grouped by the CPUs they are pinned to,
// as many drivers per group as it has CPUs (never more threads than cores), devices dealt
// round-robin.
std::vector<DriverPlan> plan_drivers(const std::vector<std::unique_ptr<Lane>>& lanes) {
  std::vector<DriverPlan> plans;
  std::vector<std::pair<std::vector<int>, std::vector<Lane*>>> groups;
  for (auto& l : lanes) {
    const std::vector<int>& cpus = l->dev->info.cpus;
    if (l->dev->blocking()) {
      plans.push_back({{l.get()}, cpus, true});
      continue;
    }
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == cpus; });
    if (it == groups.end()) {
      groups.push_back({cpus, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(l.get());
  }
  for (auto& [cpus, members] : groups) {
    size_t n = cpus.empty() ? members.size() : std::min(cpus.size(), members.size());
    for (size_t i = 0; i < n; ++i) {
      DriverPlan p{{}, cpus, false};
      for (size_t k = i; k < members.size(); k += n) p.lanes.push_back(members[k]);
      plans.push_back(std::move(p));
    }
  }
  return plans;
}
}  // namespace

struct Engine::Parts {
  Parts(std::unique_ptr<SampleStore> store_, std::unique_ptr<Post> post_, int batch_size_)
      : store(std::move(store_)),
        post(std::move(post_)),
        batch_size(batch_size_),
        completer(*post),
        queues(completer),
        watchdog(completer, queues),
        warmup(*store, queues, completer),
        server(queues, completer),
        recorder(queues, completer) {}

  std::unique_ptr<SampleStore> store;
  std::unique_ptr<Post> post;
  int batch_size;
  int64_t batch_timeout_ns = 0;
  bool throughput_only = false;
  int post_threads = 0;
  std::vector<std::unique_ptr<Lane>> lanes;
  Completer completer;
  WorkQueues queues;
  Watchdog watchdog;
  std::vector<std::unique_ptr<Driver>> drivers;
  Warmup warmup;
  NodeServer server;
  ResponseRecorder recorder;
  LoadHook load_hook;
  bool started = false;
  std::atomic<bool> loadgen_abandoned{false};
  std::atomic<bool> drivers_left{false};  // an interrupted warm-up left them waiting on their devices

  Warmup::Stop warmup_stop(const std::function<bool()>& interrupted, Engine& engine) {
    if (drivers_left) throw Error("the engine was left running after an interrupted warm-up");
    return {interrupted, [&engine] { engine.abort(); }};
  }
  bool warmup_ended(Warmup::End end) {
    if (end == Warmup::End::abandoned) drivers_left = true;
    return end == Warmup::End::finished;
  }
};

Engine::Engine(std::unique_ptr<SampleStore> store, std::unique_ptr<Post> post, int batch_size) {
  if (batch_size < 1) throw Error("batch size must be at least 1");
  parts_ = std::make_unique<Parts>(std::move(store), std::move(post), batch_size);
}

Engine::~Engine() {
  stop();
  parts_->store->forget_readers();  // fetch devices unregister their rows before they close
  parts_->drivers.clear();
  parts_->lanes.clear();  // closes the devices before the plug-in libraries they came from
}

void Engine::add_device(std::unique_ptr<Device> device) {
  if (parts_->started) throw Error("devices are added before the engine starts");
  Device* dev = device.get();
  if (dev->info.fetches_rows) {
    if (dev->blocking()) throw Error(dev->info.name + ": a blocking device cannot fetch its own rows");
    if (size_t(dev->info.replica) >= parts_->store->replicas())
      throw Error(dev->info.name + " reads replica " + std::to_string(dev->info.replica) + " of " +
                  std::to_string(parts_->store->replicas()));
  }
  parts_->lanes.push_back(std::make_unique<Lane>(std::move(device), kSpareBatches));
  if (dev->info.fetches_rows) {  // told of its replica at every load, before every free
    size_t row_bytes = parts_->store->row_bytes();
    int region = dev->info.replica;
    parts_->store->add_reader({region,
                               [dev, region, row_bytes](const uint8_t* base, size_t bytes) {
                                 dev->register_region(region, base, bytes, row_bytes);
                               },
                               [dev, region] { dev->unregister_region(region); }});
  }
}

void Engine::set_batch_timeout(double seconds) { parts_->batch_timeout_ns = int64_t(seconds * 1e9); }
void Engine::set_throughput_only(bool on) { parts_->throughput_only = on; }
void Engine::set_post_threads(int n) { parts_->post_threads = n; }
void Engine::set_watchdog(double seconds) { parts_->watchdog.set_floor(seconds); }

void Engine::start() {
  Parts& p = *parts_;
  if (p.started) return;
  if (p.lanes.empty()) throw Error("no devices");
  if (p.drivers_left) throw Error("the engine was left running after an interrupted warm-up");
  int live = 0;  // a device found stuck stays dead across restarts (the error is kept)
  for (auto& l : p.lanes) live += l->dead.load() ? 0 : 1;
  p.queues.open(live, p.batch_timeout_ns);
  const DriverContext context{*p.store, p.queues, p.completer, p.watchdog, p.throughput_only, p.batch_size};
  std::vector<std::vector<int>> driver_cpus;
  for (DriverPlan& plan : plan_drivers(p.lanes)) {
    driver_cpus.push_back(plan.cpus);
    p.drivers.push_back(std::make_unique<Driver>(std::move(plan.lanes), std::move(plan.cpus), plan.blocking,
                                                 p.queues.add_queue(), context));
  }
  std::vector<PostQueue*> post = p.completer.start_post_threads(driver_cpus, p.post_threads);
  std::vector<Watchdog::Blocking> blocking;
  for (size_t i = 0; i < p.drivers.size(); ++i) {
    p.drivers[i]->start(post[i]);
    if (p.drivers[i]->blocking()) blocking.push_back({&p.drivers[i]->lane(0), &p.drivers[i]->queue()});
  }
  p.watchdog.start(std::move(blocking));
  p.started = true;
}

void Engine::stop() {
  Parts& p = *parts_;
  if (!p.started) return;
  p.queues.stop();
  p.watchdog.stop();
  p.queues.wake_all();
  if (p.drivers_left) {  // they wait on their devices, and may still complete into the queues
    p.started = false;
    return;
  }
  for (auto& d : p.drivers) d->join();
  p.completer.stop_post_threads();
  p.queues.fail_bulk();  // nothing left unanswered: any sample of a many-sample query not yet claimed
  if (!loadgen_abandoned()) {  // else a late IssueQuery may still look at the queues
    p.drivers.clear();
    p.queues.clear();
  }
  p.started = false;
}

bool Engine::run_test(const TestConfig& config, const std::function<bool()>& interrupted) {
  Parts& p = *parts_;
  auto test = std::make_shared<LoadGenTest>(config, p.queues, *p.store, p.completer, p.load_hook);
  LoadGenTest::End end = LoadGenTest::run(std::move(test), interrupted, [this] { abort(); });
  if (end == LoadGenTest::End::abandoned) p.loadgen_abandoned = true;
  return end == LoadGenTest::End::finished;
}

// Not mlperf::AbortTest(): it stops LoadGen's log thread, and StartTest then waits forever
// for latencies that thread would have recorded. Failing every sample ends an Offline test.
void Engine::abort() { parts_->queues.abort(); }

bool Engine::loadgen_abandoned() const {
  return parts_->loadgen_abandoned.load() || parts_->watchdog.abandoned() || parts_->drivers_left.load();
}

void Engine::set_load_hook(LoadHook hook) { parts_->load_hook = std::move(hook); }

bool Engine::measure_rate(double seconds, const std::function<bool()>& interrupted,
                          std::vector<std::pair<int64_t, int>>* events) {
  Parts& p = *parts_;
  Warmup::Stop stop = p.warmup_stop(interrupted, *this);
  size_t chunk = std::max<size_t>(1, capacity()) * size_t(p.batch_size);
  return p.warmup_ended(p.warmup.measure_rate(seconds, chunk, stop, events));
}

bool Engine::measure_latency(int samples, double seconds, const std::function<bool()>& interrupted,
                             std::vector<double>* times) {
  Parts& p = *parts_;
  Warmup::Stop stop = p.warmup_stop(interrupted, *this);
  return p.warmup_ended(p.warmup.measure_latency(samples, seconds, stop, times));
}

std::string Engine::serve(const size_t* indices, size_t n) { return parts_->server.serve(indices, n); }
size_t Engine::max_response_bytes() const { return parts_->post->max_response_bytes(); }

void Engine::record_responses() { parts_->recorder.start(); }
void Engine::issue_direct(std::vector<mlperf::QuerySample> query) { parts_->recorder.issue(std::move(query)); }
std::vector<std::pair<uint64_t, std::string>> Engine::wait_responses(size_t count, double timeout_s) {
  return parts_->recorder.wait(count, timeout_s);
}

SampleStore& Engine::store() { return *parts_->store; }

size_t Engine::capacity() const {
  size_t c = 0;
  for (auto& l : parts_->lanes) c += size_t(l->dev->info.max_in_flight);
  return c;
}

std::string Engine::error() { return parts_->completer.error(); }

std::vector<DeviceStats> Engine::stats() {
  std::vector<DeviceStats> out;
  for (auto& l : parts_->lanes) {
    const DeviceInfo& info = l->dev->info;
    vp_device_counters c = l->dev->counters();  // since its open: less the part before reset_stats
    DeviceStats s;
    s.name = info.name;
    s.cpus = info.cpus;
    s.batches = l->stats.batches;
    s.samples = l->stats.samples;
    s.busy_s = l->stats.busy_s;
    s.host_s = l->stats.host_s;
    s.post_s = 1e-9 * double(l->stats.post_ns.load());
    s.card_copy_cpu_s = c.copy_cpu_s - l->counters_base.copy_cpu_s;
    s.late_s = c.late_s - l->counters_base.late_s;
    s.batch_size = info.batch_size;
    s.max_in_flight = info.max_in_flight;
    s.fixed_batch = info.fixed_batch;
    s.device_fetch = info.fetches_rows;
    out.push_back(std::move(s));
  }
  return out;
}

void Engine::reset_stats() {
  for (auto& l : parts_->lanes) {
    l->stats.batches = l->stats.samples = 0;
    l->stats.busy_s = l->stats.host_s = 0;
    l->stats.post_ns = 0;
    l->counters_base = l->dev->counters();  // the device's counters run from its open
  }
}

LiveView Engine::live() const {
  LiveView v;
  std::vector<uint64_t> hist(LiveLatency::kBins, 0);
  bool latency = parts_->completer.live_latency_on();
  for (auto& l : parts_->lanes) {
    v.samples.push_back(l->stats.samples);
    v.batches.push_back(l->stats.batches);
    v.busy_s.push_back(l->stats.busy_s);
    if (latency)
      for (int b = 0; b < LiveLatency::kBins; ++b) hist[size_t(b)] += l->live.counts[b].load(std::memory_order_relaxed);
  }
  for (int b = 0; b < LiveLatency::kBins; ++b)
    if (hist[size_t(b)])
      v.latency.push_back({1e-9 * double(LiveLatency::lower_ns(b)), 1e-9 * double(LiveLatency::upper_ns(b)), hist[size_t(b)]});
  return v;
}

void Engine::live_latency(bool on) {
  parts_->completer.set_live_latency(false);
  if (!on) return;
  for (auto& l : parts_->lanes) l->live.clear();
  parts_->completer.set_live_latency(true);
}

void Engine::latency_log_start() { parts_->completer.latency_log.start(now_ns()); }

std::vector<std::pair<int, std::vector<uint32_t>>> Engine::latency_minutes() const {
  return parts_->completer.latency_log.minutes();
}

}  // namespace vp
