#include "queen/ssh.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/secrets.h"

namespace rbee::queen {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::vector<std::string> evil_hosts = {"x;touch /tmp/pwned",
                                             "$(touch /tmp/pwned)",
                                             "`touch /tmp/pwned`",
                                             "-oProxyCommand=touch /tmp/pwned",
                                             "a b",
                                             "host|id",
                                             "host&&id",
                                             "host\nid",
                                             "host'",
                                             "host\"",
                                             "",
                                             "h>o"};

TEST(SshValidation, RejectsShellMetacharactersAndOptions) {
  for (const auto& h : evil_hosts) EXPECT_FALSE(is_safe_ssh_host(h)) << h;
  for (const auto& h : {"node1", "node-1.lan", "10.0.0.5", "::1", "fe80::1", "my_host"}) {
    EXPECT_TRUE(is_safe_ssh_host(h)) << h;
  }
  EXPECT_FALSE(is_safe_ssh_user("-l"));
  EXPECT_FALSE(is_safe_ssh_user("root;id"));
  EXPECT_FALSE(is_safe_ssh_user("a b"));
  EXPECT_TRUE(is_safe_ssh_user("vince"));
  EXPECT_THROW(validate_ssh_target({"ok", 0, "u", ""}), std::invalid_argument);
  EXPECT_THROW(validate_ssh_target({"ok", 22, "u", "-oProxyCommand=x"}), std::invalid_argument);
}

// Records calls instead of running ssh.
struct recording_runner : ssh_runner {
  std::vector<ssh_result> results;  // returned in order (the last one repeats)
  std::vector<std::string> commands;
  ssh_result run(const ssh_target&, const std::string& command, const std::string&) override {
    commands.push_back(command);
    return results.empty() ? ssh_result{0, "", ""}
                           : results[std::min(commands.size(), results.size()) - 1];
  }
  ssh_result copy(const ssh_target&, const std::string&, const std::string&) override {
    return {0, "", ""};
  }
};

TEST(SshInjection, EvilHostNeverReachesTheRunner) {
  recording_runner runner;
  ssh_options o;
  for (const auto& h : evil_hosts) {
    EXPECT_THROW(run_ssh(runner, {h, 22, "u", ""}, o, "echo ok"), std::invalid_argument) << h;
  }
  EXPECT_TRUE(runner.commands.empty());
}

TEST(SshInjection, ArgvIsNeverInterpretedByALocalShell) {
  // Even when validation is bypassed, the host travels as one argv element: swap ssh for echo
  // and the metacharacters come back literally, with nothing executed.
  fs::path marker = fs::temp_directory_path() / ("rbee-pwned-" + common::random_token(6));
  ssh_options o;
  o.rbee_home = fs::temp_directory_path();
  openssh_runner runner(o, "/bin/echo");
  std::string host = "x;touch " + marker.string();
  auto result = runner.run({host, 22, "u", ""}, "true", "");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find(host), std::string::npos);
  EXPECT_FALSE(fs::exists(marker));
}

TEST(ShellQuote, RoundTripsThroughARealShell) {
  fs::path marker = fs::temp_directory_path() / ("rbee-pwned-" + common::random_token(6));
  std::vector<std::string> nasty = {"plain",
                                    "it's",
                                    "a b",
                                    "$(touch " + marker.string() + ")",
                                    "`touch " + marker.string() + "`",
                                    "x;touch " + marker.string(),
                                    "'\"'\"",
                                    "\\n\n",
                                    ""};
  for (const auto& s : nasty) {
    auto r = run_process({"/bin/sh", "-c", "printf %s " + shell_quote(s)}, "", 5s);
    EXPECT_EQ(r.exit_code, 0) << s;
    EXPECT_EQ(r.out, s);
  }
  auto joined = remote_command({"printf", "%s|%s", "a;b", "$(id)"});
  auto r = run_process({"/bin/sh", "-c", joined}, "", 5s);
  EXPECT_EQ(r.out, "a;b|$(id)");
  EXPECT_FALSE(fs::exists(marker));
}

