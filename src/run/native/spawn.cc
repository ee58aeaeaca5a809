// blspawn: starts a helper with posix_spawn and reports its exit through a
// pidfd, for src/run/start.ts.  No policy lives here.
//
// Why: child_process.spawn forks (libuv uses fork(), not vfork, on Linux), and
// a fork copies the page tables of the whole daemon on the event loop's
// thread: /bin/true took 3-4 ms to start from a Node.js process of 50 MB and
// 5.5-8 ms from one of 175 MB on the 2-core bench machine.  glibc's
// posix_spawn starts the child with CLONE_VM|CLONE_VFORK: nothing is copied,
// and the cost does not grow with the daemon's size.  It runs in a thread of
// libuv's pool, so that the event loop does not wait for the child's exec
// either (45% of the loop's time while blocking 2,000 new addresses when it
// ran there).  Where nothing else is starting or running (an idle daemon's
// new block) spawnHere starts it on the calling thread instead: the loop
// then waits for the child's exec (0.1-0.5 ms) but no pool thread has to
// be woken first, which cost 0.15-0.28 ms of the time from a notification to
// the helper's first instruction (issue 19).
//
// The child is set up as libuv sets up a child_process.spawn child with
// `detached: true` and stdio ['ignore' | 'pipe', 'pipe', 'inherit']: a new
// session (so a process group of its own), every signal at its default
// action and none blocked, stdin /dev/null or one end of a socketpair,
// stdout one end of a socketpair, stderr the daemon's.
//
// Its exit: pidfd_open (Linux >= 5.3) gives a descriptor that becomes
// readable when the child exits; a uv_poll on it calls back on the event
// loop's thread, where waitid(P_PIDFD) reaps the child.  Nothing runs while
// the child runs.  libuv's own SIGCHLD handler waits only for the pids it
// started, so it never reaps one of these.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#if defined(__linux__)
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

namespace {

int pidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

// A started child: its pidfd, watched until the child has been reaped.
struct Watch {
  uv_poll_t poll;
  int pidfd;
  napi_env env;
  Napi::FunctionReference onExit;
};

void closed(uv_handle_t *handle) {
  Watch *watch = static_cast<Watch *>(handle->data);
  close(watch->pidfd);
  delete watch;
}

void exited(uv_poll_t *poll, int status, int events) {
  Watch *watch = static_cast<Watch *>(poll->data);
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r;
  do
    r = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(watch->pidfd), &info, WEXITED | WNOHANG);
  while (r == -1 && errno == EINTR);
  int err = r == -1 ? errno : 0;
  // readable only once the child has exited; a spurious wake-up waits on
  if (r == 0 && info.si_pid == 0) return;
  int code = -1, signal = 0;
  if (r == 0 && info.si_code == CLD_EXITED)
    code = info.si_status;
  else if (r == 0)
    signal = info.si_status;  // CLD_KILLED, CLD_DUMPED
  uv_poll_stop(poll);
  Napi::Env env(watch->env);
  Napi::HandleScope scope(env);
  Napi::FunctionReference onExit = std::move(watch->onExit);
  uv_close(reinterpret_cast<uv_handle_t *>(poll), closed);
  // (code, signal): code -1 when killed by a signal; not reaped (waitid failed): its errno, negated, as the signal
  onExit.MakeCallback(env.Global(), {Napi::Number::New(env, code), Napi::Number::New(env, r == 0 ? signal : -err)});
}

Napi::Value Throw(Napi::Env env, int err, const char *syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Whether this kernel (and the seccomp filter around the process) lets a pidfd be opened.
Napi::Value Available(const Napi::CallbackInfo &info) {
  int fd = pidfdOpen(getpid());
  if (fd >= 0) close(fd);
  return Napi::Boolean::New(info.Env(), fd >= 0);
}

// A child nobody will wait for: ended and reaped at once rather than left a zombie.
void endChild(pid_t pid) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) == -1 && errno == EINTR) {
  }
}

