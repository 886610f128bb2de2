// The engine: visionperf's system under test and sample library, compiled. This header is
// its contract: what a caller may do. How it does it lives in the classes it is made of.
//
//   LoadGen --IssueQuery--> work queues (work_queues.h: per-driver queues | bulk ranges)
//     --> drivers (driver.h: one pinned thread per core group): gather -> device -> collect
//     --> completer (completer.h): post-processing -> one completion per batch, to one sink:
//         LoadGen, warm-up (warmup.h), a cluster node's serve loop (node_server.h), tests
//   watchdog.h: stuck devices; loadgen_test.h: one LoadGen test; latency.h: latency logs.
//
// LoadGen owns time, the sample store (store.h) owns samples, the engine owns compute. No
// Python runs per sample anywhere; a Python device (python_device.cc) is called once per batch.
//
// Failure. Any device or post-processing error fails the samples it holds (a response of size
// 0) and is kept for error(); a run never waits on a lost sample. A device that stops
// completing batches is failed by the watchdog (watchdog.h), not waited on.
//
// Threads. Configure, add devices and start() from one thread; the rest may be called from
// any thread while the engine runs, except where said.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "devices.h"
#include "post.h"
#include "query_sample.h"
#include "store.h"

namespace vp {

// One LoadGen test: its settings (USER_CONF for MODEL and SCENARIO, MODE "accuracy" or
// "performance"), where LoadGen writes its logs, and the QSL's sizes.
struct TestConfig {
  std::string user_conf, model, scenario, mode, outdir, audit_config;
  size_t total = 0, performance_count = 0;
};

// Called after each of LoadGen's loads with its indices (nullptr and 0 on unload).
using LoadHook = std::function<void(const size_t* indices, size_t n)>;

// One device's counters since reset_stats().
struct DeviceStats {
  std::string name;
  std::vector<int> cpus;
  uint64_t batches = 0, samples = 0;
  double busy_s = 0;          // the device's own time on its batches
  double host_s = 0;          // gathering and submitting
  double post_s = 0;          // post-processing and completing
  double card_copy_cpu_s = 0, late_s = 0;  // the device's own counters (the plug-in ABI's)
  int batch_size = 1, max_in_flight = 1;
  bool fixed_batch = false;
  bool device_fetch = false;  // its rows went by device fetch (device.h ABI 2), not the host gather
};

// What the live display reads while a test runs.
struct LiveView {
  std::vector<uint64_t> samples, batches;  // per device
  std::vector<double> busy_s;
  struct Bin {
    double lower_s, upper_s;
    uint64_t count;
  };
  std::vector<Bin> latency;  // one-sample query latencies, the bins that hold a sample
};

class Engine {
 public:
  // STORE: the samples; POST: the post-processing every batch goes through; BATCH_SIZE: the
  // largest batch of any device.
  Engine(std::unique_ptr<SampleStore> store, std::unique_ptr<Post> post, int batch_size);
  // Stops the engine. Never destroy one that loadgen_abandoned().
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // ---- before start() ----
  // Devices in plan order. Blocking devices get a driver each; asynchronous ones share the
  // drivers of the CPUs they are pinned to (as many drivers as those CPUs, at most).
  void add_device(std::unique_ptr<Device> device);
  // A Server batch waits for more samples at most this long after its oldest one arrived.
  void set_batch_timeout(double seconds);
  // Offline: devices are woken to complete several batches at a time.
  void set_throughput_only(bool on);
  // Post-processing threads beside the drivers (0: each driver post-processes its batches).
  void set_post_threads(int n);
  // The watchdog's floor (watchdog.h); 0 or less keeps the default of 10 s.
  void set_watchdog(double seconds);

  // ---- lifecycle ----
  // Starts the drivers (and post-processing and watchdog threads). Again after stop() is fine.
  void start();
  // Completes what is in flight, fails what is queued and unclaimed, joins every thread
  // (except one stuck in a blocking device, and drivers an interrupted warm-up left: see
  // loadgen_abandoned()).
  void stop();

  // ---- a LoadGen test ----
  // Runs one test (StartTest on a thread of its own). INTERRUPTED is polled every 100 ms;
  // when it says so the test is aborted (abort()) and waited for a moment. Returns false if
  // it was interrupted. Throws Error when LoadGen rejects the settings or fails.
  bool run_test(const TestConfig& config, const std::function<bool()>& interrupted);
  // Fails every queued sample, and every sample issued after, at once.
  void abort();
  // True once a thread was left running: LoadGen's after an interrupted test it could not
  // end, a driver stuck in a blocking device, or drivers whose devices still held a batch when
  // a warm-up was interrupted. The engine must then never be destroyed, nor measured or
  // started again, and the process must end with _exit.
  bool loadgen_abandoned() const;
  // LoadGen's load and unload callbacks call HOOK after the store's own (a cluster's head:
  // the nodes load the same samples). LoadGen cannot take an exception: the hook's is
  // recorded (error()) and the samples it did not load fail when they are run.
  void set_load_hook(LoadHook hook);

  // ---- outside a LoadGen test, on the loaded samples ----
  // Warm-up: completions (time ns since the start, samples) into EVENTS while the engine is
  // kept fed for SECONDS. INTERRUPTED is polled every 100 ms while it waits on the devices;
  // when it says so the engine is aborted (abort()) and what the devices hold is waited for
  // half a second: drivers whose devices still hold a batch then are left running
  // (loadgen_abandoned()), and stop() does not join them. Returns false if it was interrupted
  // (the figures are then incomplete).
  bool measure_rate(double seconds, const std::function<bool()>& interrupted,
                    std::vector<std::pair<int64_t, int>>* events);
  // Warm-up: the seconds of each query of SAMPLES into TIMES, one query at a time, for
  // SECONDS; interrupted as measure_rate() is.
  bool measure_latency(int samples, double seconds, const std::function<bool()>& interrupted,
                       std::vector<double>* times);
  // A cluster node: runs one forwarded batch of cache indices as a many-sample query and
  // blocks until every sample is answered; returns rows of [8-byte size |
  // max_response_bytes()] in the order given. Any thread, several at once. Throws Error if a
  // sample failed.
  std::string serve(const size_t* indices, size_t n);
  size_t max_response_bytes() const;
  // Tests: from record_responses() on, every response is recorded (id, bytes) instead of
  // going to LoadGen; issue_direct() issues a query (kept alive here) as LoadGen would;
  // wait_responses() waits until COUNT were recorded or TIMEOUT_S passed and returns them.
  void record_responses();
  void issue_direct(std::vector<mlperf::QuerySample> query);
  std::vector<std::pair<uint64_t, std::string>> wait_responses(size_t count, double timeout_s);

  // ---- what it saw ----
  SampleStore& store();
  size_t capacity() const;  // batches all devices hold at once
  std::string error();      // the first error, or empty
  std::vector<DeviceStats> stats();
  void reset_stats();
  // Read without a lock the hot path takes, and without asking a device: as often as wanted.
  LiveView live() const;
  // Counts one-sample query latencies for live() from now (ON: cleared first), or stops.
  void live_latency(bool on);
  // Per-minute latency histograms of one-sample queries (latency.h LatencyLog), from now.
  void latency_log_start();
  std::vector<std::pair<int, std::vector<uint32_t>>> latency_minutes() const;

 private:
  struct Parts;  // engine.cc
  std::unique_ptr<Parts> parts_;
};

}  // namespace vp
