// The command-line preamble shared by the `cairn` subcommands (launch/cli.h, parse_command): --help
// prints the command's help and stops the command, positional arguments are checked against what
// the command takes, and every subcommand answers --help through it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launch/cli.h"
#include "test_support.h"

namespace cairn {
namespace {

const CommandSpec kSpec{"demo", "[--flag] [--value N] ARGS", "A command for the test.",
                        {{"flag", "", "a flag"}, {"value", "N", "a value"}}, "demo's epilog\n"};

// parse_command over "cairn demo <args...>".
Args parse(const std::vector<std::string>& args, const Positionals& positionals = {},
           const std::string& more_help = "") {
  std::vector<std::string> all{"cairn", "demo"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  return parse_command(kSpec, int(argv.size()), argv.data(), positionals, more_help);
}

TEST(ParseCommand, HelpPrintsTheCommandsHelpThenMoreAndSkipsTheChecks) {
  testing::internal::CaptureStdout();
  // A positional argument a command without any would refuse: --help answers first.
  const Args args = parse({"stray", "--help"}, {}, "more help\n");
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(args.help());
  EXPECT_EQ(out, command_help(kSpec) + "more help\n");
}

TEST(ParseCommand, ParsesOptionsAndPrintsNothingWithoutHelp) {
  testing::internal::CaptureStdout();
  const Args args = parse({"--flag", "--value", "7"});
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
  EXPECT_FALSE(args.help());
  EXPECT_TRUE(args.has("flag"));
  EXPECT_EQ(args.get("value"), "7");
  EXPECT_NE(error_of([] { parse({"--nope"}); }).find("unknown option --nope (see cairn demo --help)"),
            std::string::npos);
}

TEST(ParseCommand, ChecksPositionalArguments) {
  EXPECT_EQ(error_of([] { parse({"--flag", "extra"}); }), "unexpected argument 'extra'");
  EXPECT_EQ(error_of([] { parse({}); }), "");

  const Positionals one{Positionals::one, "weights file"};
  EXPECT_EQ(error_of([&] { parse({}, one); }), "give one weights file (see --help)");
  EXPECT_EQ(error_of([&] { parse({"a", "b"}, one); }), "give one weights file (see --help)");
  EXPECT_EQ(parse({"a"}, one).positional(), std::vector<std::string>{"a"});

  const Positionals some{Positionals::at_least_one, "run directory"};
  EXPECT_EQ(error_of([&] { parse({"--flag"}, some); }), "give at least one run directory");
  EXPECT_EQ(parse({"a", "b"}, some).positional().size(), 2u);

  const Positionals any{Positionals::any, ""};
  EXPECT_EQ(parse({}, any).positional().size(), 0u);
  EXPECT_EQ(parse({"a", "b", "c"}, any).positional().size(), 3u);
}

class CommandHelp : public ScratchDirTest, public testing::WithParamInterface<std::string> {};

// Every subcommand answers --help with its usage and exits 0, and refuses an argument it does not take.
TEST_P(CommandHelp, EveryCommandAnswersHelpAndChecksItsArguments) {
  const std::string command = GetParam();
  std::string out;
  ASSERT_EQ(run_cairn(command + " --help", path("help.txt"), out), 0) << out;
  EXPECT_EQ(out.rfind("usage: cairn " + command + " ", 0), 0u) << out;
  EXPECT_NE(out.find("  --help "), std::string::npos) << out;
  if (command == "train") {
    EXPECT_NE(out.find("config keys (defaults):"), std::string::npos) << out;
  }

  const std::string wrong = command == "train" || command == "grow" || command == "plan" ? " stray" : " a b";
  EXPECT_EQ(run_cairn(command + wrong, path("wrong.txt"), out), 1) << out;
  EXPECT_NE(out.find("cairn " + command + ": error: "), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Cairn, CommandHelp,
                         testing::Values("train", "prepare", "plot", "grow", "plan", "inspect", "export", "eval",
                                         "generate"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace cairn
