// blsock: the socket calls blocklistd needs and Node.js does not offer.
//
// Unix datagram sockets that pass a descriptor (SCM_RIGHTS) and carry the
// sender's kernel credentials, and the facts of a received descriptor
// (SO_TYPE, getsockname, getpeername, network namespace).  No policy lives here:
// what a datagram means is decided in TypeScript (src/protocol/receive.ts).
// A thread receives, copies each datagram and the facts of its descriptor
// into a record and hands the descriptor to the closer thread: received
// descriptors never reach JavaScript, which reads the records where the thread wrote them.

#include <napi.h>
#include <uv.h>

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#ifdef __FreeBSD__
#include <sys/ucred.h>
#endif
#include <sys/syscall.h>
#include <netinet/in.h>
#if defined(__linux__)
#include <linux/sockios.h>
#include <sys/prctl.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

namespace {

constexpr size_t kPayloadMax = 512;  // upstream's receive buffer
constexpr size_t kNamedOffset = 16;  // where the message carries a sockaddr (protocol.md §3)
constexpr int kCmsgSlots = 4;        // control messages described per record
constexpr int kMaxFds = 253;         // Linux SCM_MAX_FD: receive them all, close them all
constexpr int kReceiverNice = -10;   // the receiving thread's priority, as root

#if defined(__linux__)
// The kernel attaches the sender's pid and real uid/gid to every datagram.
constexpr int kCredLevel = SOL_SOCKET;
constexpr int kCredOption = SO_PASSCRED;
constexpr int kCredType = SCM_CREDENTIALS;
constexpr size_t kCredSize = sizeof(struct ucred);
constexpr size_t kCredSpace = CMSG_SPACE(sizeof(struct ucred));
#elif defined(LOCAL_CREDS)
// The BSDs: struct sockcred with the effective ids, as upstream reads them.
constexpr int kCredLevel = 0;  // SOL_LOCAL
constexpr int kCredOption = LOCAL_CREDS;
constexpr int kCredType = SCM_CREDS;
constexpr size_t kCredSize = SOCKCREDSIZE(0);
#ifdef CMGROUP_MAX
constexpr size_t kCredSpace = CMSG_SPACE(SOCKCREDSIZE(CMGROUP_MAX));  // FreeBSD
#else
constexpr size_t kCredSpace = CMSG_SPACE(SOCKCREDSIZE(NGROUPS_MAX));  // NetBSD
#endif
#else
#error "blsock: this system has no way to receive a sender's credentials"
#endif

#ifdef MSG_CMSG_CLOEXEC
// A helper spawned while a descriptor is open must not inherit it (G25).
constexpr int kRecvFlags = MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC;
#else
constexpr int kRecvFlags = MSG_DONTWAIT | MSG_TRUNC;
#endif

// A socket address as TypeScript needs it, every field a 32-bit word that
// it reads where it lies (no sockaddr parsing per notification in
// JavaScript, whose fixed cost per record is what limits the receive path).
// Facts only: whether the length makes it a complete IPv4 or IPv6 address
// is decided in TypeScript, which has the length beside it.
struct Endpoint {
  int32_t family;     // sa_family as the platform numbers it; 0 for fewer than 2 bytes
  uint32_t port;      // host order; AF_INET and AF_INET6 only, else 0
  uint32_t words[4];  // the address as 32-bit words, each the value of 4 bytes in network order (IPv4: words[0])
};

// Decodes the `len` bytes of sockaddr at `sa` into `e`; AF_INET and
// AF_INET6 fields only as far as `len` holds them.
void DecodeEndpoint(const uint8_t* sa, size_t len, Endpoint* e) {
  memset(e, 0, sizeof(*e));
  if (len < offsetof(sockaddr, sa_family) + sizeof(sa_family_t)) return;
  sa_family_t family;
  memcpy(&family, sa + offsetof(sockaddr, sa_family), sizeof(family));
  e->family = family;
  uint16_t port;
  if (family == AF_INET && len >= sizeof(sockaddr_in)) {
    memcpy(&port, sa + offsetof(sockaddr_in, sin_port), sizeof(port));
    e->port = ntohs(port);
    uint32_t word;
    memcpy(&word, sa + offsetof(sockaddr_in, sin_addr), sizeof(word));
    e->words[0] = ntohl(word);
  } else if (family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    memcpy(&port, sa + offsetof(sockaddr_in6, sin6_port), sizeof(port));
    e->port = ntohs(port);
    for (int k = 0; k < 4; k++) {
      uint32_t word;
      memcpy(&word, sa + offsetof(sockaddr_in6, sin6_addr) + 4 * k, sizeof(word));
      e->words[k] = ntohl(word);
    }
  }
}

// One received datagram, in the ring (a buffer of JavaScript's).  TypeScript reads it with
// the offsets exported as `layout`, so the two cannot drift apart.
struct Record {
  int32_t recvErrno;              // the receive failed: nothing else is valid
  uint32_t length;                // real datagram length, may exceed kPayloadMax
  int32_t flags;                  // msg_flags & (MSG_TRUNC | MSG_CTRUNC)
  int32_t cmsgCount;              // control messages received
  int32_t cmsgLevel[kCmsgSlots];  // the first kCmsgSlots of them
  int32_t cmsgType[kCmsgSlots];
  uint32_t cmsgLen[kCmsgSlots];
  int32_t hasCred;
  int32_t pid;
  uint32_t uid;
  uint32_t gid;
  int32_t fdCount;     // descriptors received, all handed to the closer
  int32_t typeErrno;   // facts of the first descriptor: SO_TYPE
  int32_t type;
  int32_t localErrno;  // getsockname
  uint32_t localLen;
  int32_t peerErrno;   // getpeername
  uint32_t peerLen;
  int32_t netnsErrno;  // NetnsOf
  uint8_t netns[8];
  Endpoint local;      // getsockname, decoded
  Endpoint peer;       // getpeername, decoded
  Endpoint named;      // the sockaddr the message itself carries (protocol.md §3: at offset 16), decoded
  uint8_t payload[kPayloadMax];
};
static_assert(std::is_standard_layout<Record>::value, "Record layout");
static_assert(sizeof(Record) == 704, "Record size");
static_assert(offsetof(Record, payload) % 4 == 0, "TypeScript reads the header as 32-bit words");
static_assert(sizeof(Record) % alignof(Record) == 0, "Record stride");

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  std::string message = std::string(syscall) + " failed for '" + path + "' (" + strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.Set("path", Napi::String::New(env, path));
  return e;
}

