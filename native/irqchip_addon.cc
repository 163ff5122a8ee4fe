// irqchip's native addon: system calls only (docs: shared/spec/kvm-from-node.md §6).
//
// Every KVM number and struct layout lives in TypeScript (src/kvm/); this file knows none of them.
// Its whole surface is typed in src/kvm/addon.ts. Conventions:
// - Calls that the kernel may refuse return -errno (a negative number, or a negative bigint where
//   the success value is a u64) instead of throwing: the hot paths (KVM_RUN, eventfd reads) stay
//   cheap, and the TypeScript side turns errno into typed errors. Only a malformed argument (a
//   caller bug: wrong JavaScript type) throws a TypeError.
// - Built with NAPI_VERSION 8, so one build serves every Node >= 16.

#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <atomic>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

Napi::Value Errno(Napi::Env env) { return Napi::Number::New(env, -errno); }

Napi::Value ResultOrErrno(Napi::Env env, long result) {
  return result < 0 ? Errno(env) : Napi::Number::New(env, static_cast<double>(result));
}

bool ThrowTypeError(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return false;
}

bool ArgInt(const Napi::CallbackInfo& info, size_t index, int64_t* out) {
  if (!info[index].IsNumber()) return ThrowTypeError(info.Env(), "expected a number argument");
  *out = info[index].As<Napi::Number>().Int64Value();
  return true;
}

// A u64 from a number or a bigint (a bigint must fit losslessly).
bool ArgU64(const Napi::CallbackInfo& info, size_t index, uint64_t* out) {
  Napi::Value value = info[index];
  if (value.IsNumber()) {
    *out = static_cast<uint64_t>(value.As<Napi::Number>().Int64Value());
    return true;
  }
  if (value.IsBigInt()) {
    bool lossless = false;
    *out = value.As<Napi::BigInt>().Uint64Value(&lossless);
    return lossless || ThrowTypeError(info.Env(), "bigint argument does not fit in 64 bits");
  }
  return ThrowTypeError(info.Env(), "expected a number or a bigint");
}

// The address of a TypedArray's or DataView's first byte. Works for SharedArrayBuffer-backed views
// too: node-addon-api's TypedArray::ArrayBuffer() throws for those, the raw N-API call does not.
bool ViewAddress(Napi::Env env, napi_value value, void** out) {
  bool is_typed_array = false;
  bool is_data_view = false;
  napi_is_typedarray(env, value, &is_typed_array);
  if (is_typed_array) {
    return napi_get_typedarray_info(env, value, nullptr, nullptr, out, nullptr, nullptr) == napi_ok ||
           ThrowTypeError(env, "cannot read the typed array's buffer");
  }
  napi_is_dataview(env, value, &is_data_view);
  if (is_data_view) {
    return napi_get_dataview_info(env, value, nullptr, out, nullptr, nullptr) == napi_ok ||
           ThrowTypeError(env, "cannot read the data view's buffer");
  }
  return ThrowTypeError(env, "expected a TypedArray or a DataView");
}

// open(path, flags): fd or -errno.
Napi::Value Open(const Napi::CallbackInfo& info) {
  int64_t flags = 0;
  if (!info[0].IsString()) {
    ThrowTypeError(info.Env(), "path must be a string");
    return info.Env().Undefined();
  }
  if (!ArgInt(info, 1, &flags)) return info.Env().Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  return ResultOrErrno(info.Env(), open(path.c_str(), static_cast<int>(flags)));
}

// close(fd): 0 or -errno.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  return ResultOrErrno(info.Env(), close(static_cast<int>(fd)));
}

// dup(fd): a new close-on-exec descriptor for the same open file, or -errno.
Napi::Value Dup(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  return ResultOrErrno(info.Env(), fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0));
}

// ioctl(fd, request, arg?): the ioctl's result or -errno. `arg` is passed as an unsigned long
// (number or bigint) or as a pointer to a view's bytes (TypedArray or DataView), which the kernel
// may fill in place.
Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = 0;
  uint64_t request = 0;
  if (!ArgInt(info, 0, &fd) || !ArgU64(info, 1, &request)) return env.Undefined();
  unsigned long arg = 0;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (info[2].IsNumber() || info[2].IsBigInt()) {
      uint64_t value = 0;
      if (!ArgU64(info, 2, &value)) return env.Undefined();
      arg = static_cast<unsigned long>(value);
    } else {
      void* pointer = nullptr;
      if (!ViewAddress(env, info[2], &pointer)) return env.Undefined();
      arg = reinterpret_cast<unsigned long>(pointer);
    }
  }
  return ResultOrErrno(env, ioctl(static_cast<int>(fd), static_cast<unsigned long>(request), arg));
}

