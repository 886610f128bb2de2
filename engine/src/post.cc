#include "post.h"

#include <cstring>
#include <string>

namespace vp {
namespace {

class Classify : public Post {
 public:
  Classify(const vp_tensor& out, int offset) : out_(out), offset_(offset) {
    if (out.dtype == VP_FLOAT32) {
      classes_ = out.ndim ? int(out.dims[out.ndim - 1]) : 1;
    } else if (out.dtype != VP_INT64 && out.dtype != VP_INT32) {
      throw Error("classification output must be int32/int64 labels or float32 scores");
    }
  }
  size_t max_response_bytes() const override { return 4; }
  bool run(const void* const* outputs, int n, const size_t*, uint8_t* resp, size_t* offset, size_t* size,
           PostScratch*, std::string*) override {
    auto* labels = reinterpret_cast<float*>(resp);
    for (int i = 0; i < n; ++i) {
      int64_t label;
      if (out_.dtype == VP_INT64) {
        label = static_cast<const int64_t*>(outputs[0])[i];
      } else if (out_.dtype == VP_INT32) {
        label = static_cast<const int32_t*>(outputs[0])[i];
      } else {
        const float* s = static_cast<const float*>(outputs[0]) + size_t(i) * classes_;
        int best = 0;
        for (int c = 1; c < classes_; ++c)
          if (s[c] > s[best]) best = c;
        label = best;
      }
      labels[i] = float(label - offset_);
      offset[i] = size_t(i) * 4;
      size[i] = 4;
    }
    return true;
  }

 private:
  vp_tensor out_;
  int offset_;
  int classes_ = 0;
};

class Skip : public Post {
 public:
  size_t max_response_bytes() const override { return 0; }
  bool run(const void* const*, int n, const size_t*, uint8_t*, size_t* offset, size_t* size, PostScratch*,
           std::string*) override {
    for (int i = 0; i < n; ++i) offset[i] = size[i] = 0;
    return true;
  }
};

class Prepacked : public Post {
 public:
  explicit Prepacked(size_t max_bytes) : max_(max_bytes) {}
  size_t max_response_bytes() const override { return max_; }
  bool run(const void* const* outputs, int n, const size_t*, uint8_t* resp, size_t* offset, size_t* size,
           PostScratch*, std::string* error) override {
    const auto* in = static_cast<const uint8_t*>(outputs[0]);
    for (int i = 0; i < n; ++i) {
      const uint8_t* row = in + size_t(i) * (8 + max_);
      uint64_t sz;
      std::memcpy(&sz, row, 8);
      if (sz > max_) {
        *error = "a prepacked response of " + std::to_string(sz) + " bytes exceeds " + std::to_string(max_);
        return false;
      }
      std::memcpy(resp + size_t(i) * max_, row + 8, sz);
      offset[i] = size_t(i) * max_;
      size[i] = sz;
    }
    return true;
  }

 private:
  size_t max_;
};

}  // namespace

std::unique_ptr<Post> make_classify(const vp_tensor& output, int label_offset) {
  return std::make_unique<Classify>(output, label_offset);
}

std::unique_ptr<Post> make_skip() { return std::make_unique<Skip>(); }

std::unique_ptr<Post> make_prepacked(size_t max_bytes) { return std::make_unique<Prepacked>(max_bytes); }

}  // namespace vp