// Fills `sun` from `path`; returns 0 or the errno a too long path earns.
// With `length`, a path starting with '@' names a Linux abstract socket
// (systemd's NOTIFY_SOCKET may be one) and *length gets the address length.
int MakeUnixAddress(const std::string& path, sockaddr_un* sun, socklen_t* length = nullptr) {
  memset(sun, 0, sizeof(*sun));
  sun->sun_family = AF_UNIX;
  if (path.empty() || path.find('\0') != std::string::npos) return EINVAL;
  if (path.size() >= sizeof(sun->sun_path)) return ENAMETOOLONG;
  memcpy(sun->sun_path, path.data(), path.size());
  if (length != nullptr) *length = sizeof(*sun);
#if defined(__linux__)
  if (length != nullptr && path[0] == '@') {
    sun->sun_path[0] = '\0';
    *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  }
#endif
  return 0;
}

int SocketOption(int fd, int option, int32_t* value) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, option, &v, &len) == -1) return errno;
  *value = v;
  return 0;
}

int SocketName(int (*call)(int, sockaddr*, socklen_t*), int fd, Endpoint* out, uint32_t* outLen) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (call(fd, reinterpret_cast<sockaddr*>(&ss), &len) == -1) return errno;
  *outLen = len;
  DecodeEndpoint(reinterpret_cast<const uint8_t*>(&ss), std::min<size_t>(len, sizeof(ss)), out);
  return 0;
}

// Gives the socket file just bound at `path` group `gid` (unless -1) and
// `mode`, never through a symlink: whoever can write its directory (a
// chroot's var/run listed with -P) could otherwise swap one in between
// bind() and chmod() and have root change the mode of any file.  Only a
// socket is changed; a swapped-in file of any other kind is an error.  The
// process umask is not used: it would reach files other threads create.
// Returns 0 or an errno (ELOOP for a symlink, ENOTSOCK for another file).
int SetSocketMode(const char* path, mode_t mode, gid_t gid) {
#if defined(O_PATH)
  // one inode for the check and the changes
  int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1) return errno;
  struct stat st;
  int err = fstat(fd, &st) == -1 ? errno : S_ISLNK(st.st_mode) ? ELOOP : !S_ISSOCK(st.st_mode) ? ENOTSOCK : 0;
  if (err == 0 && gid != static_cast<gid_t>(-1) && fchownat(fd, "", static_cast<uid_t>(-1), gid, AT_EMPTY_PATH) == -1) err = errno;
  if (err == 0) {
    // chmod of an O_PATH descriptor: fchmodat2 (Linux 6.6), else its /proc link, which names the inode itself
    int rc = -1;
#ifdef SYS_fchmodat2
    rc = static_cast<int>(syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH));
#endif
    if (rc == -1) {
      std::string link = "/proc/self/fd/" + std::to_string(fd);
      rc = chmod(link.c_str(), mode);
    }
    if (rc == -1) err = errno;
  }
  close(fd);
  return err;
#else
  // the BSDs change a symlink itself with AT_SYMLINK_NOFOLLOW (lchmod)
  struct stat st;
  if (lstat(path, &st) == -1) return errno;
  if (S_ISLNK(st.st_mode)) return ELOOP;
  if (!S_ISSOCK(st.st_mode)) return ENOTSOCK;
  if (gid != static_cast<gid_t>(-1) && fchownat(AT_FDCWD, path, static_cast<uid_t>(-1), gid, AT_SYMLINK_NOFOLLOW) == -1) return errno;
  return fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) == -1 ? errno : 0;
#endif
}

// The identity of the network namespace socket `fd` lives in, 8 bytes in
// `out`: SO_NETNS_COOKIE (Linux 5.14), else the inode of the namespace
// SIOCGSKNS opens (Linux 4.9; needs CAP_NET_ADMIN).  The two never mix in
// one process: the first answer decides which is used.  Returns 0 or an
// errno (ENOPROTOOPT where the system has neither, and off Linux).
int NetnsOf(int fd, uint8_t* out) {
#if defined(__linux__)
  static std::atomic<bool> noCookie{false};
#ifdef SO_NETNS_COOKIE
  if (!noCookie.load(std::memory_order_relaxed)) {
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) == 0) {
      memcpy(out, &cookie, sizeof(cookie));
      return 0;
    }
    if (errno != ENOPROTOOPT) return errno;
    noCookie.store(true, std::memory_order_relaxed);
  }
#endif
#ifdef SIOCGSKNS
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns == -1) return errno == ENOTTY ? ENOPROTOOPT : errno;
  fcntl(ns, F_SETFD, FD_CLOEXEC);
  struct stat st;
  int err = fstat(ns, &st) == -1 ? errno : 0;
  close(ns);
  if (err == 0) {
    uint64_t inode = st.st_ino;
    memcpy(out, &inode, sizeof(inode));
  }
  return err;
#else
  return ENOPROTOOPT;
#endif
#else
  (void)fd;
  (void)out;
  return ENOPROTOOPT;
#endif
}

void ReadFacts(int fd, Record* r) {
  r->typeErrno = SocketOption(fd, SO_TYPE, &r->type);
  r->localErrno = SocketName(getsockname, fd, &r->local, &r->localLen);
  r->peerErrno = SocketName(getpeername, fd, &r->peer, &r->peerLen);
  r->netnsErrno = NetnsOf(fd, r->netns);
}

// Whether the facts in `r` (ReadFacts) show a socket whose close never waits: see Passed.
bool NeverLingers(const Record& r) {
  return r.typeErrno == 0 && r.type == SOCK_DGRAM && r.localErrno == 0 && (r.local.family == AF_INET || r.local.family == AF_INET6);
}

void CopyCred(const unsigned char* data, Record* r) {
#if defined(__linux__)
  struct ucred c;
  memcpy(&c, data, sizeof(c));
  r->pid = c.pid;
  r->uid = c.uid;
  r->gid = c.gid;
#else
  struct sockcred c;
  memcpy(&c, data, sizeof(c));
#ifdef __NetBSD__
  r->pid = c.sc_pid;
#endif
  r->uid = c.sc_euid;
  r->gid = c.sc_egid;
#endif
  r->hasCred = 1;
}

