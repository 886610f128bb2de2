// Ultralytics YOLO heads -> MLPerf records, on the engine's post threads: the kernel behind
// postprocess/yolo.py's DetectYolo, equal detection for detection (boxes, scores, classes, order)
// to the NumPy reference there (reference_detections, which states the algorithm).
//
// Hand-written C++ because it is the yolo benchmark's hot path on the host: every image's raw
// head (84 x 8400 values, 2.7 MB at float32) is read whole, for every sample, at the device's
// rate. Here it runs on the engine's post threads without the GIL and without allocating;
// Ultralytics runs it in PyTorch per image (benchmarks/yolo_post.py compares the two).
//
// Where the reference's arithmetic is pinned down (Ultralytics' non_max_suppression and
// scale_boxes under PyTorch on the CPU; each step as the reference writes it, in its precision):
// * threshold: torch compares a float32 tensor with a Python float in float32, so a score
//   passes when float32(score) > float32(0.001) (0.0010000000475: a score equal to it fails);
// * best class: torch.max's first maximum; a NaN score makes the anchor's maximum NaN, never a
//   candidate;
// * boxes: x1 = cx - w / 2 (float32); NMS boxes are box + class * 7680 in float32 (near
//   606,720 for class 79 the float32 step is 0.0625), areas and IoU on those offset boxes
//   term for term as torchvision's CPU kernel (std::max / std::min argument order included,
//   so NaN and inverted boxes behave as there); `ovr > iou_threshold` compares the float IoU
//   in double, the same as ovr > the largest float not above the threshold (TorchNMS keeps
//   IoU <= float32(0.7): the same, except that a NaN IoU, 0 / 0 from zero-area or non-finite
//   boxes, suppresses there and not in torchvision);
// * ties in score go by anchor index, as torchvision's nms orders them (checked against
//   torchvision 0.29 on heads with scores rounded to 1/8). The reference's predict never imports
//   torchvision, so Ultralytics runs its own TorchNMS, whose torch.argsort is unstable (x86-simd-
//   sort on AVX2/AVX-512 CPUs, std::sort elsewhere): there the order of equal scores depends on
//   the CPU, and no port can copy it. Without ties both give the same detections;
// * scale_boxes: gain and pads in double (Python floats, the pads Python-rounded half to even),
//   the boxes minus float32(pad), divided by float32(gain) (PyTorch on the CPU casts a Python
//   scalar to the tensor's float32; on CUDA it multiplies by float32(1 / gain) instead, one
//   ulp apart at times), clamped as torch's clamp_ (NaN kept); then divided by the image's
//   float32 height or width, as the reference's NumPy float32 / int;
// * this file is built with -ffp-contract=off: a fused multiply-add would round the IoU's
//   union and the pads differently from the reference.
//
// Speed: the best score per anchor is one pass over the class rows (channels first: a
// running maximum and its class per anchor, block by block of anchors, which the compiler
// vectorises; fp16 as order-preserving integer keys; channels last: an any-above test per
// anchor row), and only anchors that pass are looked at again. NMS runs over candidates sorted
// lazily (a random head stops at 300 kept long before its thousands of candidates are sorted),
// each tested against the kept boxes of its own class 16 at a time; only if the class-offset
// boxes of two classes can overlap (huge or non-finite coordinates) is every kept box tested,
// as the reference does.
#include "yolo_post.h"
#include "half.h"
#include "lazy_order.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace vp {
namespace {

constexpr int LANES = 16;  // kept boxes tested per step of the IoU loop
constexpr size_t BLOCK = 2048;  // anchors per block of the pass over the class rows (maxima kept in L1)

// fp16 bits -> a signed key that orders like the values (negative ones included); an involution.
inline int16_t f16_key(int16_t x) { return int16_t(x ^ ((x >> 15) & 0x7fff)); }
inline bool f16_nan(int16_t x) { return (x & 0x7fff) > 0x7c00; }

template <class T>
using Buf = std::unique_ptr<T[]>;

template <class T>
Buf<T> buf(size_t n, bool zero = false) {
  Buf<T> b(new T[std::max<size_t>(n, 1)]);
  if (zero) std::fill(b.get(), b.get() + std::max<size_t>(n, 1), T());
  return b;
}

struct Tables {
  YoloParams p;
  int C = 0, ch = 0;
  float thr = 0;        // float32(score_threshold): a score passes when > thr (float compare)
  int16_t thr_key = 0;  // fp16: key of the largest fp16 whose value is not above thr
  float iou_thr = 0;    // the largest float not above iou_threshold
  size_t esz = 4, row_bytes = 0;
};

struct YoloScratch : PostScratch {
  std::shared_ptr<const Tables> t;
  Buf<float> best;        // channels first, float32: [A] best score per anchor (NaN sticks)
  Buf<int16_t> best_key;  // channels first, fp16: [A] best key per anchor
  Buf<int16_t> nan;       // channels first, fp16: [A] a NaN score seen
  Buf<int32_t> arg32;     // channels first: [A] the best class so far (float32 heads)
  Buf<int16_t> arg16;     // (fp16 heads)
  Buf<uint32_t> hits;     // [A] anchors passing the threshold
  Buf<float> hit_score;   // [A] their best score
  Buf<int32_t> hit_class; // [A] and its class
  // candidates (the hits), in anchor order: box (x1, y1, x2, y2) and offset box + area
  Buf<float> box, obox;
  Buf<int16_t> key_row;  // channels last, fp16: one anchor's class keys
  Buf<uint64_t> keys;  // (descending score, candidate)
  // kept boxes (offset), structure of arrays, one LANES-padded segment per class
  Buf<float> kx1, ky1, kx2, ky2, ka;
  std::vector<uint32_t> seg, nkept, count;
  std::vector<float> lo, hi;
  Buf<uint32_t> kept;

