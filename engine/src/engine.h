// The engine: visionperf's system under test and sample library, compiled (DESIGN.md).
//
//   LoadGen (C++) --IssueQuery--> per-driver queues (one-sample queries) | shared bulk ranges
//     --> one driver thread per core group: gather (memcpy from its device's replica)
//         -> device submit ... collect -> post-processing (here, or on post threads)
//         -> one QuerySamplesComplete per batch, from the thread that finished it.
//
// LoadGen owns time, the QSL side (SampleStore) owns samples, this engine owns compute. No
// Python runs per sample anywhere; a Python device (bindings.cc) is called once per batch.
//
// Work distribution. A one-sample query (Server, SingleStream) goes to one driver's own
// queue, batch_size samples in a row to the same driver so batches fill, then the next
// driver: no lock is shared between drivers. A many-sample query (Offline, MultiStream) is
// one range over LoadGen's own sample list, which stays alive until its samples complete
// (the response ids point into it); drivers claim batch_size samples at a time with one
// atomic add, so whichever device is free takes the next batch. A Server batch is every
// queued sample up to the batch size, waiting for more only until the batch timeout,
// counted from its oldest sample's arrival.
//
// Drivers. An asynchronous device (the plug-in ABI: submit/collect) is driven by the one
// thread of its core group, which keeps every device there fed with up to max_in_flight
// batches: most urgent first, it completes what is ready, gathers and submits, and otherwise
// sleeps until a batch is due, work arrives or a forming batch times out. Threads never
// outnumber the cores they are pinned to. A blocking device (a Python device computing on
// the host's cores) gets a driver of its own that runs each batch in place.
//
// Failure. Any device or post-processing error fails the samples it holds to LoadGen (a
// response of size 0) and is kept for the caller; a run never waits on a lost sample.
//
// Watchdog. A device that stops completing batches is failed, not waited on: when its oldest
// batch has gone without completing for longer than the limit, max(the floor, 10 s unless
// set_watchdog says otherwise, and kWatchdogFactor x the batch's expected time: its announced
// run time, or for a device that announces none a moving average of its observed batches),
// the device is dead: the error `<device>: no batch completed for X s (expected about Y ms
// per batch): the device is stuck` is recorded, every batch it holds is failed, it is given
// no more work (its driver's other devices, or other drivers, take it; with none left alive,
// whatever is routed to it is failed at once). An asynchronous device is checked by its
// driver, only when a collect finds its oldest batch still not ready (never per sample). A
// blocking device cannot be interrupted: a watchdog thread (one per engine, when it has
// blocking devices, waking 4 times a second) fails the batch in run (an atomic claim decides
// who completes its samples, so they complete once) and what is queued to its driver; the
// stuck thread is left running, stop() does not join it, and loadgen_abandoned() then says
// so: the engine is never destroyed and the process ends with _exit, as after an abandoned
// LoadGen test.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices.h"
#include "loadgen.h"
#include "post.h"
#include "query_sample_library.h"
#include "store.h"
#include "system_under_test.h"
#include "test_settings.h"

namespace vp {

// A counter with one writer (a lane's driver thread) that other threads read while it is
// written (Engine.live(), several times a second): relaxed loads and stores, which on x86 are
// the plain moves a bare field compiles to, with no lock and no read-modify-write.
template <class T>
class Relaxed {
 public:
  Relaxed(T v = T()) : v_(v) {}
  Relaxed(const Relaxed& o) : v_(T(o)) {}
  operator T() const { return v_.load(std::memory_order_relaxed); }
  Relaxed& operator=(T v) {
    v_.store(v, std::memory_order_relaxed);
    return *this;
  }
  Relaxed& operator=(const Relaxed& o) { return *this = T(o); }
  Relaxed& operator+=(T d) { return *this = T(*this) + d; }  // single writer: no lost updates
  void operator++(int) { *this += T(1); }

