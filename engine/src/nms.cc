// Decode + NMS on the host for SSD-style heads cut before NMS (the paper's section II-F): the
// kernels behind postprocess/nms.py's NMS (whose docstring states the algorithm), equal detection
// for detection to the NumPy reference in tests/test_nms.py. C++ rather than numba or NumPy
// because this must never limit a card (51.6 us per image for SSD-MobileNet): it measures
// 2.5-5.4x faster per image on one core than the numba kernels did (benchmarks/nms.py).
// One file over 500 lines because it is one concept: the kernels share the thresholding,
// candidate and IoU code below, and their evidence for clipping.
//
// The tricks, as in the paper:
// * threshold on the raw score first (float32 values, fp16 bit patterns, uint8 bytes) in loops
//   the compiler vectorises: 128 bytes of scores are OR-tested branch-free and only where that
//   hits is an exact byte mask made and its set bits walked;
// * class-major scores [C, A] are scanned class row by class row; box-major scores [A, C] are
//   scanned flat, a few anchor rows at a time against a threshold pattern whose background
//   column never passes, so neither layout is transposed and background is never looked at;
// * only survivors are converted to float, sorted and decoded, and decoding is lazy: greedy
//   NMS walks the candidates in score order and stops at max_per_class, so the candidates it
//   never reaches are never decoded (nor fully sorted: the order is extended on demand);
// * the IoU test against the kept boxes runs over structure-of-arrays, 16 at a time;
// * every buffer lives in a per-thread NmsScratch, allocated once: nothing is allocated per image.
//
// Thresholds, derived here (make_tables) from the float threshold: float32 "score >
// float32(thr)"; uint8 through the 256-entry table value = float32((q - zero_point) * scale),
// raw threshold the last byte whose value is not above float32(thr); fp16 bit patterns, raw
// threshold the bits of the largest fp16 not above thr (non-negative fp16 bits order like their
// values). fp16 bits compare as signed and NaN patterns are excluded, so negative values (-0.0
// included) and NaNs never pass, as in the reference ("float32(score) > thr").
//
// Clipping (Detection.clip_boxes), decided from the graph each official model was exported from:
//
// * SSD-MobileNet-v1 (ssd_mobilenet_v1_coco_2018_01_28, TF Object Detection API of early 2018)
//   clips, before NMS, and drops what the clip leaves without area:
//   - meta_architectures/ssd_meta_arch.py, SSDMetaArch.postprocess: the decoded boxes go to
//     self._non_max_suppression_fn(..., clip_window=self._compute_clip_window(preprocessed_images,
//     true_image_shapes)); _compute_clip_window is [0, 0, 1, 1] here (fixed_shape_resizer 300x300:
//     the true image fills the input).
//   - core/post_processing.py, multiclass_non_max_suppression, per class:
//     box_list_ops.filter_greater_than(boxlist, score_thresh), then
//     box_list_ops.clip_to_window(boxlist, clip_window), then tf.image.non_max_suppression on the
//     clipped boxes (so IoU is computed on clipped boxes too).
//   - core/box_list_ops.py, clip_to_window(boxlist, window, filter_nonoverlapping=True): clamps
//     each coordinate into the window, then keeps only boxes with area(clipped) > 0.
//   These kernels do the same: clip on decode, skip a zero-area box before it becomes a candidate.
//   TF's NMS op (core/kernels/non_max_suppression_op.cc, IOUGreaterThanThreshold) suppresses at
//   IoU > threshold where these kernels (and the PyTorch reference) suppress at IoU >= threshold;
//   the two differ only when a float32 IoU equals 0.6 exactly, as does its unstable std::sort on
//   tied scores (ties here: by anchor index). Neither is changed.
// * RetinaNet (torchvision RetinaNet.postprocess_detections) clips to the image ([0, 800] pixels)
//   and keeps boxes the clip leaves without area (it has no remove_small_boxes step).
//
// RetinaNet (retinanet_image; postprocess/retinanet.py states the algorithm and holds the NumPy
// reference): logits [A, C] are scanned flat per level against the logit threshold (only
// survivors ever get a sigmoid: in float64, once, for the rows written); each level keeps its
// best max_candidates (logit descending, flat index anchor * C + class ascending) in a bounded
// buffer: when it fills, nth_element keeps the best and the scan's threshold rises to the worst
// of them, so a level with many survivors costs a scan and little more. fp16 logits are
// compared as raw bits mapped to an order-preserving signed key (x ^ ((x >> 15) & 0x7fff):
// negative values too, as logits mostly are). Then all levels' candidates in one lazily sorted
// order, greedy NMS against the kept boxes of the candidate's class (IoU > threshold, 16 kept
// boxes at a time), stopping at max_per_image kept: the rows come out best first.
// * SSD-ResNet34 (the MLPerf PyTorch reference, Encoder.decode_batch / scale_back_batch) never
//   clips, and neither do these kernels for it. (The MLPerf repository's PyTorch port of
//   SSD-MobileNet, python/models/utils.py decode_boxes, does not clip either: it is a port, and
//   the official model is the TF graph, whose post-processing does.)
#include "nms.h"
#include "half.h"
#include "lazy_order.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace vp {
namespace {

constexpr int SUPERBLOCK = 128;  // bytes of scores OR-tested at once before they are looked at
// Box-major: the flat scan goes SUPERBLOCK / element size anchor rows at a time, so a chunk is a
// whole number of superblocks and the threshold pattern of a chunk is SUPERBLOCK * C bytes.
constexpr int LANES = 16;  // kept boxes tested per step of the IoU loop
constexpr int16_t F16_INF = 0x7C00;

// Score formats: RAW is the stored element (fp16 as signed bits); pass() is the exact test,
// block_pass() the cheap one the block test vectorises (a superset of pass()).
struct F32 {
  using Raw = float;
  using Acc = int32_t;
  static constexpr int dtype = VP_FLOAT32;
  static Raw never() { return std::numeric_limits<float>::infinity(); }
  static bool block_pass(Raw x, Raw t) { return x > t; }
  static bool pass(Raw x, Raw t) { return x > t; }
};
struct F16 {
  using Raw = int16_t;
  using Acc = int16_t;
  static constexpr int dtype = VP_FLOAT16;
  static Raw never() { return std::numeric_limits<int16_t>::max(); }
  static bool block_pass(Raw x, Raw t) { return x > t; }
  static bool pass(Raw x, Raw t) { return (x > t) & (x <= F16_INF); }  // not NaN
};
struct U8 {
  using Raw = uint8_t;
  using Acc = uint8_t;
  static constexpr int dtype = VP_UINT8;
  static Raw never() { return 255; }
  static bool block_pass(Raw x, Raw t) { return x > t; }
  static bool pass(Raw x, Raw t) { return x > t; }
};

// fp16 logits (RetinaNet): raw bits mapped to a signed key that orders like the values, negative
// ones included; NaN patterns never pass (positive ones map above +inf, negative ones below -inf).
struct F16L {
  using Raw = int16_t;
  using Acc = int16_t;
  static constexpr int dtype = VP_FLOAT16;
  static Raw ord(Raw x) { return Raw(x ^ ((x >> 15) & 0x7fff)); }
  static bool block_pass(Raw x, Raw t) { return ord(x) > t; }
  static bool pass(Raw x, Raw t) { return (ord(x) > t) & (ord(x) <= F16_INF); }
};

// What make_nms derives from the parameters once; shared (read-only) by the Post and its scratches.
struct Tables {
  NmsParams p;
  int A = 0, C = 0;
  float thr_f32 = 0;
  int16_t thr_f16 = 0;
  int16_t thr_f16_ord = 0;           // RetinaNet fp16 logits: F16L::ord of the largest fp16 not above thr
  uint8_t thr_u8 = 255;
  std::vector<uint32_t> level_end;   // RetinaNet: end anchor of each level
  float lut[256] = {};               // uint8: byte -> score
  std::vector<uint8_t> pattern;      // box-major: one chunk's per-class raw thresholds (class 0 never)