  explicit YoloScratch(std::shared_ptr<const Tables> tables) : t(std::move(tables)) {
    const YoloParams& p = t->p;
    const size_t A = size_t(p.max_anchors), C = size_t(t->C);
    if (p.channels_first) {
      if (p.dtype == VP_FLOAT16) {
        best_key = buf<int16_t>(A);
        nan = buf<int16_t>(A);
        arg16 = buf<int16_t>(A);
      } else {
        best = buf<float>(A);
        arg32 = buf<int32_t>(A);
      }
    }
    hits = buf<uint32_t>(A);
    hit_score = buf<float>(A);
    hit_class = buf<int32_t>(A);
    box = buf<float>(A * 4);
    obox = buf<float>(A * 5);
    key_row = buf<int16_t>(C);
    keys = buf<uint64_t>(A);
    const size_t cap = A + (C + 1) * LANES + size_t(p.max_per_image);
    for (auto* b : {&kx1, &ky1, &kx2, &ky2, &ka}) *b = buf<float>(cap, true);
    seg.assign(C + 1, 0);
    nkept.assign(C, 0);
    count.assign(C, 0);
    lo.assign(C, 0.0f);
    hi.assign(C, 0.0f);
    kept = buf<uint32_t>(size_t(p.max_per_image));
  }
};

// Whether one of the NK kept boxes (structure of arrays, padded to LANES) suppresses box B
// (x1, y1, x2, y2, area; all offset): torchvision's nms_kernel with the kept box as i and B as
// j, term for term, LANES at a time branch-free (this vectorises).
bool suppressed(const float* __restrict kx1, const float* __restrict ky1, const float* __restrict kx2,
                const float* __restrict ky2, const float* __restrict ka, int nk, const float* b, float thr) {
  const float x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3], area = b[4];
  for (int t0 = 0; t0 < nk; t0 += LANES) {
    int any = 0;
    for (int t = t0; t < t0 + LANES; ++t) {
      float xx1 = kx1[t] < x1 ? x1 : kx1[t];  // std::max(ix1, x1[j])
      float yy1 = ky1[t] < y1 ? y1 : ky1[t];
      float xx2 = x2 < kx2[t] ? x2 : kx2[t];  // std::min(ix2, x2[j])
      float yy2 = y2 < ky2[t] ? y2 : ky2[t];
      float dw = xx2 - xx1, dh = yy2 - yy1;
      float w = 0.0f < dw ? dw : 0.0f;  // std::max(0, xx2 - xx1)
      float h = 0.0f < dh ? dh : 0.0f;
      float inter = w * h;
      float ovr = inter / (ka[t] + area - inter);
      any |= (ovr > thr) & (t < nk);
    }
    if (any) return true;
  }
  return false;
}

