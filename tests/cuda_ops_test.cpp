// The CUDA backend against the CPU oracle: every record of tests/cuda_cases.cpp as one test case
// (skipped, not passed, where no CUDA device is present), and the errors a user gets without one.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/nccl_communicator.h"
#include "tests/cuda_cases.h"
#include "tests/test_support.h"
#include "trainer/run.h"
#include "trainer/trainer.h"
#include "trainer/config.h"
#include "util/cuda_module.h"
#include "util/error.h"

namespace cairn {

// Found by argument-dependent lookup: test names show the check, not its bytes.
void PrintTo(const CudaCheck& c, std::ostream* os) { *os << c.name; }

namespace {

class CudaOps : public ::testing::TestWithParam<CudaCheck> {};

TEST_P(CudaOps, MatchesCpu) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  Checker c;
  GetParam().run(c);
  EXPECT_TRUE(c.ok()) << GetParam().name << ":\n" << c.report();
  std::printf("%s:\n%s", GetParam().name.c_str(), c.report().c_str());
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaOps, ::testing::ValuesIn(cuda_checks()),
                         [](const auto& info) { return info.param.name; });

TEST(CudaBackend, SummarizesItsDeviceMemory) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const Backend& gpu = cuda_backend();
  DeviceArray<float> block(gpu, 1 << 20);
  const std::string summary = gpu.device_summary();
  EXPECT_NE(summary.find("GB in cairn's buffers"), std::string::npos) << summary;
  EXPECT_EQ(cpu_backend().device_summary().find("GB in cairn's buffers"), std::string::npos);
}

// The module opens (every symbol resolves: dlopen with RTLD_NOW) wherever it was built.
TEST(CudaBackend, ModuleOpens) { EXPECT_EQ(cuda_module_error(), ""); }

// What the loaded libraries report, device or not (bench/gpu_check.sh prints it).
TEST(CudaBackend, ReportsTheLoadedLibraryVersions) {
  const std::string v = cuda_library_versions();
  for (const char* lib : {"CUDA runtime ", "driver ", "cuBLAS ", "cuDNN ", "NCCL "})
    EXPECT_NE(v.find(lib), std::string::npos) << lib << " missing: " << v;
  EXPECT_EQ(v.find("cuBLAS 0.0.0"), std::string::npos) << v;
}

TEST(CudaBackend, WithoutDeviceSaysWhy) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  for (CudaMath math : {CudaMath::fp32, CudaMath::tf32, CudaMath::bf16}) {
    try {
      cuda_backend(math);
      FAIL() << "cuda_backend() returned without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("device = \"cpu\""), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(cuda_unavailable_reason()), std::string::npos) << e.what();
    }
  }
  // The runtime's own error (no driver, an old driver, no device), not just "none".
  const std::string why = cuda_unavailable_reason();
  EXPECT_TRUE(why.find("cudaGetDeviceCount: cudaError") == 0 || why == "the CUDA runtime sees no device") << why;
  TrainConfig cfg;
  cfg.device = Device::cuda;
  EXPECT_THROW(config_validate(cfg), Error);
  cfg.training.precision = Precision::bf16;
  EXPECT_THROW(config_validate(cfg), Error);
}

// NCCL with one rank, as the one-GPU machine can run it (tests/mpi/nccl_mpi.cpp needs a GPU per
// rank, two ranks): bootstrapped by a self communicator, every collective on device memory, ordered
// after the backend's queued work (set_compute_stream: the doubling below is still queued when the
// first collective starts). One rank's reductions leave the values as they are.
TEST(CudaNccl, OneRankCollectivesRunOnTheDevice) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  if (!CAIRN_HAVE_NCCL) GTEST_SKIP() << "built without NCCL";
  const Backend& gpu = cuda_backend();
  const std::unique_ptr<Communicator> self = make_self_communicator();
  const std::unique_ptr<NcclCommunicator> nccl = make_nccl_communicator(*self);
  nccl->set_compute_stream(gpu.compute_stream());
  EXPECT_EQ(nccl->name(), "nccl");
  EXPECT_EQ(nccl->size(), 1);
  const int64_t n = 100003;
  std::vector<float> host(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) host[size_t(i)] = float(i % 1000) - 500.0f;
  DeviceArray<float> d(gpu, n);
  gpu.copy_to_device(d.data(), host.data(), n * 4);
  gpu.scale_inplace(d.data(), 2.0f, n);
  nccl->all_reduce(d.data(), n, ReduceOp::avg);
  Request r = nccl->all_reduce_start(d.data(), n, ReduceOp::sum);
  nccl->wait(r);
  nccl->reduce_scatter(d.data(), {n}, ReduceOp::sum);
  nccl->all_gather(d.data(), {n});
  nccl->broadcast(d.data(), n * 4, 0);
  std::vector<float> back(static_cast<size_t>(n));
  gpu.copy_to_host(back.data(), d.data(), n * 4);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[size_t(i)], 2.0f * host[size_t(i)]) << i;
}

