// describe_network (see network.h): the hosts and the network the start-up report names.
#include "comm/network.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include "util/error.h"

namespace cairn {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string item; std::getline(is, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Whether interface `name` with IPv4 address `addr` (host order) matches one item of an
// if_include-style list: an interface name or a CIDR subnet.
bool matches(const std::string& list, const std::string& name, uint32_t addr) {
  for (const auto& item : split_commas(list)) {
    const auto slash = item.find('/');
    if (slash == std::string::npos) {
      if (item == name) return true;
      continue;
    }
    in_addr net{};
    if (inet_pton(AF_INET, item.substr(0, slash).c_str(), &net) != 1) continue;
    const int bits = std::atoi(item.c_str() + slash + 1);
    const uint32_t mask = bits <= 0 ? 0 : bits >= 32 ? 0xffffffffu : ~((1u << (32 - bits)) - 1);
    if ((addr & mask) == (ntohl(net.s_addr) & mask)) return true;
  }
  return false;
}

// "3", "0-1" or "0, 2, 5" for a host's ranks.
std::string rank_list(const std::vector<int>& ranks) {
  bool contiguous = true;
  for (size_t i = 1; i < ranks.size(); ++i) contiguous = contiguous && ranks[i] == ranks[i - 1] + 1;
  if (ranks.size() == 1) return str(ranks[0]);
  if (contiguous) return str(ranks.front(), "-", ranks.back());
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += str(i ? ", " : "", ranks[i]);
  return s;
}

}  // namespace

std::vector<std::string> usable_interfaces(const std::string& include, const std::string& exclude) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK)) continue;
    const uint32_t addr = ntohl(reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
    if (!include.empty() && !matches(include, a->ifa_name, addr)) continue;
    if (!exclude.empty() && matches(exclude, a->ifa_name, addr)) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    out.push_back(str(a->ifa_name, " ", text));
  }
  freeifaddrs(list);
  return out;
}

std::vector<std::string> describe_network(Communicator& comm) {
  const std::string include = env("OMPI_MCA_btl_tcp_if_include"), exclude = env("OMPI_MCA_btl_tcp_if_exclude");
  std::string mine;
  for (const auto& i : usable_interfaces(include, exclude)) mine += (mine.empty() ? "" : ", ") + i;
  const auto hosts = comm.all_gather_strings(comm.host());
  const auto interfaces = comm.all_gather_strings(mine);
  if (comm.rank() != 0) return {};
  std::map<std::string, std::vector<int>> ranks_of;  // host -> its ranks
  std::vector<std::string> order;                    // hosts in the order of their first rank
  for (int r = 0; r < int(hosts.size()); ++r) {
    if (!ranks_of.count(hosts[size_t(r)])) order.push_back(hosts[size_t(r)]);
    ranks_of[hosts[size_t(r)]].push_back(r);
  }
  std::string line = str("hosts: ", order.size(), ": ");
  for (size_t i = 0; i < order.size(); ++i)
    line += str(i ? ", " : "", order[i], " (", ranks_of[order[i]].size(), " rank",
                ranks_of[order[i]].size() == 1 ? "" : "s", ": ", rank_list(ranks_of[order[i]]), ")");
  std::vector<std::string> out{line};
  const std::string within = ranks_of.size() < hosts.size() ? "; ranks on one host share memory (Open MPI vader)" : "";
  if (order.size() == 1) {
    out.push_back(str("network: none, one host", within.empty() ? "" : ": ranks share memory (Open MPI vader)"));
    return out;
  }
  const std::string pml = env("OMPI_MCA_pml"), btl = env("OMPI_MCA_btl");
  std::string transport;
  if (pml == "ucx")
    transport = "UCX (OMPI_MCA_pml=ucx)";
  else
    transport = str("tcp (Open MPI btl ", btl.empty() ? "defaults" : btl, ")");
  line = str("network: between hosts ", transport, " on");
  for (const auto& h : order) {
    const std::string& i = interfaces[size_t(ranks_of[h].front())];
    line += str(" ", h, ": ", i.empty() ? "(no interface matches)" : i, ";");
  }
  line.pop_back();
  if (!include.empty()) line += str(" (btl_tcp_if_include ", include, ")");
  out.push_back(line + within);
  return out;
}

}  // namespace cairn
