#pragma once
// Test hosts for multi-node scenarios: each is a network namespace with its own address,
// reachable from the test runner (the control node) only over a veth pair, running a real
// OpenSSH server on port 22 with a generated host key and one authorized test key.
//
//   root namespace (queen, rbee CLI)            namespace rbee-t<N> ("workstation")
//   10.200.<N>.1  ── veth rbv<N>h ──── veth rbv<N>n ──  10.200.<N>.2   sshd :22, hive :9200
//
// The namespaces share the file system (binaries are still installed to the node's install
// path with `rbee setup install`), but not the network. Needs root; `available()` says
// why not otherwise, and tests skip with that message.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"

namespace rbee::e2e {

// An ed25519 key pair made with ssh-keygen in `dir`.
struct ssh_identity {
  std::filesystem::path private_key;
  std::filesystem::path public_key;
  static ssh_identity generate(const std::filesystem::path& dir, const std::string& name);
};

// A root file system for a test host that is not this machine's system: the shells and tools
// the queen runs over SSH (sh, mkdir, cat, chmod, mv, rm, uname, setsid; bash, the test user's
// login shell), an /etc/os-release of another distribution, and no package manager. Its
// programs are either this machine's (glibc_tools: with glibc and the few libraries they load,
// none of the ones rbee's programs link beside glibc) or busybox's (busybox: Debian's statically
// linked busybox and nothing else, so no libc at all). It lives under /run, because sshd refuses
// a chroot below a world-writable directory such as /tmp; the destructor removes it.
class minimal_root {
 public:
  enum class programs { glibc_tools, busybox };
  minimal_root(const std::string& name, const std::string& os_release,
               programs kind = programs::glibc_tools);
  ~minimal_root();
  minimal_root(const minimal_root&) = delete;
  minimal_root& operator=(const minimal_root&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Where a path of the host's view lies on this machine.
  std::filesystem::path outside(const std::filesystem::path& inside) const;
  // Copies a file of this machine into the root, at the same path.
  void add_file(const std::filesystem::path& file);
  // An executable script at `inside` (e.g. a stand-in /usr/local/bin/uname).
  void add_script(const std::filesystem::path& inside, const std::string& text);

 private:
  void add_program(const std::filesystem::path& program);
  void add_glibc_tools();
  void add_busybox();
  std::filesystem::path path_;
};

class ssh_test_host {
 public:
  // Empty when test hosts can be made here, else the reason (not root, no sshd, no ip).
  static std::string unavailable_reason();

  // Creates the namespace, the veth pair and sshd; `work_dir` holds its keys and logs. With a
  // root, SSH sessions run chrooted into it (sshd's ChrootDirectory, with /dev and /proc
  // mounted there in the namespace's own mount table): the host sees only that file system.
  ssh_test_host(std::string name, const std::filesystem::path& work_dir,
                const ssh_identity& authorized, const minimal_root* root = nullptr);
  ~ssh_test_host();
  ssh_test_host(const ssh_test_host&) = delete;
  ssh_test_host& operator=(const ssh_test_host&) = delete;

  const std::string& name() const { return name_; }
  std::string address() const;       // the host's address, e.g. 10.200.3.2
  std::string peer_address() const;  // the runner's address on this link, e.g. 10.200.3.1
  std::string user() const { return "root"; }
  const std::string& netns() const { return netns_; }

  // Runs argv inside the namespace and waits; returns the exit code.
  int exec(const std::vector<std::string>& argv) const;
  // Stops sshd (the host stays up, port 22 refuses): for "unreachable" scenarios.
  void stop_sshd();

 private:
  std::string name_;
  std::string netns_;
  int index_ = 0;
  std::filesystem::path work_dir_;
  std::optional<common::child_process> sshd_;
};

// Removes test namespaces and minimal roots left behind by runs that died (their owner process
// is gone).
void remove_stale_test_hosts();

}  // namespace rbee::e2e
