/*
 * The FUSE binding of `aegis mount` (libfuse 2.9, high-level path API).
 *
 * Why our own instead of fuse-native: with fuse-native every request, including
 * the LOOKUP the kernel sends for each entry `ls -l` stats, travels from a libfuse
 * thread to the JavaScript thread and back. libfuse 2 has no readdirplus, so an
 * `ls -lR` of 30,000 files costs 30,000 such round trips in a row. Here a readdir
 * answered by JavaScript may hand over the attributes of its entries; they wait in
 * a small table and the lookups that follow are answered on the libfuse thread,
 * without waking JavaScript (docs/MOUNT.md, "The FUSE binding").
 *
 * Every other request is passed to one JavaScript dispatcher through a
 * thread-safe function; the libfuse thread waits until JavaScript replies. The
 * wait cannot be cancelled: libfuse cancels its idle threads when the loop ends,
 * and a request whose buffers JavaScript still writes into must outlive that.
 */
#define FUSE_USE_VERSION 29
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fuse.h>
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op { OP_GETATTR = 1, OP_READDIR, OP_READLINK, OP_OPEN, OP_READ, OP_RELEASE, OP_STATFS };
enum event { EV_INIT = 1, EV_EXIT };

/* Attribute fields as JavaScript sends them (a Float64Array), in this order. */
enum { A_MODE, A_UID, A_GID, A_SIZE, A_NLINK, A_INO, A_RDEV, A_BLOCKS, A_BLKSIZE, A_ATIME, A_MTIME, A_CTIME, A_FIELDS };
enum { S_BSIZE, S_FRSIZE, S_BLOCKS, S_BFREE, S_BAVAIL, S_FILES, S_FFREE, S_FAVAIL, S_FSID, S_FLAG, S_NAMEMAX, S_FIELDS };

typedef struct request {
  int op;
  const char *path;
  uint64_t fh;
  size_t size;
  off_t offset;
  int flags;
  char *buf;
  void *dirbuf;
  fuse_fill_dir_t filler;
  struct stat *st;
  struct statvfs *sv;
  struct fuse_file_info *fi;
  struct session *session;
  int result;
  int replied;
  sem_t done;
} request_t;

/* ---- attributes handed over by readdir, waiting for the lookups that follow ---- */

typedef struct centry {
  struct centry *next;
  uint64_t hash;
  double expires;
  struct stat st;
  char key[];
} centry_t;

#define CACHE_BUCKETS 65536

typedef struct {
  centry_t **buckets;
  size_t count;
  size_t max;
  double ttl_ms;
  pthread_mutex_t lock;
  /* Counters for the trace line (AEGIS_MOUNT_TRACE=1). */
  uint64_t hits, misses;
} attr_table_t;

