// A Python device (an ONNX Runtime partition, a GPU runtime, a remote node) behind a bridge
// that takes the GIL once per call, never per sample. Two kinds, by what ADAPTER has:
//  - blocking: ADAPTER.run(memoryview, rows, qsl_idx) computes one batch on the driver's
//    thread and returns its outputs;
//  - asynchronous (submit and collect, like a card): ADAPTER.submit(memoryview, rows,
//    qsl_idx) queues the batch and returns at once, with a ticket or (ticket, ready_ns):
//    ready_ns (CLOCK_MONOTONIC) is when to look, an estimate; ADAPTER.collect(ticket,
//    timeout_s) returns the outputs of the oldest batch, or None if it is not done within
//    timeout_s (0: poll; None: wait).
// Outputs are C-contiguous buffers of at least rows x one sample's bytes each, of the
// declared element type; the memoryview is the engine's again once the call returns (copy
// what is needed). The device releases the GIL while it computes or waits.
#pragma once

#include <nanobind/nanobind.h>

#include <memory>

#include "devices.h"

namespace vp {

std::unique_ptr<Device> make_python_device(DeviceInfo info, nanobind::object adapter);

}  // namespace vp