// A start in the thread pool: everything the thread reads is copied here first.
struct Start {
  uv_work_t work;
  std::string file;
  std::vector<std::string> args, envs;
  // the child's ends: its stdin (/dev/null or a socket) and its stdout
  int childIn, childOut;
  // the outcome: pid and pidfd, or the errno of `syscall`
  pid_t pid = -1;
  int pidfd = -1, err = 0;
  const char *syscall = "";
  napi_env env;
  Napi::FunctionReference onStart, onExit;
};

std::vector<char *> pointers(std::vector<std::string> &strings) {
  std::vector<char *> p;
  for (auto &s : strings) p.push_back(&s[0]);
  p.push_back(nullptr);
  return p;
}

// posix_spawn and pidfd_open, in a thread of libuv's pool (startChildWork: the event loop does not wait while
// posix_spawn waits for the child's exec) or on the event loop's thread (spawnHere); touches nothing of JavaScript.
void startChild(Start *start) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  // dup2 onto its own number clears close-on-exec (glibc >= 2.29)
  posix_spawn_file_actions_adddup2(&actions, start->childIn, 0);
  posix_spawn_file_actions_adddup2(&actions, start->childOut, 1);
  // stderr the daemon's even where it is close-on-exec (as libuv's "inherit"); left as it is when closed
  if (fcntl(2, F_GETFD) != -1) posix_spawn_file_actions_adddup2(&actions, 2, 2);
  sigset_t none, all;
  sigemptyset(&none);
  // Every signal, glibc's own two (32, 33) too: sigfillset leaves them out, and posix_spawn then
  // sets them to SIG_IGN in the child, which exec keeps; libuv's children have them at their default.
  memset(&all, 0xff, sizeof all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char *> argv = pointers(start->args), envp = pointers(start->envs);
  start->err = posix_spawnp(&start->pid, start->file.c_str(), &actions, &attr, argv.data(), envp.data());
  start->syscall = "spawn";
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (start->err != 0) return;
  start->pidfd = pidfdOpen(start->pid);
  if (start->pidfd != -1) return;
  // (EMFILE, ...) no pidfd to wait with
  start->err = errno;
  start->syscall = "pidfd_open";
  endChild(start->pid);
}

void startChildWork(uv_work_t *work) {
  startChild(static_cast<Start *>(work->data));
}

// On the event loop's thread, once the child was started (or not): the child's ends closed and its exit watched
// (onExit then called once it has been reaped); an error left in start->err and start->syscall.
void watchExit(Start *start) {
  close(start->childIn);
  close(start->childOut);
  if (start->err == 0) {
    uv_loop_t *loop;
    napi_get_uv_event_loop(start->env, &loop);
    Watch *watch = new Watch();
    watch->pidfd = start->pidfd;
    watch->env = start->env;
    watch->onExit = std::move(start->onExit);
    watch->poll.data = watch;
    int r = uv_poll_init(loop, &watch->poll, start->pidfd);
    if (r == 0) {
      r = uv_poll_start(&watch->poll, UV_READABLE, exited);
      if (r != 0) uv_close(reinterpret_cast<uv_handle_t *>(&watch->poll), closed);
    } else {
      close(start->pidfd);
      delete watch;
    }
    if (r != 0) {
      // not seen for a fresh descriptor
      endChild(start->pid);
      start->err = -r;
      start->syscall = "uv_poll_start";
    }
  }
}

// Back on the event loop's thread after the pool's start: onStart(0, pid) or onStart(-errno, 0, syscall).
void started(uv_work_t *work, int status) {
  Start *start = static_cast<Start *>(work->data);
  Napi::Env env(start->env);
  Napi::HandleScope scope(env);
  watchExit(start);
  Napi::FunctionReference onStart = std::move(start->onStart);
  int err = start->err;
  pid_t pid = start->pid;
  const char *syscall = start->syscall;
  delete start;
  onStart.MakeCallback(env.Global(), {Napi::Number::New(env, -err), Napi::Number::New(env, err == 0 ? pid : 0),
                                      Napi::String::New(env, syscall)});
}

