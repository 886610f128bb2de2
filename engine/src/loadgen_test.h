// One LoadGen test: LoadGen's SUT and QSL callbacks on the engine, and StartTest on a thread
// of its own, watched for an interruption.
//
// LoadGen has no way to end a test early (its AbortTest stops its own log thread, and
// StartTest then waits forever for the latencies), so an interrupted test is ended by
// failing every sample (the caller's ABORT) and waited for a moment: Offline ends on its own
// once its samples are failed; Server and the streams run their schedules to the test's
// duration, and LoadGen's thread is then left running (abandoned): the engine it calls must
// never be destroyed, and the process must end with _exit (LoadGen's static logger cannot be
// destroyed with its thread running).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "completer.h"
#include "engine.h"
#include "query_sample_library.h"
#include "store.h"
#include "system_under_test.h"
#include "work_queues.h"

namespace vp {

class LoadGenTest : public mlperf::SystemUnderTest, public mlperf::QuerySampleLibrary {
 public:
  LoadGenTest(const TestConfig& config, WorkQueues& queues, SampleStore& store, Completer& completer,
              LoadHook hook);

  enum class End { finished, interrupted, abandoned };
  // Runs the test; INTERRUPTED is polled every 100 ms, and when it says so ABORT is called.
  // Throws Error if LoadGen rejects the settings or fails. TEST must be held by a shared_ptr:
  // an abandoned LoadGen thread keeps it.
  static End run(std::shared_ptr<LoadGenTest> test, const std::function<bool()>& interrupted,
                 const std::function<void()>& abort);

  // LoadGen's side: the SUT ...
  const std::string& Name() override { return name_; }
  void IssueQuery(const std::vector<mlperf::QuerySample>& samples) override;
  void FlushQueries() override {}
  // ... and the QSL.
  size_t TotalSampleCount() override { return config_.total; }
  size_t PerformanceSampleCount() override { return config_.performance_count; }
  void LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>& samples) override;
  void UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>& samples) override;

 private:
  void call_hook(const size_t* indices, size_t n);

  std::string name_ = "visionperf";
  TestConfig config_;
  WorkQueues& queues_;
  SampleStore& store_;
  Completer& completer_;
  LoadHook hook_;
};

}  // namespace vp