// Whether closing `fd` may wait: a socket with SO_LINGER and a linger time
// blocks close() of its last reference until its unsent data is gone or
// the time is up, and a local client can arrange exactly that (a loopback
// connection whose peer does not read).  The option is only read: the
// socket is the server's own connection.
bool Lingers(int fd) {
  struct linger l;
  socklen_t len = sizeof(l);
  return getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 && l.l_onoff != 0 && l.l_linger > 0;
}

// A received descriptor on its way to the closer.  `mayLinger` false:
// its facts show a socket whose close never waits whatever its SO_LINGER
// (Lingers() is not asked): a datagram socket of AF_INET or AF_INET6,
// whose protocols (UDP, UDP-Lite, ICMP echo, L2TP) close without the
// linger time that only connection protocols (TCP, SCTP) wait for.  One
// system call fewer per UDP notification (0.3-0.5 us of the closer's CPU).
struct Passed {
  int fd;
  bool mayLinger;
};

// Closes `fds`, some lingering, without waiting for their linger time.
// On Linux a task that exits never lingers (inet_release): a child that
// shares nothing but a copy of the descriptor table holds them while this
// thread closes its own (then never the last reference) and drops the
// last ones as it is killed.  Elsewhere, or when no child can be made,
// they go to a thread of their own, which may block for their linger time.
void CloseLingering(std::vector<int>& fds) {
#if defined(__linux__) && defined(SYS_clone)
  // a fork without atfork handlers and without SIGCHLD (nothing to reap for libuv); the child only waits to
  // be killed, by this thread or, should the daemon die first, by the kernel
  pid_t parent = getpid();
  long child = syscall(SYS_clone, 0L, nullptr, nullptr, nullptr, nullptr);
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    for (;;) pause();
  }
  if (child > 0) {
    for (int fd : fds) close(fd);
    kill(static_cast<pid_t>(child), SIGKILL);
    int status;
    while (waitpid(static_cast<pid_t>(child), &status, __WCLONE) == -1 && errno == EINTR) {
    }
    fds.clear();
    return;
  }
#endif
  auto* batch = new std::vector<int>(std::move(fds));
  fds.clear();
  pthread_t thread;
  auto run = [](void* arg) -> void* {
    std::unique_ptr<std::vector<int>> own(static_cast<std::vector<int>*>(arg));
    for (int fd : *own) close(fd);
    return nullptr;
  };
  if (pthread_create(&thread, nullptr, run, batch) == 0) {
    pthread_detach(thread);
  } else {
    run(batch);  // no thread either: this one waits
  }
}

// Closes descriptors `first` to `last` (none for -1), every one of them
// received and not closed yet.  The kernel gives a batch of datagrams the
// lowest free numbers, which the closer has just freed: most batches are
// one run, closed by close_range(2) in one system call instead of one
// each.
void CloseRun(int first, int last) {
  if (first == -1) return;
#if defined(__linux__) && defined(SYS_close_range)
  if (last > first && syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  for (int fd = first; fd <= last; fd++) close(fd);
}

// Received descriptors are closed on a thread of their own, so that the
// event loop never waits for a close.  The thread closes in arrival order
// and is detached (its work may outlast exit handlers).  A lingering socket
// (Lingers) is closed without waiting (CloseLingering), or it would hold
// back every later one until the daemon ran out of descriptors.  Should a
// close block all the same (a client may set SO_LINGER through its own copy
// between the check and the close), descriptors left waiting for
// kStuckMs start another thread, up to kThreadsMax.  At most kQueueMax
// descriptors wait: beyond, the receiving thread waits for the closers, and
// the kernel's queue pushes back on the clients.
class Closer {
 public:
  static constexpr size_t kQueueMax = 16384;
  static constexpr int kThreadsMax = 32;
  static constexpr std::chrono::milliseconds kStuckMs{200};

  static Closer& Get() {
    static Closer* closer = new Closer();  // never destroyed: its threads may outlive exit handlers
    return *closer;
  }

  void Close(std::vector<Passed>& fds) {
    if (fds.empty()) return;
    if (threads_ == 0) {
      Finish(fds);
      return;
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      room_.wait(lock, [this] { return queue_.size() < kQueueMax; });
      queue_.insert(queue_.end(), fds.begin(), fds.end());
      auto now = std::chrono::steady_clock::now();
      if (idle_ == 0 && threads_ < kThreadsMax && now - lastTake_ > kStuckMs) {
        lastTake_ = now;  // one more thread per kStuckMs at most
        if (StartThread()) threads_++;
      }
    }
    fds.clear();
    ready_.notify_one();
  }

  // Descriptors found lingering so far.
  uint64_t Lingering() const { return lingering_.load(std::memory_order_relaxed); }

 private:
  Closer() {
    lastTake_ = std::chrono::steady_clock::now();
    threads_ = StartThread() ? 1 : 0;  // none: close inline
  }

  bool StartThread() {
    pthread_t thread;
    if (pthread_create(&thread, nullptr, Run, this) != 0) return false;
    pthread_detach(thread);
    return true;
  }

  // Closes `fds` in order, the lingering ones all at once after the others.
  void Finish(std::vector<Passed>& fds) {
    std::vector<int> lingering;
    int first = -1, last = -1;  // a run of consecutive descriptors, not closed yet
    for (const Passed& passed : fds) {
      if (passed.mayLinger && Lingers(passed.fd)) {
        lingering.push_back(passed.fd);
      } else if (first != -1 && passed.fd == last + 1) {
        last = passed.fd;
      } else {
        CloseRun(first, last);
        first = last = passed.fd;
      }
    }
    CloseRun(first, last);
    fds.clear();
    if (!lingering.empty()) {
      lingering_.fetch_add(lingering.size(), std::memory_order_relaxed);
      CloseLingering(lingering);
    }
  }

  static void* Run(void* arg) {
    Closer* self = static_cast<Closer*>(arg);
    std::vector<Passed> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(self->mutex_);
        self->idle_++;
        self->ready_.wait(lock, [self] { return !self->queue_.empty(); });
        self->idle_--;
        batch.swap(self->queue_);
        self->lastTake_ = std::chrono::steady_clock::now();
      }
      self->room_.notify_all();
      self->Finish(batch);
    }
    return nullptr;
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::vector<Passed> queue_;
  std::atomic<int> threads_{0};  // started; grows under mutex_
  int idle_ = 0;     // waiting for work
  std::chrono::steady_clock::time_point lastTake_;  // a thread last took the queue
  std::atomic<uint64_t> lingering_{0};
};

