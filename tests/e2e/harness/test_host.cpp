#include "harness/test_host.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/process.h"

namespace rbee::e2e {
namespace fs = std::filesystem;
namespace {

// Owner pid files of live test namespaces, so a later run can clean up after a crash.
const fs::path owners_dir = "/run/rbee-test-hosts";
// Minimal roots of test hosts (not under /tmp: sshd chroots only below root-owned directories).
const fs::path roots_dir = "/run/rbee-test-roots";
constexpr int first_index = 1;
constexpr int last_index = 250;

int run(const std::vector<std::string>& argv, const std::string& log_path = {}) {
  common::process_spec spec;
  spec.executable = argv.front();
  spec.args.assign(argv.begin() + 1, argv.end());
  spec.log_path = log_path.empty() ? "/dev/null" : log_path;
  spec.kill_with_parent = false;
  return common::child_process::spawn(spec).wait();
}

void run_checked(const std::vector<std::string>& argv) {
  if (int rc = run(argv); rc != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error("test host setup failed (exit " + std::to_string(rc) + "): " + cmd);
  }
}

std::string netns_name(int index) {
  return "rbee-t" + std::to_string(index);
}

bool pid_alive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void delete_namespace(int index) {
  run({"/usr/sbin/ip", "link", "del", "rbv" + std::to_string(index) + "h"});
  run({"/usr/sbin/ip", "netns", "del", netns_name(index)});
  std::error_code ignored;
  fs::remove(owners_dir / std::to_string(index), ignored);
}

// The files a program loads, as ldd lists them: "name => /path (0x...)" and the loader's
// "/lib64/ld-linux-x86-64.so.2 (0x...)".
std::vector<fs::path> loaded_files(const fs::path& program) {
  common::process_spec spec;
  spec.executable = "/usr/bin/ldd";
  spec.args = {program.string()};
  auto listed = common::run_captured(spec, std::chrono::seconds(30));
  if (listed.exit_code != 0) throw std::runtime_error("ldd " + program.string() + " failed");
  std::vector<fs::path> files;
  std::istringstream lines(listed.out);
  for (std::string line; std::getline(lines, line);) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;  // the vdso
    files.emplace_back(line.substr(slash, line.find(" (", slash) - slash));
  }
  return files;
}

// Where `file` lies in a root laid out like this machine's: its directory with symlinks
// resolved (/bin -> /usr/bin on a merged /usr), its own name kept (sh, not dash).
fs::path same_place(const fs::path& root, const fs::path& file) {
  return root / fs::canonical(file.parent_path()).relative_path() / file.filename();
}

void copy_into(const fs::path& root, const fs::path& file) {
  fs::path target = same_place(root, file);
  fs::create_directories(target.parent_path());
  fs::copy_file(fs::canonical(file), target, fs::copy_options::overwrite_existing);
  fs::permissions(target, fs::status(fs::canonical(file)).permissions());
}

}  // namespace

minimal_root::minimal_root(const std::string& name, const std::string& os_release, programs kind)
    : path_(roots_dir / (name + "-" + std::to_string(getpid()))) {
  fs::remove_all(path_);
  fs::create_directories(path_);
  // sshd chroots only into directories that root alone may write, up to /.
  constexpr auto rwxr_xr_x = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(path_.parent_path(), rwxr_xr_x);
  fs::permissions(path_, rwxr_xr_x);
  // The top-level links of a merged /usr, as on this machine.
  for (const char* top : {"bin", "lib", "lib64", "sbin"}) {
    fs::path here = fs::path("/") / top;
    if (fs::is_symlink(here)) fs::create_directory_symlink(fs::read_symlink(here), path_ / top);
  }
  for (const char* dir : {"dev", "proc", "root", "etc", "usr/bin", "usr/local/bin", "var"}) {
    fs::create_directories(path_ / dir);
  }
  fs::create_directories(path_ / "tmp");
  fs::permissions(path_ / "tmp", fs::perms::all | fs::perms::sticky_bit);
  std::ofstream(path_ / "etc/os-release") << os_release;
  std::ofstream(path_ / "etc/passwd") << "root:x:0:0:root:/root:/bin/bash\n";
  std::ofstream(path_ / "etc/group") << "root:x:0:\n";
  if (kind == programs::busybox) {
    add_busybox();
  } else {
    add_glibc_tools();
  }
}