// What both spawns take: (file, argv, env | null, stdinPipe, ..., onExit) as a Start with its socket pairs, the
// parent's ends in `parentOut` and `parentIn` (-1 without a pipe); nullptr with a JavaScript exception pending.
// `file` is looked up in PATH when it holds no slash (execvp's rule, as libuv's).  env null: the process's
// environment as it is now.
Start *prepare(const Napi::CallbackInfo &info, const Napi::Function &onExit, int *parentOut, int *parentIn) {
  Napi::Env env = info.Env();
  Start *start = new Start();
  start->file = info[0].As<Napi::String>();
  Napi::Array argArray = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < argArray.Length(); i++) start->args.push_back(argArray.Get(i).As<Napi::String>());
  if (info[2].IsNull() || info[2].IsUndefined()) {
    // a copy: setenv on this thread may move environ while the pool's thread reads it
    for (char **e = environ; *e != nullptr; e++) start->envs.push_back(*e);
  } else {
    Napi::Array envArray = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < envArray.Length(); i++) start->envs.push_back(envArray.Get(i).As<Napi::String>());
  }
  bool stdinPipe = info[3].As<Napi::Boolean>();

  int out[2], in[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == -1) {
    delete start;
    Throw(env, errno, "socketpair");
    return nullptr;
  }
  if (stdinPipe ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) == -1
                : (in[1] = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1) {
    int err = errno;
    close(out[0]);
    close(out[1]);
    delete start;
    Throw(env, err, stdinPipe ? "socketpair" : "open");
    return nullptr;
  }
  start->childIn = in[1];
  start->childOut = out[1];
  *parentOut = out[0];
  *parentIn = in[0];
  start->env = env;
  start->onExit = Napi::Persistent(onExit);
  return start;
}

// spawn(file, argv, env | null, stdinPipe, onStart(errno, pid, syscall), onExit(code, signal)) -> [stdout fd, stdin fd or -1]
// The socket pairs are made at once, the child in the thread pool.
Napi::Value Spawn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int out, in;
  Start *start = prepare(info, info[5].As<Napi::Function>(), &out, &in);
  if (start == nullptr) return env.Undefined();
  start->onStart = Napi::Persistent(info[4].As<Napi::Function>());
  start->work.data = start;
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int r = uv_queue_work(loop, &start->work, startChildWork, started);
  if (r != 0) {
    close(out);
    if (in != -1) close(in);
    close(start->childOut);
    close(start->childIn);
    delete start;
    return Throw(env, -r, "uv_queue_work");
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, out));
  result.Set(1u, Napi::Number::New(env, in));
  return result;
}

// spawnHere(file, argv, env | null, stdinPipe, onExit(code, signal)) -> [stdout fd, stdin fd or -1, errno, pid, syscall]
// As spawn, the child started on this thread before it returns: errno 0 and its pid, or -errno and the syscall
// that failed (the descriptors are then still the caller's to close).
Napi::Value SpawnHere(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int out, in;
  Start *start = prepare(info, info[4].As<Napi::Function>(), &out, &in);
  if (start == nullptr) return env.Undefined();
  startChild(start);
  watchExit(start);
  Napi::Array result = Napi::Array::New(env, 5);
  result.Set(0u, Napi::Number::New(env, out));
  result.Set(1u, Napi::Number::New(env, in));
  result.Set(2u, Napi::Number::New(env, -start->err));
  result.Set(3u, Napi::Number::New(env, start->err == 0 ? start->pid : 0));
  result.Set(4u, Napi::String::New(env, start->syscall));
  delete start;
  return result;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("available", Napi::Function::New(env, Available));
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("spawnHere", Napi::Function::New(env, SpawnHere));
  return exports;
}

#else

// Elsewhere (the BSDs) child_process.spawn starts the helpers.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("available", Napi::Function::New(env, [](const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), false); }));
  return exports;
}

#endif

NODE_API_MODULE(blspawn, Init)