typedef struct session {
  struct fuse *fuse;
  struct fuse_chan *ch;
  char *mnt;
  pthread_t thread;
  napi_threadsafe_function call;
  napi_threadsafe_function events;
  attr_table_t attrs;
  /* Owners: the JavaScript handle and the loop thread; the last one frees it. */
  int owners;
} session_t;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint64_t hash_key(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

static void table_init(attr_table_t *t, size_t max, double ttl_ms) {
  t->buckets = calloc(CACHE_BUCKETS, sizeof(centry_t *));
  t->count = 0;
  t->max = max;
  t->ttl_ms = ttl_ms;
  t->hits = t->misses = 0;
  pthread_mutex_init(&t->lock, NULL);
}

/* Drop every expired entry (or all of them); called with the lock held. */
static void table_sweep(attr_table_t *t, int all) {
  double now = now_ms();
  for (size_t b = 0; b < CACHE_BUCKETS; b++) {
    centry_t **pp = &t->buckets[b];
    while (*pp) {
      centry_t *e = *pp;
      if (all || e->expires <= now) {
        *pp = e->next;
        free(e);
        t->count--;
      } else {
        pp = &e->next;
      }
    }
  }
}

static void table_free(attr_table_t *t) {
  if (!t->buckets) return;
  table_sweep(t, 1);
  free(t->buckets);
  t->buckets = NULL;
  pthread_mutex_destroy(&t->lock);
}

/* With the lock held. A full table takes nothing: the lookups then go to JavaScript. */
static void table_put(attr_table_t *t, const char *key, size_t n, const struct stat *st, double expires) {
  uint64_t h = hash_key(key, n);
  centry_t **slot = &t->buckets[h & (CACHE_BUCKETS - 1)];
  for (centry_t *e = *slot; e; e = e->next) {
    if (e->hash == h && strcmp(e->key, key) == 0) {
      e->st = *st;
      e->expires = expires;
      return;
    }
  }
  if (t->count >= t->max) {
    table_sweep(t, 0);
    if (t->count >= t->max) return;
  }
  centry_t *e = malloc(sizeof(centry_t) + n + 1);
  if (!e) return;
  memcpy(e->key, key, n + 1);
  e->hash = h;
  e->st = *st;
  e->expires = expires;
  e->next = *slot;
  *slot = e;
  t->count++;
}

/* Take (and remove) the attributes of `path`: each is used by one lookup only. */
static int table_take(attr_table_t *t, const char *path, struct stat *st) {
  size_t n = strlen(path);
  uint64_t h = hash_key(path, n);
  int found = 0;
  pthread_mutex_lock(&t->lock);
  centry_t **pp = &t->buckets[h & (CACHE_BUCKETS - 1)];
  while (*pp) {
    centry_t *e = *pp;
    if (e->hash == h && strcmp(e->key, path) == 0) {
      *pp = e->next;
      t->count--;
      if (e->expires > now_ms()) {
        *st = e->st;
        found = 1;
      }
      free(e);
      break;
    }
    pp = &e->next;
  }
  if (found) t->hits++;
  else t->misses++;
  pthread_mutex_unlock(&t->lock);
  return found;
}

/* ---- requests to JavaScript ---- */

static session_t *current(void) {
  return (session_t *)fuse_get_context()->private_data;
}

static int to_js(session_t *s, request_t *r) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  r->session = s;
  r->result = -EIO;
  r->replied = 0;
  sem_init(&r->done, 0, 0);
  if (napi_call_threadsafe_function(s->call, r, napi_tsfn_blocking) == napi_ok) {
    while (sem_wait(&r->done) != 0 && errno == EINTR) {
    }
  }
  sem_destroy(&r->done);
  pthread_setcancelstate(old, NULL);
  return r->result;
}

static int op_getattr(const char *path, struct stat *st) {
  session_t *s = current();
  if (table_take(&s->attrs, path, st)) return 0;
  request_t r = {.op = OP_GETATTR, .path = path, .st = st};
  return to_js(s, &r);
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *fi) {
  (void)offset;
  (void)fi;
  request_t r = {.op = OP_READDIR, .path = path, .dirbuf = buf, .filler = filler};
  return to_js(current(), &r);
}

static int op_readlink(const char *path, char *buf, size_t size) {
  request_t r = {.op = OP_READLINK, .path = path, .buf = buf, .size = size};
  return to_js(current(), &r);
}

static int op_open(const char *path, struct fuse_file_info *fi) {
  request_t r = {.op = OP_OPEN, .path = path, .flags = fi->flags, .fi = fi};
  return to_js(current(), &r);
}

static int op_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  request_t r = {.op = OP_READ, .path = path, .buf = buf, .size = size, .offset = offset, .fh = fi->fh};
  return to_js(current(), &r);
}

static int op_release(const char *path, struct fuse_file_info *fi) {
  request_t r = {.op = OP_RELEASE, .path = path, .fh = fi->fh};
  return to_js(current(), &r);
}

static int op_statfs(const char *path, struct statvfs *sv) {
  request_t r = {.op = OP_STATFS, .path = path, .sv = sv};
  return to_js(current(), &r);
}

static void *op_init(struct fuse_conn_info *conn) {
  (void)conn;
  session_t *s = current();
  napi_call_threadsafe_function(s->events, (void *)(intptr_t)EV_INIT, napi_tsfn_nonblocking);
  return s;
}

/* The mount is also mounted "ro", so the kernel refuses writes before they get here. */
static int rofs(void) { return -EROFS; }
static int op_write(const char *p, const char *b, size_t n, off_t o, struct fuse_file_info *fi) {
  (void)p, (void)b, (void)n, (void)o, (void)fi;
  return rofs();
}
static int op_create(const char *p, mode_t m, struct fuse_file_info *fi) {
  (void)p, (void)m, (void)fi;
  return rofs();
}
static int op_path(const char *p) {
  (void)p;
  return rofs();
}
static int op_two_paths(const char *a, const char *b) {
  (void)a, (void)b;
  return rofs();
}
static int op_mode(const char *p, mode_t m) {
  (void)p, (void)m;
  return rofs();
}
static int op_mknod(const char *p, mode_t m, dev_t d) {
  (void)p, (void)m, (void)d;
  return rofs();
}
static int op_chown(const char *p, uid_t u, gid_t g) {
  (void)p, (void)u, (void)g;
  return rofs();
}
static int op_truncate(const char *p, off_t o) {
  (void)p, (void)o;
  return rofs();
}
static int op_ftruncate(const char *p, off_t o, struct fuse_file_info *fi) {
  (void)p, (void)o, (void)fi;
  return rofs();
}
static int op_utimens(const char *p, const struct timespec tv[2]) {
  (void)p, (void)tv;
  return rofs();
}
static int op_setxattr(const char *p, const char *n, const char *v, size_t s, int f) {
  (void)p, (void)n, (void)v, (void)s, (void)f;
  return rofs();
}
static int op_removexattr(const char *p, const char *n) {
  (void)p, (void)n;
  return rofs();
}