void minimal_root::add_glibc_tools() {
  for (const char* program : {"/bin/bash", "/bin/sh", "/bin/mkdir", "/bin/cat", "/bin/chmod",
                              "/bin/mv", "/bin/rm", "/bin/uname", "/usr/bin/setsid"}) {
    add_program(program);
  }
  // The rest of glibc, as any glibc system has it (the tools above load only part of it).
  for (const auto& file : loaded_files("/bin/sh")) {
    if (file.filename() != "libc.so.6") continue;
    for (const char* library :
         {"libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2"}) {
      if (fs::exists(file.parent_path() / library)) copy_into(path_, file.parent_path() / library);
    }
  }
}

// Debian's busybox-static (scripts/install-deps.sh) with the applets the queen runs as links
// to it. It has no nohup (the hive's start does without) and no bash: sshd runs commands with
// the test user's login shell of this machine (/bin/bash), here a script handing them to sh.
void minimal_root::add_busybox() {
  const fs::path busybox = "/bin/busybox";
  if (!fs::exists(busybox)) {
    throw std::runtime_error("the busybox root needs " + busybox.string() +
                             " (apt-get install busybox-static)");
  }
  copy_into(path_, busybox);
  const fs::path inside = fs::canonical(busybox.parent_path()) / busybox.filename();
  for (const char* applet : {"sh", "uname", "cat", "mkdir", "chmod", "mv", "rm", "setsid"}) {
    fs::create_symlink(inside, same_place(path_, fs::path("/bin") / applet));
  }
  add_script("/bin/bash", "#!/bin/sh\nexec /bin/sh \"$@\"\n");
}

minimal_root::~minimal_root() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

fs::path minimal_root::outside(const fs::path& inside) const {
  return path_ / inside.relative_path();
}

void minimal_root::add_program(const fs::path& program) {
  copy_into(path_, program);
  for (const auto& file : loaded_files(program)) copy_into(path_, file);
}

void minimal_root::add_file(const fs::path& file) {
  fs::create_directories(outside(file).parent_path());
  fs::copy_file(file, outside(file), fs::copy_options::overwrite_existing);
}

void minimal_root::add_script(const fs::path& inside, const std::string& text) {
  fs::create_directories(outside(inside).parent_path());
  std::ofstream(outside(inside)) << text;
  fs::permissions(outside(inside), fs::perms::owner_all | fs::perms::group_read |
                                       fs::perms::group_exec | fs::perms::others_read |
                                       fs::perms::others_exec);
}

ssh_identity ssh_identity::generate(const fs::path& dir, const std::string& name) {
  ssh_identity id{dir / name, dir / (name + ".pub")};
  fs::remove(id.private_key);
  fs::remove(id.public_key);
  run_checked({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rbee-test", "-f",
               id.private_key.string()});
  return id;
}

std::string ssh_test_host::unavailable_reason() {
  if (geteuid() != 0) return "test hosts need root (network namespaces and sshd)";
  for (const char* tool : {"/usr/sbin/sshd", "/usr/sbin/ip", "/usr/bin/ssh", "/usr/bin/ssh-keygen"})
    if (access(tool, X_OK) != 0) return std::string("test hosts need ") + tool;
  return {};
}

void remove_stale_test_hosts() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(owners_dir, ec)) {
    std::ifstream in(entry.path());
    pid_t owner = 0;
    in >> owner;
    if (!pid_alive(owner)) delete_namespace(std::stoi(entry.path().filename().string()));
  }
  // Minimal roots are named <name>-<owner pid>.
  for (const auto& entry : fs::directory_iterator(roots_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string owner = name.substr(name.rfind('-') + 1);
    if (owner.empty() || owner.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!pid_alive(std::stoi(owner))) fs::remove_all(entry.path(), ec);
  }
}

