#include "driver.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace vp {

namespace {
constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
constexpr int64_t kPollNs = 20000;  // devices that cannot say when a batch will be ready

std::chrono::steady_clock::time_point at(int64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}
}  // namespace

struct Driver::Pass {
  int64_t now;
  int64_t wake = kInf;   // when to look again
  bool room = false;     // a device could take another batch
  bool fed = false;      // a batch was submitted or run
  bool starved = false;  // a device had no free batch (all in post-processing)
};

Driver::Driver(std::vector<Lane*> lanes, std::vector<int> cpus, bool blocking, DriverQueue& queue,
               const DriverContext& context)
    : lanes_(std::move(lanes)), cpus_(std::move(cpus)), blocking_(blocking), queue_(queue), ctx_(context) {
  int total = 0;
  bool all_dead = true;
  min_batch_ = lanes_[0]->dev->info.batch_size;
  for (Lane* lane : lanes_) {
    total += lane->dev->info.batch_size;
    min_batch_ = std::min(min_batch_, lane->dev->info.batch_size);
    all_dead = all_dead && lane->dead.load();  // a device found stuck stays dead across restarts
  }
  queue_.chunk = size_t(std::max(1, total));
  queue_.dead = all_dead;
  order_ = lanes_;
  responder_.scratch = ctx_.completer.scratch();
}

void Driver::start(PostQueue* post) {
  post_ = post;
  thread_ = std::thread([this] { run(); });
}

void Driver::join() {
  if (blocking_ && lanes_[0]->abandoned.load()) {  // stuck in a device's run: left (watchdog.h)
    if (thread_.joinable()) thread_.detach();
  } else if (thread_.joinable()) {
    thread_.join();
  }
}

void Driver::run() {
  pin_thread(cpus_);
  for (;;) {
    if (queue_.dead.load()) {  // every device of this driver is stuck: fail what is routed here
      if (!wait_while_dead()) return;
      continue;
    }
    if (ctx_.queues.aborting()) fail_all_queued();
    if (order_.size() > 1)  // most urgent first: idle devices, then the one whose newest batch ends soonest
      std::sort(order_.begin(), order_.end(), [](Lane* one, Lane* other) {
        int64_t ends = one->pending.empty() ? -1 : one->pending.back()->ready;
        int64_t other_ends = other->pending.empty() ? -1 : other->pending.back()->ready;
        return ends < other_ends;
      });
    Pass pass{now_ns()};
    for (Lane* lane : order_)
      if (!lane->dead.load(std::memory_order_relaxed)) serve(*lane, pass);
    if (pass.fed) continue;
    if (!sleep(pass)) return;
  }
}

void Driver::serve(Lane& lane, Pass& pass) {
  int64_t poll_at = 0;
  if (!collect(lane, pass, &poll_at)) return;
  if (lane.dead.load(std::memory_order_relaxed)) return;
  feed(lane, pass);
  auto& pending = lane.pending;
  pass.room = pass.room || int(pending.size()) < lane.dev->info.max_in_flight;
  if (pending.empty()) return;
  Batch* first = pending.front();
  int64_t due = poll_at ? poll_at : (first->ready ? first->ready : pass.now + kPollNs);
  if (ctx_.throughput_only && !poll_at) {
    // Offline: a device is fed in time as long as its next batch is submitted before its
    // newest one ends, so wake with half of that one's run time to spare (or, when gathering
    // and submitting a batch takes longer, twice that time); devices then share wake-ups and
    // complete several batches each time.
    Batch* last = pending.back();
    int64_t spare = std::max((last->ready - last->start) / 2, 2 * lane.refill_ns);
    if (last->ready) due = std::max(due, last->ready - spare);
  }
  pass.wake = std::min(pass.wake, due);
}