// Room for the control messages of one datagram: its credentials and every descriptor it may carry.
constexpr size_t kControlSpace = kCredSpace + CMSG_SPACE(sizeof(int) * kMaxFds);

// Fills `r` from the datagram of `got` bytes that `m` received into
// r->payload; its descriptors go to `received`.
void DecodeDatagram(msghdr& m, size_t got, Record* r, std::vector<Passed>& received) {
  memset(r, 0, offsetof(Record, payload));
  r->length = static_cast<uint32_t>(got);
  r->flags = m.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
  size_t kept = std::min<size_t>(got, kPayloadMax);
  DecodeEndpoint(r->payload + kNamedOffset, kept > kNamedOffset ? std::min(kept - kNamedOffset, sizeof(sockaddr_in6)) : 0, &r->named);

  const unsigned char* control = static_cast<const unsigned char*>(m.msg_control);
  const unsigned char* end = control + std::min<size_t>(m.msg_controllen, kControlSpace);
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_len < CMSG_LEN(0)) break;  // malformed: nothing after it can be trusted
    if (r->cmsgCount < kCmsgSlots) {
      r->cmsgLevel[r->cmsgCount] = c->cmsg_level;
      r->cmsgType[r->cmsgCount] = c->cmsg_type;
      r->cmsgLen[r->cmsgCount] = static_cast<uint32_t>(c->cmsg_len);
    }
    r->cmsgCount++;
    if (c->cmsg_level != SOL_SOCKET) continue;
    const unsigned char* data = CMSG_DATA(c);
    size_t bytes = std::min<size_t>(c->cmsg_len - CMSG_LEN(0), end > data ? end - data : 0);
    if (c->cmsg_type == SCM_RIGHTS) {
      // Exactly the descriptors carried, none past the data (G1).
      for (size_t k = 0; k < bytes / sizeof(int); k++) {
        int passed;
        memcpy(&passed, data + k * sizeof(int), sizeof(int));
        bool first = r->fdCount++ == 0;
        if (first) ReadFacts(passed, r);
        received.push_back({passed, !(first && NeverLingers(*r))});
      }
    } else if (c->cmsg_type == kCredType && bytes >= kCredSize) {
      CopyCred(data, r);
    }
  }
}

// Receives the datagrams queued on a socket, up to kBatchMax in one
// recvmmsg(2): a system call costs more than the work it does here (1.0 us
// for getppid(2) on a VM with page-table isolation), and a batch of n
// costs one where recvmsg(2) cost n + 1 (the last to find the queue empty).
class BatchReceiver {
 public:
  static constexpr size_t kBatchMax = 64;

  BatchReceiver() : headers_(kBatchMax), iov_(kBatchMax), control_(kBatchMax) {}

  // Receives up to `count` datagrams from `fd` into the records from `first` on;
  // their descriptors go to `received`.  Returns how many records it wrote, 0
  // when nothing was queued; a failed receive writes one record, the last,
  // with its errno and nothing else.
  size_t Receive(int fd, Record* first, size_t count, std::vector<Passed>& received) {
    count = std::min(count, kBatchMax);
    for (size_t k = 0; k < count; k++) {
      iov_[k] = {first[k].payload, kPayloadMax};
      msghdr& m = headers_[k].msg_hdr;
      memset(&m, 0, sizeof(m));
      m.msg_iov = &iov_[k];
      m.msg_iovlen = 1;
      m.msg_control = control_[k].bytes;
      m.msg_controllen = kControlSpace;
    }
    int got;
    do {
      got = recvmmsg(fd, headers_.data(), static_cast<unsigned>(count), kRecvFlags, nullptr);
    } while (got == -1 && errno == EINTR);
    if (got == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      memset(first, 0, offsetof(Record, payload));
      first->recvErrno = errno;
      return 1;
    }
    for (int k = 0; k < got; k++) DecodeDatagram(headers_[k].msg_hdr, headers_[k].msg_len, first + k, received);
    return static_cast<size_t>(got);
  }

 private:
  struct Control {
    alignas(cmsghdr) unsigned char bytes[kControlSpace];
  };
  std::vector<mmsghdr> headers_;
  std::vector<iovec> iov_;
  std::vector<Control> control_;
};

// Received datagrams wait in a ring between the receiving thread and
// take().  Linux queues only net.unix.max_dgram_qlen + 1 datagrams on a
// socket (11 by default) and clients send without blocking, so every pause
// of the event loop (a commit, a garbage collection) would lose their
// notifications: the thread empties the kernel's queue whatever the loop
// is doing.  When the ring is full it stops reading, and the kernel's
// queue pushes back on the clients as before.
//
// The ring is JavaScript's buffer, and take() lends records where they lie
// instead of copying them out: the copy (704 bytes a record, just written
// by another core) cost the event loop about a third of its time per
// notification (under a flood: 340-390 ns of 1,000-1,100 per record).
class Receiver {
 public:
  // `ring` holds `capacity` records and outlives the receiver.
  Receiver(int fd, Record* ring, size_t capacity, std::function<void()> notify)
      : fd_(fd), ring_(ring), capacity_(capacity), notify_(std::move(notify)) {}

  // Starts the thread; returns 0 or an errno.
  int Start() {
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__)
    if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) == -1) return errno;
#else
    if (pipe(wake_) == -1) return errno;