// mmap(fd, length, offset): a shared read-write mapping of the file as an ArrayBuffer (unmapped
// when the buffer is collected), or -errno. An external buffer cannot be posted to another
// thread: each thread maps for itself (the mapping of a vCPU's kvm_run is the same pages).
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = 0;
  int64_t length = 0;
  int64_t offset = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &length) || !ArgInt(info, 2, &offset)) return env.Undefined();
  if (length <= 0) return Napi::Number::New(env, -EINVAL);
  void* address = mmap(nullptr, static_cast<size_t>(length), PROT_READ | PROT_WRITE, MAP_SHARED, static_cast<int>(fd),
                       static_cast<off_t>(offset));
  if (address == MAP_FAILED) return Errno(env);
  size_t mapped = static_cast<size_t>(length);
  return Napi::ArrayBuffer::New(env, address, mapped, [mapped](Napi::Env, void* data) { munmap(data, mapped); });
}

// addressOf(view): the address of the view's first byte, as a bigint.
Napi::Value AddressOf(const Napi::CallbackInfo& info) {
  void* pointer = nullptr;
  if (!ViewAddress(info.Env(), info[0], &pointer)) return info.Env().Undefined();
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(pointer)));
}

// eventfd(initval, flags): fd or -errno.
Napi::Value EventFd(const Napi::CallbackInfo& info) {
  int64_t initval = 0;
  int64_t flags = 0;
  if (!ArgInt(info, 0, &initval) || !ArgInt(info, 1, &flags)) return info.Env().Undefined();
  return ResultOrErrno(info.Env(), eventfd(static_cast<unsigned int>(initval), static_cast<int>(flags)));
}

// eventfdRead(fd): the counter as a bigint >= 0 (and the counter zeroed), or -errno as a negative
// bigint (-EAGAIN when a non-blocking eventfd is zero).
Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  uint64_t count = 0;
  if (read(static_cast<int>(fd), &count, sizeof count) != static_cast<ssize_t>(sizeof count)) {
    return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-errno));
  }
  return Napi::BigInt::New(info.Env(), count);
}

// eventfdWrite(fd, value): 0, or -errno (-EAGAIN when a non-blocking eventfd would overflow).
Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  uint64_t value = 0;
  if (!ArgInt(info, 0, &fd) || !ArgU64(info, 1, &value)) return info.Env().Undefined();
  ssize_t written = write(static_cast<int>(fd), &value, sizeof value);
  return Napi::Number::New(info.Env(), written == static_cast<ssize_t>(sizeof value) ? 0 : -errno);
}

// poll(fd, events, timeoutMs): the returned events (0 on timeout), or -errno. Blocks the calling
// thread: for workers (Event.wait); the main thread uses Poller.
Napi::Value Poll(const Napi::CallbackInfo& info) {
  int64_t fd = 0;
  int64_t events = 0;
  int64_t timeout = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &events) || !ArgInt(info, 2, &timeout)) return info.Env().Undefined();
  struct pollfd request = {static_cast<int>(fd), static_cast<short>(events), 0};
  int ready = poll(&request, 1, static_cast<int>(timeout));
  if (ready < 0) return Errno(info.Env());
  return Napi::Number::New(info.Env(), ready == 0 ? 0 : request.revents);
}

// threadId(): the calling thread's kernel thread id (gettid), the target of kick().
Napi::Value ThreadId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

// The kick targets: for each vCPU thread, the kvm_run.immediate_exit byte the kick handler sets
// (kvm-from-node.md §4). The handler must be async-signal-safe, so it finds its thread's byte in
// this fixed table by gettid() with atomic loads: no thread_local (a dlopen'ed module's TLS may
// be allocated lazily, which is not safe in a handler) and no locks.
constexpr int kMaxKickTargets = 1024;
struct KickTarget {
  std::atomic<pid_t> thread_id;
  std::atomic<uint8_t*> immediate_exit;
};
KickTarget g_kick_targets[kMaxKickTargets];

// The kick handler: a kick that lands while this thread runs JavaScript sets immediate_exit, so
// its next KVM_RUN returns EINTR at once; one that lands inside KVM_RUN makes it return EINTR
// (and sets the byte, which the vCPU clears). Either way no kick is lost, whoever sent it.
void OnKick(int) {
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  for (KickTarget& target : g_kick_targets) {
    if (target.thread_id.load(std::memory_order_acquire) != self) continue;
    uint8_t* flag = target.immediate_exit.load(std::memory_order_acquire);
    if (flag != nullptr) *reinterpret_cast<volatile uint8_t*>(flag) = 1;
    return;
  }
}

