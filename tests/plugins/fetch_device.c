/* The suite's version 2 device plug-in: it fetches its own rows (device.h "Device fetch"), built
 * against visionperf/device.h alone like echo_device.c, and answers the same label per row:
 *
 *     label = (little-endian uint32 of bytes 0..3) % 1000
 *
 * It holds the engine to the contract rather than trusting it. submit_rows() keeps the row
 * ADDRESSES only (no copy), and a checksum of each row; collect() reads the rows then, so a row
 * freed, moved or overwritten before its batch is collected answers a wrong label, and is
 * caught: the batch fails naming it. Every row must lie inside the registered region; a region
 * is registered once before any batch, unregistered with no batch in flight and while its
 * memory is still there (its checksum is taken again), and never left registered at close.
 * Any breach fails the device's later batches with its message and is written to the log.
 *
 * Options ("key=value;..."):
 *   delay_us=N     per batch (default 0); batches queue on one engine in submission order
 *   fetch=0        do not fetch: a version 2 device that takes the host gather (submit)
 *   fail_register=1  register_region() refuses
 *   log=PATH       append one line per event: "open I", "register R BYTES", "unregister R",
 *                  "submit N", "collect N", "breach MESSAGE", "close I" (PATH without ';')
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "visionperf/device.h"

typedef struct {
  uint64_t ticket;
  int32_t rows;
  int64_t ready;
  const uint8_t **addrs; /* batch x: the rows, read again at collect */
  uint64_t *sums;        /* batch x: each row's checksum at submit */
} fetch_batch;

typedef struct {
  int32_t index, batch, max_in_flight;
  size_t in_row;
  int64_t delay_ns, free_at;
  int fetch, fail_register;
  const uint8_t *base; /* the registered region, NULL when none */
  size_t bytes;
  uint64_t region_sum;
  fetch_batch *ring;
  int32_t head, count;
  uint64_t next_ticket;
  char log[512];
  char breach[256]; /* the first breach of the contract, sticky */
  char error[320];
} fetch_dev;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static size_t tensor_bytes(const vp_tensor *t) {
  size_t n = t->dtype == VP_INT64 ? 8 : t->dtype == VP_FLOAT32 || t->dtype == VP_INT32 ? 4
           : t->dtype == VP_FLOAT16 ? 2 : 1;
  for (int i = 0; i < t->ndim; ++i) n *= (size_t)t->dims[i];
  return n;
}

static uint64_t checksum(const uint8_t *p, size_t n) { /* FNV-1a, every byte */
  uint64_t h = 1469598103934665603ull;
  for (size_t k = 0; k < n; ++k) h = (h ^ p[k]) * 1099511628211ull;
  return h;
}

static int64_t row_label(const uint8_t *row) {
  return (int64_t)(((uint32_t)row[0] | (uint32_t)row[1] << 8 | (uint32_t)row[2] << 16 | (uint32_t)row[3] << 24) % 1000u);
}

static const char *option_str(const char *options, const char *key, char *out, size_t out_len) {
  size_t klen = strlen(key);
  for (const char *p = options; p && *p;) {
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
      const char *v = p + klen + 1, *end = strchr(v, ';');
      size_t n = end ? (size_t)(end - v) : strlen(v);
      if (n >= out_len) n = out_len - 1;
      memcpy(out, v, n);
      out[n] = 0;
      return out;
    }
    p = strchr(p, ';');
    if (p) ++p;
  }
  return NULL;
}

static long option(const char *options, const char *key, long fallback) {
  char v[64];
  return option_str(options, key, v, sizeof v) ? strtol(v, NULL, 10) : fallback;
}

static void logf_(fetch_dev *d, const char *what, long a, long b) {
  if (!d->log[0]) return;
  FILE *f = fopen(d->log, "a");
  if (!f) return;
  fprintf(f, "%d %s %ld %ld\n", d->index, what, a, b);
  fclose(f);
}

static void breach(fetch_dev *d, const char *msg) {
  if (d->breach[0]) return;
  snprintf(d->breach, sizeof d->breach, "%s", msg);
  if (d->log[0]) {
    FILE *f = fopen(d->log, "a");
    if (f) {
      fprintf(f, "%d breach %s\n", d->index, msg);
      fclose(f);
    }
  }
}