 private:
  std::atomic<T> v_;
};

struct LaneStats {
  Relaxed<uint64_t> batches = 0, samples = 0;
  Relaxed<double> busy_s = 0;  // the device's own time on its batches
  Relaxed<double> host_s = 0;  // gathering and submitting
  std::atomic<int64_t> post_ns{0};  // post-processing and completing (any thread)
};

// Latencies of one-sample queries (LoadGen's issue to the engine's completion) since
// Engine::live_latency(true), per lane, for the live display (progress.py): one relaxed add
// per sample, and only while switched on. Bins from the integer's bits, no floating point:
// exact below 16 ns, then 16 per octave (at most 6.25% wide), the last one open-ended.
struct LiveLatency {
  static constexpr int kBins = 16 * 40;  // up to 2^43 ns (2.4 h)
  std::unique_ptr<std::atomic<uint64_t>[]> counts{new std::atomic<uint64_t>[kBins]()};
  static int bin(uint64_t ns) {
    if (ns < 16) return int(ns);
    int e = 63 - __builtin_clzll(ns);
    return std::min(kBins - 1, (e - 3) * 16 + int((ns >> (e - 4)) & 15));
  }
  static uint64_t lower_ns(int b) { return b < 16 ? uint64_t(b) : uint64_t(16 + b % 16) << (b / 16 - 1); }
  static uint64_t upper_ns(int b) { return b < 16 ? uint64_t(b) + 1 : uint64_t(17 + b % 16) << (b / 16 - 1); }
  void add(int64_t latency_ns) {
    counts[bin(uint64_t(std::max<int64_t>(0, latency_ns)))].fetch_add(1, std::memory_order_relaxed);
  }
  void clear() {
    for (int b = 0; b < kBins; ++b) counts[b].store(0, std::memory_order_relaxed);
  }
};

struct Batch {  // one device batch: its samples and the host buffers of its outputs
  std::vector<mlperf::ResponseId> ids;
  std::vector<size_t> idx;
  std::vector<int64_t> issued;  // one-sample queries: when LoadGen issued each (else 0)
  int n = 0;
  uint64_t ticket = 0;
  int64_t start = 0, ready = 0;
  std::vector<void*> outputs;
};

struct Lane;
struct Driver;
struct PostQueue;

// Per-minute latency histograms of one-sample queries (LoadGen's issue to the engine's
// completion), kept only when asked for (soak runs: is p99 the same in minute 9 as in minute
// 2?). Fixed memory, so that keeping it cannot itself look like a leak; a relaxed atomic add
// per sample. Bin b holds latencies in [2^(b/16), 2^((b+1)/16)) us: 4.4% wide, 1 us to 33 s.
class LatencyLog {
 public:
  static constexpr int kBins = 16 * 25;
  static constexpr int kMinutes = 24 * 60;
  void start(int64_t t0_ns);
  bool on() const { return on_.load(std::memory_order_relaxed); }
  void add(int64_t now_ns, int64_t latency_ns);
  // {minute: counts per bin} for the minutes that saw a sample.
  std::vector<std::pair<int, std::vector<uint32_t>>> minutes() const;
  static double bin_upper_s(int b);  // the upper edge of bin B, seconds

 private:
  std::atomic<bool> on_{false};
  int64_t t0_ = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> counts_;  // kMinutes x kBins
};

struct TestConfig {
  std::string user_conf, model, scenario, mode, outdir, audit_config;
  size_t total = 0, performance_count = 0;
};

class Engine : public mlperf::SystemUnderTest, public mlperf::QuerySampleLibrary {
 public:
  Engine(std::unique_ptr<SampleStore> store, std::unique_ptr<Post> post, int batch_size);
  ~Engine() override;

  // Before start(): devices, in plan order.
  void add_device(std::unique_ptr<Device> device);
  void set_batch_timeout(double seconds) { batch_timeout_ns_ = int64_t(seconds * 1e9); }
  void set_throughput_only(bool on) { throughput_only_ = on; }  // Offline: complete in bursts
  void set_post_threads(int n) { post_threads_ = n; }
  // The watchdog's floor (see above); 0 or less keeps the default.
  void set_watchdog(double seconds) {
    if (seconds > 0) watchdog_floor_ns_ = int64_t(seconds * 1e9);
  }
  static constexpr int kWatchdogFactor = 50;

  void start();
  void stop();  // completes what is in flight, fails what is queued and unclaimed, joins every thread