// setKickTarget(view): the calling thread's kick handler will set view's first byte (its vCPU's
// kvm_run.immediate_exit); setKickTarget(null) forgets it (before kvm_run is unmapped).
// 0, or -ENOSPC when every slot is taken.
Napi::Value SetKickTarget(const Napi::CallbackInfo& info) {
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  void* address = nullptr;
  if (!info[0].IsNull() && !ViewAddress(info.Env(), info[0], &address)) return info.Env().Undefined();
  uint8_t* flag = static_cast<uint8_t*>(address);
  KickTarget* free_slot = nullptr;
  for (KickTarget& target : g_kick_targets) {
    const pid_t owner = target.thread_id.load(std::memory_order_acquire);
    if (owner == self) {
      target.immediate_exit.store(flag, std::memory_order_release);
      if (flag == nullptr) target.thread_id.store(0, std::memory_order_release);
      return Napi::Number::New(info.Env(), 0);
    }
    if (owner == 0 && free_slot == nullptr) free_slot = &target;
  }
  if (flag == nullptr) return Napi::Number::New(info.Env(), 0);
  if (free_slot == nullptr) return Napi::Number::New(info.Env(), -ENOSPC);
  // The byte first, then the owner: the handler never sees this thread's id with a stale byte.
  free_slot->immediate_exit.store(flag, std::memory_order_release);
  free_slot->thread_id.store(self, std::memory_order_release);
  return Napi::Number::New(info.Env(), 0);
}

// installKickHandler(signal): installs the kick handler (SA_RESTART) for `signal`, process-wide.
// A real handler, not SIG_IGN: an ignored signal is discarded and would not interrupt KVM_RUN;
// SIG_DFL would kill the process. 0 or -errno.
Napi::Value InstallKickHandler(const Napi::CallbackInfo& info) {
  int64_t signal_number = 0;
  if (!ArgInt(info, 0, &signal_number)) return info.Env().Undefined();
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = OnKick;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  return ResultOrErrno(info.Env(), sigaction(static_cast<int>(signal_number), &action, nullptr));
}

// kick(threadId, signal): sends `signal` to one thread of this process (tgkill). Unlike
// pthread_kill on a pthread_t, a thread id that has exited is answered with -ESRCH, never with
// undefined behaviour, and tgkill cannot reach another process. 0 or -errno.
Napi::Value Kick(const Napi::CallbackInfo& info) {
  int64_t thread_id = 0;
  int64_t signal_number = 0;
  if (!ArgInt(info, 0, &thread_id) || !ArgInt(info, 1, &signal_number)) return info.Env().Undefined();
  return ResultOrErrno(info.Env(), syscall(SYS_tgkill, getpid(), static_cast<pid_t>(thread_id), static_cast<int>(signal_number)));
}

// timerCreate(threadId, signal): a POSIX timer on CLOCK_MONOTONIC that sends `signal` to that
// thread of this process when it expires (SIGEV_THREAD_ID): how a vCPU thread inside KVM_RUN is
// woken for its local APIC timer. The timer's id (>= 0), or -errno.
Napi::Value TimerCreate(const Napi::CallbackInfo& info) {
  int64_t thread_id = 0;
  int64_t signal_number = 0;
  if (!ArgInt(info, 0, &thread_id) || !ArgInt(info, 1, &signal_number)) return info.Env().Undefined();
  struct sigevent event;
  std::memset(&event, 0, sizeof event);
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = static_cast<int>(signal_number);
  event._sigev_un._tid = static_cast<pid_t>(thread_id);
  timer_t timer;
  if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return Errno(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<intptr_t>(timer)));
}

// timerArm(id, delayNs): the timer fires once, delayNs from now; 0 disarms it. 0 or -errno.
Napi::Value TimerArm(const Napi::CallbackInfo& info) {
  int64_t id = 0;
  uint64_t delay = 0;
  if (!ArgInt(info, 0, &id) || !ArgU64(info, 1, &delay)) return info.Env().Undefined();
  struct itimerspec spec;
  std::memset(&spec, 0, sizeof spec);
  spec.it_value.tv_sec = static_cast<time_t>(delay / 1000000000u);
  spec.it_value.tv_nsec = static_cast<long>(delay % 1000000000u);
  return ResultOrErrno(info.Env(), timer_settime(reinterpret_cast<timer_t>(static_cast<intptr_t>(id)), 0, &spec, nullptr));
}