static const struct fuse_operations operations = {
    .getattr = op_getattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mode,
    .unlink = op_path,
    .rmdir = op_path,
    .symlink = op_two_paths,
    .rename = op_two_paths,
    .link = op_two_paths,
    .chmod = op_mode,
    .chown = op_chown,
    .truncate = op_truncate,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .release = op_release,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .readdir = op_readdir,
    .init = op_init,
    .create = op_create,
    .ftruncate = op_ftruncate,
    .utimens = op_utimens,
};

/* ---- the JavaScript side of a request ---- */

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "aegis_fuse: " #call " failed");       \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  request_t *r = data;
  if (env == NULL) {
    sem_post(&r->done);
    return;
  }
  napi_value argv[7], undefined, ext, result;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, r->op, &argv[0]);
  napi_create_external(env, r, NULL, NULL, &ext);
  argv[1] = ext;
  napi_create_string_utf8(env, r->path ? r->path : "", NAPI_AUTO_LENGTH, &argv[2]);
  napi_create_double(env, (double)r->fh, &argv[3]);
  napi_create_double(env, (double)r->size, &argv[4]);
  napi_create_double(env, r->op == OP_OPEN ? (double)r->flags : (double)r->offset, &argv[5]);
  argv[6] = undefined;
  if (r->op == OP_READ && napi_create_external_buffer(env, r->size, r->buf, NULL, NULL, &argv[6]) != napi_ok) {
    r->result = -EIO;
    r->replied = 1;
    sem_post(&r->done);
    return;
  }
  /* The dispatcher (mount/fuse.ts) catches everything and replies exactly once;
     after its reply `r` may be gone, so nothing here touches it again. */
  if (napi_call_function(env, undefined, js_cb, 7, argv, &result) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
  }
}

static void event_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  if (env == NULL) return;
  napi_value undefined, argv[1], result;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, (int32_t)(intptr_t)data, &argv[0]);
  if (napi_call_function(env, undefined, js_cb, 1, argv, &result) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
  }
}

static request_t *request_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) return NULL;
  request_t *r = p;
  return r->replied ? NULL : r;
}

static void finish(request_t *r, int result) {
  r->result = result;
  r->replied = 1;
  sem_post(&r->done);
}

static void ms_to_timespec(double ms, struct timespec *ts) {
  double sec = floor(ms / 1000);
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)llround((ms - sec * 1000) * 1e6);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static void fill_stat(const double *a, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_mode = (mode_t)a[A_MODE];
  st->st_uid = (uid_t)a[A_UID];
  st->st_gid = (gid_t)a[A_GID];
  st->st_size = (off_t)a[A_SIZE];
  st->st_nlink = (nlink_t)a[A_NLINK];
  st->st_ino = (ino_t)a[A_INO];
  st->st_rdev = (dev_t)a[A_RDEV];
  st->st_blocks = (blkcnt_t)a[A_BLOCKS];
  st->st_blksize = (blksize_t)a[A_BLKSIZE];
  ms_to_timespec(a[A_ATIME], &st->st_atim);
  ms_to_timespec(a[A_MTIME], &st->st_mtim);
  ms_to_timespec(a[A_CTIME], &st->st_ctim);
}

static int float64_array(napi_env env, napi_value v, double **data, size_t *length) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, (void **)data, &ab, &offset) != napi_ok) return 0;
  return type == napi_float64_array;
}

/* reply(req, result): read (bytes), release, or any error. */
static napi_value Reply(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t result;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  CHECK(env, napi_get_value_int32(env, argv[1], &result));
  finish(r, result);
  return NULL;
}

/* replyOpen(req, fh) */
static napi_value ReplyOpen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  double fh;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  CHECK(env, napi_get_value_double(env, argv[1], &fh));
  r->fi->fh = (uint64_t)fh;
  finish(r, 0);
  return NULL;
}

