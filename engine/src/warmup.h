// Warm-up, outside LoadGen, on the loaded samples: the rate the devices sustain while kept
// fed, and the time of one query at a time. Completions go to this class's sink meanwhile.
//
// Every wait on the devices is in slices: INTERRUPTED is polled every kPoll, and when it says
// so ABORT is called (queued and later samples fail) and what the devices still hold is waited
// for kGrace. A device that still holds a batch then (a slow card, a blocking device in a long
// run) is left to it: the warm-up ends abandoned, its queries and this class's sink stay as
// they are (the drivers may still complete into them), and the caller must never join those
// drivers nor destroy the engine.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "completer.h"
#include "store.h"
#include "work_queues.h"

namespace vp {

class Warmup {
 public:
  static constexpr std::chrono::milliseconds kPoll{100};
  static constexpr std::chrono::milliseconds kGrace{500};  // a healthy device ends its batch well within it

  // How a measurement ended: the figures are whole only when it finished.
  enum class End { finished, interrupted, abandoned };
  struct Stop {
    std::function<bool()> interrupted;
    std::function<void()> abort;
  };

  Warmup(SampleStore& store, WorkQueues& queues, Completer& completer)
      : store_(store), queues_(queues), completer_(completer) {}

  // Completions (time ns since the start, samples) into EVENTS while the queue is kept fed
  // with CHUNK-sample queries for about SECONDS.
  End measure_rate(double seconds, size_t chunk, const Stop& stop, std::vector<std::pair<int64_t, int>>* events);
  // The seconds of each query of SAMPLES into TIMES, one at a time, for about SECONDS (at least 3).
  End measure_latency(int samples, double seconds, const Stop& stop, std::vector<double>* times);

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

  using Clock = std::chrono::steady_clock;
  // Under LK (counter_.mu): polls STOP once *AT has come (and sets the next poll); when it says
  // stop, aborts and waits kGrace for ISSUED samples to complete. finished: not interrupted.
  End poll(std::unique_lock<std::mutex>& lk, uint64_t issued, const Stop& stop, Clock::time_point* at);
  // Under LK: waits until ISSUED samples completed, polling STOP (as poll() does).
  End wait_done(std::unique_lock<std::mutex>& lk, uint64_t issued, const Stop& stop, Clock::time_point* at);
  // KEPT is one of queries_: alive until its samples complete, and past an abandoned warm-up.
  void issue(const std::vector<mlperf::QuerySample>& kept);

  SampleStore& store_;
  WorkQueues& queues_;
  Completer& completer_;
  Counter counter_;
  std::deque<std::vector<mlperf::QuerySample>> queries_;
};

}  // namespace vp