#endif
    int err = pthread_create(&thread_, nullptr, Run, this);
    if (err != 0) {
      close(wake_[0]);
      close(wake_[1]);
      wake_[0] = wake_[1] = -1;
    }
    return err;
  }

  // Stops the thread and waits for it: it is woken from poll() or from
  // waiting for room.
  void Stop() {
    if (wake_[1] == -1) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    room_.notify_one();
    char c = 0;
    while (write(wake_[1], &c, 1) == -1 && errno == EINTR) {
    }
    pthread_join(thread_, nullptr);
    close(wake_[0]);
    close(wake_[1]);
    wake_[0] = wake_[1] = -1;
  }

  // Gives back the records lent last time, and lends up to `max` of those
  // waiting, in order and contiguous in the ring: they start where the
  // last lent ones ended (at 0 the first time), wrapping at the ring's end.
  // Returns how many; they stay untouched until the next call.
  size_t Take(size_t max) {
    size_t returned, n;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      returned = lent_;
      head_ = (head_ + lent_) % capacity_;
      count_ -= lent_;
      n = lent_ = std::min({count_, max, capacity_ - head_});
    }
    if (returned > 0) room_.notify_one();
    return n;
  }

  // Records waiting, not counting those lent.
  size_t Queued() {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_ - lent_;
  }

 private:
  static void* Run(void* arg) {
    static_cast<Receiver*>(arg)->Loop();
    return nullptr;
  }

  void Loop() {
#if defined(__linux__)
    // Servers send without waiting and give up after five tries: when they
    // and helper processes take every core, this thread must still get its
    // turn.  Its work is bounded by the ring, so a higher priority cannot
    // take more than that from the rest (Linux nices threads one by one;
    // without CAP_SYS_NICE it stays as it is).  The closer's thread is
    // started first: it would inherit the priority.
    Closer::Get();
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kReceiverNice);
#endif
    std::vector<Passed> received;
    for (;;) {
      size_t tail, room;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        room_.wait(lock, [this] { return stop_ || count_ < capacity_; });
        if (stop_) return;
        tail = (head_ + count_) % capacity_;
        // the free slots from the tail on, up to the end of the ring
        room = std::min(capacity_ - count_, capacity_ - tail);
      }
      // Only this thread writes the slots outside [head, head + count), which include the lent ones.
      size_t n = 0;
      bool failed = false;
      bool drained = false;  // a receive found fewer datagrams than it had room for
      while (n < room && !failed && !drained) {
        size_t asked = std::min(room - n, BatchReceiver::kBatchMax);
        size_t got = batch_.Receive(fd_, &ring_[tail + n], asked, received);
        n += got;
        failed = got > 0 && ring_[tail + n - 1].recvErrno != 0;
        drained = got < asked;
      }
      Closer::Get().Close(received);
      if (n > 0) {
        bool wasEmpty;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          wasEmpty = count_ == lent_;  // nothing waited: JavaScript has taken all there was
          count_ += n;
        }
        if (wasEmpty) notify_();
        // more may be queued; after a failed receive, do not spin on an error that persists
        if (!failed && !drained) continue;
      }
      pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (poll(fds, 2, failed ? 100 : -1) > 0 && (fds[1].revents & POLLIN)) {
        char buf[16];
        while (read(wake_[0], buf, sizeof(buf)) > 0) {
        }
      }
    }
  }

  int fd_;
  int wake_[2] = {-1, -1};
  pthread_t thread_;
  BatchReceiver batch_;
  Record* ring_;
  size_t capacity_;
  size_t head_ = 0;
  size_t count_ = 0;  // records in the ring, lent ones included
  size_t lent_ = 0;   // from head_ on
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable room_;
  std::function<void()> notify_;
};