// The maximum of X[0..C) (no NaN among them) and its first index, as torch.max: LANES running
// maxima side by side (this vectorises), then the first element equal to the maximum. K: float
// values or fp16 keys (whose maximum, where it is used, is positive: equal keys, equal values).
template <class K>
inline int first_max(const K* x, int C, K* best) {
  K m;
  int c = 0;
  if (C >= LANES) {
    K lane[LANES];
    for (int l = 0; l < LANES; ++l) lane[l] = x[l];
    for (c = LANES; c + LANES <= C; c += LANES)
      for (int l = 0; l < LANES; ++l) lane[l] = x[c + l] > lane[l] ? x[c + l] : lane[l];
    m = lane[0];
    for (int l = 1; l < LANES; ++l) m = lane[l] > m ? lane[l] : m;
  } else {
    m = x[0];
    c = 1;
  }
  for (; c < C; ++c) m = x[c] > m ? x[c] : m;
  int k = 0;
  while (x[k] != m) ++k;
  *best = m;
  return k;
}

// The anchors whose best score passes, ascending, into S.hits, with that score and its class
// (the first maximum) into S.hit_score and S.hit_class; returns how many.
size_t pass_anchors(const Tables& T, const void* head, size_t A, YoloScratch& s) {
  const int C = T.C;
  uint32_t* hits = s.hits.get();
  float* hs = s.hit_score.get();
  int32_t* hc = s.hit_class.get();
  size_t n = 0;
  if (T.p.channels_first) {
    // One pass over the class rows: per anchor the running maximum and its class.
    if (T.p.dtype == VP_FLOAT16) {
      const int16_t* S = static_cast<const int16_t*>(head) + 4 * A;
      int16_t* mk = s.best_key.get();
      int16_t* arg = s.arg16.get();
      int16_t* nf = s.nan.get();
      for (size_t a = 0; a < A; ++a) {
        mk[a] = f16_key(S[a]);
        nf[a] = f16_nan(S[a]);
        arg[a] = 0;
      }
      for (size_t a0 = 0; a0 < A; a0 += BLOCK) {
        const size_t a1 = std::min(A, a0 + BLOCK);
        for (int c = 1; c < C; ++c) {
          const int16_t* row = S + size_t(c) * A;
          const int16_t cc = int16_t(c);
          for (size_t a = a0; a < a1; ++a) {
            int16_t k = f16_key(row[a]);
            bool gt = k > mk[a];
            mk[a] = gt ? k : mk[a];
            arg[a] = gt ? cc : arg[a];  // the first maximum (equal keys: equal values, both > 0 where it matters)
            nf[a] |= int16_t(f16_nan(row[a]));
          }
        }
      }
      const int16_t thr = T.thr_key;
      for (size_t a = 0; a < A; ++a) {
        if (!((mk[a] > thr) & !nf[a])) continue;
        hits[n] = uint32_t(a);
        hs[n] = half_to_float(uint16_t(mk[a]));  // positive: key = bits
        hc[n++] = arg[a];
      }
    } else {
      const float* S = static_cast<const float*>(head) + 4 * A;
      float* m = s.best.get();
      int32_t* arg = s.arg32.get();
      std::memcpy(m, S, A * sizeof(float));
      std::fill(arg, arg + A, 0);
      for (size_t a0 = 0; a0 < A; a0 += BLOCK) {  // a block's maxima stay in L1 across the rows
        const size_t a1 = std::min(A, a0 + BLOCK);
        for (int c = 1; c < C; ++c) {
          const float* row = S + size_t(c) * A;
          for (size_t a = a0; a < a1; ++a) {
            float v = row[a], b = m[a];
            bool gt = v > b, take = gt | (v != v);  // a NaN sticks (v > NaN is false)
            m[a] = take ? v : b;
            arg[a] = gt ? c : arg[a];  // the first maximum, as torch.max (rows with a NaN never pass)
          }
        }
      }
      const float thr = T.thr;
      for (size_t a = 0; a < A; ++a) {
        if (!(m[a] > thr)) continue;
        hits[n] = uint32_t(a);
        hs[n] = m[a];
        hc[n++] = arg[a];
      }
    }
    return n;
  }
  // Channels last: per anchor row, a branch-free any-above and any-NaN test over its C scores;
  // only rows that pass (and hold no NaN) get their maximum.
  const size_t ch = size_t(T.ch);
  if (T.p.dtype == VP_FLOAT16) {
    const int16_t thr = T.thr_key;
    int16_t* key = s.key_row.get();
    for (size_t a = 0; a < A; ++a) {
      const int16_t* r = static_cast<const int16_t*>(head) + a * ch + 4;
      int16_t any = 0, nan = 0;  // in the scores' lane width, so this vectorises
      for (int c = 0; c < C; ++c) {
        any |= int16_t(f16_key(r[c]) > thr);
        nan |= int16_t(f16_nan(r[c]));
      }
      if (!any || nan) continue;
      for (int c = 0; c < C; ++c) key[c] = f16_key(r[c]);
      int16_t m;
      hc[n] = first_max(key, C, &m);
      hs[n] = half_to_float(uint16_t(m));
      hits[n++] = uint32_t(a);
    }
  } else {
    const float thr = T.thr;
    for (size_t a = 0; a < A; ++a) {
      const float* r = static_cast<const float*>(head) + a * ch + 4;
      int32_t any = 0, nan = 0;
      for (int c = 0; c < C; ++c) {
        any |= int32_t(r[c] > thr);
        nan |= int32_t(r[c] != r[c]);
      }
      if (!any || nan) continue;
      float m;
      hc[n] = first_max(r, C, &m);
      hs[n] = m;
      hits[n++] = uint32_t(a);
    }
  }
  return n;
}