TEST(SshArgv, HasTheSafetyOptionsAndEndsOptionsBeforeTheHost) {
  ssh_options o;
  o.rbee_home = "/home/u/.rbee";
  o.connect_timeout_s = 7;
  auto argv = ssh_argv({"node1", 2222, "vince", "/k/id_ed25519"}, o, "echo hi");
  auto has = [&](const std::string& s) {
    return std::find(argv.begin(), argv.end(), s) != argv.end();
  };
  EXPECT_EQ(argv.front(), "ssh");
  EXPECT_TRUE(has("BatchMode=yes"));
  EXPECT_TRUE(has("ConnectTimeout=7"));
  EXPECT_TRUE(has("StrictHostKeyChecking=accept-new"));
  EXPECT_TRUE(has("UserKnownHostsFile=/home/u/.rbee/known_hosts"));
  EXPECT_TRUE(has("ControlMaster=auto"));
  EXPECT_TRUE(has("2222"));
  EXPECT_TRUE(has("/k/id_ed25519"));
  ASSERT_GE(argv.size(), 3u);
  EXPECT_EQ(argv[argv.size() - 3], "--");
  EXPECT_EQ(argv[argv.size() - 2], "node1");
  EXPECT_EQ(argv.back(), "echo hi");
  // Closing the multiplexer uses the same ControlPath and ends with the host (no command).
  auto close = ssh_exit_master_argv({"node1", 2222, "vince", ""}, o);
  auto control_path = std::find_if(
      argv.begin(), argv.end(), [](const std::string& a) { return a.starts_with("ControlPath="); });
  ASSERT_NE(control_path, argv.end());
  EXPECT_NE(std::find(close.begin(), close.end(), *control_path), close.end());
  auto o_flag = std::find(close.begin(), close.end(), "-O");
  ASSERT_NE(o_flag, close.end());
  EXPECT_EQ(*(o_flag + 1), "exit");
  EXPECT_EQ(close[close.size() - 2], "--");
  EXPECT_EQ(close.back(), "node1");
}

