// The watchdog: a device that stops completing batches is failed, not waited on.
//
// When a device's oldest batch has gone without completing for longer than limit(), max(the
// floor, 10 s unless set_floor says otherwise, and kFactor x the batch's expected time: its
// announced run time, or for a device that announces none a moving average of its observed
// batches), the device is dead: the error `<device>: no batch completed for X s (expected
// about Y ms per batch): the device is stuck` is recorded, every batch it holds is failed, it
// is given no more work (its driver's other devices, or other drivers, take it; with none
// left alive, whatever is routed to it is failed at once).
//
// An asynchronous device is checked by its driver, only when a collect finds its oldest
// batch still not ready (never per sample). A blocking device cannot be interrupted: this
// class's thread (one per engine, when it has blocking devices, waking 4 times a second)
// fails the batch in run (an atomic claim decides who completes its samples, so they
// complete once) and what is queued to its driver; the stuck thread is left running, never
// joined, and abandoned() then says so.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "completer.h"
#include "lane.h"
#include "work_queues.h"

namespace vp {

class Watchdog {
 public:
  static constexpr int kFactor = 50;

  Watchdog(Completer& completer, WorkQueues& queues) : completer_(completer), queues_(queues) {}
  ~Watchdog() { stop(); }

  void set_floor(double seconds) {  // 0 or less keeps the default
    if (seconds > 0) floor_ns_ = int64_t(seconds * 1e9);
  }
  // How long a batch expected to take EXPECTED_NS may go without completing.
  int64_t limit(int64_t expected_ns) const {
    return std::max(floor_ns_, int64_t(kFactor) * std::max<int64_t>(0, expected_ns));
  }
  // LANE's oldest batch has gone SINCE_NS without completing: records the error and marks it
  // dead (its batches are failed by whoever holds them).
  void stuck(Lane& lane, int64_t since_ns, int64_t expected_ns);

  struct Blocking {  // a blocking device and its driver's queue
    Lane* lane;
    DriverQueue* queue;
  };
  void start(std::vector<Blocking> watched);  // no thread when WATCHED is empty
  void stop();
  bool abandoned() const { return abandoned_.load(); }  // a driver was left stuck in run

 private:
  void loop();

  Completer& completer_;
  WorkQueues& queues_;
  int64_t floor_ns_ = 10000000000LL;
  std::vector<Blocking> watched_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> abandoned_{false};
};

}  // namespace vp