// Candidates from the passing anchors: score, class and box xyxy (float32). Returns how many.
template <class Raw>
size_t candidates(const Tables& T, const Raw* head, size_t A, size_t nh, YoloScratch& s) {
  const bool cf = T.p.channels_first;
  const size_t ch = size_t(T.ch);
  auto val = [](Raw x) {
    if constexpr (std::is_same_v<Raw, float>) return x;
    else return half_to_float(uint16_t(x));
  };
  for (size_t h = 0; h < nh; ++h) {
    const size_t a = s.hits[h];
    float cx, cy, w, hh;
    if (cf) {
      cx = val(head[a]), cy = val(head[A + a]), w = val(head[2 * A + a]), hh = val(head[3 * A + a]);
    } else {
      const Raw* r = head + a * ch;
      cx = val(r[0]), cy = val(r[1]), w = val(r[2]), hh = val(r[3]);
    }
    const float hw = w / 2.0f, hh2 = hh / 2.0f;
    float* b = &s.box[h * 4];
    b[0] = cx - hw;
    b[1] = cy - hh2;
    b[2] = cx + hw;
    b[3] = cy + hh2;
  }
  return nh;
}

int image(const Tables& T, const void* head, size_t qsl_idx, float* out, YoloScratch& s) {
  const YoloParams& p = T.p;
  if (qsl_idx >= p.geometry.size() / 4)
    throw Error("sample " + std::to_string(qsl_idx) + " has no geometry (the table holds " +
                std::to_string(p.geometry.size() / 4) + " samples)");
  const int32_t* g = &p.geometry[qsl_idx * 4];
  const int h0 = g[0], w0 = g[1], in_h = g[2], in_w = g[3];
  const size_t A = size_t(yolo_anchors(p.strides, in_h, in_w));

  size_t nh = pass_anchors(T, head, A, s);
  size_t n = p.dtype == VP_FLOAT16 ? candidates(T, static_cast<const int16_t*>(head), A, nh, s)
                                   : candidates(T, static_cast<const float*>(head), A, nh, s);
  if (n == 0) return 0;

  // The order NMS walks: descending score (positive: its bits order like it), then candidate
  // (= anchor) index; beyond max_candidates only the best enter.
  uint64_t* keys = s.keys.get();
  for (size_t k = 0; k < n; ++k) {
    uint32_t u;
    std::memcpy(&u, &s.hit_score[k], 4);
    keys[k] = (uint64_t(~u) << 32) | k;
  }
  size_t nn = n;
  if (nn > size_t(p.max_candidates)) {
    std::nth_element(keys, keys + p.max_candidates, keys + nn);
    nn = size_t(p.max_candidates);
  }

  // Offset boxes and areas (float32, as the reference), per-class counts and x spans.
  const int C = T.C;
  std::fill(s.count.begin(), s.count.end(), 0u);
  std::fill(s.nkept.begin(), s.nkept.end(), 0u);
  std::fill(s.lo.begin(), s.lo.end(), std::numeric_limits<float>::infinity());
  std::fill(s.hi.begin(), s.hi.end(), -std::numeric_limits<float>::infinity());
  bool finite = true;
  for (size_t r = 0; r < nn; ++r) {
    const uint32_t k = uint32_t(keys[r]);
    const int c = s.hit_class[k];
    const float off = float(c) * p.class_offset;
    const float* b = &s.box[size_t(k) * 4];
    float* o = &s.obox[size_t(k) * 5];
    for (int q = 0; q < 4; ++q) o[q] = b[q] + off;
    o[4] = (o[2] - o[0]) * (o[3] - o[1]);
    finite &= std::isfinite(o[0]) & std::isfinite(o[1]) & std::isfinite(o[2]) & std::isfinite(o[3]);
    s.count[c]++;
    s.lo[c] = std::min(s.lo[c], std::min(o[0], o[2]));
    s.hi[c] = std::max(s.hi[c], std::max(o[0], o[2]));
  }
  // Two boxes of classes whose offset x spans do not overlap never suppress each other (their
  // intersection's width is 0): then each candidate is tested against its class's kept boxes only.
  bool per_class = finite;
  float prev_hi = -std::numeric_limits<float>::infinity();
  for (int c = 0; c < C && per_class; ++c) {
    if (!s.count[c]) continue;
    per_class = prev_hi <= s.lo[c];
    prev_hi = s.hi[c];
  }
  const uint32_t maxk = uint32_t(p.max_per_image);
  if (per_class) {
    uint32_t at = 0;
    for (int c = 0; c < C; ++c) {
      s.seg[c] = at;
      at += (std::min(s.count[c], maxk) + LANES - 1) / LANES * LANES;
    }
  } else {
    s.seg[0] = 0;
  }

  LazyOrder order(keys, nn);
  int m = 0;
  for (size_t r = 0; r < nn && m < p.max_per_image; ++r) {
    const uint32_t k = uint32_t(order[r]);
    const int c = per_class ? s.hit_class[k] : 0;
    const size_t o = s.seg[c];
    const int nk = int(s.nkept[c]);
    const float* b = &s.obox[size_t(k) * 5];
    if (suppressed(&s.kx1[o], &s.ky1[o], &s.kx2[o], &s.ky2[o], &s.ka[o], nk, b, T.iou_thr)) continue;
    s.kx1[o + nk] = b[0];
    s.ky1[o + nk] = b[1];
    s.kx2[o + nk] = b[2];
    s.ky2[o + nk] = b[3];
    s.ka[o + nk] = b[4];
    s.nkept[c] = uint32_t(nk + 1);
    s.kept[m++] = k;
  }

  // scale_boxes: gain and pads as Python computes them (double), applied in float32; clip.
  const double gain = std::min(double(in_h) / h0, double(in_w) / w0);
  const float pad_x = float(std::nearbyint((in_w - w0 * gain) / 2 - 0.1));
  const float pad_y = float(std::nearbyint((in_h - h0 * gain) / 2 - 0.1));
  const float gf = float(gain), wf = float(w0), hf = float(h0), qf = float(qsl_idx);
  auto clamp = [](float v, float hi) {  // torch's clamp_(0, hi): std::min(std::max(v, 0), hi)
    v = v < 0.0f ? 0.0f : v;
    return hi < v ? hi : v;
  };
  for (int i = 0; i < m; ++i) {
    const uint32_t k = s.kept[i];
    const float* b = &s.box[size_t(k) * 4];
    const float x1 = clamp((b[0] - pad_x) / gf, wf), y1 = clamp((b[1] - pad_y) / gf, hf);
    const float x2 = clamp((b[2] - pad_x) / gf, wf), y2 = clamp((b[3] - pad_y) / gf, hf);
    float* row = out + size_t(i) * 7;
    row[0] = qf;
    row[1] = y1 / hf;
    row[2] = x1 / wf;
    row[3] = y2 / hf;
    row[4] = x2 / wf;
    row[5] = s.hit_score[k];
    row[6] = float(p.class_ids[s.hit_class[k]]);
  }
  return m;
}

