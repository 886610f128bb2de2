#include "completer.h"

#include <algorithm>

#include "loadgen.h"

namespace vp {

void Completer::LoadGenSink::complete(mlperf::QuerySampleResponse* responses, size_t n) {
  mlperf::QuerySamplesComplete(responses, n);
}

Sink* Completer::set_sink(Sink* sink) { return sink_.exchange(sink ? sink : &loadgen_); }

void Completer::record_error(const std::string& why) {
  std::lock_guard<std::mutex> lk(error_mu_);
  if (error_.empty()) error_ = why;
}

std::string Completer::error() {
  std::lock_guard<std::mutex> lk(error_mu_);
  return error_;
}

void Completer::fail(const mlperf::ResponseId* ids, int n, const std::string& why) {
  if (!why.empty()) record_error(why);
  std::vector<mlperf::QuerySampleResponse> r(size_t(std::max(0, n)));
  for (int i = 0; i < n; ++i) r[i] = mlperf::QuerySampleResponse(ids[i], 0, 0);
  if (n > 0) complete(r.data(), size_t(n));
}

void Completer::finish(Lane& lane, Batch* b, Responder& r) {
  int64_t t0 = now_ns();
  size_t n = size_t(b->n);
  size_t need = n * std::max<size_t>(1, post_.max_response_bytes());
  if (r.data.size() < need) r.data.resize(need);
  if (r.offset.size() < n) {
    r.offset.resize(n);
    r.size.resize(n);
    r.qsr.resize(n);
  }
  std::string err;
  bool ok = false;
  try {
    ok = post_.run(const_cast<const void* const*>(b->outputs.data()), b->n, b->idx.data(), r.data.data(),
                   r.offset.data(), r.size.data(), r.scratch.get(), &err);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!ok) {
    fail(b->ids.data(), b->n, "post-processing on " + lane.dev->info.name + ": " + err);
    return;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(r.data.data());
  for (size_t i = 0; i < n; ++i) r.qsr[i] = mlperf::QuerySampleResponse(b->ids[i], base + r.offset[i], r.size[i]);
  // Before LoadGen takes its own completion time, so that the live latency is never above
  // LoadGen's (which also counts from the scheduled issue, at or before IssueQuery).
  const int64_t t_live = live_latency_on() ? now_ns() : 0;
  complete(r.qsr.data(), n);  // R's buffers are reused only after this returns
  int64_t t1 = now_ns();
  if (latency_log.on())
    for (size_t i = 0; i < n; ++i)
      if (b->issued[i]) latency_log.add(t1, t1 - b->issued[i]);
  if (t_live)
    for (size_t i = 0; i < n; ++i)
      if (b->issued[i]) lane.live.add(t_live - b->issued[i]);
  lane.stats.post_ns.fetch_add(t1 - t0, std::memory_order_relaxed);
}

void Completer::deliver(PostQueue* queue, Responder& r, Lane& lane, Batch* b, int status) {
  if (status != VP_OK) {
    fail(b->ids.data(), b->n, lane.dev->info.name + ": " + lane.dev->last_error());
    lane.release(b);
    return;
  }
  lane.stats.batches++;
  lane.stats.samples += uint64_t(b->n);
  if (queue) {
    std::unique_lock<std::mutex> lk(queue->mu);
    if (queue->q.size() < 4 * queue->threads) {  // else post-processing is behind: help it
      queue->q.emplace_back(&lane, b);
      queue->cv.notify_one();
      return;
    }
  }
  finish(lane, b, r);
  lane.release(b);
}

bool Completer::help(PostQueue* queue, Responder& r) {
  if (!queue) return false;
  std::pair<Lane*, Batch*> item{nullptr, nullptr};
  {
    std::lock_guard<std::mutex> lk(queue->mu);
    if (!queue->q.empty()) {
      item = queue->q.front();
      queue->q.pop_front();
    }
  }
  if (!item.first) return false;
  finish(*item.first, item.second, r);
  item.first->release(item.second);
  return true;
}

std::vector<PostQueue*> Completer::start_post_threads(const std::vector<std::vector<int>>& driver_cpus,
                                                      int threads) {
  std::vector<PostQueue*> of_driver(driver_cpus.size(), nullptr);
  size_t nq = std::min(size_t(std::max(0, threads)), driver_cpus.size());
  for (size_t q = 0; q < nq; ++q) {
    auto pq = std::make_unique<PostQueue>();
    pq->cpus = driver_cpus[q];
    post_queues_.push_back(std::move(pq));
  }
  for (size_t i = 0; i < driver_cpus.size() && nq; ++i) of_driver[i] = post_queues_[i % nq].get();
  for (int j = 0; j < threads && nq; ++j) {
    PostQueue& q = *post_queues_[size_t(j) % nq];
    q.threads++;
    post_threads_.emplace_back([this, &q] { post_loop(q); });
  }
  return of_driver;
}

void Completer::stop_post_threads() {
  for (auto& q : post_queues_) {
    std::lock_guard<std::mutex> lk(q->mu);
    q->stop = true;
    q->cv.notify_all();
  }
  for (auto& t : post_threads_) t.join();
  post_threads_.clear();
  post_queues_.clear();
}

void Completer::post_loop(PostQueue& q) {
  pin_thread(q.cpus);
  Responder r;
  r.scratch = post_.scratch();
  for (;;) {
    std::pair<Lane*, Batch*> item;
    {
      std::unique_lock<std::mutex> lk(q.mu);
      q.cv.wait(lk, [&] { return q.stop || !q.q.empty(); });
      if (q.q.empty()) return;
      item = q.q.front();
      q.q.pop_front();
    }
    finish(*item.first, item.second, r);
    item.first->release(item.second);
  }
}

}  // namespace vp