// timerDelete(id): 0 or -errno.
Napi::Value TimerDelete(const Napi::CallbackInfo& info) {
  int64_t id = 0;
  if (!ArgInt(info, 0, &id)) return info.Env().Undefined();
  return ResultOrErrno(info.Env(), timer_delete(reinterpret_cast<timer_t>(static_cast<intptr_t>(id))));
}

// Poller: a libuv uv_poll_t on one fd, in the calling thread's event loop. The callback runs on
// that loop with (status, events): no thread-pool slot is used, and any number of fds can be
// watched. While started it keeps its JavaScript object alive and (unless unref'ed) the loop.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod<&Poller::Start>("start"), InstanceMethod<&Poller::Stop>("stop"),
                        InstanceMethod<&Poller::SetRef>("ref"), InstanceMethod<&Poller::SetUnref>("unref"),
                        InstanceMethod<&Poller::Close>("close")});
  }

  Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    int64_t fd = 0;
    if (!ArgInt(info, 0, &fd)) return;
    if (!info[1].IsFunction()) {
      ThrowTypeError(env, "callback must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      ThrowTypeError(env, "no event loop");
      return;
    }
    handle_ = new uv_poll_t;
    int status = uv_poll_init(loop, handle_, static_cast<int>(fd));
    if (status != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error::New(env, uv_strerror(status)).ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    env_ = env;
    // A worker's loop ends with its thread: close the handle before that, or libuv asserts.
    napi_add_env_cleanup_hook(env, CleanupHook, this);
  }

  ~Poller() override { Release(); }

 private:
  // start(events): 0 or a negative libuv error code.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    int64_t events = 0;
    if (!ArgInt(info, 0, &events)) return info.Env().Undefined();
    if (handle_ == nullptr) return Napi::Number::New(info.Env(), UV_EBADF);
    int status = uv_poll_start(handle_, static_cast<int>(events), OnPoll);
    if (status == 0 && !active_) {
      active_ = true;
      Ref();
    }
    return Napi::Number::New(info.Env(), status);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value SetUnref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  // close(): stops and releases the handle; the fd itself stays open (it is not the poller's).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopPolling();
    Release();
    return info.Env().Undefined();
  }

  void StopPolling() {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  void Release() {
    if (handle_ == nullptr) return;
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    handle_ = nullptr;
  }

  static void CleanupHook(void* data) {
    Poller* self = static_cast<Poller*>(data);
    if (self->handle_ == nullptr) return;
    uv_poll_stop(self->handle_);
    self->handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(self->handle_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    self->handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Poller* self = static_cast<Poller*>(handle->data);
    if (self == nullptr) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    self->callback_.MakeCallback(self->Value(), {Napi::Number::New(env, status), Napi::Number::New(env, events)});
    if (env.IsExceptionPending()) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  napi_env env_ = nullptr;
  bool active_ = false;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New<Open>(env, "open"));
  exports.Set("close", Napi::Function::New<Close>(env, "close"));
  exports.Set("dup", Napi::Function::New<Dup>(env, "dup"));
  exports.Set("ioctl", Napi::Function::New<Ioctl>(env, "ioctl"));
  exports.Set("mmap", Napi::Function::New<Mmap>(env, "mmap"));
  exports.Set("addressOf", Napi::Function::New<AddressOf>(env, "addressOf"));
  exports.Set("eventfd", Napi::Function::New<EventFd>(env, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New<EventFdRead>(env, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New<EventFdWrite>(env, "eventfdWrite"));
  exports.Set("poll", Napi::Function::New<Poll>(env, "poll"));
  exports.Set("threadId", Napi::Function::New<ThreadId>(env, "threadId"));
  exports.Set("installKickHandler", Napi::Function::New<InstallKickHandler>(env, "installKickHandler"));
  exports.Set("kick", Napi::Function::New<Kick>(env, "kick"));
  exports.Set("setKickTarget", Napi::Function::New<SetKickTarget>(env, "setKickTarget"));
  exports.Set("timerCreate", Napi::Function::New<TimerCreate>(env, "timerCreate"));
  exports.Set("timerArm", Napi::Function::New<TimerArm>(env, "timerArm"));
  exports.Set("timerDelete", Napi::Function::New<TimerDelete>(env, "timerDelete"));
  exports.Set("Poller", Poller::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(irqchip_addon, Init)