class YoloPost : public Post {
 public:
  explicit YoloPost(std::shared_ptr<const Tables> t) : t_(std::move(t)) {}
  size_t max_response_bytes() const override { return size_t(t_->p.max_per_image) * 28; }
  std::unique_ptr<PostScratch> scratch() const override { return std::make_unique<YoloScratch>(t_); }
  bool run(const void* const* outputs, int n, const size_t* qsl_idx, uint8_t* resp, size_t* offset, size_t* size,
           PostScratch* scratch, std::string* error) override {
    std::unique_ptr<PostScratch> own;
    auto* s = dynamic_cast<YoloScratch*>(scratch);
    if (!s || s->t != t_) {  // not ours: a temporary one (slow, but right)
      own = this->scratch();
      s = static_cast<YoloScratch*>(own.get());
    }
    const size_t max_bytes = max_response_bytes();
    try {
      for (int i = 0; i < n; ++i) {
        const auto* head = static_cast<const uint8_t*>(outputs[0]) + size_t(i) * t_->row_bytes;
        uint8_t* dst = resp + size_t(i) * max_bytes;
        int m = image(*t_, head, qsl_idx[i], reinterpret_cast<float*>(dst), *s);
        offset[i] = size_t(i) * max_bytes;
        size[i] = size_t(m) * 28;
      }
    } catch (const std::exception& e) {
      if (error) *error = std::string("YOLO post-processing: ") + e.what();
      return false;
    }
    return true;
  }

