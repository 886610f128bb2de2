// The completer: from a device's outputs to the answers. It post-processes a batch (on the
// driver's thread, or on post-processing threads when there are some), hands the responses to
// the one sink of the moment in one call per batch, and answers failed samples with a
// response of size 0, keeping the first reason. The sink is LoadGen's QuerySamplesComplete
// unless a caller outside a LoadGen test (warm-up, a cluster node's serve loop, tests) puts
// its own in place.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lane.h"
#include "latency.h"
#include "post.h"
#include "query_sample.h"

namespace vp {

// Where completed samples go. COMPLETE is called from driver and post-processing threads,
// several at once, once per batch; the responses' buffers live until it returns.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void complete(mlperf::QuerySampleResponse* responses, size_t n) = 0;
};

// A batch's responses: reusable buffers owned by one thread.
struct Responder {
  std::vector<uint8_t> data;
  std::vector<size_t> offset, size;
  std::vector<mlperf::QuerySampleResponse> qsr;
  std::unique_ptr<PostScratch> scratch;
};

// Batches waiting for a post-processing thread.
struct PostQueue {
  std::vector<int> cpus;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<Lane*, Batch*>> batches;
  bool stop = false;
  size_t threads = 0;
};

class Completer {
 public:
  explicit Completer(Post& post) : post_(post) {}
  ~Completer() { stop_post_threads(); }

  // Puts SINK in place (nullptr: LoadGen's) and returns the one it replaces.
  Sink* set_sink(Sink* sink);
  bool to_loadgen() const { return sink_.load(std::memory_order_relaxed) == &loadgen_; }

  void complete(mlperf::QuerySampleResponse* responses, size_t n) {
    sink_.load(std::memory_order_relaxed)->complete(responses, n);
  }
  // Answers these samples with no data; WHY (when not empty) is recorded as the error.
  void fail(const mlperf::ResponseId* ids, int n, const std::string& why);
  void record_error(const std::string& why);  // the first one is kept
  std::string error();

  // Post-processing threads (detection): THREADS of them over at most as many queues as
  // drivers; queue i serves drivers i, i+Q, ..., thread j serves queue j % Q and is pinned
  // to its first driver's CPUs. Returns each driver's queue (nullptr: it post-processes its
  // own batches).
  std::vector<PostQueue*> start_post_threads(const std::vector<std::vector<int>>& driver_cpus, int threads);
  void stop_post_threads();  // finishes what is queued, then joins
  std::unique_ptr<PostScratch> scratch() const { return post_.scratch(); }
  size_t max_response_bytes() const { return post_.max_response_bytes(); }

  // A batch the device is done with (STATUS from collect or run): failed, queued for a post-
  // processing thread, or (none, or they are behind) finished here with RESPONDER. Returns it to its lane.
  void deliver(PostQueue* queue, Responder& responder, Lane& lane, Batch* batch, int status);
  // Every spare batch sits in post-processing: finish the oldest queued one here. False
  // when nothing is queued.
  bool help(PostQueue* queue, Responder& responder);

  LatencyLog latency_log;  // start() it to keep per-minute latencies (off by default)
  // The live display's latency histograms (Lane::live): counted while on.
  void set_live_latency(bool on) { live_latency_on_.store(on, on ? std::memory_order_release : std::memory_order_relaxed); }
  bool live_latency_on() const { return live_latency_on_.load(std::memory_order_relaxed); }

 private:
  class LoadGenSink : public Sink {
   public:
    void complete(mlperf::QuerySampleResponse* responses, size_t n) override;
  };

  void finish(Lane& lane, Batch* batch, Responder& responder);  // post-process and complete
  void post_loop(PostQueue& queue);

  Post& post_;
  LoadGenSink loadgen_;
  std::atomic<Sink*> sink_{&loadgen_};
  std::atomic<bool> live_latency_on_{false};
  std::vector<std::unique_ptr<PostQueue>> post_queues_;
  std::vector<std::thread> post_threads_;
  std::mutex error_mu_;
  std::string error_;
};

}  // namespace vp