// The daemon's bound socket.
class ServerSocket : public Napi::ObjectWrap<ServerSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ServerSocket",
                       {InstanceMethod("start", &ServerSocket::Start),
                        InstanceMethod("take", &ServerSocket::Take),
                        InstanceMethod("waiting", &ServerSocket::Waiting),
                        InstanceMethod("stop", &ServerSocket::Stop),
                        InstanceMethod("close", &ServerSocket::Close)});
  }

  // new ServerSocket(path): asks for credentials and binds `path`.
  // new ServerSocket(fd): adopts a bound socket (systemd's socket
  // activation) and asks for credentials.  What is at the path before,
  // which descriptors are fit to adopt and the file's mode are decided in
  // TypeScript (src/protocol/socketfile.ts, server.ts).
  explicit ServerSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ServerSocket>(info) {
    Napi::Env env = info.Env();
    if (info.Length() == 1 && info[0].IsNumber()) {
      Adopt(env, info[0].As<Napi::Number>().Int32Value());
      return;
    }
    if (!info[0].IsString()) {
      Napi::TypeError::New(env, "ServerSocket(path: string)").ThrowAsJavaScriptException();
      return;
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    sockaddr_un sun;
    if (int err = MakeUnixAddress(path, &sun)) {
      ErrnoError(env, err, "bind", path).ThrowAsJavaScriptException();
      return;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
      ErrnoError(env, errno, "socket", path).ThrowAsJavaScriptException();
      return;
    }
    // Credentials before bind, so that no datagram arrives without them.
    int one = 1;
    const char* failed = nullptr;
    if (setsockopt(fd, kCredLevel, kCredOption, &one, sizeof(one)) == -1) {
      failed = "setsockopt";
    } else if (bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == -1) {
      failed = "bind";
    }
    if (failed != nullptr) {
      int err = errno;
      close(fd);
      ErrnoError(env, err, failed, path).ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, this, &cleanup_) != napi_ok) cleanup_ = nullptr;
  }

  ~ServerSocket() override {
    Release(nullptr);
    if (cleanup_ != nullptr) napi_remove_async_cleanup_hook(cleanup_);
  }

 private:
  // The descriptor's kind was checked with socketInfo(); a failing system
  // call throws and leaves it open.
  void Adopt(Napi::Env env, int fd) {
    int one = 1;
    if (setsockopt(fd, kCredLevel, kCredOption, &one, sizeof(one)) == -1) {
      ErrnoError(env, errno, "setsockopt", "descriptor " + std::to_string(fd)).ThrowAsJavaScriptException();
      return;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags != -1) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fd_ = fd;
    if (napi_add_async_cleanup_hook(env, OnEnvCleanup, this, &cleanup_) != napi_ok) cleanup_ = nullptr;
  }

  struct Async {
    uv_async_t handle;
    ServerSocket* owner;
    // The environment's teardown waits for this handle's close when set.
    napi_async_cleanup_hook_handle cleanup = nullptr;
  };

  // start(onReadable, ring): starts the receiving thread, which writes
  // the records into the buffer `ring` (kept alive until close());
  // onReadable() runs on the event loop when datagrams wait there, and
  // again after each take() that leaves some.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ == -1 || async_ != nullptr || !info[0].IsFunction() || !info[1].IsBuffer()) {
      Napi::Error::New(env, "start(onReadable, ring) on a closed or started socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto ring = info[1].As<Napi::Buffer<uint8_t>>();
    if (reinterpret_cast<uintptr_t>(ring.Data()) % alignof(Record) != 0 || ring.Length() < sizeof(Record)) {
      Napi::Error::New(env, "start: the ring is not aligned or holds no record").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    auto async = std::make_unique<Async>();
    async->owner = this;
    async->handle.data = async.get();
    int rc = uv_async_init(loop, &async->handle, OnAsync);
    if (rc != 0) {
      ErrnoError(env, -rc, "uv_async_init", "").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uv_async_t* handle = &async->handle;
    receiver_ = std::make_unique<Receiver>(fd_, reinterpret_cast<Record*>(ring.Data()), ring.Length() / sizeof(Record),
                                           [handle] { uv_async_send(handle); });
    if (int err = receiver_->Start()) {
      receiver_.reset();
      uv_close(reinterpret_cast<uv_handle_t*>(&async.release()->handle), FreeAsync);
      ErrnoError(env, err, "pthread_create", "").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    onReadable_ = Napi::Persistent(info[0].As<Napi::Function>());
    ring_ = Napi::Persistent(ring);
    context_ = std::make_unique<Napi::AsyncContext>(env, "BlocklistNotificationSocket");
    async_ = async.release();
    Ref();
    return env.Undefined();
  }

  static void FreeAsync(uv_handle_t* handle) {
    Async* async = static_cast<Async*>(handle->data);
    if (async->cleanup != nullptr) napi_remove_async_cleanup_hook(async->cleanup);
    delete async;
  }

  static void OnAsync(uv_async_t* handle) {
    ServerSocket* self = static_cast<Async*>(handle->data)->owner;
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->onReadable_.MakeCallback(self->Value(), {}, *self->context_);
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
    // one batch per turn of the loop: what is left comes in the next turn
    if (self->receiver_ && self->async_ != nullptr && self->receiver_->Queued() > 0) uv_async_send(&self->async_->handle);
  }

  // take(max): gives back the records lent by the last call and lends up
  // to `max` more (Receiver::Take); returns how many.
  Napi::Value Take(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ == -1 || !info[0].IsNumber()) {
      Napi::Error::New(env, "take(max) on a closed socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t n = receiver_ ? receiver_->Take(info[0].As<Napi::Number>().Uint32Value()) : 0;
    return Napi::Number::New(env, static_cast<double>(n));
  }

  // waiting(): datagrams the receiving thread holds for take().
  Napi::Value Waiting(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), receiver_ ? static_cast<double>(receiver_->Queued()) : 0);
  }

  // stop(): no more receiving; what the ring holds can still be taken.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (receiver_) receiver_->Stop();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    bool started = async_ != nullptr;
    Release(nullptr);
    if (started) {
      onReadable_.Reset();
      ring_.Reset();
      context_.reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  // Stops the receiving thread, closes the async handle (its memory goes in
  // its callback, which ends the environment's teardown hook `cleanup` if
  // one is waiting) and the socket.
  void Release(napi_async_cleanup_hook_handle cleanup) {
    if (receiver_) receiver_->Stop();
    receiver_.reset();
    if (async_ != nullptr) {
      async_->owner = nullptr;
      async_->cleanup = cleanup;
      uv_close(reinterpret_cast<uv_handle_t*>(&async_->handle), FreeAsync);
      async_ = nullptr;
    } else if (cleanup != nullptr) {
      napi_remove_async_cleanup_hook(cleanup);
    }
    if (fd_ != -1) close(fd_);
    fd_ = -1;
  }

  // The environment (a Worker, or the process) ends: the handle must be
  // closed before its loop is, and before this addon may be unloaded.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle cleanup, void* arg) {
    ServerSocket* self = static_cast<ServerSocket*>(arg);
    self->cleanup_ = nullptr;
    self->Release(cleanup);
  }

  int fd_ = -1;
  Async* async_ = nullptr;
  std::unique_ptr<Receiver> receiver_;
  Napi::FunctionReference onReadable_;
  Napi::Reference<Napi::Buffer<uint8_t>> ring_;  // written by the receiving thread until Release()
  std::unique_ptr<Napi::AsyncContext> context_;
  napi_async_cleanup_hook_handle cleanup_ = nullptr;  // OnEnvCleanup, while registered
};

// A client's socket: connect to the daemon, send one datagram with one
// descriptor.  Every method returns 0 or an errno.
class ClientSocket : public Napi::ObjectWrap<ClientSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ClientSocket",
                       {InstanceMethod("open", &ClientSocket::Open),
                        InstanceMethod("connect", &ClientSocket::Connect),
                        InstanceMethod("passCredentials", &ClientSocket::PassCredentials),
                        InstanceMethod("send", &ClientSocket::Send),
                        InstanceMethod("close", &ClientSocket::Close)});
  }

  explicit ClientSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ClientSocket>(info) {}

  ~ClientSocket() override {
    if (fd_ != -1) close(fd_);
  }

 private:
  Napi::Value Result(Napi::Env env, int err) { return Napi::Number::New(env, err); }

  Napi::Value Open(const Napi::CallbackInfo& info) {
    if (fd_ == -1) fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return Result(info.Env(), fd_ == -1 ? errno : 0);
  }

  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) return Result(env, EINVAL);
    if (fd_ == -1) return Result(env, EBADF);
    sockaddr_un sun;
    socklen_t length;
    if (int err = MakeUnixAddress(info[0].As<Napi::String>().Utf8Value(), &sun, &length)) return Result(env, err);
    int rc;
    do {
      rc = connect(fd_, reinterpret_cast<sockaddr*>(&sun), length);
    } while (rc == -1 && errno == EINTR);
    return Result(env, rc == -1 ? errno : 0);
  }

  Napi::Value PassCredentials(const Napi::CallbackInfo& info) {
    int one = 1;
    if (fd_ == -1) return Result(info.Env(), EBADF);
    return Result(info.Env(), setsockopt(fd_, kCredLevel, kCredOption, &one, sizeof(one)) == -1 ? errno : 0);
  }

  // send(data, fd): one datagram; fd < 0 sends no descriptor.  Never blocks.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsBuffer() || !info[1].IsNumber()) return Result(env, EINVAL);
    if (fd_ == -1) return Result(env, EBADF);
    auto data = info[0].As<Napi::Buffer<uint8_t>>();
    int passed = info[1].As<Napi::Number>().Int32Value();
    iovec iov = {data.Data(), data.Length()};
    msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))];
    if (passed >= 0) {
      memset(control, 0, sizeof(control));
      m.msg_control = control;
      m.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &passed, sizeof(int));
    }
    ssize_t sent;
    do {
      sent = sendmsg(fd_, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent == -1 && errno == EINTR);
    return Result(env, sent == -1 ? errno : 0);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ != -1) close(fd_);
    fd_ = -1;
    return info.Env().Undefined();
  }

  int fd_ = -1;
};

