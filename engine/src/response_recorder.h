// Queries issued directly, without LoadGen (tests), and every response recorded instead.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "completer.h"
#include "work_queues.h"

namespace vp {

class ResponseRecorder {
 public:
  ResponseRecorder(WorkQueues& queues, Completer& completer) : queues_(queues), completer_(completer) {}

  void start();  // from now every response is recorded (id, bytes), none goes to LoadGen
  // One query, kept alive here; refused unless start() put the recorder in LoadGen's place.
  void issue(std::vector<mlperf::QuerySample> query);
  // Waits until COUNT responses were recorded or TIMEOUT_S passed, and returns them.
  std::vector<std::pair<uint64_t, std::string>> wait(size_t count, double timeout_s);

 private:
  class Record : public Sink {
   public:
    void complete(mlperf::QuerySampleResponse* responses, size_t n) override;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<uint64_t, std::string>> responses;
  };

  WorkQueues& queues_;
  Completer& completer_;
  Record record_;
  std::mutex lists_mu_;
  std::deque<std::vector<mlperf::QuerySample>> lists_;
};

}  // namespace vp