bool Driver::collect(Lane& lane, Pass& pass, int64_t* poll_at) {
  Device& dev = *lane.dev;
  auto& pending = lane.pending;
  while (!pending.empty()) {
    Batch* batch = pending.front();
    if (batch->ready && pass.now < batch->ready) break;
    int status = dev.collect(batch->ticket, batch->outputs.data(), 0);
    if (status == VP_NOT_READY) {
      // The watchdog: overdue past its announced time, or (none announced) running for far
      // longer than the device's batches take.
      int64_t since = std::max(batch->start, lane.last_done);
      int64_t expected = batch->ready ? batch->ready - batch->start : lane.batch_ns.load(std::memory_order_relaxed);
      if ((batch->ready ? pass.now - batch->ready : pass.now - since) > ctx_.watchdog.limit(expected)) {
        ctx_.watchdog.stuck(lane, pass.now - since, expected);
        kill(lane);
        return false;
      }
      // A device that only estimates its ready time (a GPU, a remote node) is looked at again
      // within 1/32 of a batch's time: each look may cost it a lock (a Python device's takes
      // the GIL), and 3% of a batch is all the delay it adds.
      *poll_at = pass.now + (dev.info.exact_ready ? kPollNs : std::clamp<int64_t>(expected / 32, kPollNs, 1000000));
      break;
    }
    pending.pop_front();
    int64_t done = (batch->ready && dev.info.exact_ready) ? batch->ready : pass.now;
    lane.stats.busy_s += 1e-9 * double(std::max<int64_t>(0, done - batch->start));
    int64_t took = std::max<int64_t>(0, done - std::max(batch->start, lane.last_done));
    int64_t avg = lane.batch_ns.load(std::memory_order_relaxed);
    lane.batch_ns.store(avg ? avg + (took - avg) / 8 : took, std::memory_order_relaxed);
    lane.last_done = done;
    ctx_.completer.deliver(post_, responder_, lane, batch, status);
    pass.now = now_ns();
  }
  return true;
}

void Driver::feed(Lane& lane, Pass& pass) {
  Device& dev = *lane.dev;
  auto& pending = lane.pending;
  const int cap = dev.info.max_in_flight;
  while (int(pending.size()) < cap && !ctx_.queues.aborting() && !lane.dead.load(std::memory_order_relaxed)) {
    Batch* batch = acquire(lane);
    if (!batch) {
      pass.starved = true;
      break;
    }
    if (!ctx_.queues.take(queue_, batch, dev.info.batch_size, pass.now)) {
      lane.release(batch);
      break;
    }
    int64_t t0 = now_ns();
    int rows = dev.info.fixed_batch ? dev.info.batch_size : batch->n;
    uint64_t ticket = 0;
    int64_t ready = 0;
    int status;
    if (dev.info.fetches_rows) {  // device fetch: the host hands over addresses, never a pixel
      const void** addrs = lane.row_addrs.data();
      ctx_.store.rows(dev.info.replica, batch->idx.data(), size_t(batch->n), addrs);
      for (int k = batch->n; k < rows; ++k) addrs[k] = addrs[batch->n - 1];  // a fixed batch's padding
      status = dev.submit_rows(dev.info.replica, addrs, rows, &ticket, &ready);
    } else {
      if (dev.info.reads_input) ctx_.store.gather(dev.info.replica, batch->idx.data(), size_t(batch->n), lane.staging);
      if (dev.blocking()) {
        run_blocking(lane, batch, rows, t0, pass);
        continue;
      }
      status = dev.submit_indexed(lane.staging, rows, batch->idx.data(), batch->n, &ticket, &ready);
    }
    pass.now = now_ns();
    lane.stats.host_s += 1e-9 * double(pass.now - t0);
    lane.refill_ns += (pass.now - t0 - lane.refill_ns) / 8;
    if (status != VP_OK) {
      ctx_.completer.fail(batch->ids.data(), batch->n, dev.info.name + ": " + dev.last_error());
      lane.release(batch);
      continue;
    }
    batch->ticket = ticket;
    batch->start = std::max(pass.now, pending.empty() ? 0 : pending.back()->ready);  // the device's own start
    batch->ready = ready;
    pending.push_back(batch);
    pass.fed = true;
  }
}