// setCloseOnExec(first): marks every descriptor from `first` on close-on-exec,
// so that what the process inherited does not reach the helpers (G25).
Napi::Value SetCloseOnExec(const Napi::CallbackInfo& info) {
  int first = info[0].As<Napi::Number>().Int32Value();
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
  if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return info.Env().Undefined();
#endif
  auto mark = [](int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags != -1 && !(flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  };
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      int fd = atoi(entry->d_name);
      if (entry->d_name[0] != '.' && fd >= first && fd != dirfd(dir)) mark(fd);
    }
    closedir(dir);
  } else {
    long max = std::min(sysconf(_SC_OPEN_MAX), 65536L);
    for (int fd = first; fd < max; fd++) mark(fd);
  }
  return info.Env().Undefined();
}

// socketInfo(fd): what a descriptor handed over by systemd is.
// { errno } when it is not a socket, else { type, family, listening, path }
// (path: a unix socket's, '@name' for an abstract one, '' otherwise).
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int fd = info[0].As<Napi::Number>().Int32Value();
  int32_t type = 0;
  int32_t listening = 0;
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  int err = SocketOption(fd, SO_TYPE, &type);
  if (err == 0 && getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == -1) err = errno;
  if (err != 0) {
    o.Set("errno", Napi::Number::New(env, err));
    return o;
  }
#ifdef SO_ACCEPTCONN
  SocketOption(fd, SO_ACCEPTCONN, &listening);
#endif
  std::string path;
  if (ss.ss_family == AF_UNIX && len > offsetof(sockaddr_un, sun_path)) {
    const sockaddr_un* sun = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t n = len - offsetof(sockaddr_un, sun_path);
    if (sun->sun_path[0] == '\0') {
      path = "@" + std::string(sun->sun_path + 1, n - 1);
    } else {
      path = std::string(sun->sun_path, strnlen(sun->sun_path, n));
    }
  }
  o.Set("type", Napi::Number::New(env, type));
  o.Set("family", Napi::Number::New(env, ss.ss_family));
  o.Set("listening", Napi::Boolean::New(env, listening != 0));
  o.Set("path", Napi::String::New(env, path));
  return o;
}

// peerCredentials(fd): the ids of the process at the other end of a
// connected unix stream socket, { uid, gid, pid } (pid -1 where the system
// does not say), or { errno }.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int fd = info[0].As<Napi::Number>().Int32Value();
#if defined(SO_PEERCRED) && defined(__linux__)
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
    o.Set("errno", Napi::Number::New(env, errno));
    return o;
  }
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  o.Set("pid", Napi::Number::New(env, cred.pid));
#ifdef SO_PEERGROUPS
  // the supplementary groups as they were at connect (Linux 4.13)
  gid_t groups[NGROUPS_MAX];
  socklen_t glen = sizeof(groups);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
    size_t n = glen / sizeof(gid_t);
    Napi::Array a = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, groups[i]));
    o.Set("groups", a);
  }
#endif
#elif defined(LOCAL_PEERCRED) && defined(__FreeBSD__)
  struct xucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERCRED, &cred, &len) == -1 || cred.cr_version != XUCRED_VERSION) {
    o.Set("errno", Napi::Number::New(env, errno));
    return o;
  }
  o.Set("uid", Napi::Number::New(env, cred.cr_uid));
  o.Set("gid", Napi::Number::New(env, cred.cr_groups[0]));
  o.Set("pid", Napi::Number::New(env, cred.cr_pid));
  Napi::Array a = Napi::Array::New(env, cred.cr_ngroups);
  for (int i = 0; i < cred.cr_ngroups; i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, cred.cr_groups[i]));
  o.Set("groups", a);
#else
  uid_t uid;
  gid_t gid;
  if (getpeereid(fd, &uid, &gid) == -1) {
    o.Set("errno", Napi::Number::New(env, errno));
    return o;
  }
  o.Set("uid", Napi::Number::New(env, uid));
  o.Set("gid", Napi::Number::New(env, gid));
  o.Set("pid", Napi::Number::New(env, -1));
#endif
  return o;
}

// setSocketMode(path, mode, gid): SetSocketMode for a socket just bound
// (gid -1: the group is left); returns 0 or an errno.
Napi::Value SetSocketModeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) return Napi::Number::New(env, EINVAL);
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int64_t gid = info[2].As<Napi::Number>().Int64Value();
  int err = SetSocketMode(path.c_str(), info[1].As<Napi::Number>().Uint32Value() & 0777, gid < 0 ? static_cast<gid_t>(-1) : static_cast<gid_t>(gid));
  return Napi::Number::New(env, err);
}

// processNetns(): the identity NetnsOf reads for a socket of this process
// (8 bytes), or { errno } when it cannot be read.
Napi::Value ProcessNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t id[8];
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int err = fd == -1 ? errno : NetnsOf(fd, id);
  if (fd != -1) close(fd);
  if (err != 0) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("errno", Napi::Number::New(env, err));
    return o;
  }
  return Napi::Buffer<uint8_t>::Copy(env, id, sizeof(id));
}

