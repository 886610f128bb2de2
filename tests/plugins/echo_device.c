/* A tiny asynchronous device plug-in for the test suite, built against visionperf/device.h
 * alone (tests/conftest.py compiles it with `cc -shared -fPIC`). It is the suite's version 1
 * plug-in, unchanged since ABI 1: it answers vp_device_plugin(1) only, so the engine gives it
 * the host gather (tests/plugins/fetch_device.c is the version 2 one).
 *
 * submit() copies the rows into the device's own memory and returns at once; the device's one
 * engine is then busy DELAY_US per batch (batches queue in submission order). collect() writes,
 * per row, an int64 label computed from the row's first four bytes:
 *
 *     label = (little-endian uint32 of bytes 0..3) % 1000
 *
 * so a test can tell which sample each response came from.
 *
 * Options ("key=value;..."):
 *   delay_us=N          per batch (default 0)
 *   stall_us=N          extra time on the first batch only (a kernel compiling, say)
 *   fail_on=N           the Nth submit (1-based, per device) returns VP_ERROR
 *   fail_collect_on=N   the Nth collect of a batch returns VP_ERROR
 *   fail_label=L        every submit holding a row whose label is L returns VP_ERROR
 *   fail_collect_label=L  the same, in collect
 *   fail_open=1         open() refuses with a message
 *   announce=0          submit reports ready_ns = 0 (the engine polls collect)
 *   jitter_us=N         batches run side by side, each for a random 0..N us (seeded per device):
 *                       later batches often finish before earlier ones, and ready times announced
 *                       at submit are not in submission order
 *   hang_on=N           the Nth submit (1-based, per device) and every later one never finish:
 *                       their ready time is announced as usual, but collect answers VP_NOT_READY
 *                       for ever (after waiting out its timeout; a timeout of -1 waits 1 ms)
 *
 * Build variants (for the loader's error paths):
 *   -DVP_TEST_ABI=3       vp_device_plugin returns, whatever is asked, a table that says 3
 *   -DVP_TEST_ABI=0       vp_device_plugin returns NULL (cannot serve the ABI asked for)
 *   -DVP_TEST_NO_ENTRY    the entry point is not exported under its name
 */
#define _POSIX_C_SOURCE 200809L  /* clock_nanosleep under -std=c99 */

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
  int hang;
} echo_batch;

typedef struct {
  int32_t batch, max_in_flight, num_outputs;
  size_t in_row;
  int64_t delay_ns, stall_ns;
  long hang_on, fail_on, fail_collect_on, fail_label, fail_collect_label, submits, collects;
  int announce;
  int64_t jitter_ns;
  uint64_t rng;
  uint8_t *memory;     /* max_in_flight x batch x in_row: the device's own copy of its inputs */
  echo_batch *ring;    /* batches in flight, oldest at head */
  int32_t head, count; /* ring position of the oldest, batches held */
  int64_t free_at;     /* when the device's engine is free */
  uint64_t next_ticket;
  char error[256];
} echo_dev;

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

static size_t dtype_size(int32_t d) {
  switch (d) {
    case VP_UINT8: case VP_INT8: return 1;
    case VP_FLOAT16: return 2;
    case VP_FLOAT32: case VP_INT32: return 4;
    case VP_INT64: return 8;
  }
  return 0;
}

static size_t tensor_bytes(const vp_tensor *t) {
  size_t n = dtype_size(t->dtype);
  for (int i = 0; i < t->ndim; ++i) n *= (size_t)t->dims[i];
  return n;
}

/* The label the device answers for one row: its first four bytes, little-endian, mod 1000. */
static int64_t row_label(const uint8_t *row, size_t row_bytes) {
  uint32_t v = 0;
  for (size_t k = 0; k < 4 && k < row_bytes; ++k) v |= (uint32_t)row[k] << (8 * k);
  return (int64_t)(v % 1000u);
}

/* Whether any of ROWS rows at P has label LABEL. */
static int holds_label(const uint8_t *p, int32_t rows, size_t row_bytes, long label) {
  for (int32_t r = 0; label >= 0 && r < rows; ++r)
    if (row_label(p + (size_t)r * row_bytes, row_bytes) == label) return 1;
  return 0;
}

/* "key=value;key=value": the value of KEY, or FALLBACK. */
static long option(const char *options, const char *key, long fallback) {
  size_t klen = strlen(key);
  const char *p = options;
  while (p && *p) {
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') return strtol(p + klen + 1, NULL, 10);
    p = strchr(p, ';');
    if (p) ++p;
  }
  return fallback;
}

static void *echo_open(vp_device_config *cfg, char *err, size_t err_len) {
  if (option(cfg->options, "fail_open", 0)) {
    snprintf(err, err_len, "echo device %d refuses to open (fail_open=1)", cfg->index);
    return NULL;
  }
  if (cfg->num_outputs != 1 || (cfg->outputs[0].dtype != VP_INT64 || tensor_bytes(&cfg->outputs[0]) != 8)) {
    snprintf(err, err_len, "echo device makes one int64 label per row, not %d output(s)", cfg->num_outputs);
    return NULL;
  }
  echo_dev *d = calloc(1, sizeof(echo_dev));
  if (!d) return NULL;
  d->batch = cfg->batch_size;
  d->max_in_flight = cfg->max_in_flight;
  d->num_outputs = cfg->num_outputs;
  d->in_row = tensor_bytes(&cfg->input);
  d->delay_ns = option(cfg->options, "delay_us", 0) * 1000;
  d->stall_ns = option(cfg->options, "stall_us", 0) * 1000;
  d->fail_on = option(cfg->options, "fail_on", 0);
  d->hang_on = option(cfg->options, "hang_on", 0);
  d->fail_collect_on = option(cfg->options, "fail_collect_on", 0);
  d->fail_label = option(cfg->options, "fail_label", -1);
  d->fail_collect_label = option(cfg->options, "fail_collect_label", -1);
  d->announce = (int)option(cfg->options, "announce", 1);
  d->jitter_ns = option(cfg->options, "jitter_us", 0) * 1000;
  d->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(cfg->index + 1);
  d->memory = malloc((size_t)d->max_in_flight * (size_t)d->batch * d->in_row);
  d->ring = calloc((size_t)d->max_in_flight, sizeof(echo_batch));
  if (!d->memory || !d->ring) {
    snprintf(err, err_len, "echo device: out of memory");
    free(d->memory);
    free(d->ring);
    free(d);
    return NULL;
  }
  return d;
}