 private:
  std::shared_ptr<const Tables> t_;
};

std::shared_ptr<const Tables> make_tables(const YoloParams& p) {
  if (p.num_classes < 1 || p.num_classes > 32767) throw Error("YOLO: num_classes must be 1..32767");
  if (p.channels_first != 0 && p.channels_first != 1) throw Error("YOLO: channels_first must be 0 or 1");
  if (p.dtype != VP_FLOAT32 && p.dtype != VP_FLOAT16) throw Error("YOLO: heads must be float32 or float16");
  if (p.max_anchors <= 0) throw Error("YOLO: max_anchors must be positive");
  if (!(p.score_threshold >= 0)) throw Error("YOLO: the score threshold must be >= 0");
  if (!(p.iou_threshold >= 0)) throw Error("YOLO: the IoU threshold must be >= 0");
  if (p.max_candidates <= 0 || p.max_per_image <= 0)
    throw Error("YOLO: max_candidates and max_per_image must be positive");
  if (p.strides.empty()) throw Error("YOLO: needs strides");
  if (p.class_ids.size() != size_t(p.num_classes)) throw Error("YOLO: class_ids must hold one id per class");
  if (p.geometry.size() % 4) throw Error("YOLO: geometry must be [N, 4] (h0, w0, in_h, in_w)");
  for (size_t i = 0; i < p.geometry.size(); i += 4) {
    const int32_t* g = &p.geometry[i];
    if (g[0] <= 0 || g[1] <= 0) throw Error("YOLO: sample " + std::to_string(i / 4) + " has an empty image size");
    if (yolo_anchors(p.strides, g[2], g[3]) > p.max_anchors)
      throw Error("YOLO: sample " + std::to_string(i / 4) + "'s input " + std::to_string(g[2]) + "x" +
                  std::to_string(g[3]) + " has more anchors than max_anchors " + std::to_string(p.max_anchors));
  }
  auto t = std::make_shared<Tables>();
  t->p = p;
  t->C = p.num_classes;
  t->ch = 4 + p.num_classes;
  t->thr = float(p.score_threshold);
  float it = float(p.iou_threshold);
  if (double(it) > p.iou_threshold) it = std::nextafter(it, -std::numeric_limits<float>::infinity());
  t->iou_thr = it;
  // fp16: "float32(h) > thr" is "key(h) > key of the largest fp16 not above thr" (thr >= 0)
  int lo = 0, hi = 0x7c00;  // non-negative fp16 bits order like their values: bisect
  if (half_to_float(uint16_t(hi)) <= t->thr) lo = hi;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    (half_to_float(uint16_t(mid)) <= t->thr ? lo : hi) = mid;
  }
  t->thr_key = int16_t(lo);
  t->esz = dtype_size(p.dtype);
  t->row_bytes = size_t(t->ch) * size_t(p.max_anchors) * t->esz;
  return t;
}

}  // namespace