  float value(const void* scores, size_t k) const {
    switch (p.score_dtype) {
      case VP_FLOAT16: return half_to_float(static_cast<const uint16_t*>(scores)[k]);
      case VP_UINT8: return lut[static_cast<const uint8_t*>(scores)[k]];
      default: return static_cast<const float*>(scores)[k];
    }
  }
};

struct Kept {  // one class's kept boxes, structure of arrays, padded to LANES
  std::vector<float> y0, x0, y1, x1, area;
  void resize(size_t n) {
    for (auto* v : {&y0, &x0, &y1, &x1, &area}) v->assign(n, 0.0f);
  }
};

template <class T>
using Buf = std::unique_ptr<T[]>;  // uninitialised: pages of a large buffer are touched only when used

template <class T>
Buf<T> buf(size_t n) {
  return Buf<T>(new T[std::max<size_t>(n, 1)]);
}

// RetinaNet: logits scanned between two looks at a level's candidate buffer, and that buffer's
// fill level that triggers compaction to the best max_candidates.
constexpr size_t RETINA_CHUNK = 8192;
inline size_t retina_cap(const NmsParams& p) { return std::max<size_t>(4 * size_t(p.max_candidates), 4096); }

struct NmsScratch : PostScratch {
  std::shared_ptr<const Tables> t;
  Buf<uint32_t> hits;     // class-major: one class row's hits; box-major: one chunk's
  Buf<uint64_t> keys;     // candidates' sort keys: (descending score, anchor)
  Buf<uint32_t> lists;    // box-major: [C, A] anchors passing per class, ascending
  Buf<uint32_t> counts;   // box-major: [C]
  Buf<uint8_t> decoded;   // box-major: [A] anchor decoded this image
  Buf<float> abox;        // box-major: [A, 5] decoded (ymin, xmin, ymax, xmax, area)
  Kept kept;
  Buf<float> all_score, all_box;  // the image's kept detections, (class, rank) order
  Buf<uint16_t> all_cls;
  Buf<uint64_t> all_keys;
  // RetinaNet: one level's candidate keys (bounded: compacted when full), all levels' candidates,
  // and per class its kept boxes (structure of arrays, [C, kept_stride]) and their count.
  Buf<uint64_t> level_keys, cand;
  std::vector<float> cy0, cx0, cy1, cx1, carea;
  Buf<uint32_t> class_kept;
  size_t kept_stride = 0;