TEST(InstallPath, OnlyAbsoluteSafePathsAreAccepted) {
  for (std::string_view ok :
       {"/opt/rbee", "/home/vince/.local/rbee", "/srv/rbee-1.2_x+y@z", "/", "/opt/rbee/"}) {
    EXPECT_NO_THROW(validate_install_path(ok)) << ok;
  }
  for (std::string_view bad : {"/x$(touch /tmp/p)",
                               "/x`id`",
                               "/a b",
                               "/a;id",
                               "/a|id",
                               "/a&id",
                               "/a'b",
                               "/a\"b",
                               "/a\\b",
                               "/a\nb",
                               "/a*",
                               "/~",
                               "relative",
                               "rbee/x",
                               "",
                               "-x",
                               "~/rbee",
                               "/a/../b",
                               "/..",
                               "/a/./b",
                               "/caf\xc3\xa9"}) {
    try {
      validate_install_path(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(std::string(e.what()).starts_with("install_path ")) << e.what();
    }
  }
  EXPECT_NO_THROW(validate_install_path("/" + std::string(1023, 'a')));
  EXPECT_THROW(validate_install_path("/" + std::string(1024, 'a')), std::invalid_argument);
}

TEST(SshCopy, ThePathReachesTheRemoteShellQuoted) {
  const fs::path dir = fs::temp_directory_path() / ("rbee-copy-" + common::random_token(6));
  fs::create_directories(dir);
  const fs::path marker = dir / "pwned";
  const std::string remote_path = (dir / "x").string() + "$(touch " + marker.string() + ")";
  fs::create_directories(fs::path(remote_path).parent_path());  // the literal name has '/'s
  // Run through a real shell, as the node's sshd would.
  const std::string data("binary\0bytes", 12);
  auto r = run_process({"/bin/sh", "-c", copy_command(remote_path)}, data, 5s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(marker));
  std::ifstream in(remote_path, std::ios::binary);
  std::string copied((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(copied, data);
  fs::remove_all(dir);
}

TEST(SshCopy, CopiesThroughSshWithTheFileOnStdin) {
  // A stand-in ssh that runs the remote command (its last argument) in a local shell.
  const fs::path dir = fs::temp_directory_path() / ("rbee-copy-" + common::random_token(6));
  fs::create_directories(dir);
  const fs::path fake_ssh = dir / "ssh";
  std::ofstream(fake_ssh) << "#!/bin/sh\nfor last; do :; done\nexec /bin/sh -c \"$last\"\n";
  fs::permissions(fake_ssh, fs::perms::owner_all);
  const fs::path local = dir / "rbee-hive";
  std::ofstream(local) << "the binary";
  const fs::path marker = dir / "pwned";
  const std::string remote_path = (dir / "y").string() + "$(touch " + marker.string() + ")";
  fs::create_directories(fs::path(remote_path).parent_path());

  ssh_options o;
  o.rbee_home = dir;
  openssh_runner runner(o, fake_ssh.string());
  auto r = runner.copy({"node1", 22, "u", ""}, local.string(), remote_path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(marker));
  std::ifstream in(remote_path);
  std::string copied((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(copied, "the binary");

  auto missing = runner.copy({"node1", 22, "u", ""}, (dir / "absent").string(), remote_path);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("cannot read"), std::string::npos) << missing.err;
  fs::remove_all(dir);
}

TEST(SshDiagnosis, MapsStderrSamplesToCauses) {
  ssh_target t{"10.0.0.9", 22, "vince", ""};
  struct sample {
    int code;
    std::string err;
    ssh_failure kind;
  };
  std::vector<sample> samples = {
      {255, "vince@10.0.0.9: Permission denied (publickey,password).\r\n", ssh_failure::auth},
      {255, "ssh: connect to host 10.0.0.9 port 22: Connection timed out\r\n",
       ssh_failure::timeout},
      {124, "", ssh_failure::timeout},
      {255, "ssh: connect to host 10.0.0.9 port 22: Connection refused\r\n",
       ssh_failure::unreachable},
      {255, "ssh: Could not resolve hostname nope: Name or service not known\r\n",
       ssh_failure::unreachable},
      {255,
       "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST "
       "IDENTIFICATION HAS CHANGED!     @\n...\nHost key verification failed.\r\n",
       ssh_failure::host_key_changed},
      {127, "bash: line 1: /opt/rbee/rbee-hive: No such file or directory\n",
       ssh_failure::command_not_found},
      {127, "sh: 1: rbee-hive: not found\n", ssh_failure::command_not_found},
      {1, "mkdir: cannot create directory '/root/x': Permission denied\n", ssh_failure::other},
      {2, "something else\n", ssh_failure::other},
  };
  for (const auto& s : samples) {
    auto d = diagnose_ssh({s.code, "", s.err}, t);
    EXPECT_EQ(d.kind, s.kind) << s.err;
    EXPECT_FALSE(d.message.empty());
  }
  auto auth = diagnose_ssh({255, "", "Permission denied (publickey)."}, t);
  EXPECT_NE(auth.message.find("SSH authentication failed: Permission denied"), std::string::npos);
  EXPECT_NE(auth.hint.find("chmod 600"), std::string::npos);
  auto timeout = diagnose_ssh({255, "", "Connection timed out"}, t);
  EXPECT_NE(timeout.message.find("10.0.0.9"), std::string::npos);
}

TEST(RunSsh, RetriesTransientFailuresWithBackoffThenGivesUp) {
  recording_runner runner;
  runner.results = {{255, "", "ssh: connect to host h port 22: Connection timed out"}};
  ssh_options o;
  o.attempts = 3;
  o.initial_backoff = 100ms;
  std::vector<std::chrono::milliseconds> sleeps;
  int retries = 0;
  try {
    run_ssh(
        runner, {"h", 22, "u", ""}, o, "echo ok", "", [&](int, const ssh_diagnosis&) { ++retries; },
        [&](std::chrono::milliseconds d) { sleeps.push_back(d); });
    FAIL() << "expected ssh_error";
  } catch (const ssh_error& e) {
    EXPECT_EQ(e.diagnosis().kind, ssh_failure::timeout);
    EXPECT_NE(std::string(e.what()).find("after 3 attempts"), std::string::npos);
  }
  EXPECT_EQ(runner.commands.size(), 3u);
  EXPECT_EQ(retries, 2);
  EXPECT_EQ(sleeps, (std::vector<std::chrono::milliseconds>{100ms, 200ms}));
}

TEST(RunSsh, AuthFailureIsNotRetriedAndSuccessAfterRetryReturns) {
  recording_runner auth;
  auth.results = {{255, "", "Permission denied (publickey)."}};
  ssh_options o;
  EXPECT_THROW(run_ssh(auth, {"h", 22, "u", ""}, o, "x", "", {}, [](auto) {}), ssh_error);
  EXPECT_EQ(auth.commands.size(), 1u);

  recording_runner flaky;
  flaky.results = {{255, "", "Connection refused"}, {0, "ok\n", ""}};
  auto r = run_ssh(flaky, {"h", 22, "u", ""}, o, "x", "", {}, [](auto) {});
  EXPECT_EQ(r.out, "ok\n");
  EXPECT_EQ(flaky.commands.size(), 2u);
}

TEST(RunProcess, CapturesOutputFeedsStdinAndTimesOut) {
  auto r = run_process({"/bin/sh", "-c", "cat; echo err >&2; exit 3"}, "secret", 5s);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "secret");
  EXPECT_EQ(r.err, "err\n");
  auto slow = run_process({"/bin/sleep", "10"}, "", 200ms);
  EXPECT_EQ(slow.exit_code, 124);
  auto missing = run_process({"/nonexistent/binary"}, "", 1s);
  EXPECT_EQ(missing.exit_code, 127);

  const fs::path input = fs::temp_directory_path() / ("rbee-stdin-" + common::random_token(6));
  std::ofstream(input) << "from a file";
  auto from_file = run_process_from_file({"/bin/cat"}, input, 5s);
  EXPECT_EQ(from_file.exit_code, 0);
  EXPECT_EQ(from_file.out, "from a file");
  fs::remove(input);
  auto slow_file = run_process_from_file({"/bin/sleep", "10"}, "/dev/null", 200ms);
  EXPECT_EQ(slow_file.exit_code, 124);
}

}  // namespace
}  // namespace rbee::queen