// lingeringClosed(): received descriptors found lingering (Closer) so far.
Napi::Value LingeringClosed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Closer::Get().Lingering()));
}

// sendLines(fd, lines): each line as one datagram on the connected socket
// `fd` (the daemon's syslog socket), in order and without blocking, up to
// kLinesPerCall in one sendmmsg(2); stops at the first that fails.  Returns
// 0, or the errno of the one that failed (EAGAIN: the receiver's queue is
// full).  A flood logs a line per notification, and a
// system call costs more than the send's own work (1.0 us for getppid(2)
// on a VM with page-table isolation).
Napi::Value SendLines(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "sendLines(fd: number, lines: string[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  constexpr uint32_t kLinesPerCall = 64;
  constexpr size_t kLineRoom = 1024;
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Array lines = info[1].As<Napi::Array>();
  const uint32_t total = lines.Length();
  uint32_t at = 0;
  int err = 0;
  std::string text;  // the lines of a call, one after the other
  text.reserve(kLinesPerCall * kLineRoom);
  size_t ends[kLinesPerCall];
  iovec iov[kLinesPerCall];
  mmsghdr headers[kLinesPerCall];
  while (at < total && err == 0) {
    const uint32_t n = std::min(kLinesPerCall, total - at);
    text.clear();
    for (uint32_t k = 0; k < n; k++) {
      Napi::Value line = lines.Get(at + k);
      if (!line.IsString()) {
        Napi::TypeError::New(env, "sendLines: every line is a string").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      // most lines fit kLineRoom: converted once.  N-API copies whole characters only, so a line that came within
      // a character (4 bytes) of filling it may have been cut, and is measured and converted again.
      size_t start = text.size();
      size_t length = 0;
      text.resize(start + kLineRoom);
      napi_get_value_string_utf8(env, line, &text[start], kLineRoom, &length);
      if (length + 4 >= kLineRoom) {
        napi_get_value_string_utf8(env, line, nullptr, 0, &length);
        text.resize(start + length + 1);  // and the terminating NUL N-API writes
        napi_get_value_string_utf8(env, line, &text[start], length + 1, &length);
      }
      text.resize(start + length);
      ends[k] = text.size();
    }
    for (uint32_t k = 0; k < n; k++) {
      size_t start = k == 0 ? 0 : ends[k - 1];
      iov[k] = {&text[start], ends[k] - start};
      memset(&headers[k], 0, sizeof(headers[k]));
      headers[k].msg_hdr.msg_iov = &iov[k];
      headers[k].msg_hdr.msg_iovlen = 1;
    }
    uint32_t sent = 0;
    while (sent < n) {
      int got = sendmmsg(fd, headers + sent, n - sent, MSG_DONTWAIT);
      if (got == -1) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      sent += static_cast<uint32_t>(got);
    }
    at += sent;
  }
  return Napi::Number::New(env, err);
}

// tryLock(fd): flock(fd, LOCK_EX | LOCK_NB); 0, or the errno (EWOULDBLOCK:
// another open file holds it).  The lock lasts while the open file does.
Napi::Value TryLock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rc;
  do rc = flock(fd, LOCK_EX | LOCK_NB);
  while (rc == -1 && errno == EINTR);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

Napi::Value StrError(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), strerror(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Object Layout(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#define FIELD(name) o.Set(#name, Napi::Number::New(env, offsetof(Record, name)))
  FIELD(recvErrno);
  FIELD(length);
  FIELD(flags);
  FIELD(cmsgCount);
  FIELD(cmsgLevel);
  FIELD(cmsgType);
  FIELD(cmsgLen);
  FIELD(hasCred);
  FIELD(pid);
  FIELD(uid);
  FIELD(gid);
  FIELD(fdCount);
  FIELD(typeErrno);
  FIELD(type);
  FIELD(localErrno);
  FIELD(localLen);
  FIELD(peerErrno);
  FIELD(peerLen);
  FIELD(netnsErrno);
  FIELD(netns);
  FIELD(local);
  FIELD(peer);
  FIELD(named);
  FIELD(payload);
#undef FIELD
  o.Set("size", Napi::Number::New(env, sizeof(Record)));
  o.Set("cmsgSlots", Napi::Number::New(env, kCmsgSlots));
  o.Set("payloadMax", Napi::Number::New(env, kPayloadMax));
  return o;
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#define CONSTANT(name) o.Set(#name, Napi::Number::New(env, name))
  CONSTANT(AF_UNIX);
  CONSTANT(AF_INET);
  CONSTANT(AF_INET6);
  CONSTANT(SOCK_STREAM);
  CONSTANT(SOCK_DGRAM);
  CONSTANT(SOL_SOCKET);
  CONSTANT(SCM_RIGHTS);
  CONSTANT(MSG_TRUNC);
  CONSTANT(MSG_CTRUNC);
  CONSTANT(ENOTCONN);
  CONSTANT(EAGAIN);
  CONSTANT(EBADF);
  CONSTANT(ELOOP);
  CONSTANT(ENOTSOCK);
  CONSTANT(ENOPROTOOPT);
#undef CONSTANT
  o.Set("SCM_CREDENTIALS", Napi::Number::New(env, kCredType));
  o.Set("CMSG_LEN_INT", Napi::Number::New(env, CMSG_LEN(sizeof(int))));
#ifdef SIN6_LEN
  o.Set("HAVE_SA_LEN", Napi::Boolean::New(env, true));
#else
  o.Set("HAVE_SA_LEN", Napi::Boolean::New(env, false));
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("ServerSocket", ServerSocket::Init(env));
  exports.Set("ClientSocket", ClientSocket::Init(env));
  exports.Set("strerror", Napi::Function::New(env, StrError));
  exports.Set("setCloseOnExec", Napi::Function::New(env, SetCloseOnExec));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("setSocketMode", Napi::Function::New(env, SetSocketModeJs));
  exports.Set("processNetns", Napi::Function::New(env, ProcessNetns));
  exports.Set("lingeringClosed", Napi::Function::New(env, LingeringClosed));
  exports.Set("tryLock", Napi::Function::New(env, TryLock));
  exports.Set("sendLines", Napi::Function::New(env, SendLines));
  exports.Set("layout", Layout(env));
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(blsock, Init)
