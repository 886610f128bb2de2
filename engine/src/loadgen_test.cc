#include "loadgen_test.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "loadgen.h"
#include "test_settings.h"

namespace vp {

namespace {
mlperf::TestSettings settings_of(const TestConfig& c) {
  mlperf::TestSettings s;
  if (s.FromConfig(c.user_conf, c.model, c.scenario) != 0)
    throw Error("LoadGen rejected " + c.user_conf + ": check its keys against mlperf.conf");
  if (c.scenario == "Offline")
    s.scenario = mlperf::TestScenario::Offline;
  else if (c.scenario == "Server")
    s.scenario = mlperf::TestScenario::Server;
  else if (c.scenario == "SingleStream")
    s.scenario = mlperf::TestScenario::SingleStream;
  else if (c.scenario == "MultiStream")
    s.scenario = mlperf::TestScenario::MultiStream;
  else
    throw Error("unknown scenario " + c.scenario);
  s.mode = c.mode == "accuracy" ? mlperf::TestMode::AccuracyOnly : mlperf::TestMode::PerformanceOnly;
  return s;
}
}  // namespace

LoadGenTest::LoadGenTest(const TestConfig& config, WorkQueues& queues, SampleStore& store, Completer& completer,
                         LoadHook hook)
    : config_(config), queues_(queues), store_(store), completer_(completer), hook_(std::move(hook)) {}

void LoadGenTest::IssueQuery(const std::vector<mlperf::QuerySample>& samples) {
  queues_.issue(samples.data(), samples.size());
}

void LoadGenTest::LoadSamplesToRam(const std::vector<mlperf::QuerySampleIndex>& samples) {
  store_.load(samples.data(), samples.size());
  call_hook(samples.data(), samples.size());
}

void LoadGenTest::UnloadSamplesFromRam(const std::vector<mlperf::QuerySampleIndex>&) {
  store_.unload();
  call_hook(nullptr, 0);
}

void LoadGenTest::call_hook(const size_t* indices, size_t n) {
  if (!hook_) return;
  try {
    hook_(indices, n);
  } catch (const std::exception& e) {  // LoadGen's thread cannot take it: the samples fail when run
    completer_.record_error(e.what());
  }
}

LoadGenTest::End LoadGenTest::run(std::shared_ptr<LoadGenTest> test, const std::function<bool()>& interrupted,
                                  const std::function<void()>& abort) {
  // Shared with LoadGen's thread, which may outlive this call.
  struct Shared {
    std::shared_ptr<LoadGenTest> test;
    mlperf::TestSettings settings;
    mlperf::LogSettings log;
    std::string audit;
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::string failure;
  };
  auto sh = std::make_shared<Shared>();
  const TestConfig& c = test->config_;
  sh->settings = settings_of(c);
  sh->log.log_output.outdir = c.outdir;
  sh->log.log_output.copy_summary_to_stdout = false;
  sh->log.enable_trace = false;
  sh->audit = c.audit_config;
  sh->test = std::move(test);
  std::thread t([sh] {
    std::string failure;
    try {
      mlperf::StartTest(sh->test.get(), sh->test.get(), sh->settings, sh->log, sh->audit);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    std::lock_guard<std::mutex> lk(sh->m);
    sh->failure = failure;
    sh->done = true;
    sh->cv.notify_all();
  });
  constexpr auto kGrace = std::chrono::milliseconds(1000);  // for StartTest to end once aborted
  bool was_interrupted = false;
  {
    std::unique_lock<std::mutex> lk(sh->m);
    std::chrono::steady_clock::time_point give_up{};
    while (!sh->done) {
      if (was_interrupted) {
        if (!sh->cv.wait_until(lk, give_up, [&] { return sh->done; })) break;
        continue;
      }
      sh->cv.wait_for(lk, std::chrono::milliseconds(100));
      if (sh->done) break;
      lk.unlock();
      if (interrupted()) {
        was_interrupted = true;
        give_up = std::chrono::steady_clock::now() + kGrace;
        abort();
      }
      lk.lock();
    }
    if (!sh->done) {  // LoadGen is still issuing on its schedule: leave it
      lk.unlock();
      t.detach();
      return End::abandoned;
    }
  }
  t.join();
  if (!sh->failure.empty()) throw Error("LoadGen: " + sh->failure);
  return was_interrupted ? End::interrupted : End::finished;
}

}  // namespace vp