ssh_test_host::ssh_test_host(std::string name, const fs::path& work_dir,
                             const ssh_identity& authorized, const minimal_root* root)
    : name_(std::move(name)), work_dir_(work_dir) {
  fs::create_directories(work_dir_);
  fs::create_directories(owners_dir);
  // `ip netns add` fails when the name exists, which makes picking a free index atomic
  // even with test binaries running in parallel.
  for (int i = first_index; i <= last_index && index_ == 0; ++i)
    if (run({"/usr/sbin/ip", "netns", "add", netns_name(i)}) == 0) index_ = i;
  if (index_ == 0) throw std::runtime_error("no free test network namespace index");
  netns_ = netns_name(index_);
  std::ofstream(owners_dir / std::to_string(index_)) << getpid() << "\n";

  const std::string idx = std::to_string(index_);
  const std::string host_if = "rbv" + idx + "h", node_if = "rbv" + idx + "n";
  run_checked({"/usr/sbin/ip", "link", "add", host_if, "type", "veth", "peer", "name", node_if});
  run_checked({"/usr/sbin/ip", "link", "set", node_if, "netns", netns_});
  run_checked({"/usr/sbin/ip", "addr", "add", peer_address() + "/24", "dev", host_if});
  run_checked({"/usr/sbin/ip", "link", "set", host_if, "up"});
  exec({"/usr/sbin/ip", "link", "set", "lo", "up"});
  if (exec({"/usr/sbin/ip", "addr", "add", address() + "/24", "dev", node_if}) != 0 ||
      exec({"/usr/sbin/ip", "link", "set", node_if, "up"}) != 0)
    throw std::runtime_error("cannot configure " + node_if + " in " + netns_);

  // sshd refuses to start without its privilege separation directory.
  fs::create_directories("/run/sshd");
  const fs::path host_key = work_dir_ / "ssh_host_ed25519_key";
  fs::remove(host_key);
  run_checked({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key.string()});
  fs::copy_file(authorized.public_key, work_dir_ / "authorized_keys",
                fs::copy_options::overwrite_existing);
  const fs::path config = work_dir_ / "sshd_config";
  std::ofstream(config) << "Port 22\n"
                        << "ListenAddress " << address() << "\n"
                        << "HostKey " << host_key.string() << "\n"
                        << "AuthorizedKeysFile " << (work_dir_ / "authorized_keys").string() << "\n"
                        << "PidFile " << (work_dir_ / "sshd.pid").string() << "\n"
                        << "PermitRootLogin prohibit-password\n"
                        << "PasswordAuthentication no\n"
                        << "KbdInteractiveAuthentication no\n"
                        << "UsePAM no\n"
                        << "StrictModes no\n"
                        << "AcceptEnv RBEE_*\n"
                        << "Subsystem sftp /usr/lib/openssh/sftp-server\n";
  if (root)
    std::ofstream(config, std::ios::app) << "ChrootDirectory " << root->path().string() << "\n";

  common::process_spec spec;
  spec.executable = "/usr/sbin/ip";
  spec.args = {"netns", "exec", netns_, "/usr/sbin/sshd", "-D", "-e", "-f", config.string()};
  if (root) {
    // `ip netns exec` runs in a mount namespace of its own (a slave of this one): the mounts
    // made there never show in this machine's mount table, and end with the host's processes.
    spec.args = {"netns",
                 "exec",
                 netns_,
                 "/bin/sh",
                 "-c",
                 "mount --rbind /dev \"$1/dev\" && mount -t proc proc \"$1/proc\" && "
                 "exec /usr/sbin/sshd -D -e -f \"$2\"",
                 "sh",
                 root->path().string(),
                 config.string()};
  }
  spec.log_path = (work_dir_ / "sshd.log").string();
  spec.kill_with_parent = true;
  sshd_ = common::child_process::spawn(spec);

  // sshd is ready when its port accepts connections inside the namespace.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (exec({"/usr/bin/bash", "-c", "exec 3<>/dev/tcp/" + address() + "/22"}) != 0) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("sshd did not start in " + netns_ + "; see " + spec.log_path);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

ssh_test_host::~ssh_test_host() {
  stop_sshd();
  // Whatever was started over ssh inside the namespace (hives, workers) goes with it.
  run({"/usr/sbin/ip", "netns", "pids", netns_}, (work_dir_ / "netns-pids").string());
  std::ifstream pids(work_dir_ / "netns-pids");
  for (pid_t pid; pids >> pid;) kill(pid, SIGKILL);
  delete_namespace(index_);
}

std::string ssh_test_host::address() const {
  return "10.200." + std::to_string(index_) + ".2";
}
std::string ssh_test_host::peer_address() const {
  return "10.200." + std::to_string(index_) + ".1";
}

int ssh_test_host::exec(const std::vector<std::string>& argv) const {
  std::vector<std::string> full = {"/usr/sbin/ip", "netns", "exec", netns_};
  full.insert(full.end(), argv.begin(), argv.end());
  return run(full);
}

void ssh_test_host::stop_sshd() {
  if (!sshd_) return;
  sshd_->stop(std::chrono::seconds(5));
  sshd_.reset();
}

}  // namespace rbee::e2e
