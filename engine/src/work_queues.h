// Issue and routing: where LoadGen's queries wait until a driver takes them, and the one
// place that decides which driver gets what.
//
// A one-sample query (Server, SingleStream) goes to one driver's own queue, a batch's worth
// (the sum of its devices' batch sizes) in a row to the same driver so batches fill, then the
// next driver: no lock is shared between drivers. A many-sample query (Offline, MultiStream)
// is one range over LoadGen's own sample list, which stays alive until its samples complete
// (the response ids point into it); drivers claim batch_size samples at a time with one
// atomic add, so whichever device is free takes the next batch. A Server batch is every
// queued sample up to the batch size, waiting for more only until the batch timeout, counted
// from its oldest sample's arrival.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "completer.h"
#include "lane.h"
#include "query_sample.h"

namespace vp {

// Samples of a many-sample query, claimed batch by batch with one atomic add.
struct BulkRange {
  const mlperf::QuerySample* samples;
  size_t n;
  std::atomic<size_t> next{0};
};

// One driver's work: what LoadGen's issue thread routes to it (under MU) and what the
// driver's thread has taken from there (its own).
struct DriverQueue {
  struct Single {
    mlperf::ResponseId id;
    size_t idx;
    int64_t issued;
  };
  std::mutex mu;
  std::condition_variable cv;
  bool signal = false;  // work arrived or stop: re-check before sleeping (under mu)
  // One-sample queries queued before a wake-up is worth it (under mu): 1 when idle; while a
  // Server batch forms, what it still lacks (it wakes at its timeout anyway), so LoadGen's
  // issue thread does not wake the driver, a system call, for every sample.
  size_t need = 1;
  std::deque<Single> singles;  // routed here (under mu)
  std::atomic<bool> dead{false};  // every device dead: queued and routed samples fail (under mu to set)
  size_t chunk = 1;  // one-sample queries routed here in a row

  // The driver's thread only.
  std::vector<Single> forming;  // the Server batch being formed
  int64_t forming_deadline = 0;
  std::shared_ptr<BulkRange> bulk;  // the range this driver claims from

  void wake();  // sets SIGNAL and wakes the driver
};

class WorkQueues {
 public:
  explicit WorkQueues(Completer& completer) : completer_(completer) {}

  // Before the drivers start: one queue per driver, and how many devices are alive.
  DriverQueue& add_queue();
  void open(int live_lanes, int64_t batch_timeout_ns);
  void clear();  // the queues go (the drivers have stopped)

  // A query from LoadGen (or a caller beside it): routed, or failed at once when nobody can
  // take it (aborting, or every device dead). Never blocks on a device.
  void issue(const mlperf::QuerySample* samples, size_t n);
  // A many-sample query; SAMPLES stay alive until they complete.
  void add_bulk(const mlperf::QuerySample* samples, size_t n);

  // The driver's thread: fills BATCH with up to LIMIT samples, a formed Server batch first (formed
  // until full or its timeout at NOW, unless stopping or aborting), then a bulk claim.
  bool take(DriverQueue& queue, Batch* batch, int limit, int64_t now);
  // QUEUE's driver has no live device: its queued (and, from its own thread, forming) samples fail.
  void close(DriverQueue& queue, bool driver_thread);
  void fail_bulk();  // every sample of a many-sample query not yet claimed
  void lane_died();  // with no live device left, nobody takes shared work

  void abort();  // nothing new starts: queued and later samples fail
  void stop();   // the drivers finish what they hold and return
  bool aborting() const { return aborting_.load(std::memory_order_relaxed); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  void wake_all();

 private:
  size_t route_single();
  bool take_bulk(DriverQueue& queue, Batch* batch, int limit);

  Completer& completer_;
  std::vector<std::unique_ptr<DriverQueue>> queues_;
  int64_t batch_timeout_ns_ = 0;
  std::atomic<bool> stopping_{false}, aborting_{false};
  std::atomic<int> live_lanes_{0};
  // one-sample queries: which driver takes the next one (LoadGen's issue thread only)
  size_t route_next_ = 0, route_count_ = 0;
  std::mutex bulk_mu_;
  std::deque<std::shared_ptr<BulkRange>> bulk_;
};

}  // namespace vp
