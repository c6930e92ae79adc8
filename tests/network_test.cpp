// comm/network.h: which interfaces an Open MPI if_include / if_exclude list selects (names and CIDR
// subnets), and the start-up report's lines on one rank.
#include "comm/network.h"

#include <gtest/gtest.h>

namespace cairn {
namespace {

// "NAME ADDRESS" -> NAME, ADDRESS
std::pair<std::string, std::string> split(const std::string& entry) {
  const auto space = entry.find(' ');
  return {entry.substr(0, space), entry.substr(space + 1)};
}

TEST(Network, IncludeAndExcludeSelectInterfacesByNameAndSubnet) {
  const auto all = usable_interfaces("", "");
  EXPECT_EQ(usable_interfaces("0.0.0.0/0", ""), all);  // every address is in 0.0.0.0/0
  EXPECT_TRUE(usable_interfaces("", "0.0.0.0/0").empty());
  EXPECT_TRUE(usable_interfaces("no-such-if0", "").empty());
  EXPECT_TRUE(usable_interfaces("127.0.0.0/8", "").empty());  // loopback never counts
  for (const auto& entry : all) {
    const auto [name, addr] = split(entry);
    SCOPED_TRACE(entry);
    const auto by_name = usable_interfaces("no-such-if0," + name, "");
    ASSERT_FALSE(by_name.empty());
    for (const auto& e : by_name) EXPECT_EQ(split(e).first, name);
    const auto by_subnet = usable_interfaces(addr + "/32", "");
    ASSERT_EQ(by_subnet.size(), 1u);
    EXPECT_EQ(by_subnet[0], entry);
    for (const auto& e : usable_interfaces("", name)) EXPECT_NE(split(e).first, name);
  }
}

TEST(Network, OneRankReportsItsHostAndNoNetwork) {
  auto comm = make_self_communicator();
  const auto lines = describe_network(*comm);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "hosts: 1: " + comm->host() + " (1 rank: 0)");
  EXPECT_EQ(lines[1], "network: none, one host");
}

}  // namespace
}  // namespace cairn