void Driver::run_blocking(Lane& lane, Batch* batch, int rows, int64_t t0, Pass& pass) {
  int64_t t1 = now_ns();
  lane.running.store(batch, std::memory_order_relaxed);
  lane.run_start.store(std::max<int64_t>(1, t1), std::memory_order_release);
  int status = lane.dev->run(lane.staging, rows, batch->idx.data(), batch->outputs.data());
  if (lane.run_start.exchange(0) < 0) {  // the watchdog failed it and this device meanwhile
    lane.running.store(nullptr);
    lane.release(batch);
    return;
  }
  lane.running.store(nullptr);
  pass.now = now_ns();
  lane.stats.host_s += 1e-9 * double(t1 - t0);
  lane.stats.busy_s += 1e-9 * double(pass.now - t1);
  int64_t avg = lane.batch_ns.load(std::memory_order_relaxed);
  lane.batch_ns.store(avg ? avg + (pass.now - t1 - avg) / 8 : pass.now - t1, std::memory_order_relaxed);
  ctx_.completer.deliver(post_, responder_, lane, batch, status);
  pass.fed = true;
}

bool Driver::sleep(Pass& pass) {
  int64_t wake = pass.wake;
  if (pass.starved) wake = std::min(wake, now_ns() + 50000);
  bool idle = true;
  for (Lane* lane : lanes_) idle = idle && lane->pending.empty();
  if (ctx_.queues.stopping() && idle && queue_.forming.empty()) {
    std::lock_guard<std::mutex> lk(queue_.mu);
    return !queue_.singles.empty();
  }
  if (!queue_.forming.empty()) wake = std::min(wake, queue_.forming_deadline);
  std::unique_lock<std::mutex> lk(queue_.mu);
  queue_.need = queue_.forming.empty() ? 1 : size_t(std::max<int>(1, min_batch_ - int(queue_.forming.size())));
  // Samples routed here while NEED was still the larger count of a batch being formed (since
  // sent) raised no signal: they are waiting now, so look again instead of sleeping on them
  // (a lost wake-up: a SingleStream run once hung here, its one query queued and unseen). Not
  // when starved of batch buffers: that waits its 50 us, as a look now would find none again.
  bool waiting = !pass.starved && queue_.singles.size() >= queue_.need;
  if ((queue_.signal || waiting) && pass.room) {
    queue_.signal = false;
    return true;
  }
  if (!pass.room) {  // nothing could be fed before a batch completes: sleep until one does
    lk.unlock();
    if (wake != kInf) sleep_until_ns(wake);
    return true;
  }
  if (wake == kInf)
    queue_.cv.wait(lk, [&] { return queue_.signal; });
  else
    queue_.cv.wait_until(lk, at(wake), [&] { return queue_.signal; });
  queue_.signal = false;
  return true;
}

bool Driver::wait_while_dead() {
  ctx_.queues.close(queue_, true);
  if (ctx_.queues.stopping()) return false;
  std::unique_lock<std::mutex> lk(queue_.mu);
  queue_.need = 1;
  queue_.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return queue_.signal; });
  queue_.signal = false;
  return true;
}

Batch* Driver::acquire(Lane& lane) {
  for (int tries = 0; tries < 2; ++tries) {
    if (Batch* batch = lane.acquire()) return batch;
    // Every spare batch sits in post-processing: do one of those here, then retry.
    if (!ctx_.completer.help(post_, responder_)) return nullptr;
  }
  return nullptr;
}

void Driver::kill(Lane& lane) {
  for (Batch* batch : lane.pending) {
    ctx_.completer.fail(batch->ids.data(), batch->n, "");
    lane.release(batch);
  }
  lane.pending.clear();
  bool all = true;
  for (Lane* other : lanes_) all = all && other->dead.load();
  if (all) ctx_.queues.close(queue_, true);
}

void Driver::fail_all_queued() {  // nothing new starts, queued samples fail at once
  Batch tmp;
  tmp.resize(size_t(ctx_.batch_size) * 64);
  while (ctx_.queues.take(queue_, &tmp, int(tmp.ids.size()), kInf)) ctx_.completer.fail(tmp.ids.data(), tmp.n, "");
}

}  // namespace vp