/* replyAttr(req, Float64Array(A_FIELDS)) */
static napi_value ReplyAttr(napi_env env, napi_callback_info info) {
  size_t argc = 2, n;
  napi_value argv[2];
  double *a;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  if (!float64_array(env, argv[1], &a, &n) || n < A_FIELDS) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, "replyAttr: expected a Float64Array of attributes");
    return NULL;
  }
  fill_stat(a, r->st);
  finish(r, 0);
  return NULL;
}

/* replyStatfs(req, Float64Array(S_FIELDS)) */
static napi_value ReplyStatfs(napi_env env, napi_callback_info info) {
  size_t argc = 2, n;
  napi_value argv[2];
  double *a;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  if (!float64_array(env, argv[1], &a, &n) || n < S_FIELDS) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, "replyStatfs: expected a Float64Array");
    return NULL;
  }
  struct statvfs *sv = r->sv;
  memset(sv, 0, sizeof(*sv));
  sv->f_bsize = (unsigned long)a[S_BSIZE];
  sv->f_frsize = (unsigned long)a[S_FRSIZE];
  sv->f_blocks = (fsblkcnt_t)a[S_BLOCKS];
  sv->f_bfree = (fsblkcnt_t)a[S_BFREE];
  sv->f_bavail = (fsblkcnt_t)a[S_BAVAIL];
  sv->f_files = (fsfilcnt_t)a[S_FILES];
  sv->f_ffree = (fsfilcnt_t)a[S_FFREE];
  sv->f_favail = (fsfilcnt_t)a[S_FAVAIL];
  sv->f_fsid = (unsigned long)a[S_FSID];
  sv->f_flag = (unsigned long)a[S_FLAG];
  sv->f_namemax = (unsigned long)a[S_NAMEMAX];
  finish(r, 0);
  return NULL;
}

/* replyLink(req, target) */
static napi_value ReplyLink(napi_env env, napi_callback_info info) {
  size_t argc = 2, len;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  /* libfuse wants the target NUL-terminated and cut to the buffer, as readlink(2) would. */
  if (r->size == 0 || napi_get_value_string_utf8(env, argv[1], r->buf, r->size, &len) != napi_ok) {
    finish(r, -EIO);
    return NULL;
  }
  finish(r, 0);
  return NULL;
}

/*
 * replyDir(req, names, modes, inos, attrs | null): the whole listing at once
 * (libfuse keeps it for the following READDIR offsets). attrs holds A_FIELDS
 * numbers per name, NaN as the mode where there are none; those with attributes
 * wait in the table for the lookups `ls -l` sends next.
 */
static napi_value ReplyDir(napi_env env, napi_callback_info info) {
  size_t argc = 5, an = 0;
  napi_value argv[5];
  uint32_t count;
  double *attrs = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  request_t *r = request_arg(env, argv[0]);
  if (!r) return NULL;
  if (napi_get_array_length(env, argv[1], &count) != napi_ok) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, "replyDir: names must be an array");
    return NULL;
  }
  napi_valuetype t;
  if (argc >= 5 && napi_typeof(env, argv[4], &t) == napi_ok && t == napi_object) {
    if (!float64_array(env, argv[4], &attrs, &an) || an < (size_t)count * A_FIELDS) attrs = NULL;
  }
  attr_table_t *table = &r->session->attrs;
  /* Key: the directory's path, a slash unless it is the root, the name. */
  size_t dlen = strlen(r->path);
  if (dlen == 1 && r->path[0] == '/') dlen = 0;
  size_t cap = dlen + 1024;
  char *key = malloc(cap);
  char name[1024];
  double expires = now_ms() + table->ttl_ms;
  int locked = 0;
  if (key) memcpy(key, r->path, dlen), key[dlen] = '/';
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    size_t len;
    double mode = 0, ino = 0;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || napi_get_value_string_utf8(env, v, name, sizeof(name), &len) != napi_ok) continue;
    if (len >= sizeof(name) - 1) continue; /* longer than any file system allows: skip */
    if (napi_get_element(env, argv[2], i, &v) == napi_ok) napi_get_value_double(env, v, &mode);
    if (napi_get_element(env, argv[3], i, &v) == napi_ok) napi_get_value_double(env, v, &ino);
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_mode = (mode_t)mode;
    st.st_ino = (ino_t)ino;
    if (r->filler(r->dirbuf, name, &st, 0)) break;
    if (!attrs || !key || isnan(attrs[(size_t)i * A_FIELDS + A_MODE])) continue;
    if (!(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.')) {
      memcpy(key + dlen + 1, name, len + 1);
      fill_stat(attrs + (size_t)i * A_FIELDS, &st);
      if (!locked) pthread_mutex_lock(&table->lock), locked = 1;
      table_put(table, key, dlen + 1 + len, &st, expires);
    }
  }
  if (locked) pthread_mutex_unlock(&table->lock);
  free(key);
  finish(r, 0);
  return NULL;
}

