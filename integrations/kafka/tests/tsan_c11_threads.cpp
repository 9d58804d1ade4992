// ThreadSanitizer builds only (integrations/kafka/CMakeLists.txt): C11 <threads.h> on top of
// the pthread functions that TSan intercepts.
//
// Debian's librdkafka 2.0.2 makes its threads, mutexes and condition variables with glibc's
// C11 functions (thrd_create, mtx_lock, cnd_wait, ...). glibc implements them by calling its
// internal pthread functions directly, which GCC 12's ThreadSanitizer does not intercept
// (thrd_* interceptors came with LLVM 15): a thread librdkafka starts has no TSan state, and
// its first allocation crashes; and TSan sees none of librdkafka's locking, so every hand-over
// between its threads and ours would look like a race. Defining the C11 functions here, in
// the test executable, makes librdkafka's calls (references to glibc's symbols, resolved to
// the executable first) use the intercepted pthread functions instead. glibc's own types are
// the pthread ones underneath (mtx_t and pthread_mutex_t share a layout, thrd_t is
// pthread_t), so this changes what TSan sees, not what the program does.
#include <cerrno>
#include <cstdint>
#include <ctime>
#include <new>

#include <pthread.h>
#include <threads.h>

namespace {

struct Start {
  thrd_start_t function;
  void* argument;
};

void* run(void* raw) {
  const Start start = *static_cast<Start*>(raw);
  delete static_cast<Start*>(raw);
  const int result = start.function(start.argument);
  return reinterpret_cast<void*>(static_cast<std::intptr_t>(result));
}

pthread_mutex_t* native(mtx_t* mutex) {
  return reinterpret_cast<pthread_mutex_t*>(mutex);
}
pthread_cond_t* native(cnd_t* cond) {
  return reinterpret_cast<pthread_cond_t*>(cond);
}

int result_of(int error) {
  if (error == 0) return thrd_success;
  if (error == ETIMEDOUT) return thrd_timedout;
  if (error == EBUSY) return thrd_busy;
  if (error == ENOMEM) return thrd_nomem;
  return thrd_error;
}

}  // namespace

static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t));
static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t));
static_assert(sizeof(thrd_t) == sizeof(pthread_t));
static_assert(sizeof(once_flag) == sizeof(pthread_once_t));

extern "C" {

int thrd_create(thrd_t* thread, thrd_start_t function, void* argument) {
  auto* start = new (std::nothrow) Start{function, argument};
  if (start == nullptr) return thrd_nomem;
  const int error = pthread_create(thread, nullptr, run, start);
  if (error != 0) delete start;
  return result_of(error);
}

int thrd_join(thrd_t thread, int* result) {
  void* value = nullptr;
  const int error = pthread_join(thread, &value);
  if (error == 0 && result != nullptr) {
    *result = static_cast<int>(reinterpret_cast<std::intptr_t>(value));
  }
  return result_of(error);
}

int mtx_init(mtx_t* mutex, int type) {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  if ((type & mtx_recursive) != 0) {
    pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_RECURSIVE);
  }
  const int error = pthread_mutex_init(native(mutex), &attributes);
  pthread_mutexattr_destroy(&attributes);
  return result_of(error);
}

int mtx_lock(mtx_t* mutex) {
  return result_of(pthread_mutex_lock(native(mutex)));
}

int mtx_trylock(mtx_t* mutex) {
  return result_of(pthread_mutex_trylock(native(mutex)));
}

int mtx_unlock(mtx_t* mutex) {
  return result_of(pthread_mutex_unlock(native(mutex)));
}

void mtx_destroy(mtx_t* mutex) {
  pthread_mutex_destroy(native(mutex));
}

int cnd_init(cnd_t* cond) {
  return result_of(pthread_cond_init(native(cond), nullptr));
}

int cnd_signal(cnd_t* cond) {
  return result_of(pthread_cond_signal(native(cond)));
}

int cnd_broadcast(cnd_t* cond) {
  return result_of(pthread_cond_broadcast(native(cond)));
}

int cnd_wait(cnd_t* cond, mtx_t* mutex) {
  return result_of(pthread_cond_wait(native(cond), native(mutex)));
}

int cnd_timedwait(cnd_t* cond, mtx_t* mutex, const struct timespec* until) {
  return result_of(pthread_cond_timedwait(native(cond), native(mutex), until));
}

void cnd_destroy(cnd_t* cond) {
  pthread_cond_destroy(native(cond));
}

void call_once(once_flag* flag, void (*function)(void)) {
  pthread_once(reinterpret_cast<pthread_once_t*>(flag), function);
}

}  // extern "C"
