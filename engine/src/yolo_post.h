// Post-processing of Ultralytics YOLO heads (YOLO11, the MLPerf "yolo" benchmark) as a Post:
// best class, threshold, class-offset greedy NMS, scale_boxes and clip, the 7-float records.
// The algorithm and its reference are in src/visionperf/postprocess/yolo.py.
#pragma once

#include <memory>
#include <vector>

#include "post.h"

namespace vp {

struct YoloParams {
  int num_classes = 80;
  int channels_first = 1;  // 1: a head is [4 + C, A] (Ultralytics' export); 0: its transpose [A, 4 + C]
  int dtype = VP_FLOAT32;  // VP_FLOAT32 | VP_FLOAT16 (converted exactly to float32)
  // A of the largest input: a sample's output row holds (4 + C) x max_anchors elements, of which
  // its own head, sized by its own input (geometry), fills the start.
  int max_anchors = 8400;
  double score_threshold = 0.001;  // best class score > this, compared in float32 (as torch compares)
  double iou_threshold = 0.7;      // suppressed at float32 IoU > this (compared in double, as torchvision)
  float class_offset = 7680;       // boxes shifted by class x this in float32 before NMS (Ultralytics' max_wh)
  int max_candidates = 30000;      // the best this many by score enter NMS
  int max_per_image = 300;
  std::vector<int> strides = {8, 16, 32};  // A = sum over strides of (in_h / s) * (in_w / s)
  std::vector<int> class_ids;              // [C]: the id written for each class (COCO's 80 -> 91)
  std::vector<int32_t> geometry;           // [N, 4] per QSL index: (h0, w0, in_h, in_w), image and input size
};

std::unique_ptr<Post> make_yolo(const YoloParams& p);

// One image, for tests and benchmarks: HEAD in the layout and dtype of P, packed for the input
// size of QSL_IDX's geometry; writes up to max_per_image rows of [qsl_idx, y1/h0, x1/w0, y2/h0,
// x2/w0, score, class id] into OUT and returns how many. SCRATCH comes from make_yolo(p)->scratch()
// of the same parameters (null: made for this call, slow).
int yolo_image(const YoloParams& p, const void* head, size_t qsl_idx, float* out, PostScratch* scratch);

// The anchors of an input of IN_H x IN_W for STRIDES; throws unless each stride divides both.
int yolo_anchors(const std::vector<int>& strides, int in_h, int in_w);

}  // namespace vp
