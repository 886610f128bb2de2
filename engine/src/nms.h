// Decode + NMS on the host for detection heads cut before NMS (the paper's section II-F),
// one kernel per output layout (SSD class-major, SSD box-major, RetinaNet), as a Post.
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "post.h"

namespace vp {

struct NmsParams {
  int class_major = 1;       // 1: locs [4, A], scores [C, A] (SSD-ResNet34); 0: [A, 4], [A, C]
  int num_anchors = 0, num_classes = 0;
  int score_dtype = VP_FLOAT32;  // VP_FLOAT32 | VP_FLOAT16 | VP_UINT8 (raw, as the device emits)
  int box_dtype = VP_FLOAT32;
  double score_threshold = 0;  // double: fp16's raw threshold is derived from it as the reference NMS does (score > threshold)
  float iou_threshold = 0;
  int max_candidates = 0, max_per_class = 0, max_per_image = 0;
  std::array<int, 4> perm = {0, 1, 2, 3};  // where (ty, tx, th, tw) sit among the 4 encoded values
  std::array<float, 4> inv_scales = {1, 1, 1, 1};
  int clip = 0;                   // clip decoded boxes to [0, 1], dropping those left without area (TF clip_to_window)
  double uint8_scale = 1;     // double: the uint8 table is float32((q - zero_point) * scale), computed in double as numpy does
  float uint8_zero_point = 0;
  std::vector<float> anchors;     // [A, 4]: (cy, cx, h, w)
  // RetinaNet (torchvision's postprocess_detections): scores are logits [A, C] and every class is
  // real (no background); score_threshold is then the logit threshold; max_candidates is per level
  // (LEVEL_ANCHORS, in head order); log-size offsets are clamped at box_exp_clip; boxes are
  // clipped to [0, image_size] pixels, kept even without area, and normalised by image_size;
  // NMS suppresses at IoU > iou_threshold; max_per_class is unused (max_per_image bounds a class).
  int retinanet = 0;
  std::vector<int> level_anchors;
  float box_exp_clip = 0;
  float image_size = 1;
};

std::unique_ptr<Post> make_nms(const NmsParams& p);

// One image, for tests and benchmarks: BOXES/SCORES in the raw layout and dtypes of P; writes
// up to max_per_image rows of [qsl_idx, ymin, xmin, ymax, xmax, score, class] into OUT and
// returns how many. SCRATCH comes from make_nms(p)->scratch() (reused across calls; null: made
// for this call, slow).
int nms_image(const NmsParams& p, const void* boxes, const void* scores, float qsl_idx, float* out,
              PostScratch* scratch);

}  // namespace vp