// The trainer on the GPU with real checkpoint files: a resumed run equals the uninterrupted one
// bit for bit, and a run checkpointed on the CPU, continued on the GPU and finished on the CPU
// follows the all-CPU run within fp32 tolerance (checkpoints hold fp32 host buffers).
class CudaTrainTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    ScratchDirTest::SetUp();
    write_byte_dataset(path("data.h5"), 60, 6, random_text_doc);
    comm_ = make_self_communicator();
  }
  static std::vector<uint32_t> random_text_doc(int d) {
    std::vector<uint32_t> doc(size_t(40 + d % 17));
    for (size_t i = 0; i < doc.size(); ++i) doc[i] = uint32_t((d * 31 + i * 7) % 256);
    return doc;
  }
  TrainConfig config(Device device, const std::string& run) const {
    TrainConfig c = tiny_train_config(path("data.h5"), path(run));
    c.device = device;
    c.training.steps = 8;
    c.training.peak_flops = 1e12;
    return c;
  }
  static std::vector<float> params_of(Trainer& t) {
    std::vector<float> host(static_cast<size_t>(t.model().params().total()));
    t.model().backend().copy_to_host(host.data(), t.model().param_data(), int64_t(host.size()) * 4);
    return host;
  }
  std::unique_ptr<Communicator> comm_;
};

// In bf16 too: the parameters' bf16 copy is a function of the fp32 master alone and cuDNN's
// backward is the deterministic one, so a resumed bf16 run is bitwise the same as well.
TEST_F(CudaTrainTest, ResumedGpuRunEqualsUninterruptedBitForBit) {
  for (const char* precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    TrainConfig c = config(Device::cuda, str("run_", precision));
    c.training.precision = *choice_from_name<Precision>(precision);
    Trainer full(c, *comm_);
    std::vector<float> losses;
    for (int i = 0; i < 8; ++i) losses.push_back(full.train_step().loss);
    std::string ckpt;
    {
      Trainer first(c, *comm_);
      for (int i = 0; i < 3; ++i) EXPECT_EQ(first.train_step().loss, losses[size_t(i)]) << "step " << i + 1;
      ckpt = TrainingRun(first).save_checkpoint();
    }
    Trainer resumed(c, *comm_);
    TrainingRun(resumed).load_checkpoint(ckpt);
    for (int i = 3; i < 8; ++i) EXPECT_EQ(resumed.train_step().loss, losses[size_t(i)]) << "step " << i + 1;
    EXPECT_EQ(params_of(resumed), params_of(full));
  }
}

TEST_F(CudaTrainTest, CheckpointMovesCpuToGpuToCpu) {
  Trainer reference(config(Device::cpu, "reference"), *comm_);
  std::vector<float> ref_losses;
  for (int i = 0; i < 8; ++i) ref_losses.push_back(reference.train_step().loss);

  std::string ckpt;
  {
    Trainer cpu(config(Device::cpu, "cpu1"), *comm_);
    for (int i = 0; i < 3; ++i) cpu.train_step();
    ckpt = TrainingRun(cpu).save_checkpoint();
  }
  {
    Trainer gpu(config(Device::cuda, "gpu"), *comm_);
    TrainingRun(gpu).load_checkpoint(ckpt);
    for (int i = 3; i < 6; ++i)
      EXPECT_NEAR(gpu.train_step().loss, ref_losses[size_t(i)], 1e-4 * ref_losses[size_t(i)]) << "step " << i + 1;
    ckpt = TrainingRun(gpu).save_checkpoint();
  }
  Trainer cpu(config(Device::cpu, "cpu2"), *comm_);
  TrainingRun(cpu).load_checkpoint(ckpt);
  EXPECT_EQ(cpu.state().step, 6);
  for (int i = 6; i < 8; ++i)
    EXPECT_NEAR(cpu.train_step().loss, ref_losses[size_t(i)], 1e-4 * ref_losses[size_t(i)]) << "step " << i + 1;
  const auto want = params_of(reference), got = params_of(cpu);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 + 1e-3 * std::abs(want[i])) << i;
}

}  // namespace
}  // namespace cairn
