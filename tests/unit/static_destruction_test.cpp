// Defects that only show at process exit, checked by running a small program
// (tests/regress/<name>.cpp) as a child process and looking at how it ended.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>

extern char** environ;

namespace emissions {
namespace {

using namespace std::chrono_literals;

struct ChildExit {
  bool finished = false;  // false: still running at the deadline (then killed)
  int status = 0;         // waitpid's status when finished
};

// Runs `program` with no arguments and waits for it until `timeout` passes, then kills it.
ChildExit run_child(const char* program, std::chrono::milliseconds timeout) {
  pid_t pid = 0;
  char* argv[] = {const_cast<char*>(program), nullptr};
  const int spawned = posix_spawn(&pid, program, nullptr, nullptr, argv, environ);
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn(" << program << "): " << std::strerror(spawned);
    return {};
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ChildExit out;
  for (;;) {
    const pid_t done = waitpid(pid, &out.status, WNOHANG);
    if (done == pid) {
      out.finished = true;
      return out;
    }
    if (done < 0 && errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << std::strerror(errno);
      return out;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      int ignored = 0;
      while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
      }
      return out;
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::string describe(const ChildExit& exit) {
  if (!exit.finished) return "still running at the deadline (killed)";
  if (WIFSIGNALED(exit.status)) {
    return "killed by signal " + std::to_string(WTERMSIG(exit.status)) + " (" +
           strsignal(WTERMSIG(exit.status)) + ")";
  }
  if (WIFEXITED(exit.status)) return "exit status " + std::to_string(WEXITSTATUS(exit.status));
  return "waitpid status " + std::to_string(exit.status);
}

// An Emitter at namespace scope, destroyed during static destruction with events still
// queued and telemetry handlers attached: its destructor delivers, drops and reports
// [emissions, adapter, success] and [emissions, event, dropped]. The library's telemetry
// probes and other process-wide objects must still be alive then.
TEST(StaticDestructionTest, EmitterAtNamespaceScopeShutsDownCleanlyAtExit) {
  const ChildExit exit = run_child(EMISSIONS_REGRESS_STATIC_EMITTER, 60s);
  ASSERT_TRUE(exit.finished) << describe(exit);
  ASSERT_TRUE(WIFEXITED(exit.status)) << describe(exit);
  EXPECT_EQ(WEXITSTATUS(exit.status), 0) << describe(exit);
}

}  // namespace
}  // namespace emissions