  explicit NmsScratch(std::shared_ptr<const Tables> tables) : t(std::move(tables)) {
    const NmsParams& p = t->p;
    size_t A = size_t(t->A), C = size_t(t->C);
    if (p.retinanet) {
      hits = buf<uint32_t>(RETINA_CHUNK);
      level_keys = buf<uint64_t>(retina_cap(p) + RETINA_CHUNK);
      cand = buf<uint64_t>(p.level_anchors.size() * size_t(p.max_candidates));
      kept_stride = (size_t(p.max_per_image) + LANES - 1) / LANES * LANES + LANES;
      for (auto* v : {&cy0, &cx0, &cy1, &cx1, &carea}) v->assign(C * kept_stride, 0.0f);
      class_kept = buf<uint32_t>(C);
      return;
    }
    keys = buf<uint64_t>(A);
    if (p.class_major) {
      hits = buf<uint32_t>(A);
    } else {
      hits = buf<uint32_t>(SUPERBLOCK * C);  // the most hits of one chunk
      lists = buf<uint32_t>(C * A);
      counts = buf<uint32_t>(C);
      decoded = buf<uint8_t>(A);
      abox = buf<float>(A * 5);
    }
    kept.resize((size_t(p.max_per_class) + LANES - 1) / LANES * LANES + LANES);
    size_t cap = (C - 1) * size_t(p.max_per_class);
    all_score = buf<float>(cap);
    all_box = buf<float>(cap * 4);
    all_cls = buf<uint16_t>(cap);
    all_keys = buf<uint64_t>(cap);
  }
};

// Sort key: ascending uint32 order = descending score order (-0 as +0, as numpy's argsort of -v
// treats them; NaN never gets here: no format lets one pass).
inline uint32_t descending(float v) {
  v += 0.0f;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u ^= (u >> 31) ? 0xffffffffu : 0x80000000u;
  return ~u;
}

// Indices i of X[0..N) with pass(X[i], THR[i or 0]) into HITS, ascending; returns how many.
// Per superblock of 128 bytes: one branch-free OR of the cheap test (vectorised, one horizontal
// reduction); only where it hits, the exact test into a byte mask (vectorised) whose 64-bit
// words yield the hits one set bit at a time, so the work past the OR is proportional to hits.
template <class F, bool PATTERN>
size_t scan(const typename F::Raw* x, size_t n, const typename F::Raw* thr, uint32_t* hits) {
  using Raw = typename F::Raw;
  using Acc = typename F::Acc;  // the OR stays in the scores' lane width (so it vectorises)
  constexpr int SB = SUPERBLOCK / int(sizeof(Raw));
  size_t k = 0, full = n - n % SB;
  const Raw t0 = thr[0];
  for (size_t b = 0; b < full; b += SB) {
    const Raw* xb = x + b;
    const Raw* tb = PATTERN ? thr + b : thr;
    Acc any = 0;
    for (int i = 0; i < SB; ++i) any |= Acc(F::block_pass(xb[i], PATTERN ? tb[i] : t0));
    if (any) {
      alignas(64) uint8_t m[SB];
      for (int i = 0; i < SB; ++i) m[i] = F::pass(xb[i], PATTERN ? tb[i] : t0);
      for (int w = 0; w < SB / 8; ++w) {
        uint64_t v;
        std::memcpy(&v, m + 8 * w, 8);
        for (; v; v &= v - 1) hits[k++] = uint32_t(b + 8 * w + (__builtin_ctzll(v) >> 3));
      }
    }
  }
  for (size_t i = full; i < n; ++i) {
    hits[k] = uint32_t(i);
    k += F::pass(x[i], PATTERN ? thr[i] : t0);
  }
  return k;
}

class NmsPost : public Post {
 public:
  explicit NmsPost(std::shared_ptr<const Tables> t) : t_(std::move(t)) {}
  size_t max_response_bytes() const override { return size_t(t_->p.max_per_image) * 28; }
  std::unique_ptr<PostScratch> scratch() const override { return std::make_unique<NmsScratch>(t_); }
  bool run(const void* const* outputs, int n, const size_t* qsl_idx, uint8_t* resp, size_t* offset, size_t* size,
           PostScratch* scratch, std::string* error) override;

