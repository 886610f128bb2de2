// A bare C++ SUT on the same LoadGen, for the benchmarks' baselines (not part of visionperf):
// Server and SingleStream complete every query inside IssueQuery; Offline and MultiStream
// hand batches of B samples to one worker thread that completes them.
//
// usage: bare_sut SCENARIO USER_CONF OUTDIR [BATCH]
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loadgen.h"
#include "query_sample_library.h"
#include "system_under_test.h"
#include "test_settings.h"

namespace {
float kLabel = 0.0f;

class Bare : public mlperf::SystemUnderTest, public mlperf::QuerySampleLibrary {
 public:
  explicit Bare(size_t batch) : batch_(batch), worker_([this] { work(); }) {}
  ~Bare() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    worker_.join();
  }
  const std::string& Name() override { return name_; }
  void IssueQuery(const std::vector<mlperf::QuerySample>& s) override {
    if (s.size() == 1) {
      mlperf::QuerySampleResponse r(s[0].id, reinterpret_cast<uintptr_t>(&kLabel), 4);
      mlperf::QuerySamplesComplete(&r, 1);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (size_t i = 0; i < s.size(); i += batch_) q_.push_back({&s[i], std::min(batch_, s.size() - i)});
    }
    cv_.notify_one();
  }
  void FlushQueries() override {}
  size_t TotalSampleCount() override { return 1024; }
  size_t PerformanceSampleCount() override { return 1024; }
  void LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>&) override {}
  void UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>&) override {}

 private:
  void work() {
    std::vector<mlperf::QuerySampleResponse> r(batch_);
    for (;;) {
      std::pair<const mlperf::QuerySample*, size_t> b;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        b = q_.front();
        q_.pop_front();
      }
      for (size_t k = 0; k < b.second; ++k)
        r[k] = mlperf::QuerySampleResponse(b.first[k].id, reinterpret_cast<uintptr_t>(&kLabel), 4);
      mlperf::QuerySamplesComplete(r.data(), b.second);
    }
  }
  std::string name_ = "bare";
  size_t batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<const mlperf::QuerySample*, size_t>> q_;
  bool stop_ = false;
  std::thread worker_;
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bare_sut SCENARIO USER_CONF OUTDIR [BATCH]\n");
    return 2;
  }
  std::string scenario = argv[1];
  mlperf::TestSettings s;
  if (s.FromConfig(argv[2], "resnet50", scenario) != 0) return 2;
  s.scenario = scenario == "Server" ? mlperf::TestScenario::Server
               : scenario == "Offline" ? mlperf::TestScenario::Offline
               : scenario == "SingleStream" ? mlperf::TestScenario::SingleStream
                                            : mlperf::TestScenario::MultiStream;
  s.mode = mlperf::TestMode::PerformanceOnly;
  mlperf::LogSettings ls;
  ls.log_output.outdir = argv[3];
  ls.enable_trace = false;
  Bare sut(argc > 4 ? size_t(std::atoi(argv[4])) : 8);
  mlperf::StartTest(&sut, &sut, s, ls, std::string(argv[3]) + "/audit.config");
  return 0;
}
