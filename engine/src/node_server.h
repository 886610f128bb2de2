// A cluster node's side (visionperf/cluster/node.py): batches of cache indices forwarded by
// the cluster's head, each run as a many-sample query and answered as packed rows.
#pragma once

#include <string>

#include "completer.h"
#include "work_queues.h"

namespace vp {

class NodeServer {
 public:
  NodeServer(WorkQueues& queues, Completer& completer) : queues_(queues), completer_(completer) {}

  // Runs the N samples of INDICES and blocks until every one is answered; returns rows of
  // [8-byte size | max_response_bytes()] in the order given. Any thread may call it, several
  // at once; throws if a sample failed. From the first call on, every completion comes here.
  std::string serve(const size_t* indices, size_t n);

 private:
  class Rows : public Sink {  // each response written into its caller's row
   public:
    void complete(mlperf::QuerySampleResponse* responses, size_t n) override;
  };

  WorkQueues& queues_;
  Completer& completer_;
  Rows rows_;
};

}  // namespace vp