 private:
  std::shared_ptr<const Tables> t_;
};

// Whether a kept box (of NK, structure of arrays padded to LANES) has IoU >= THR with box B
// (ymin, xmin, ymax, xmax, area): the reference's IoU, disjoint boxes clamped to 0, union > 0 checked.
// LANES at a time branch-free (this vectorises), stopping at the first group that suppresses.
// STRICT: suppress at IoU > THR (torchvision's nms, RetinaNet) instead of >=.
template <bool STRICT = false>
bool suppressed(const float* __restrict ky0, const float* __restrict kx0, const float* __restrict ky1,
                const float* __restrict kx1, const float* __restrict ka, int nk, const float* b, float thr) {
  const float y0 = b[0], x0 = b[1], y1 = b[2], x1 = b[3], area = b[4];
  for (int t0 = 0; t0 < nk; t0 += LANES) {
    int any = 0;
    for (int t = t0; t < t0 + LANES; ++t) {
      float ih = std::min(ky1[t], y1) - std::max(ky0[t], y0);
      float iw = std::min(kx1[t], x1) - std::max(kx0[t], x0);
      float inter = ih * iw;
      float uni = ka[t] + area - inter;
      float iou = (ih > 0.0f) & (iw > 0.0f) & (uni > 0.0f) ? inter / uni : 0.0f;
      any |= (STRICT ? iou > thr : iou >= thr) & (t < nk);
    }
    if (any) return true;
  }
  return false;
}

// One class's greedy NMS over its candidates in score order (KEYS: (descending score, anchor)),
// decoding lazily; appends the kept boxes to the image's list. Returns the new list length.
template <class DecodeFn>
size_t greedy_class(const Tables& T, NmsScratch& s, uint64_t* keys, size_t hits, int c, const void* scores,
                    bool class_major, DecodeFn&& decode, size_t count) {
  const NmsParams& p = T.p;
  const float iou_thr = p.iou_threshold;
  Kept& K = s.kept;
  float* ky0 = K.y0.data();
  float* kx0 = K.x0.data();
  float* ky1 = K.y1.data();
  float* kx1 = K.x1.data();
  float* ka = K.area.data();
  LazyOrder order(keys, hits);
  int nk = 0, m = 0;
  for (size_t r = 0; r < hits; ++r) {
    uint32_t a = uint32_t(order[r]);
    float b[5];
    decode(a, b);
    if (p.clip && !(b[4] > 0.0f)) continue;  // clipped away: never a candidate (TF clip_to_window)
    ++m;
    bool sup = suppressed(ky0, kx0, ky1, kx1, ka, nk, b, iou_thr);
    if (!sup) {
      ky0[nk] = b[0];
      kx0[nk] = b[1];
      ky1[nk] = b[2];
      kx1[nk] = b[3];
      ka[nk] = b[4];
      size_t k = class_major ? size_t(c) * size_t(T.A) + a : size_t(a) * size_t(T.C) + size_t(c);
      s.all_score[count] = T.value(scores, k);
      std::memcpy(&s.all_box[count * 4], b, 16);
      s.all_cls[count] = uint16_t(c);
      ++count;
      if (++nk == p.max_per_class) break;
    }
    if (m == p.max_candidates) break;
  }
  return count;
}

inline void decode_box(const Tables& T, float e0, float e1, float e2, float e3, uint32_t a, float* out) {
  const NmsParams& p = T.p;
  const float enc[4] = {e0, e1, e2, e3};
  const float* an = &p.anchors[size_t(a) * 4];
  float cy = enc[p.perm[0]] * p.inv_scales[0] * an[2] + an[0];
  float cx = enc[p.perm[1]] * p.inv_scales[1] * an[3] + an[1];
  float h = std::exp(enc[p.perm[2]] * p.inv_scales[2]) * an[2];
  float w = std::exp(enc[p.perm[3]] * p.inv_scales[3]) * an[3];
  out[0] = cy - 0.5f * h;
  out[1] = cx - 0.5f * w;
  out[2] = cy + 0.5f * h;
  out[3] = cx + 0.5f * w;
  if (p.clip)
    for (int k = 0; k < 4; ++k) out[k] = std::min(std::max(out[k], 0.0f), 1.0f);
  float dy = out[2] - out[0], dx = out[3] - out[1];
  out[4] = dy * dx;
}

// The image's detections: the max_per_image best by score, ties by (class, rank).
int finish(NmsScratch& s, size_t count, int max_out, float qsl_idx, float* out) {
  uint64_t* keys = s.all_keys.get();
  for (size_t k = 0; k < count; ++k) keys[k] = (uint64_t(descending(s.all_score[k])) << 32) | k;
  size_t m = std::min(count, size_t(max_out));
  if (m < count) std::nth_element(keys, keys + m, keys + count);
  std::sort(keys, keys + m);
  for (size_t r = 0; r < m; ++r) {
    size_t k = uint32_t(keys[r]);
    float* row = out + r * 7;
    row[0] = qsl_idx;
    std::memcpy(row + 1, &s.all_box[k * 4], 16);
    row[5] = s.all_score[k];
    row[6] = float(s.all_cls[k]);
  }
  return int(m);
}

template <class F>
int class_major_image(const Tables& T, const float* locs, const typename F::Raw* scores, float qsl_idx, float* out,
                      NmsScratch& s) {
  const size_t A = size_t(T.A);
  typename F::Raw thr;
  if constexpr (F::dtype == VP_FLOAT32) thr = T.thr_f32;
  else if constexpr (F::dtype == VP_FLOAT16) thr = T.thr_f16;
  else thr = T.thr_u8;
  uint32_t* hits = s.hits.get();
  uint64_t* keys = s.keys.get();
  auto decode = [&](uint32_t a, float* b) {
    decode_box(T, locs[a], locs[A + a], locs[2 * A + a], locs[3 * A + a], a, b);
  };
  size_t count = 0;
  for (int c = 1; c < T.C; ++c) {
    const typename F::Raw* row = scores + size_t(c) * A;
    size_t n = scan<F, false>(row, A, &thr, hits);
    if (n == 0) continue;
    for (size_t k = 0; k < n; ++k) keys[k] = (uint64_t(descending(T.value(row, hits[k]))) << 32) | hits[k];
    count = greedy_class(T, s, keys, n, c, scores, true, decode, count);
  }
  return finish(s, count, T.p.max_per_image, qsl_idx, out);
}

template <class F>
int box_major_image(const Tables& T, const float* enc, const typename F::Raw* scores, float qsl_idx, float* out,
                    NmsScratch& s) {
  const size_t A = size_t(T.A), C = size_t(T.C);
  const auto* pattern = reinterpret_cast<const typename F::Raw*>(T.pattern.data());
  uint32_t* hits = s.hits.get();
  uint32_t* counts = s.counts.get();
  uint32_t* lists = s.lists.get();
  uint8_t* decoded = s.decoded.get();
  std::fill(counts, counts + C, 0u);
  // One flat pass over [A, C], GROUP rows at a time; hits come anchor-major, so each class's
  // list is filled in ascending anchor order.
  constexpr size_t GROUP = SUPERBLOCK / sizeof(typename F::Raw);
  for (size_t a0 = 0; a0 < A; a0 += GROUP) {
    size_t rows = std::min(GROUP, A - a0);
    size_t n = scan<F, true>(scores + a0 * C, rows * C, pattern, hits);
    for (size_t k = 0; k < n; ++k) {
      uint32_t h = hits[k];
      uint32_t r = h / uint32_t(C), c = h - r * uint32_t(C);
      uint32_t a = uint32_t(a0) + r;
      lists[c * A + counts[c]++] = a;
      decoded[a] = 0;
    }
  }
  float* abox = s.abox.get();
  auto decode = [&](uint32_t a, float* b) {
    float* d = abox + size_t(a) * 5;
    if (!decoded[a]) {  // an anchor is decoded once, whatever classes it passes in
      const float* e = enc + size_t(a) * 4;
      decode_box(T, e[0], e[1], e[2], e[3], a, d);
      decoded[a] = 1;
    }
    std::memcpy(b, d, 20);
  };
  uint64_t* keys = s.keys.get();
  size_t count = 0;
  for (size_t c = 1; c < C; ++c) {
    size_t n = counts[c];
    if (n == 0) continue;
    const uint32_t* list = lists + c * A;
    for (size_t k = 0; k < n; ++k)
      keys[k] = (uint64_t(descending(T.value(scores, size_t(list[k]) * C + c))) << 32) | list[k];
    count = greedy_class(T, s, keys, n, int(c), scores, false, decode, count);
  }
  return finish(s, count, T.p.max_per_image, qsl_idx, out);
}

// RetinaNet's box: torchvision BoxCoder.decode_single (weights via inv_scales, dw and dh clamped
// at box_exp_clip), clipped to [0, image_size] (clip_boxes_to_image); OUT (ymin, xmin, ymax, xmax, area).
inline void decode_retina(const NmsParams& p, const float* e, uint32_t a, float* out) {
  const float* an = &p.anchors[size_t(a) * 4];
  float cy = e[p.perm[0]] * p.inv_scales[0] * an[2] + an[0];
  float cx = e[p.perm[1]] * p.inv_scales[1] * an[3] + an[1];
  float h = std::exp(std::min(e[p.perm[2]] * p.inv_scales[2], p.box_exp_clip)) * an[2];
  float w = std::exp(std::min(e[p.perm[3]] * p.inv_scales[3], p.box_exp_clip)) * an[3];
  out[0] = cy - 0.5f * h;
  out[1] = cx - 0.5f * w;
  out[2] = cy + 0.5f * h;
  out[3] = cx + 0.5f * w;
  for (int k = 0; k < 4; ++k) out[k] = std::min(std::max(out[k], 0.0f), p.image_size);
  out[4] = (out[2] - out[0]) * (out[3] - out[1]);
}

template <class F>
typename F::Raw raw_threshold(const Tables& T) {
  if constexpr (F::dtype == VP_FLOAT16) return T.thr_f16_ord;
  else return T.thr_f32;
}

// The scan's raw threshold that lets through only what beats value X (same format as the scores).
template <class F>
typename F::Raw raw_of(typename F::Raw x) {
  if constexpr (F::dtype == VP_FLOAT16) return F::ord(x);
  else return x;
}

template <class F>
int retinanet_image(const Tables& T, const float* reg, const typename F::Raw* logits, float qsl_idx, float* out,
                    NmsScratch& s) {
  using Raw = typename F::Raw;
  const NmsParams& p = T.p;
  const size_t C = size_t(T.C), K = size_t(p.max_candidates), cap = retina_cap(p);
  uint32_t* hits = s.hits.get();
  uint64_t* cand = s.cand.get();
  size_t nc = 0, a0 = 0;
  for (uint32_t a1 : T.level_end) {
    Raw thr = raw_threshold<F>(T);
    uint64_t* keys = s.level_keys.get();
    size_t nk = 0;
    const size_t first = a0 * C, n = (size_t(a1) - a0) * C;
    for (size_t off = 0; off < n; off += RETINA_CHUNK) {
      const size_t base = first + off;
      size_t h = scan<F, false>(logits + base, std::min(RETINA_CHUNK, n - off), &thr, hits);
      for (size_t k = 0; k < h; ++k) {
        size_t i = base + hits[k];
        keys[nk++] = (uint64_t(descending(T.value(logits, i))) << 32) | i;
      }
      if (nk > cap) {  // keep the best K; later logits must beat the worst of them (ties lose: later index)
        std::nth_element(keys, keys + (K - 1), keys + nk);
        nk = K;
        thr = raw_of<F>(logits[uint32_t(keys[K - 1])]);
      }
    }
    if (nk > K) {
      std::nth_element(keys, keys + K, keys + nk);
      nk = K;
    }
    std::memcpy(cand + nc, keys, nk * sizeof(uint64_t));
    nc += nk;
    a0 = a1;
  }
  uint32_t* nkept = s.class_kept.get();
  std::fill(nkept, nkept + C, 0u);
  LazyOrder order(cand, nc);
  int m = 0;
  for (size_t r = 0; r < nc && m < p.max_per_image; ++r) {
    const uint32_t i = uint32_t(order[r]), a = i / uint32_t(C), c = i - a * uint32_t(C);
    float b[5];
    decode_retina(p, reg + size_t(a) * 4, a, b);
    const size_t o = size_t(c) * s.kept_stride;
    const int nk = int(nkept[c]);
    if (suppressed<true>(&s.cy0[o], &s.cx0[o], &s.cy1[o], &s.cx1[o], &s.carea[o], nk, b, p.iou_threshold)) continue;
    s.cy0[o + nk] = b[0];
    s.cx0[o + nk] = b[1];
    s.cy1[o + nk] = b[2];
    s.cx1[o + nk] = b[3];
    s.carea[o + nk] = b[4];
    nkept[c] = uint32_t(nk + 1);
    float* row = out + size_t(m) * 7;
    row[0] = qsl_idx;
    for (int k = 0; k < 4; ++k) row[1 + k] = b[k] / p.image_size;
    row[5] = float(1.0 / (1.0 + std::exp(-double(T.value(logits, i)))));
    row[6] = float(c);
    ++m;
  }
  return m;
}

int image(const Tables& T, const void* boxes, const void* scores, float qsl_idx, float* out, NmsScratch& s) {
  const auto* b = static_cast<const float*>(boxes);
  if (T.p.retinanet) {
    if (T.p.score_dtype == VP_FLOAT16)
      return retinanet_image<F16L>(T, b, static_cast<const int16_t*>(scores), qsl_idx, out, s);
    return retinanet_image<F32>(T, b, static_cast<const float*>(scores), qsl_idx, out, s);
  }
  if (T.p.class_major) {
    switch (T.p.score_dtype) {
      case VP_FLOAT16: return class_major_image<F16>(T, b, static_cast<const int16_t*>(scores), qsl_idx, out, s);
      case VP_UINT8: return class_major_image<U8>(T, b, static_cast<const uint8_t*>(scores), qsl_idx, out, s);
      default: return class_major_image<F32>(T, b, static_cast<const float*>(scores), qsl_idx, out, s);
    }
  }
  switch (T.p.score_dtype) {
    case VP_FLOAT16: return box_major_image<F16>(T, b, static_cast<const int16_t*>(scores), qsl_idx, out, s);
    case VP_UINT8: return box_major_image<U8>(T, b, static_cast<const uint8_t*>(scores), qsl_idx, out, s);
    default: return box_major_image<F32>(T, b, static_cast<const float*>(scores), qsl_idx, out, s);
  }
}

bool NmsPost::run(const void* const* outputs, int n, const size_t* qsl_idx, uint8_t* resp, size_t* offset,
                  size_t* size, PostScratch* scratch, std::string* error) {
  std::unique_ptr<PostScratch> own;
  auto* s = dynamic_cast<NmsScratch*>(scratch);
  if (!s || s->t != t_) {  // not ours: a temporary one (slow, but right)
    own = this->scratch();
    s = static_cast<NmsScratch*>(own.get());
  }
  const Tables& T = *t_;
  const size_t box_bytes = size_t(T.A) * 4 * sizeof(float);
  const size_t score_bytes = size_t(T.A) * size_t(T.C) * dtype_size(T.p.score_dtype);
  const size_t max_bytes = max_response_bytes();
  try {
    for (int i = 0; i < n; ++i) {
      const auto* b = static_cast<const uint8_t*>(outputs[0]) + size_t(i) * box_bytes;
      const auto* sc = static_cast<const uint8_t*>(outputs[1]) + size_t(i) * score_bytes;
      uint8_t* dst = resp + size_t(i) * max_bytes;
      int m = image(T, b, sc, float(qsl_idx[i]), reinterpret_cast<float*>(dst), *s);
      offset[i] = size_t(i) * max_bytes;
      size[i] = size_t(m) * 28;
    }
  } catch (const std::exception& e) {
    if (error) *error = std::string("NMS: ") + e.what();
    return false;
  }
  return true;
}

std::shared_ptr<const Tables> make_tables(const NmsParams& p) {
  if (p.class_major != 0 && p.class_major != 1) throw Error("NMS: class_major must be 0 or 1");
  if (p.num_anchors <= 0 || p.num_classes < (p.retinanet ? 1 : 2))
    throw Error("NMS: needs anchors and at least 2 classes (1 without background)");
  if (p.num_classes > 65535) throw Error("NMS: too many classes");
  if (p.box_dtype != VP_FLOAT32) throw Error("NMS: boxes must be float32");
  if (p.max_candidates <= 0 || p.max_per_class <= 0 || p.max_per_image <= 0)
    throw Error("NMS: max_candidates, max_per_class and max_per_image must be positive");
  if (p.anchors.size() != size_t(p.num_anchors) * 4) throw Error("NMS: anchors must be [num_anchors, 4]");
  for (int k = 0; k < 4; ++k)
    if (p.perm[k] < 0 || p.perm[k] > 3) throw Error("NMS: perm must index the 4 encoded values");
  auto t = std::make_shared<Tables>();
  t->p = p;
  t->A = p.num_anchors;
  t->C = p.num_classes;
  if (p.retinanet) {
    if (p.class_major) throw Error("NMS: RetinaNet logits are [A, C] (class_major 0)");
    if (double(p.num_anchors) * p.num_classes >= 4294967296.0) throw Error("NMS: A x C must fit 32 bits");
    if (p.score_dtype != VP_FLOAT32 && p.score_dtype != VP_FLOAT16)
      throw Error("NMS: RetinaNet logits must be float32 or float16");
    if (!(p.image_size > 0)) throw Error("NMS: RetinaNet needs a positive image size");
    uint64_t end = 0;
    for (int n : p.level_anchors) {
      if (n <= 0) throw Error("NMS: RetinaNet levels must have anchors");
      end += uint64_t(n);
      t->level_end.push_back(uint32_t(end));
    }
    if (end != uint64_t(p.num_anchors)) throw Error("NMS: RetinaNet level_anchors must add up to num_anchors");
    t->thr_f32 = float(p.score_threshold);
    // fp16: "logit > thr" is "ord(bits) > ord(bits of the largest fp16 not above thr)" (any sign)
    int best = -1;
    float best_v = 0;
    for (int b = 0; b < 65536; ++b) {
      uint16_t u = uint16_t(b);
      if ((u & 0x7c00u) == 0x7c00u && (u & 0x3ffu)) continue;  // NaN
      float v = half_to_float(u);
      if (double(v) <= p.score_threshold &&
          (best < 0 || v > best_v || (v == best_v && F16L::ord(int16_t(u)) > F16L::ord(int16_t(best))))) {
        best = b;
        best_v = v;
      }
    }
    t->thr_f16_ord = best < 0 ? std::numeric_limits<int16_t>::min() : F16L::ord(int16_t(uint16_t(best)));
    return t;
  }
  const float thr = float(p.score_threshold);  // float32 scores compare to float32(thr), as numpy does
  t->thr_f32 = thr;
  switch (p.score_dtype) {
    case VP_FLOAT32: break;
    case VP_FLOAT16: {
      // "score > thr" is "bits > bits of the largest fp16 not above thr" for non-negative scores.
      if (!(p.score_threshold >= 0)) throw Error("NMS: fp16 scores need a non-negative score threshold");
      int lo = 0, hi = F16_INF;  // non-negative fp16 bits order like their values: bisect
      if (double(half_to_float(uint16_t(hi))) <= p.score_threshold) lo = hi;
      while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        (double(half_to_float(uint16_t(mid))) <= p.score_threshold ? lo : hi) = mid;
      }
      t->thr_f16 = int16_t(lo);  // 0 also when thr < the smallest subnormal: +0 never passes
      break;
    }
    case VP_UINT8: {
      if (!(p.uint8_scale > 0)) throw Error("NMS: uint8 scores need a positive scale");
      for (int q = 0; q < 256; ++q) t->lut[q] = float((double(q) - p.uint8_zero_point) * p.uint8_scale);
      int first = 256;  // the first byte that passes (the table is monotone for scale > 0)
      for (int q = 0; q < 256 && first == 256; ++q)
        if (t->lut[q] > thr) first = q;
      if (first == 0) throw Error("NMS: every uint8 score passes the threshold (threshold below the lowest value)");
      t->thr_u8 = uint8_t(first - 1);
      break;
    }
    default: throw Error("NMS: scores must be float32, float16 or uint8");
  }
  if (!p.class_major) {  // threshold pattern for one chunk of rows of [A, C]: class 0 never passes
    size_t C = size_t(p.num_classes), esz = dtype_size(p.score_dtype), rows = SUPERBLOCK / esz;
    t->pattern.resize(rows * C * esz);
    for (size_t i = 0; i < rows * C; ++i) {
      bool bg = i % C == 0;
      uint8_t* d = t->pattern.data() + i * esz;
      if (p.score_dtype == VP_FLOAT32) {
        float v = bg ? F32::never() : t->thr_f32;
        std::memcpy(d, &v, 4);
      } else if (p.score_dtype == VP_FLOAT16) {
        int16_t v = bg ? F16::never() : t->thr_f16;
        std::memcpy(d, &v, 2);
      } else {
        *d = bg ? U8::never() : t->thr_u8;
      }
    }
  }
  return t;
}

}  // namespace

std::unique_ptr<Post> make_nms(const NmsParams& p) { return std::make_unique<NmsPost>(make_tables(p)); }

int nms_image(const NmsParams& p, const void* boxes, const void* scores, float qsl_idx, float* out,
              PostScratch* scratch) {
  auto* s = dynamic_cast<NmsScratch*>(scratch);
  std::unique_ptr<NmsScratch> own;
  if (!s) {  // no scratch: derive everything now (slow, but right)
    own = std::make_unique<NmsScratch>(make_tables(p));
    s = own.get();
  } else if (s->t->p.num_anchors != p.num_anchors || s->t->p.num_classes != p.num_classes ||
             s->t->p.class_major != p.class_major || s->t->p.score_dtype != p.score_dtype ||
             s->t->p.retinanet != p.retinanet) {
    throw Error("NMS: scratch made for other parameters");
  }
  return image(*s->t, boxes, scores, qsl_idx, out, *s);
}

}  // namespace vp