  // LoadGen's side: the SUT ...
  const std::string& Name() override { return name_; }
  void IssueQuery(const std::vector<mlperf::QuerySample>& samples) override;
  void FlushQueries() override {}
  // ... and the QSL.
  size_t TotalSampleCount() override { return total_; }
  size_t PerformanceSampleCount() override { return performance_count_; }
  void LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>& samples) override;
  void UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>& samples) override;

  // One LoadGen test (StartTest on a thread of its own). INTERRUPTED is polled every 100 ms;
  // when it says so the test is aborted: queued samples, and any LoadGen issues after, are
  // failed at once. LoadGen has no way to end a test early (its AbortTest stops its own log
  // thread, and StartTest then waits forever for the latencies), so run_test waits a moment
  // for StartTest to finish on its own (Offline does, once its samples are failed); if it
  // does not (Server, the streams: their schedules run to the test's duration), LoadGen's
  // thread is left running and loadgen_abandoned() says so: this engine must then never be
  // destroyed, and the process must end with _exit (LoadGen's static logger cannot be
  // destroyed with its thread running). Returns false if it was interrupted.
  bool run_test(const TestConfig& config, const std::function<bool()>& interrupted);
  void abort();
  bool loadgen_abandoned() const { return loadgen_abandoned_.load() || threads_abandoned_.load(); }

  // Warm-up, outside LoadGen, on the loaded samples: completions (time ns, samples) while
  // the queue is kept fed for SECONDS; and the seconds per query of SAMPLES, one at a time.
  std::vector<std::pair<int64_t, int>> measure_rate(double seconds);
  std::vector<double> measure_latency(int samples, double seconds);

  // Tests: queries issued directly (their lists kept alive here) and every response recorded
  // (id, bytes) instead of going to LoadGen. WAIT_RESPONSES waits until COUNT were recorded
  // or TIMEOUT_S passed, and returns them.
  void record_responses();
  void issue_direct(std::vector<mlperf::QuerySample> q);
  std::vector<std::pair<uint64_t, std::string>> wait_responses(size_t count, double timeout_s);

  // A cluster (visionperf/cluster/). The driver's engine: LoadGen's load and unload callbacks call
  // LOAD_HOOK after the store's own (the indices; nullptr and 0 on unload), so the nodes
  // load the same samples; LoadGen cannot take an exception, so the hook's is recorded
  // (error()) and the samples it did not load fail when they are run. A node's engine: SERVE
  // runs one forwarded batch of cache indices as a many-sample query and blocks until every
  // sample is answered, returning rows of [8-byte size | max_response_bytes()] in the order
  // given; any thread may call it, several at once; it throws if a sample failed.
  using LoadHook = std::function<void(const size_t* indices, size_t n)>;
  void set_load_hook(LoadHook hook) { load_hook_ = std::move(hook); }
  std::string serve(const size_t* indices, size_t n);
  size_t max_response_bytes() const { return post_->max_response_bytes(); }

  SampleStore& store() { return *store_; }
  const std::vector<std::unique_ptr<Lane>>& lanes() const { return lanes_; }
  size_t capacity() const;  // batches all devices hold at once
  std::string error();
  void reset_stats();
  LatencyLog latency_log;  // start() it to keep per-minute latencies (off by default)
  // The live display's latency histograms (Lane::live): ON clears them and starts counting.
  void live_latency(bool on);
  bool live_latency_on() const { return live_latency_on_.load(std::memory_order_relaxed); }

  // Used by the driver and post threads.
  void deliver(Driver& d, Lane& lane, Batch* b, int status);
  void finish(Lane& lane, Batch* b, struct Responder& r);
  void fail(const mlperf::ResponseId* ids, int n, const std::string& why);
  void release(Lane& lane, Batch* b);
  bool take(Driver& d, Batch* b, int limit, int64_t now);
  bool aborting() const { return aborting_.load(std::memory_order_relaxed); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

 private:
  void complete(mlperf::QuerySampleResponse* r, size_t n);
  void serve_complete(mlperf::QuerySampleResponse* r, size_t n);
  void call_load_hook(const size_t* indices, size_t n);
  void record_error(const std::string& e);
  void add_bulk(const mlperf::QuerySample* s, size_t n);
  bool take_bulk(Driver& d, Batch* b, int limit);
  void notify_all_drivers();
  void drive(Driver& d);
  void post_loop(PostQueue& q);
  void watchdog_loop();
  int64_t watchdog_limit(int64_t expected_ns) const;
  void stuck(Lane& lane, int64_t since_ns, int64_t expected_ns);  // records the error, marks it dead
  void kill_lane(Driver& d, Lane& lane);  // driver thread: fails its pending batches
  void fail_routed(Driver& d, bool driver_thread);  // a driver without live devices
  void fail_bulk();
  size_t route_single();

  std::string name_ = "visionperf";
  std::unique_ptr<SampleStore> store_;
  std::unique_ptr<Post> post_;
  int batch_size_;
  int64_t batch_timeout_ns_ = 0;
  bool throughput_only_ = false;
  int post_threads_ = 0;
  size_t total_ = 0, performance_count_ = 0;

  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::unique_ptr<Driver>> drivers_;
  std::vector<std::unique_ptr<PostQueue>> post_queues_;
  std::vector<std::thread> post_threads_list_;
  bool started_ = false;
  std::atomic<bool> stopping_{false}, aborting_{false}, loadgen_abandoned_{false}, threads_abandoned_{false};
  std::atomic<bool> live_latency_on_{false};
  int64_t watchdog_floor_ns_ = 10000000000LL;
  std::atomic<int> live_lanes_{0};
  std::thread watchdog_;
  std::mutex watchdog_mu_;
  std::condition_variable watchdog_cv_;
  bool watchdog_stop_ = false;

  // one-sample queries: which driver takes the next one (LoadGen's issue thread only)
  size_t route_driver_ = 0, route_count_ = 0;

  // many-sample queries: ranges over LoadGen's sample lists
  struct Range {
    const mlperf::QuerySample* s;
    size_t n;
    std::atomic<size_t> next{0};
  };
  std::mutex bulk_mu_;
  std::deque<std::shared_ptr<Range>> bulk_;
  friend struct Driver;

  // warm-up: completions go to a counter instead of LoadGen
  std::atomic<bool> sink_{false};
  std::mutex sink_mu_;
  std::condition_variable sink_cv_;
  uint64_t sink_done_ = 0;
  std::vector<std::pair<int64_t, int>> sink_events_;
  bool record_ = false;
  std::vector<std::pair<uint64_t, std::string>> recorded_;
  std::deque<std::vector<mlperf::QuerySample>> direct_lists_;
  LoadHook load_hook_;
  std::atomic<bool> serving_{false};  // a node: completions go to serve()'s callers

  std::mutex error_mu_;
  std::string error_;
};