static void *fetch_open(vp_device_config *cfg, char *err, size_t err_len) {
  if (cfg->num_outputs != 1 || cfg->outputs[0].dtype != VP_INT64 || tensor_bytes(&cfg->outputs[0]) != 8) {
    snprintf(err, err_len, "fetch device makes one int64 label per row, not %d output(s)", cfg->num_outputs);
    return NULL;
  }
  if (cfg->abi_version < 2) {
    snprintf(err, err_len, "fetch device speaks ABI 2, was opened as %u", cfg->abi_version);
    return NULL;
  }
  fetch_dev *d = calloc(1, sizeof(fetch_dev));
  if (!d) return NULL;
  d->index = cfg->index;
  d->batch = cfg->batch_size;
  d->max_in_flight = cfg->max_in_flight;
  d->in_row = tensor_bytes(&cfg->input);
  d->delay_ns = option(cfg->options, "delay_us", 0) * 1000;
  d->fetch = (int)option(cfg->options, "fetch", 1);
  d->fail_register = (int)option(cfg->options, "fail_register", 0);
  option_str(cfg->options, "log", d->log, sizeof d->log);
  d->ring = calloc((size_t)d->max_in_flight, sizeof(fetch_batch));
  for (int32_t s = 0; d->ring && s < d->max_in_flight; ++s) {
    d->ring[s].addrs = calloc((size_t)d->batch, sizeof(uint8_t *));
    d->ring[s].sums = calloc((size_t)d->batch, sizeof(uint64_t));
    if (!d->ring[s].addrs || !d->ring[s].sums) {
      snprintf(err, err_len, "fetch device: out of memory");
      return NULL; /* a test device: the leak does not matter */
    }
  }
  if (!d->ring) {
    snprintf(err, err_len, "fetch device: out of memory");
    free(d);
    return NULL;
  }
  cfg->fetch_rows = d->fetch;
  logf_(d, "open", cfg->index, 0);
  return d;
}

static int fetch_register(void *dev, int32_t region, const void *base, size_t bytes, size_t row_bytes) {
  fetch_dev *d = dev;
  logf_(d, "register", region, (long)bytes);
  if (d->fail_register) {
    snprintf(d->error, sizeof d->error, "fetch device: cannot pin %zu bytes (fail_register=1)", bytes);
    return VP_ERROR;
  }
  if (d->base) breach(d, "register_region of a second region while one is registered");
  if (d->count) breach(d, "register_region with a batch in flight");
  if (row_bytes != d->in_row) breach(d, "register_region with rows of another size");
  d->base = base;
  d->bytes = bytes;
  d->region_sum = checksum(d->base, d->bytes);
  return VP_OK;
}

static void fetch_unregister(void *dev, int32_t region) {
  fetch_dev *d = dev;
  logf_(d, "unregister", region, 0);
  if (!d->base) breach(d, "unregister_region of a region not registered");
  else if (d->count) breach(d, "unregister_region with a batch in flight");
  else if (checksum(d->base, d->bytes) != d->region_sum) breach(d, "the registered rows changed while registered");
  d->base = NULL;
  d->bytes = 0;
}

static int fetch_submit_rows(void *dev, int32_t region, const void *const *rows, int32_t n, uint64_t *ticket,
                             int64_t *ready_ns) {
  fetch_dev *d = dev;
  (void)region;
  logf_(d, "submit", n, 0);
  if (!d->base) breach(d, "submit_rows with no region registered");
  if (d->count >= d->max_in_flight || n < 1 || n > d->batch) {
    snprintf(d->error, sizeof d->error, "fetch device: batch of %d rows with %d in flight", n, d->count);
    return VP_ERROR;
  }
  fetch_batch *b = &d->ring[(d->head + d->count) % d->max_in_flight];
  for (int32_t r = 0; r < n; ++r) {
    const uint8_t *p = rows[r];
    if (!d->base || p < d->base || p + d->in_row > d->base + d->bytes || (size_t)(p - d->base) % d->in_row) {
      breach(d, "a row address outside the registered region");
      break;
    }
    b->addrs[r] = p;
    b->sums[r] = checksum(p, d->in_row);
  }
  if (d->breach[0]) {
    snprintf(d->error, sizeof d->error, "fetch device: %s", d->breach);
    return VP_ERROR;
  }
  int64_t now = now_ns(), start = d->free_at > now ? d->free_at : now;
  b->ticket = d->next_ticket++;
  b->rows = n;
  b->ready = d->free_at = start + d->delay_ns;
  d->count++;
  *ticket = b->ticket;
  *ready_ns = b->ready;
  return VP_OK;
}

