// A simulated accelerator card, written against the plug-in ABI like any vendor device.
//
// So that scaling can be studied without the card, it behaves like one at the host
// interface: submit copies the batch into the card's own memory (real bytes, as the DMA into
// a card would), the card's engine is busy for rows / rate seconds (batches queue on it in
// order, at most max_in_flight held at once), and collect copies outputs of the real size and
// layout back (realistic raw detection heads cycled from the examples the engine passes in),
// so the host's share of the work is real. Waiting is an absolute clock_nanosleep: no CPU
// burnt, wake-ups accurate to tens of microseconds.
//
// It fetches its own rows (device.h ABI 2), as a Cloud AI 100's DMA engine does: submit_rows
// copies each row from the registered sample buffer into the card's memory, so every sample
// crosses memory once, not twice (host gather, then the card's copy). Its copies, either
// way, are counted apart (copy_cpu_s): a real card's DMA engine makes them, not a host core.
//
// Options: rate=<samples/s> (required); fetch=0 takes the host gather instead (submit).
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "devices.h"

namespace vp {
namespace {

struct Pending {
  uint64_t ticket;
  int slot, rows, first;
  int64_t start, ready;
};

struct Card {
  double ns_per_row = 0;
  int batch = 1;
  size_t in_row = 0;
  std::vector<size_t> out_bytes;
  std::vector<const uint8_t*> examples;
  int example_count = 0, next_example = 0;
  std::vector<uint8_t> memory;  // the card's own memory: one input batch per slot
  std::vector<int> free_slots;
  std::deque<Pending> queue;
  int64_t engine_free_at = 0;
  const uint8_t* region = nullptr;  // the registered sample buffer (fetch)
  size_t region_bytes = 0;
  uint64_t next_ticket = 0;
  std::string error;
  vp_device_counters counters{};
};

void* open_card(vp_device_config* cfg, char* err, size_t len) {
  double rate = option_double(cfg->options, "rate", 0.0);
  if (!(rate > 0)) {
    std::snprintf(err, len, "simulated card needs a rate > 0 samples/s (option rate=...)");
    return nullptr;
  }
  auto* c = new Card();
  c->ns_per_row = 1e9 / rate;
  c->batch = cfg->batch_size;
  c->in_row = tensor_bytes(cfg->input);
  for (int k = 0; k < cfg->num_outputs; ++k) {
    c->out_bytes.push_back(tensor_bytes(cfg->outputs[k]));
    c->examples.push_back(cfg->example_count ? static_cast<const uint8_t*>(cfg->examples[k]) : nullptr);
  }
  c->example_count = cfg->example_count;
  c->memory.resize(size_t(cfg->max_in_flight) * c->batch * c->in_row);
  for (int s = cfg->max_in_flight - 1; s >= 0; --s) c->free_slots.push_back(s);
  if (cfg->abi_version >= 2) cfg->fetch_rows = option_double(cfg->options, "fetch", 1.0) != 0.0;
  return c;
}

// Batch ROWS into a free slot of the card's memory: from INPUT, contiguous (the host's
// gather), or from ROW_ADDRS (the card's own fetch). Returns VP_OK and sets *ticket, *ready_ns.
int load_batch(Card* c, const void* input, const void* const* row_addrs, int32_t rows, uint64_t* ticket,
               int64_t* ready_ns) {
  if (c->free_slots.empty()) {
    c->error = "more batches submitted than the card holds at once";
    return VP_ERROR;
  }
  if (rows < 1 || rows > c->batch) {
    c->error = "batch of " + std::to_string(rows) + " rows, the card takes 1.." + std::to_string(c->batch);
    return VP_ERROR;
  }
  double c0 = thread_cpu_s();
  int slot = c->free_slots.back();
  c->free_slots.pop_back();
  uint8_t* dst = c->memory.data() + size_t(slot) * c->batch * c->in_row;
  if (row_addrs) {
    for (int32_t r = 0; r < rows; ++r) std::memcpy(dst + size_t(r) * c->in_row, row_addrs[r], c->in_row);
  } else {
    std::memcpy(dst, input, size_t(rows) * c->in_row);
  }
  int64_t start = std::max(now_ns(), c->engine_free_at);
  int64_t ready = start + int64_t(rows * c->ns_per_row);
  c->engine_free_at = ready;
  Pending p{c->next_ticket++, slot, rows, c->next_example, start, ready};
  if (c->example_count) c->next_example = (c->next_example + rows) % c->example_count;
  c->queue.push_back(p);
  *ticket = p.ticket;
  *ready_ns = ready;
  c->counters.copy_cpu_s += thread_cpu_s() - c0;  // a real card's DMA engine does this copy
  return VP_OK;
}

int submit_card(void* d, const void* input, int32_t rows, uint64_t* ticket, int64_t* ready_ns) {
  return load_batch(static_cast<Card*>(d), input, nullptr, rows, ticket, ready_ns);
}

int register_card(void* d, int32_t, const void* base, size_t bytes, size_t) {
  auto* c = static_cast<Card*>(d);
  c->region = static_cast<const uint8_t*>(base);
  c->region_bytes = bytes;
  return VP_OK;
}

void unregister_card(void* d, int32_t) {
  auto* c = static_cast<Card*>(d);
  c->region = nullptr;
  c->region_bytes = 0;
}

int submit_rows_card(void* d, int32_t, const void* const* row_addrs, int32_t rows, uint64_t* ticket,
                     int64_t* ready_ns) {
  auto* c = static_cast<Card*>(d);
  for (int32_t r = 0; r < rows && r < c->batch; ++r) {  // a DMA engine reads registered memory only
    auto* p = static_cast<const uint8_t*>(row_addrs[r]);
    if (!c->region || p < c->region || p + c->in_row > c->region + c->region_bytes) {
      c->error = "row " + std::to_string(r) + " of the batch is outside the registered sample buffer";
      return VP_ERROR;
    }
  }
  return load_batch(c, nullptr, row_addrs, rows, ticket, ready_ns);
}

int collect_card(void* d, uint64_t ticket, void* const* outputs, int64_t timeout_ns) {
  auto* c = static_cast<Card*>(d);
  if (c->queue.empty() || c->queue.front().ticket != ticket) {
    c->error = "collect of a batch that is not the oldest in flight";
    return VP_ERROR;
  }
  Pending p = c->queue.front();
  int64_t now = now_ns();
  if (now < p.ready) {
    if (timeout_ns == 0) return VP_NOT_READY;
    int64_t until = timeout_ns < 0 ? p.ready : std::min(p.ready, now + timeout_ns);
    sleep_until_ns(until);
    now = now_ns();
    if (now < p.ready) return VP_NOT_READY;
  }
  c->counters.late_s += 1e-9 * double(now - p.ready);
  c->queue.pop_front();
  c->free_slots.push_back(p.slot);
  double c0 = thread_cpu_s();
  for (size_t k = 0; k < c->out_bytes.size(); ++k) {  // card -> host: the real bytes
    auto* out = static_cast<uint8_t*>(outputs[k]);
    size_t b = c->out_bytes[k];
    if (!c->examples[k]) {
      std::memset(out, 0, b * p.rows);
      continue;
    }
    for (int r = 0; r < p.rows; ++r)
      std::memcpy(out + r * b, c->examples[k] + size_t((p.first + r) % c->example_count) * b, b);
  }
  c->counters.copy_cpu_s += thread_cpu_s() - c0;
  return VP_OK;
}

const char* card_error(void* d) { return static_cast<Card*>(d)->error.c_str(); }
void card_counters(void* d, vp_device_counters* out) { *out = static_cast<Card*>(d)->counters; }
void close_card(void* d) { delete static_cast<Card*>(d); }

const vp_device_api kSimulated = {VP_DEVICE_ABI_VERSION, "simulated", open_card,     submit_card,
                                  collect_card,          card_error,  card_counters, close_card,
                                  register_card,         unregister_card, submit_rows_card};

}  // namespace

const vp_device_api* simulated_device_api() { return &kSimulated; }

}  // namespace vp
