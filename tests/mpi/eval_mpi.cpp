// `cairn eval`'s evaluation under mpirun: the ranks share the windows (micro-batch k on rank k mod
// size, uneven splits and ranks with no window included) and every rank ends with the loss, bit for
// bit, that one process computes alone over the same windows. The job fails if any rank fails.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "launch/use_model.h"
#include "tests/test_support.h"

namespace cairn {
namespace {

Communicator* world = nullptr;

TEST(EvalMpi, RanksShareTheWindowsAndAgreeWithOneProcess) {
  Communicator& comm = *world;
  // Rank 0 writes the dataset under a name every rank learns by broadcast.
  int64_t pid = ::getpid();
  comm.broadcast(&pid, sizeof pid, 0);
  const std::string path = (std::filesystem::temp_directory_path() / ("cairn_eval_mpi_" + std::to_string(pid) + ".h5")).string();
  if (comm.rank() == 0) write_byte_dataset(path, 60, 10, random_letter_docs(5, 10, 40));
  comm.barrier();
  {
    ModelConfig c;
    c.vocab_size = 257;
    c.dim = 16;
    c.n_layers = 1;
    c.n_heads = 2;
    c.ffn_dim = 24;
    c.seq_len = 8;
    LlamaModel model(c, cpu_backend(), 3);
    model.init_weights(9);  // identical on every rank
    const TokenDataset ds = TokenDataset::open(path);
    auto self = make_self_communicator();
    for (int64_t windows : {15, 7, 3, 1, 0}) {
      const EvalResult shared = evaluate_dataset(model, ds, "train", windows, 3, comm);
      const EvalResult alone = evaluate_dataset(model, ds, "train", windows, 3, *self);
      EXPECT_EQ(shared.windows, alone.windows);
      EXPECT_EQ(shared.tokens, alone.tokens);
      EXPECT_EQ(shared.loss, alone.loss) << "windows " << windows;  // bit for bit
      // Another micro-batch changes it only by the GEMMs' rounding.
      EXPECT_NEAR(evaluate_dataset(model, ds, "train", windows, 2, comm).loss, alone.loss, 1e-6 * alone.loss)
          << "windows " << windows;
    }
  }
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove(path);
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  auto comm = cairn::make_mpi_communicator(&argc, &argv, {.timeout_seconds = 20.0});
  cairn::world = comm.get();
  cairn::cpu_set_threads(1);
  if (comm->rank() != 0) GTEST_FLAG_SET(brief, true);
  testing::InitGoogleTest(&argc, argv);
  int64_t failed = RUN_ALL_TESTS() != 0;
  comm->all_reduce(&failed, 1, cairn::ReduceOp::max);
  if (comm->rank() == 0 && failed) std::fprintf(stderr, "eval_mpi: a test failed on some rank\n");
  return failed ? 1 : 0;
}