static int echo_submit(void *dev, const void *input, int32_t rows, uint64_t *ticket, int64_t *ready_ns) {
  echo_dev *d = dev;
  d->submits++;
  if (d->fail_on && d->submits == d->fail_on) {
    snprintf(d->error, sizeof d->error, "echo device: submit %ld failed on purpose", d->submits);
    return VP_ERROR;
  }
  if (holds_label(input, rows, d->in_row, d->fail_label)) {
    snprintf(d->error, sizeof d->error, "echo device: submit of a row labelled %ld failed on purpose", d->fail_label);
    return VP_ERROR;
  }
  if (d->count >= d->max_in_flight) {
    snprintf(d->error, sizeof d->error, "echo device: more than %d batches in flight", d->max_in_flight);
    return VP_ERROR;
  }
  if (rows < 1 || rows > d->batch) {
    snprintf(d->error, sizeof d->error, "echo device: batch of %d rows, takes 1..%d", rows, d->batch);
    return VP_ERROR;
  }
  int32_t slot = (d->head + d->count) % d->max_in_flight;
  memcpy(d->memory + (size_t)slot * d->batch * d->in_row, input, (size_t)rows * d->in_row);
  int64_t now = now_ns(), start = d->free_at > now ? d->free_at : now;
  echo_batch *b = &d->ring[slot];
  b->ticket = d->next_ticket++;
  b->rows = rows;
  b->hang = d->hang_on && d->submits >= d->hang_on;
  b->ready = start + d->delay_ns + (b->ticket == 0 ? d->stall_ns : 0);
  if (d->jitter_ns) { /* no shared engine: each batch on its own, for a random time */
    d->rng ^= d->rng << 13, d->rng ^= d->rng >> 7, d->rng ^= d->rng << 17;
    b->ready = now + d->delay_ns + (int64_t)(d->rng % (uint64_t)d->jitter_ns);
  } else {
    d->free_at = b->ready;
  }
  d->count++;
  *ticket = b->ticket;
  *ready_ns = d->announce ? b->ready : 0;
  return VP_OK;
}

static int echo_collect(void *dev, uint64_t ticket, void *const *outputs, int64_t timeout_ns) {
  echo_dev *d = dev;
  if (d->count == 0 || d->ring[d->head].ticket != ticket) {
    snprintf(d->error, sizeof d->error, "echo device: collect of ticket %llu, not the oldest in flight",
             (unsigned long long)ticket);
    return VP_ERROR;
  }
  echo_batch *b = &d->ring[d->head];
  int64_t now = now_ns();
  if (b->hang) { /* stuck for ever: batches finish in order, so every later one is too */
    if (timeout_ns != 0) sleep_until(now + (timeout_ns < 0 ? 1000000 : timeout_ns));
    return VP_NOT_READY;
  }
  if (now < b->ready) {
    if (timeout_ns == 0) return VP_NOT_READY;
    sleep_until(timeout_ns < 0 || now + timeout_ns > b->ready ? b->ready : now + timeout_ns);
    if (now_ns() < b->ready) return VP_NOT_READY;
  }
  int32_t slot = d->head;
  d->head = (d->head + 1) % d->max_in_flight;
  d->count--;
  d->collects++;
  if (d->fail_collect_on && d->collects == d->fail_collect_on) {
    snprintf(d->error, sizeof d->error, "echo device: collect %ld failed on purpose", d->collects);
    return VP_ERROR;
  }
  const uint8_t *in = d->memory + (size_t)slot * d->batch * d->in_row;
  if (holds_label(in, b->rows, d->in_row, d->fail_collect_label)) {
    snprintf(d->error, sizeof d->error, "echo device: collect of a row labelled %ld failed on purpose",
             d->fail_collect_label);
    return VP_ERROR;
  }
  int64_t *labels = outputs[0];
  for (int32_t r = 0; r < b->rows; ++r) labels[r] = row_label(in + (size_t)r * d->in_row, d->in_row);
  return VP_OK;
}

static const char *echo_error(void *dev) { return ((echo_dev *)dev)->error; }

static void echo_close(void *dev) {
  echo_dev *d = dev;
  free(d->memory);
  free(d->ring);
  free(d);
}

#ifndef VP_TEST_ABI
#define VP_TEST_ABI 1u /* the version this plug-in was written to */
#endif

static const vp_device_api echo_api = {VP_TEST_ABI, "echo", echo_open, echo_submit, echo_collect,
                                       echo_error, NULL, echo_close};

#ifdef VP_TEST_NO_ENTRY
#define ENTRY not_the_entry_point
#else
#define ENTRY vp_device_plugin
#endif

const vp_device_api *ENTRY(uint32_t abi_version) {
#if VP_TEST_ABI == 0
  (void)abi_version;
  (void)echo_api;
  return NULL; /* "cannot serve that ABI version" */
#elif VP_TEST_ABI > 2
  (void)abi_version;
  return &echo_api; /* a newer plug-in that does not check */
#else
  return abi_version == VP_TEST_ABI ? &echo_api : NULL;
#endif
}
