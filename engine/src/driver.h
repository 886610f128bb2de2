// A driver: the one thread of a core group, pinned there, that feeds its devices.
//
// An asynchronous device (the plug-in ABI: submit/collect) is kept fed with up to
// max_in_flight batches: most urgent first, the driver completes what is ready, gathers and
// submits, and otherwise sleeps until a batch is due, work arrives or a forming batch times
// out. Threads never outnumber the cores they are pinned to. A blocking device (a Python
// device computing on the host's cores) gets a driver of its own that runs each batch in place.
#pragma once

#include <thread>
#include <vector>

#include "completer.h"
#include "lane.h"
#include "store.h"
#include "watchdog.h"
#include "work_queues.h"

namespace vp {

// What every driver works with; all of it outlives the drivers.
struct DriverContext {
  SampleStore& store;
  WorkQueues& queues;
  Completer& completer;
  Watchdog& watchdog;
  bool throughput_only;  // Offline: complete in bursts
  int batch_size;        // the engine's
};

class Driver {
 public:
  // LANES: its devices, all blocking (then exactly one) or all asynchronous. Sets up QUEUE,
  // the queue work is routed to it through.
  Driver(std::vector<Lane*> lanes, std::vector<int> cpus, bool blocking, DriverQueue& queue,
         const DriverContext& context);
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  void start(PostQueue* post);  // POST: where its batches are post-processed (nullptr: here)
  // Joins the thread once WorkQueues::stop() was called; a thread stuck in a blocking run is
  // left running (the watchdog has answered its samples).
  void join();
  bool blocking() const { return blocking_; }
  Lane& lane(size_t k) const { return *lanes_[k]; }
  DriverQueue& queue() const { return queue_; }

 private:
  struct Pass;  // one look at every device, and what it found

  void run();
  void serve(Lane& lane, Pass& pass);
  bool collect(Lane& lane, Pass& pass, int64_t* poll_at);  // false: the device was found stuck
  void feed(Lane& lane, Pass& pass);
  void run_blocking(Lane& lane, Batch* batch, int rows, int64_t t0, Pass& pass);
  bool sleep(Pass& pass);          // false: stopped, nothing left
  bool wait_while_dead();          // false: stopped
  Batch* acquire(Lane& lane);
  void kill(Lane& lane);           // fails its pending batches
  void fail_all_queued();          // aborting

  std::vector<Lane*> lanes_;
  std::vector<Lane*> order_;  // most urgent first
  std::vector<int> cpus_;
  bool blocking_;
  int min_batch_ = 1;  // the smallest batch size of its devices
  DriverQueue& queue_;
  DriverContext ctx_;
  PostQueue* post_ = nullptr;
  Responder responder_;
  std::thread thread_;
};

}  // namespace vp
