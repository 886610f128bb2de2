/* visionperf device plug-in interface, ABI version 2 (version 1 plug-ins still load).
 *
 * A device takes batches of input rows and returns output tensors: a card, a GPU, a simulated
 * card. visionperf's engine drives every device of a core group from one pinned host thread:
 * it gathers a batch into a staging buffer, submit()s it, and later collect()s the outputs
 * into host buffers, post-processes them (argmax, NMS) and completes the samples to LoadGen.
 *
 * A plug-in is a shared library built against this header alone (C or C++, no Python, no
 * visionperf library to link) that exports
 *
 *     const vp_device_api *vp_device_plugin(uint32_t abi_version);
 *
 * returning its function table, or NULL if it cannot serve that ABI version. Load it with
 * `visionperf run ... --backend plugin:/path/to/libmydevice.so`.
 *
 * Threading: the engine calls one device's functions from one thread at a time (its driver),
 * but different devices of one plug-in from different threads at once.
 *
 * Versions. The engine asks vp_device_plugin(2) first, then vp_device_plugin(1); a table that
 * says abi_version 1 is read only up to close (the version 1 layout) and its devices get the
 * host gather. Version 2 adds, at the end of both structs, the device fetch:
 *
 * Device fetch (version 2). A device whose DMA engine reads host memory itself (a card, a GPU)
 * sets cfg->fetch_rows in open(); the host then never copies a pixel. The engine registers
 * each sample buffer replica the device reads with register_region() after LoadGen loads
 * samples (pin it, map it for DMA), and calls unregister_region() before that memory is
 * freed (unload, or the next load); both come with no batch of the device in flight, from a
 * thread other than its driver's, never at once with its other calls. The one exception: a
 * device the engine has given up on (its watchdog found it stuck, or it failed) may still hold
 * batches when its region is unregistered at the run's end; it must then stop reading the
 * region (cancel its transfers) before unregister_region returns. A batch is then
 * submit_rows(): the addresses of its rows, each inside the registered region, row_bytes each.
 * The rows stay valid and unchanged until the batch is collected; the array of addresses is
 * the engine's again when submit_rows returns. submit() is never called on such a device.
 */
#ifndef VISIONPERF_DEVICE_H
#define VISIONPERF_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VP_DEVICE_ABI_VERSION 2u
#define VP_MAX_OUTPUTS 8
#define VP_MAX_DIMS 6

typedef enum vp_dtype {
  VP_UINT8 = 1,
  VP_INT8 = 2,
  VP_FLOAT16 = 3,
  VP_FLOAT32 = 4,
  VP_INT32 = 5,
  VP_INT64 = 6
} vp_dtype;

typedef enum vp_status {
  VP_OK = 0,
  VP_NOT_READY = 1, /* collect(): the batch is not finished yet; call again later */
  VP_ERROR = -1     /* see last_error() */
} vp_status;

/* One sample's tensor: no batch axis. Rows are contiguous and C-ordered. */
typedef struct vp_tensor {
  int32_t dtype; /* vp_dtype */
  int32_t ndim;
  int64_t dims[VP_MAX_DIMS];
} vp_tensor;

/* What the engine asks of one device. open() may lower max_in_flight and set fixed_batch;
 * it must not change anything else. */
typedef struct vp_device_config {
  uint32_t abi_version; /* VP_DEVICE_ABI_VERSION */
  int32_t index;        /* this device's number, 0..count-1 */
  int32_t count;        /* devices of this backend in the run */
  int32_t numa_node;    /* NUMA node of the device's host cores, -1 if unknown */
  int32_t batch_size;   /* rows per batch, at most */
  int32_t max_in_flight; /* batches submitted and not yet collected, at most */
  int32_t fixed_batch;  /* out: 1 if the device only takes exactly batch_size rows */
  vp_tensor input;      /* one input row, in the model's layout and type */
  int32_t num_outputs;
  vp_tensor outputs[VP_MAX_OUTPUTS];
  const char *options;  /* "key=value;key=value" from the command line, never NULL */
  /* Example output samples a simulated device cycles through (realistic detection heads);
   * examples[k] holds example_count samples of outputs[k]. NULL/0 when there are none. */
  int32_t example_count;
  const void *const *examples;
  /* Version 2. out: 1 if the device fetches its own rows (submit_rows, see the top). */
  int32_t fetch_rows;
} vp_device_config;

/* Optional counters (for reports); zero what you do not keep. */
typedef struct vp_device_counters {
  double copy_cpu_s;   /* host CPU spent on copies a real card's DMA engine would do */
  double late_s;       /* summed lateness of completions past their announced ready time */
} vp_device_counters;

typedef struct vp_device_api {
  uint32_t abi_version; /* VP_DEVICE_ABI_VERSION */
  const char *name;     /* e.g. "simulated" */

  /* Open one device. Returns a handle, or NULL with a one-line message written to err. */
  void *(*open)(vp_device_config *cfg, char *err, size_t err_len);

  /* Take ROWS (1..batch_size) rows at INPUT and queue them; return at once. INPUT is the
   * engine's again when this returns (copy what you need). *TICKET names the batch;
   * *READY_NS is when its outputs are expected (CLOCK_MONOTONIC ns), 0 if unknown: the engine
   * then polls. Batches finish in submission order. */
  int (*submit)(void *dev, const void *input, int32_t rows, uint64_t *ticket, int64_t *ready_ns);

  /* Write the outputs of TICKET (the oldest batch not yet collected) into OUTPUTS[k]
   * (rows x outputs[k] each). Waits at most TIMEOUT_NS (0: poll, -1: until done) and returns
   * VP_NOT_READY if the batch is still running then. After VP_OK or VP_ERROR the ticket is
   * done and its slot free. */
  int (*collect)(void *dev, uint64_t ticket, void *const *outputs, int64_t timeout_ns);

  /* The last error on this device, one line; valid until the next call on it. */
  const char *(*last_error)(void *dev);

  /* Optional (may be NULL). */
  void (*counters)(void *dev, vp_device_counters *out);

  /* Release the device; no call on it follows. */
  void (*close)(void *dev);

  /* ---- version 2: device fetch (may be NULL on a device that never sets fetch_rows) ---- */

  /* BYTES at BASE (rows of ROW_BYTES) are sample rows this device will read, as REGION: pin
   * or map them for DMA. Returns VP_OK, or VP_ERROR (last_error): the device's batches fail. */
  int (*register_region)(void *dev, int32_t region, const void *base, size_t bytes, size_t row_bytes);

  /* REGION's memory is about to be freed; no batch of this device reads it (a device given up
   * on as stuck or failed may still hold some: it stops reading REGION before returning). */
  void (*unregister_region)(void *dev, int32_t region);

  /* submit() for a fetch device: ROWS (1..batch_size) row addresses inside REGION, in batch
   * order (a fixed_batch device gets batch_size addresses, the last ones repeated). The rows
   * stay valid until TICKET is collected. */
  int (*submit_rows)(void *dev, int32_t region, const void *const *row_addrs, int32_t rows, uint64_t *ticket,
                     int64_t *ready_ns);
} vp_device_api;

typedef const vp_device_api *(*vp_device_plugin_fn)(uint32_t abi_version);

#ifdef __cplusplus
}
#endif

#endif /* VISIONPERF_DEVICE_H */