/* ---- mounting ---- */

static void session_free(session_t *s) {
  table_free(&s->attrs);
  free(s->mnt);
  free(s);
}

static void session_release(session_t *s) {
  if (__atomic_sub_fetch(&s->owners, 1, __ATOMIC_ACQ_REL) == 0) session_free(s);
}

static void *loop_thread(void *arg) {
  session_t *s = arg;
  /* Signals belong to Node's main thread; libfuse's workers inherit this mask. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  fuse_loop_mt(s->fuse);
  /* fuse_unmount leaves alone a mount point the kernel already let go of. */
  fuse_unmount(s->mnt, s->ch);
  fuse_destroy(s->fuse);
  s->fuse = NULL;
  napi_call_threadsafe_function(s->events, (void *)(intptr_t)EV_EXIT, napi_tsfn_blocking);
  napi_release_threadsafe_function(s->call, napi_tsfn_release);
  napi_release_threadsafe_function(s->events, napi_tsfn_release);
  session_release(s);
  return NULL;
}

static void session_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  session_release(data);
}

static char *string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *out = malloc(len + 1);
  if (out && napi_get_value_string_utf8(env, v, out, len + 1, &len) != napi_ok) {
    free(out);
    return NULL;
  }
  return out;
}

/*
 * mount(mountpoint, "-o…", dispatch, onEvent, attrTtlMs, attrMax) → session.
 * Mounts at once (errors from libfuse go to stderr, as libfuse writes them);
 * onEvent(1) follows when the kernel's INIT arrives, onEvent(2) when the loop
 * has ended after an unmount.
 */
static napi_value Mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], name, result;
  double ttl, max;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, options, dispatch, onEvent, attrTtlMs, attrMax)");
    return NULL;
  }
  CHECK(env, napi_get_value_double(env, argv[4], &ttl));
  CHECK(env, napi_get_value_double(env, argv[5], &max));
  char *mnt = string_arg(env, argv[0]);
  char *opts = string_arg(env, argv[1]);
  if (!mnt || !opts) {
    free(mnt), free(opts);
    napi_throw_type_error(env, NULL, "mount: mountpoint and options must be strings");
    return NULL;
  }
  session_t *s = calloc(1, sizeof(session_t));
  s->mnt = mnt;
  table_init(&s->attrs, (size_t)max, ttl);

  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, "aegis");
  fuse_opt_add_arg(&args, opts);
  free(opts);
  s->ch = fuse_mount(mnt, &args);
  if (!s->ch) {
    fuse_opt_free_args(&args);
    session_free(s);
    napi_throw_error(env, "EFUSEMOUNT", "libfuse could not mount (its message is above)");
    return NULL;
  }
  s->fuse = fuse_new(s->ch, &args, &operations, sizeof(operations), s);
  fuse_opt_free_args(&args);
  if (!s->fuse) {
    fuse_unmount(mnt, s->ch);
    session_free(s);
    napi_throw_error(env, "EFUSEMOUNT", "libfuse refused the options (its message is above)");
    return NULL;
  }
  napi_create_string_utf8(env, "aegis fuse request", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->call));
  napi_create_string_utf8(env, "aegis fuse event", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, s, event_js, &s->events));
  s->owners = 2;
  CHECK(env, napi_create_external(env, s, session_finalize, NULL, &result));
  if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
    napi_throw_error(env, NULL, "aegis_fuse: cannot start the FUSE thread");
    return NULL;
  }
  pthread_detach(s->thread);
  return result;
}

/* stats(session) → [entries waiting, lookups answered here, lookups passed on]. */
static napi_value Stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  void *p;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_external(env, argv[0], &p));
  session_t *s = p;
  pthread_mutex_lock(&s->attrs.lock);
  double f[3] = {(double)s->attrs.count, (double)s->attrs.hits, (double)s->attrs.misses};
  pthread_mutex_unlock(&s->attrs.lock);
  napi_create_array_with_length(env, 3, &out);
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_double(env, f[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, Mount, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, Reply, NULL, NULL, NULL, napi_default, NULL},
      {"replyOpen", NULL, ReplyOpen, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, ReplyAttr, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, ReplyStatfs, NULL, NULL, NULL, napi_default, NULL},
      {"replyLink", NULL, ReplyLink, NULL, NULL, NULL, napi_default, NULL},
      {"replyDir", NULL, ReplyDir, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, Stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
