// Host post-processing of one batch: device outputs -> MLPerf response bytes per sample.
// Runs on driver or post-processing threads, never under the GIL. The kinds: classification,
// none, prepacked (made beside the device), and decode + NMS (nms.h).
#pragma once

#include <memory>
#include <vector>

#include "common.h"

namespace vp {

struct PostScratch {
  virtual ~PostScratch() = default;
};

class Post {
 public:
  virtual ~Post() = default;
  // Most response bytes one sample can have.
  virtual size_t max_response_bytes() const = 0;
  // Per-thread scratch buffers (fresh large buffers per batch would page-fault every call).
  virtual std::unique_ptr<PostScratch> scratch() const { return nullptr; }
  // OUTPUTS[k]: N rows of output k. Writes sample i's response at RESP + OFFSET[i], SIZE[i]
  // bytes (RESP holds N x max_response_bytes()). Returns false with ERROR set on failure.
  virtual bool run(const void* const* outputs, int n, const size_t* qsl_idx, uint8_t* resp, size_t* offset,
                   size_t* size, PostScratch* scratch, std::string* error) = 0;
};

// Classification: one float32 0-based label per sample, from an ArgMax output (int32/int64)
// or from class scores (float32 [classes], first maximum as numpy's argmax).
std::unique_ptr<Post> make_classify(const vp_tensor& output, int label_offset);

// No post-processing at all: empty responses (only to measure what NMS costs).
std::unique_ptr<Post> make_skip();

// Responses made beside the device (in Python, next to a Python device: official graphs with
// NMS inside; or by a cluster's node): output 0 holds, per sample, an 8-byte size and then
// up to MAX_BYTES response bytes.
std::unique_ptr<Post> make_prepacked(size_t max_bytes);

}  // namespace vp
