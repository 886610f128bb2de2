// Warm-up, outside LoadGen, on the loaded samples: the rate the devices sustain while kept
// fed, and the time of one query at a time. Completions go to this class's sink meanwhile.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "completer.h"
#include "store.h"
#include "work_queues.h"

namespace vp {

class Warmup {
 public:
  Warmup(SampleStore& store, WorkQueues& queues, Completer& completer)
      : store_(store), queues_(queues), completer_(completer) {}

  // Completions (time ns since the start, samples) while the queue is kept fed with
  // CHUNK-sample queries for about SECONDS.
  std::vector<std::pair<int64_t, int>> measure_rate(double seconds, size_t chunk);
  // The seconds of each query of SAMPLES, one at a time, for about SECONDS (at least 3).
  std::vector<double> measure_latency(int samples, double seconds);

 private:
  class Counter : public Sink {  // completions counted, with their times
   public:
    void complete(mlperf::QuerySampleResponse* responses, size_t n) override;
    void reset();
    std::mutex mu;
    std::condition_variable cv;
    uint64_t done = 0;
    std::vector<std::pair<int64_t, int>> events;
  };

  SampleStore& store_;
  WorkQueues& queues_;
  Completer& completer_;
  Counter counter_;
};

}  // namespace vp