struct Lane {
  std::unique_ptr<Device> dev;
  uint8_t* staging = nullptr;  // the gather's destination, page-aligned
  size_t staging_bytes = 0;
  std::deque<Batch*> pending;  // submitted, oldest first (driver thread only)
  std::mutex mu;               // guards free (post threads return batches)
  std::vector<Batch*> free;
  std::vector<std::unique_ptr<Batch>> all;
  std::vector<std::vector<uint8_t>> out_storage;
  LaneStats stats;
  LiveLatency live;  // while Engine::live_latency is on
  vp_device_counters counters_base{};  // the device's own counters at the last reset_stats
  int64_t refill_ns = 0;  // moving average of one gather + submit (driver thread only)
  int64_t last_done = 0;  // when its last batch completed (driver thread only)
  std::atomic<bool> dead{false};  // stuck: given no more work
  // A blocking device's batch in run, and since when (for the watchdog thread). RUN_START is
  // also the claim on its samples: the driver takes it back with exchange(0) when run
  // returns, the watchdog with a compare-exchange to -1; whoever wins completes them.
  std::atomic<Batch*> running{nullptr};
  std::atomic<int64_t> run_start{0};
  // Moving average of the device's batch times (the watchdog's guess); atomic because the
  // watchdog thread reads it for blocking devices.
  std::atomic<int64_t> batch_ns{0};
  ~Lane();
};

// A batch's responses: reusable buffers owned by one thread.
struct Responder {
  std::vector<uint8_t> data;
  std::vector<size_t> offset, size;
  std::vector<mlperf::QuerySampleResponse> qsr;
  std::unique_ptr<PostScratch> scratch;
};

struct PostQueue {
  std::vector<int> cpus;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<Lane*, Batch*>> q;
  bool stop = false;
  size_t threads = 0;
};

struct Driver {
  std::vector<Lane*> lanes;
  std::vector<int> cpus;
  bool blocking = false;
  std::atomic<bool> dead{false};  // every device dead: queued and routed samples fail (under mu to set)
  std::atomic<bool> abandoned{false};  // stuck in a blocking run: never joined
  std::mutex mu;
  std::condition_variable cv;
  bool signal = false;  // work arrived or stop: re-check before sleeping (under mu)
  // One-sample queries queued before a wake-up is worth it (under mu): 1 when idle; while a
  // Server batch forms, what it still lacks (it wakes at its timeout anyway), so LoadGen's
  // issue thread does not wake the driver, a system call, for every sample.
  size_t need = 1;
  struct Single {
    mlperf::ResponseId id;
    size_t idx;
    int64_t t;
  };
  std::deque<Single> singles;  // one-sample queries routed here (under mu)
  std::vector<Single> forming;  // the Server batch being formed (driver thread only)
  int64_t forming_deadline = 0;
  std::shared_ptr<Engine::Range> bulk;  // the range this driver claims from
  PostQueue* post = nullptr;
  Responder responder;
  std::thread thread;
  size_t chunk = 1;  // one-sample queries routed here in a row
  int min_batch = 1;  // the smallest batch size of its devices
};

}  // namespace vp
