// Compares two runs for the multi-rank checkpoint tests: the losses of steps after FROM_STEP in two
// metrics.jsonl files (a resumed run appends, so the last record of a step counts) and every
// parameter of two weights files, each within an absolute tolerance (0: bit-identical). Exit 0
// when they match, 1 (printing the worst difference) when not.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "trainer/checkpoint.h"
#include "util/h5.h"

namespace {

std::map<int64_t, double> losses(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

}  // namespace

int compare(int argc, char** argv);

int main(int argc, char** argv) {
  try {
    return compare(argc, argv);
  } catch (const std::exception& e) {
    std::cout << "error: " << e.what() << "\n";
    return 1;
  }
}

int compare(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: checkpoint_compare METRICS_A METRICS_B FROM_STEP LOSS_TOL WEIGHTS_A WEIGHTS_B\n";
    return 2;
  }
  const int64_t from = std::atoll(argv[3]);
  const double tol = std::atof(argv[4]);
  bool ok = true;
  const auto a = losses(argv[1]), b = losses(argv[2]);
  int64_t compared = 0;
  for (const auto& [step, la] : a) {
    if (step <= from) continue;
    const auto it = b.find(step);
    if (it == b.end()) {
      std::cout << "step " << step << " missing from " << argv[2] << "\n";
      ok = false;
      continue;
    }
    ++compared;
    if (std::abs(la - it->second) > tol) {
      std::cout << "step " << step << ": loss " << la << " vs " << it->second << "\n";
      ok = false;
    }
  }
  if (compared == 0) {
    std::cout << "no steps after " << from << " to compare\n";
    ok = false;
  }
  double worst = 0;
  std::string worst_name;
  cairn::H5File wa = cairn::H5File::open(argv[5]), wb = cairn::H5File::open(argv[6]);
  for (const auto& [name, shape] : cairn::checkpoint_read_params(argv[5])) {
    const auto pa = cairn::read_dataset<float>(wa, "params/" + name), pb = cairn::read_dataset<float>(wb, "params/" + name);
    if (pa.shape != pb.shape) {
      std::cout << name << ": shapes differ\n";
      return 1;
    }
    for (size_t i = 0; i < pa.data.size(); ++i)
      if (double d = std::abs(double(pa.data[i]) - double(pb.data[i])); d > worst || std::isnan(d)) worst = d, worst_name = name;
  }
  // Parameters get 10x the loss tolerance: Adam's normalization amplifies tiny gradient differences.
  if (worst > 10 * tol) {
    std::cout << "parameters differ by up to " << worst << " (in " << worst_name << ")\n";
    ok = false;
  }
  std::cout << (ok ? "match" : "MISMATCH") << ": " << compared << " steps after " << from
            << ", largest parameter difference " << worst << "\n";
  return ok ? 0 : 1;
}
