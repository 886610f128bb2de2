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
  std::vector<mlperf::QuerySampleResponse> responses(size_t(std::max(0, n)));
  for (int i = 0; i < n; ++i) responses[i] = mlperf::QuerySampleResponse(ids[i], 0, 0);
  if (n > 0) complete(responses.data(), size_t(n));
}

void Completer::finish(Lane& lane, Batch* batch, Responder& responder) {
  int64_t t0 = now_ns();
  size_t n = size_t(batch->n);
  size_t need = n * std::max<size_t>(1, post_.max_response_bytes());
  if (responder.data.size() < need) responder.data.resize(need);
  if (responder.offset.size() < n) {
    responder.offset.resize(n);
    responder.size.resize(n);
    responder.qsr.resize(n);
  }
  std::string err;
  bool ok = false;
  try {
    ok = post_.run(const_cast<const void* const*>(batch->outputs.data()), batch->n, batch->idx.data(), responder.data.data(),
                   responder.offset.data(), responder.size.data(), responder.scratch.get(), &err);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!ok) {
    fail(batch->ids.data(), batch->n, "post-processing on " + lane.dev->info.name + ": " + err);
    return;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(responder.data.data());
  for (size_t i = 0; i < n; ++i) responder.qsr[i] = mlperf::QuerySampleResponse(batch->ids[i], base + responder.offset[i], responder.size[i]);
  // Before LoadGen takes its own completion time, so that the live latency is never above
  // LoadGen's (which also counts from the scheduled issue, at or before IssueQuery).
  const int64_t t_live = live_latency_on() ? now_ns() : 0;
  complete(responder.qsr.data(), n);  // the responder's buffers are reused only after this returns
  int64_t t1 = now_ns();
  if (latency_log.on())
    for (size_t i = 0; i < n; ++i)
      if (batch->issued[i]) latency_log.add(t1, t1 - batch->issued[i]);
  if (t_live)
    for (size_t i = 0; i < n; ++i)
      if (batch->issued[i]) lane.live.add(t_live - batch->issued[i]);
  lane.stats.post_ns.fetch_add(t1 - t0, std::memory_order_relaxed);
}

void Completer::deliver(PostQueue* queue, Responder& responder, Lane& lane, Batch* batch, int status) {
  if (status != VP_OK) {
    fail(batch->ids.data(), batch->n, lane.dev->info.name + ": " + lane.dev->last_error());
    lane.release(batch);
    return;
  }
  lane.stats.batches++;
  lane.stats.samples += uint64_t(batch->n);
  if (queue) {
    std::unique_lock<std::mutex> lk(queue->mu);
    if (queue->batches.size() < 4 * queue->threads) {  // else post-processing is behind: help it
      queue->batches.emplace_back(&lane, batch);
      queue->cv.notify_one();
      return;
    }
  }
  finish(lane, batch, responder);
  lane.release(batch);
}

bool Completer::help(PostQueue* queue, Responder& responder) {
  if (!queue) return false;
  std::pair<Lane*, Batch*> item{nullptr, nullptr};
  {
    std::lock_guard<std::mutex> lk(queue->mu);
    if (!queue->batches.empty()) {
      item = queue->batches.front();
      queue->batches.pop_front();
    }
  }
  if (!item.first) return false;
  finish(*item.first, item.second, responder);
  item.first->release(item.second);
  return true;
}

std::vector<PostQueue*> Completer::start_post_threads(const std::vector<std::vector<int>>& driver_cpus,
                                                      int threads) {
  std::vector<PostQueue*> of_driver(driver_cpus.size(), nullptr);
  size_t queues = std::min(size_t(std::max(0, threads)), driver_cpus.size());
  for (size_t k = 0; k < queues; ++k) {
    auto queue = std::make_unique<PostQueue>();
    queue->cpus = driver_cpus[k];
    post_queues_.push_back(std::move(queue));
  }
  for (size_t i = 0; i < driver_cpus.size() && queues; ++i) of_driver[i] = post_queues_[i % queues].get();
  for (int j = 0; j < threads && queues; ++j) {
    PostQueue& queue = *post_queues_[size_t(j) % queues];
    queue.threads++;
    post_threads_.emplace_back([this, &queue] { post_loop(queue); });
  }
  return of_driver;
}

void Completer::stop_post_threads() {
  for (auto& queue : post_queues_) {
    std::lock_guard<std::mutex> lk(queue->mu);
    queue->stop = true;
    queue->cv.notify_all();
  }
  for (auto& t : post_threads_) t.join();
  post_threads_.clear();
  post_queues_.clear();
}

void Completer::post_loop(PostQueue& queue) {
  pin_thread(queue.cpus);
  Responder responder;
  responder.scratch = post_.scratch();
  for (;;) {
    std::pair<Lane*, Batch*> item;
    {
      std::unique_lock<std::mutex> lk(queue.mu);
      queue.cv.wait(lk, [&] { return queue.stop || !queue.batches.empty(); });
      if (queue.batches.empty()) return;
      item = queue.batches.front();
      queue.batches.pop_front();
    }
    finish(*item.first, item.second, responder);
    item.first->release(item.second);
  }
}

}  // namespace vp
