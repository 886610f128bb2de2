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
  for (Lane* l : lanes_) {
    total += l->dev->info.batch_size;
    min_batch_ = std::min(min_batch_, l->dev->info.batch_size);
    all_dead = all_dead && l->dead.load();  // a device found stuck stays dead across restarts
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
      std::sort(order_.begin(), order_.end(), [](Lane* a, Lane* b) {
        int64_t ka = a->pending.empty() ? -1 : a->pending.back()->ready;
        int64_t kb = b->pending.empty() ? -1 : b->pending.back()->ready;
        return ka < kb;
      });
    Pass pass{now_ns()};
    for (Lane* l : order_)
      if (!l->dead.load(std::memory_order_relaxed)) serve(*l, pass);
    if (pass.fed) continue;
    if (!sleep(pass)) return;
  }
}

void Driver::serve(Lane& l, Pass& pass) {
  int64_t poll_at = 0;
  if (!collect(l, pass, &poll_at)) return;
  if (l.dead.load(std::memory_order_relaxed)) return;
  feed(l, pass);
  auto& p = l.pending;
  pass.room = pass.room || int(p.size()) < l.dev->info.max_in_flight;
  if (p.empty()) return;
  Batch* first = p.front();
  int64_t due = poll_at ? poll_at : (first->ready ? first->ready : pass.now + kPollNs);
  if (ctx_.throughput_only && !poll_at) {
    // Offline: a device is fed in time as long as its next batch is submitted before its
    // newest one ends, so wake with half of that one's run time to spare (or, when gathering
    // and submitting a batch takes longer, twice that time); devices then share wake-ups and
    // complete several batches each time.
    Batch* last = p.back();
    int64_t spare = std::max((last->ready - last->start) / 2, 2 * l.refill_ns);
    if (last->ready) due = std::max(due, last->ready - spare);
  }
  pass.wake = std::min(pass.wake, due);
}

bool Driver::collect(Lane& l, Pass& pass, int64_t* poll_at) {
  Device& dev = *l.dev;
  auto& p = l.pending;
  while (!p.empty()) {
    Batch* b = p.front();
    if (b->ready && pass.now < b->ready) break;
    int status = dev.collect(b->ticket, b->outputs.data(), 0);
    if (status == VP_NOT_READY) {
      // The watchdog: overdue past its announced time, or (none announced) running for far
      // longer than the device's batches take.
      int64_t since = std::max(b->start, l.last_done);
      int64_t expected = b->ready ? b->ready - b->start : l.batch_ns.load(std::memory_order_relaxed);
      if ((b->ready ? pass.now - b->ready : pass.now - since) > ctx_.watchdog.limit(expected)) {
        ctx_.watchdog.stuck(l, pass.now - since, expected);
        kill(l);
        return false;
      }
      // A device that only estimates its ready time (a GPU, a remote node) is looked at again
      // within 1/32 of a batch's time: each look may cost it a lock (a Python device's takes
      // the GIL), and 3% of a batch is all the delay it adds.
      *poll_at = pass.now + (dev.info.exact_ready ? kPollNs : std::clamp<int64_t>(expected / 32, kPollNs, 1000000));
      break;
    }
    p.pop_front();
    int64_t done = (b->ready && dev.info.exact_ready) ? b->ready : pass.now;
    l.stats.busy_s += 1e-9 * double(std::max<int64_t>(0, done - b->start));
    int64_t took = std::max<int64_t>(0, done - std::max(b->start, l.last_done));
    int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
    l.batch_ns.store(avg ? avg + (took - avg) / 8 : took, std::memory_order_relaxed);
    l.last_done = done;
    ctx_.completer.deliver(post_, responder_, l, b, status);
    pass.now = now_ns();
  }
  return true;
}

void Driver::feed(Lane& l, Pass& pass) {
  Device& dev = *l.dev;
  auto& p = l.pending;
  const int cap = dev.info.max_in_flight;
  while (int(p.size()) < cap && !ctx_.queues.aborting() && !l.dead.load(std::memory_order_relaxed)) {
    Batch* b = acquire(l);
    if (!b) {
      pass.starved = true;
      break;
    }
    if (!ctx_.queues.take(queue_, b, dev.info.batch_size, pass.now)) {
      l.release(b);
      break;
    }
    int64_t t0 = now_ns();
    if (dev.info.reads_input) ctx_.store.gather(dev.info.replica, b->idx.data(), size_t(b->n), l.staging);
    int rows = dev.info.fixed_batch ? dev.info.batch_size : b->n;
    if (dev.blocking()) {
      run_blocking(l, b, rows, t0, pass);
      continue;
    }
    uint64_t ticket = 0;
    int64_t ready = 0;
    int status = dev.submit_indexed(l.staging, rows, b->idx.data(), b->n, &ticket, &ready);
    pass.now = now_ns();
    l.stats.host_s += 1e-9 * double(pass.now - t0);
    l.refill_ns += (pass.now - t0 - l.refill_ns) / 8;
    if (status != VP_OK) {
      ctx_.completer.fail(b->ids.data(), b->n, dev.info.name + ": " + dev.last_error());
      l.release(b);
      continue;
    }
    b->ticket = ticket;
    b->start = std::max(pass.now, p.empty() ? 0 : p.back()->ready);  // the device's own start
    b->ready = ready;
    p.push_back(b);
    pass.fed = true;
  }
}

void Driver::run_blocking(Lane& l, Batch* b, int rows, int64_t t0, Pass& pass) {
  int64_t t1 = now_ns();
  l.running.store(b, std::memory_order_relaxed);
  l.run_start.store(std::max<int64_t>(1, t1), std::memory_order_release);
  int status = l.dev->run(l.staging, rows, b->idx.data(), b->outputs.data());
  if (l.run_start.exchange(0) < 0) {  // the watchdog failed it and this device meanwhile
    l.running.store(nullptr);
    l.release(b);
    return;
  }
  l.running.store(nullptr);
  pass.now = now_ns();
  l.stats.host_s += 1e-9 * double(t1 - t0);
  l.stats.busy_s += 1e-9 * double(pass.now - t1);
  int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
  l.batch_ns.store(avg ? avg + (pass.now - t1 - avg) / 8 : pass.now - t1, std::memory_order_relaxed);
  ctx_.completer.deliver(post_, responder_, l, b, status);
  pass.fed = true;
}

bool Driver::sleep(Pass& pass) {
  int64_t wake = pass.wake;
  if (pass.starved) wake = std::min(wake, now_ns() + 50000);
  bool idle = true;
  for (Lane* l : lanes_) idle = idle && l->pending.empty();
  if (ctx_.queues.stopping() && idle && queue_.forming.empty()) {
    std::lock_guard<std::mutex> lk(queue_.mu);
    return !queue_.singles.empty();
  }
  if (!queue_.forming.empty()) wake = std::min(wake, queue_.forming_deadline);
  std::unique_lock<std::mutex> lk(queue_.mu);
  queue_.need = queue_.forming.empty() ? 1 : size_t(std::max<int>(1, min_batch_ - int(queue_.forming.size())));
  if (queue_.signal && pass.room) {
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

Batch* Driver::acquire(Lane& l) {
  for (int tries = 0; tries < 2; ++tries) {
    if (Batch* b = l.acquire()) return b;
    // Every spare batch sits in post-processing: do one of those here, then retry.
    if (!ctx_.completer.help(post_, responder_)) return nullptr;
  }
  return nullptr;
}

void Driver::kill(Lane& l) {
  for (Batch* b : l.pending) {
    ctx_.completer.fail(b->ids.data(), b->n, "");
    l.release(b);
  }
  l.pending.clear();
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