/* The host gather (fetch=0): copy, as a version 1 device does. */
static int fetch_submit(void *dev, const void *input, int32_t n, uint64_t *ticket, int64_t *ready_ns) {
  fetch_dev *d = dev;
  if (d->fetch) {
    breach(d, "submit() on a device that fetches its own rows");
    snprintf(d->error, sizeof d->error, "fetch device: %s", d->breach);
    return VP_ERROR;
  }
  fetch_batch *b = &d->ring[(d->head + d->count) % d->max_in_flight];
  if (d->count >= d->max_in_flight || n < 1 || n > d->batch) return VP_ERROR;
  uint8_t *copy = (uint8_t *)b->sums; /* labels only: keep each row's first four bytes */
  for (int32_t r = 0; r < n; ++r) memcpy(copy + 8 * r, (const uint8_t *)input + (size_t)r * d->in_row, 4);
  b->ticket = d->next_ticket++;
  b->rows = n;
  b->ready = now_ns() + d->delay_ns;
  d->count++;
  *ticket = b->ticket;
  *ready_ns = b->ready;
  return VP_OK;
}

static int fetch_collect(void *dev, uint64_t ticket, void *const *outputs, int64_t timeout_ns) {
  fetch_dev *d = dev;
  fetch_batch *b = &d->ring[d->head];
  if (d->count == 0 || b->ticket != ticket) {
    snprintf(d->error, sizeof d->error, "fetch device: collect of a batch not the oldest in flight");
    return VP_ERROR;
  }
  int64_t now = now_ns();
  if (now < b->ready) {
    if (timeout_ns == 0) return VP_NOT_READY;
    sleep_until(timeout_ns < 0 || now + timeout_ns > b->ready ? b->ready : now + timeout_ns);
    if (now_ns() < b->ready) return VP_NOT_READY;
  }
  d->head = (d->head + 1) % d->max_in_flight;
  d->count--;
  logf_(d, "collect", b->rows, 0);
  int64_t *labels = outputs[0];
  for (int32_t r = 0; r < b->rows; ++r) {
    if (!d->fetch) {
      labels[r] = row_label((const uint8_t *)b->sums + 8 * r);
      continue;
    }
    if (checksum(b->addrs[r], d->in_row) != b->sums[r]) breach(d, "a row changed before its batch was collected");
    labels[r] = row_label(b->addrs[r]); /* read now, at the end: the DMA may run this late */
  }
  if (d->breach[0]) {
    snprintf(d->error, sizeof d->error, "fetch device: %s", d->breach);
    return VP_ERROR;
  }
  return VP_OK;
}

static const char *fetch_error(void *dev) { return ((fetch_dev *)dev)->error; }

static void fetch_close(void *dev) {
  fetch_dev *d = dev;
  if (d->base) breach(d, "closed with its region still registered");
  logf_(d, "close", d->index, 0);
  for (int32_t s = 0; s < d->max_in_flight; ++s) {
    free(d->ring[s].addrs);
    free(d->ring[s].sums);
  }
  free(d->ring);
  free(d);
}

static const vp_device_api fetch_api = {VP_DEVICE_ABI_VERSION, "fetch", fetch_open, fetch_submit, fetch_collect,
                                        fetch_error, NULL, fetch_close, fetch_register, fetch_unregister,
                                        fetch_submit_rows};

const vp_device_api *vp_device_plugin(uint32_t abi_version) {
  return abi_version == VP_DEVICE_ABI_VERSION ? &fetch_api : NULL;
}