int yolo_anchors(const std::vector<int>& strides, int in_h, int in_w) {
  if (in_h <= 0 || in_w <= 0) throw Error("YOLO: empty input size");
  int64_t a = 0;
  for (int s : strides) {
    if (s <= 0 || in_h % s || in_w % s)
      throw Error("YOLO: input " + std::to_string(in_h) + "x" + std::to_string(in_w) +
                  " is not a multiple of stride " + std::to_string(s));
    a += int64_t(in_h / s) * (in_w / s);
  }
  if (a > std::numeric_limits<int32_t>::max()) throw Error("YOLO: too many anchors");
  return int(a);
}

std::unique_ptr<Post> make_yolo(const YoloParams& p) { return std::make_unique<YoloPost>(make_tables(p)); }

int yolo_image(const YoloParams& p, const void* head, size_t qsl_idx, float* out, PostScratch* scratch) {
  auto* s = dynamic_cast<YoloScratch*>(scratch);
  std::unique_ptr<YoloScratch> own;
  if (!s) {  // no scratch: derive everything now (slow, but right)
    own = std::make_unique<YoloScratch>(make_tables(p));
    s = own.get();
  } else if (s->t->p.num_classes != p.num_classes || s->t->p.channels_first != p.channels_first ||
             s->t->p.dtype != p.dtype || s->t->p.max_anchors != p.max_anchors) {
    throw Error("YOLO: scratch made for other parameters");
  }
  return image(*s->t, head, qsl_idx, out, *s);
}

}  // namespace vp
